//! OpenAI's Files and Batch APIs (`/v1/files…`, `/v1/batches…`): no model
//! in them, so they go to a provider (`x-sluice-provider`, else the first
//! that serves files) through `request::resources`.

use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};

use crate::endpoint::Endpoint;
use crate::gateway::WorkerState;
use crate::request::resources;

pub async fn files(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    resources::run(&state, req, payload, Endpoint::Files).await
}

pub async fn batches(state: WorkerState, req: HttpRequest, payload: Payload) -> HttpResponse {
    resources::run(&state, req, payload, Endpoint::Batches).await
}
