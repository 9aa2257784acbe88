//! OpenAI's other routes, `POST /v1/images/generations`,
//! `/v1/moderations` and `/v1/audio/speech`, and the audio uploads
//! `/v1/audio/transcriptions` and `/v1/audio/translations` (multipart,
//! streamed through): proxied through the request pipeline to
//! `openai`-kind deployments (and the built-in mock), with auth, model
//! access, limits, fallbacks, spend and metrics as for chat.

use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};

use crate::endpoint::Endpoint;
use crate::gateway::WorkerState;
use crate::request;

pub async fn images(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    request::run(&state, request::Head::of(&req), payload.into_inner(), Endpoint::Images).await.into_response()
}

pub async fn moderations(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    request::run(&state, request::Head::of(&req), payload.into_inner(), Endpoint::Moderations).await.into_response()
}

pub async fn transcriptions(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    request::run(&state, request::Head::of(&req), payload.into_inner(), Endpoint::Transcriptions).await.into_response()
}

pub async fn translations(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    request::run(&state, request::Head::of(&req), payload.into_inner(), Endpoint::Translations).await.into_response()
}

pub async fn speech(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    request::run(&state, request::Head::of(&req), payload.into_inner(), Endpoint::Speech).await.into_response()
}
