//! The typed API in front of the `UpstreamSessions` actor.

use std::sync::Arc;

use actix::prelude::*;
use sluice_upstream::{SessionSpec, SessionTable, TlsError, WorkerClients};
use tokio::sync::mpsc;

use super::messages::{JoinWorker, Providers, RecordUpstreamError, WarmUp, Warmed};
use super::state::UpstreamErrorKind;
use super::{NAME, UpstreamSessions};
use crate::supervision::{ActorMeta, ActorRegistry};

#[derive(Clone)]
pub struct SessionsHandle {
    addr: Addr<UpstreamSessions>,
    meta: Arc<ActorMeta>,
    table: Arc<SessionTable>,
}

impl SessionsHandle {
    /// Start the supervised actor on `arbiter` and register it for `/status`.
    pub fn start(
        specs: Vec<Option<SessionSpec>>,
        arbiter: &ArbiterHandle,
        registry: &mut ActorRegistry,
    ) -> Result<SessionsHandle, TlsError> {
        let table = Arc::new(SessionTable::new(specs)?);
        let meta = ActorMeta::new(NAME);
        let (t, m) = (table.clone(), meta.clone());
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| UpstreamSessions::new(t, m));
        registry.register(meta.clone(), &addr);
        Ok(SessionsHandle { addr, meta, table })
    }

    /// Pooled clients for the calling thread, outside the registry and never
    /// warmed (the availability actor's probes use these).
    pub fn worker_clients(&self) -> WorkerClients {
        WorkerClients::build(&self.table)
    }

    /// Build the calling HTTP worker's pooled clients and join the actor's
    /// registry of pools; the actor answers with warm-up orders, which run
    /// here, on this worker's runtime, so that the connections land in this
    /// worker's pools, and are reported back. Call once per worker, at its
    /// start, on its thread (it spawns there); not per request.
    pub fn join_worker(&self) -> WorkerClients {
        let clients = self.worker_clients();
        let (orders, mut rx) = mpsc::unbounded_channel::<WarmUp>();
        let (handle, pools) = (self.clone(), clients.clone());
        actix::spawn(async move {
            while let Some(order) = rx.recv().await {
                if order.retire {
                    pools.retire(order.provider);
                    continue;
                }
                // Each provider warms at once, not one after the other.
                actix::spawn(handle.clone().warm(pools.clone(), order));
            }
        });
        // At start the mailbox is empty; were it full, this worker would
        // only go unwarmed (the refusal is counted).
        self.meta.tell(&self.addr, JoinWorker { orders });
        clients
    }

    async fn warm(self, clients: WorkerClients, order: WarmUp) {
        let (opened, error) = match clients.get(order.provider).as_ref() {
            Some(client) => client.warm_up().await,
            None => (0, Some("no pool for this provider on this worker".to_string())),
        };
        self.meta.tell(&self.addr, Warmed { worker: order.worker, provider: order.provider, opened, error });
    }

    /// Add a provider's session (a reload brought a new or changed one);
    /// returns its id. The pools are built on each worker when first used.
    pub fn add_provider(&self, spec: Option<SessionSpec>) -> usize {
        self.table.add(spec)
    }

    /// The providers of a new snapshot, before it is published: warm the
    /// new ones on every worker, drop the pools of those gone.
    pub async fn providers(&self, live: Vec<usize>) -> Result<(), MailboxError> {
        self.meta.ask(&self.addr, Providers { live }, std::time::Duration::from_secs(5)).await
    }

    /// Tell the actor about an upstream failure (fire-and-forget; a full
    /// mailbox drops and counts it rather than slowing the request).
    pub fn record_error(&self, provider: usize, kind: UpstreamErrorKind, message: String) {
        self.meta.tell(&self.addr, RecordUpstreamError { provider, kind, message });
    }

    pub fn table(&self) -> &Arc<SessionTable> {
        &self.table
    }

    /// The actor's address, for asks that have no typed method yet (the
    /// round-trip benchmark, `benches/actors.rs`). Tells go through
    /// [`SessionsHandle::record_error`], which keeps the mailbox count.
    pub fn addr(&self) -> &Addr<UpstreamSessions> {
        &self.addr
    }
}
