//! The HTTP server: workers, limits, start-up and graceful shutdown.

pub mod routes;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::KeepAlive;
use actix_web::{App, HttpServer, web};
use sluice_actors::availability::{AvailabilitySpec, ProbeSpec};
use sluice_actors::circuit_breakers::BreakerConfig;
use sluice_actors::rate_limiter::{Budgets, LimiterSpec, SpendTable};
use sluice_actors::{Actors, ActorsSpec};

use crate::config::Config;
use crate::gateway::{Gateway, WorkerState};
use crate::limits::LimitScopes;
use crate::metrics::MetricsTable;
use crate::providers::Provider;
use crate::route::ModelTable;
use crate::upstream::outcomes::OutcomeSink;
use crate::upstream::{Upstreams, WorkerUpstreams};

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the metrics exporter: {0}")]
    Metrics(String),
    #[error("{0}")]
    Provider(String),
    #[error("cannot start the actors: {0}")]
    Actors(#[from] sluice_actors::StartError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the gateway on `listener` until `shutdown` resolves, then stop taking
/// connections and let in-flight requests and streams finish for up to
/// `server.shutdown_timeout_ms`. Must be called inside an actix `System`.
///
/// This is the seam `main` and the integration tests share.
pub async fn run<S>(listener: TcpListener, config: Config, shutdown: S) -> Result<(), RunError>
where
    S: Future<Output = ()> + Send + 'static,
{
    widen_backlog(&listener);
    let metrics = crate::metrics::install().map_err(RunError::Metrics)?;
    let providers = config
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| Provider::from_config(i, p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RunError::Provider)?;
    let models = ModelTable::from_config(&config);
    let scopes = LimitScopes::from_config(&config, &models);
    let actors = Actors::start(actors_spec(&config, &providers, &models, &scopes))?;
    spawn_metrics_upkeep(&actors, metrics.clone());

    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    // actix-server's deadline has whole-second granularity: round up.
    let grace_s = config.server.shutdown_timeout_ms.div_ceil(1000);
    let max_body = config.server.max_body_bytes;
    let busy_poll_us = config.server.busy_poll_us;
    let timeouts = ClientTimeouts {
        request_head_ms: config.server.client_request_timeout_ms,
        disconnect_ms: config.server.client_disconnect_timeout_ms,
        keep_alive_ms: config.server.keep_alive_ms,
    };
    let upstreams = Arc::new(Upstreams {
        routing: config.routing.clone(),
        metrics: Arc::new(MetricsTable::new(&models)),
        models,
        providers,
        scopes,
        sessions: actors.sessions.clone(),
        breakers: actors.breakers.clone(),
        availability: actors.availability.clone(),
        limiter: actors.limiter.clone(),
    });
    let gateway = Arc::new(Gateway::new(config, upstreams, &actors, metrics));

    let for_signal = gateway.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; waiting for in-flight requests");
        for_signal.begin_shutdown();
    };

    let server = HttpServer::new(move || {
        let gateway = gateway.clone();
        let upstreams = gateway.upstreams.clone();
        // Each worker builds its own pools and joins UpstreamSessions'
        // registry, which has them warmed on this worker's runtime.
        let clients = upstreams.sessions.join_worker();
        let activity = std::rc::Rc::new(crate::busy_poll::Activity::default());
        if busy_poll_us > 0 {
            actix_web::rt::spawn(crate::busy_poll::spin(activity.clone(), Duration::from_micros(busy_poll_us)));
        }
        let outcomes =
            OutcomeSink::new(upstreams.breakers.clone(), upstreams.availability.clone(), upstreams.limiter.clone());
        let upstream = WorkerUpstreams { upstreams, clients, outcomes, activity };
        App::new()
            .app_data(web::Data::new(WorkerState { gateway, upstream }))
            .app_data(web::PayloadConfig::new(max_body))
            .configure(routes::configure)
    })
    .workers(workers)
    .backlog(BACKLOG as u32)
    .tcp_nodelay(true)
    // Every phase of a client's request is bounded ([server] in
    // docs/configuration.md): its head, its body (request::ingress), an
    // idle keep-alive connection, and the close.
    .client_request_timeout(Duration::from_millis(timeouts.request_head_ms))
    .client_disconnect_timeout(Duration::from_millis(timeouts.disconnect_ms))
    .keep_alive(match timeouts.keep_alive_ms {
        0 => KeepAlive::Disabled,
        ms => KeepAlive::Timeout(Duration::from_millis(ms)),
    })
    .shutdown_timeout(grace_s)
    .shutdown_signal(shutdown)
    .listen(listener)?
    .run();

    tracing::info!(workers, "sluice is serving");
    let result = server.await;
    actors.stop();
    result.map_err(RunError::Io)
}

