//! The OTLP exporter: a thread of its own that turns finished requests
//! into spans (one per request, one child per attempt) and, when the
//! request log asks, log records, and sends them to the collector over
//! OTLP/HTTP protobuf in batches (`opentelemetry-otlp`'s exporters on a
//! hyper client, `opentelemetry-http`).
//!
//! Why not the SDK's `BatchSpanProcessor` behind a `Tracer`: a tracer would
//! put span building (attribute vectors, strings, a clock read per span)
//! on the request path, and the processor's queue drops silently. Here the
//! request path hands over indices and durations only, the strings are
//! made on this thread, and the one queue's drops are counted
//! (`sluice_telemetry_dropped_total{queue="export"}`). Sampling and the
//! W3C propagation are still the SDK's (`super::trace`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_otlp::{LogExporter, Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::log::Line;
use super::trace::operation;
use super::{DROPPED_TOTAL, EXPORT_ERRORS_TOTAL, EXPORTED_TOTAL, Finished, Names};
use crate::config::OtlpConfig;

pub(super) struct Queue {
    tx: mpsc::Sender<Arc<Finished>>,
    dropped: metrics::Counter,
    close: std::sync::Mutex<Option<(oneshot::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

impl Queue {
    pub(super) fn start(cfg: &OtlpConfig, traces: bool, logs: bool) -> Result<Queue, String> {
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        let (close_tx, close_rx) = oneshot::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("sluice-otlp".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the OTLP exporter's runtime: no telemetry is exported");
                        return;
                    }
                };
                rt.block_on(async move {
                    match Exporter::new(&cfg, traces, logs) {
                        Ok(mut ex) => ex.run(rx, close_rx, &cfg).await,
                        Err(e) => tracing::error!(error = %e, "cannot build the OTLP exporter: no telemetry is exported"),
                    }
                });
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start the OTLP exporter: {e}"))?;
        Ok(Queue {
            tx,
            dropped: metrics::counter!(DROPPED_TOTAL, "queue" => "export"),
            close: std::sync::Mutex::new(Some((close_tx, done_rx))),
        })
    }

    pub(super) fn push(&self, f: Arc<Finished>) {
        match self.tx.try_send(f) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => self.dropped.increment(1),
        }
    }

