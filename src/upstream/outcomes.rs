//! Outcomes: what each upstream attempt came to, told to the actors that
//! learn from it (`CircuitBreakers`, `ModelAvailability`), and the
//! wake-up of the spend store's writers.
//!
//! Both are buffered per worker and sent in batches: a tell that has to
//! wake an actor's sleeping thread costs the sender 5–14 µs on this kind of
//! VM (docs/benchmarks/micro.md), and the woken thread itself tens of µs of
//! CPU (docs/performance.md, "Outcome batching"), so a request must not pay
//! one each.
//!
//! How long an item waits depends on whether anyone needs it now
//! ([`Batching`]). An outcome that changes a decision — a failure, a 429,
//! any outcome of a deployment whose circuit is not plainly closed (a
//! probe's result) — leaves at once with everything queued before it, so
//! the breakers react within the request and see outcomes in order. A
//! routine one (a success or a client error on a closed circuit) only feeds
//! averages and counts: it rides along with the next batch, leaving when a
//! later item finds the oldest one [`MAX_WAIT`] old, or by a timer after
//! [`IDLE_FLUSH`] once traffic stops. A spend record is persisted at once
//! (the limiter's outbox); only the wake-up of its writers is batched, and
//! within [`SPEND_FLUSH`], as every batch was before. Before, the
//! 1 ms timer fired once per request at a moderate rate, waking the worker
//! and then the actors' thread for one outcome each time.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_actors::availability::AvailabilityHandle;
use sluice_actors::circuit_breakers::{BreakersHandle, GateView, Verdict};
use sluice_actors::outcome::AttemptOutcome;
use sluice_actors::rate_limiter::{LimiterHandle, SpendRecord};
use tokio::time::Instant;

use crate::error::GatewayError;

/// A routine outcome leaves with the first push that finds the batch this
/// old. Routine outcomes only move averages and counts (latency and TTFT
/// averages, `/status`), which can lag by this much; each batch wakes the
/// actors' thread, so at a steady moderate rate this interval sets that
/// thread's wake-ups: 50 ms (and a 100-ms timer) made ~36 a second, ~0.18
/// per request at 200 req/s (docs/performance.md, "Fewer batches of
/// outcomes").
const MAX_WAIT: Duration = Duration::from_millis(500);
/// Once traffic stops, what is queued leaves after this long (a timer: the
/// only wake-up routine outcomes add, at most one per this interval).
const IDLE_FLUSH: Duration = Duration::from_secs(1);
/// A spend record's writers are woken after at most this long (its own timer).
const SPEND_FLUSH: Duration = Duration::from_millis(1);
/// Send at once when this many are waiting.
const FLUSH_AT: usize = 256;

/// When a batch leaves: the pure part of [`OutcomeSink`].
#[derive(Debug, Default)]
pub struct Batching {
    /// When the oldest queued item arrived; `None` when nothing is queued.
    oldest: Option<Instant>,
    queued: usize,
    /// The [`IDLE_FLUSH`] timer is armed.
    idle_armed: bool,
    /// The [`SPEND_FLUSH`] timer is armed.
    spend_armed: bool,
}

/// How soon a queued item must leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// It changes a decision: send it (and the batch) now.
    Now,
    /// A spend record: within [`SPEND_FLUSH`].
    Soon,
    /// Averages and counts: with a later batch.
    Routine,
}

/// What to do after queueing one item.
#[derive(Debug, PartialEq, Eq)]
pub enum Then {
    /// Send the batch now.
    Flush,
    /// Leave it queued and arm a timer that sends the batch after this long.
    ArmTimer(Duration),
    /// Leave it queued; the armed timer or a later push sends it.
    Wait,
}

impl Batching {
    /// One more item queued at `now`.
    pub fn queued(&mut self, now: Instant, need: Need) -> Then {
        self.queued += 1;
        let oldest = *self.oldest.get_or_insert(now);
        if need == Need::Now || self.queued >= FLUSH_AT || now.saturating_duration_since(oldest) >= MAX_WAIT {
            Then::Flush
        } else if need == Need::Soon && !self.spend_armed {
            self.spend_armed = true;
            Then::ArmTimer(SPEND_FLUSH)
        } else if self.idle_armed || self.spend_armed {
            Then::Wait
        } else {
            self.idle_armed = true;
            Then::ArmTimer(IDLE_FLUSH)
        }
    }

