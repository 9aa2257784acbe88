//! Messages of the `ResponseCache` actor.

use std::time::Duration;

use actix::Message;

use super::state::{CacheKey, StoredAnswer};

/// Store a complete, successful answer. Asked (not told) by the task that
/// fetched it, which keeps its single-flight entry until the reply, so no
/// request can miss both the flight and the stored entry in between.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct Store {
    pub key: CacheKey,
    pub answer: StoredAnswer,
    pub ttl: Duration,
}

/// Drop every entry (tests and operators; not on the request path).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Clear;
