//! `GET /v1/models`: the model names this key may use, in OpenAI's list shape.

use actix_web::web::Path;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::GatewayError;
use crate::gateway::WorkerState;

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

fn created(state: &WorkerState) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    now.saturating_sub(state.gateway.started.elapsed().as_secs())
}

fn json<T: Serialize>(v: &T) -> HttpResponse {
    match sonic_rs::to_vec(v) {
        Ok(b) => HttpResponse::Ok().content_type("application/json").body(b),
        Err(e) => GatewayError::Internal { detail: e.to_string() }.error_response(),
    }
}

pub async fn list(state: WorkerState, req: HttpRequest) -> HttpResponse {
    let policy = match state.gateway.keys.authenticate(req.headers()) {
        Ok(p) => p,
        Err(e) => return e.error_response(),
    };
    let created = created(&state);
    let data = state
        .gateway
        .upstreams
        .models
        .models
        .iter()
        .filter(|m| policy.allows(&m.name))
        .map(|m| Model { id: &m.name, object: "model", created, owned_by: "sluice" })
        .collect();
    json(&List { object: "list", data })
}

/// `GET /v1/models/{model}`: one model, if this key may use it.
pub async fn get(state: WorkerState, req: HttpRequest, path: Path<String>) -> HttpResponse {
    let policy = match state.gateway.keys.authenticate(req.headers()) {
        Ok(p) => p,
        Err(e) => return e.error_response(),
    };
    let name = path.into_inner();
    match state.gateway.upstreams.models.resolve(&name, &policy) {
        Ok(idx) => match state.gateway.upstreams.models.get(idx) {
            Some(m) => json(&Model { id: &m.name, object: "model", created: created(&state), owned_by: "sluice" }),
            None => GatewayError::ModelNotFound { model: name }.error_response(),
        },
        Err(e) => e.error_response(),
    }
}
