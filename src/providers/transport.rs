//! HTTP to one upstream, whatever protocol it speaks: credentials and
//! headers, one request over this worker's pooled client (connection
//! permit, first-byte timeout, a non-2xx status turned into the gateway's
//! error), and reading a whole body under the idle and total timeouts.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Uri};
use sluice_upstream::{
    InflightPermit, Outgoing, ResponseBody, RetryAfter, SendError, SessionSpec, StreamedBody, StreamedRequest,
    UpstreamClient, WarmRequest, plain_http_target,
};
use tokio::time::{Instant, timeout_at};

use super::errors::{ErrorStyle, map_status_error, scrub};
use super::{Call, HeaderForward, Provider, Timeouts};
use crate::config::{ProviderConfig, ProviderKind};
use crate::deadline::within;
use crate::error::{GatewayError, TimeoutPhase};

/// How much of an upstream error body is read and shown.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Credentials, fixed headers and forwarding rules of one provider.
pub struct HttpUpstream {
    pub base: String,
    auth: Option<(HeaderName, HeaderValue)>,
    extra: Vec<(HeaderName, HeaderValue)>,
    forward: HeaderForward,
    /// Strings that must never reach a client: scrubbed from upstream errors.
    secrets: Vec<String>,
    style: ErrorStyle,
}

/// A request body: whole, or streamed from its source (an upload).
pub enum OutBody {
    Whole(Bytes),
    Streamed(StreamedBody),
}

/// An upstream answer with a 2xx status, its connection permit still held.
pub struct OkResponse {
    pub body: ResponseBody,
    pub event_stream: bool,
    pub permit: InflightPermit,
    /// The request's overall deadline.
    pub deadline: Instant,
    /// This attempt's waits (the provider's, overridden per model).
    pub timeouts: Timeouts,
}

