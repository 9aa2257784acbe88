//! Messages of the `UpstreamSessions` actor.

use actix::Message;

pub use super::state::UpstreamErrorKind;

/// A handler saw an upstream failure on this provider (tell).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordUpstreamError {
    pub provider: usize,
    pub kind: UpstreamErrorKind,
    /// Must hold no secret: built from hyper errors and status codes only.
    pub message: String,
}
