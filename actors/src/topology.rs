//! The deployments and providers of the gateway's current snapshot, as the
//! actors that keep per-deployment and per-provider state learn them.
//!
//! Ids are stable (docs/decisions/runtime-keys.md): given once by identity,
//! never reused. So this message is not a renumbering: an actor grows its
//! tables to cover every id listed, takes the labels, and hides (without
//! forgetting) the ids no longer listed. State of an id listed before and
//! now — a circuit, a latency average — carries over untouched.

use std::sync::Arc;

use actix::Message;

use crate::availability::ProbeSpec;

/// One deployment of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentInfo {
    pub id: usize,
    /// `provider/model`.
    pub label: String,
    /// The provider's id.
    pub provider: usize,
}

/// One provider of the snapshot.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    pub id: usize,
    pub name: String,
    /// Its active health probe, if it has one.
    pub probe: Option<ProbeSpec>,
}

/// The snapshot's deployments and providers (asked, before the snapshot is
/// published, so that no outcome of it arrives first).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Topology {
    pub deployments: Arc<[DeploymentInfo]>,
    pub providers: Arc<[ProviderInfo]>,
}

impl Topology {
    /// One past the largest deployment id.
    pub fn deployment_span(&self) -> usize {
        self.deployments.iter().map(|d| d.id + 1).max().unwrap_or(0)
    }

    /// One past the largest provider id.
    pub fn provider_span(&self) -> usize {
        self.providers.iter().map(|p| p.id + 1).max().unwrap_or(0)
    }

    /// Labels by deployment id, `""` for ids not in this snapshot.
    pub fn labels(&self, span: usize) -> Vec<String> {
        let mut v = vec![String::new(); span.max(self.deployment_span())];
        for d in self.deployments.iter() {
            if let Some(l) = v.get_mut(d.id) {
                l.clone_from(&d.label);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cover_every_id_and_blank_the_retired() {
        let t = Topology {
            deployments: vec![
                DeploymentInfo { id: 0, label: "p/a".into(), provider: 0 },
                DeploymentInfo { id: 3, label: "p/b".into(), provider: 1 },
            ]
            .into(),
            providers: vec![].into(),
        };
        assert_eq!(t.deployment_span(), 4);
        assert_eq!(t.labels(2), ["p/a", "", "", "p/b"]);
        assert_eq!(t.labels(6).len(), 6, "never shrinks below what the actor has");
    }
}
