//! Metric names, descriptions, the Prometheus exporter, and the table of
//! pre-registered metric handles the request path records into.
//!
//! The recorder is process-global (the `metrics` crate's design), so it is
//! installed once; several gateways in one test process share it.
//!
//! Handles are registered once per model, deployment and route when the
//! gateway starts (status counters on first use), so recording a request is
//! a few atomic adds: a `counter!` macro with labels would hash and allocate
//! its labels and look them up in the registry on every call (see
//! docs/performance.md for the measurement).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Price;
use crate::endpoint::Endpoint;
use crate::route::ModelTable;
use crate::usage::Usage;

pub const REQUESTS_TOTAL: &str = "sluice_requests_total";
pub const REQUEST_DURATION: &str = "sluice_request_duration_seconds";
pub const GATEWAY_OVERHEAD: &str = "sluice_gateway_overhead_seconds";
pub const UPSTREAM_TTFT: &str = "sluice_upstream_ttft_seconds";
pub const UPSTREAM_ATTEMPTS: &str = "sluice_upstream_attempts_total";
pub const TOKENS_TOTAL: &str = "sluice_tokens_total";
pub const COST_USD_TOTAL: &str = "sluice_cost_usd_total";
pub const CLIENT_DISCONNECTS: &str = "sluice_client_disconnects_total";
pub const INGRESS_HANDOVERS: &str = "sluice_ingress_handovers_total";
pub const RETRIES_TOTAL: &str = "sluice_retries_total";
pub const FALLBACKS_TOTAL: &str = "sluice_fallbacks_total";
pub const HEDGES_TOTAL: &str = "sluice_hedges_total";
pub const HEDGE_WINS_TOTAL: &str = "sluice_hedge_wins_total";
pub const TEMPLATE_ANSWERS: &str = "sluice_template_answers_total";
pub const RATE_LIMITED_TOTAL: &str = "sluice_rate_limited_total";
pub const RETRY_AFTER_INVALID: &str = "sluice_upstream_retry_after_invalid_total";
pub const ALL_UNHEALTHY: &str = "sluice_all_unhealthy_total";
pub const CONTENT_FILTERED_TOTAL: &str = "sluice_content_filtered_total";
pub const CONFIG_RELOADS_TOTAL: &str = "sluice_config_reloads_total";
pub const UPLOADS_TOTAL: &str = "sluice_uploads_total";

