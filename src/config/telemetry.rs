//! `[telemetry]`: where traces and the request log go. Both are off unless
//! their table is written, and cost the request path one branch when off.

use std::path::PathBuf;

use super::Secret;

/// `[telemetry]` as validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector (`otlp_endpoint`); required by traces and by
    /// the request log's `otlp = true`.
    pub otlp: Option<OtlpConfig>,
    /// `[telemetry.traces]`: one span per request, one per attempt.
    pub traces: Option<TracesConfig>,
    /// `[telemetry.request_log]`: one JSON line per request.
    pub request_log: Option<RequestLogConfig>,
}

/// An OTLP/HTTP (protobuf) collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// Base URL such as `http://otel-collector:4318`; `/v1/traces` and
    /// `/v1/logs` are appended, as `OTEL_EXPORTER_OTLP_ENDPOINT` does.
    pub endpoint: String,
    /// Sent with every export (e.g. a vendor's API key): secrets.
    pub headers: Vec<(String, Secret)>,
    /// The resource's `service.name`.
    pub service_name: String,
    /// How long one export request may take.
    pub timeout_ms: u64,
    /// Longest a finished span or log record waits before it is sent.
    pub export_interval_ms: u64,
    /// Records per export request.
    pub batch_size: usize,
    /// Finished requests waiting for export; beyond it they are dropped (counted).
    pub queue_size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TracesConfig {
    /// Share of new traces recorded, 0 to 1. A client's `traceparent`
    /// decides for its own trace (parent-based sampling).
    pub sample_ratio: f64,
    /// Put prompts and answers on the spans. Off by default: they may hold
    /// personal data, and a trace backend is rarely the place for it.
    pub record_content: bool,
    /// Longest prompt or answer text put on a span, in bytes (cut beyond).
    pub max_content_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLogConfig {
    pub target: LogTarget,
    /// Rotate the file once it would grow past this.
    pub max_bytes: u64,
    /// Rotated files kept (`requests.jsonl.1` … `.N`); older ones are deleted.
    pub max_files: u32,
    /// Lines waiting to be written; beyond it they are dropped (counted).
    pub queue_size: usize,
    /// Also send each record as an OTLP log record.
    pub otlp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}
