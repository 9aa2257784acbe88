//! What every actor shares: its lifecycle state, restart count, restart
//! budget and mailbox depth ([`ActorMeta`], kept outside the actor so they
//! survive a restart and can be read without a message round trip), the one
//! shell every actor runs in ([`shell`]), and the registry `/status` reads
//! ([`ActorRegistry`]).
//!
//! actix's `Supervisor` restarts an actor when it *stops*, not when it
//! panics: actix has no `catch_unwind` (actix#158), so an unwinding handler
//! would kill the actor's task for good. The shell therefore runs every
//! handler, timer, interval and spawned future under `catch_unwind` and turns
//! a panic into `ctx.stop()`; the `Supervisor` then restarts the actor —
//! same actor value, same mailbox — which calls `restarting()` and
//! `started()` again.
//!
//! Work an actor owns outside its context (a writer thread, a task on
//! another arbiter) runs under [`task::keep_running`], with the same
//! restart accounting.
//!
//! Restarts are budgeted ([`RESTART_BUDGET`]): an actor that panics more
//! than that is not restarted again but marked [`ActorState::Failed`].
//!
//! Mailbox depth is not exposed by actix, so typed handles count it: a
//! message is counted when queued ([`ActorMeta::enqueued`]) and uncounted when
//! its handler starts ([`ActorMeta::dequeued`]).

mod budget;
mod registry;
pub mod shell;
pub mod task;

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

pub use budget::{RESTART_BUDGET, RestartBudget};
pub use registry::ActorRegistry;
pub use shell::Shell;

/// Mailbox capacity every actor sets in `started()` (actix's default is 16,
/// too small for bursts of fire-and-forget outcome messages).
pub const MAILBOX_CAPACITY: usize = 4096;

/// Test builds only: make the actor panic inside a handler, to prove the
/// shell restarts it with its state intact (`POST /admin/faults/panic`).
/// Every actor answers it: the shell implements the handler.
#[cfg(feature = "fault-injection")]
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// Test builds only: block the actor's thread for `ms` inside a handler, so
/// its mailbox fills (`POST /admin/faults/stall`): what a burst against a
/// busy actor looks like, made certain. `ms = 0` is a no-op message.
#[cfg(feature = "fault-injection")]
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct InjectStall {
    pub ms: u64,
}

/// Lifecycle of a supervised actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorState {
    Starting,
    Running,
    Restarting,
    Stopped,
    /// Panicked more often than its restart budget allows: no longer
    /// restarted, and its handlers no longer run (each answers what an
    /// unresponsive actor would). Only a new process brings it back.
    Failed,
}

impl ActorState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorState::Starting => "starting",
            ActorState::Running => "running",
            ActorState::Restarting => "restarting",
            ActorState::Stopped => "stopped",
            ActorState::Failed => "failed",
        }
    }

    fn from_u8(v: u8) -> ActorState {
        match v {
            1 => ActorState::Running,
            2 => ActorState::Restarting,
            3 => ActorState::Stopped,
            4 => ActorState::Failed,
            _ => ActorState::Starting,
        }
    }
}

/// What the shell does after a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPanic {
    /// Within the budget: stop, and let the supervisor restart the actor.
    Restart,
    /// Over the budget: the actor is now failed.
    Fail,
}

/// Shared, restart-surviving facts about one actor.
#[derive(Debug)]
pub struct ActorMeta {
    name: &'static str,
    state: AtomicU8,
    restarts: AtomicU64,
    mailbox: AtomicI64,
    dropped: AtomicU64,
    /// Only touched on a panic, so a lock costs nothing that matters.
    budget: Mutex<RestartBudget>,
}

impl ActorMeta {
    pub fn new(name: &'static str) -> Arc<ActorMeta> {
        ActorMeta::with_budget(name, RESTART_BUDGET)
    }