/// Count an answer a provider's content filter acted on. Rare, so the
/// labels are built per call rather than pre-registered.
pub fn content_filtered(provider: &str, source: &'static str) {
    counter!(CONTENT_FILTERED_TOTAL, "provider" => provider.to_owned(), "source" => source).increment(1);
}

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The exporter keeps every histogram sample (an 8-byte slot, three per
/// request) until an upkeep folds them into buckets. On a timer alone that
/// was 5 s of traffic: ~6 MB at 45k req/s, most of Sluice's peak RSS under
/// load above its idle RSS. So each worker also asks for a fold after this
/// many requests: at most ~100 KB of samples per worker between folds, and
/// under load a dozen wake-ups a second for the fold, which does the same
/// work per sample as before.
const FOLD_EVERY: u32 = 4096;
static FOLD: tokio::sync::Notify = tokio::sync::Notify::const_new();
thread_local! {
    static SINCE_FOLD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// One request's samples recorded on this thread; asks for a fold every
/// [`FOLD_EVERY`] of them.
fn count_for_fold() {
    if SINCE_FOLD.with(|n| fold_due(n, FOLD_EVERY)) {
        FOLD.notify_one();
    }
}

/// Counts one request in `n`; true (and `n` back to 0) on the `every`-th.
fn fold_due(n: &std::cell::Cell<u32>, every: u32) -> bool {
    let v = n.get() + 1;
    n.set(if v >= every { 0 } else { v });
    v >= every
}

/// Resolves when a worker has recorded [`FOLD_EVERY`] requests since it
/// last asked (or at once, if one asked while nobody waited).
pub async fn fold_wanted() {
    FOLD.notified().await
}

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
    describe_counter!(REQUESTS_TOTAL, "Requests answered, by route, requested model and status (or stream outcome).");
    describe_histogram!(REQUEST_DURATION, metrics::Unit::Seconds, "Whole request duration, stream included.");
    describe_histogram!(
        GATEWAY_OVERHEAD,
        metrics::Unit::Seconds,
        "Time Sluice itself spent before the response head went out, upstream waits excluded."
    );
    describe_histogram!(
        UPSTREAM_TTFT,
        metrics::Unit::Seconds,
        "Per successful attempt: from sending to the upstream until its answer (or first stream event) arrived."
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        "Config reloads (SIGHUP, POST /admin/reload) by result: ok, invalid (refused file) or error."
    );
    describe_counter!(UPSTREAM_ATTEMPTS, "Upstream attempts by deployment and outcome (ok or error kind).");
    describe_counter!(
        TOKENS_TOTAL,
        "Tokens by serving model and direction (input, output), as the upstream reported them."
    );
    describe_counter!(CLIENT_DISCONNECTS, "Requests whose client went away before the end.");
    describe_counter!(
        INGRESS_HANDOVERS,
        "Client connections the fast ingress handed to actix-http, by why: its first request it does not serve is another route (route), another HTTP framing (protocol), a head it cannot read (head); off: server.fast_ingress is false."
    );
    describe_counter!(
        CONTENT_FILTERED_TOTAL,
        "Answers an Azure OpenAI content filter cut or flagged, by provider and source (prompt, completion)."
    );
    describe_counter!(RETRIES_TOTAL, "Attempts after the first, by the model of the deployment retried on.");
    describe_counter!(FALLBACKS_TOTAL, "Requests served by a fallback model, by requested and serving model.");
    describe_counter!(HEDGES_TOTAL, "Hedge requests sent (a second attempt racing a slow first one), by model.");
    describe_counter!(HEDGE_WINS_TOTAL, "Hedge requests that answered first, by model.");
    describe_counter!(
        TEMPLATE_ANSWERS,
        "Requests answered with the model's fallback_response after every deployment failed."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests refused by a rate limit, by scope and limit (requests, tokens, concurrency)."
    );
    describe_gauge!("sluice_circuit_state", "Circuit per deployment: 0 closed, 1 half-open, 2 open.");
    describe_counter!("sluice_circuit_transitions_total", "Circuit state changes per deployment, by new state.");
    describe_counter!("sluice_actor_restarts_total", "Actor restarts by its supervisor.");
    describe_counter!(
        "sluice_actor_failures_total",
        "Actors marked failed: they panicked past their restart budget and are not restarted again."
    );
    describe_gauge!("sluice_actor_mailbox_depth", "Messages waiting in each actor's mailbox.");
    describe_gauge!("sluice_upstream_inflight", "Upstream requests in flight per provider.");
    describe_counter!("sluice_upstream_connect_errors_total", "Failed upstream connection attempts per provider.");
    describe_gauge!(
        "sluice_redis_up",
        "Shared mode: 1 while Redis is in use, 0 while this replica runs on its own state."
    );
    describe_counter!("sluice_redis_errors_total", "Shared mode: Redis calls that failed or timed out.");
    describe_counter!(
        "sluice_redis_fallbacks_total",
        "Shared mode: limit decisions taken in process because Redis could not be used."
    );
    describe_counter!(
        "sluice_shared_news_total",
        "Shared mode: circuit-open and cool-down news from other replicas acted on, by kind."
    );
    describe_counter!(
        RETRY_AFTER_INVALID,
        "Upstream Retry-After values that were not a delay (negative, NaN, unreadable), by provider and reason."
    );
    describe_counter!(
        ALL_UNHEALTHY,
        "Requests that found no deployment of their model or its fallbacks admitted, by model and what Sluice did (tried_one, waited, fail_fast, rate_limited)."
    );
    describe_counter!(
        UPLOADS_TOTAL,
        "Audio uploads by how they went upstream: relayed live, or spooled to disk first."
    );
    describe_counter!(
        "sluice_upstream_resends_total",
        "Requests re-sent on a fresh connection because they provably never reached the upstream, by provider."
    );
}

/// An upstream's `Retry-After` was not a delay (rare: a counter macro is fine).
pub fn record_invalid_retry_after(provider: &str, why: sluice_upstream::retry_after::Invalid) {
    counter!(RETRY_AFTER_INVALID, "provider" => provider.to_string(), "reason" => why.label()).increment(1);
}

/// How a request ended, for `sluice_requests_total{status}` (an upstream
/// attempt's outcome is the actors' `outcome::AttemptOutcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Answered with this HTTP status (streams: 200 and the stream completed).
    Status(u16),
    /// A stream ended early with an error event.
    StreamError,
    /// The client went away before the end.
    ClientGone,
}