    /// The batch left.
    pub fn flushed(&mut self) {
        self.oldest = None;
        self.queued = 0;
    }

    /// The timer armed for `after` fired (and the batch leaves).
    pub fn timer_fired(&mut self, after: Duration) {
        if after == SPEND_FLUSH {
            self.spend_armed = false;
        } else {
            self.idle_armed = false;
        }
        self.flushed();
    }
}

/// One worker's outcome buffer.
pub struct OutcomeSink {
    buf: RefCell<Vec<AttemptOutcome>>,
    /// Spend was handed over since the last flush: wake its writers then
    /// (the records themselves are already in the outboxes, so a flush
    /// that never runs loses nothing).
    spend_pending: Cell<bool>,
    batching: RefCell<Batching>,
    breakers: BreakersHandle,
    availability: AvailabilityHandle,
    limiter: LimiterHandle,
}

impl OutcomeSink {
    pub fn new(breakers: BreakersHandle, availability: AvailabilityHandle, limiter: LimiterHandle) -> Rc<OutcomeSink> {
        Rc::new(OutcomeSink {
            buf: RefCell::new(Vec::new()),
            spend_pending: Cell::new(false),
            batching: RefCell::new(Batching::default()),
            breakers,
            availability,
            limiter,
        })
    }

    /// Hand a finished request's cost over to be persisted (lossless: see
    /// `sluice_actors::rate_limiter::outbox`); its writers are woken with
    /// the next batch, within [`SPEND_FLUSH`].
    pub fn push_spend(self: &Rc<Self>, r: SpendRecord) {
        self.limiter.persist_spend(&r);
        self.spend_pending.set(true);
        self.then(Need::Soon);
    }

    /// Queue one outcome; it leaves at once if it changes a decision, else
    /// with a later batch (see the module's comment).
    pub fn push(self: &Rc<Self>, o: AttemptOutcome) {
        let routine = matches!(o.verdict, Verdict::Success | Verdict::Neutral)
            && self.breakers.gates().view(o.deployment) == GateView::Pass;
        self.buf.borrow_mut().push(o);
        self.then(if routine { Need::Routine } else { Need::Now });
    }

    fn then(self: &Rc<Self>, need: Need) {
        let then = self.batching.borrow_mut().queued(Instant::now(), need);
        match then {
            Then::Flush => self.flush(),
            Then::ArmTimer(after) => {
                let me = self.clone();
                actix_web::rt::spawn(async move {
                    tokio::time::sleep(after).await;
                    me.batching.borrow_mut().timer_fired(after);
                    me.send();
                });
            }
            Then::Wait => {}
        }
    }

    pub fn flush(&self) {
        self.batching.borrow_mut().flushed();
        self.send();
    }

    fn send(&self) {
        if self.spend_pending.replace(false) {
            self.limiter.wake_spend_writers();
        }
        let batch: Vec<AttemptOutcome> = std::mem::take(&mut *self.buf.borrow_mut());
        if batch.is_empty() {
            return;
        }
        let batch: Arc<[AttemptOutcome]> = batch.into();
        self.breakers.record(batch.clone());
        self.availability.record(batch);
    }
}

