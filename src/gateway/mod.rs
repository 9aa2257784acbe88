//! The state requests run on: [`Gateway`], one immutable snapshot of what
//! every worker shares (the validated config turned into lookup tables,
//! the key table, the actor handles, the cache layer); [`Live`], the cell
//! holding the current snapshot, swapped whole by a reload or an admin
//! change; and [`WorkerState`], what one request runs on — the snapshot it
//! took at its start, and its worker's own parts. What calling upstream
//! needs is its own part, [`Upstreams`], so the layers below (the cache,
//! the upstream calls) get that and nothing else.
//!
//! Why snapshots, and why the ids in them never move:
//! docs/decisions/runtime-keys.md.

pub mod keys;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest};
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_actors::ActorRegistry;
use sluice_actors::accounts::Accounts;
use sluice_actors::accounts::store::AccountsStore;
use sluice_upstream::WorkerClients;

use crate::auth::KeyTable;
use crate::busy_poll::Activity;
use crate::cache::CacheLayer;
use crate::config::{Config, ConfigError};
use crate::error::GatewayError;
use crate::upstream::outcomes::OutcomeSink;
use crate::upstream::{Upstreams, WorkerUpstreams};

/// The config a snapshot was loaded from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// SHA-256 of the file's bytes, hex; `None` when it came from no file.
    pub digest: Option<String>,
    /// Unix seconds.
    pub at_unix: u64,
}

/// Shared by every worker: one snapshot, immutable once published.
pub struct Gateway {
    pub config: Arc<Config>,
    /// The model table, providers, limiter, breakers, availability, metrics.
    pub upstreams: Arc<Upstreams>,
    /// Config keys and runtime keys.
    pub keys: Arc<KeyTable>,
    /// SHA-256 of `server.admin_key`.
    pub admin_digest: Option<[u8; 32]>,
    pub registry: ActorRegistry,
    pub prometheus: PrometheusHandle,
    /// Response cache, single-flight and embeddings batching.
    pub cache: Arc<CacheLayer>,
    /// The Responses API's stored conversations (process-long: a reload
    /// keeps them).
    pub conversations: sluice_actors::conversations::ConversationsHandle,
    /// Replicas mode (`[shared]`): the Redis link, for `/health`.
    pub replicas: Option<sluice_actors::replicas::ReplicasHandle>,
    /// Traces and the request log (`[telemetry]`); `None` when both are off.
    pub telemetry: Option<crate::observe::Telemetry>,
    pub started: Instant,
    pub loaded: Loaded,
    shutting_down: Arc<AtomicBool>,
}

impl Gateway {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        upstreams: Arc<Upstreams>,
        keys: Arc<KeyTable>,
        cache: Arc<CacheLayer>,
        (registry, replicas, conversations): (
            ActorRegistry,
            Option<sluice_actors::replicas::ReplicasHandle>,
            sluice_actors::conversations::ConversationsHandle,
        ),
        prometheus: PrometheusHandle,
        loaded: Loaded,
        started: Instant,
        telemetry: Option<crate::observe::Telemetry>,
    ) -> Gateway {
        let admin_digest = config.server.admin_key.as_ref().map(|k| crate::auth::digest(k.expose()));
        Gateway {
            config,
            upstreams,
            keys,
            admin_digest,
            registry,
            prometheus,
            cache,
            conversations,
            replicas,
            telemetry,
            started,
            loaded,
            shutting_down: Arc::default(),
        }
    }

    /// The same snapshot with another config, tables, keys and cache
    /// (a reload); what lives as long as the process is shared.
    pub fn succeed(
        &self,
        config: Arc<Config>,
        upstreams: Arc<Upstreams>,
        keys: Arc<KeyTable>,
        cache: Arc<CacheLayer>,
        loaded: Loaded,
    ) -> Gateway {
        Gateway {
            admin_digest: config.server.admin_key.as_ref().map(|k| crate::auth::digest(k.expose())),
            config,
            upstreams,
            keys,
            cache,
            loaded,
            registry: self.registry.clone(),
            prometheus: self.prometheus.clone(),
            conversations: self.conversations.clone(),
            replicas: self.replicas.clone(),
            telemetry: self.telemetry.clone(),
            started: self.started,
            shutting_down: self.shutting_down.clone(),
        }
    }

    /// Take the process-long parts of the snapshot this one replaces (the
    /// shutdown flag).
    pub fn inherit(&mut self, prev: &Gateway) {
        self.shutting_down = prev.shutting_down.clone();
    }

    /// The same snapshot with another key table (an admin change).
    pub fn with_keys(&self, keys: Arc<KeyTable>) -> Gateway {
        let mut g =
            self.succeed(self.config.clone(), self.upstreams.clone(), keys, self.cache.clone(), self.loaded.clone());
        g.admin_digest = self.admin_digest;
        g
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Does the request carry the admin key (or is none configured)?
    pub fn admin(&self, req: &HttpRequest) -> Result<(), GatewayError> {
        match &self.admin_digest {
            Some(d) if !crate::auth::is_admin(d, req.headers()) => Err(GatewayError::AdminKeyRequired),
            _ => Ok(()),
        }
    }
}

