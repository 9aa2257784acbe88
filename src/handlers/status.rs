//! `GET /status`: every actor's state and live detail, as JSON. Needs the
//! admin key when `server.admin_key` is set. Holds no secret: actors never
//! see provider keys except in warm-up headers, which they never print.

use std::time::Duration;

use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use sluice_actors::ActorStatus;

use crate::error::GatewayError;
use crate::request::auth;
use crate::server::state::WorkerState;

#[derive(Serialize)]
struct Status {
    version: &'static str,
    uptime_s: u64,
    actors: Vec<ActorStatus>,
    /// What the request path did per model: retries, fallbacks, hedges.
    models: Vec<sonic_rs::Value>,
}

/// Test builds only: make an actor panic inside a handler (admin key required
/// when one is set), to prove its supervisor restarts it.
#[cfg(feature = "fault-injection")]
pub async fn inject_panic(state: Data<WorkerState>, req: HttpRequest) -> HttpResponse {
    let shared = &state.shared;
    if let Some(d) = &shared.admin_digest
        && !auth::is_admin(d, req.headers())
    {
        return GatewayError::AdminKeyRequired.error_response();
    }
    let actor = req.query_string().strip_prefix("actor=").unwrap_or("");
    if !shared.registry.inject_panic(actor) {
        return GatewayError::invalid(format!("no such actor: {actor}"), Some("actor")).error_response();
    }
    HttpResponse::Accepted().content_type("application/json").body("{\"injected\":\"panic\"}")
}

/// How long `/status` waits for an actor before reporting it unresponsive.
const ACTOR_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn status(state: Data<WorkerState>, req: HttpRequest) -> HttpResponse {
    let shared = &state.shared;
    if let Some(d) = &shared.admin_digest
        && !auth::is_admin(d, req.headers())
    {
        return GatewayError::AdminKeyRequired.error_response();
    }
    let actors = shared.registry.status(ACTOR_TIMEOUT).await;
    let body = Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: shared.started.elapsed().as_secs(),
        actors,
        models: shared.metrics.routing_status(),
    };
    match sonic_rs::to_string(&body) {
        Ok(s) => HttpResponse::Ok().content_type("application/json").body(s),
        Err(e) => GatewayError::Internal { detail: e.to_string() }.error_response(),
    }
}
