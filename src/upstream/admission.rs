//! Which deployment a request tries next, and what it does when none is
//! admitted.
//!
//! A candidate is skipped while its circuit is open, while it cools after
//! a 429 — as the breakers' gates say, and as this request saw itself: a
//! 429's `Retry-After` is honoured by the very next scan, not ~1 ms later
//! when the outcome batch has reached the breakers (that gap once sent a
//! retry to a deployment 112 ms after it asked for 5 s of quiet) — and
//! while it is at its own rpm/tpm cap.
//!
//! When nothing is admitted:
//! 1. a cool-down (429, or a deployment cap) that ends within
//!    `retry_after_cap_ms` (all waits of the request together) and the
//!    deadline is waited out, then the scan runs again;
//! 2. else, unless the requested model says `on_all_unhealthy =
//!    "fail_fast"`, the deployment whose circuit opened earliest gets one
//!    attempt (Envoy's panic routing, LiteLLM's "never cool down the only
//!    deployment"): an open circuit fails fast for the traffic it protects,
//!    but a model with nothing else left is better served by trying;
//! 3. else the request gives up: a 429 with the cool-down left when only
//!    cooling deployments remain (a Retry-After is never hammered), a 503
//!    `no_deployment_available` otherwise.
//!
//! Each request that finds nothing admitted is counted once in
//! `sluice_all_unhealthy_total{model,action}`.

use std::time::Duration;

use sluice_actors::circuit_breakers::{Admission, Denial};
use sluice_actors::rate_limiter::Grant;
use tokio::time::Instant;

use super::WorkerUpstreams;
use super::attempt::{Plan, release_probe};
use crate::config::OnAllUnhealthy;
use crate::error::GatewayError;
use crate::route::Candidate;

/// Why a candidate was skipped, as reported.
const AT_CAP: &str = "at its rpm/tpm cap";

/// Where a request's scan over its candidates stands.
#[derive(Default)]
pub struct Scan {
    /// The next candidate to look at; after one full pass the scan starts
    /// over (a lone deployment gets its retries too).
    next: usize,
    /// Deployments skipped, with why (reported when the request gives up).
    pub skipped: Vec<(String, &'static str)>,
    /// 429 cool-downs this request met itself: deployment id, until when.
    cooled: Vec<(usize, Instant)>,
    /// Time spent waiting out cool-downs, against `retry_after_cap_ms`.
    waited: Duration,
    /// The one attempt at an open circuit has been made.
    forced: bool,
    /// Counted in `sluice_all_unhealthy_total` already.
    counted: bool,
    /// When the last scan admitted nothing: the soonest end of a cool-down.
    cooling_left: Option<Duration>,
}

/// Who is asking: the attempt loop may wait and force; a hedge only takes
/// what is admitted now.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    Attempt,
    Hedge,
}

/// The scan's answer.
pub struct Next {
    pub candidate: Candidate,
    pub grant: Option<Grant>,
    /// The scan waited out a cool-down first (no backoff needed on top).
    pub waited: bool,
}

impl Scan {
    /// `deployment` answered 429: skip it for `for_` in this request.
    pub fn cool(&mut self, deployment: usize, for_: Duration) {
        let until = Instant::now() + for_;
        match self.cooled.iter_mut().find(|(d, _)| *d == deployment) {
            Some((_, u)) => *u = (*u).max(until),
            None => self.cooled.push((deployment, until)),
        }
    }

