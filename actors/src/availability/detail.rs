//! Availability as `/status` shows it: a read of the stats and of the
//! in-flight counts, changing neither.

use serde::Serialize;
use tokio::time::Instant;

use super::state::{Availability, Health};
use super::table::AvailTable;

#[derive(Debug, Serialize)]
pub struct AvailabilityDetail {
    pub deployments: Vec<DeploymentDetail>,
    pub providers: Vec<ProviderHealthDetail>,
}

#[derive(Debug, Serialize)]
pub struct DeploymentDetail {
    pub deployment: String,
    pub inflight: i64,
    pub latency_ewma_ms: Option<f64>,
    pub ttft_ewma_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    pub successes: u64,
    pub failures: u64,
    pub rate_limited: u64,
    pub healthy: bool,
    pub last_error: Option<LastError>,
}

#[derive(Debug, Serialize)]
pub struct LastError {
    pub message: String,
    pub age_s: f64,
}

/// One provider's probe health; the fields after `health` depend on it.
#[derive(Debug, Serialize)]
pub struct ProviderHealthDetail {
    pub provider: String,
    /// `unknown`, `healthy` or `unhealthy`.
    pub health: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_s_ago: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_for_s: Option<f64>,
}

impl AvailabilityDetail {
    pub fn read(
        state: &Availability,
        table: &AvailTable,
        labels: &[String],
        provider_names: &[String],
        now: Instant,
    ) -> AvailabilityDetail {
        let age = |at: &Instant| now.saturating_duration_since(*at).as_secs_f64();
        let deployments = state
            .deployments
            .iter()
            .enumerate()
            // A blank label: no snapshot lists it any more.
            .filter(|(i, _)| labels.get(*i).is_some_and(|l| !l.is_empty()))
            .map(|(i, s)| DeploymentDetail {
                deployment: labels.get(i).cloned().unwrap_or_default(),
                inflight: table.inflight(i),
                latency_ewma_ms: s.latency_ms.mean(),
                ttft_ewma_ms: s.ttft_ms.mean(),
                ttft_p95_ms: s.ttft_ms.p95(),
                successes: s.successes,
                failures: s.failures,
                rate_limited: s.rate_limited,
                healthy: !state.unhealthy(i),
                last_error: s.last_error.as_ref().map(|(m, at)| LastError { message: m.clone(), age_s: age(at) }),
            })
            .collect();
        let providers = state
            .providers
            .iter()
            .enumerate()
            .filter(|(i, _)| provider_names.get(*i).is_some_and(|n| !n.is_empty()))
            .map(|(i, h)| {
                let provider = provider_names.get(i).cloned().unwrap_or_default();
                let mut d = ProviderHealthDetail {
                    provider,
                    health: "unknown",
                    checked_s_ago: None,
                    error: None,
                    unhealthy_for_s: None,
                };
                match h {
                    Health::Unknown => {}
                    Health::Healthy { at } => {
                        d.health = "healthy";
                        d.checked_s_ago = Some(age(at));
                    }
                    Health::Unhealthy { since, error } => {
                        d.health = "unhealthy";
                        d.error = Some(error.clone());
                        d.unhealthy_for_s = Some(age(since));
                    }
                }
                d
            })
            .collect();
        AvailabilityDetail { deployments, providers }
    }
}
