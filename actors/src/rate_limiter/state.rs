//! The queue of requests waiting for their limits, as a pure state machine:
//! no actix, time passed in, admission passed in, so it is tested on a
//! paused clock. The `RateLimiter` actor owns one and pumps it when a slot
//! frees, a request joins, or the soonest waiter could fit.
//!
//! Order: highest key priority first, then first come first served. A
//! waiter leaves when admitted (its reply carries the grant), when its
//! deadline passes (it gets the refusal that queued it), or when its client
//! is gone (its reply channel closed).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::backend::Grant;
use super::messages::{Enqueue, QueueRefusal};
use super::table::Refusal;

/// What a waiter's client receives.
pub type QueueReply = Result<Grant, QueueRefusal>;

struct Waiter {
    priority: i32,
    seq: u64,
    scopes: Vec<usize>,
    tokens: u64,
    deadline: Instant,
    refusal: Refusal,
    reply: oneshot::Sender<QueueReply>,
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

/// The bounded priority queue and its counters.
pub struct WaitQueue {
    heap: BinaryHeap<Waiter>,
    max: usize,
    seq: u64,
    shed: u64,
    timed_out: u64,
    admitted: u64,
}

/// The queue as `/status` shows it (`rate_limiter` → `queue`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueDetail {
    pub waiting: usize,
    pub max: usize,
    pub admitted_from_queue: u64,
    pub shed_full: u64,
    pub timed_out: u64,
}

impl WaitQueue {
    pub fn new(max: usize) -> WaitQueue {
        WaitQueue { heap: BinaryHeap::new(), max, seq: 0, shed: 0, timed_out: 0, admitted: 0 }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Queue a request; its answer comes on the returned receiver. A full
    /// queue sheds it at once.
    pub fn push(&mut self, req: Enqueue) -> Result<oneshot::Receiver<QueueReply>, QueueRefusal> {
        if self.heap.len() >= self.max {
            // Requests whose client left hold no place.
            self.heap.retain(|w| !w.reply.is_closed());
        }
        if self.heap.len() >= self.max {
            self.shed += 1;
            return Err(QueueRefusal::Full);
        }
        let (reply, rx) = oneshot::channel();
        self.seq += 1;
        self.heap.push(Waiter {
            priority: req.priority,
            seq: self.seq,
            scopes: req.scopes,
            tokens: req.tokens,
            deadline: req.deadline,
            refusal: req.refusal,
            reply,
        });
        Ok(rx)
    }

    /// Admit every waiter `admit` lets in now, highest priority first;
    /// answer the expired; drop those whose client left. Returns when the
    /// next waiter could fit or expires, if any waits.
    pub fn pump(
        &mut self,
        now: Instant,
        mut admit: impl FnMut(&[usize], u64) -> Result<Grant, Refusal>,
    ) -> Option<Instant> {
        let mut keep = Vec::with_capacity(self.heap.len());
        let mut wake: Option<Instant> = None;
        while let Some(w) = self.heap.pop() {
            if w.reply.is_closed() {
                continue; // the client went away
            }
            if w.deadline <= now {
                self.timed_out += 1;
                let _ = w.reply.send(Err(QueueRefusal::TimedOut(w.refusal)));
                continue;
            }
            match admit(&w.scopes, w.tokens) {
                Ok(grant) => {
                    self.admitted += 1;
                    // The client left since `is_closed` above: the grant comes
                    // back, and what it took is given back whole.
                    if let Err(Ok(grant)) = w.reply.send(Ok(grant)) {
                        self.admitted -= 1;
                        grant.refund();
                    }
                }
                Err(r) => {
                    let at = r.retry_after.map_or(w.deadline, |d| (now + d).min(w.deadline));
                    wake = Some(wake.map_or(at, |x| x.min(at)));
                    keep.push(Waiter { refusal: r, ..w });
                }
            }
        }
        self.heap.extend(keep);
        wake
    }

    /// A read of the queue.
    pub fn detail(&self) -> QueueDetail {
        QueueDetail {
            waiting: self.heap.len(),
            max: self.max,
            admitted_from_queue: self.admitted,
            shed_full: self.shed,
            timed_out: self.timed_out,
        }
    }
}

/// How long to sleep until `wake`, at least a millisecond (a timer at
/// "now" would spin).
pub fn sleep_until(wake: Instant, now: Instant) -> Duration {
    wake.saturating_duration_since(now).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests;