    /// Export what is queued, then stop; waits until `deadline` at most.
    pub(super) fn close(&self, deadline: Instant) {
        let Some((close, done)) = self.close.lock().ok().and_then(|mut c| c.take()) else { return };
        let _ = close.send(());
        let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

struct Exporter {
    spans: Option<SpanExporter>,
    logs: Option<(LogExporter, SdkLogger, SdkLoggerProvider)>,
    scope: InstrumentationScope,
    errors_traces: metrics::Counter,
    errors_logs: metrics::Counter,
    sent_spans: metrics::Counter,
    sent_logs: metrics::Counter,
}

impl Exporter {
    fn new(cfg: &OtlpConfig, traces: bool, logs: bool) -> Result<Exporter, String> {
        let resource = Resource::builder_empty().with_service_name(cfg.service_name.clone()).build();
        let headers: std::collections::HashMap<String, String> =
            cfg.headers.iter().map(|(n, v)| (n.clone(), v.expose().to_string())).collect();
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let client = || {
            // http:// and https:// (rustls, the webpki roots), as the upstream client does.
            let connector =
                hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
            HyperClient::new(connector, timeout, None)
        };
        let spans = if traces {
            let mut e = SpanExporter::builder()
                .with_http()
                .with_http_client(client())
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(format!("{}/v1/traces", cfg.endpoint))
                .with_timeout(timeout)
                .with_headers(headers.clone())
                .build()
                .map_err(|e| e.to_string())?;
            e.set_resource(&resource);
            Some(e)
        } else {
            None
        };
        let logs = if logs {
            let mut e = LogExporter::builder()
                .with_http()
                .with_http_client(client())
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(format!("{}/v1/logs", cfg.endpoint))
                .with_timeout(timeout)
                .with_headers(headers)
                .build()
                .map_err(|e| e.to_string())?;
            e.set_resource(&resource);
            // A provider with no processor: only its record factory is used;
            // records go to the exporter in this thread's batches.
            let provider = SdkLoggerProvider::builder().build();
            let logger = provider.logger("sluice");
            Some((e, logger, provider))
        } else {
            None
        };
        Ok(Exporter {
            spans,
            logs,
            scope: InstrumentationScope::builder("sluice").with_version(env!("CARGO_PKG_VERSION")).build(),
            errors_traces: metrics::counter!(EXPORT_ERRORS_TOTAL, "signal" => "traces"),
            errors_logs: metrics::counter!(EXPORT_ERRORS_TOTAL, "signal" => "logs"),
            sent_spans: metrics::counter!(EXPORTED_TOTAL, "signal" => "traces"),
            sent_logs: metrics::counter!(EXPORTED_TOTAL, "signal" => "logs"),
        })
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Arc<Finished>>, mut close: oneshot::Receiver<()>, cfg: &OtlpConfig) {
        let interval = Duration::from_millis(cfg.export_interval_ms);
        let mut batch: Vec<Arc<Finished>> = Vec::with_capacity(cfg.batch_size);
        loop {
            // Wait for the first record, then at most `interval` for more.
            tokio::select! {
                n = rx.recv_many(&mut batch, cfg.batch_size) => if n == 0 { break },
                _ = &mut close => break,
            }
            let until = tokio::time::Instant::now() + interval;
            while batch.len() < cfg.batch_size {
                let room = cfg.batch_size - batch.len();
                tokio::select! {
                    n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                    _ = tokio::time::sleep_until(until) => break,
                }
            }
            self.export(std::mem::take(&mut batch)).await;
        }
        // Closing: what is still queued goes out too.
        rx.close();
        while rx.recv_many(&mut batch, cfg.batch_size).await > 0 {
            self.export(std::mem::take(&mut batch)).await;
        }
    }

    async fn export(&mut self, batch: Vec<Arc<Finished>>) {
        if let Some(ex) = &self.spans {
            let spans: Vec<SpanData> = batch.iter().flat_map(|f| spans(f, &f.names, &self.scope)).collect();
            let n = spans.len() as u64;
            if n > 0 {
                match ex.export(spans).await {
                    Ok(()) => self.sent_spans.increment(n),
                    Err(e) => {
                        self.errors_traces.increment(1);
                        tracing::warn!(error = %e, spans = n, "OTLP trace export failed; these spans are lost");
                    }
                }
            }
        }
        if let Some((ex, logger, _)) = &self.logs {
            let records: Vec<SdkLogRecord> = batch.iter().map(|f| log_record(f, logger, &f.names)).collect();
            let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> = records.iter().map(|r| (r, &self.scope)).collect();
            let n = pairs.len() as u64;
            if n > 0 {
                match ex.export(LogBatch::new(&pairs)).await {
                    Ok(()) => self.sent_logs.increment(n),
                    Err(e) => {
                        self.errors_logs.increment(1);
                        tracing::warn!(error = %e, records = n, "OTLP log export failed; these records are lost");
                    }
                }
            }
        }
    }
}

/// The request's span and one child per attempt; none for an unsampled request.
pub fn spans(f: &Finished, names: &Names, scope: &InstrumentationScope) -> Vec<SpanData> {
    let Some(t) = f.trace.as_ref().filter(|t| t.sampled) else { return Vec::new() };
    let e = &f.end;
    let trace_id = TraceId::from(t.trace_id);
    let state = t.state.clone().unwrap_or_default();
    let ctx = |span: u64| SpanContext::new(trace_id, SpanId::from(span), TraceFlags::SAMPLED, false, state.clone());
    let at = |d: Duration| f.wall_start + d;
    let op = operation(e.endpoint);
    let requested = e.model.map(|m| names.model(m));
    let served = e.served.and_then(|(m, d)| names.deployment(m, d));

    let mut a = vec![
        KeyValue::new("gen_ai.operation.name", op),
        KeyValue::new("sluice.request_id", e.request_id.clone()),
        KeyValue::new("sluice.route", e.endpoint.label()),
        KeyValue::new("http.response.status_code", i64::from(e.status)),
        KeyValue::new("sluice.outcome", e.outcome),
        KeyValue::new("sluice.stream", e.stream),
        KeyValue::new("sluice.attempts", f.attempts.len() as i64),
        KeyValue::new("sluice.gateway_ms", e.gateway.as_secs_f64() * 1000.0),
        KeyValue::new("sluice.upstream_ms", e.upstream.as_secs_f64() * 1000.0),
    ];
    if let Some(m) = requested {
        a.push(KeyValue::new("gen_ai.request.model", m.to_string()));
    }
    if let Some(d) = served {
        a.push(KeyValue::new("gen_ai.provider.name", d.provider_system));
        a.push(KeyValue::new("sluice.deployment", d.label.clone()));
    }
    if let Some((m, _)) = e.served {
        a.push(KeyValue::new("sluice.served_model", names.model(m).to_string()));
    }
    let response_model = f.response.model.clone().or_else(|| served.map(|d| d.upstream_model.clone()));
    if let Some(m) = response_model {
        a.push(KeyValue::new("gen_ai.response.model", m));
    }
    if let Some(u) = e.usage {
        a.push(KeyValue::new("gen_ai.usage.input_tokens", u.prompt_tokens as i64));
        a.push(KeyValue::new("gen_ai.usage.output_tokens", u.completion_tokens as i64));
    }
    if let Some(c) = e.cost_usd {
        a.push(KeyValue::new("sluice.cost_usd", c));
    }
    if let Some(c) = e.cache {
        a.push(KeyValue::new("sluice.cache", c));
    }
    if let Some(k) = &e.key {
        a.push(KeyValue::new("sluice.key", k.clone()));
    }
    if let Some(t) = &e.team {
        a.push(KeyValue::new("sluice.team", t.clone()));
    }
    if let Some(err) = e.error {
        a.push(KeyValue::new("error.type", err));
    }
    if let Some(ttft) = f.attempts.iter().rev().find(|x| x.outcome == Some(Ok(()))).and_then(|x| x.ttft) {
        a.push(KeyValue::new("gen_ai.server.time_to_first_token", ttft.as_secs_f64()));
    }
    if let Some(i) = &f.response.input {
        a.push(KeyValue::new("gen_ai.input.messages", i.clone()));
    }
    if let Some(o) = &f.response.output {
        a.push(KeyValue::new("gen_ai.output.messages", o.clone()));
    }
    // A server span is an error only for the server's failures (5xx) and
    // streams that broke, not for a client's 4xx.
    let status = match (e.status, e.outcome) {
        (500.., _) | (_, "stream_error") => Status::error(e.error.unwrap_or("error")),
        _ => Status::Unset,
    };
    let name = match requested {
        Some(m) => format!("{op} {m}"),
        None => op.to_string(),
    };
    let mut out = vec![SpanData {
        span_context: ctx(t.span_id),
        parent_span_id: t.parent.map_or(SpanId::INVALID, SpanId::from),
        parent_span_is_remote: t.parent.is_some(),
        span_kind: SpanKind::Server,
        name: Cow::Owned(name),
        start_time: f.wall_start,
        end_time: at(e.total),
        attributes: a,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }];
    for (i, x) in f.attempts.iter().enumerate() {
        let d = names.deployment(x.model, x.deployment);
        let kind = if f.is_hedge(i) {
            "hedge"
        } else if e.model.is_some_and(|m| m != x.model) {
            "fallback"
        } else {
            "attempt"
        };
        let mut a = vec![
            KeyValue::new("gen_ai.operation.name", op),
            KeyValue::new("sluice.attempt.kind", kind),
            KeyValue::new("sluice.attempt.number", i as i64 + 1),
            KeyValue::new("sluice.model", names.model(x.model).to_string()),
        ];
        if let Some(d) = d {
            a.push(KeyValue::new("gen_ai.provider.name", d.provider_system));
            a.push(KeyValue::new("gen_ai.request.model", d.upstream_model.clone()));
            a.push(KeyValue::new("sluice.deployment", d.label.clone()));
            a.push(KeyValue::new("sluice.provider", d.provider.clone()));
        }
        if let Some(r) = f.retry_reason(i) {
            a.push(KeyValue::new("sluice.retry.reason", r));
        }
        if let Some(ttft) = x.ttft {
            a.push(KeyValue::new("gen_ai.server.time_to_first_token", ttft.as_secs_f64()));
        }
        let status = match x.outcome {
            Some(Ok(())) => Status::Ok,
            Some(Err(err)) => {
                a.push(KeyValue::new("error.type", err));
                Status::error(err)
            }
            None => {
                a.push(KeyValue::new("sluice.attempt.cancelled", true));
                Status::Unset
            }
        };
        let name = match d {
            Some(d) => format!("{op} {}", d.upstream_model),
            None => op.to_string(),
        };
        out.push(SpanData {
            span_context: ctx(x.span_id),
            parent_span_id: SpanId::from(t.span_id),
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Owned(name),
            start_time: at(x.start),
            end_time: at(x.end.unwrap_or(e.total)),
            attributes: a,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope.clone(),
        });
    }
    out
}

/// The request-log line as an OTLP log record, in the request's trace.
fn log_record(f: &Finished, logger: &SdkLogger, names: &Names) -> SdkLogRecord {
    let mut r = logger.create_log_record();
    let now = SystemTime::now();
    r.set_timestamp(f.wall_start + f.end.total);
    r.set_observed_timestamp(now);
    r.set_event_name("sluice.request");
    let failed = f.end.status >= 500 || f.end.outcome == "stream_error";
    r.set_severity_number(if failed { Severity::Warn } else { Severity::Info });
    r.set_severity_text(if failed { "WARN" } else { "INFO" });
    let body = sonic_rs::to_string(&Line::of(f, names)).unwrap_or_default();
    r.set_body(AnyValue::String(body.into()));
    r.add_attribute("sluice.request_id", f.end.request_id.clone());
    r.add_attribute("http.response.status_code", i64::from(f.end.status));
    if let Some(t) = &f.trace {
        let flags = if t.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        r.set_trace_context(TraceId::from(t.trace_id), SpanId::from(t.span_id), Some(flags));
    }
    r
}
