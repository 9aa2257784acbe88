//! Outcomes: what each upstream attempt came to, told to the actors that
//! learn from it (`CircuitBreakers`, `ModelAvailability`).
//!
//! Outcomes are buffered per worker and sent as one batch about a
//! millisecond later: a tell that has to wake an actor's sleeping thread
//! costs the sender 5–14 µs on this kind of VM (docs/benchmarks/micro.md),
//! and a request must not pay that. The breakers react within that
//! millisecond, which is far below any cool-down.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_actors::availability::AvailabilityHandle;
use sluice_actors::circuit_breakers::{BreakersHandle, Verdict};
use sluice_actors::outcome::AttemptOutcome;
use sluice_actors::rate_limiter::{LimiterHandle, SpendRecord};

use crate::error::GatewayError;

/// How long outcomes wait to be sent together.
const FLUSH_AFTER: Duration = Duration::from_millis(1);
/// Send at once when this many are waiting.
const FLUSH_AT: usize = 256;

/// One worker's outcome buffer.
pub struct OutcomeSink {
    buf: RefCell<Vec<AttemptOutcome>>,
    /// Spend was handed over since the last flush: wake its writers then
    /// (same batching: the records themselves are already in the outboxes,
    /// so a flush that never runs loses nothing).
    spend_pending: Cell<bool>,
    scheduled: Cell<bool>,
    breakers: BreakersHandle,
    availability: AvailabilityHandle,
    limiter: LimiterHandle,
}

impl OutcomeSink {
    pub fn new(breakers: BreakersHandle, availability: AvailabilityHandle, limiter: LimiterHandle) -> Rc<OutcomeSink> {
        Rc::new(OutcomeSink {
            buf: RefCell::new(Vec::new()),
            spend_pending: Cell::new(false),
            scheduled: Cell::new(false),
            breakers,
            availability,
            limiter,
        })
    }

    /// Hand a finished request's cost over to be persisted (lossless: see
    /// `sluice_actors::rate_limiter::outbox`); its writers are woken with
    /// the next flush.
    pub fn push_spend(self: &Rc<Self>, r: SpendRecord) {
        self.limiter.persist_spend(&r);
        self.spend_pending.set(true);
        self.schedule();
    }

    fn schedule(self: &Rc<Self>) {
        if !self.scheduled.replace(true) {
            let me = self.clone();
            actix_web::rt::spawn(async move {
                tokio::time::sleep(FLUSH_AFTER).await;
                me.flush();
            });
        }
    }

    /// Queue one outcome; the batch leaves within [`FLUSH_AFTER`].
    pub fn push(self: &Rc<Self>, o: AttemptOutcome) {
        let len = {
            let mut b = self.buf.borrow_mut();
            b.push(o);
            b.len()
        };
        if len >= FLUSH_AT {
            self.flush();
        } else {
            self.schedule();
        }
    }

    pub fn flush(&self) {
        self.scheduled.set(false);
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
