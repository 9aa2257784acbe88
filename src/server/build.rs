//! Building a [`Gateway`] snapshot from a validated config: at start, and
//! for every reload — one path, so a reload is a start that keeps what did
//! not change.
//!
//! Ids are interned by identity here (docs/decisions/runtime-keys.md): a
//! provider by its name and every setting (`Debug`, which masks secrets: a
//! rotated upstream key keeps the provider's pools and circuits), a
//! deployment by its model, label and provider id. A new identity gets a
//! new id, appended to the actors' tables before the snapshot that names
//! it is published.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use sluice_actors::Actors;
use sluice_actors::accounts::Accounts;
use sluice_actors::availability::ProbeSpec;
use sluice_actors::topology::{DeploymentInfo, ProviderInfo, Topology};

use crate::cache::CacheLayer;
use crate::cache::flight::Flights;
use crate::config::Config;
use crate::gateway::{Gateway, Live, Loaded, keys};
use crate::limits::LimitScopes;
use crate::metrics::MetricsTable;
use crate::observe::{Names, Observer, Telemetry};
use crate::providers::Provider;
use crate::route::ModelTable;
use crate::series::Series;
use crate::upstream::{ProviderSet, Upstreams};

#[derive(Default)]
struct Identities {
    /// Provider name + settings → provider id.
    providers: HashMap<String, usize>,
    /// (model, label, provider id) → deployment id.
    deployments: HashMap<(String, String, usize), usize>,
    next_deployment: usize,
}

impl Identities {
    fn deployment(&mut self, model: &str, label: &str, provider: usize) -> usize {
        let key = (model.to_string(), label.to_string(), provider);
        if let Some(&id) = self.deployments.get(&key) {
            return id;
        }
        let id = self.next_deployment;
        self.next_deployment += 1;
        self.deployments.insert(key, id);
        id
    }
}

/// What lives as long as the process, and builds each snapshot.
pub struct Builder {
    ids: Mutex<Identities>,
    actors: Handles,
    flights: Arc<Flights>,
    prometheus: PrometheusHandle,
    started: Instant,
    /// `[telemetry]`: its threads and queues last as long as the process.
    observer: Option<Arc<Observer>>,
    /// The dashboard's traffic ring, kept across reloads.
    series: Arc<Series>,
}

/// The actors' handles (the actors themselves stay with `server::run`,
/// which stops them).
#[derive(Clone)]
struct Handles {
    registry: sluice_actors::ActorRegistry,
    sessions: sluice_actors::upstream_sessions::SessionsHandle,
    breakers: sluice_actors::circuit_breakers::BreakersHandle,
    availability: sluice_actors::availability::AvailabilityHandle,
    limiter: sluice_actors::rate_limiter::LimiterHandle,
    cache: sluice_actors::response_cache::CacheHandle,
    conversations: sluice_actors::conversations::ConversationsHandle,
    replicas: Option<sluice_actors::replicas::ReplicasHandle>,
}

/// A snapshot not yet published, and what it will hold on to.
pub struct Built {
    pub gateway: Gateway,
    live_scopes: HashSet<usize>,
    live_spend: HashSet<usize>,
}

impl Built {
    /// Make this the current snapshot (it takes the process-long parts of
    /// the one it replaces), then hide from `/status` the scopes and spend
    /// slots it no longer uses.
    pub fn publish(self, live: &Live) {
        let mut g = self.gateway;
        g.inherit(&live.load());
        let limiter = g.upstreams.limiter.clone();
        live.publish(g);
        limiter.table().retain_live(&self.live_scopes);
        limiter.spend().retain_live(&self.live_spend);
    }

    /// The first snapshot: the same, without one to replace.
    pub fn first(self) -> Gateway {
        let limiter = &self.gateway.upstreams.limiter;
        limiter.table().retain_live(&self.live_scopes);
        limiter.spend().retain_live(&self.live_spend);
        self.gateway
    }
}

