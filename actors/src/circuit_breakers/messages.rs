//! Messages of the `CircuitBreakers` actor.

use actix::Message;

use super::state::Admission;
use crate::outcome::DeploymentId;
pub use crate::outcome::RecordOutcomes;

/// May a request go to this half-open (or cooled-down open) deployment?
/// Asked only off the common path: a closed circuit is read from the gate.
#[derive(Debug, Message)]
#[rtype(result = "Admission")]
pub struct Admit {
    pub deployment: DeploymentId,
}

/// Another replica says this deployment is failing or cooling (shared
/// mode): skip it for `hold` (tell).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RemoteHold {
    /// `provider/model`: every deployment with this label (models may share one).
    pub label: String,
    pub hold: std::time::Duration,
}