/// The `status` label values, each with its slot in [`StatusCounters`].
const STATUS_LABELS: [&str; 16] = [
    "200",
    "400",
    "401",
    "403",
    "404",
    "413",
    "429",
    "500",
    "502",
    "503",
    "504",
    "2xx",
    "4xx",
    "5xx",
    "stream_error",
    "client_gone",
];

fn status_slot(o: RequestOutcome) -> usize {
    match o {
        RequestOutcome::Status(s) => match s {
            200 => 0,
            400 => 1,
            401 => 2,
            403 => 3,
            404 => 4,
            413 => 5,
            429 => 6,
            500 => 7,
            502 => 8,
            503 => 9,
            504 => 10,
            _ => match s / 100 {
                2 => 11,
                4 => 12,
                _ => 13,
            },
        },
        RequestOutcome::StreamError => 14,
        RequestOutcome::ClientGone => 15,
    }
}

/// `sluice_requests_total` for one route and model, a counter per status,
/// each registered on first use so `/metrics` lists only what happened.
struct StatusCounters {
    route: &'static str,
    model: Arc<str>,
    cells: [OnceLock<Counter>; STATUS_LABELS.len()],
}

impl StatusCounters {
    fn new(route: &'static str, model: Arc<str>) -> Self {
        StatusCounters { route, model, cells: std::array::from_fn(|_| OnceLock::new()) }
    }

    fn increment(&self, o: RequestOutcome) {
        let slot = status_slot(o);
        self.cells[slot]
            .get_or_init(|| {
                counter!(REQUESTS_TOTAL, "route" => self.route, "model" => self.model.to_string(), "status" => STATUS_LABELS[slot])
            })
            .increment(1);
    }
}

struct RouteMetrics {
    duration: Histogram,
    overhead: Histogram,
    disconnects: Counter,
    /// Requests that ended before their model was known (401, 400, 404, ...).
    unknown_model: StatusCounters,
}

struct ModelMetrics {
    /// Per route, indexed like [`ROUTES`].
    requests: [StatusCounters; Endpoint::ALL.len()],
    retries: Counter,
    hedges: Counter,
    hedge_wins: Counter,
    /// The same, readable for `/status` (the exporter's handles are write-only).
    seen: RoutingCounts,
    tokens_in: Counter,
    tokens_out: Counter,
    /// Spend in USD as f64 bits (see [`MetricsTable::render`]).
    cost: AtomicU64,
    name: Arc<str>,
}

#[derive(Default)]
struct RoutingCounts {
    retries: AtomicU64,
    fallbacks: AtomicU64,
    hedges: AtomicU64,
    hedge_wins: AtomicU64,
    templates: AtomicU64,
}

pub struct DeploymentMetrics {
    pub label: String,
    /// The label as a ready `x-sluice-deployment` header value.
    pub header: Option<actix_web::http::header::HeaderValue>,
    ttft: Histogram,
    attempts_ok: Counter,
}

const ROUTES: [Endpoint; Endpoint::ALL.len()] = Endpoint::ALL;

fn route_slot(e: Endpoint) -> usize {
    e.index()
}

/// Every handle the request path records into, built once per gateway.
pub struct MetricsTable {
    routes: [RouteMetrics; Endpoint::ALL.len()],
    models: Vec<ModelMetrics>,
    /// `[model][deployment]`, like the config.
    deployments: Vec<Vec<DeploymentMetrics>>,
    /// The last minutes, second by second, for the dashboard: one for the
    /// process, shared by every snapshot's table so a reload keeps it.
    pub series: Arc<crate::series::Series>,
}