impl Builder {
    pub fn new(
        actors: &Actors,
        prometheus: PrometheusHandle,
        observer: Option<Arc<Observer>>,
        series: Arc<Series>,
    ) -> Builder {
        Builder {
            ids: Mutex::default(),
            actors: Handles {
                registry: actors.registry.clone(),
                sessions: actors.sessions.clone(),
                breakers: actors.breakers.clone(),
                availability: actors.availability.clone(),
                limiter: actors.limiter.clone(),
                cache: actors.cache.clone(),
                conversations: actors.conversations.clone(),
                replicas: actors.replicas.clone(),
            },
            flights: Arc::default(),
            prometheus,
            started: Instant::now(),
            observer,
            series,
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, Identities> {
        self.ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A snapshot of `config` with the runtime keys `accounts`; the actors
    /// learn its deployments and providers before this returns.
    pub async fn build(&self, config: Arc<Config>, loaded: Loaded, accounts: &Accounts) -> Result<Built, String> {
        let a = &self.actors;
        let (providers, provider_ids, infos) = self.providers(&config)?;
        let models = {
            let mut ids = self.ids();
            ModelTable::with_ids(&config, &provider_ids, &mut |m, l, p| ids.deployment(m, l, p))
        };
        let limiter = &a.limiter;
        let scopes = LimitScopes::from_config(&config, &models, limiter.table());
        let spend_models: Arc<[usize]> = config.models.iter().map(|m| limiter.spend().define_model(&m.name)).collect();
        let built_keys = keys::build(&config, accounts, limiter);
        let mut live_scopes = built_keys.scopes;
        live_scopes.extend(scopes.ids());
        let deployments: Arc<[DeploymentInfo]> = models
            .deployments()
            .map(|(_, d)| DeploymentInfo { id: d.id, label: d.label.clone(), provider: d.provider })
            .collect();
        let topology = Topology { deployments, providers: infos.into() };
        a.sessions.providers(provider_ids.clone()).await.map_err(|e| actor_error("upstream_sessions", e))?;
        a.breakers.topology(topology.clone()).await.map_err(|e| actor_error("circuit_breakers", e))?;
        a.availability.topology(topology).await.map_err(|e| actor_error("model_availability", e))?;
        if let Some(store) = limiter.store() {
            // Spend kept for keys and models this snapshot adds (a key
            // deleted and created again, a model back after a reload).
            store.restore_new(sluice_actors::rate_limiter::spend::today()).map_err(|e| e.to_string())?;
        }
        // Names by this snapshot's indices; requests carry them to the
        // writer and exporter, which outlive the snapshot.
        let telemetry = self
            .observer
            .as_ref()
            .map(|o| Telemetry { observer: o.clone(), names: Arc::new(Names::new(&config, &models)) });
        let mut metrics = MetricsTable::new(&models);
        metrics.series = self.series.clone();
        let upstreams = Arc::new(Upstreams {
            routing: config.routing.clone(),
            metrics: Arc::new(metrics),
            models,
            providers,
            spend_models,
            scopes,
            sessions: a.sessions.clone(),
            breakers: a.breakers.clone(),
            availability: a.availability.clone(),
            limiter: a.limiter.clone(),
        });
        let cache = Arc::new(CacheLayer::new(&config, a.cache.clone(), a.replicas.clone(), self.flights.clone()));
        let gateway = Gateway::new(
            config,
            upstreams,
            Arc::new(built_keys.table),
            cache,
            (a.registry.clone(), a.replicas.clone(), a.conversations.clone()),
            self.prometheus.clone(),
            loaded,
            self.started,
            telemetry,
        );
        Ok(Built { gateway, live_scopes, live_spend: built_keys.spend })
    }

    /// The config's providers by their ids (new sessions added for new or
    /// changed ones), the id of each `[[providers]]` entry, and what the
    /// actors need to know of them.
    fn providers(&self, config: &Config) -> Result<(ProviderSet, Vec<usize>, Vec<ProviderInfo>), String> {
        let mut set = ProviderSet::default();
        let mut ids = Vec::with_capacity(config.providers.len());
        let mut infos = Vec::with_capacity(config.providers.len());
        for p in &config.providers {
            let mut provider = Provider::from_config(usize::MAX, p)?;
            let spec = provider.session_spec(p);
            let identity = format!("{p:?}");
            let id = {
                let mut reg = self.ids();
                match reg.providers.get(&identity) {
                    Some(&id) => id,
                    None => {
                        let id = self.actors.sessions.add_provider(spec.clone());
                        reg.providers.insert(identity, id);
                        id
                    }
                }
            };
            provider.idx = id;
            let probe = (p.health_probe_interval_ms > 0)
                .then(|| spec.as_ref().and_then(|s| s.warm_request.clone()))
                .flatten()
                .map(|request| ProbeSpec {
                    provider: id,
                    interval: Duration::from_millis(p.health_probe_interval_ms),
                    timeout: Duration::from_millis(p.health_probe_timeout_ms),
                    request,
                });
            infos.push(ProviderInfo { id, name: p.name.clone(), probe });
            set.insert(id, provider);
            ids.push(id);
        }
        Ok((set, ids, infos))
    }
}

fn actor_error(actor: &str, e: actix::MailboxError) -> String {
    format!("the {actor} actor did not take the new deployments: {e}")
}
