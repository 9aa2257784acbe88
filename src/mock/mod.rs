//! `sluice mock`: an OpenAI-compatible fake LLM server for tests, benchmarks
//! and newcomers, with fault injection.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/embeddings`, `GET /v1/models` (the `/v1` prefix is optional),
//! the Responses API's `POST /v1/responses` and
//! `POST /v1/responses/input_tokens` (see `responses`), Anthropic's
//! `POST /v1/messages` (with `thinking` blocks when asked) and
//! `POST /v1/messages/count_tokens`, the audio uploads
//! `POST /v1/audio/transcriptions` and `/v1/audio/translations` and the
//! Files and Batch APIs (`/v1/files…`, `/v1/batches…`; see `uploads`), Gemini's
//! `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` (see `vendors`),
//! plus inspection routes that are neither counted nor recorded:
//! `GET /mock/stats`, `POST /mock/reset`, `POST /mock/gates/{name}/release`,
//! `GET /mock/gates/{name}`.
//!
//! Per-request controls are headers: `x-mock-fault` (see [`Fault`]),
//! `x-mock-delay-ms` (before the response headers, stream or not),
//! `x-mock-chunk-delay-ms` (between stream events), `x-mock-tokens`,
//! `x-mock-retry-after`, `x-mock-cut-after` (events sent before a `cut`) and
//! `x-mock-gate: <name>` (a stream waits for one release of that gate before
//! each event after the first), `x-mock-tool-call: <name>` and
//! `x-mock-cached-tokens: <n>` (see `vendors`). A malformed control header
//! is a 400. The 429 and 500 faults answer in the route's own error shape
//! (OpenAI's, Anthropic's or Gemini's).
//!
//! It doubles as the "direct" baseline of the load benchmarks, so the server
//! is written on hyper directly and kept lean; see `server` for the threading
//! model. Answers come from [`generate`], which the gateway's in-process
//! `mock` provider reuses.

pub(crate) mod audio;
mod body;
pub mod cloud_api;
pub mod clouds;
mod faults;
pub(crate) mod files;
pub mod generate;
mod hostile;
mod id;
mod inspect;
pub(crate) mod media;
mod native;
mod responses;
mod route;
mod server;
mod stats;
#[cfg(test)]
mod tests;
mod uploads;
pub(crate) mod vendors;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::watch;

pub use faults::{Fault, ParseFaultError};
pub use hostile::Hostile;
pub use stats::{MockStatsSnapshot, RecordedRequest};

use server::ServerState;

/// Process-wide behaviour of a mock server; request headers override per request.
#[derive(Clone, Debug, PartialEq)]
pub struct MockOptions {
    /// Probability (0..=1) that a request gets a fault drawn uniformly from
    /// `faults` (`500` when `faults` is empty). An `x-mock-fault` header wins.
    pub fail_rate: f64,
    pub faults: Vec<Fault>,
    /// Delay before answering (before the headers, stream or not).
    pub delay_ms: u64,
    /// Delay between stream events.
    pub chunk_delay_ms: u64,
    /// Completion tokens (words) per answer; `max_tokens` caps it.
    pub tokens: u32,
    /// `Retry-After` seconds on 429.
    pub retry_after_s: u64,
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    /// Seeds the random fault choice and response ids (per worker, so with
    /// one worker a run is reproducible).
    pub seed: Option<u64>,
    /// Answer every request like a broken upstream (see [`Hostile`]).
    pub hostile: Option<Hostile>,
    /// The identities the cloud routes accept (Azure key and Entra app, AWS
    /// keys, the Google service account) and how long issued tokens live.
    pub clouds: cloud_api::MockCloudOptions,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            fail_rate: 0.0,
            faults: Vec::new(),
            delay_ms: 0,
            chunk_delay_ms: 0,
            tokens: 16,
            retry_after_s: 1,
            workers: 0,
            seed: None,
            hostile: None,
            clouds: cloud_api::MockCloudOptions::default(),
        }
    }
}

/// A running mock server. Dropping it stops it too; [`MockServer::shutdown`]
/// says so explicitly.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl MockServer {
    /// Starts serving `listener` on worker threads of its own and returns at
    /// once; the socket is already listening, so clients may connect now.
    pub fn start(listener: TcpListener, opts: MockOptions) -> std::io::Result<MockServer> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let workers = match opts.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let seed = opts.seed;
        let opts_hostile = opts.hostile;
        let dice = server::FaultDice::new(opts.fail_rate, opts.faults.clone());
        let clouds = cloud_api::MockClouds::new(&opts.clouds, addr);
        let state = Arc::new(ServerState {
            opts,
            stats: Arc::default(),
            gates: Default::default(),
            dice,
            hostile: std::sync::RwLock::new(opts_hostile),
            clouds,
            files: Default::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut server = MockServer { addr, state, stop, threads: Vec::with_capacity(workers) };
        for i in 0..workers {
            // Build everything that can fail here, so errors reach the caller.
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let listener = listener.try_clone()?;
            let (state, stop_rx) = (server.state.clone(), stop_rx.clone());
            let thread = std::thread::Builder::new().name(format!("sluice-mock-{i}")).spawn(move || {
                if let Some(s) = seed {
                    // Distinct, reproducible streams per worker.
                    fastrand::seed(s ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                }
                rt.block_on(server::accept_loop(listener, state, stop_rx));
                // Dropping `rt` here cancels this worker's connections.
            })?;
            // Pushed one by one so that, on a later error, dropping `server`
            // stops and joins the threads already running.
            server.threads.push(thread);
        }
        Ok(server)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The same data as `GET /mock/stats`.
    pub fn stats(&self) -> MockStatsSnapshot {
        self.state.stats.snapshot()
    }

    /// The clouds' identities, to rotate keys and revoke tokens while serving.
    pub fn clouds(&self) -> &cloud_api::MockClouds {
        &self.state.clouds
    }

    /// Change the process-wide faults while serving (as `POST /mock/faults` does).
    pub fn set_faults(&self, fail_rate: f64, faults: Vec<Fault>) {
        self.state.dice.set(fail_rate, faults);
    }

    /// Answer every request like a broken upstream (as `POST
    /// /mock/faults?hostile=MODE` does); `None` stops it. A request's
    /// `x-mock-hostile` header wins.
    pub fn set_hostile(&self, mode: Option<Hostile>) {
        if let Ok(mut h) = self.state.hostile.write() {
            *h = mode;
        }
    }

    /// Stops accepting, closes every connection (in-flight requests and
    /// streams are cut), and joins the worker threads.
    pub fn shutdown(self) {
        drop(self);
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Runs a mock server on `listener` until SIGTERM or Ctrl-C, then stops it
/// and returns `Ok`. For `sluice mock`.
pub fn run_blocking(listener: TcpListener, opts: MockOptions) -> std::io::Result<()> {
    let server = MockServer::start(listener, opts)?;
    tracing::info!(addr = %server.addr(), "mock server listening");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(shutdown_signal())?;
    tracing::info!("mock server stopping");
    server.shutdown();
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
