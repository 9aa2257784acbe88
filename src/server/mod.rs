//! The HTTP server: workers, limits, start-up and graceful shutdown; the
//! snapshot the workers share is built in [`build`] and swapped by
//! [`reload`].

pub mod build;
pub mod code_pages;
pub mod fast;
pub mod reload;
pub mod routes;

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::KeepAlive;
use actix_web::{App, web};
use sluice_actors::accounts::store::AccountsStore;
use sluice_actors::availability::AvailabilitySpec;
use sluice_actors::circuit_breakers::BreakerConfig;
use sluice_actors::rate_limiter::{LimiterSpec, SpendTable};
use sluice_actors::{Actors, ActorsSpec};

use crate::config::Config;
use crate::gateway::{AccountsCell, Live, Loaded, Worker};
use crate::upstream::outcomes::OutcomeSink;
pub use reload::ReloadSource;

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the metrics exporter: {0}")]
    Metrics(String),
    #[error("{0}")]
    Provider(String),
    #[error("cannot start telemetry: {0}")]
    Telemetry(String),
    #[error("cannot start the actors: {0}")]
    Actors(#[from] sluice_actors::StartError),
    #[error("{0}")]
    Accounts(#[from] sluice_actors::accounts::store::AccountsStoreError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// How the gateway may reload its config.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// The file `POST /admin/reload` (and SIGHUP) re-reads; `None`: the
    /// config came from no file, and a reload is refused.
    pub reload: Option<ReloadSource>,
    /// Reload on SIGHUP (the binary; tests that run several gateways in
    /// one process leave it off).
    pub sighup: bool,
    /// Once every worker serves, let the binary's code and read-only data
    /// go from the resident set ([`code_pages`]); what runs again maps
    /// back. The binary; tests that run several gateways in one process
    /// leave it off.
    pub release_code_pages: bool,
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
    run_with(listener, config, shutdown, RunOptions::default()).await
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// [`run`], with a config file to reload from.
pub async fn run_with<S>(listener: TcpListener, config: Config, shutdown: S, opts: RunOptions) -> Result<(), RunError>
where
    S: Future<Output = ()> + Send + 'static,
{
    widen_backlog(&listener);
    let metrics = crate::metrics::install().map_err(RunError::Metrics)?;
    let actors = Actors::start(actors_spec(&config))?;
    spawn_metrics_upkeep(&actors, metrics.clone());
    let store = match actors.limiter.store() {
        Some(s) => Some(AccountsStore::new(s.database().clone())?),
        None => None,
    };
    let accounts = store.as_ref().map(AccountsStore::load).transpose()?.unwrap_or_default();
    let digest = config.digest.clone();
    let observer = crate::observe::Observer::start(&config.telemetry).map_err(RunError::Telemetry)?;
    let series = Arc::new(crate::series::Series::default());
    spawn_series_sampler(&actors, series.clone());
    let builder = Arc::new(build::Builder::new(&actors, metrics, observer.clone(), series));
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    // actix-server's deadline has whole-second granularity: round up.
    let grace_s = config.server.shutdown_timeout_ms.div_ceil(1000);
    let max_body = config.server.max_body_bytes;
    let busy_poll_us = config.server.busy_poll_us;
    let fast_on = config.server.fast_ingress;
    let timeouts = ClientTimeouts {
        request_head_ms: config.server.client_request_timeout_ms,
        disconnect_ms: config.server.client_disconnect_timeout_ms,
        keep_alive_ms: config.server.keep_alive_ms,
    };
    let loaded = Loaded { digest, at_unix: unix_now() };
    let first = builder.build(Arc::new(config), loaded, &accounts).await.map_err(RunError::Provider)?.first();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(8);
    let live = Arc::new(Live::new(first, AccountsCell { accounts: Mutex::new(accounts), store }, reload_tx.clone()));
    let reloader = reload::Reloader { source: opts.reload.clone(), builder: builder.clone(), live: live.clone() };
    actix_web::rt::spawn(reloader.serve(reload_rx));
    if opts.sighup {
        actix_web::rt::spawn(reload_on_sighup(live.clone()));
    }
    if let Some(r) = &actors.replicas {
        actix_web::rt::spawn(crate::handlers::admin::follow_replicas(live.clone(), r.accounts_feed()));
    }

    let for_signal = live.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; waiting for in-flight requests");
        for_signal.load().begin_shutdown();
    };

    let sessions = actors.sessions.clone();
    let (breakers, availability, limiter) =
        (actors.breakers.clone(), actors.availability.clone(), actors.limiter.clone());
    // Workers still starting; the last one up lets the binary's read-only
    // pages go.
    let starting = Arc::new(std::sync::atomic::AtomicUsize::new(if opts.release_code_pages { workers } else { 0 }));
    // actix-web's `HttpServer`, taken apart: actix-server's accept loop and
    // workers, and on each connection the fast ingress (`fast`), which
    // hands actix-http's HTTP/1 dispatcher, with the actix-web routes, every
    // connection whose requests it does not serve itself.
    let acceptor = actix_server::Server::build();
    let graceful = acceptor.graceful_shutdown_signal();
    let server = acceptor
        .workers(workers)
        .backlog(BACKLOG as u32)
        .shutdown_timeout(grace_s)
        .shutdown_signal(shutdown)
        .listen("sluice", listener, move || {
            // Each worker builds its own pools and joins UpstreamSessions'
            // registry, which has them warmed on this worker's runtime.
            let clients = sessions.join_worker();
            let activity = std::rc::Rc::new(crate::busy_poll::Activity::new(Duration::from_micros(busy_poll_us)));
            if busy_poll_us > 0 {
                actix_web::rt::spawn(crate::busy_poll::spin(activity.clone()));
            }
            let outcomes = OutcomeSink::new(breakers.clone(), availability.clone(), limiter.clone());
            let worker = web::Data::new(Worker { live: live.clone(), clients, outcomes, activity });
            let app = App::new()
                .app_data(worker.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .configure(routes::configure);
            let signal = graceful.clone();
            let h1 = actix_http::HttpService::build()
                // Every phase of a client's request is bounded ([server] in
                // docs/configuration.md): its head, its body
                // (request::ingress), an idle keep-alive connection, and the
                // close.
                .client_request_timeout(Duration::from_millis(timeouts.request_head_ms))
                .client_disconnect_timeout(Duration::from_millis(timeouts.disconnect_ms))
                .keep_alive(match timeouts.keep_alive_ms {
                    0 => KeepAlive::Disabled,
                    ms => KeepAlive::Timeout(Duration::from_millis(ms)),
                })
                // A client that closes its side of the connection has left:
                // actix then drops the connection, and with it the
                // request's future (an upstream call still waiting for its
                // answer, a place in the limiter's queue) or its response
                // stream — the upstream call is cancelled the moment the
                // client is gone, not when a write to it fails (which,
                // before the first byte or while the upstream is silent,
                // would be never). With the default (`true`), actix keeps
                // polling the handler to completion for a client that is
                // no longer there. A client that half-closes and still
                // waits for its answer is treated as gone, as nginx does by
                // default. The fast ingress does the same.
                .h1_allow_half_closed(false)
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                .h1(actix_service::map_config(actix_service::IntoServiceFactory::into_factory(app), |_| {
                    actix_web::dev::AppConfig::default()
                }));
            let shutdown = graceful.clone();
            let starting = starting.clone();
            actix_service::fn_factory(move || {
                let h1 = actix_service::ServiceFactory::new_service(&h1, ());
                let (worker, shutdown, starting) = (worker.clone(), shutdown.clone(), starting.clone());
                async move {
                    let h1 =
                        h1.await.map_err(|e| tracing::error!(error = ?e, "cannot start a worker's HTTP service"))?;
                    // The last of the first workers to start (a worker
                    // restarted later finds the count at 0 and does nothing).
                    let left = starting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
                    if left == Ok(1) {
                        code_pages::release_soon();
                    }
                    let fast = std::rc::Rc::new(fast::Fast {
                        worker,
                        h1,
                        on: fast_on,
                        request_timeout: Duration::from_millis(timeouts.request_head_ms),
                        keep_alive: (timeouts.keep_alive_ms > 0).then(|| Duration::from_millis(timeouts.keep_alive_ms)),
                        disconnect_timeout: Duration::from_millis(timeouts.disconnect_ms),
                        shutdown,
                    });
                    Ok::<_, ()>(actix_service::fn_service(move |io: actix_rt::net::TcpStream| {
                        // Boxed: actix-server's task holds the future it is
                        // given twice (captured, then awaited), so inline the
                        // connection's ~2 KB future made a 4.3 KB task; boxed,
                        // the task is small and the future is stored once
                        // (docs/performance.md, "Peak RSS, continued").
                        Box::pin(fast::serve(io, fast.clone()))
                    }))
                }
            })
        })?
        .run();

    tracing::info!(workers, "sluice is serving");
    let result = server.await;
    drop(reload_tx);
    drop(builder);
    actors.stop();
    if let Some(o) = observer {
        // What the last requests did still goes out (bounded: a collector
        // that does not answer does not hold the exit).
        o.close(Duration::from_secs(5));
    }
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

/// The client-facing timeouts (the fast ingress's and actix-http's).
#[derive(Clone, Copy)]
struct ClientTimeouts {
    request_head_ms: u64,
    disconnect_ms: u64,
    keep_alive_ms: u64,
}

/// Reload on every SIGHUP, for as long as the gateway runs; the outcome
/// is logged (a refused file with every error, file:line first).
async fn reload_on_sighup(live: Arc<Live>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /admin/reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let _ = live.reload().await;
        }
    }
    #[cfg(not(unix))]
    let _ = live;
}

/// What the actors start with: the tables are empty; the first snapshot
/// fills them (`build`), as every reload does.
fn actors_spec(config: &Config) -> ActorsSpec {
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
        labels: Vec::<String>::new().into(),
        provider_of: vec![],
        provider_names: Vec::<String>::new().into(),
        probes: vec![],
    };
    let limiter = LimiterSpec {
        scopes: vec![],
        spend: SpendTable::new(vec![], vec![]),
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
        // Checked readable by `sluice check`; a file gone since is Redis's TLS failing, shown in /status.
        ca_pem: s.ca_file.as_ref().and_then(|p| std::fs::read(p).ok()),
        sentinel: s.master_name.as_ref().map(|m| sluice_actors::replicas::SentinelSpec {
            sentinels: s.sentinels.iter().map(|u| u.expose().to_string()).collect(),
            master_name: m.clone(),
        }),
    });
    let r = &config.responses;
    let conversations = sluice_actors::conversations::ConversationsSpec {
        limits: sluice_actors::conversations::Limits {
            ttl: Duration::from_millis(r.ttl_ms),
            max_bytes: r.max_bytes,
            max_entry_bytes: r.max_entry_bytes,
        },
        path: r.store.clone(),
    };
    ActorsSpec { sessions: vec![], breaker, availability, limiter, cache, conversations, replicas }
}

