//! The TOML exactly as written: every table denies unknown keys, and every
//! optional setting stays an `Option` so that `validate` can tell "left out"
//! (use the default) from "written" (a mock provider with a `base_url` is an
//! error even when the URL itself is fine).
//!
//! Integers are read as `i64` and range-checked in `validate`: a too-large or
//! negative number then becomes one of the collected validation errors, with
//! its own message, instead of a deserialisation error that stops everything.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// Defaults for every setting the file may leave out.
pub mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8080";
    pub const MAX_BODY_BYTES: i64 = 33_554_432;
    pub const WORKERS: i64 = 0;
    pub const SHUTDOWN_TIMEOUT_MS: i64 = 30_000;
    pub const ALLOW_ANONYMOUS: bool = false;
    pub const BUSY_POLL_US: i64 = 50;
    pub const CLIENT_REQUEST_TIMEOUT_MS: i64 = 5_000;
    pub const CLIENT_DISCONNECT_TIMEOUT_MS: i64 = 1_000;
    pub const KEEP_ALIVE_MS: i64 = 75_000;
    pub const FAST_INGRESS: bool = true;
    pub const BODY_READ_TIMEOUT_MS: i64 = 30_000;
    /// OpenAI's own limit on audio files.
    pub const MAX_UPLOAD_BYTES: i64 = 25 * 1024 * 1024;
    /// OpenAI's own limit on files (`/v1/files`).
    pub const MAX_FILE_BYTES: i64 = 512 * 1024 * 1024;

    pub const MAX_CONNECTIONS: i64 = 256;
    pub const CONNECT_TIMEOUT_MS: i64 = 2_000;
    pub const FIRST_BYTE_TIMEOUT_MS: i64 = 60_000;
    pub const IDLE_TIMEOUT_MS: i64 = 60_000;
    pub const TOTAL_TIMEOUT_MS: i64 = 600_000;
    pub const WARM_CONNECTIONS: i64 = 1;

    pub const MOCK_DELAY_MS: i64 = 0;
    pub const MOCK_CHUNK_DELAY_MS: i64 = 0;
    pub const MOCK_TOKENS: i64 = 16;

    pub const MAX_RESPONSE_BYTES: i64 = 64 * 1024 * 1024;
    pub const MAX_EVENT_BYTES: i64 = 8 * 1024 * 1024;

    pub const HEALTH_PROBE_INTERVAL_MS: i64 = 0;
    pub const HEALTH_PROBE_TIMEOUT_MS: i64 = 2_000;
    pub const ANTHROPIC_VERSION: &str = "2023-06-01";
    pub const ANTHROPIC_MAX_TOKENS: i64 = 4096;

    pub const WEIGHT: i64 = 1;

    pub const BREAKER_WINDOW_MS: i64 = 30_000;
    pub const BREAKER_MIN_REQUESTS: i64 = 5;
    pub const BREAKER_FAILURE_COUNT: i64 = 5;
    pub const BREAKER_FAILURE_RATIO: f64 = 0.5;
    pub const BREAKER_COOLDOWN_MS: i64 = 5_000;
    pub const BREAKER_COOLDOWN_MAX_MS: i64 = 120_000;
    pub const BREAKER_HALF_OPEN_PROBES: i64 = 1;

    pub const MAX_ATTEMPTS: i64 = 3;
    pub const DEADLINE_MS: i64 = 0;
    pub const BACKOFF_BASE_MS: i64 = 25;
    pub const BACKOFF_429_BASE_MS: i64 = 250;
    pub const BACKOFF_MAX_MS: i64 = 2_000;
    pub const RETRY_AFTER_CAP_MS: i64 = 10_000;
    pub const HEDGE_MIN_MS: i64 = 50;

    pub const QUEUE_MAX_WAIT_MS: i64 = 0;
    pub const QUEUE_MAX_SIZE: i64 = 1000;
    pub const PRIORITY: i64 = 0;
    pub const KEY_MODELS: &str = "*";

    pub const CACHE_MAX_BYTES: i64 = 67_108_864;
    pub const CACHE_MAX_ENTRY_BYTES: i64 = 1_048_576;
    pub const CACHE_TTL_MS: i64 = 600_000;
    pub const CACHE_ONLY_DETERMINISTIC: bool = true;
    pub const BATCH_WINDOW_MS: i64 = 5;
    pub const BATCH_MAX_INPUTS: i64 = 64;

    pub const SHARED_TIMEOUT_MS: i64 = 50;
    pub const SHARED_PROBE_INTERVAL_MS: i64 = 500;
    pub const SHARED_PREFIX: &str = "sluice";

    pub const RESPONSES_TTL_MS: i64 = 86_400_000;
    pub const RESPONSES_MAX_BYTES: i64 = 268_435_456;
    pub const RESPONSES_MAX_ENTRY_BYTES: i64 = 8_388_608;
    pub const OTLP_SERVICE_NAME: &str = "sluice";
    pub const OTLP_TIMEOUT_MS: i64 = 10_000;
    pub const OTLP_EXPORT_INTERVAL_MS: i64 = 1_000;
    pub const OTLP_BATCH_SIZE: i64 = 512;
    pub const OTLP_QUEUE_SIZE: i64 = 4_096;
    pub const TRACE_SAMPLE_RATIO: f64 = 1.0;
    pub const TRACE_MAX_CONTENT_BYTES: i64 = 16_384;
    pub const LOG_MAX_BYTES: i64 = 104_857_600;
    pub const LOG_MAX_FILES: i64 = 5;
    pub const LOG_QUEUE_SIZE: i64 = 8_192;
}