    fn cooling_here(&self, deployment: usize, now: Instant) -> Option<Duration> {
        self.cooled
            .iter()
            .find(|(d, _)| *d == deployment)
            .map(|(_, u)| u.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    fn skip(&mut self, w: &WorkerUpstreams, c: Candidate, why: &'static str) {
        if let Some(d) = w.upstreams.models.deployment(c)
            && !self.skipped.iter().any(|(l, _)| *l == d.label)
        {
            self.skipped.push((d.label.clone(), why));
        }
    }

    fn count(&mut self, w: &WorkerUpstreams, plan: &Plan<'_>, action: &'static str) {
        if self.counted {
            return;
        }
        self.counted = true;
        let model =
            plan.candidates.first().and_then(|c| w.upstreams.models.get(c.model)).map_or("", |m| m.name.as_str());
        metrics::counter!(crate::metrics::ALL_UNHEALTHY, "model" => model.to_string(), "action" => action).increment(1);
    }

    /// The next candidate to try, or `None`: give up.
    pub async fn next(&mut self, w: &WorkerUpstreams, plan: &Plan<'_>, asker: Asker) -> Option<Next> {
        let n = plan.candidates.len();
        if n == 0 {
            return None;
        }
        let breakers = &w.upstreams.breakers;
        let mut waited = false;
        loop {
            // Only a deployment this request saw cool needs the clock.
            let now = if self.cooled.is_empty() { None } else { Some(Instant::now()) };
            let mut cooling: Option<Duration> = None;
            // The open circuit that opened earliest: (opened at, candidate).
            let mut earliest: Option<(u64, Candidate)> = None;
            for _ in 0..n {
                let c = plan.candidates[self.next % n];
                self.next += 1;
                if let Some(left) = now.and_then(|now| self.cooling_here(c.id, now)) {
                    self.skip(w, c, Denial::Cooling.reason());
                    cooling = Some(cooling.map_or(left, |s| s.min(left)));
                    continue;
                }
                let admission = breakers.admit(c.id).await;
                if admission == Admission::Denied {
                    let gates = breakers.gates();
                    self.skip(w, c, gates.denial(c.id).reason());
                    match gates.cooling_for(c.id) {
                        Some(left) => cooling = Some(cooling.map_or(left, |s| s.min(left))),
                        None => {
                            let at = gates.opened_at(c.id).unwrap_or(u64::MAX);
                            if earliest.is_none_or(|(e, _)| at < e) {
                                earliest = Some((at, c));
                            }
                        }
                    }
                    continue;
                }
                match self.caps(w, plan, c).await {
                    Ok(grant) => return Some(Next { candidate: c, grant, waited }),
                    Err(left) => {
                        if admission == Admission::Probe {
                            release_probe(w, c);
                        }
                        if let Some(left) = left {
                            cooling = Some(cooling.map_or(left, |s| s.min(left)));
                        }
                    }
                }
            }
            self.cooling_left = cooling;
            if asker == Asker::Hedge {
                return None;
            }
            // Nothing admitted. 1: wait out the soonest cool-down.
            let cap = Duration::from_millis(plan.routing.retry_after_cap_ms);
            if let Some(wait) = cooling
                && self.waited + wait <= cap
                && plan.deadline.is_none_or(|d| Instant::now() + wait < d)
            {
                self.count(w, plan, "waited");
                self.waited += wait;
                waited = true;
                tokio::time::sleep(wait).await;
                continue;
            }
            // 2: one attempt at the circuit that opened earliest.
            let policy = plan
                .candidates
                .first()
                .and_then(|c| w.upstreams.models.get(c.model))
                .map_or(OnAllUnhealthy::TryOne, |m| m.on_all_unhealthy);
            if let Some((_, c)) = earliest
                && policy == OnAllUnhealthy::TryOne
                && !self.forced
            {
                self.forced = true;
                if let Ok(grant) = self.caps(w, plan, c).await {
                    self.count(w, plan, "tried_one");
                    tracing::info!(
                        deployment = c.id,
                        "no deployment admitted: trying the one whose circuit opened earliest"
                    );
                    return Some(Next { candidate: c, grant, waited });
                }
            }
            // 3: give up.
            let action = if earliest.is_some() && policy == OnAllUnhealthy::FailFast {
                "fail_fast"
            } else if cooling.is_some() {
                "rate_limited"
            } else {
                "gave_up"
            };
            self.count(w, plan, action);
            return None;
        }
    }

    /// The deployment's own rpm/tpm caps: a grant, or `Err` with how long
    /// until it has room (if known).
    async fn caps(
        &mut self,
        w: &WorkerUpstreams,
        plan: &Plan<'_>,
        c: Candidate,
    ) -> Result<Option<Grant>, Option<Duration>> {
        let Some(scope) = w.upstreams.scopes.for_deployment(c.id) else { return Ok(None) };
        match w.upstreams.limiter.admit_deployment(scope, plan.tokens).await {
            Ok(g) => Ok(Some(g)),
            Err(r) => {
                self.skip(w, c, AT_CAP);
                Err(r.retry_after)
            }
        }
    }

    /// Every attempt failed, or none could be made: the error that best
    /// says why. Attempts at a single deployment only (its retries): its
    /// last error says most (502, 504, ...). Only rate limits and cool-downs
    /// left: a 429 with the time left, so SDKs back off. Otherwise — several
    /// deployments failed, or open circuits left none to try — 503
    /// `no_deployment_available`, naming what each deployment did.
    pub fn give_up(mut self, model: &str, mut errors: Vec<(String, GatewayError)>) -> GatewayError {
        // A deployment skipped once (cooling) and tried later is not "unavailable".
        self.skipped.retain(|(label, _)| !errors.iter().any(|(l, _)| l == label));
        let is_429 = |e: &GatewayError| matches!(e, GatewayError::UpstreamStatus { upstream_status: 429, .. });
        let only_cooling = self.skipped.iter().all(|(_, why)| *why == Denial::Cooling.reason() || *why == AT_CAP);
        if let Some(left) = self.cooling_left
            && only_cooling
            && errors.iter().all(|(_, e)| is_429(e))
        {
            return rate_limited(model, errors.pop().map(|(_, e)| e), left);
        }
        let one_deployment = errors.first().is_some_and(|(first, _)| errors.iter().all(|(l, _)| l == first));
        if one_deployment
            && self.skipped.is_empty()
            && let Some((_, e)) = errors.pop()
        {
            return e;
        }
        if !errors.is_empty()
            && errors.iter().all(|(_, e)| is_429(e))
            && let Some((_, e)) = errors.pop()
        {
            return e;
        }
        let mut parts: Vec<String> = errors.iter().map(|(label, e)| format!("{label}: {}", e.label())).collect();
        parts.extend(self.skipped.into_iter().map(|(label, reason)| format!("{label}: {reason}")));
        let reason = if parts.is_empty() {
            "it has no deployments".to_string()
        } else {
            format!("every deployment failed or is unavailable ({})", parts.join("; "))
        };
        GatewayError::NoDeployment { model: model.to_string(), reason }
    }
}

/// A 429 whose `retry-after` is the cool-down left: the last upstream 429
/// of this request with its wait brought up to date, or one of our own
/// when the deployments were already cooling before this request.
fn rate_limited(model: &str, last: Option<GatewayError>, left: Duration) -> GatewayError {
    // The gates round a cool-down's end up by a millisecond, so that a gate
    // never reopens early; the client is told the wait without it (else a
    // request within a millisecond of an upstream's `Retry-After: 5` would
    // be told 6 s: tests/retry_after.rs saw it).
    let left = left.saturating_sub(Duration::from_millis(1)).max(Duration::from_millis(1));
    match last {
        Some(GatewayError::UpstreamStatus { provider, upstream_status, body, .. }) => {
            GatewayError::UpstreamStatus { provider, upstream_status, body, retry_after: Some(left) }
        }
        _ => {
            let secs = left.as_secs_f64().ceil();
            let message = format!(
                "Every deployment of the model `{model}` is cooling after its provider answered 429 (rate limited); retry after {secs} s."
            );
            GatewayError::UpstreamStatus {
                provider: "(all)".into(),
                upstream_status: 429,
                body: crate::error::error_body(&message, "requests", None, Some("rate_limit_exceeded")),
                retry_after: Some(left),
            }
        }
    }
}
