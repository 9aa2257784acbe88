//! The request pipeline of the proxied routes, one module per step, in the
//! order a request meets them (docs/request-path.md draws it):
//!
//! 1. [`ingress`]  — request id; body under `max_body_bytes`; lazy read of
//!    `model` / `stream` / `stream_options`
//! 2. [`auth`]     — client key → policy (401), model permission (403)
//! 3. [`limits`]   — budgets (429 `insufficient_quota`), then request,
//!    token and concurrency limits of the key, key and model, and model:
//!    admitted, queued (`[queue]`), or refused (429, or 503 when the queue
//!    is full)
//! 4. [`cache`]    — a stored answer (HIT), or a share of an identical
//!    request's upstream call (single-flight), or lead one and store it
//! 5. [`route`]    — model → deployments in order, then fallbacks (404);
//!    [`capability`] drops those whose protocol lacks the route (400 if none left)
//! 6. [`attempt`]  — each deployment through its provider and this worker's
//!    upstream session, until one answers before the first byte
//! 7. [`relay`]    — the body, or the SSE stream event by event, back
//! 8. [`record`]   — metrics, `server-timing`, outcome
//!
//! Auth runs before the body is read, so an unauthenticated client cannot
//! make the gateway buffer `max_body_bytes`.

pub mod attempt;
pub mod batch;
pub mod cache;
pub mod capability;
pub mod ingress;
pub mod outcomes;
pub mod record;
pub mod relay;
pub mod template;

use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};
use tokio::time::Instant;

use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::providers::{Call, Timeouts};
use crate::server::state::WorkerState;
use attempt::{Plan, Served};
use record::Record;

/// Run one proxied request through every step.
pub async fn run(state: &WorkerState, req: HttpRequest, payload: Payload, endpoint: Endpoint) -> HttpResponse {
    state.activity.touch();
    let mut rec = Record::new(endpoint, ingress::request_id(&req), state.shared.metrics.clone());
    let resp = match steps(state, &req, payload, endpoint, &mut rec).await {
        Ok(Reply::Complete { body, usage, price }) => relay::complete(rec, body, usage, price),
        Ok(Reply::Stream { first, rest, spec }) => relay::stream(rec, first, rest, spec),
        Ok(Reply::Template { body, stream }) => relay::template(rec, body, stream),
        Ok(Reply::Cached { answer, stream, include_usage }) => cache::serve_answer(rec, answer, stream, include_usage),
        Ok(Reply::Flight { sub, spec }) => cache::serve_flight(rec, sub, spec),
        Err(e) => relay::error(rec, &e),
    };
    state.activity.touch();
    resp
}

fn quota_exceeded(key: &str, hit: sluice_actors::rate_limiter::BudgetHit) -> GatewayError {
    use sluice_actors::rate_limiter::BudgetHit;
    let (period, budget_usd, renews) = match hit {
        BudgetHit::Daily { budget_usd } => ("daily", budget_usd, "at 00:00 UTC"),
        BudgetHit::Monthly { budget_usd } => ("monthly", budget_usd, "on the 1st of the month, 00:00 UTC"),
    };
    GatewayError::QuotaExceeded { key: key.to_string(), period, budget_usd, renews }
}

enum Reply {
    Complete {
        body: bytes::Bytes,
        usage: Option<crate::usage::Usage>,
        price: Option<crate::config::Price>,
    },
    Stream {
        first: bytes::Bytes,
        rest: crate::providers::EventStream,
        spec: relay::StreamSpec,
    },
    Template {
        body: bytes::Bytes,
        stream: bool,
    },
    /// A stored answer, or a shared one already complete, in the shape asked for.
    Cached {
        answer: sluice_actors::response_cache::Answer,
        stream: bool,
        include_usage: bool,
    },
    /// A live stream shared with identical requests (single-flight).
    Flight {
        sub: crate::cache::flight::Subscriber,
        spec: cache::FlightSpec,
    },
}

async fn steps(
    state: &WorkerState,
    req: &HttpRequest,
    payload: Payload,
    endpoint: Endpoint,
    rec: &mut Record,
) -> Result<Reply, GatewayError> {
    let shared = &state.shared;
    if shared.is_shutting_down() {
        return Err(GatewayError::ShuttingDown);
    }
    let policy = shared.keys.authenticate(req.headers())?;
    let spend_key = policy.index.unwrap_or(shared.config.keys.len());
    let spend = shared.limiter.spend();
    if let Some(hit) = spend.over_budget(
        spend_key,
        sluice_actors::rate_limiter::spend::day_of(sluice_actors::rate_limiter::spend::unix_now()),
    ) {
        return Err(quota_exceeded(&policy.name, hit));
    }
    rec.spending = Some(record::Spending { table: spend.clone(), sink: state.outcomes.clone(), key: spend_key });
    let body = ingress::read_body(req, payload, shared.config.server.max_body_bytes).await?;
    let peek = crate::peek::Peek::read(&body, endpoint)?;
    let model = shared.models.resolve(&peek.model, &policy)?;
    rec.set_model(model);
    let entry = shared.models.get(model).ok_or_else(|| GatewayError::ModelNotFound { model: peek.model.clone() })?;
    let scopes = shared.scopes.for_request(&policy, model);
    let max_wait = std::time::Duration::from_millis(shared.config.queue.max_wait_ms);
    rec.limits =
        crate::limits::admit(&shared.limiter, &scopes, peek.estimated_tokens(), policy.priority, max_wait).await?;
    let result = match cache::step(state, req, &body, &peek, endpoint, model, rec).await {
        Some(r) => r,
        None => fetch(state, req, &body, &peek, endpoint, model, rec).await,
    };
    match result {
        // Every deployment failed: the model's template answer, if it has one.
        Err(e) if (e.retryable() || matches!(e, GatewayError::NoDeployment { .. })) && endpoint.streams() => {
            let Some(text) = &entry.fallback_response else { return Err(e) };
            tracing::warn!(request_id = %rec.request_id, model = %entry.name, error = %e, "every deployment failed; serving the template answer");
            shared.metrics.record_template(model);
            let body = if peek.stream {
                template::stream(endpoint, &entry.name, text)
            } else {
                template::body(endpoint, &entry.name, text)
            };
            Ok(Reply::Template { body, stream: peek.stream })
        }
        r => r,
    }
}

