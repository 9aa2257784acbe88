//! Messages of the `RateLimiter` actor.

use actix::Message;
use tokio::time::Instant;

use super::backend::Grant;
use super::spend::SpendRecord;
use super::table::Refusal;

/// Wait in the priority queue for the limits to admit this request (ask).
#[derive(Debug, Message)]
#[rtype(result = "Result<Grant, QueueRefusal>")]
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

/// A concurrency slot was freed while requests wait (tell).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Released;

/// Costs of finished requests, to persist (tell).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordSpend {
    pub records: Vec<SpendRecord>,
}
