//! `GatewayError`: every way a request can fail, with its HTTP status,
//! OpenAI error `type`/`code`, whether another attempt may help, where the
//! fault lies, and a low-cardinality metric label.
//!
//! Every mapping is one exhaustive `match` with no `_` arm, so a new variant
//! cannot compile until its status, type, code and retry policy are decided.

pub mod rate_limit;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use bytes::Bytes;

/// Who caused the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client sent something wrong.
    Client,
    /// The upstream provider failed or misbehaved.
    Upstream,
    /// Sluice itself (overload, shutdown, a bug).
    Gateway,
}

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    FirstByte,
    Idle,
    Total,
}

impl TimeoutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::FirstByte => "first byte",
            TimeoutPhase::Idle => "idle",
            TimeoutPhase::Total => "total",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// {message}
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<&'static str> },
    #[error("Missing API key. Send your Sluice key as `Authorization: Bearer <key>` or in the `x-api-key` header.")]
    MissingApiKey,
    #[error("Incorrect API key provided.")]
    InvalidApiKey,
    /// A key header was sent but no key could be read from it (say,
    /// `Authorization: sk-...` without `Bearer `); `problem` says what is wrong.
    #[error("{problem}")]
    MalformedApiKey { problem: &'static str },
    #[error("This endpoint needs the admin key (`server.admin_key`) as `Authorization: Bearer <key>`.")]
    AdminKeyRequired,
    /// An admin call names a runtime key or team that does not exist.
    #[error("No {what} named `{name}`.")]
    AdminNotFound { what: &'static str, name: String },
    /// An admin call that cannot be done as asked (a name taken, a config
    /// key changed, no store to keep it in); the message says why.
    #[error("{message}")]
    AdminConflict { message: String },
    #[error("This API key is not allowed to use the model `{model}`.")]
    ModelNotAllowed { model: String },
    #[error("The model `{model}` does not exist or you do not have access to it.")]
    ModelNotFound { model: String },
    #[error(
        "This model's maximum context length is {window} tokens, and the request needs about {tokens} (prompt estimate plus requested output); no fallback model is large enough. Shorten the messages or lower max_tokens."
    )]
    ContextLengthExceeded { model: String, window: u64, tokens: u64 },
    #[error("Unknown request URL: {method} {path}. Sluice serves: {ROUTES_SERVED}.")]
    RouteNotFound { method: String, path: String },
    /// A stored Response (`/v1/responses/{id}`, `previous_response_id`) this key does not have.
    #[error("{} with id '{id}' not found.", if param.is_some() { "Previous response" } else { "Response" })]
    ResponseNotFound { id: String, param: Option<&'static str> },
    #[error("Request body of {size} bytes is larger than the limit of {limit} bytes (`{setting}`).")]
    PayloadTooLarge { size: u64, limit: usize, setting: &'static str },
    #[error(
        "The request body did not arrive within {ms} ms (`server.body_read_timeout_ms`); {received} bytes came in time."
    )]
    BodyTimeout { ms: u64, received: u64 },
    #[error("Could not connect to the upstream provider `{provider}`: {detail}")]
    UpstreamConnect { provider: String, detail: String },
    #[error("The upstream provider `{provider}` did not answer in time ({} timeout of {ms} ms).", phase.as_str())]
    UpstreamTimeout { provider: String, phase: TimeoutPhase, ms: u64 },
    /// The upstream answered with an error status. `body` is already an
    /// OpenAI-shaped error (the upstream's own when it sent one), scrubbed of
    /// provider secrets. `retry_after` is its `Retry-After`, read
    /// (`sluice_upstream::retry_after`): the client gets it in whole seconds,
    /// never the upstream's raw text.
    #[error("The upstream provider `{provider}` answered with HTTP {upstream_status}.")]
    UpstreamStatus { provider: String, upstream_status: u16, body: Bytes, retry_after: Option<std::time::Duration> },
    #[error("The upstream provider `{provider}` sent an invalid response: {detail}")]
    UpstreamProtocol { provider: String, detail: String },
    #[error("The upstream provider `{provider}` is at its connection limit (`max_connections`); try again shortly.")]
    UpstreamSaturated { provider: String },
    /// A cloud provider's credentials could not be had: none configured
    /// (`unavailable`, 503), or its identity provider refused or could not
    /// be reached (502). `detail` names the source, never a secret.
    #[error("The upstream provider `{provider}` has no usable credentials: {detail}")]
    UpstreamCredentials { provider: String, detail: String, unavailable: bool },
    #[error("No deployment of the model `{model}` is available right now: {reason}")]
    NoDeployment { model: String, reason: String },
    #[error("Sluice is shutting down; retry on another replica.")]
    ShuttingDown,
    #[error("{}", rate_limited_message(scope, limit, *retry_after, *never))]
    RateLimited {
        scope: String,
        limit: &'static str,
        retry_after: Option<std::time::Duration>,
        /// The request alone is larger than the limit.
        never: bool,
        headroom: Box<sluice_actors::rate_limiter::Headroom>,
    },
    #[error("You exceeded your {period} budget of ${budget_usd} (key `{key}`); it renews {renews}.")]
    QuotaExceeded { key: String, period: &'static str, budget_usd: f64, renews: &'static str },
    #[error("Sluice is overloaded: too many requests are waiting for their limits. Retry with backoff.")]
    Overloaded,
    #[error("Internal gateway error: {detail}")]
    Internal { detail: String },
}