/// A string value from the file. After interpolation, `template` keeps the
/// text as written whenever it contained `${...}`, so that error messages can
/// show what the file says instead of what the environment supplied.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Text {
    pub value: String,
    /// The original text, set only when interpolation changed the value (or
    /// failed, in which case `value` still holds the original text).
    pub template: Option<String>,
    /// Interpolation failed; the error is already reported, so checks on
    /// this value would only add noise.
    pub unresolved: bool,
}

impl Text {
    pub fn new(value: impl Into<String>) -> Self {
        Text { value: value.into(), template: None, unresolved: false }
    }

    /// How an error message may quote this value: literally when it came
    /// from the file, as its `${VAR}` template when the environment supplied
    /// it (an interpolated value is never printed).
    pub fn shown(&self) -> String {
        match &self.template {
            Some(t) => format!("`{t}` (from the environment)"),
            None => format!("`{}`", self.value),
        }
    }
}

impl fmt::Debug for Text {
    // Raw values may be secrets: a stray `{:?}` must not print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text({} chars)", self.value.chars().count())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Text::new)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    pub breaker: Option<RawBreaker>,
    pub routing: Option<RawRouting>,
    pub queue: Option<RawQueue>,
    pub spend: Option<RawSpend>,
    pub cache: Option<RawCache>,
    pub shared: Option<RawShared>,
    pub responses: Option<RawResponses>,
    pub telemetry: Option<RawTelemetry>,
}

/// `[responses]`: the conversations Sluice keeps for the Responses API
/// (`store`, `previous_response_id`, `GET /v1/responses/{id}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponses {
    pub ttl_ms: Option<i64>,
    pub max_bytes: Option<i64>,
    pub max_entry_bytes: Option<i64>,
    pub store: Option<Text>,
}

/// `[telemetry]`: the OTLP collector, traces and the request log.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<Text>,
    pub otlp_headers: Option<BTreeMap<String, Text>>,
    pub service_name: Option<Text>,
    pub export_timeout_ms: Option<i64>,
    pub export_interval_ms: Option<i64>,
    pub batch_size: Option<i64>,
    pub queue_size: Option<i64>,
    pub traces: Option<RawTraces>,
    pub request_log: Option<RawRequestLog>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraces {
    pub sample_ratio: Option<f64>,
    pub record_content: Option<bool>,
    pub max_content_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequestLog {
    pub path: Option<Text>,
    pub max_bytes: Option<i64>,
    pub max_files: Option<i64>,
    pub queue_size: Option<i64>,
    pub otlp: Option<bool>,
}

/// `[shared]`: state shared by several replicas through Redis.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShared {
    pub redis_url: Option<Text>,
    pub timeout_ms: Option<i64>,
    pub probe_interval_ms: Option<i64>,
    pub prefix: Option<Text>,
    pub ca_file: Option<Text>,
    pub sentinels: Option<Vec<Text>>,
    pub master_name: Option<Text>,
}

/// `[cache]`: limits of the response cache shared by every model.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_bytes: Option<i64>,
    pub max_entry_bytes: Option<i64>,
}

/// A model's `cache = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelCache {
    pub ttl_ms: Option<i64>,
    pub only_deterministic: Option<bool>,
}

