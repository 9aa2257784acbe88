//! What every actor shares: its lifecycle state, restart count and mailbox
//! depth, kept outside the actor so they survive a restart and can be read
//! without a message round trip.
//!
//! actix's `Supervisor` restarts an actor when it *stops* (not when it panics:
//! actix has no `catch_unwind`), keeping the same actor value and mailbox and
//! calling `Supervised::restarting` then `Actor::started` again. Actors call
//! [`ActorMeta::started`] / [`ActorMeta::restarting`] / [`ActorMeta::stopped`]
//! from those hooks.
//!
//! Mailbox depth is not exposed by actix, so typed handles count it: a
//! message is counted when queued ([`ActorMeta::enqueued`]) and uncounted when
//! its handler starts ([`ActorMeta::dequeued`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;

use crate::status::{ActorStatus, GetStatus};

/// Mailbox capacity every actor sets in `started()` (actix's default is 16,
/// too small for bursts of fire-and-forget outcome messages).
pub const MAILBOX_CAPACITY: usize = 4096;

/// Lifecycle of a supervised actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorState {
    Starting,
    Running,
    Restarting,
    Stopped,
}

impl ActorState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorState::Starting => "starting",
            ActorState::Running => "running",
            ActorState::Restarting => "restarting",
            ActorState::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> ActorState {
        match v {
            1 => ActorState::Running,
            2 => ActorState::Restarting,
            3 => ActorState::Stopped,
            _ => ActorState::Starting,
        }
    }
}

/// Shared, restart-surviving facts about one actor.
#[derive(Debug)]
pub struct ActorMeta {
    name: &'static str,
    state: AtomicU8,
    restarts: AtomicU64,
    mailbox: AtomicI64,
    dropped: AtomicU64,
}

impl ActorMeta {
    pub fn new(name: &'static str) -> Arc<ActorMeta> {
        Arc::new(ActorMeta {
            name,
            state: AtomicU8::new(ActorState::Starting as u8),
            restarts: AtomicU64::new(0),
            mailbox: AtomicI64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn state(&self) -> ActorState {
        ActorState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Messages queued and not yet handled.
    pub fn mailbox(&self) -> u64 {
        self.mailbox.load(Ordering::Relaxed).max(0) as u64
    }

    /// Fire-and-forget messages refused because the mailbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Call from `Actor::started`.
    pub fn started(&self) {
        self.state.store(ActorState::Running as u8, Ordering::Release);
    }

    /// Call from `Supervised::restarting`.
    pub fn restarting(&self) {
        self.state.store(ActorState::Restarting as u8, Ordering::Release);
        self.restarts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sluice_actor_restarts_total", "actor" => self.name).increment(1);
    }

    /// Call from `Actor::stopped`.
    pub fn stopped(&self) {
        self.state.store(ActorState::Stopped as u8, Ordering::Release);
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

/// Run one handler's body so that a panic cannot take the actor's thread
/// down with it: actix catches no unwinds (actix#158), so a panic would end
/// the arbiter and every actor on it. On a panic the actor stops, its
/// `Supervisor` restarts it (same actor value, same mailbox), and the caller
/// gets `fallback`.
pub fn guarded<A, R>(meta: &ActorMeta, ctx: &mut Context<A>, fallback: R, body: impl FnOnce() -> R) -> R
where
    A: Actor<Context = Context<A>>,
{
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(actor = meta.name(), "actor handler panicked; restarting the actor");
            ctx.stop();
            fallback
        }
    }
}

/// [`guarded`] for handler bodies that need the context themselves (timers,
/// spawned futures).
pub fn guarded_with<A, R>(
    meta: &ActorMeta,
    ctx: &mut Context<A>,
    fallback: R,
    body: impl FnOnce(&mut Context<A>) -> R,
) -> R
where
    A: Actor<Context = Context<A>>,
{
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut *ctx)));
    match result {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(actor = meta.name(), "actor handler panicked; restarting the actor");
            ctx.stop();
            fallback
        }
    }
}

/// Every running actor, for `/status` and the mailbox/restart metrics.
#[derive(Clone, Default)]
pub struct ActorRegistry {
    entries: Vec<RegistryEntry>,
}

#[derive(Clone)]
struct RegistryEntry {
    meta: Arc<ActorMeta>,
    status: Recipient<GetStatus>,
}

impl ActorRegistry {
    pub fn register(&mut self, meta: Arc<ActorMeta>, status: Recipient<GetStatus>) {
        self.entries.push(RegistryEntry { meta, status });
    }

    pub fn metas(&self) -> impl Iterator<Item = &Arc<ActorMeta>> {
        self.entries.iter().map(|e| &e.meta)
    }

    /// Publish mailbox depth per actor as gauges (called before a scrape).
    pub fn publish_gauges(&self) {
        for e in &self.entries {
            metrics::gauge!("sluice_actor_mailbox_depth", "actor" => e.meta.name).set(e.meta.mailbox() as f64);
        }
    }

    /// Ask every actor for its live detail. An actor that does not answer in
    /// `timeout` is reported as such rather than holding up `/status`.
    pub async fn status(&self, timeout: Duration) -> Vec<ActorStatus> {
        let asks = self.entries.iter().map(|e| {
            let meta = e.meta.clone();
            let status = e.status.clone();
            async move {
                meta.enqueued();
                let reply = status.send(GetStatus).timeout(timeout).await;
                let (detail, responsive) = match reply {
                    Ok(detail) => (detail, true),
                    Err(err) => {
                        if let MailboxError::Closed = err {
                            meta.dequeued();
                        }
                        (sonic_rs::json!({ "error": err.to_string() }), false)
                    }
                };
                ActorStatus {
                    name: meta.name(),
                    state: if responsive { meta.state().as_str() } else { "unresponsive" },
                    restarts: meta.restarts(),
                    mailbox: meta.mailbox(),
                    dropped_messages: meta.dropped(),
                    detail,
                }
            }
        });
        futures_util::future::join_all(asks).await
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
}