    pub fn with_budget(name: &'static str, budget: RestartBudget) -> Arc<ActorMeta> {
        Arc::new(ActorMeta {
            name,
            state: AtomicU8::new(ActorState::Starting as u8),
            restarts: AtomicU64::new(0),
            mailbox: AtomicI64::new(0),
            dropped: AtomicU64::new(0),
            budget: Mutex::new(budget),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn state(&self) -> ActorState {
        ActorState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn is_failed(&self) -> bool {
        self.state() == ActorState::Failed
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The budget this actor restarts within.
    pub fn budget(&self) -> (u32, Duration) {
        match self.budget.lock() {
            Ok(b) => (b.max_restarts(), b.window()),
            Err(p) => (p.get_ref().max_restarts(), p.get_ref().window()),
        }
    }

    /// Messages queued and not yet handled.
    pub fn mailbox(&self) -> u64 {
        self.mailbox.load(Ordering::Relaxed).max(0) as u64
    }

    /// Fire-and-forget messages refused because the mailbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The actor runs (from `Actor::started`).
    pub fn started(&self) {
        self.set_unless_failed(ActorState::Running);
    }

    /// The supervisor restarts the actor (from `Supervised::restarting`).
    pub fn restarting(&self) {
        self.set_unless_failed(ActorState::Restarting);
        self.restarts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sluice_actor_restarts_total", "actor" => self.name).increment(1);
    }

    /// The actor stopped (from `Actor::stopped`).
    pub fn stopped(&self) {
        self.set_unless_failed(ActorState::Stopped);
    }

    /// A failed actor stays failed, whatever its context does next.
    fn set_unless_failed(&self, to: ActorState) {
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            (cur != ActorState::Failed as u8).then_some(to as u8)
        });
    }

    /// The actor panicked at `now`: restart it, or, over its budget, mark it
    /// failed.
    pub fn panicked(&self, now: Instant) -> AfterPanic {
        let allowed = match self.budget.lock() {
            Ok(mut b) => b.allow(now),
            // A poisoned budget is a panic inside the budget itself: stop
            // restarting rather than trust it.
            Err(_) => false,
        };
        if allowed {
            AfterPanic::Restart
        } else {
            self.state.store(ActorState::Failed as u8, Ordering::Release);
            metrics::counter!("sluice_actor_failures_total", "actor" => self.name).increment(1);
            AfterPanic::Fail
        }
    }

    pub fn enqueued(&self) {
        self.mailbox.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dequeued(&self) {
        self.mailbox.fetch_sub(1, Ordering::Relaxed);
    }

    /// A `try_send` found the mailbox full (or the actor gone): count the drop.
    pub fn refused(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Queue a fire-and-forget message with `try_send`, keeping the mailbox
    /// count right and counting a drop instead of blocking or growing without
    /// bound (`do_send` is banned for that reason).
    pub fn tell<A, M>(&self, addr: &Addr<A>, msg: M) -> bool
    where
        A: Actor<Context = Context<A>> + Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.enqueued();
        match addr.try_send(msg) {
            Ok(()) => true,
            Err(_) => {
                self.dequeued();
                self.refused();
                false
            }
        }
    }

    /// [`ActorMeta::tell`] through a [`Recipient`].
    pub fn tell_to<M>(&self, to: &Recipient<M>, msg: M) -> bool
    where
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.enqueued();
        match to.try_send(msg) {
            Ok(()) => true,
            Err(_) => {
                self.dequeued();
                self.refused();
                false
            }
        }
    }

    /// Ask with a reply, waiting for mailbox room (backpressure) up to `timeout`.
    pub async fn ask<A, M>(&self, addr: &Addr<A>, msg: M, timeout: Duration) -> Result<M::Result, MailboxError>
    where
        A: Actor<Context = Context<A>> + Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.enqueued();
        let reply = addr.send(msg).timeout(timeout).await;
        if reply.is_err() {
            // The message may or may not have been handled; a lost decrement
            // would leave the gauge high forever, so only undo it when the
            // handler could not have run (closed mailbox).
            if let Err(MailboxError::Closed) = reply {
                self.dequeued();
            }
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_counts_lifecycle_and_mailbox() {
        let m = ActorMeta::new("t");
        assert_eq!(m.state(), ActorState::Starting);
        m.started();
        assert_eq!(m.state(), ActorState::Running);
        m.enqueued();
        m.enqueued();
        m.dequeued();
        assert_eq!(m.mailbox(), 1);
        m.restarting();
        assert_eq!(m.restarts(), 1);
        assert_eq!(m.state(), ActorState::Restarting);
        m.started();
        m.stopped();
        assert_eq!(m.state(), ActorState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn over_its_budget_an_actor_is_failed_for_good() {
        let m = ActorMeta::with_budget("t", RestartBudget::new(2, Duration::from_secs(10)));
        m.started();
        assert_eq!(m.panicked(Instant::now()), AfterPanic::Restart);
        assert_eq!(m.panicked(Instant::now()), AfterPanic::Restart);
        assert_eq!(m.panicked(Instant::now()), AfterPanic::Fail);
        assert!(m.is_failed());
        // Its context stopping or starting again does not hide the failure.
        m.stopped();
        m.started();
        assert_eq!(m.state().as_str(), "failed");
    }
}
