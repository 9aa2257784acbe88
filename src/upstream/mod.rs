//! Calling upstream for one request. [`fetch()`] is the one way there: the
//! model's candidates in order ([`crate::route`]), those whose protocol can
//! serve the route ([`capability`]), tried one by one ([`attempt`]: backoff,
//! an optional hedge; [`admission`]: circuit gates, 429 cool-downs, the
//! deployments' own caps, and what to do when none is admitted), then the
//! fallback counted, the answer priced at the deployment that served, and
//! its usage known. A streamed answer comes back as an [`UpstreamStream`],
//! the one driver of an upstream stream (timeouts, usage, failure
//! outcome); [`outcomes`] batches what each attempt came to for the actors.
//!
//! The pipeline (`crate::request`), the single-flight leader and the
//! embeddings batcher (`crate::cache`) all call [`fetch()`] with a worker's
//! [`WorkerUpstreams`]; nothing here knows them.

pub mod admission;
pub mod attempt;
pub mod capability;
pub mod charge;
pub mod fetch;
pub mod outcomes;
pub mod stream;

use std::rc::Rc;
use std::sync::Arc;

use sluice_actors::availability::AvailabilityHandle;
use sluice_actors::circuit_breakers::BreakersHandle;
use sluice_actors::rate_limiter::LimiterHandle;
use sluice_actors::upstream_sessions::SessionsHandle;
use sluice_upstream::WorkerClients;

use crate::busy_poll::Activity;
use crate::config::RoutingConfig;
use crate::limits::LimitScopes;
use crate::metrics::MetricsTable;
use crate::providers::Provider;
use crate::route::ModelTable;
pub use fetch::{Fetched, FetchedBody, fetch};
use outcomes::OutcomeSink;
pub use stream::UpstreamStream;

/// What calling upstream needs that every worker shares: the deployments
/// and their providers, and the actors that judge and limit them.
pub struct Upstreams {
    pub routing: RoutingConfig,
    pub models: ModelTable,
    /// By provider id (ids are stable across reloads, so sparse).
    pub providers: ProviderSet,
    /// The spend table's slot of each model, by model index.
    pub spend_models: Arc<[usize]>,
    /// Which limiter scopes each key, model and deployment counts against.
    pub scopes: LimitScopes,
    pub sessions: SessionsHandle,
    pub breakers: BreakersHandle,
    pub availability: AvailabilityHandle,
    pub limiter: LimiterHandle,
    /// Pre-registered metric handles of the gateway's models and routes.
    pub metrics: Arc<MetricsTable>,
}

/// The providers of one snapshot, by provider id.
#[derive(Default)]
pub struct ProviderSet {
    by_id: Vec<Option<Provider>>,
}

impl ProviderSet {
    pub fn insert(&mut self, id: usize, p: Provider) {
        if self.by_id.len() <= id {
            self.by_id.resize_with(id + 1, || None);
        }
        if let Some(slot) = self.by_id.get_mut(id) {
            *slot = Some(p);
        }
    }

    pub fn get(&self, id: usize) -> Option<&Provider> {
        self.by_id.get(id)?.as_ref()
    }

    /// Every provider with its id.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Provider)> {
        self.by_id.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
    }
}

/// One worker's way upstream: the shared [`Upstreams`] and what is this
/// worker's own. Cloned into the tasks a request leaves behind on its
/// worker (a single-flight leader, an embeddings batch).
#[derive(Clone)]
pub struct WorkerUpstreams {
    pub upstreams: Arc<Upstreams>,
    /// This worker's pooled upstream clients (see `UpstreamSessions`).
    pub clients: WorkerClients,
    /// This worker's batch of attempt outcomes for the actors.
    pub outcomes: Rc<OutcomeSink>,
    /// Request starts and ends, and stream events, for the worker's busy poller.
    pub activity: Rc<Activity>,
}
