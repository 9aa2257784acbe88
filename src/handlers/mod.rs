//! One file per route: read what the route needs, call the pipeline or the
//! actors, format the answer.

pub mod admin;
pub mod chat;
pub mod completions;
pub mod dashboard;
pub mod embeddings;
pub mod files;
pub mod health;
pub mod media;
pub mod messages;
pub mod metrics;
pub mod models;
pub mod ready;
pub mod responses;
pub mod status;

use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::error::GatewayError;

/// Every unknown route (and wrong method) gets an OpenAI-shaped 404 that
/// lists what Sluice serves.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    GatewayError::RouteNotFound { method: req.method().to_string(), path: req.path().to_string() }.error_response()
}
