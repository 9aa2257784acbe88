//! Configuration: the exact shape of `sluice.toml`, loaded in three steps.
//!
//! `raw` deserialises the TOML as written (unknown keys are errors), `interpolate`
//! expands `${ENV_VAR}` in string values, and `validate` checks values and
//! cross-references and produces the typed [`Config`] below. Every error carries
//! the file, line and key path (`locate` maps a key path back to its line), and
//! `sluice check` prints all of them, not only the first.

pub mod cloud;
mod interpolate;
mod kind;
mod locate;
mod raw;
mod responses;
mod routing;
mod telemetry;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Defined by the translator it steers; the config only chooses it.
pub use crate::translate::anthropic::PromptCaching;
pub use cloud::CloudConfig;
pub use interpolate::{Env, ProcessEnv};
pub use kind::ProviderKind;
pub use responses::ResponsesSettings;
pub use routing::{BreakerSettings, HedgeConfig, ModelTimeouts, OnAllUnhealthy, RoutingConfig, Strategy};
pub use telemetry::{LogTarget, OtlpConfig, RequestLogConfig, TelemetryConfig, TracesConfig};

/// The default config, embedded so that `sluice serve` works with no file at all.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/sluice.toml");
/// Name shown in errors for the embedded default.
pub const EMBEDDED_NAME: &str = "<embedded default config>";
/// The path `sluice serve` tries when `--config` is not given.
pub const DEFAULT_PATH: &str = "config/sluice.toml";

/// A validated configuration. Built only by [`Config::load`] / [`Config::from_str`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a path, or [`EMBEDDED_NAME`]).
    pub source: String,
    /// SHA-256 of the file's bytes, hex, when it came from a file: taken from
    /// the very bytes parsed, so `/status` names the config that runs.
    pub digest: Option<String>,
    pub server: ServerConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub keys: Vec<KeyConfig>,
    /// Tuning of every deployment's circuit breaker (`[breaker]`).
    pub breaker: BreakerSettings,
    /// Retry and backoff defaults (`[routing]`).
    pub routing: RoutingConfig,
    /// Waiting instead of refusing (`[queue]`).
    pub queue: QueueConfig,
    /// Where spend is persisted (`[spend] store`); `None`: in memory only.
    pub spend_store: Option<PathBuf>,
    /// Limits of the response cache (`[cache]`).
    pub cache: CacheSettings,
    /// State shared by replicas through Redis (`[shared]`); `None`: all in process.
    pub shared: Option<SharedConfig>,
    /// The Responses API's stored conversations (`[responses]`).
    pub responses: ResponsesSettings,
    /// Traces and the request log (`[telemetry]`); off unless written.
    pub telemetry: TelemetryConfig,
}

/// `[shared]`: rate limits, spend, a second cache tier and circuit news
/// shared by every replica through one Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedConfig {
    /// `redis://[user:password@]host:port[/db]`; holds a secret, never printed.
    pub redis_url: Secret,
    /// How long a request waits for Redis before it goes on without it.
    pub timeout_ms: u64,
    /// How often Redis is checked, and reconnected while down.
    pub probe_interval_ms: u64,
    /// Prefix of every Redis key and channel.
    pub prefix: String,
    /// PEM file of the CA that signed the Redis server's certificate (`rediss://`).
    pub ca_file: Option<PathBuf>,
    /// Sentinel: the sentinels' URLs (secrets: they may hold a password) and
    /// the master's name; `redis_url` then gives only the master's scheme,
    /// credentials and database.
    pub sentinels: Vec<Secret>,
    pub master_name: Option<String>,
}

/// Requests/tokens per minute and concurrent requests; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u32>,
}

impl Limits {
    pub fn is_none(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.max_concurrent.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// How long a request refused by a limit may wait for it instead; 0 = refuse at once.
    pub max_wait_ms: u64,
    /// Waiting requests beyond this are refused at once (503 `overloaded`).
    pub max_size: usize,
}

/// `[cache]`: the response cache's limits, shared by every model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Every entry together (answers plus a fixed overhead each).
    pub max_bytes: usize,
    /// One answer; larger ones are served but not stored.
    pub max_entry_bytes: usize,
}

/// A model's `cache`: its answers are stored and served again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelCache {
    pub ttl_ms: u64,
    /// Store only requests with `temperature: 0` (an absent temperature is
    /// OpenAI's default of 1, so it does not count).
    pub only_deterministic: bool,
}

