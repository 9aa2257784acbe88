//! Attempts: try the planned deployments until one answers, within the
//! request's attempt budget and deadline, with backoff between tries and an
//! optional hedge. A failure may be retried elsewhere only while nothing has
//! reached the client, so for streams an attempt succeeds only once its
//! first event has arrived.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use sluice_actors::availability::InflightGuard;
use sluice_actors::circuit_breakers::{Admission, Verdict};
use sluice_actors::outcome::AttemptOutcome;
use sluice_actors::rate_limiter::Grant;
use sluice_actors::upstream_sessions::UpstreamErrorKind;
use tokio::time::Instant;

use super::WorkerUpstreams;
use super::outcomes::{OutcomeSink, verdict};
use crate::config::{HedgeConfig, RoutingConfig};
use crate::error::{GatewayError, TimeoutPhase};
use crate::providers::{Call, EventStream, Reply, Timeouts};
use crate::route::Candidate;
use crate::usage::Usage;

/// What the winning attempt produced.
pub enum Served {
    Complete {
        body: Bytes,
        usage: Option<Usage>,
    },
    /// A stream whose first run of events has already arrived.
    Stream {
        first: Bytes,
        rest: EventStream,
    },
}

/// The deployment that served.
pub struct Winner {
    pub candidate: Candidate,
    pub served: Served,
    pub provider: String,
    pub stream_usage: std::sync::Arc<std::sync::atomic::AtomicU8>,
    pub timeouts: Timeouts,
    /// When the winning attempt was sent (the stream's total timeout counts from here).
    pub started: Instant,
    /// Held until the answer is fully relayed.
    pub inflight: InflightGuard,
    /// Attempts made, the winning one included.
    pub attempts: u32,
    /// The deployment's own rpm/tpm caps, charged for this attempt.
    pub deployment_grant: Option<Grant>,
}

/// How one request may be tried.
pub struct Plan<'a> {
    pub candidates: Vec<Candidate>,
    /// The request's token estimate, charged against deployment caps.
    pub tokens: u64,
    pub max_attempts: u32,
    pub deadline: Option<Instant>,
    pub hedge: Option<HedgeConfig>,
    pub routing: &'a RoutingConfig,
}

/// Why a retry waits.
#[derive(Clone, Copy)]
enum Backoff {
    Network,
    RateLimited,
}

