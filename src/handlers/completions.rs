//! `POST /v1/completions`: proxied through the request pipeline.

use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};

use crate::endpoint::Endpoint;
use crate::gateway::WorkerState;
use crate::request;

pub async fn completions(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    request::run(&state, request::Head::of(&req), payload.into_inner(), Endpoint::Completions).await.into_response()
}