/// A model's `embeddings_batch`: concurrent embedding requests merged into
/// one upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingsBatch {
    pub window_ms: u64,
    pub max_inputs: usize,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Guards `/status`; when `None`, `/status` is open.
    pub admin_key: Option<Secret>,
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 means one per available core.
    pub workers: usize,
    /// How long in-flight requests and streams may run after SIGTERM/Ctrl-C.
    pub shutdown_timeout_ms: u64,
    /// With no `[[keys]]`, refuse every client unless this is true.
    pub allow_anonymous: bool,
    /// The longest a worker keeps polling its sockets after a request starts
    /// or ends, when it spins at all (`crate::busy_poll` decides); 0 turns
    /// busy polling off.
    pub busy_poll_us: u64,
    /// Serve the proxied routes' HTTP/1.1 requests on Sluice's own
    /// connection loop (`crate::server::fast`); everything else, and every
    /// connection when false, goes through actix-http.
    pub fast_ingress: bool,
    /// How long a client has to send a request's head (slow-header clients
    /// are answered 408 and closed).
    pub client_request_timeout_ms: u64,
    /// How long a connection being closed may take to shut down.
    pub client_disconnect_timeout_ms: u64,
    /// How long an idle keep-alive connection is kept; 0 turns keep-alive off.
    pub keep_alive_ms: u64,
    /// How long a client has to send a request's whole body (408 after);
    /// for uploads, the longest wait for the body's next piece.
    pub body_read_timeout_ms: u64,
    /// The largest audio upload (`/v1/audio/transcriptions`, `translations`).
    pub max_upload_bytes: u64,
    /// The largest `/v1/files` upload.
    pub max_file_bytes: u64,
    /// Where an upload whose `model` field comes after its file is kept
    /// until it has all arrived (the system's temporary directory by default).
    pub spool_dir: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL without trailing slash, e.g. `https://api.openai.com/v1`.
    /// Empty for `mock`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// Extra headers sent on every upstream request (values may be secrets).
    pub headers: Vec<(String, Secret)>,
    /// Client request headers passed on to this provider, lower-case; a
    /// trailing `*` matches a prefix (`x-mock-*`).
    pub forward_headers: Vec<String>,
    /// Cap on concurrent upstream requests to this provider.
    pub max_connections: usize,
    pub connect_timeout_ms: u64,
    /// Until the upstream's response headers arrive.
    pub first_byte_timeout_ms: u64,
    /// Longest silence between two body chunks / stream events.
    pub idle_timeout_ms: u64,
    /// Whole request, stream included.
    pub total_timeout_ms: u64,
    /// Connections opened per worker at start.
    pub warm_connections: usize,
    /// Active health probe (`GET {base_url}/models`) every this many ms; 0 = off.
    pub health_probe_interval_ms: u64,
    pub health_probe_timeout_ms: u64,
    /// The largest whole (non-stream) answer read from this provider.
    pub max_response_bytes: usize,
    /// The largest stream event; an event that grows past it without its
    /// end ends the stream with an error.
    pub max_event_bytes: usize,
    /// Settings of the built-in mock (only for `kind = "mock"`).
    pub mock: MockProviderConfig,
    /// Anthropic settings (only for `kind = "anthropic"`).
    pub anthropic: AnthropicProviderConfig,
    /// The upstream serves OpenAI's Responses API (`POST {base_url}/responses`):
    /// `/v1/responses` goes there as the client wrote it, instead of being
    /// translated to chat (only for `kind = "openai"`).
    pub responses: bool,
    /// The upstream serves OpenAI's Files and Batch APIs (`/v1/files`,
    /// `/v1/batches`; only for `kind = "openai"`; the mock always does).
    pub files: bool,
    /// Azure, Bedrock or Vertex settings (only for those kinds).
    pub cloud: CloudConfig,
    /// Bedrock and Vertex: the environment their credential chain reads, as loaded.
    pub cloud_env: cloud::CloudEnv,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicProviderConfig {
    /// The `anthropic-version` header sent upstream.
    pub version: String,
    /// `max_tokens` sent when an OpenAI request has none (Anthropic requires it).
    pub default_max_tokens: u32,
    pub prompt_caching: PromptCaching,
}

