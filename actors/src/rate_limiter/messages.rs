//! Messages of the `RateLimiter` actor.

use actix::Message;
use tokio::time::Instant;

use super::backend::Grant;
use super::table::Refusal;

/// Join the priority queue (ask). The reply is the receiver of the
/// request's answer, handed back at once: the request waits on it itself,
/// so a request that is dropped (its client left) drops the receiver and
/// the queue sees it gone — rather than the actor waiting on its behalf.
#[derive(Debug, Message)]
#[rtype(result = "Result<tokio::sync::oneshot::Receiver<Result<Grant, QueueRefusal>>, QueueRefusal>")]
pub struct Enqueue {
    pub scopes: Vec<usize>,
    pub tokens: u64,
    /// Higher goes first.
    pub priority: i32,
    pub deadline: Instant,
    /// Why it was refused at once (returned if it times out).
    pub refusal: Refusal,
}

/// Why a queued request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRefusal {
    /// The queue was full: shed at once.
    Full,
    /// Its wait ran out; the limit that refused it.
    TimedOut(Refusal),
}

/// A queued request left before its answer (its client went away): forget
/// it now, so it holds no place in the queue (tell).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Left;

/// A concurrency slot was freed while requests wait (tell).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Released;
