//! Traces and the request log: what one request did, written down off the
//! request path.
//!
//! The request path only collects: its [`Record`](crate::request) holds a
//! [`RequestObs`] (when `[telemetry]` turns traces or the log on; otherwise
//! nothing, and each hook is one `Option` check), the attempt loop notes
//! each attempt in it through an [`AttemptSpan`], and the end of the
//! request turns it into one [`Finished`] value, handed with `try_send` to
//! bounded queues. Two threads of ours do the rest: the log writer
//! ([`log`]) formats and writes the JSON line, rotating the file; the
//! exporter ([`export`]) turns requests into OpenTelemetry spans (and log
//! records) and sends them over OTLP/HTTP in batches. A full queue drops
//! the request's telemetry, never delays the request, and counts it in
//! `sluice_telemetry_dropped_total{queue}`.

mod content;
pub mod export;
pub mod log;
pub mod meeting;
pub mod names;
pub mod trace;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use actix_web::http::header::HeaderMap;
use tokio::time::Instant;

use crate::config::TelemetryConfig;
use crate::endpoint::Endpoint;
use crate::usage::Usage;
pub use meeting::Meeting;
pub use names::Names;
pub use trace::{TraceCtx, TraceSettings};

/// Metric: requests whose telemetry was dropped because a queue was full.
pub const DROPPED_TOTAL: &str = "sluice_telemetry_dropped_total";
/// Metric: export requests to the OTLP collector that failed.
pub const EXPORT_ERRORS_TOTAL: &str = "sluice_telemetry_export_errors_total";
/// Metric: spans and log records the collector accepted.
pub const EXPORTED_TOTAL: &str = "sluice_telemetry_exported_total";

/// Where finished requests go; shared by every worker.
pub struct Observer {
    pub traces: Option<TraceSettings>,
    export: Option<export::Queue>,
    log: Option<log::Queue>,
    /// Send each request-log record over OTLP logs too.
    log_over_otlp: bool,
    closed: AtomicBool,
}

/// What a snapshot observes with: the process-long [`Observer`] (its
/// threads, queues and file outlive reloads) and the names of this
/// snapshot's models and deployments. A request keeps the names of the
/// snapshot it started on, so one finishing after a reload is written
/// with the names its indices meant.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub observer: Arc<Observer>,
    pub names: Arc<Names>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("traces", &self.traces.is_some())
            .field("export", &self.export.is_some())
            .field("log", &self.log.is_some())
            .finish()
    }
}

impl Observer {
    /// Start the log writer and the exporter the config asks for; `None`
    /// when it asks for neither.
    pub fn start(cfg: &TelemetryConfig) -> Result<Option<Arc<Observer>>, String> {
        if cfg.traces.is_none() && cfg.request_log.is_none() {
            return Ok(None);
        }
        describe();
        let log_over_otlp = cfg.request_log.as_ref().is_some_and(|l| l.otlp);
        let export = match &cfg.otlp {
            Some(otlp) if cfg.traces.is_some() || log_over_otlp => {
                Some(export::Queue::start(otlp, cfg.traces.is_some(), log_over_otlp)?)
            }
            _ => None,
        };
        let log = cfg.request_log.as_ref().map(log::Queue::start).transpose()?;
        let traces = cfg.traces.as_ref().map(TraceSettings::new);
        Ok(Some(Arc::new(Observer { traces, export, log, log_over_otlp, closed: AtomicBool::new(false) })))
    }

    /// A request begins: its trace context (the client's `traceparent`
    /// continued, or a new trace) when traces are on.
    pub fn begin(self: &Arc<Self>, names: &Arc<Names>, headers: &HeaderMap, endpoint: Endpoint) -> RequestObs {
        RequestObs {
            observer: self.clone(),
            names: names.clone(),
            trace: self.traces.as_ref().map(|t| t.begin(headers, endpoint)),
            wall_start: SystemTime::now(),
            start: Instant::now(),
            attempts: RefCell::new(Vec::new()),
            response: RefCell::new(Response::default()),
        }
    }

    /// Hand a finished request to the queues; never waits.
    fn submit(&self, f: Finished) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let sampled = f.trace.as_ref().is_some_and(|t| t.sampled);
        let to_export = sampled || (self.log_over_otlp && self.export.is_some());
        let f = Arc::new(f);
        if let Some(l) = &self.log {
            l.push(f.clone());
        }
        if to_export && let Some(e) = &self.export {
            e.push(f);
        }
    }

    /// Stop taking records, write and send what is queued (waiting at most
    /// `within`), and stop the threads.
    pub fn close(&self, within: Duration) {
        self.closed.store(true, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + within;
        if let Some(l) = &self.log {
            l.close(deadline);
        }
        if let Some(e) = &self.export {
            e.close(deadline);
        }
    }
}

fn describe() {
    metrics::describe_counter!(
        DROPPED_TOTAL,
        "Requests whose trace or request-log line was dropped because its queue was full, by queue."
    );
    metrics::describe_counter!(EXPORT_ERRORS_TOTAL, "OTLP export requests that failed, by signal (traces, logs).");
    metrics::describe_counter!(EXPORTED_TOTAL, "Spans and log records sent to the OTLP collector, by signal.");
}

/// What one request's observation collects on its way; the request's
/// `Record` owns it (behind an `Rc`, shared with the attempt loop).
pub struct RequestObs {
    observer: Arc<Observer>,
    names: Arc<Names>,
    pub trace: Option<TraceCtx>,
    wall_start: SystemTime,
    start: Instant,
    attempts: RefCell<Vec<Attempt>>,
    response: RefCell<Response>,
}

