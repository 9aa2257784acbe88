//! Attempts: try the planned deployments until one answers, within the
//! request's attempt budget and deadline, with backoff between tries and an
//! optional hedge. A failure may be retried elsewhere only while nothing has
//! reached the client, so for streams an attempt succeeds only once its
//! first event has arrived.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{Either, select};
use futures_util::{FutureExt, StreamExt};
use sluice_actors::availability::InflightGuard;
use sluice_actors::circuit_breakers::Verdict;
use sluice_actors::outcome::AttemptOutcome;
use sluice_actors::rate_limiter::Grant;
use sluice_actors::upstream_sessions::UpstreamErrorKind;
use tokio::time::Instant;

use super::WorkerUpstreams;
use super::admission::{Asker, Next, Scan};
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
#[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
pub fn run(
    w: &WorkerUpstreams,
    call: &Call<'_>,
    plan: &Plan<'_>,
) -> impl Future<Output = Result<Winner, GatewayError>> {
    async move {
        let up = &w.upstreams;
        let mut errors: Vec<(String, GatewayError)> = Vec::new();
        let mut scan = Scan::default();
        let mut attempts = 0u32;
        let mut last: Option<Backoff> = None;
        let cap = Duration::from_millis(plan.routing.retry_after_cap_ms);
        while attempts < plan.max_attempts {
            // Taken apart at once: a `Next` kept whole stays in the future
            // through the attempt, its fields moved out or not.
            let Some(Next { candidate: c, grant, waited }) = scan.next(w, plan, Asker::Attempt).await else { break };
            // After waiting out a cool-down, the wait was the backoff.
            if let Some(kind) = last.filter(|_| !waited) {
                let wait = backoff(kind, attempts, plan.routing);
                if plan.deadline.is_some_and(|d| Instant::now() + wait >= d) {
                    release_probe(w, c);
                    break;
                }
                tokio::time::sleep(wait).await;
            }
            if last.is_some() {
                up.metrics.record_retry(c.model);
            }
            attempts += 1;
            let result = match plan.hedge.filter(|_| attempts == 1) {
                Some(h) => hedged(w, call, plan, (c, grant), h, &mut scan, &mut attempts).await,
                None => with_deadline(plan.deadline, try_deployment(w, call, c, grant)).await,
            };
            match result {
                Ok(mut winner) => {
                    winner.attempts = attempts;
                    return Ok(winner);
                }
                Err((label, mut e, id)) => {
                    if let GatewayError::UpstreamStatus { upstream_status: 429, retry_after, .. } = &mut e {
                        // The upstream's wait (1 s without a usable one): this
                        // request does not call it again before it is over —
                        // waiting for it if that fits the cap and the deadline,
                        // else answering 429 at once — and every other request
                        // skips it for as long, within the cap, from now on.
                        let d = *retry_after.get_or_insert(DEFAULT_COOL_DOWN);
                        scan.cool(id, d);
                        up.breakers.gates().cool_now(id, d.min(cap));
                    }
                    // An upload relayed live was consumed by this attempt: it
                    // cannot be sent to another deployment.
                    if !e.retryable() || call.upload.is_some_and(|u| !u.can_send()) {
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
        Err(scan.give_up(model.unwrap_or_default(), errors))
    }
}

/// How long a 429 without a usable Retry-After cools its deployment (the
/// breakers' default too).
const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(1);

/// A probe slot taken but not used: give it back through a neutral outcome.
pub(super) fn release_probe(w: &WorkerUpstreams, c: Candidate) {
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

/// A failed attempt: the deployment's label, the error, the deployment's id.
type Failed = (String, GatewayError, usize);

/// `f`, failed with a `deadline` timeout if the deadline passes first.
///
/// A plain function returning a combinator, not an `async fn`: an async fn
/// keeps its future argument and the awaited copy side by side in its state
/// (rustc#62958), which doubled this wrapper to twice an attempt's size and
/// every move of the request future copied it (docs/performance.md, issue 14).
fn with_deadline<F>(deadline: Option<Instant>, f: F) -> impl std::future::Future<Output = Result<Winner, Failed>>
where
    F: std::future::Future<Output = Result<Winner, Failed>>,
{
    match deadline {
        None => Either::Left(f),
        Some(d) => Either::Right(tokio::time::timeout_at(d, f).map(move |r| {
            r.unwrap_or_else(|_| {
                Err((
                    "deadline".into(),
                    GatewayError::UpstreamTimeout {
                        provider: "(all)".into(),
                        phase: TimeoutPhase::Total,
                        ms: d.saturating_duration_since(Instant::now()).as_millis() as u64,
                    },
                    usize::MAX,
                ))
            })
        })),
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
    scan: &mut Scan,
    attempts: &mut u32,
) -> Result<Winner, Failed> {
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
    let Some(Next { candidate: second_c, grant: second_grant, .. }) = scan.next(w, plan, Asker::Hedge).await else {
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
///
/// Its future sits in every request's future for the upstream call, so
/// it is kept small (docs/performance.md, "Async functions that store
/// their arguments twice"): an `async` block, which uses its captured
/// arguments in place where an `async fn` would keep a second copy of
/// each; the attempt's `traceparent` boxed (telemetry is usually off);
/// the timeouts read back from the rewritten call, not kept beside it.
#[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
fn try_deployment(
    w: &WorkerUpstreams,
    call: &Call<'_>,
    c: Candidate,
    deployment_grant: Option<Grant>,
) -> impl Future<Output = Result<Winner, Failed>> {
    async move {
        let up = &w.upstreams;
        let (Some(model), Some(dep)) = (up.models.get(c.model), up.models.deployment(c)) else {
            return Err((
                "?".into(),
                GatewayError::Internal { detail: "a route points at no deployment".into() },
                c.id,
            ));
        };
        let Some(provider) = up.providers.get(dep.provider) else {
            return Err((
                dep.label.clone(),
                GatewayError::Internal { detail: "a deployment points at no provider".into() },
                c.id,
            ));
        };
        let t = model.timeouts;
        // Telemetry (off: `None`, one branch): this attempt's span, and its
        // `traceparent` for the upstream.
        let span = call.obs.map(|o| o.attempt(c.model, c.deployment, c.id));
        let trace_headers = span.as_ref().and_then(|s| call.obs?.traceparent(s.span_id)).map(Box::new);
        let call = Call {
            upstream_model: &dep.model,
            timeouts: Timeouts {
                connect: provider.timeouts.connect,
                first_byte: t.first_byte_ms.map_or(provider.timeouts.first_byte, Duration::from_millis),
                idle: t.idle_ms.map_or(provider.timeouts.idle, Duration::from_millis),
                total: t.total_ms.map_or(provider.timeouts.total, Duration::from_millis),
            },
            reasoning: dep.reasoning,
            trace_headers: trace_headers.as_deref(),
            ..*call
        };
        let inflight = up.availability.table().start(c.id);
        let mut pending = Pending { sink: w.outcomes.clone(), id: c.id, done: false };
        let started = Instant::now();
        let result = match provider.send(&call, w.clients.get(dep.provider).as_ref()).await {
            Ok(Reply::Complete { body, usage }) => Ok(Served::Complete { body, usage }),
            Ok(Reply::Stream(mut rest)) => {
                let left = call.timeouts.first_byte.saturating_sub(started.elapsed());
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
                        ms: call.timeouts.first_byte.as_millis() as u64,
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
                    timeouts: call.timeouts,
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
                Err((dep.label.clone(), e, c.id))
            }
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