/// How an attempt's error counts for its deployment's breaker.
pub fn verdict(e: &GatewayError) -> Verdict {
    match e {
        GatewayError::UpstreamConnect { .. }
        | GatewayError::UpstreamTimeout { .. }
        | GatewayError::UpstreamProtocol { .. }
        // A provider without usable credentials fails every call: let its
        // circuit open rather than keep trying it.
        | GatewayError::UpstreamCredentials { .. } => Verdict::Failure,
        GatewayError::UpstreamStatus { upstream_status: 429, retry_after, .. } => {
            Verdict::RateLimited { retry_after: *retry_after }
        }
        // The deployment itself is unusable (its credentials, its model name)
        // or failing; other 4xx were the request's fault.
        GatewayError::UpstreamStatus { upstream_status, .. } => {
            if matches!(*upstream_status, 401 | 403 | 404 | 408) || *upstream_status >= 500 {
                Verdict::Failure
            } else {
                Verdict::Neutral
            }
        }
        // Our own limits and the client's mistakes say nothing about the upstream.
        GatewayError::UpstreamSaturated { .. }
        | GatewayError::InvalidRequest { .. }
        | GatewayError::MissingApiKey
        | GatewayError::InvalidApiKey
        | GatewayError::MalformedApiKey { .. }
        | GatewayError::AdminKeyRequired
        | GatewayError::AdminNotFound { .. }
        | GatewayError::AdminConflict { .. }
        | GatewayError::ModelNotAllowed { .. }
        | GatewayError::ModelNotFound { .. }
        | GatewayError::ContextLengthExceeded { .. }
        | GatewayError::RouteNotFound { .. }
        | GatewayError::ResponseNotFound { .. }
        | GatewayError::PayloadTooLarge { .. }
        | GatewayError::BodyTimeout { .. }
        | GatewayError::NoDeployment { .. }
        | GatewayError::ShuttingDown
        | GatewayError::RateLimited { .. }
        | GatewayError::QuotaExceeded { .. }
        | GatewayError::Overloaded
        | GatewayError::Internal { .. } => Verdict::Neutral,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn routine_outcomes_wait_urgent_ones_leave_at_once() {
        let mut b = Batching::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // The first routine outcome arms the idle timer; later ones wait.
        assert_eq!(b.queued(t0, Need::Routine), Then::ArmTimer(IDLE_FLUSH));
        assert_eq!(b.queued(t0 + ms(5), Need::Routine), Then::Wait);
        // A failure takes the whole batch at once.
        assert_eq!(b.queued(t0 + ms(6), Need::Now), Then::Flush);
        b.flushed();
        // The timer is still armed: a new batch does not arm another.
        assert_eq!(b.queued(t0 + ms(7), Need::Routine), Then::Wait);
        // A push that finds the oldest MAX_WAIT old sends the batch with it.
        assert_eq!(b.queued(t0 + ms(7) + MAX_WAIT - ms(1), Need::Routine), Then::Wait);
        assert_eq!(b.queued(t0 + ms(7) + MAX_WAIT, Need::Routine), Then::Flush);
        b.flushed();
        // The timer fires; the next outcome arms a new one.
        b.timer_fired(IDLE_FLUSH);
        assert_eq!(b.queued(t0 + IDLE_FLUSH, Need::Routine), Then::ArmTimer(IDLE_FLUSH));
    }

    #[tokio::test(start_paused = true)]
    async fn spend_records_leave_within_their_short_timer() {
        let mut b = Batching::default();
        let t0 = Instant::now();
        assert_eq!(b.queued(t0, Need::Routine), Then::ArmTimer(IDLE_FLUSH));
        // A spend record arms the short timer even with the idle one armed:
        // it takes the routine outcomes along.
        assert_eq!(b.queued(t0, Need::Soon), Then::ArmTimer(SPEND_FLUSH));
        assert_eq!(b.queued(t0, Need::Soon), Then::Wait);
        assert_eq!(b.queued(t0, Need::Routine), Then::Wait);
        b.timer_fired(SPEND_FLUSH);
        // Only the idle timer is left armed: the next spend record arms its own.
        assert_eq!(b.queued(t0 + SPEND_FLUSH, Need::Routine), Then::Wait);
        assert_eq!(b.queued(t0 + SPEND_FLUSH, Need::Soon), Then::ArmTimer(SPEND_FLUSH));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_leaves_at_once() {
        let mut b = Batching::default();
        let t0 = Instant::now();
        for i in 1..FLUSH_AT {
            assert_ne!(b.queued(t0, Need::Routine), Then::Flush, "item {i}");
        }
        assert_eq!(b.queued(t0, Need::Routine), Then::Flush);
    }

    #[test]
    fn verdicts() {
        let status = |s: u16, ra: Option<u64>| GatewayError::UpstreamStatus {
            provider: "p".into(),
            upstream_status: s,
            body: bytes::Bytes::new(),
            retry_after: ra.map(Duration::from_secs),
        };
        assert_eq!(verdict(&status(500, None)), Verdict::Failure);
        assert_eq!(verdict(&status(400, None)), Verdict::Neutral);
        assert_eq!(verdict(&status(429, Some(2))), Verdict::RateLimited { retry_after: Some(Duration::from_secs(2)) });
        assert_eq!(verdict(&GatewayError::UpstreamSaturated { provider: "p".into() }), Verdict::Neutral);
    }
}
