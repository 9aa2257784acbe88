//! The typed API in front of the `UpstreamSessions` actor.

use std::sync::Arc;

use actix::prelude::*;

use sluice_upstream::{SessionSpec, SessionTable, TlsError, WorkerClients};

use super::messages::RecordUpstreamError;
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
        registry.register(meta.clone(), addr.clone().recipient());
        Ok(SessionsHandle { addr, meta, table })
    }

    /// Build the calling worker's pooled clients. Called once per HTTP worker
    /// at start, not per request (see `client.rs` for why pools are per worker).
    pub fn worker_clients(&self) -> WorkerClients {
        WorkerClients::build(&self.table)
    }

    /// Open each provider's warm connections on the calling worker's runtime,
    /// so they land in that worker's pools. Failures go to the error log.
    pub async fn warm_up(&self, clients: WorkerClients) {
        let warmups = clients.iter().map(|(idx, client)| async move {
            let (_, err) = client.warm_up().await;
            if let Some(e) = err {
                tracing::warn!(provider = %client.session().spec.name, error = %e, "upstream warm-up failed");
                self.record_error(idx, UpstreamErrorKind::Connect, format!("warm-up: {e}"));
            }
        });
        futures_util::future::join_all(warmups).await;
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
