//! `GET /ready`: 200 once the config is loaded (it is, or we would not be
//! serving) and every actor runs; 503 otherwise and while shutting down, so a
//! load balancer stops sending new traffic before the drain.

use actix_web::HttpResponse;
use sluice_actors::ActorState;

use crate::gateway::WorkerState;

pub async fn ready(state: WorkerState) -> HttpResponse {
    let gw = &state.gateway;
    let waiting: Vec<&str> =
        gw.registry.metas().filter(|m| m.state() != ActorState::Running).map(|m| m.name()).collect();
    let ready = waiting.is_empty() && !gw.is_shutting_down();
    let body = sonic_rs::json!({ "ready": ready, "waiting_for": waiting, "shutting_down": gw.is_shutting_down() });
    let mut resp = if ready { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    resp.content_type("application/json").body(body.to_string())
}