/// What a reload came to (`POST /admin/reload`, SIGHUP, the metric).
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// Swapped: the new file's digest, and settings that changed but are
    /// read at start only.
    Ok { digest: Option<String>, restart_required: Vec<String> },
    /// The file was refused, with every problem; the running config stays.
    Invalid(Vec<ConfigError>),
    /// The file was fine but the gateway could not take it (no file to
    /// read, an actor did not answer); the running config stays.
    Error(String),
}

impl ReloadOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            ReloadOutcome::Ok { .. } => "ok",
            ReloadOutcome::Invalid(_) => "invalid",
            ReloadOutcome::Error(_) => "error",
        }
    }
}

/// A reload asked of the server, with where to send its outcome.
pub type ReloadAsk = tokio::sync::oneshot::Sender<ReloadOutcome>;

/// The runtime keys and teams, and where they are kept.
pub struct AccountsCell {
    pub accounts: Mutex<Accounts>,
    /// `[spend] store`'s file; `None` without one.
    pub store: Option<AccountsStore>,
}

impl AccountsCell {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Accounts> {
        self.accounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn snapshot(&self) -> Accounts {
        self.lock().clone()
    }
}

/// The current snapshot, and what changes it.
pub struct Live {
    current: ArcSwap<Gateway>,
    /// Held while a new snapshot is built and published, so that a reload
    /// and an admin change never race to publish.
    pub build: tokio::sync::Mutex<()>,
    pub accounts: AccountsCell,
    /// Asks the server to reload the config file.
    pub reload: tokio::sync::mpsc::Sender<ReloadAsk>,
}

impl Live {
    pub fn new(first: Gateway, accounts: AccountsCell, reload: tokio::sync::mpsc::Sender<ReloadAsk>) -> Live {
        Live { current: ArcSwap::from_pointee(first), build: tokio::sync::Mutex::new(()), accounts, reload }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Publish `next`; requests that already took the previous one finish on it.
    pub fn publish(&self, next: Gateway) {
        self.current.store(Arc::new(next));
    }

    /// Publish a snapshot with the key table rebuilt from the config and
    /// the runtime keys as they are now (after an admin change, or one
    /// heard from another replica). The rest of the snapshot is shared.
    pub async fn rebuild_keys(&self) -> Result<(), String> {
        let _building = self.build.lock().await;
        let cur = self.load();
        let accounts = self.accounts.snapshot();
        let limiter = cur.upstreams.limiter.clone();
        let built = keys::build(&cur.config, &accounts, &limiter);
        if let Some(store) = limiter.store() {
            // A key deleted and created again under its name finds its spend.
            store.restore_new(sluice_actors::rate_limiter::spend::today()).map_err(|e| e.to_string())?;
        }
        let mut scopes = built.scopes;
        scopes.extend(cur.upstreams.scopes.ids());
        self.publish(cur.with_keys(Arc::new(built.table)));
        limiter.table().retain_live(&scopes);
        limiter.spend().retain_live(&built.spend);
        Ok(())
    }

    /// Ask for a reload and wait for its outcome.
    pub async fn reload(&self) -> ReloadOutcome {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.reload.send(tx).await.is_err() {
            return ReloadOutcome::Error("the reloader has stopped (the gateway is shutting down)".into());
        }
        rx.await.unwrap_or_else(|_| ReloadOutcome::Error("the reload was abandoned".into()))
    }
}

/// One per HTTP worker thread: the live snapshot and this worker's own parts.
pub struct Worker {
    pub live: Arc<Live>,
    /// This worker's pooled upstream clients (see `UpstreamSessions`).
    pub clients: WorkerClients,
    /// This worker's batch of attempt outcomes for the actors.
    pub outcomes: Rc<OutcomeSink>,
    /// Request starts and ends, and stream events, for the busy poller.
    pub activity: Rc<Activity>,
}

impl Worker {
    /// What one request runs on: the snapshot current now, kept to its end.
    pub fn state(&self) -> WorkerState {
        let gateway = self.live.load();
        let upstream = WorkerUpstreams {
            upstreams: gateway.upstreams.clone(),
            clients: self.clients.clone(),
            outcomes: self.outcomes.clone(),
            activity: self.activity.clone(),
        };
        WorkerState { gateway, upstream }
    }
}

/// What one request runs on: the snapshot it took at its start (taken by
/// the extractor, once), and its worker's own parts.
#[derive(Clone)]
pub struct WorkerState {
    pub gateway: Arc<Gateway>,
    /// This worker's way upstream: its pools, outcome batch and busy poller.
    pub upstream: WorkerUpstreams,
}

impl FromRequest for WorkerState {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<WorkerState, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(match req.app_data::<Data<Worker>>() {
            Some(w) => Ok(w.state()),
            None => Err(actix_web::error::ErrorInternalServerError("no worker state")),
        })
    }
}
