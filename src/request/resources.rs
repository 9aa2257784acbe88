//! The Files and Batch APIs (`/v1/files…`, `/v1/batches…`): requests that
//! name no model, so no model table, cache or token limit applies. Their
//! path: request id → auth → budget → the key's (and team's) request
//! limits (rpm, concurrency; no tokens) → the provider (`x-sluice-provider`,
//! else the first provider serving files) → the request sent there as
//! made (an upload streamed through) → its answer streamed back.
//!
//! Spend: creating a batch costs nothing yet, and what it will cost is not
//! known until it runs upstream, later, outside any request through
//! Sluice; so these routes record no tokens and no spend
//! (docs/configuration.md, "Files and batches").

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::record::Record;
use super::{budget, ingress, relay, upload};
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::gateway::WorkerState;
use crate::metrics::RequestOutcome;
use crate::providers::resources::{ResourceBody, ResourceCall, ResourceReply};
use crate::usage::Usage;

/// The header that picks the provider of a Files or Batch API request.
pub const PROVIDER_HEADER: &str = "x-sluice-provider";

/// Run one Files or Batch API request.
pub async fn run(state: &WorkerState, req: HttpRequest, payload: Payload, endpoint: Endpoint) -> HttpResponse {
    let metrics = state.gateway.upstreams.metrics.clone();
    let mut rec = Record::new(endpoint, ingress::request_id(req.headers()), metrics);
    rec.observe(state.gateway.telemetry.as_ref(), req.headers());
    match steps(state, &req, payload, &mut rec).await {
        Ok((reply, provider)) => {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            let mut b = relay::head(&mut rec, status);
            if let Ok(v) = HeaderValue::from_bytes(reply.content_type.as_bytes()) {
                b.insert_header((CONTENT_TYPE, v));
            }
            if let Ok(v) = HeaderValue::from_str(&provider) {
                b.insert_header((HeaderName::from_static(PROVIDER_HEADER), v));
            }
            // No tokens and no spend (see above); the limits' slots come back now.
            rec.finish(RequestOutcome::Status(reply.status), Some(Usage::default()), None);
            // A file's content is relayed as it arrives, never held whole.
            b.streaming(reply.body.map(|r| r.map_err(|e| actix_web::error::ErrorBadGateway(e.to_string()))))
        }
        Err(e) => relay::error(rec, &e),
    }
}

async fn steps(
    state: &WorkerState,
    req: &HttpRequest,
    payload: Payload,
    rec: &mut Record,
) -> Result<(ResourceReply, String), GatewayError> {
    let (gw, up) = (&state.gateway, &state.gateway.upstreams);
    if gw.is_shutting_down() {
        return Err(GatewayError::ShuttingDown);
    }
    let policy = gw.keys.authenticate(req.headers())?;
    rec.set_key(&policy.name, policy.team.as_deref());
    rec.charge.spending = Some(budget::check(state, &policy)?);
    let max_wait = std::time::Duration::from_millis(gw.config.queue.max_wait_ms);
    rec.charge.limits = crate::limits::admit(&up.limiter, &policy.scopes, 0, policy.priority, max_wait).await?;
    let below = req.path().strip_prefix("/v1").unwrap_or(req.path());
    // The path goes upstream with the provider's credentials: ids are plain
    // names, never `..` or an encoded `/` that could reach another route.
    let plain = |s: &str| {
        !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if !below.split('/').skip(1).all(plain) {
        return Err(GatewayError::invalid(format!("Invalid file or batch id in {}.", req.path()), None));
    }
    let (id, provider) = choose(state, req)?;
    let server = &gw.config.server;
    let idle = std::time::Duration::from_millis(server.body_read_timeout_ms);
    let method = req.method().clone();
    let body = if method != actix_web::http::Method::POST {
        ResourceBody::None
    } else if req.path() == "/v1/files" {
        let limits = upload::Limits {
            max_bytes: server.max_file_bytes,
            setting: "server.max_file_bytes",
            idle,
            spool_dir: server.spool_dir.clone(),
        };
        ResourceBody::Upload(upload::receive(req.headers(), payload.into_inner(), &limits, false).await?)
    } else {
        ResourceBody::Json(ingress::read_body(req.headers(), payload.into_inner(), server.max_body_bytes, idle).await?)
    };
    let path = match req.query_string() {
        "" => below.to_string(),
        q => format!("{below}?{q}"),
    };
    let method = http::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(http::Method::GET);
    let call = ResourceCall { method, path: &path, body, request_id: &rec.request_id };
    let started = std::time::Instant::now();
    let reply = provider.resource(call, state.upstream.clients.get(id).as_ref()).await;
    rec.add_upstream(started.elapsed());
    Ok((reply?, provider.name.clone()))
}

/// The provider named by `x-sluice-provider`, else the first (in config
/// order) that serves files. A file or batch lives on the provider that
/// made it: a client that picks one sends the same header on every call
/// about that file or batch.
fn choose<'a>(
    state: &'a WorkerState,
    req: &HttpRequest,
) -> Result<(usize, &'a crate::providers::Provider), GatewayError> {
    let providers = &state.gateway.upstreams.providers;
    let named = req.headers().get(PROVIDER_HEADER).map(|v| v.to_str().unwrap_or("").trim());
    let mut serving = providers.iter().filter(|(_, p)| p.serves_files());
    match named {
        Some(name) => serving.find(|(_, p)| p.name == name).ok_or_else(|| {
            let known: Vec<&str> =
                providers.iter().filter(|(_, p)| p.serves_files()).map(|(_, p)| p.name.as_str()).collect();
            GatewayError::InvalidRequest {
                message: format!(
                    "No provider named `{name}` serves the Files and Batch APIs ({PROVIDER_HEADER}); those that do: {}.",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
                param: None,
            }
        }),
        None => serving.next().ok_or_else(|| GatewayError::InvalidRequest {
            message: "No provider serves the Files and Batch APIs: set `files = true` on an `openai` provider \
                      (the built-in mock always serves them)."
                .into(),
            param: None,
        }),
    }
}
