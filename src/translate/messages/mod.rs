//! The Anthropic-shaped ingress, `POST /v1/messages`, over deployments that
//! do not speak Anthropic: the client's Messages request becomes an OpenAI
//! chat request ([`request`]), and the OpenAI answer becomes a Messages
//! answer ([`response`]) or Messages stream events ([`stream`]). Errors on
//! this route take Anthropic's error shape ([`error_body`]).
//!
//! When the deployment is itself Anthropic, none of this runs: the client's
//! bytes go upstream untouched (only `model` renamed) and the upstream's
//! come back untouched.

mod read;
pub mod request;
pub mod response;
pub mod settings;
pub mod stream;

use bytes::Bytes;

use super::anthropic::{self, error_type_for_status};

/// Anthropic error types a client may meet; an upstream's own type is kept
/// when it is one of them (the gateway's own errors take the type of their
/// status, as Anthropic's do).
const KNOWN_TYPES: [&str; 11] = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
    "upstream_error",
];

/// The Anthropic-shaped body, `{"type":"error","error":{"type":..,"message":..}}`,
/// of an error answered with HTTP `status` and written in OpenAI's shape
/// (`openai`). `from_upstream`: the error is an upstream's own, whose type
/// is kept when Anthropic knows it. `unreadable` is the message when
/// `openai` has none.
pub fn error_body(status: u16, openai: &[u8], from_upstream: bool, unreadable: &str) -> Bytes {
    let (kind, message) = match read_openai_error(openai) {
        Some((kind, message)) => {
            let kind = if from_upstream && KNOWN_TYPES.contains(&kind.as_str()) && kind != "upstream_error" {
                kind
            } else {
                error_type_for_status(status).to_owned()
            };
            (kind, message)
        }
        None => (error_type_for_status(status).to_owned(), unreadable.to_owned()),
    };
    anthropic::error_body(&kind, &message)
}

/// An Anthropic error `body` as one `event: error` SSE event, for failures
/// after a stream began.
pub fn error_event(body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 24);
    out.extend_from_slice(b"event: error\ndata: ");
    out.extend_from_slice(body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn read_openai_error(body: &[u8]) -> Option<(String, String)> {
    use sonic_rs::JsonValueTrait;
    // An upstream's own error body may reach here untouched.
    let body = super::readable(body).ok()?;
    let err = sonic_rs::get(body, ["error"]).ok()?;
    let raw = err.as_raw_str();
    let message = sonic_rs::get(raw, ["message"]).ok().and_then(|m| m.as_str().map(str::to_owned))?;
    let kind = sonic_rs::get(raw, ["type"]).ok().and_then(|m| m.as_str().map(str::to_owned)).unwrap_or_default();
    Some((kind, message))
}