impl HttpUpstream {
    /// Strings scrubbed from anything an upstream says that reaches a client.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// `defaults` are headers sent unless the config sets the same name
    /// (e.g. Anthropic's `anthropic-version`).
    pub fn new(cfg: &ProviderConfig, defaults: &[(&str, &str)], style: ErrorStyle) -> Result<HttpUpstream, String> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let mut secrets = Vec::new();
        let auth = match &cfg.api_key {
            Some(k) => {
                let (name, text) = match cfg.kind {
                    ProviderKind::Anthropic | ProviderKind::Gemini | ProviderKind::Azure => {
                        (HeaderName::from_static(cfg.kind.auth_header()), k.expose().to_string())
                    }
                    // Bedrock and Vertex take no api_key (the config refuses one).
                    ProviderKind::OpenAi | ProviderKind::Mock | ProviderKind::Bedrock | ProviderKind::Vertex => {
                        (AUTHORIZATION, format!("Bearer {}", k.expose()))
                    }
                };
                let mut v = HeaderValue::from_str(&text).map_err(|_| {
                    format!("provider `{}`: api_key holds characters not allowed in a header", cfg.name)
                })?;
                v.set_sensitive(true);
                secrets.push(k.expose().to_string());
                Some((name, v))
            }
            None => None,
        };
        let mut extra = Vec::new();
        for (name, value) in &cfg.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("provider `{}`: invalid header name `{name}`", cfg.name))?;
            let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                format!("provider `{}`: header `{name}` has characters not allowed in a header", cfg.name)
            })?;
            v.set_sensitive(true);
            secrets.push(value.expose().to_string());
            extra.push((n, v));
        }
        for (name, value) in defaults {
            if extra.iter().any(|(n, _)| n.as_str() == *name) {
                continue;
            }
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("provider `{}`: {e}", cfg.name))?;
            let v = HeaderValue::from_str(value).map_err(|e| format!("provider `{}`: {e}", cfg.name))?;
            extra.push((n, v));
        }
        // Very short values would scrub innocent text and protect nothing.
        secrets.retain(|s| s.len() >= 6);
        let forward = HeaderForward::new(&cfg.forward_headers);
        Ok(HttpUpstream { base, auth, extra, forward, secrets, style })
    }

    /// `base` + `path`, as a URI.
    pub fn uri(&self, cfg_name: &str, path: &str) -> Result<Uri, String> {
        format!("{}{path}", self.base)
            .parse::<Uri>()
            .map_err(|e| format!("provider `{cfg_name}`: invalid base_url: {e}"))
    }

    pub fn base_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = Vec::with_capacity(1 + self.extra.len());
        if let Some(a) = &self.auth {
            h.push(a.clone());
        }
        h.extend(self.extra.iter().cloned());
        h
    }

    /// Pooling for `UpstreamSessions`; `warm` is a cheap GET that opens
    /// connections at start, `any` a URI on the same origin.
    pub fn session_spec(&self, cfg: &ProviderConfig, warm: Option<Uri>, any: &Uri) -> SessionSpec {
        SessionSpec {
            name: cfg.name.clone(),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            max_connections: cfg.max_connections,
            idle_timeout: Duration::from_secs(90),
            warm_connections: cfg.warm_connections,
            warm_request: warm.map(|uri| WarmRequest { uri, headers: self.base_headers() }),
            plain_http: plain_http_target(any),
        }
    }

    /// The request headers: content type, accept, credentials and extra
    /// headers, the request id, and the client headers this provider
    /// forwards (never one Sluice already set).
    pub fn headers(&self, call: &Call<'_>, stream: bool) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = Vec::with_capacity(4 + self.extra.len());
        h.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        let accept = if stream { "text/event-stream" } else { "application/json" };
        h.push((ACCEPT, HeaderValue::from_static(accept)));
        if let Some(a) = &self.auth {
            h.push(a.clone());
        }
        h.extend(self.extra.iter().cloned());
        if let Ok(v) = HeaderValue::from_maybe_shared(call.request_id.bytes()) {
            h.push((HeaderName::from_static("x-request-id"), v));
        }
        if let Some(t) = call.trace_headers {
            h.push(t.traceparent.clone());
            h.extend(t.tracestate.clone());
        }
        if !self.forward.is_empty() {
            let fixed = h.len();
            for (name, value) in call.client_headers.iter() {
                let n = name.as_str();
                if self.forward.allows(n)
                    && !h[..fixed].iter().any(|(f, _)| f.as_str() == n)
                    && let (Ok(n), Ok(v)) =
                        (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_bytes(value.as_bytes()))
                {
                    h.push((n, v));
                }
            }
        }
        h
    }

    /// Send one request and wait (at most the first-byte timeout) for a 2xx
    /// head. Non-2xx statuses become errors here, their bodies read and mapped.
    ///
    /// A plain function returning [`HttpUpstream::send_request`]'s future,
    /// not an `async fn` around it: that would store its arguments beside
    /// the future it awaits, 152 bytes more in every request's future
    /// (docs/performance.md, "Async functions that store their arguments twice").
    pub fn send(
        &self,
        p: &Provider,
        t: Timeouts,
        client: &UpstreamClient,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> impl Future<Output = Result<OkResponse, GatewayError>> {
        self.send_request(p, t, client, Method::POST, uri, headers, OutBody::Whole(body))
    }

    /// [`HttpUpstream::send`] with any method and body.
    ///
    /// An `async` block, not an `async fn`: the block uses its captured
    /// arguments where they are, where an `async fn` also moves each into a
    /// local of its own, and both copies stay in the future while it waits
    /// (docs/performance.md, "Async functions that store their arguments twice").
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
    pub fn send_request(
        &self,
        p: &Provider,
        t: Timeouts,
        client: &UpstreamClient,
        method: Method,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: OutBody,
    ) -> impl Future<Output = Result<OkResponse, GatewayError>> {
        async move {
            let started = Instant::now();
            let first_byte = started + t.first_byte;
            let deadline = started + t.total;
            let permit = within(client.acquire(), || first_byte)
                .await
                .map_err(|_| GatewayError::UpstreamSaturated { provider: p.name.clone() })?
                .map_err(|_| GatewayError::ShuttingDown)?;
            // An upload is sent at the client's pace: the first byte of the
            // answer is awaited from the end of the body, within the total timeout.
            let head_by = match &body {
                OutBody::Whole(_) => first_byte,
                OutBody::Streamed(_) => deadline,
            };
            let sent = match body {
                OutBody::Whole(body) => {
                    futures_util::future::Either::Left(client.send(Outgoing { method, uri, headers, body }))
                }
                // Boxed: an upload's send is the larger future, and an inline
                // one would size every request's future by it.
                OutBody::Streamed(body) => {
                    futures_util::future::Either::Right(Box::pin(client.send_streamed(StreamedRequest {
                        method,
                        uri,
                        headers,
                        body,
                    })))
                }
            };
            let resp = match timeout_at(head_by, sent).await {
                Ok(Ok(r)) => r,
                Ok(Err(SendError::ConnectTimeout(_))) => return Err(timeout(p, &t, TimeoutPhase::Connect)),
                Ok(Err(SendError::Connect(detail))) => {
                    return Err(GatewayError::UpstreamConnect { provider: p.name.clone(), detail });
                }
                Ok(Err(SendError::Failed(detail))) => {
                    return Err(GatewayError::UpstreamProtocol { provider: p.name.clone(), detail });
                }
                Err(_) => return Err(timeout(p, &t, TimeoutPhase::FirstByte)),
            };
            if resp.resends > 0 {
                // Only requests that provably never reached the upstream are
                // sent again (sluice_upstream::h1): worth a line per attempt.
                tracing::info!(
                    provider = %p.name,
                    request_id = %call_id(headers),
                    resends = resp.resends,
                    "re-sent on a fresh connection: the pooled one had closed before any byte of the request left"
                );
            }
            let status = resp.status;
            if !(200..300).contains(&status) {
                let bytes = read_body(p, &t, resp.body, MAX_ERROR_BYTES, true, deadline).await.unwrap_or_default();
                return Err(self.status_error(p, status, bytes, resp.retry_after));
            }
            Ok(OkResponse { body: resp.body, event_stream: resp.event_stream, permit, deadline, timeouts: t })
        }
    }

    /// An upstream error status as an OpenAI-shaped error, scrubbed of this
    /// provider's secrets. When the request itself was at fault (4xx other
    /// than 401/403/429) the upstream's own error passes through: as is
    /// from OpenAI-compatible upstreams (so the SDK sees their `param` and
    /// `code`), as its type and message from Anthropic and Gemini.
    /// Everything else is the gateway's error (`upstream_error` /
    /// `rate_limit_exceeded`) quoting the upstream's message, since the
    /// client's request was not the problem.
    pub fn status_error(
        &self,
        p: &Provider,
        status: u16,
        body: Bytes,
        retry_after: Option<RetryAfter>,
    ) -> GatewayError {
        let body = map_status_error(self.style, &p.name, status, scrub(body, &self.secrets));
        let retry_after = retry_after.and_then(|r| match r {
            Ok(d) => Some(d),
            Err(why) => {
                // Counted and logged, then treated as no Retry-After (the
                // deployment cools for the default second): see
                // `sluice_upstream::retry_after` for why not zero.
                crate::metrics::record_invalid_retry_after(&p.name, why);
                tracing::warn!(provider = %p.name, status, reason = %why, "ignored an invalid Retry-After");
                None
            }
        });
        GatewayError::UpstreamStatus { provider: p.name.clone(), upstream_status: status, body, retry_after }
    }
}

