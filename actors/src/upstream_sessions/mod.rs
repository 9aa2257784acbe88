//! `UpstreamSessions`: one pooled HTTP client per provider (keep-alive,
//! HTTP/2 by ALPN where the server offers it, rustls), warm-up at start, pool
//! stats and recent upstream errors for `/status`.

mod handle;
pub mod messages;
mod state;

use std::sync::Arc;

use actix::prelude::*;
use sluice_upstream::SessionTable;

pub use handle::SessionsHandle;
pub use state::{SessionState, UpstreamErrorKind};

use crate::status::GetStatus;
use crate::supervision::ActorMeta;
use messages::RecordUpstreamError;

pub const NAME: &str = "upstream_sessions";

pub struct UpstreamSessions {
    state: SessionState,
    meta: Arc<ActorMeta>,
}

impl UpstreamSessions {
    pub fn new(table: Arc<SessionTable>, meta: Arc<ActorMeta>) -> Self {
        UpstreamSessions { state: SessionState::new(table), meta }
    }
}

impl Actor for UpstreamSessions {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::supervision::MAILBOX_CAPACITY);
        self.meta.started();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.meta.stopped();
    }
}

impl Supervised for UpstreamSessions {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The table (pools, counters) is shared and survives; the error log
        // is kept too, because it is the evidence of why we restarted.
        self.meta.restarting();
    }
}

impl Handler<RecordUpstreamError> for UpstreamSessions {
    type Result = ();

    fn handle(&mut self, msg: RecordUpstreamError, _ctx: &mut Self::Context) {
        self.meta.dequeued();
        self.state.record_error(msg.provider, msg.kind, msg.message, tokio::time::Instant::now());
    }
}

impl Handler<GetStatus> for UpstreamSessions {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        self.meta.dequeued();
        MessageResult(self.state.detail(tokio::time::Instant::now()))
    }
}