/// Try the plan. Returns the first success, or the error that best explains
/// why none worked.
pub async fn run(w: &WorkerUpstreams, call: &Call<'_>, plan: &Plan<'_>) -> Result<Winner, GatewayError> {
    let up = &w.upstreams;
    let mut errors: Vec<(String, GatewayError)> = Vec::new();
    let mut skipped: Vec<(String, &'static str)> = Vec::new();
    let mut cursor = Cursor::default();
    let mut attempts = 0u32;
    let mut last: Option<Backoff> = None;
    while attempts < plan.max_attempts {
        let Some((c, grant)) = next_admitted(w, plan, &mut cursor, &mut skipped, attempts).await else { break };
        if let Some(kind) = last {
            let wait = backoff(kind, attempts, plan.routing);
            if plan.deadline.is_some_and(|d| Instant::now() + wait >= d) {
                release_probe(w, c);
                break;
            }
            tokio::time::sleep(wait).await;
            up.metrics.record_retry(c.model);
        }
        attempts += 1;
        let result = match plan.hedge.filter(|_| attempts == 1) {
            Some(h) => hedged(w, call, plan, (c, grant), h, &mut cursor, &mut skipped, &mut attempts).await,
            None => with_deadline(plan.deadline, try_deployment(w, call, c, grant)).await,
        };
        match result {
            Ok(mut winner) => {
                winner.attempts = attempts;
                return Ok(winner);
            }
            Err((label, e)) => {
                if !e.retryable() {
                    return Err(e);
                }
                last = Some(match &e {
                    GatewayError::UpstreamStatus { upstream_status: 429, .. } => Backoff::RateLimited,
                    _ => Backoff::Network,
                });
                errors.push((label, e));
            }
        }
    }
    let model = plan.candidates.first().and_then(|c| up.models.get(c.model)).map(|m| m.name.as_str());
    Err(give_up(model.unwrap_or_default(), errors, skipped))
}

/// Where the scan over the candidates stands. After one full pass, the scan
/// starts over (a lone deployment gets its retries too).
#[derive(Default)]
struct Cursor {
    next: usize,
    /// Deployments tried or skipped in the current pass.
    in_pass: usize,
}

/// The next candidate whose circuit admits a call. When every candidate is
/// open or cooling, wait for the soonest to come back if that is within the
/// Retry-After cap and the deadline (that is how a 429's Retry-After is
/// honoured), else give up.
async fn next_admitted(
    w: &WorkerUpstreams,
    plan: &Plan<'_>,
    cur: &mut Cursor,
    skipped: &mut Vec<(String, &'static str)>,
    attempts: u32,
) -> Option<(Candidate, Option<Grant>)> {
    let n = plan.candidates.len();
    if n == 0 {
        return None;
    }
    let breakers = &w.upstreams.breakers;
    let mut waited = false;
    loop {
        let mut soonest: Option<Duration> = None;
        for _ in 0..n {
            let c = plan.candidates[cur.next % n];
            cur.next += 1;
            cur.in_pass += 1;
            if cur.in_pass > n {
                cur.in_pass = 1;
            }
            let admission = breakers.admit(c.id).await;
            if matches!(admission, Admission::Allowed | Admission::Probe) {
                // The deployment's own caps: reroute (or wait) rather than
                // send traffic its provider would refuse.
                let Some(scope) = w.upstreams.scopes.for_deployment(c.id) else { return Some((c, None)) };
                match w.upstreams.limiter.admit_deployment(scope, plan.tokens).await {
                    Ok(g) => return Some((c, Some(g))),
                    Err(r) => {
                        if admission == Admission::Probe {
                            release_probe(w, c);
                        }
                        if let Some(d) = w.upstreams.models.deployment(c)
                            && !skipped.iter().any(|(l, _)| *l == d.label)
                        {
                            skipped.push((d.label.clone(), "at its rpm/tpm cap"));
                        }
                        if let Some(b) = r.retry_after {
                            soonest = Some(soonest.map_or(b, |s| s.min(b)));
                        }
                        continue;
                    }
                }
            }
            match admission {
                Admission::Allowed | Admission::Probe => {}
                Admission::Denied => {
                    if let Some(d) = w.upstreams.models.deployment(c) {
                        let reason = breakers.gates().denial(c.id).reason();
                        if !skipped.iter().any(|(l, _)| *l == d.label) {
                            skipped.push((d.label.clone(), reason));
                        }
                    }
                    if let Some(b) = breakers.gates().blocked_for(c.id) {
                        soonest = Some(soonest.map_or(b, |s| s.min(b)));
                    }
                }
            }
        }
        // Nothing admitted. Wait for the soonest deployment to come back, once.
        let wait = soonest?;
        let cap = Duration::from_millis(plan.routing.retry_after_cap_ms);
        if waited
            || attempts >= plan.max_attempts
            || wait > cap
            || plan.deadline.is_some_and(|d| Instant::now() + wait >= d)
        {
            return None;
        }
        waited = true;
        tokio::time::sleep(wait).await;
    }
}

/// A probe slot taken but not used: give it back through a neutral outcome.
fn release_probe(w: &WorkerUpstreams, c: Candidate) {
    w.outcomes.push(AttemptOutcome {
        deployment: c.id,
        verdict: Verdict::Neutral,
        latency: Duration::ZERO,
        ttft: None,
        error: None,
    });
}

/// Full-jitter exponential backoff: uniform in [0, min(max, base·2^(n-1))].
fn backoff(kind: Backoff, retry: u32, r: &RoutingConfig) -> Duration {
    let base = match kind {
        Backoff::Network => r.backoff_base_ms,
        Backoff::RateLimited => r.backoff_429_base_ms,
    };
    let ceiling = base.saturating_mul(1u64 << retry.saturating_sub(1).min(20)).min(r.backoff_max_ms);
    Duration::from_millis(fastrand::u64(0..=ceiling))
}

async fn with_deadline<F>(deadline: Option<Instant>, f: F) -> Result<Winner, (String, GatewayError)>
where
    F: std::future::Future<Output = Result<Winner, (String, GatewayError)>>,
{
    match deadline {
        None => f.await,
        Some(d) => match tokio::time::timeout_at(d, f).await {
            Ok(r) => r,
            Err(_) => Err((
                "deadline".into(),
                GatewayError::UpstreamTimeout {
                    provider: "(all)".into(),
                    phase: TimeoutPhase::Total,
                    ms: d.saturating_duration_since(Instant::now()).as_millis() as u64,
                },
            )),
        },
    }
}

/// Send the first attempt; if it has not answered after the hedge delay,
/// send a second one to the next admitted deployment and take whichever
/// answers first. The loser is dropped, which closes its connection.
#[allow(clippy::too_many_arguments)]
async fn hedged(
    w: &WorkerUpstreams,
    call: &Call<'_>,
    plan: &Plan<'_>,
    (primary, primary_grant): (Candidate, Option<Grant>),
    h: HedgeConfig,
    cur: &mut Cursor,
    skipped: &mut Vec<(String, &'static str)>,
    attempts: &mut u32,
) -> Result<Winner, (String, GatewayError)> {
    let delay = Duration::from_millis(h.after_ms.unwrap_or_else(|| {
        let p95 = w.upstreams.availability.table().ttft_p95_us(primary.id).map(|us| us / 1000);
        p95.unwrap_or(HEDGE_DELAY_WITHOUT_DATA_MS).max(h.min_ms)
    }));
    let first = Box::pin(with_deadline(plan.deadline, try_deployment(w, call, primary, primary_grant)));
    let timer = Box::pin(tokio::time::sleep(delay));
    let first = match select(first, timer).await {
        Either::Left((r, _)) => return r,
        Either::Right(((), first)) => first,
    };
    if *attempts >= plan.max_attempts {
        return first.await;
    }
    let Some((second_c, second_grant)) = next_admitted(w, plan, cur, skipped, *attempts).await else {
        return first.await;
    };
    if second_c.id == primary.id {
        release_probe(w, second_c);
        return first.await;
    }
    *attempts += 1;
    w.upstreams.metrics.record_hedge(primary.model, false);
    let second = Box::pin(with_deadline(plan.deadline, try_deployment(w, call, second_c, second_grant)));
    match select(first, second).await {
        Either::Left((Ok(winner), _)) => Ok(winner),
        Either::Right((Ok(winner), _)) => {
            w.upstreams.metrics.record_hedge(primary.model, true);
            Ok(winner)
        }
        Either::Left((Err(_), second)) => {
            second.await.inspect(|_| w.upstreams.metrics.record_hedge(primary.model, true))
        }
        Either::Right((Err(_), first)) => first.await,
    }
}

/// Hedge delay when the deployment has no TTFT samples yet.
const HEDGE_DELAY_WITHOUT_DATA_MS: u64 = 1000;

/// Reports a neutral outcome for an attempt dropped before it finished (a
/// hedge's loser), so a half-open probe slot it held is given back.
struct Pending {
    sink: Rc<OutcomeSink>,
    id: usize,
    done: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            self.sink.push(AttemptOutcome {
                deployment: self.id,
                verdict: Verdict::Neutral,
                latency: Duration::ZERO,
                ttft: None,
                error: None,
            });
        }
    }
}

/// One attempt at one deployment; reports its outcome.
async fn try_deployment(
    w: &WorkerUpstreams,
    call: &Call<'_>,
    c: Candidate,
    deployment_grant: Option<Grant>,
) -> Result<Winner, (String, GatewayError)> {
    let up = &w.upstreams;
    let (Some(model), Some(dep)) = (up.models.get(c.model), up.models.deployment(c)) else {
        return Err(("?".into(), GatewayError::Internal { detail: "a route points at no deployment".into() }));
    };
    let Some(provider) = up.providers.get(dep.provider) else {
        return Err((
            dep.label.clone(),
            GatewayError::Internal { detail: "a deployment points at no provider".into() },
        ));
    };
    let t = model.timeouts;
    let timeouts = Timeouts {
        connect: provider.timeouts.connect,
        first_byte: t.first_byte_ms.map_or(provider.timeouts.first_byte, Duration::from_millis),
        idle: t.idle_ms.map_or(provider.timeouts.idle, Duration::from_millis),
        total: t.total_ms.map_or(provider.timeouts.total, Duration::from_millis),
    };
    // Telemetry (off: `None`, one branch): this attempt's span, and its
    // `traceparent` for the upstream.
    let span = call.obs.map(|o| o.attempt(c.model, c.deployment, c.id));
    let trace_headers = span.as_ref().and_then(|s| call.obs?.traceparent(s.span_id));
    let call = Call { upstream_model: &dep.model, timeouts, trace_headers: trace_headers.as_ref(), ..*call };
    let inflight = up.availability.table().start(c.id);
    let mut pending = Pending { sink: w.outcomes.clone(), id: c.id, done: false };
    let started = Instant::now();
    let result = match provider.send(&call, w.clients.get(dep.provider).as_ref()).await {
        Ok(Reply::Complete { body, usage }) => Ok(Served::Complete { body, usage }),
        Ok(Reply::Stream(mut rest)) => {
            let left = timeouts.first_byte.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, rest.next()).await {
                Ok(Some(Ok(first))) => Ok(Served::Stream { first, rest }),
                Ok(Some(Err(e))) => Err(e),
                Ok(None) => Err(GatewayError::UpstreamProtocol {
                    provider: provider.name.clone(),
                    detail: "the stream ended before its first event".into(),
                }),
                Err(_) => Err(GatewayError::UpstreamTimeout {
                    provider: provider.name.clone(),
                    phase: TimeoutPhase::FirstByte,
                    ms: timeouts.first_byte.as_millis() as u64,
                }),
            }
        }
        Err(e) => Err(e),
    };
    let took = started.elapsed();
    pending.done = true;
    match result {
        Ok(served) => {
            let ttft = matches!(served, Served::Stream { .. }).then_some(took);
            if let Some(s) = span {
                s.end(Ok(()), ttft);
            }
            w.outcomes.push(AttemptOutcome {
                deployment: c.id,
                verdict: Verdict::Success,
                latency: took,
                ttft,
                error: None,
            });
            up.metrics.record_attempt(c.model, c.deployment, Ok(()), took);
            Ok(Winner {
                candidate: c,
                served,
                provider: provider.name.clone(),
                stream_usage: provider.stream_usage.clone(),
                timeouts,
                started,
                inflight,
                attempts: 1,
                deployment_grant,
            })
        }
        Err(e) => {
            if let Some(s) = span {
                s.end(Err(e.label()), None);
            }
            let v = verdict(&e);
            let error = (v != Verdict::Neutral).then(|| (e.label(), e.to_string()));
            w.outcomes.push(AttemptOutcome { deployment: c.id, verdict: v, latency: took, ttft: None, error });
            up.metrics.record_attempt(c.model, c.deployment, Err(e.label()), took);
            report(w, dep.provider, &e);
            tracing::debug!(deployment = %dep.label, error = %e, "attempt failed");
            Err((dep.label.clone(), e))
        }
    }
}