/// The request id among the headers sent upstream, for logs.
fn call_id(headers: &[(HeaderName, HeaderValue)]) -> &str {
    headers.iter().find(|(n, _)| n.as_str() == "x-request-id").and_then(|(_, v)| v.to_str().ok()).unwrap_or("")
}

pub fn timeout(p: &Provider, t: &Timeouts, phase: TimeoutPhase) -> GatewayError {
    let d = match phase {
        TimeoutPhase::Connect => t.connect,
        TimeoutPhase::FirstByte => t.first_byte,
        TimeoutPhase::Idle => t.idle,
        TimeoutPhase::Total => t.total,
    };
    GatewayError::UpstreamTimeout { provider: p.name.clone(), phase, ms: d.as_millis() as u64 }
}

/// A whole answer passed on in the upstream's own protocol (Anthropic's
/// Messages, also on Bedrock and Vertex) is JSON a client can read; else a
/// protocol error, as [`check_answer`] gives.
pub fn check_json(p: &Provider, body: &[u8]) -> Result<(), GatewayError> {
    crate::json::check(body).map_err(|why| unfit(p, why))
}

/// A body that is not one JSON document, as the protocol error it is.
fn unfit(p: &Provider, why: crate::json::Unfit) -> GatewayError {
    GatewayError::UpstreamProtocol { provider: p.name.clone(), detail: format!("the response body {why}") }
}

