//! The mock server's multipart and resource routes: the audio uploads
//! (`/v1/audio/transcriptions`, `/v1/audio/translations`), scanned as
//! they arrive and never held ([`super::audio`]), and the Files and Batch
//! APIs ([`super::files`]), whose files it keeps in memory. On the audio
//! routes the `429` and `500` faults (`x-mock-fault`, or the server's
//! fail rate) answer after the whole upload was read, as a server that
//! failed while transcribing; delays and the other faults do not apply.
//!
//! An audio upload is recorded (`/mock/stats`) with a summary of what was
//! heard — `{"model":..,"filename":..,"size":..}` — in place of its body,
//! which the mock never holds.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::HeaderValue;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Limited};
use hyper::body::Incoming;

use super::body::MockBody;
use super::faults::Fault;
use super::files::Op;
use super::server::{ServerState, error, respond};

/// Largest file kept by the mock's store.
const MAX_FILE: usize = 600 * 1024 * 1024;

/// A route of this module.
pub(super) enum Route {
    Audio { translate: bool },
    Resource(Op),
}

/// Which of these routes `method` and `path` ask for, if any.
pub(super) fn route(method: &http::Method, path: &str) -> Option<Route> {
    let p = path.strip_prefix("/v1").unwrap_or(path);
    match (method.as_str(), p) {
        ("POST", "/audio/transcriptions") => Some(Route::Audio { translate: false }),
        ("POST", "/audio/translations") => Some(Route::Audio { translate: true }),
        (m, p) => Op::route(m, p).map(Route::Resource),
    }
}

pub(super) async fn answer(state: &Arc<ServerState>, route: Route, parts: Parts, body: Incoming) -> Response<MockBody> {
    let content_type = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let content_type = content_type.to_string();
    super::stats::bump(&state.stats.requests_total);
    match route {
        Route::Audio { translate } => {
            let fault = super::faults::Controls::from_headers(&parts.headers).fault.or_else(|| state.dice.roll());
            let chunks = BodyStream::new(body).filter_map(|f| async move {
                match f {
                    Ok(f) => f.into_data().ok().map(Ok),
                    Err(e) => Some(Err(e)),
                }
            });
            let heard = super::audio::hear(&content_type, Box::pin(chunks)).await;
            let summary = match &heard {
                Ok(h) => format!(
                    r#"{{"model":{},"filename":{},"size":{}}}"#,
                    sonic_rs::to_string(&h.model).unwrap_or_default(),
                    sonic_rs::to_string(&h.filename).unwrap_or_default(),
                    h.size
                ),
                Err(_) => String::new(),
            };
            state.stats.record(parts.method, parts.uri, parts.headers, &Bytes::from(summary));
            match fault {
                Some(f @ Fault::RateLimit) => {
                    state.stats.fault(f);
                    let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached (mock).", "requests", None);
                    r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(state.opts.retry_after_s));
                    return r;
                }
                Some(f @ Fault::ServerError) => {
                    state.stats.fault(f);
                    let message = "The server had an error while processing your request (mock fault).";
                    return error(StatusCode::INTERNAL_SERVER_ERROR, message, "server_error", None);
                }
                _ => {}
            }
            match heard.and_then(|h| super::audio::answer(&h, translate)) {
                Ok((b, ct)) => respond(StatusCode::OK, HeaderValue::from_static(ct), MockBody::full(b)),
                Err(e) => error(StatusCode::BAD_REQUEST, &e, "invalid_request_error", None),
            }
        }
        Route::Resource(op) => {
            let body = match Limited::new(body, MAX_FILE).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "The body is too large or was cut off.",
                        "invalid_request_error",
                        None,
                    );
                }
            };
            state.stats.record(parts.method, parts.uri, parts.headers, &body);
            let a = state.files.handle(&op, &content_type, &body);
            let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
            respond(status, HeaderValue::from_static(a.content_type), MockBody::full(a.body))
        }
    }
}
