//! What one upstream attempt came to: the message the request path sends,
//! in batches, to the actors that learn from it (circuit breakers,
//! availability).

use std::sync::Arc;
use std::time::Duration;

use actix::Message;

use crate::circuit_breakers::Verdict;

/// Index of a deployment in the gateway's flat list (every model's
/// deployments, in config order).
pub type DeploymentId = usize;

/// One attempt's result.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub deployment: DeploymentId,
    pub verdict: Verdict,
    /// From sending to the answer (non-stream) or first event (stream), or to
    /// the failure.
    pub latency: Duration,
    /// Time to first token, for streams that got one.
    pub ttft: Option<Duration>,
    /// For failures: a short kind label and a message without secrets.
    pub error: Option<(&'static str, String)>,
}

/// A batch of attempt outcomes (tell): the request path buffers outcomes
/// per worker and sends them in one message, so a request never pays for
/// waking an actor's thread.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RecordOutcomes {
    pub outcomes: Arc<[AttemptOutcome]>,
}
