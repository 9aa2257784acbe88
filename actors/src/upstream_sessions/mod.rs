//! `UpstreamSessions`: owns every provider's pool — the session table
//! (crate `sluice-upstream`: spec, live counters, the concurrency cap shared
//! by every worker), the registry of each worker's pools, their warm-up,
//! and the upstream errors seen, for `/status`.
//!
//! The pools themselves are per worker (hyper drives a connection on the
//! runtime that opened it: docs/decisions/http-client.md), so a worker
//! builds its own and joins the registry ([`SessionsHandle::join_worker`]);
//! the actor then orders each pool's warm-up, which the worker runs on its
//! own runtime and reports back. The logic is in `state.rs`.

mod handle;
pub mod messages;
mod state;

use std::sync::Arc;

use actix::prelude::*;
use sluice_upstream::SessionTable;
use tokio::time::Instant;

pub use handle::SessionsHandle;
pub use state::{
    ErrorDetail, ProviderDetail, SessionState, SessionsDetail, UpstreamErrorKind, Warm, WarmDetail, WorkerDetail,
    WorkerPools,
};

use crate::supervision::ActorMeta;
use crate::supervision::shell::{self, Shell, actor_shell};
use messages::{JoinWorker, Providers, RecordUpstreamError, WarmUp, Warmed};

pub const NAME: &str = "upstream_sessions";

pub struct UpstreamSessions {
    state: SessionState,
    meta: Arc<ActorMeta>,
    /// Each worker's order channel, by worker id: kept, so that providers
    /// a reload adds are warmed (and those it removes dropped) on every worker.
    orders: Vec<tokio::sync::mpsc::UnboundedSender<WarmUp>>,
}

impl UpstreamSessions {
    pub fn new(table: Arc<SessionTable>, meta: Arc<ActorMeta>) -> Self {
        UpstreamSessions { state: SessionState::new(table), meta, orders: Vec::new() }
    }

    /// Register a worker's pools and order their warm-up.
    fn join(&mut self, msg: JoinWorker) {
        let (worker, providers) = self.state.join_worker();
        for provider in providers {
            // A worker that is gone (its runtime ended) cannot warm anything.
            if msg.orders.send(WarmUp { worker, provider, retire: false }).is_err() {
                break;
            }
        }
        self.orders.push(msg.orders);
    }

    fn providers(&mut self, msg: &Providers) {
        let (warm, retired) = self.state.providers(&msg.live);
        for (worker, provider) in warm {
            if let Some(tx) = self.orders.get(worker) {
                let _ = tx.send(WarmUp { worker, provider, retire: false });
            }
        }
        for provider in retired {
            for (worker, tx) in self.orders.iter().enumerate() {
                let _ = tx.send(WarmUp { worker, provider, retire: true });
            }
        }
    }

    fn warmed(&mut self, msg: Warmed) {
        if let Some(e) = &msg.error {
            let name = self.state.table.get(msg.provider).map(|s| s.spec.name.as_str()).unwrap_or("");
            tracing::warn!(provider = %name, worker = msg.worker, error = %e, "upstream warm-up failed");
        }
        self.state.warmed(msg.worker, msg.provider, msg.opened, msg.error, Instant::now());
    }
}

impl Shell for UpstreamSessions {
    type Detail = SessionsDetail;

    fn meta(&self) -> &Arc<ActorMeta> {
        &self.meta
    }

    fn detail(&self) -> SessionsDetail {
        self.state.detail(Instant::now())
    }

    // Nothing to re-arm after a restart: the table (pools, counters) is
    // shared and survives, the registry and the error log are kept (the log
    // is the evidence of why it restarted), and orders already sent are
    // still answered.
}

actor_shell!(UpstreamSessions);

impl Handler<RecordUpstreamError> for UpstreamSessions {
    type Result = ();

    fn handle(&mut self, msg: RecordUpstreamError, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, _| {
            act.state.record_error(msg.provider, msg.kind, msg.message, Instant::now())
        })
    }
}

impl Handler<JoinWorker> for UpstreamSessions {
    type Result = ();

    fn handle(&mut self, msg: JoinWorker, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, _| act.join(msg))
    }
}

impl Handler<Providers> for UpstreamSessions {
    type Result = ();

    fn handle(&mut self, msg: Providers, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, _| act.providers(&msg))
    }
}

impl Handler<Warmed> for UpstreamSessions {
    type Result = ();

    fn handle(&mut self, msg: Warmed, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, _| act.warmed(msg))
    }
}

#[cfg(test)]
mod tests;
