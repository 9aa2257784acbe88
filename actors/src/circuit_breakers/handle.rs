//! The typed API in front of the `CircuitBreakers` actor.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

use super::messages::{Admit, RecordOutcomes, RemoteHold};
use super::state::{Admission, BreakerConfig};
use super::{CircuitBreakers, GateView, Gates, NAME};
use crate::outcome::{AttemptOutcome, DeploymentId};
use crate::supervision::{ActorMeta, ActorRegistry};
use crate::topology::Topology;

/// How long a probe-slot ask may take before the request treats the
/// deployment as unavailable and moves on.
const ADMIT_TIMEOUT: Duration = Duration::from_millis(250);

/// How long a reload waits for an actor to take a new topology.
pub(crate) const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct BreakersHandle {
    addr: Addr<CircuitBreakers>,
    meta: Arc<ActorMeta>,
    gates: Arc<Gates>,
}

impl BreakersHandle {
    pub fn start(
        cfg: BreakerConfig,
        labels: Arc<[String]>,
        arbiter: &ArbiterHandle,
        registry: &mut ActorRegistry,
        replicas: Option<crate::replicas::ReplicasHandle>,
    ) -> BreakersHandle {
        let gates = Arc::new(Gates::new(labels.len(), Instant::now()));
        let meta = ActorMeta::new(NAME);
        let (g, m) = (gates.clone(), meta.clone());
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| CircuitBreakers::new(cfg, labels, g, m, replicas));
        registry.register(meta.clone(), &addr);
        BreakersHandle { addr, meta, gates }
    }

    pub fn gates(&self) -> &Gates {
        &self.gates
    }

    /// May a request go to `deployment`? Closed circuits answer from the
    /// gate; half-open ones ask the actor for one of the probe slots.
    pub async fn admit(&self, deployment: DeploymentId) -> Admission {
        match self.gates.view(deployment) {
            GateView::Pass => Admission::Allowed,
            GateView::Skip => Admission::Denied,
            GateView::AskProbe => {
                match self.meta.ask(&self.addr, Admit { deployment }, ADMIT_TIMEOUT).await {
                    Ok(a) => a,
                    // An unresponsive actor must not stall requests: treat the
                    // deployment as unavailable for this one.
                    Err(_) => Admission::Denied,
                }
            }
        }
    }

    /// The deployments of a new snapshot, before it is published: the
    /// gates grow at once (so the request path finds every id), the actor
    /// grows its breakers; asked, so that it is neither dropped by a full
    /// mailbox nor overtaken by the new snapshot's outcomes.
    pub async fn topology(&self, t: Topology) -> Result<(), actix::MailboxError> {
        self.gates.grow_to(t.deployment_span());
        self.meta.ask(&self.addr, t, TOPOLOGY_TIMEOUT).await
    }

    /// Skip the deployments labelled `label` for `hold`, on another
    /// replica's news (fire-and-forget).
    pub fn remote_hold(&self, label: String, hold: Duration) {
        self.meta.tell(&self.addr, RemoteHold { label, hold });
    }

    /// Hand a batch of outcomes to the actor (fire-and-forget).
    pub fn record(&self, outcomes: Arc<[AttemptOutcome]>) {
        self.meta.tell(&self.addr, RecordOutcomes { outcomes });
    }
}
