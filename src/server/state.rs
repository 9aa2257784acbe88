//! What handlers share: the validated config turned into lookup tables, the
//! actor handles, and — per worker — that worker's upstream clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use sluice_actors::ActorRegistry;
use sluice_actors::availability::AvailabilityHandle;
use sluice_actors::circuit_breakers::BreakersHandle;
use sluice_actors::upstream_sessions::{SessionsHandle, WorkerClients};

use crate::auth::KeyTable;
use crate::config::Config;
use crate::metrics::MetricsTable;
use crate::providers::Provider;
use crate::route::ModelTable;

/// Shared by every worker.
pub struct Shared {
    pub config: Config,
    pub providers: Vec<Provider>,
    pub models: ModelTable,
    pub keys: KeyTable,
    /// SHA-256 of `server.admin_key`.
    pub admin_digest: Option<[u8; 32]>,
    pub registry: ActorRegistry,
    pub sessions: SessionsHandle,
    pub breakers: BreakersHandle,
    pub availability: AvailabilityHandle,
    pub limiter: sluice_actors::rate_limiter::LimiterHandle,
    /// Which limiter scopes each key, model and deployment counts against.
    pub scopes: crate::limits::LimitScopes,
    pub prometheus: PrometheusHandle,
    /// Pre-registered metric handles of this gateway's models and routes.
    pub metrics: Arc<MetricsTable>,
    /// Response cache, single-flight and embeddings batching.
    pub cache: crate::cache::CacheLayer,
    /// Shared mode (`[shared]`): the Redis link, for `/health`.
    pub shared: Option<sluice_actors::shared::SharedHandle>,
    pub started: Instant,
    shutting_down: AtomicBool,
}

impl Shared {
    pub fn new(
        config: Config,
        providers: Vec<Provider>,
        actors: &sluice_actors::Actors,
        prometheus: PrometheusHandle,
    ) -> Shared {
        let models = ModelTable::from_config(&config);
        let metrics = Arc::new(MetricsTable::new(&models));
        let scopes = crate::limits::LimitScopes::from_config(&config, &models);
        let keys = KeyTable::from_config(&config);
        let admin_digest = config.server.admin_key.as_ref().map(|k| crate::auth::digest(k.expose()));
        let cache = crate::cache::CacheLayer::new(&config, actors.cache.clone(), actors.shared.clone());
        Shared {
            config,
            providers,
            models,
            keys,
            admin_digest,
            registry: actors.registry.clone(),
            sessions: actors.sessions.clone(),
            breakers: actors.breakers.clone(),
            availability: actors.availability.clone(),
            limiter: actors.limiter.clone(),
            scopes,
            prometheus,
            metrics,
            cache,
            shared: actors.shared.clone(),
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }
}

/// One per HTTP worker thread. Cloned into the background tasks a request
/// leaves behind on its worker (a shared upstream call, an embeddings batch).
#[derive(Clone)]
pub struct WorkerState {
    pub shared: Arc<Shared>,
    /// This worker's pooled upstream clients (see `UpstreamSessions`).
    pub clients: WorkerClients,
    /// Request starts and ends, for the worker's busy poller.
    pub activity: std::rc::Rc<crate::busy_poll::Activity>,
    /// This worker's batch of attempt outcomes for the actors.
    pub outcomes: std::rc::Rc<crate::request::outcomes::OutcomeSink>,
}