/// How many connections may wait to be accepted. `std::net::TcpListener`
/// listens with a backlog of 128, and actix's own `backlog()` applies only
/// to sockets it binds itself; with 128, a burst of connections (10,000
/// clients opening at once) overflows the queue, the kernel drops SYNs and
/// clients wait out a 1 s retransmit. `listen()` again on a listening
/// socket updates its backlog (capped by `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

fn widen_backlog(listener: &TcpListener) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::net::listen(listener, BACKLOG) {
        tracing::warn!(error = %e, "cannot widen the listen backlog; it stays at the default");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = listener;
}

/// The client-facing timeouts actix enforces.
struct ClientTimeouts {
    request_head_ms: u64,
    disconnect_ms: u64,
    keep_alive_ms: u64,
}

/// What the actors start with, from the config: each provider's pool, the
/// breaker tuning, and the flat list of deployments (the model table's ids
/// and labels) with their providers and health probes.
fn actors_spec(config: &Config, providers: &[Provider], models: &ModelTable, scopes: &LimitScopes) -> ActorsSpec {
    let sessions: Vec<_> = providers.iter().zip(&config.providers).map(|(p, c)| p.session_spec(c)).collect();
    let labels: Vec<String> = models.deployments().map(|(_, d)| d.label.clone()).collect();
    let provider_of = models.deployments().map(|(_, d)| d.provider).collect();
    let probes = config
        .providers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.health_probe_interval_ms > 0)
        .filter_map(|(i, p)| {
            let request = sessions.get(i)?.as_ref()?.warm_request.clone()?;
            Some(ProbeSpec {
                provider: i,
                interval: Duration::from_millis(p.health_probe_interval_ms),
                timeout: Duration::from_millis(p.health_probe_timeout_ms),
                request,
            })
        })
        .collect();
    let b = &config.breaker;
    let breaker = BreakerConfig {
        window: Duration::from_millis(b.window_ms),
        min_requests: b.min_requests,
        failure_count: b.failure_count,
        failure_ratio: b.failure_ratio,
        cooldown: Duration::from_millis(b.cooldown_ms),
        cooldown_max: Duration::from_millis(b.cooldown_max_ms),
        half_open_probes: b.half_open_probes,
        retry_after_cap: Duration::from_millis(config.routing.retry_after_cap_ms),
        probe_timeout: longest_attempt(config) + Duration::from_secs(1),
    };
    let availability = AvailabilitySpec {
        labels: labels.into(),
        provider_of,
        provider_names: config.providers.iter().map(|p| p.name.clone()).collect(),
        probes,
    };
    // Spend per key (the table adds the anonymous policy's slot) and per model.
    let spend_keys: Vec<(String, Budgets)> = config
        .keys
        .iter()
        .map(|k| (k.name.clone(), Budgets { daily_usd: k.daily_budget_usd, monthly_usd: k.monthly_budget_usd }))
        .collect();
    let limiter = LimiterSpec {
        scopes: scopes.specs.clone(),
        spend: SpendTable::new(spend_keys, config.models.iter().map(|m| m.name.clone()).collect()),
        store: config.spend_store.clone(),
        max_queue: config.queue.max_size,
    };
    let cache = sluice_actors::response_cache::StoreLimits {
        max_bytes: config.cache.max_bytes,
        max_entry_bytes: config.cache.max_entry_bytes,
    };
    let replicas = config.shared.as_ref().map(|s| sluice_actors::replicas::ReplicasSpec {
        url: s.redis_url.expose().to_string(),
        timeout: Duration::from_millis(s.timeout_ms),
        probe_interval: Duration::from_millis(s.probe_interval_ms),
        prefix: s.prefix.clone(),
    });
    ActorsSpec { sessions, breaker, availability, limiter, cache, replicas }
}

/// The longest one upstream attempt may take, by the configured timeouts:
/// a half-open probe silent for longer than that is lost, not slow.
fn longest_attempt(config: &Config) -> Duration {
    let providers = config.providers.iter().map(|p| p.total_timeout_ms.max(p.first_byte_timeout_ms));
    let models =
        config.models.iter().map(|m| m.timeouts.total_ms.unwrap_or(0).max(m.timeouts.first_byte_ms.unwrap_or(0)));
    Duration::from_millis(providers.chain(models).max().unwrap_or(0))
}

/// The Prometheus exporter folds histogram samples only when asked; do it
/// periodically on the actor thread so memory stays bounded between scrapes.
fn spawn_metrics_upkeep(actors: &Actors, handle: metrics_exporter_prometheus::PrometheusHandle) {
    actors.arbiter().spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            // Caught, so one bad fold cannot end upkeep (and let histogram
            // memory grow) for the rest of the process.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle.run_upkeep())).is_err() {
                tracing::error!("metrics upkeep panicked; it runs again at the next tick");
            }
        }
    });
}
