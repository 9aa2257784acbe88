//! `RateLimiter`: request, token and concurrency limits per key, per key and
//! model, per model and per deployment (GCRA, exact), a bounded priority
//! queue for requests that would be refused, and spend per key and model
//! with daily and monthly budgets, persisted in an embedded store.
//!
//! Admission itself runs on the request path against the limiter table
//! (atomics; see `table.rs` for why), through [`LimiterHandle`]. The actor
//! owns the queue of waiting requests (its logic in `state.rs`), the spend
//! store's lifetime and `/status`; spend itself never passes through its
//! mailbox (see `outbox.rs`).

pub mod backend;
mod detail;
pub mod gcra;
mod handle;
pub mod messages;
pub mod outbox;
pub mod spend;
mod state;
pub mod store;
pub mod table;

use std::sync::Arc;

use actix::prelude::*;
use tokio::time::Instant;

pub use backend::{Grant, LimiterBackend, admit};
pub use detail::LimiterDetail;
pub use handle::{LimiterHandle, LimiterSpec};
pub use messages::QueueRefusal;
pub use outbox::SpendOutbox;
pub use spend::{BudgetHit, Budgets, SpendKey, SpendRecord, SpendTable};
pub use state::{QueueDetail, QueueReply, WaitQueue};
pub use table::{Exceeded, Headroom, LimitSpec, LimiterTable, Refusal};

use crate::supervision::ActorMeta;
use crate::supervision::shell::{self, Shell, actor_shell};
use messages::{Enqueue, Left, Released};

pub const NAME: &str = "rate_limiter";

pub struct RateLimiter {
    /// `in-process`, or `redis` when the replicas share limits.
    backend_name: &'static str,
    /// Shared mode: requests waiting for a shared limit on their own
    /// (`LimiterHandle::replicated_wait`), shown with the queue's.
    shared_waiting: Arc<std::sync::atomic::AtomicUsize>,
    table: Arc<LimiterTable>,
    spend: Arc<SpendTable>,
    store: Option<Arc<store::SpendStore>>,
    queue: WaitQueue,
    /// The pending wake-up of the queue, if one is armed.
    timer: Option<SpawnHandle>,
    meta: Arc<ActorMeta>,
}

impl RateLimiter {
    /// Admit what fits now, then sleep until the next waiter could fit or
    /// expire.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let table = &self.table;
        let wake = self.queue.pump(Instant::now(), |scopes, tokens| table.admit(scopes, tokens));
        self.table.waiting.store(self.queue.len(), std::sync::atomic::Ordering::Release);
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(at) = wake {
            let after = state::sleep_until(at, Instant::now());
            self.timer = Some(shell::run_later(ctx, after, |act, ctx| {
                act.timer = None;
                act.pump(ctx);
            }));
        }
    }

    fn enqueue(&mut self, msg: Enqueue, ctx: &mut Context<Self>) -> EnqueueReply {
        let rx = self.queue.push(msg)?;
        self.pump(ctx);
        Ok(rx)
    }
}

impl Shell for RateLimiter {
    type Detail = LimiterDetail;

    fn meta(&self) -> &Arc<ActorMeta> {
        &self.meta
    }

    fn detail(&self) -> LimiterDetail {
        LimiterDetail {
            backend: self.backend_name,
            scopes: (0..self.table.len()).filter_map(|i| self.table.detail(i)).collect(),
            queue: {
                let mut q = self.queue.detail();
                q.waiting += self.shared_waiting.load(std::sync::atomic::Ordering::Acquire);
                q
            },
            spend: self.spend.detail(spend::today()),
            spend_store: self.store.as_ref().map(|s| s.path().display().to_string()),
        }
    }

    /// Waiters survive a restart (the queue is kept); their timer does not.
    fn on_start(&mut self, ctx: &mut Context<Self>) {
        self.pump(ctx);
    }

    fn on_restart(&mut self) {
        self.timer = None;
    }
}

actor_shell!(RateLimiter);

/// The queue's answer to [`Enqueue`]: where the request's grant will come.
type EnqueueReply = Result<tokio::sync::oneshot::Receiver<QueueReply>, QueueRefusal>;

impl Handler<Enqueue> for RateLimiter {
    type Result = MessageResult<Enqueue>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) -> Self::Result {
        let fallback = Err(QueueRefusal::TimedOut(msg.refusal.clone()));
        MessageResult(shell::handle(self, ctx, fallback, |act, ctx| act.enqueue(msg, ctx)))
    }
}

impl Handler<Left> for RateLimiter {
    type Result = ();

    fn handle(&mut self, _msg: Left, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, ctx| act.pump(ctx))
    }
}

impl Handler<Released> for RateLimiter {
    type Result = ();

    fn handle(&mut self, _msg: Released, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, ctx| act.pump(ctx))
    }
}