impl MetricsTable {
    pub fn new(models: &ModelTable) -> MetricsTable {
        let unknown: Arc<str> = Arc::from("unknown");
        let routes = ROUTES.map(|e| RouteMetrics {
            duration: histogram!(REQUEST_DURATION, "route" => e.label()),
            overhead: histogram!(GATEWAY_OVERHEAD, "route" => e.label()),
            disconnects: counter!(CLIENT_DISCONNECTS, "route" => e.label()),
            unknown_model: StatusCounters::new(e.label(), unknown.clone()),
        });
        let by_model = models
            .models
            .iter()
            .map(|m| {
                let name: Arc<str> = Arc::from(m.name.as_str());
                ModelMetrics {
                    requests: ROUTES.map(|e| StatusCounters::new(e.label(), name.clone())),
                    retries: counter!(RETRIES_TOTAL, "model" => m.name.clone()),
                    hedges: counter!(HEDGES_TOTAL, "model" => m.name.clone()),
                    hedge_wins: counter!(HEDGE_WINS_TOTAL, "model" => m.name.clone()),
                    seen: RoutingCounts::default(),
                    tokens_in: counter!(TOKENS_TOTAL, "model" => m.name.clone(), "direction" => "input"),
                    tokens_out: counter!(TOKENS_TOTAL, "model" => m.name.clone(), "direction" => "output"),
                    cost: AtomicU64::new(0f64.to_bits()),
                    name,
                }
            })
            .collect();
        let deployments = models
            .models
            .iter()
            .map(|m| {
                m.deployments
                    .iter()
                    .map(|d| {
                        let label = d.label.clone();
                        DeploymentMetrics {
                            header: actix_web::http::header::HeaderValue::from_str(&label).ok(),
                            ttft: histogram!(UPSTREAM_TTFT, "deployment" => label.clone()),
                            attempts_ok: counter!(UPSTREAM_ATTEMPTS, "deployment" => label.clone(), "outcome" => "ok"),
                            label,
                        }
                    })
                    .collect()
            })
            .collect();
        MetricsTable { routes, models: by_model, deployments, series: Default::default() }
    }

    pub fn deployment(&self, model: usize, deployment: usize) -> Option<&DeploymentMetrics> {
        self.deployments.get(model)?.get(deployment)
    }

    pub fn record_overhead(&self, e: Endpoint, d: Duration) {
        self.routes[route_slot(e)].overhead.record(d.as_secs_f64());
    }

    /// One finished request. `model` is the requested model's index, if it was known.
    pub fn record_request(&self, e: Endpoint, model: Option<usize>, outcome: RequestOutcome, d: Duration) {
        let route = &self.routes[route_slot(e)];
        if outcome == RequestOutcome::ClientGone {
            route.disconnects.increment(1);
        }
        match model.and_then(|m| self.models.get(m)) {
            Some(m) => m.requests[route_slot(e)].increment(outcome),
            None => route.unknown_model.increment(outcome),
        }
        route.duration.record(d.as_secs_f64());
        count_for_fold();
        let failed = match outcome {
            RequestOutcome::Status(s) => s >= 500,
            RequestOutcome::StreamError => true,
            RequestOutcome::ClientGone => false,
        };
        self.series.record(d, failed);
    }

    /// One upstream attempt. Successes use their pre-registered handles; the
    /// rarer failures register their outcome label on the fly.
    pub fn record_attempt(&self, model: usize, deployment: usize, outcome: Result<(), &'static str>, d: Duration) {
        let Some(dep) = self.deployment(model, deployment) else { return };
        match outcome {
            Ok(()) => {
                dep.attempts_ok.increment(1);
                dep.ttft.record(d.as_secs_f64());
            }
            Err(label) => {
                counter!(UPSTREAM_ATTEMPTS, "deployment" => dep.label.clone(), "outcome" => label).increment(1);
            }
        }
    }

