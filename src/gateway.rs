//! The state requests run on: [`Gateway`], what every worker shares (the
//! validated config turned into lookup tables, the actor handles, the cache
//! layer), and [`WorkerState`], one per HTTP worker thread. What calling
//! upstream needs is its own part, [`Upstreams`], so the layers below (the
//! cache, the upstream calls) get that and nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use sluice_actors::ActorRegistry;

use crate::auth::KeyTable;
use crate::cache::CacheLayer;
use crate::config::Config;
use crate::upstream::{Upstreams, WorkerUpstreams};

/// Shared by every worker.
pub struct Gateway {
    pub config: Config,
    /// The model table, providers, limiter, breakers, availability, metrics.
    pub upstreams: Arc<Upstreams>,
    pub keys: KeyTable,
    /// SHA-256 of `server.admin_key`.
    pub admin_digest: Option<[u8; 32]>,
    pub registry: ActorRegistry,
    pub prometheus: PrometheusHandle,
    /// Response cache, single-flight and embeddings batching.
    pub cache: CacheLayer,
    /// Replicas mode (`[shared]`): the Redis link, for `/health`.
    pub replicas: Option<sluice_actors::replicas::ReplicasHandle>,
    /// Traces and the request log (`[telemetry]`); `None` when both are off.
    pub observer: Option<Arc<crate::observe::Observer>>,
    pub started: Instant,
    shutting_down: AtomicBool,
}

impl Gateway {
    pub fn new(
        config: Config,
        upstreams: Arc<Upstreams>,
        actors: &sluice_actors::Actors,
        prometheus: PrometheusHandle,
        observer: Option<Arc<crate::observe::Observer>>,
    ) -> Gateway {
        let keys = KeyTable::from_config(&config);
        let admin_digest = config.server.admin_key.as_ref().map(|k| crate::auth::digest(k.expose()));
        let cache = CacheLayer::new(&config, actors.cache.clone(), actors.replicas.clone());
        Gateway {
            config,
            upstreams,
            keys,
            admin_digest,
            registry: actors.registry.clone(),
            prometheus,
            cache,
            replicas: actors.replicas.clone(),
            observer,
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

/// One per HTTP worker thread.
#[derive(Clone)]
pub struct WorkerState {
    pub gateway: Arc<Gateway>,
    /// This worker's way upstream: its pools, outcome batch and busy poller.
    pub upstream: WorkerUpstreams,
}