/// How a request to `model` may be tried: its candidates, attempts and deadline.
pub(crate) fn plan<'a>(
    shared: &'a crate::server::state::Shared,
    model: usize,
    endpoint: Endpoint,
    peek: &crate::peek::Peek,
) -> Result<Plan<'a>, GatewayError> {
    let entry = shared.models.get(model).ok_or_else(|| GatewayError::ModelNotFound { model: peek.model.clone() })?;
    let routing = &shared.config.routing;
    let deadline_ms = entry.deadline_ms.unwrap_or(routing.deadline_ms);
    Ok(Plan {
        // Deployments whose protocol lacks this route are skipped (400 if none can serve it).
        candidates: capability::serving(
            shared,
            model,
            endpoint,
            shared.models.candidates(model, peek.estimated_tokens(), shared.availability.table())?,
        )?,
        tokens: peek.estimated_tokens(),
        max_attempts: entry.max_attempts.unwrap_or(routing.max_attempts),
        deadline: (deadline_ms > 0).then(|| Instant::now() + std::time::Duration::from_millis(deadline_ms)),
        hedge: entry.hedge,
        routing,
    })
}

/// Route and attempt: the upstream's answer (steps 5 and 6).
async fn fetch(
    state: &WorkerState,
    req: &HttpRequest,
    body: &bytes::Bytes,
    peek: &crate::peek::Peek,
    endpoint: Endpoint,
    model: usize,
    rec: &mut Record,
) -> Result<Reply, GatewayError> {
    let shared = &state.shared;
    let plan = plan(shared, model, endpoint, peek)?;
    let request_id = rec.request_id.clone();
    let call = Call {
        endpoint,
        body,
        peek,
        upstream_model: "",
        client_headers: req.headers(),
        request_id: &request_id,
        timeouts: Timeouts::default(),
    };
    let started = Instant::now();
    if endpoint == Endpoint::Embeddings
        && let Some(b) = shared.cache.batcher(model)
        && let Some(got) = b.submit(state, &call, model).await
    {
        rec.add_upstream(started.elapsed());
        let got = got?;
        if let Some((m, d)) = got.served {
            rec.set_served(m, d);
        }
        return Ok(Reply::Complete { body: got.body, usage: got.usage, price: got.price });
    }
    let winner = attempt::run(state, &call, &plan).await;
    rec.add_upstream(started.elapsed());
    let winner = winner?;
    rec.set_served(winner.candidate.model, winner.candidate.deployment);
    rec.deployment_grant = winner.deployment_grant;
    if winner.candidate.model != model {
        shared.metrics.record_fallback(model, winner.candidate.model);
    }
    // Spend is priced at the deployment that served (a fallback may cost more).
    let price = shared.models.deployment(winner.candidate).and_then(|d| d.price);
    match winner.served {
        Served::Complete { body, usage } => {
            // No usage from the upstream: count the answer with a real tokenizer.
            let usage = match usage {
                Some(u) => Some(u),
                None if endpoint != Endpoint::Embeddings => Some(crate::usage::Usage {
                    prompt_tokens: peek.prompt_estimate(),
                    completion_tokens: crate::tokens::count(crate::tokens::answer_text(&body)).await,
                    cached_tokens: 0,
                }),
                None => Some(crate::usage::Usage { prompt_tokens: peek.prompt_estimate(), ..Default::default() }),
            };
            Ok(Reply::Complete { body, usage, price })
        }
        Served::Stream { first, rest } => {
            let spec = relay::StreamSpec {
                timeouts: winner.timeouts,
                started: winner.started,
                client_wants_usage: peek.include_usage,
                price,
                provider: winner.provider,
                activity: state.activity.clone(),
                deployment: winner.candidate.id,
                outcomes: state.outcomes.clone(),
                inflight: winner.inflight,
                stream_usage: winner.stream_usage,
                prompt_estimate: peek.prompt_estimate(),
            };
            Ok(Reply::Stream { first, rest, spec })
        }
    }
}
