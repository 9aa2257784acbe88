//! `RateLimiter`: request, token and concurrency limits per key, per key and
//! model, per model and per deployment (GCRA, exact), a bounded priority
//! queue for requests that would be refused, and spend per key and model
//! with daily and monthly budgets, persisted in an embedded store.
//!
//! Admission itself runs on the request path against the limiter table
//! (atomics; see `table.rs` for why); the actor owns the queue, the spend
//! store and `/status`.

pub mod backend;
pub mod gcra;
mod handle;
pub mod messages;
pub mod spend;
pub mod store;
pub mod table;

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use backend::{Grant, LimiterBackend, admit};
pub use handle::{LimiterHandle, LimiterSpec};
pub use messages::QueueRefusal;
pub use spend::{BudgetHit, Budgets, SpendRecord, SpendTable};
pub use table::{Exceeded, Headroom, LimitSpec, LimiterTable, Refusal};

use crate::status::GetStatus;
use crate::supervision::{ActorMeta, guarded, guarded_with};
use messages::{Enqueue, RecordSpend, Released};

pub const NAME: &str = "rate_limiter";

struct Waiter {
    priority: i32,
    seq: u64,
    scopes: Vec<usize>,
    tokens: u64,
    deadline: Instant,
    refusal: Refusal,
    reply: oneshot::Sender<Result<Grant, QueueRefusal>>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// Higher priority first, then first come first served.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

pub struct RateLimiter {
    /// `in-process`, or `redis` in shared mode.
    backend_name: &'static str,
    table: Arc<LimiterTable>,
    spend: Arc<SpendTable>,
    store: Option<store::SpendStore>,
    queue: BinaryHeap<Waiter>,
    max_queue: usize,
    seq: u64,
    timer: Option<SpawnHandle>,
    shed: u64,
    timed_out: u64,
    admitted_from_queue: u64,
    meta: Arc<ActorMeta>,
}

impl RateLimiter {
    /// Admit every waiter that fits now, highest priority first; answer the
    /// expired; sleep until the next one could fit or expire.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut keep = Vec::with_capacity(self.queue.len());
        let mut wake: Option<Instant> = None;
        while let Some(w) = self.queue.pop() {
            if w.reply.is_closed() {
                continue; // the client went away
            }
            if w.deadline <= now {
                self.timed_out += 1;
                let _ = w.reply.send(Err(QueueRefusal::TimedOut(w.refusal)));
                continue;
            }
            match self.table.admit(&w.scopes, w.tokens) {
                Ok(grant) => {
                    self.admitted_from_queue += 1;
                    // If the client left meanwhile, the grant comes back and drops.
                    let _ = w.reply.send(Ok(grant));
                }
                Err(r) => {
                    let at = r.retry_after.map_or(w.deadline, |d| (now + d).min(w.deadline));
                    wake = Some(wake.map_or(at, |x| x.min(at)));
                    keep.push(Waiter { refusal: r, ..w });
                }
            }
        }
        self.queue.extend(keep);
        self.table.waiting.store(self.queue.len(), std::sync::atomic::Ordering::Release);
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(at) = wake {
            let d = at.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            self.timer = Some(ctx.run_later(d, |act, ctx| {
                act.timer = None;
                act.pump(ctx);
            }));
        }
    }

    fn detail(&self) -> sonic_rs::Value {
        let scopes: Vec<sonic_rs::Value> = (0..self.table.len()).filter_map(|i| self.table.detail(i)).collect();
        let day = spend::day_of(spend::unix_now());
        sonic_rs::json!({
            "backend": self.backend_name,
            "scopes": scopes,
            "queue": {
                "waiting": self.queue.len(),
                "max": self.max_queue,
                "admitted_from_queue": self.admitted_from_queue,
                "shed_full": self.shed,
                "timed_out": self.timed_out,
            },
            "spend": self.spend.detail(day),
            "spend_store": self.store.as_ref().map(|s| s.path().display().to_string()),
        })
    }
}

impl Actor for RateLimiter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::supervision::MAILBOX_CAPACITY);
        self.meta.started();
        // Waiters survive a restart (the heap is kept); their timer does not.
        self.pump(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.meta.stopped();
    }
}

impl Supervised for RateLimiter {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.timer = None;
        self.meta.restarting();
    }
}

impl Handler<Enqueue> for RateLimiter {
    type Result = ResponseFuture<Result<Grant, QueueRefusal>>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) -> Self::Result {
        self.meta.dequeued();
        if self.queue.len() >= self.max_queue {
            self.shed += 1;
            return Box::pin(async { Err(QueueRefusal::Full) });
        }
        let (tx, rx) = oneshot::channel();
        self.seq += 1;
        let refusal = msg.refusal.clone();
        self.queue.push(Waiter {
            priority: msg.priority,
            seq: self.seq,
            scopes: msg.scopes,
            tokens: msg.tokens,
            deadline: msg.deadline,
            refusal: msg.refusal,
            reply: tx,
        });
        let meta = self.meta.clone();
        guarded_with(&meta, ctx, (), |ctx| self.pump(ctx));
        Box::pin(async move { rx.await.unwrap_or(Err(QueueRefusal::TimedOut(refusal))) })
    }
}

impl Handler<Released> for RateLimiter {
    type Result = ();

    fn handle(&mut self, _msg: Released, ctx: &mut Self::Context) {
        self.meta.dequeued();
        let meta = self.meta.clone();
        guarded_with(&meta, ctx, (), |ctx| self.pump(ctx));
    }
}

impl Handler<RecordSpend> for RateLimiter {
    type Result = ();

    fn handle(&mut self, msg: RecordSpend, _ctx: &mut Self::Context) {
        self.meta.dequeued();
        if let Some(store) = &self.store {
            store.write(msg.records);
        }
    }
}

impl Handler<GetStatus> for RateLimiter {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, ctx: &mut Self::Context) -> Self::Result {
        self.meta.dequeued();
        let meta = self.meta.clone();
        let fallback = sonic_rs::json!({ "error": "status handler failed; the actor is restarting" });
        MessageResult(guarded(&meta, ctx, fallback, || self.detail()))
    }
}
