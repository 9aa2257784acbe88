//! The Responses API: `POST /v1/responses` and
//! `POST /v1/responses/input_tokens` through the request pipeline (passed
//! through to deployments that serve the API, translated for the others),
//! and the stored Responses Sluice keeps: `GET` and
//! `DELETE /v1/responses/{id}`, for the key that created them only.

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::gateway::WorkerState;
use crate::request;

pub async fn create(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    request::run(&state, request::Head::of(&req), payload.into_inner(), Endpoint::Responses).await.into_response()
}

pub async fn input_tokens(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    request::run(&state, request::Head::of(&req), payload.into_inner(), Endpoint::InputTokens).await.into_response()
}

/// `GET /v1/responses/{id}`: the stored Response.
pub async fn get(state: WorkerState, req: HttpRequest, id: Path<String>) -> HttpResponse {
    let gw = &state.gateway;
    let policy = match gw.keys.authenticate(req.headers()) {
        Ok(p) => p,
        Err(e) => return e.error_response(),
    };
    let id = id.into_inner();
    match gw.conversations.get(&id, &policy.name).await {
        Some(stored) => HttpResponse::Ok().content_type("application/json").body(stored.response),
        None => GatewayError::ResponseNotFound { id, param: None }.error_response(),
    }
}

/// `DELETE /v1/responses/{id}`: forget a stored Response (and the
/// conversation up to it), in OpenAI's deletion shape.
pub async fn delete(state: WorkerState, req: HttpRequest, id: Path<String>) -> HttpResponse {
    let gw = &state.gateway;
    let policy = match gw.keys.authenticate(req.headers()) {
        Ok(p) => p,
        Err(e) => return e.error_response(),
    };
    let id = id.into_inner();
    if !gw.conversations.delete(&id, &policy.name).await {
        return GatewayError::ResponseNotFound { id, param: None }.error_response();
    }
    let body = sonic_rs::json!({ "id": id, "object": "response", "deleted": true });
    HttpResponse::Ok().content_type("application/json").body(body.to_string())
}
