//! Command line: `sluice serve | check | mock` (serve is the default).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "A fast LLM gateway", args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve`'s options, so that plain `sluice --config x.toml` serves.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default command).
    Serve(ServeArgs),
    /// Validate a config file: print every error and exit 1 if there is any.
    Check(CheckArgs),
    /// Run a standalone fake LLM server (OpenAI, Anthropic and Gemini APIs), with fault injection.
    #[command(after_long_help = MOCK_HELP)]
    Mock(MockArgs),
    /// Probe a running gateway's /health; exit 0 if it answers 200 (for
    /// container HEALTHCHECKs in images without curl).
    Health(HealthArgs),
}

/// `sluice mock --help`: the per-request controls and the hostile answers.
const MOCK_HELP: &str = "\
Per-request controls (request headers):
  x-mock-fault: 429|500|hang|cut|garbage|reset   inject one fault
  x-mock-retry-after: VALUE    the 429's Retry-After, sent as written (1e300, -1, NaN, an HTTP-date...)
  x-mock-delay-ms, x-mock-chunk-delay-ms, x-mock-tokens, x-mock-cut-after, x-mock-gate,
  x-mock-usage: none, x-mock-tool-call: NAME, x-mock-cached-tokens: N
  x-mock-hostile: MODE         answer like a broken or malicious upstream (below)
  x-mock-drip-ms: N            pace of `drip`, per byte (default 1000)

Hostile modes (x-mock-hostile, --hostile, or POST /mock/faults?hostile=MODE; `hostile=` stops):
  huge-headers      a 200 whose head holds 1 MiB of headers
  endless-headers   a status line, then header lines forever
  endless-line      a stream's first event, then one data: line that never ends
  drip              the whole answer, one byte every x-mock-drip-ms
  long-body         more bytes than content-length: a smuggled second response follows
  short-body        half the body content-length promises, then a close
  bad-utf8          answer text with bytes that are not UTF-8
  bad-json          an answer (or a stream event) that is not JSON
  reset-head        a connection reset in the middle of the response head
  reset-body        a reset after the head, before any body byte
  reset-mid-body    a reset in the middle of a non-stream body
  reset-mid-stream  a reset after a stream's first events
  error-200         a 200 whose body (or event) is an error object

Inspection: GET /mock/stats, POST /mock/reset, POST /mock/faults?fail_rate=R&faults=LIST,
POST /mock/gates/NAME/release, GET /mock/gates/NAME.";

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Address of the gateway to probe.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Config file. Default: config/sluice.toml if present, else the embedded default (mock provider only).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Listen address; overrides `server.listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file to validate.
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct MockArgs {
    /// Listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// Probability (0..=1) that a request gets one of --faults.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Faults to draw from, comma-separated: 429,500,hang,cut,garbage,reset.
    #[arg(long, value_delimiter = ',')]
    pub faults: Vec<String>,
    /// Delay before each answer (or first stream event), in ms.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Delay between stream events, in ms.
    #[arg(long, default_value_t = 0)]
    pub chunk_delay_ms: u64,
    /// Completion tokens per answer when the request does not cap it.
    #[arg(long, default_value_t = 16)]
    pub tokens: u32,
    /// Retry-After seconds on injected 429s.
    #[arg(long, default_value_t = 1)]
    pub retry_after_s: u64,
    /// Worker threads; 0 = one per core.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Seed for the fault dice, for reproducible runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Answer every request like a broken upstream (modes below).
    #[arg(long, value_name = "MODE")]
    pub hostile: Option<String>,
}
