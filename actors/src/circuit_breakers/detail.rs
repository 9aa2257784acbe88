//! The breakers as `/status` shows them: a read of every breaker at `now`
//! that changes none (see [`Breaker::state_at`]).

use serde::Serialize;
use tokio::time::Instant;

use super::state::{Breaker, BreakerConfig, CircuitState};

#[derive(Debug, Serialize)]
pub struct BreakersDetail {
    pub config: ConfigDetail,
    pub deployments: Vec<CircuitDetail>,
    /// Holds taken from other replicas' news.
    pub remote_holds_total: u64,
}

#[derive(Debug, Serialize)]
pub struct ConfigDetail {
    pub window_s: f64,
    pub min_requests: u32,
    pub failure_count: u32,
    pub failure_ratio: f64,
    pub cooldown_s: f64,
    pub cooldown_max_s: f64,
    pub half_open_probes: u32,
    pub probe_timeout_s: f64,
}

#[derive(Debug, Serialize)]
pub struct CircuitDetail {
    pub deployment: String,
    pub state: &'static str,
    pub window: WindowDetail,
    pub open_remaining_s: f64,
    pub cooling_remaining_s: f64,
    pub since_change_s: f64,
    pub opens_total: u64,
    pub failures_total: u64,
    pub successes_total: u64,
    pub rate_limited_total: u64,
    pub probes_lost_total: u64,
}

#[derive(Debug, Serialize)]
pub struct WindowDetail {
    pub ok: u32,
    pub failed: u32,
}

impl BreakersDetail {
    pub fn read(
        cfg: &BreakerConfig,
        breakers: &[Breaker],
        labels: &[String],
        remote_holds_total: u64,
        now: Instant,
    ) -> BreakersDetail {
        let deployments = breakers
            .iter()
            .enumerate()
            // A blank label: no snapshot lists it any more.
            .filter(|(i, _)| labels.get(*i).is_some_and(|l| !l.is_empty()))
            .map(|(i, b)| {
                let state = b.state_at(now);
                let (ok, failed) = b.window_counts(cfg, now);
                let open_remaining_s = if state == CircuitState::Open {
                    b.open_until().saturating_duration_since(now).as_secs_f64()
                } else {
                    0.0
                };
                CircuitDetail {
                    deployment: labels.get(i).cloned().unwrap_or_default(),
                    state: state.as_str(),
                    window: WindowDetail { ok, failed },
                    open_remaining_s,
                    cooling_remaining_s: b
                        .cooling_until(now)
                        .map_or(0.0, |u| u.saturating_duration_since(now).as_secs_f64()),
                    since_change_s: now.saturating_duration_since(b.changed_at(now)).as_secs_f64(),
                    opens_total: b.opens_total,
                    failures_total: b.failures_total,
                    successes_total: b.successes_total,
                    rate_limited_total: b.rate_limited_total,
                    probes_lost_total: b.probes_lost_total,
                }
            })
            .collect();
        BreakersDetail {
            config: ConfigDetail {
                window_s: cfg.window.as_secs_f64(),
                min_requests: cfg.min_requests,
                failure_count: cfg.failure_count,
                failure_ratio: cfg.failure_ratio,
                cooldown_s: cfg.cooldown.as_secs_f64(),
                cooldown_max_s: cfg.cooldown_max.as_secs_f64(),
                half_open_probes: cfg.half_open_probes,
                probe_timeout_s: cfg.probe_timeout.as_secs_f64(),
            },
            deployments,
            remote_holds_total,
        }
    }
}
