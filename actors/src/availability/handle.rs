//! The typed API in front of the `ModelAvailability` actor.

use std::sync::Arc;

use actix::prelude::*;

use super::state::Availability;
use super::table::AvailTable;
use super::{ModelAvailability, NAME, ProbeSpec};
use crate::outcome::{AttemptOutcome, RecordOutcomes};
use crate::supervision::{ActorMeta, ActorRegistry};
use crate::topology::Topology;
use crate::upstream_sessions::SessionsHandle;

#[derive(Clone)]
pub struct AvailabilityHandle {
    addr: Addr<ModelAvailability>,
    meta: Arc<ActorMeta>,
    table: Arc<AvailTable>,
}

/// What the actor needs to know about the deployments and providers.
pub struct AvailabilitySpec {
    /// `provider/model` per deployment.
    pub labels: Arc<[String]>,
    /// Provider index of each deployment.
    pub provider_of: Vec<usize>,
    pub provider_names: Arc<[String]>,
    pub probes: Vec<ProbeSpec>,
}

impl AvailabilityHandle {
    pub fn start(
        spec: AvailabilitySpec,
        sessions: SessionsHandle,
        arbiter: &ArbiterHandle,
        registry: &mut ActorRegistry,
    ) -> AvailabilityHandle {
        let table = Arc::new(AvailTable::new(spec.labels.len()));
        let meta = ActorMeta::new(NAME);
        let (t, m) = (table.clone(), meta.clone());
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| ModelAvailability {
            state: Availability::new(spec.provider_of, spec.provider_names.len()),
            table: t,
            labels: spec.labels.to_vec(),
            provider_names: spec.provider_names.to_vec(),
            probing: vec![false; spec.probes.len()],
            probes: spec.probes.into_iter().map(Some).collect(),
            timers: Vec::new(),
            sessions,
            clients: None,
            meta: m,
        });
        registry.register(meta.clone(), &addr);
        AvailabilityHandle { addr, meta, table }
    }

    pub fn table(&self) -> &Arc<AvailTable> {
        &self.table
    }

    /// The deployments and providers of a new snapshot, before it is
    /// published (see `BreakersHandle::topology`).
    pub async fn topology(&self, t: Topology) -> Result<(), actix::MailboxError> {
        self.table.grow_to(t.deployment_span());
        self.meta.ask(&self.addr, t, crate::circuit_breakers::TOPOLOGY_TIMEOUT).await
    }

    /// Hand a batch of outcomes to the actor (fire-and-forget).
    pub fn record(&self, outcomes: Arc<[AttemptOutcome]>) {
        self.meta.tell(&self.addr, RecordOutcomes { outcomes });
    }
}