    /// A retry (any attempt after the first) on a deployment of `model`.
    pub fn record_retry(&self, model: usize) {
        if let Some(m) = self.models.get(model) {
            m.retries.increment(1);
            m.seen.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A hedge was sent for a request to `model` (`won`: the hedge answered first).
    pub fn record_hedge(&self, model: usize, won: bool) {
        if let Some(m) = self.models.get(model) {
            if won {
                m.hedge_wins.increment(1);
                m.seen.hedge_wins.fetch_add(1, Ordering::Relaxed);
            } else {
                m.hedges.increment(1);
                m.seen.hedges.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A request for `requested` was served by the fallback model `served`.
    pub fn record_fallback(&self, requested: usize, served: usize) {
        let (Some(a), Some(b)) = (self.models.get(requested), self.models.get(served)) else { return };
        a.seen.fallbacks.fetch_add(1, Ordering::Relaxed);
        counter!(FALLBACKS_TOTAL, "from" => a.name.to_string(), "to" => b.name.to_string()).increment(1);
    }

    /// A request answered with the model's template.
    pub fn record_template(&self, model: usize) {
        if let Some(m) = self.models.get(model) {
            m.seen.templates.fetch_add(1, Ordering::Relaxed);
            counter!(TEMPLATE_ANSWERS, "model" => m.name.to_string()).increment(1);
        }
    }

    /// Per model: retries, fallbacks taken, hedges, hedge wins and template
    /// answers so far, for `/status`.
    pub fn routing_status(&self) -> Vec<sonic_rs::Value> {
        self.models
            .iter()
            .map(|m| {
                let c = &m.seen;
                sonic_rs::json!({
                    "model": &*m.name,
                    "retries": c.retries.load(Ordering::Relaxed),
                    "fallbacks_taken": c.fallbacks.load(Ordering::Relaxed),
                    "hedges": c.hedges.load(Ordering::Relaxed),
                    "hedge_wins": c.hedge_wins.load(Ordering::Relaxed),
                    "template_answers": c.templates.load(Ordering::Relaxed),
                    "cost_usd": f64::from_bits(m.cost.load(Ordering::Relaxed)),
                })
            })
            .collect()
    }

    /// Tokens and spend of the model that served.
    pub fn record_usage(&self, model: usize, u: &Usage, price: Option<Price>) {
        let Some(m) = self.models.get(model) else { return };
        m.tokens_in.increment(u.prompt_tokens);
        m.tokens_out.increment(u.completion_tokens);
        if let Some(p) = price {
            let usd = cost_usd(u, &p);
            if usd.is_finite() && usd > 0.0 {
                let _ = m.cost.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    Some((f64::from_bits(bits) + usd).to_bits())
                });
            }
        }
    }

    /// Spend so far of one model, in USD.
    pub fn cost_usd_total(&self, model: usize) -> f64 {
        self.models.get(model).map_or(0.0, |m| f64::from_bits(m.cost.load(Ordering::Relaxed)))
    }

    /// The exporter's text plus `sluice_cost_usd_total{key,model}`: the
    /// `metrics` crate's counters count integers and a gauge would mistype a
    /// counter, so spend (kept by the limiter's spend table, in nano-dollars)
    /// is rendered here as a Prometheus counter.
    pub fn render(&self, handle: &PrometheusHandle, spend: &sluice_actors::rate_limiter::SpendTable) -> String {
        let mut out = handle.render();
        let rows = spend.rows();
        if !rows.is_empty() {
            out.push_str(&format!(
                "# HELP {COST_USD_TOTAL} Spend in USD by key and serving model, from usage and prices.\n"
            ));
            out.push_str(&format!("# TYPE {COST_USD_TOTAL} counter\n"));
            for (key, model, usd) in rows {
                out.push_str(&format!(
                    "{COST_USD_TOTAL}{{key=\"{}\",model=\"{}\"}} {usd}\n",
                    escape_label(key),
                    escape_label(model)
                ));
            }
        }
        out
    }
}

/// Cost in USD of `usage` at `price`; prompt tokens served from the
/// provider's cache are billed at the cached-input price when there is one.
pub fn cost_usd(u: &Usage, p: &Price) -> f64 {
    let cached = u.cached_tokens.min(u.prompt_tokens);
    let fresh = u.prompt_tokens - cached;
    let cached_price = p.cached_input_per_mtok.unwrap_or(p.input_per_mtok);
    (fresh as f64 * p.input_per_mtok + cached as f64 * cached_price + u.completion_tokens as f64 * p.output_per_mtok)
        / 1_000_000.0
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