/// One attempt at one deployment, as the attempt loop saw it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Its span's id (0 when traces are off).
    pub span_id: u64,
    /// Model index and its deployment index, and the flat deployment id.
    pub model: usize,
    pub deployment: usize,
    pub id: usize,
    /// From the request's start.
    pub start: Duration,
    pub end: Option<Duration>,
    /// `Ok` or the error's metric label; `None`: dropped before it ended
    /// (the losing side of a hedge).
    pub outcome: Option<Result<(), &'static str>>,
    /// Time to the first stream event, for a stream that got one.
    pub ttft: Option<Duration>,
}

/// What the answer said, collected only when traces need it.
#[derive(Debug, Default, Clone)]
pub struct Response {
    /// The `model` the upstream answered with.
    pub model: Option<String>,
    /// The prompt and the answer, only with `record_content`.
    pub input: Option<String>,
    pub output: Option<String>,
}

impl RequestObs {
    /// Note an attempt starting; the returned guard notes its end (or, if
    /// dropped first, that it was abandoned).
    pub fn attempt(&self, model: usize, deployment: usize, id: usize) -> AttemptSpan<'_> {
        let span_id = self.trace.as_ref().map_or(0, |_| trace::new_span_id());
        let mut a = self.attempts.borrow_mut();
        a.push(Attempt {
            span_id,
            model,
            deployment,
            id,
            start: self.start.elapsed(),
            end: None,
            outcome: None,
            ttft: None,
        });
        AttemptSpan { obs: self, index: a.len() - 1, span_id, ended: false }
    }

    /// The W3C `traceparent` (and `tracestate`) for an upstream call made
    /// by the attempt `span_id`.
    pub fn traceparent(&self, span_id: u64) -> Option<trace::Outgoing> {
        self.trace.as_ref().map(|t| t.outgoing(span_id))
    }

    /// Does anything want the answer's content or model?
    pub fn wants_response(&self) -> bool {
        self.trace.as_ref().is_some_and(|t| t.sampled)
    }

    /// Record content only with `record_content`; `None` otherwise.
    pub fn content_limit(&self) -> Option<usize> {
        self.observer.traces.as_ref().filter(|t| t.record_content).map(|t| t.max_content_bytes)
    }

    pub fn response(&self) -> std::cell::RefMut<'_, Response> {
        self.response.borrow_mut()
    }

    /// The request ended: hand it to the queues.
    pub fn finish(&self, end: End) {
        let f = Finished {
            end,
            trace: self.trace.clone(),
            names: self.names.clone(),
            wall_start: self.wall_start,
            attempts: self.attempts.take(),
            response: self.response.take(),
        };
        self.observer.submit(f);
    }
}

/// An attempt in progress. Ends with [`AttemptSpan::end`]; dropped unended,
/// the attempt is marked abandoned (a hedge's loser).
pub struct AttemptSpan<'a> {
    obs: &'a RequestObs,
    index: usize,
    pub span_id: u64,
    ended: bool,
}

impl AttemptSpan<'_> {
    pub fn end(mut self, outcome: Result<(), &'static str>, ttft: Option<Duration>) {
        self.ended = true;
        let at = self.obs.start.elapsed();
        if let Some(a) = self.obs.attempts.borrow_mut().get_mut(self.index) {
            a.end = Some(at);
            a.outcome = Some(outcome);
            a.ttft = ttft;
        }
    }
}

impl Drop for AttemptSpan<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let at = self.obs.start.elapsed();
        if let Ok(mut a) = self.obs.attempts.try_borrow_mut()
            && let Some(a) = a.get_mut(self.index)
        {
            a.end = Some(at);
        }
    }
}

/// What the request's `Record` knows at its end.
#[derive(Debug, Clone)]
pub struct End {
    pub request_id: String,
    pub endpoint: Endpoint,
    pub key: Option<String>,
    /// The key's team (runtime keys may have one).
    pub team: Option<String>,
    /// Requested model, and `(model, deployment)` that served.
    pub model: Option<usize>,
    pub served: Option<(usize, usize)>,
    /// HTTP status sent (200 for streams, whatever happened after).
    pub status: u16,
    /// `ok`, `stream_error` or `client_gone`.
    pub outcome: &'static str,
    /// The error's code, when the request failed.
    pub error: Option<&'static str>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub cache: Option<&'static str>,
    pub stream: bool,
    pub total: Duration,
    /// Until the response head went out, upstream waits excluded.
    pub gateway: Duration,
    /// Every attempt's wait for its upstream.
    pub upstream: Duration,
}

/// A finished request, as the writer and the exporter get it.
#[derive(Debug)]
pub struct Finished {
    pub end: End,
    pub trace: Option<TraceCtx>,
    /// The names of the snapshot the request started on.
    pub names: Arc<Names>,
    pub wall_start: SystemTime,
    pub attempts: Vec<Attempt>,
    pub response: Response,
}

impl Finished {
    /// An attempt is a hedge when it started while an earlier attempt of
    /// the same request was still waiting for its upstream: the only way
    /// two attempts of one request overlap.
    pub fn is_hedge(&self, i: usize) -> bool {
        let Some(a) = self.attempts.get(i) else { return false };
        self.attempts[..i].iter().any(|b| b.end.is_none_or(|e| e > a.start))
    }

    /// Why attempt `i` was made: the previous attempt's error (not for a
    /// hedge, which races rather than retries).
    pub fn retry_reason(&self, i: usize) -> Option<&'static str> {
        if i == 0 || self.is_hedge(i) {
            return None;
        }
        match self.attempts.get(i - 1)?.outcome {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
}