/// A model's `embeddings_batch = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbeddingsBatch {
    pub window_ms: Option<i64>,
    pub max_inputs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub window_ms: Option<i64>,
    pub min_requests: Option<i64>,
    pub failure_count: Option<i64>,
    pub failure_ratio: Option<f64>,
    pub cooldown_ms: Option<i64>,
    pub cooldown_max_ms: Option<i64>,
    pub half_open_probes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub max_attempts: Option<i64>,
    pub deadline_ms: Option<i64>,
    pub backoff_base_ms: Option<i64>,
    pub backoff_429_base_ms: Option<i64>,
    pub backoff_max_ms: Option<i64>,
    pub retry_after_cap_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Text>,
    pub admin_key: Option<Text>,
    pub max_body_bytes: Option<i64>,
    pub workers: Option<i64>,
    pub shutdown_timeout_ms: Option<i64>,
    pub allow_anonymous: Option<bool>,
    pub busy_poll_us: Option<i64>,
    pub fast_ingress: Option<bool>,
    pub client_request_timeout_ms: Option<i64>,
    pub client_disconnect_timeout_ms: Option<i64>,
    pub keep_alive_ms: Option<i64>,
    pub body_read_timeout_ms: Option<i64>,
    pub max_upload_bytes: Option<i64>,
    pub max_file_bytes: Option<i64>,
    pub spool_dir: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: Text,
    pub kind: Text,
    pub base_url: Option<Text>,
    pub api_key: Option<Text>,
    pub headers: Option<BTreeMap<String, Text>>,
    pub forward_headers: Option<Vec<Text>>,
    pub max_connections: Option<i64>,
    pub connect_timeout_ms: Option<i64>,
    pub first_byte_timeout_ms: Option<i64>,
    pub idle_timeout_ms: Option<i64>,
    pub total_timeout_ms: Option<i64>,
    pub warm_connections: Option<i64>,
    pub health_probe_interval_ms: Option<i64>,
    pub health_probe_timeout_ms: Option<i64>,
    pub max_response_bytes: Option<i64>,
    pub max_event_bytes: Option<i64>,
    pub mock: Option<RawMock>,
    pub anthropic: Option<RawAnthropic>,
    pub responses: Option<bool>,
    pub files: Option<bool>,
    pub azure: Option<RawAzure>,
    pub bedrock: Option<RawBedrock>,
    pub vertex: Option<RawVertex>,
}

/// `[providers.azure]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAzure {
    pub resource: Option<Text>,
    pub api: Option<Text>,
    pub api_version: Option<Text>,
    pub entra: Option<RawEntra>,
}

/// `[providers.azure.entra]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntra {
    pub tenant_id: Text,
    pub client_id: Text,
    pub client_secret: Text,
    pub authority: Option<Text>,
}

/// `[providers.bedrock]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBedrock {
    pub region: Text,
    pub profile: Option<Text>,
    pub sts_endpoint: Option<Text>,
}

/// `[providers.vertex]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVertex {
    pub project: Option<Text>,
    pub location: Text,
    pub credentials_file: Option<Text>,
    pub metadata_server: Option<bool>,
    pub token_url: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnthropic {
    pub version: Option<Text>,
    pub default_max_tokens: Option<i64>,
    pub prompt_caching: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMock {
    pub delay_ms: Option<i64>,
    pub chunk_delay_ms: Option<i64>,
    pub tokens: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: Text,
    pub deployments: Vec<RawDeployment>,
    pub fallbacks: Option<Vec<Text>>,
    pub price: Option<RawPrice>,
    pub strategy: Option<Text>,
    pub context_window: Option<i64>,
    pub timeouts: Option<RawModelTimeouts>,
    pub hedge: Option<RawHedge>,
    pub max_attempts: Option<i64>,
    pub deadline_ms: Option<i64>,
    pub fallback_response: Option<Text>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub max_concurrent: Option<i64>,
    pub cache: Option<RawModelCache>,
    pub embeddings_batch: Option<RawEmbeddingsBatch>,
    pub on_all_unhealthy: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelTimeouts {
    pub first_byte_ms: Option<i64>,
    pub idle_ms: Option<i64>,
    pub total_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHedge {
    pub after_ms: Option<i64>,
    pub min_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub provider: Text,
    pub model: Text,
    pub weight: Option<i64>,
    pub price: Option<RawPrice>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub reasoning: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: Text,
    pub key: Option<Text>,
    pub key_sha256: Option<Text>,
    pub models: Option<Vec<Text>>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub max_concurrent: Option<i64>,
    pub priority: Option<i64>,
    pub daily_budget_usd: Option<f64>,
    pub monthly_budget_usd: Option<f64>,
    pub limits: Option<Vec<RawKeyModelLimit>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyModelLimit {
    pub model: Text,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub max_concurrent: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub max_wait_ms: Option<i64>,
    pub max_size: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpend {
    pub store: Option<Text>,
}