/// A whole 2xx answer a client can be given: JSON (UTF-8, not too deep,
/// well formed) and not an error object in a 200's clothing, which some
/// OpenAI-compatible servers send when they fail. Otherwise a protocol
/// error (502, retryable, a failure for the breaker), quoting the
/// upstream's message scrubbed of `secrets`.
///
/// On success, where the answer's top-level `usage` member's value starts,
/// found in the same pass, for [`crate::usage::from_checked`].
pub fn check_answer(p: &Provider, body: &[u8], secrets: &[String]) -> Result<Option<usize>, GatewayError> {
    let usage = crate::json::check_member(body, b"\"usage\"").map_err(|why| unfit(p, why))?;
    if crate::json::is_error_object(body) {
        let mut message = sonic_rs::get(body, ["error", "message"])
            .ok()
            .and_then(|m| sonic_rs::JsonValueTrait::as_str(&m).map(|s| s.chars().take(300).collect::<String>()))
            .unwrap_or_default();
        for s in secrets {
            message = message.replace(s.as_str(), "***");
        }
        return Err(GatewayError::UpstreamProtocol {
            provider: p.name.clone(),
            detail: format!("it answered 200 with an error object: {message}"),
        });
    }
    Ok(usage)
}

/// Read a whole body with the idle timeout between frames and an overall
/// deadline. `truncate` keeps the first `max` bytes instead of failing.
pub async fn read_body(
    p: &Provider,
    t: &Timeouts,
    mut body: ResponseBody,
    max: usize,
    truncate: bool,
    deadline: Instant,
) -> Result<Bytes, GatewayError> {
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut len = 0usize;
    loop {
        // The clock is read only when no chunk is already here (the
        // answer's body mostly comes with its head: src/deadline.rs).
        let data = match within(body.chunk(), || (Instant::now() + t.idle).min(deadline)).await {
            Err(_) => {
                // A timer fires at or after its instant.
                let phase = if Instant::now() >= deadline { TimeoutPhase::Total } else { TimeoutPhase::Idle };
                return Err(timeout(p, t, phase));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(GatewayError::UpstreamProtocol {
                    provider: p.name.clone(),
                    detail: format!("the response body was cut off: {e}"),
                });
            }
            Ok(Some(Ok(d))) => d,
        };
        len += data.len();
        if len > max {
            if truncate {
                break;
            }
            return Err(GatewayError::UpstreamProtocol {
                provider: p.name.clone(),
                detail: format!("the response body is larger than {max} bytes"),
            });
        }
        match (&mut first, &mut buf) {
            (None, None) => first = Some(data),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(f.len() + data.len());
                b.extend_from_slice(f);
                b.extend_from_slice(&data);
                buf = Some(b);
                first = None;
            }
            (_, Some(b)) => b.extend_from_slice(&data),
        }
    }
    Ok(match (first, buf) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}
