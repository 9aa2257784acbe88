//! The one upstream call of a request: plan → attempts → fallback counted →
//! price → usage. The pipeline, the single-flight leader and the
//! embeddings batcher all come here; what they do with the answer (relay
//! it, share it, split it) is theirs.

use bytes::Bytes;
use sluice_actors::rate_limiter::Grant;
use tokio::time::Instant;

use super::WorkerUpstreams;
use super::attempt::{self, Plan, Served};
use super::capability;
use super::stream::{self, UpstreamStream};
use crate::config::Price;
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::peek::Peek;
use crate::providers::Call;
use crate::route::Candidate;
use crate::usage::Usage;

/// What one upstream call came back with.
pub struct Fetched {
    /// The model and deployment that served (another model's, after a fallback).
    pub served: Candidate,
    /// The serving deployment's price: spend is priced where it was spent.
    pub price: Option<Price>,
    /// The serving deployment's own rpm/tpm caps, charged for this call;
    /// settled with the real token count when the request ends.
    pub deployment_grant: Option<Grant>,
    pub body: FetchedBody,
}

/// The answer itself.
pub enum FetchedBody {
    /// A whole body, with its usage: the upstream's, or counted here when
    /// it reported none.
    Complete { body: Bytes, usage: Option<Usage> },
    /// A stream whose first events have arrived (boxed: the driver is
    /// large next to a whole body).
    Stream(Box<UpstreamStream>),
}

/// How a request to `model` may be tried: its candidates, attempts and deadline.
pub fn plan<'a>(
    w: &'a WorkerUpstreams,
    model: usize,
    endpoint: Endpoint,
    peek: &Peek,
) -> Result<Plan<'a>, GatewayError> {
    let up = &w.upstreams;
    let entry = up.models.get(model).ok_or_else(|| GatewayError::ModelNotFound { model: peek.model.clone() })?;
    let routing = &up.routing;
    let deadline_ms = entry.deadline_ms.unwrap_or(routing.deadline_ms);
    Ok(Plan {
        // Deployments whose protocol lacks this route are skipped (400 if none can serve it).
        candidates: capability::serving(
            up,
            model,
            endpoint,
            up.models.candidates(model, peek.estimated_tokens(), up.availability.table())?,
        )?,
        tokens: peek.estimated_tokens(),
        max_attempts: entry.max_attempts.unwrap_or(routing.max_attempts),
        deadline: (deadline_ms > 0).then(|| Instant::now() + std::time::Duration::from_millis(deadline_ms)),
        hedge: entry.hedge,
        routing,
    })
}

/// Call upstream for a request to `model`: the first deployment that
/// answers (before any byte reached the client), or the error that best
/// says why none did.
#[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
pub fn fetch(
    w: &WorkerUpstreams,
    call: &Call<'_>,
    model: usize,
) -> impl Future<Output = Result<Fetched, GatewayError>> {
    async move {
        let up = &w.upstreams;
        let plan = plan(w, model, call.endpoint, call.peek)?;
        let winner = attempt::run(w, call, &plan).await?;
        if winner.candidate.model != model {
            up.metrics.record_fallback(model, winner.candidate.model);
        }
        // Spend is priced at the deployment that served (a fallback may cost more).
        let price = up.models.deployment(winner.candidate).and_then(|d| d.price);
        let (served, deployment_grant) = (winner.candidate, winner.deployment_grant);
        let body = match winner.served {
            Served::Complete { body, usage } => {
                // No usage from the upstream: count the answer with a real tokenizer.
                let usage = match usage {
                    Some(u) => Some(u),
                    // Counting tokens spends none.
                    None if call.endpoint.counts_tokens() => Some(Usage::default()),
                    None if call.endpoint.answers_text() => Some(Usage {
                        prompt_tokens: call.peek.prompt_estimate(),
                        completion_tokens: crate::tokens::count(crate::tokens::answer_text(&body)).await,
                        cached_tokens: 0,
                    }),
                    None => Some(Usage { prompt_tokens: call.peek.prompt_estimate(), ..Default::default() }),
                };
                FetchedBody::Complete { body, usage }
            }
            Served::Stream { first, rest } => FetchedBody::Stream(Box::new(UpstreamStream::new(
                w,
                call.endpoint,
                first,
                rest,
                stream::Source {
                    deployment: winner.candidate.id,
                    provider: winner.provider,
                    timeouts: winner.timeouts,
                    started: winner.started,
                    inflight: winner.inflight,
                    stream_usage: winner.stream_usage,
                },
            ))),
        };
        Ok(Fetched { served, price, deployment_grant, body })
    }
}
