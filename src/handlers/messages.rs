//! `POST /v1/messages`: Anthropic's Messages API as an ingress, so the
//! Anthropic SDK can call any model Sluice routes. Same pipeline as the
//! OpenAI routes; the endpoint tells providers the body is Anthropic-shaped
//! and tells the relay to answer errors in Anthropic's shape.

use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};

use crate::endpoint::Endpoint;
use crate::gateway::WorkerState;
use crate::request;

pub async fn messages(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    request::run(&state, request::Head::of(&req), payload.into_inner(), Endpoint::Messages).await.into_response()
}

/// `POST /v1/messages/count_tokens`: passed through to a deployment that
/// counts (Anthropic), estimated with the tokenizer for any other.
pub async fn count_tokens(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    request::run(&state, request::Head::of(&req), payload.into_inner(), Endpoint::CountTokens).await.into_response()
}
