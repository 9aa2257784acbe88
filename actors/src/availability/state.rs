//! Availability of each deployment, as a pure state machine: latency and
//! time-to-first-token EWMAs, a p95 TTFT estimate, success and failure
//! counts, the last error, and the provider's active-probe health.

use std::time::Duration;

use tokio::time::Instant;

use crate::circuit_breakers::Verdict;
use crate::outcome::AttemptOutcome;

/// Exponentially weighted moving average with its variance, so a high
/// percentile can be estimated as mean + z·σ without keeping samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ewma {
    mean: f64,
    var: f64,
    seen: bool,
}

/// Weight of the newest sample.
const ALPHA: f64 = 0.2;
/// z for the 95th percentile of a normal distribution.
const Z95: f64 = 1.645;

impl Ewma {
    pub fn add(&mut self, x: f64) {
        if !self.seen {
            self.mean = x;
            self.var = 0.0;
            self.seen = true;
            return;
        }
        let d = x - self.mean;
        self.mean += ALPHA * d;
        self.var = (1.0 - ALPHA) * (self.var + ALPHA * d * d);
    }

    pub fn mean(&self) -> Option<f64> {
        self.seen.then_some(self.mean)
    }

    pub fn p95(&self) -> Option<f64> {
        self.seen.then(|| self.mean + Z95 * self.var.max(0.0).sqrt())
    }
}

/// Result of the provider's active health probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// No probe configured, or none finished yet.
    Unknown,
    Healthy {
        at: Instant,
    },
    Unhealthy {
        since: Instant,
        error: String,
    },
}

impl Health {
    pub fn is_unhealthy(&self) -> bool {
        matches!(self, Health::Unhealthy { .. })
    }
}

#[derive(Debug, Clone)]
pub struct DeploymentStats {
    pub latency_ms: Ewma,
    pub ttft_ms: Ewma,
    pub successes: u64,
    pub failures: u64,
    pub rate_limited: u64,
    pub last_error: Option<(String, Instant)>,
    pub last_success: Option<Instant>,
}

impl DeploymentStats {
    fn new() -> Self {
        DeploymentStats {
            latency_ms: Ewma::default(),
            ttft_ms: Ewma::default(),
            successes: 0,
            failures: 0,
            rate_limited: 0,
            last_error: None,
            last_success: None,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Every deployment's stats and every provider's probe health.
#[derive(Debug, Clone)]
pub struct Availability {
    pub deployments: Vec<DeploymentStats>,
    /// Provider index of each deployment.
    pub provider_of: Vec<usize>,
    pub providers: Vec<Health>,
}

impl Availability {
    pub fn new(provider_of: Vec<usize>, providers: usize) -> Availability {
        Availability {
            deployments: vec![DeploymentStats::new(); provider_of.len()],
            provider_of,
            providers: vec![Health::Unknown; providers],
        }
    }

    /// Cover the deployments of `provider_of` (by id) and `providers`
    /// providers; existing stats are kept.
    pub fn grow(&mut self, provider_of: Vec<usize>, providers: usize) {
        while self.deployments.len() < provider_of.len() {
            self.deployments.push(DeploymentStats::new());
        }
        self.provider_of = provider_of;
        if self.providers.len() < providers {
            self.providers.resize(providers, Health::Unknown);
        }
    }

    pub fn on_outcome(&mut self, o: &AttemptOutcome, now: Instant) {
        let Some(d) = self.deployments.get_mut(o.deployment) else { return };
        match o.verdict {
            Verdict::Success => {
                d.successes += 1;
                d.last_success = Some(now);
                d.latency_ms.add(ms(o.latency));
                if let Some(t) = o.ttft {
                    d.ttft_ms.add(ms(t));
                }
            }
            Verdict::Failure => {
                d.failures += 1;
            }
            Verdict::RateLimited { .. } => d.rate_limited += 1,
            Verdict::Neutral => {}
        }
        if let Some((kind, msg)) = &o.error
            && o.verdict != Verdict::Success
        {
            d.last_error = Some((format!("{kind}: {msg}"), now));
        }
    }

    pub fn on_probe(&mut self, provider: usize, result: Result<(), String>, now: Instant) {
        let Some(h) = self.providers.get_mut(provider) else { return };
        *h = match (result, &*h) {
            (Ok(()), _) => Health::Healthy { at: now },
            (Err(error), Health::Unhealthy { since, .. }) => Health::Unhealthy { since: *since, error },
            (Err(error), _) => Health::Unhealthy { since: now, error },
        };
    }

    /// Is the deployment's provider failing its probe?
    pub fn unhealthy(&self, deployment: usize) -> bool {
        self.provider_of.get(deployment).and_then(|p| self.providers.get(*p)).is_some_and(Health::is_unhealthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(d: usize, v: Verdict, latency_ms: u64, ttft_ms: Option<u64>) -> AttemptOutcome {
        AttemptOutcome {
            deployment: d,
            verdict: v,
            latency: Duration::from_millis(latency_ms),
            ttft: ttft_ms.map(Duration::from_millis),
            error: (v != Verdict::Success).then(|| ("upstream_status", "HTTP 500".to_string())),
        }
    }

    #[test]
    fn ewma_tracks_mean_and_spread() {
        let mut e = Ewma::default();
        assert_eq!(e.mean(), None);
        for _ in 0..200 {
            e.add(100.0);
        }
        assert!((e.mean().unwrap() - 100.0).abs() < 1e-9);
        assert!((e.p95().unwrap() - 100.0).abs() < 1e-6);
        for i in 0..400 {
            e.add(if i % 2 == 0 { 50.0 } else { 150.0 });
        }
        let (m, p) = (e.mean().unwrap(), e.p95().unwrap());
        assert!((m - 100.0).abs() < 15.0, "{m}");
        assert!(p > 150.0 && p < 220.0, "{p}");
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_and_probes() {
        let mut a = Availability::new(vec![0, 0, 1], 2);
        let now = Instant::now();
        a.on_outcome(&outcome(0, Verdict::Success, 40, Some(10)), now);
        a.on_outcome(&outcome(0, Verdict::Failure, 5, None), now);
        a.on_outcome(&outcome(9, Verdict::Failure, 5, None), now);
        let d = &a.deployments[0];
        assert_eq!((d.successes, d.failures), (1, 1));
        assert_eq!(d.latency_ms.mean(), Some(40.0));
        assert_eq!(d.ttft_ms.mean(), Some(10.0));
        assert!(d.last_error.as_ref().unwrap().0.contains("HTTP 500"));
        assert!(!a.unhealthy(0));
        a.on_probe(0, Err("connect refused".into()), now);
        tokio::time::advance(Duration::from_secs(5)).await;
        a.on_probe(0, Err("still refused".into()), Instant::now());
        assert!(a.unhealthy(0) && a.unhealthy(1) && !a.unhealthy(2));
        assert!(
            matches!(&a.providers[0], Health::Unhealthy { since, error } if *since == now && error == "still refused")
        );
        a.on_probe(0, Ok(()), Instant::now());
        assert!(!a.unhealthy(1));
    }
}