/// Tell `UpstreamSessions` about an upstream failure (fire-and-forget).
fn report(w: &WorkerUpstreams, provider: usize, e: &GatewayError) {
    let kind = match e {
        GatewayError::UpstreamConnect { .. } => UpstreamErrorKind::Connect,
        GatewayError::UpstreamTimeout { .. } => UpstreamErrorKind::Timeout,
        GatewayError::UpstreamStatus { upstream_status, .. } => UpstreamErrorKind::Status(*upstream_status),
        GatewayError::UpstreamProtocol { .. } => UpstreamErrorKind::Protocol,
        // Not the upstream's doing: nothing to log against it.
        _ => return,
    };
    w.upstreams.sessions.record_error(provider, kind, e.to_string());
}

/// Every attempt failed, or none could be made. Attempts at a single
/// deployment only (its retries): its last error says most (502, 504, ...).
/// All rate limits: a 429, so SDKs back off. Otherwise — several
/// deployments failed, or open circuits left none to try — 503
/// `no_deployment_available`, naming what each deployment did.
fn give_up(
    model: &str,
    mut errors: Vec<(String, GatewayError)>,
    mut skipped: Vec<(String, &'static str)>,
) -> GatewayError {
    // A deployment skipped once (cooling) and tried later is not "unavailable".
    skipped.retain(|(label, _)| !errors.iter().any(|(l, _)| l == label));
    let one_deployment = errors.first().is_some_and(|(first, _)| errors.iter().all(|(l, _)| l == first));
    if one_deployment
        && skipped.is_empty()
        && let Some((_, e)) = errors.pop()
    {
        return e;
    }
    let all_429 = !errors.is_empty()
        && errors.iter().all(|(_, e)| matches!(e, GatewayError::UpstreamStatus { upstream_status: 429, .. }));
    if all_429 && let Some((_, e)) = errors.pop() {
        return e;
    }
    let mut parts: Vec<String> = errors.iter().map(|(label, e)| format!("{label}: {}", e.label())).collect();
    parts.extend(skipped.into_iter().map(|(label, reason)| format!("{label}: {reason}")));
    let reason = if parts.is_empty() {
        "it has no deployments".to_string()
    } else {
        format!("every deployment failed or is unavailable ({})", parts.join("; "))
    };
    GatewayError::NoDeployment { model: model.to_string(), reason }
}
