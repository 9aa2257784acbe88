//! `POST /admin/reload`: re-read the config file, validate it as `sluice
//! check` does, and swap it in. An invalid file is refused (400, with every
//! error at file:line) and the running config stays.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use super::{W, admin, json};
use crate::error::GatewayError;
use crate::gateway::ReloadOutcome;

#[derive(Serialize)]
struct Reloaded {
    status: &'static str,
    /// SHA-256 of the file now running, hex.
    digest: Option<String>,
    /// Settings that changed but are read at start only.
    restart_required: Vec<String>,
}

#[derive(Serialize)]
struct Refused {
    error: RefusedBody,
}

#[derive(Serialize)]
struct RefusedBody {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'static str>,
    code: &'static str,
    /// Every problem, as `sluice check` prints them (`FILE:LINE: KEY: what`).
    errors: Vec<String>,
}

pub async fn reload(w: W, req: HttpRequest) -> HttpResponse {
    if let Err(e) = admin(&w, &req) {
        return e.error_response();
    }
    match w.live.reload().await {
        ReloadOutcome::Ok { digest, restart_required } => {
            json(StatusCode::OK, &Reloaded { status: "reloaded", digest, restart_required })
        }
        ReloadOutcome::Invalid(errors) => {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            json(
                StatusCode::BAD_REQUEST,
                &Refused {
                    error: RefusedBody {
                        message: format!(
                            "The config file has {} error(s); the running config stays: {}",
                            errors.len(),
                            errors.join("; ")
                        ),
                        kind: "invalid_request_error",
                        param: None,
                        code: "invalid_config",
                        errors,
                    },
                },
            )
        }
        ReloadOutcome::Error(detail) => GatewayError::Internal { detail }.error_response(),
    }
}
