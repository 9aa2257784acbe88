//! Metric names, descriptions and the Prometheus exporter.
//!
//! The recorder is process-global (the `metrics` crate's design), so it is
//! installed once; several gateways in one test process share it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Price;
use crate::providers::{Endpoint, Usage};
use crate::request::record::{Outcome, cost_usd};

pub const REQUESTS_TOTAL: &str = "sluice_requests_total";
pub const REQUEST_DURATION: &str = "sluice_request_duration_seconds";
pub const GATEWAY_OVERHEAD: &str = "sluice_gateway_overhead_seconds";
pub const UPSTREAM_TTFT: &str = "sluice_upstream_ttft_seconds";
pub const UPSTREAM_ATTEMPTS: &str = "sluice_upstream_attempts_total";
pub const TOKENS_TOTAL: &str = "sluice_tokens_total";
pub const COST_USD_TOTAL: &str = "sluice_cost_usd_total";
pub const CLIENT_DISCONNECTS: &str = "sluice_client_disconnects_total";

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Install the Prometheus recorder (first call) and return its handle.
pub fn install() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets(&latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(GATEWAY_OVERHEAD.into()), &latency[..12]))
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
}

fn describe() {
    describe_counter!(REQUESTS_TOTAL, "Requests answered, by route, model and status (or stream outcome).");
    describe_histogram!(REQUEST_DURATION, metrics::Unit::Seconds, "Whole request duration, stream included.");
    describe_histogram!(
        GATEWAY_OVERHEAD,
        metrics::Unit::Seconds,
        "Time Sluice itself spent before the response head went out, upstream waits excluded."
    );
    describe_histogram!(
        UPSTREAM_TTFT,
        metrics::Unit::Seconds,
        "Per attempt: time from sending to the upstream until its answer (or first stream event) arrived."
    );
    describe_counter!(UPSTREAM_ATTEMPTS, "Upstream attempts by deployment and outcome (ok or error kind).");
    describe_counter!(TOKENS_TOTAL, "Tokens by model and direction (input, output), as the upstream reported them.");
    describe_counter!(CLIENT_DISCONNECTS, "Requests whose client went away before the end.");
    describe_counter!("sluice_actor_restarts_total", "Actor restarts by its supervisor.");
    describe_gauge!("sluice_actor_mailbox_depth", "Messages waiting in each actor's mailbox.");
    describe_gauge!("sluice_upstream_inflight", "Upstream requests in flight per provider.");
    describe_counter!("sluice_upstream_connect_errors_total", "Failed upstream connection attempts per provider.");
}

pub fn record_overhead(e: Endpoint, d: Duration) {
    histogram!(GATEWAY_OVERHEAD, "route" => e.label()).record(d.as_secs_f64());
}

pub fn record_request(e: Endpoint, model: &str, outcome: Outcome, d: Duration) {
    let status: &'static str = match outcome {
        Outcome::Status(s) => status_label(s),
        Outcome::StreamError => "stream_error",
        Outcome::ClientGone => {
            counter!(CLIENT_DISCONNECTS, "route" => e.label()).increment(1);
            "client_gone"
        }
    };
    counter!(REQUESTS_TOTAL, "route" => e.label(), "model" => model.to_string(), "status" => status).increment(1);
    histogram!(REQUEST_DURATION, "route" => e.label()).record(d.as_secs_f64());
}

pub fn record_attempt(deployment: &str, outcome: &'static str, d: Duration) {
    counter!(UPSTREAM_ATTEMPTS, "deployment" => deployment.to_string(), "outcome" => outcome).increment(1);
    if outcome == "ok" {
        histogram!(UPSTREAM_TTFT, "deployment" => deployment.to_string()).record(d.as_secs_f64());
    }
}

pub fn record_usage(model: &str, u: &Usage, price: Option<Price>) {
    counter!(TOKENS_TOTAL, "model" => model.to_string(), "direction" => "input").increment(u.prompt_tokens);
    counter!(TOKENS_TOTAL, "model" => model.to_string(), "direction" => "output").increment(u.completion_tokens);
    if let Some(p) = price {
        add_cost(model, cost_usd(u, &p));
    }
}

/// Spend per model in USD. The `metrics` crate's counters count integers,
/// and a gauge would mistype a counter, so spend is kept here as f64 bits
/// and rendered as a proper Prometheus counter by [`render`].
static COST: LazyLock<DashMap<String, AtomicU64>> = LazyLock::new(DashMap::new);

fn add_cost(model: &str, usd: f64) {
    if !usd.is_finite() || usd <= 0.0 {
        return;
    }
    let add = |cell: &AtomicU64| {
        let _ = cell
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + usd).to_bits()));
    };
    if let Some(cell) = COST.get(model) {
        add(&cell);
        return;
    }
    add(&COST.entry(model.to_string()).or_insert_with(|| AtomicU64::new(0.0f64.to_bits())));
}

/// Spend so far for one model (for tests and `/status`).
pub fn cost_usd_total(model: &str) -> f64 {
    COST.get(model).map(|c| f64::from_bits(c.load(Ordering::Relaxed))).unwrap_or(0.0)
}

/// The exporter's text plus the spend counters.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    if !COST.is_empty() {
        out.push_str(
            "# HELP sluice_cost_usd_total Spend in USD by model, from usage and the model's configured price.\n",
        );
        out.push_str("# TYPE sluice_cost_usd_total counter\n");
        for e in COST.iter() {
            let v = f64::from_bits(e.value().load(Ordering::Relaxed));
            out.push_str(&format!("sluice_cost_usd_total{{model=\"{}\"}} {}\n", escape_label(e.key()), v));
        }
    }
    out
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn status_label(s: u16) -> &'static str {
    match s {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => match s / 100 {
            2 => "2xx",
            4 => "4xx",
            _ => "5xx",
        },
    }
}
