//! The request pipeline of the proxied routes, one module per step, in the
//! order a request meets them (docs/request-path.md draws it):
//!
//! 1. [`ingress`]  — request id; body under `max_body_bytes`; lazy read of
//!    `model` / `stream` / `stream_options`
//! 2. [`auth`]     — client key → policy (401), model permission (403)
//! 3. rate limit   — (arrives with the `RateLimiter` actor)
//! 4. cache        — (arrives with the `ResponseCache` actor)
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
pub mod auth;
pub mod capability;
pub mod ingress;
pub mod record;
pub mod relay;
pub mod route;

use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};

use crate::error::GatewayError;
use crate::providers::{Call, Endpoint};
use crate::server::state::WorkerState;
use attempt::Served;
use record::Record;

/// Run one proxied request through every step.
pub async fn run(state: &WorkerState, req: HttpRequest, payload: Payload, endpoint: Endpoint) -> HttpResponse {
    state.activity.touch();
    let mut rec = Record::new(endpoint, ingress::request_id(&req), state.shared.metrics.clone());
    let resp = match steps(state, &req, payload, endpoint, &mut rec).await {
        Ok(Reply::Complete { body, usage, price }) => relay::complete(rec, body, usage, price),
        Ok(Reply::Stream { first, rest, spec }) => relay::stream(rec, first, rest, spec),
        Err(e) => relay::error(rec, &e),
    };
    state.activity.touch();
    resp
}

enum Reply {
    Complete { body: bytes::Bytes, usage: Option<crate::providers::Usage>, price: Option<crate::config::Price> },
    Stream { first: bytes::Bytes, rest: crate::providers::EventStream, spec: relay::StreamSpec },
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
    let body = ingress::read_body(req, payload, shared.config.server.max_body_bytes).await?;
    let peek = ingress::peek(&body, endpoint)?;
    let model = shared.models.resolve(&peek.model, &policy)?;
    rec.set_model(model);
    let candidates = shared.models.candidates(model);
    // Deployments whose protocol lacks this route are skipped (400 if none can serve it).
    let candidates = capability::serving(shared, model, endpoint, candidates)?;
    let request_id = rec.request_id.clone();
    let call = Call {
        endpoint,
        body: &body,
        peek: &peek,
        upstream_model: "",
        client_headers: req.headers(),
        request_id: &request_id,
    };
    let winner = attempt::run(state, &call, &candidates, rec).await?;
    rec.set_served(winner.candidate.model, winner.candidate.deployment);
    // Spend is priced at the model that served (a fallback may cost more).
    let price = shared.models.get(winner.candidate.model).and_then(|m| m.price);
    match winner.served {
        Served::Complete { body, usage } => Ok(Reply::Complete { body, usage, price }),
        Served::Stream { first, rest } => {
            let spec = relay::StreamSpec {
                timeouts: winner.timeouts,
                started: winner.started,
                client_wants_usage: peek.include_usage,
                price,
                provider: winner.provider,
            };
            Ok(Reply::Stream { first, rest, spec })
        }
    }
}
