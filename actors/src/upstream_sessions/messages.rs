//! Messages of the `UpstreamSessions` actor.

use actix::Message;
use tokio::sync::mpsc;

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

/// A worker built its pools (tell). The actor registers them and sends
/// the worker its warm-up orders on `orders`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct JoinWorker {
    pub orders: mpsc::UnboundedSender<WarmUp>,
}

/// An order to a worker: open its warm connections to `provider` (or, with
/// `retire`, drop its pool: no snapshot uses the provider any more). Sent
/// on the worker's own channel, because the connections must be opened on
/// the worker's runtime to land in its pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmUp {
    pub worker: usize,
    pub provider: usize,
    pub retire: bool,
}

/// The providers a new snapshot uses (ask, before it is published): the
/// session table already holds any new ones; the actor orders their
/// warm-up on every worker and has workers drop the pools of providers gone.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Providers {
    pub live: Vec<usize>,
}

/// A worker's report on a warm-up order (tell).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Warmed {
    pub worker: usize,
    pub provider: usize,
    /// Connections opened.
    pub opened: usize,
    /// The first failure, if any (no secret: transport errors only).
    pub error: Option<String>,
}