/// The longest one upstream attempt may take, by the configured timeouts:
/// a half-open probe silent for longer than that is lost, not slow.
fn longest_attempt(config: &Config) -> Duration {
    let providers = config.providers.iter().map(|p| p.total_timeout_ms.max(p.first_byte_timeout_ms));
    let models =
        config.models.iter().map(|m| m.timeouts.total_ms.unwrap_or(0).max(m.timeouts.first_byte_ms.unwrap_or(0)));
    Duration::from_millis(providers.chain(models).max().unwrap_or(0))
}

/// The Prometheus exporter folds histogram samples only when asked; do it on
/// the actor thread every 5 s, and sooner when the workers have recorded
/// enough requests ([`crate::metrics::fold_wanted`]), so that the samples
/// waiting for a fold stay a few hundred KB under any load.
fn spawn_metrics_upkeep(actors: &Actors, handle: metrics_exporter_prometheus::PrometheusHandle) {
    actors.arbiter().spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::metrics::fold_wanted() => tick.reset(),
            }
            // Caught, so one bad fold cannot end upkeep (and let histogram
            // memory grow) for the rest of the process.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle.run_upkeep())).is_err() {
                tracing::error!("metrics upkeep panicked; it runs again at the next tick");
            }
        }
    });
}

/// Close each second of the dashboard's traffic series, on the actor thread.
fn spawn_series_sampler(actors: &Actors, series: Arc<crate::series::Series>) {
    actors.arbiter().spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            series.tick(unix_now());
        }
    });
}