/// What Sluice serves (`server::routes`, the README's list), for the 404 of any other URL.
pub const ROUTES_SERVED: &str = "POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings, \
GET /v1/models, POST /v1/responses, GET|DELETE /v1/responses/{id}, POST /v1/responses/input_tokens, \
POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/images/generations, POST /v1/moderations, \
POST /v1/audio/speech, POST /v1/audio/transcriptions, POST /v1/audio/translations, POST|GET /v1/files, \
GET|DELETE /v1/files/{id}, GET /v1/files/{id}/content, POST|GET /v1/batches, GET /v1/batches/{id}, \
POST /v1/batches/{id}/cancel, GET /health, GET /ready, GET /metrics, GET /status";

impl GatewayError {
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        GatewayError::InvalidRequest { message: message.into(), param }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidRequest { .. } | GatewayError::ContextLengthExceeded { .. } => StatusCode::BAD_REQUEST,
            GatewayError::MissingApiKey
            | GatewayError::InvalidApiKey
            | GatewayError::MalformedApiKey { .. }
            | GatewayError::AdminKeyRequired => StatusCode::UNAUTHORIZED,
            GatewayError::AdminNotFound { .. } => StatusCode::NOT_FOUND,
            GatewayError::AdminConflict { .. } => StatusCode::CONFLICT,
            GatewayError::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            GatewayError::ModelNotFound { .. }
            | GatewayError::RouteNotFound { .. }
            | GatewayError::ResponseNotFound { .. } => StatusCode::NOT_FOUND,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UpstreamConnect { .. } | GatewayError::UpstreamProtocol { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamCredentials { unavailable: true, .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamCredentials { unavailable: false, .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamStatus { upstream_status, .. } => upstream_status_to_client(*upstream_status),
            GatewayError::UpstreamSaturated { .. }
            | GatewayError::NoDeployment { .. }
            | GatewayError::ShuttingDown
            | GatewayError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::RateLimited { .. } | GatewayError::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. }
            | GatewayError::ModelNotFound { .. }
            | GatewayError::ContextLengthExceeded { .. }
            | GatewayError::RouteNotFound { .. }
            | GatewayError::ResponseNotFound { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::BodyTimeout { .. } => "invalid_request_error",
            GatewayError::MissingApiKey
            | GatewayError::InvalidApiKey
            | GatewayError::MalformedApiKey { .. }
            | GatewayError::AdminKeyRequired
            | GatewayError::AdminNotFound { .. }
            | GatewayError::AdminConflict { .. } => "invalid_request_error",
            GatewayError::ModelNotAllowed { .. } => "permission_error",
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamCredentials { .. }
            | GatewayError::UpstreamProtocol { .. } => "upstream_error",
            GatewayError::UpstreamSaturated { .. }
            | GatewayError::NoDeployment { .. }
            | GatewayError::ShuttingDown
            | GatewayError::Overloaded => "service_unavailable",
            GatewayError::RateLimited { .. } => "rate_limit_error",
            GatewayError::QuotaExceeded { .. } => "insufficient_quota",
            GatewayError::Internal { .. } => "server_error",
        }
    }

    /// OpenAI's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::MissingApiKey | GatewayError::InvalidApiKey | GatewayError::MalformedApiKey { .. } => {
                "invalid_api_key"
            }
            GatewayError::AdminKeyRequired => "admin_key_required",
            GatewayError::AdminNotFound { .. } => "not_found",
            GatewayError::AdminConflict { .. } => "conflict",
            GatewayError::ModelNotAllowed { .. } => "model_not_allowed",
            GatewayError::ModelNotFound { .. } => "model_not_found",
            GatewayError::ContextLengthExceeded { .. } => "context_length_exceeded",
            GatewayError::RouteNotFound { .. } => "unknown_url",
            GatewayError::ResponseNotFound { param: Some(_), .. } => "previous_response_not_found",
            GatewayError::ResponseNotFound { param: None, .. } => "response_not_found",
            GatewayError::PayloadTooLarge { .. } => "request_too_large",
            GatewayError::BodyTimeout { .. } => "request_timeout",
            GatewayError::UpstreamConnect { .. } | GatewayError::UpstreamProtocol { .. } => "upstream_error",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UpstreamCredentials { .. } => "upstream_credentials",
            GatewayError::UpstreamStatus { upstream_status, .. } => match *upstream_status {
                429 => "rate_limit_exceeded",
                _ => "upstream_error",
            },
            GatewayError::UpstreamSaturated { .. } | GatewayError::ShuttingDown | GatewayError::Overloaded => {
                "overloaded"
            }
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::QuotaExceeded { .. } => "insufficient_quota",
            GatewayError::NoDeployment { .. } => "no_deployment_available",
            GatewayError::Internal { .. } => "internal_error",
        }
    }

    pub fn param(&self) -> Option<&'static str> {
        match self {
            GatewayError::InvalidRequest { param, .. } | GatewayError::ResponseNotFound { param, .. } => *param,
            GatewayError::ModelNotAllowed { .. } | GatewayError::ModelNotFound { .. } => Some("model"),
            GatewayError::ContextLengthExceeded { .. } => Some("messages"),
            GatewayError::MissingApiKey
            | GatewayError::InvalidApiKey
            | GatewayError::MalformedApiKey { .. }
            | GatewayError::AdminKeyRequired
            | GatewayError::AdminNotFound { .. }
            | GatewayError::AdminConflict { .. }
            | GatewayError::RouteNotFound { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::BodyTimeout { .. }
            | GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::UpstreamSaturated { .. }
            | GatewayError::UpstreamCredentials { .. }
            | GatewayError::NoDeployment { .. }
            | GatewayError::ShuttingDown
            | GatewayError::RateLimited { .. }
            | GatewayError::QuotaExceeded { .. }
            | GatewayError::Overloaded
            | GatewayError::Internal { .. } => None,
        }
    }

    /// May another deployment (or a later attempt) succeed where this failed?
    /// Only meaningful before the first byte reached the client.
    pub fn retryable(&self) -> bool {
        match self {
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::UpstreamSaturated { .. }
            // Another provider has its own credentials.
            | GatewayError::UpstreamCredentials { .. } => true,
            GatewayError::UpstreamStatus { upstream_status, .. } => {
                // 429 and 5xx are the provider's trouble; other 4xx would fail
                // the same way anywhere. 401/403/404 are the gateway's own
                // credentials or model mapping at *this* provider: another
                // deployment may well work.
                matches!(*upstream_status, 401 | 403 | 404 | 408 | 409 | 429) || *upstream_status >= 500
            }
            GatewayError::InvalidRequest { .. }
            | GatewayError::MissingApiKey
            | GatewayError::InvalidApiKey
            | GatewayError::MalformedApiKey { .. }
            | GatewayError::AdminKeyRequired
            | GatewayError::AdminNotFound { .. }
            | GatewayError::AdminConflict { .. }
            | GatewayError::ModelNotAllowed { .. }
            | GatewayError::ModelNotFound { .. }
            | GatewayError::ContextLengthExceeded { .. }
            | GatewayError::RouteNotFound { .. }
            | GatewayError::ResponseNotFound { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::BodyTimeout { .. }
            | GatewayError::NoDeployment { .. }
            | GatewayError::ShuttingDown
            | GatewayError::RateLimited { .. }
            | GatewayError::QuotaExceeded { .. }
            | GatewayError::Overloaded
            | GatewayError::Internal { .. } => false,
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            GatewayError::InvalidRequest { .. }
            | GatewayError::MissingApiKey
            | GatewayError::InvalidApiKey
            | GatewayError::MalformedApiKey { .. }
            | GatewayError::AdminKeyRequired
            | GatewayError::AdminNotFound { .. }
            | GatewayError::AdminConflict { .. }
            | GatewayError::ModelNotAllowed { .. }
            | GatewayError::ModelNotFound { .. }
            | GatewayError::ContextLengthExceeded { .. }
            | GatewayError::RouteNotFound { .. }
            | GatewayError::ResponseNotFound { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::BodyTimeout { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::QuotaExceeded { .. } => Fault::Client,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamCredentials { .. }
            | GatewayError::UpstreamProtocol { .. } => Fault::Upstream,
            GatewayError::UpstreamSaturated { .. }
            | GatewayError::NoDeployment { .. }
            | GatewayError::ShuttingDown
            | GatewayError::Overloaded
            | GatewayError::Internal { .. } => Fault::Gateway,
        }
    }

    /// A low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::MissingApiKey => "missing_api_key",
            GatewayError::InvalidApiKey => "invalid_api_key",
            GatewayError::MalformedApiKey { .. } => "malformed_api_key",
            GatewayError::AdminKeyRequired => "admin_key_required",
            GatewayError::AdminNotFound { .. } => "not_found",
            GatewayError::AdminConflict { .. } => "conflict",
            GatewayError::ModelNotAllowed { .. } => "model_not_allowed",
            GatewayError::ModelNotFound { .. } => "model_not_found",
            GatewayError::ContextLengthExceeded { .. } => "context_length_exceeded",
            GatewayError::RouteNotFound { .. } => "route_not_found",
            GatewayError::ResponseNotFound { .. } => "response_not_found",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::BodyTimeout { .. } => "body_timeout",
            GatewayError::UpstreamConnect { .. } => "upstream_connect",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UpstreamStatus { .. } => "upstream_status",
            GatewayError::UpstreamProtocol { .. } => "upstream_protocol",
            GatewayError::UpstreamSaturated { .. } => "upstream_saturated",
            GatewayError::UpstreamCredentials { .. } => "upstream_credentials",
            GatewayError::NoDeployment { .. } => "no_deployment",
            GatewayError::ShuttingDown => "shutting_down",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::QuotaExceeded { .. } => "insufficient_quota",
            GatewayError::Overloaded => "overloaded",
            GatewayError::Internal { .. } => "internal",
        }
    }

    /// Headers this error's response carries besides the body's type:
    /// `retry-after` and, for rate limits, `x-ratelimit-*`.
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            // Whole seconds, rounded up: never invite a retry too early.
            GatewayError::UpstreamStatus { retry_after: Some(d), .. } => {
                vec![("retry-after", d.as_secs_f64().ceil().to_string())]
            }
            GatewayError::RateLimited { retry_after, headroom, .. } => {
                let mut h = rate_limit::headers(headroom);
                if let Some(d) = retry_after {
                    // Whole seconds, rounded up: never invite a retry too early.
                    h.push(("retry-after", d.as_secs_f64().ceil().max(1.0).to_string()));
                }
                h
            }
            _ => Vec::new(),
        }
    }

    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> Bytes {
        if let GatewayError::UpstreamStatus { body, .. } = self {
            return body.clone();
        }
        error_body(&self.to_string(), self.error_type(), self.param(), Some(self.code()))
    }

    /// The same error as one SSE event, for failures after a stream began.
    pub fn sse_event(&self) -> Bytes {
        let body = self.body();
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

fn rate_limited_message(scope: &str, limit: &str, retry_after: Option<std::time::Duration>, never: bool) -> String {
    let what = rate_limit::describe(limit);
    if never {
        return format!(
            "Request too large: it needs more tokens than the limit of {what} allows ({scope}). Shorten the prompt or lower max_tokens."
        );
    }
    match retry_after {
        Some(d) => format!("Rate limit reached for {what} ({scope}). Please try again in {:.3}s.", d.as_secs_f64()),
        None => format!("Rate limit reached for {what} ({scope}). Please try again shortly."),
    }
}

/// What the client sees for an upstream error status. The upstream's 401/403
/// concern the gateway's own provider credentials, not the client's key, so
/// they become 502; 429 stays 429 so SDKs back off; other 4xx pass through
/// (the request itself was bad); 5xx become 502.
fn upstream_status_to_client(status: u16) -> StatusCode {
    match status {
        401 | 403 => StatusCode::BAD_GATEWAY,
        400..=499 => StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// `{"error":{"message":..,"type":..,"param":..,"code":..}}`.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    #[derive(serde::Serialize)]
    struct Inner<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        param: Option<&'a str>,
        code: Option<&'a str>,
    }
    #[derive(serde::Serialize)]
    struct Outer<'a> {
        error: Inner<'a>,
    }
    let v = Outer { error: Inner { message, kind, param, code } };
    // Serialising plain strings cannot fail; fall back to a fixed body anyway
    // rather than panic.
    match sonic_rs::to_vec(&v) {
        Ok(b) => Bytes::from(b),
        Err(_) => Bytes::from_static(
            br#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#,
        ),
    }
}

/// A request the translator refused is the client's to fix: a 400.
impl From<crate::translate::TranslateError> for GatewayError {
    fn from(e: crate::translate::TranslateError) -> Self {
        GatewayError::invalid(e.message, e.param)
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status());
        resp.content_type("application/json");
        for (name, value) in self.extra_headers() {
            resp.insert_header((name, value));
        }
        resp.body(self.body())
    }
}

#[cfg(test)]
mod tests;