impl Default for AnthropicProviderConfig {
    fn default() -> Self {
        AnthropicProviderConfig {
            version: raw::defaults::ANTHROPIC_VERSION.to_string(),
            default_max_tokens: raw::defaults::ANTHROPIC_MAX_TOKENS as u32,
            prompt_caching: PromptCaching::Client,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MockProviderConfig {
    /// Delay before the answer (or the first stream event).
    pub delay_ms: u64,
    /// Delay between stream events.
    pub chunk_delay_ms: u64,
    /// Completion tokens per answer when the request does not say
    /// (`max_tokens` caps it).
    pub tokens: u32,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub deployments: Vec<DeploymentConfig>,
    /// Other model names, tried in order when every deployment failed.
    pub fallbacks: Vec<String>,
    pub price: Option<Price>,
    pub strategy: Strategy,
    /// Largest prompt (estimated tokens) plus requested output the model takes.
    pub context_window: Option<u64>,
    pub timeouts: ModelTimeouts,
    pub hedge: Option<HedgeConfig>,
    /// Overrides `routing.max_attempts` / `routing.deadline_ms`.
    pub max_attempts: Option<u32>,
    pub deadline_ms: Option<u64>,
    /// Served, marked `x-sluice-fallback: template`, when every deployment failed.
    pub fallback_response: Option<String>,
    /// The model's overall limits, across every key.
    pub limits: Limits,
    /// Response caching, when on.
    pub cache: Option<ModelCache>,
    /// Embeddings micro-batching, when on.
    pub embeddings_batch: Option<EmbeddingsBatch>,
    /// What to do when no deployment of the model or its fallbacks is admitted.
    pub on_all_unhealthy: OnAllUnhealthy,
}

#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    /// Index into [`Config::providers`].
    pub provider: usize,
    /// The model name the upstream knows.
    pub model: String,
    pub weight: u32,
    /// Overrides the model's price for this deployment (`cost` strategy, spend).
    pub price: Option<Price>,
    /// What this deployment's provider allows (rpm, tpm): Sluice reroutes or
    /// waits rather than send more.
    pub limits: Limits,
    /// The model takes reasoning settings: a translated request may carry
    /// `reasoning_effort` (from Anthropic `thinking`/`output_config.effort`,
    /// or the Responses API's `reasoning.effort`) and uses
    /// `max_completion_tokens`. Off by default: OpenAI refuses
    /// `reasoning_effort` on models that do not reason.
    pub reasoning: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Prompt tokens served from the provider's prompt cache; `None`: billed as input.
    pub cached_input_per_mtok: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub name: String,
    /// SHA-256 of the key; plaintext keys are hashed at load and never kept.
    pub key_sha256: [u8; 32],
    /// Model name patterns this key may use: exact names, `*`, or `prefix*`.
    pub models: Vec<String>,
    pub limits: Limits,
    /// Per model limits of this key: (model index, limits).
    pub model_limits: Vec<(usize, Limits)>,
    /// Queue priority: higher goes first.
    pub priority: i32,
    pub daily_budget_usd: Option<f64>,
    pub monthly_budget_usd: Option<f64>,
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One problem in a config file, located at `file:line` and a key path such
/// as `models[1].deployments[0].provider`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; `None` when the problem has no place in the file (e.g. it is missing).
    pub line: Option<usize>,
    /// Dotted key path; empty for file-level problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file, line)?,
            None => write!(f, "{}", self.file)?,
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one config.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Read and validate the file at `path`, interpolating `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with_env(path, &ProcessEnv)
    }

    pub fn load_with_env(path: &Path, env: &dyn Env) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let fail = |message: String| {
            ConfigErrors(vec![ConfigError { file: file.clone(), line: None, key: String::new(), message }])
        };
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let text = String::from_utf8(bytes).map_err(|e| fail(format!("cannot read the file: {e}")))?;
        let mut config = Self::from_str_with_env(&text, &file, env)?;
        config.digest = Some(digest);
        Ok(config)
    }

    /// The embedded default config (mock provider only).
    pub fn embedded_default() -> Result<Config, ConfigErrors> {
        Self::from_str_with_env(EMBEDDED_DEFAULT, EMBEDDED_NAME, &ProcessEnv)
    }

    /// Parse `text` as if it were the file `file`.
    pub fn from_str_with_env(text: &str, file: &str, env: &dyn Env) -> Result<Config, ConfigErrors> {
        validate::load(text, file, env)
    }

    /// Which file `serve` reads: the given path, else `config/sluice.toml` if
    /// present, else `None` (the embedded default).
    pub fn resolve_path(given: Option<&Path>) -> Option<PathBuf> {
        match given {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let p = PathBuf::from(DEFAULT_PATH);
                p.exists().then_some(p)
            }
        }
    }

    pub fn provider(&self, idx: usize) -> Option<&ProviderConfig> {
        self.providers.get(idx)
    }
}
