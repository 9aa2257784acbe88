//! Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, Groq, Together, …).
//! The client's body bytes go out untouched unless `model` must be renamed or
//! usage must be requested on a stream; responses come back as they are.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Uri};
use memchr::memmem;
use sluice_actors::upstream_sessions::{
    InflightPermit, Outgoing, ResponseBody, SendError, SessionSpec, UpstreamClient, WarmRequest, plain_http_target,
};
use sonic_rs::JsonValueTrait;
use tokio::time::{Instant, timeout_at};

use super::sse::SseSplitter;
use super::{Call, Endpoint, EventStream, HeaderForward, Provider, Reply, usage};
use crate::config::ProviderConfig;
use crate::error::{GatewayError, TimeoutPhase, error_body};
use crate::request::ingress;

/// Upper bound on a whole (non-stream) upstream body kept in memory.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// How much of an upstream error body is read and shown.
const MAX_ERROR_BYTES: usize = 64 * 1024;

pub struct OpenAi {
    base: String,
    uris: [Uri; 3],
    /// `Authorization: Bearer <api_key>`, marked sensitive.
    auth: Option<HeaderValue>,
    extra: Vec<(HeaderName, HeaderValue)>,
    forward: HeaderForward,
    /// Strings that must never reach a client: scrubbed from upstream errors.
    secrets: Vec<String>,
}

impl OpenAi {
    pub fn new(cfg: &ProviderConfig) -> Result<OpenAi, String> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let uri = |e: Endpoint| -> Result<Uri, String> {
            format!("{base}{}", e.path())
                .parse::<Uri>()
                .map_err(|e| format!("provider `{}`: invalid base_url: {e}", cfg.name))
        };
        let uris = [uri(Endpoint::Chat)?, uri(Endpoint::Completions)?, uri(Endpoint::Embeddings)?];
        let mut secrets = Vec::new();
        let auth = match &cfg.api_key {
            Some(k) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", k.expose())).map_err(|_| {
                    format!("provider `{}`: api_key holds characters not allowed in a header", cfg.name)
                })?;
                v.set_sensitive(true);
                secrets.push(k.expose().to_string());
                Some(v)
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
        // Very short values would scrub innocent text and protect nothing.
        secrets.retain(|s| s.len() >= 6);
        let forward = HeaderForward::new(&cfg.forward_headers);
        Ok(OpenAi { base, uris, auth, extra, forward, secrets })
    }

    fn uri(&self, e: Endpoint) -> &Uri {
        match e {
            Endpoint::Chat => &self.uris[0],
            Endpoint::Completions => &self.uris[1],
            Endpoint::Embeddings => &self.uris[2],
        }
    }

    fn base_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = Vec::with_capacity(1 + self.extra.len());
        if let Some(a) = &self.auth {
            h.push((AUTHORIZATION, a.clone()));
        }
        h.extend(self.extra.iter().cloned());
        h
    }

    pub fn session_spec(&self, cfg: &ProviderConfig) -> SessionSpec {
        let warm_request = format!("{}/models", self.base)
            .parse::<Uri>()
            .ok()
            .map(|uri| WarmRequest { uri, headers: self.base_headers() });
        SessionSpec {
            name: cfg.name.clone(),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            max_connections: cfg.max_connections,
            idle_timeout: Duration::from_secs(90),
            warm_connections: cfg.warm_connections,
            warm_request,
            plain_http: plain_http_target(&self.uris[0]),
        }
    }

    /// The request headers: content type, accept, the provider's credentials
    /// and extra headers, the request id, and the client headers this
    /// provider forwards.
    fn headers(&self, call: &Call<'_>) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = Vec::with_capacity(4 + self.extra.len());
        h.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        let accept = if call.peek.stream { "text/event-stream" } else { "application/json" };
        h.push((ACCEPT, HeaderValue::from_static(accept)));
        if let Some(a) = &self.auth {
            h.push((AUTHORIZATION, a.clone()));
        }
        h.extend(self.extra.iter().cloned());
        if let Ok(v) = HeaderValue::from_str(call.request_id) {
            h.push((HeaderName::from_static("x-request-id"), v));
        }
        if !self.forward.is_empty() {
            for (name, value) in call.client_headers.iter() {
                let n = name.as_str();
                if self.forward.allows(n)
                    && let (Ok(n), Ok(v)) =
                        (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_bytes(value.as_bytes()))
                {
                    h.push((n, v));
                }
            }
        }
        h
    }

    pub async fn send(&self, p: &Provider, call: &Call<'_>, client: &UpstreamClient) -> Result<Reply, GatewayError> {
        let body = ingress::rewrite(call.body, call.peek, call.upstream_model, call.endpoint.streams());
        let headers = self.headers(call);
        let started = Instant::now();
        let first_byte = started + call.timeouts.first_byte;
        let total = started + call.timeouts.total;
        let permit = timeout_at(first_byte, client.acquire())
            .await
            .map_err(|_| GatewayError::UpstreamSaturated { provider: p.name.clone() })?
            .map_err(|_| GatewayError::ShuttingDown)?;
        let req = Outgoing { method: Method::POST, uri: self.uri(call.endpoint), headers: &headers, body };
        let resp = match timeout_at(first_byte, client.send(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(SendError::ConnectTimeout(_))) => return Err(timeout(p, &call.timeouts, TimeoutPhase::Connect)),
            Ok(Err(SendError::Connect(detail))) => {
                return Err(GatewayError::UpstreamConnect { provider: p.name.clone(), detail });
            }
            Ok(Err(SendError::Failed(detail))) => {
                return Err(GatewayError::UpstreamProtocol { provider: p.name.clone(), detail });
            }
            Err(_) => return Err(timeout(p, &call.timeouts, TimeoutPhase::FirstByte)),
        };
        let status = resp.status;
        if !(200..300).contains(&status) {
            let bytes = read_body(p, &call.timeouts, resp.body, MAX_ERROR_BYTES, true, total).await.unwrap_or_default();
            return Err(self.status_error(p, status, bytes, resp.retry_after));
        }
        if call.peek.stream && resp.event_stream {
            return Ok(Reply::Stream(event_stream(resp.body, permit, p.name.clone())));
        }
        let bytes = read_body(p, &call.timeouts, resp.body, MAX_RESPONSE_BYTES, false, total).await?;
        drop(permit);
        let usage = usage::from_body(&bytes).map_err(|e| GatewayError::UpstreamProtocol {
            provider: p.name.clone(),
            detail: format!("the response body is not valid JSON ({e})"),
        })?;
        Ok(Reply::Complete { body: bytes, usage })
    }

    /// An upstream error status as an OpenAI-shaped error, scrubbed of this
    /// provider's secrets. The upstream's own error object passes through
    /// when the request itself was at fault (4xx other than 401/403/429), so
    /// the SDK sees the provider's `param` and `code`. Everything else is the
    /// gateway's error (`upstream_error` / `rate_limit_exceeded`) quoting the
    /// upstream's message, since the client's request was not the problem.
    fn status_error(&self, p: &Provider, status: u16, body: Bytes, retry_after: Option<String>) -> GatewayError {
        let body = scrub(body, &self.secrets);
        // Parse only bodies that cannot overflow the parser's stack.
        let parseable = !crate::json::nesting_exceeds(&body, crate::request::ingress::MAX_DEPTH);
        let field = |path: &[&str]| -> Option<String> {
            let v = sonic_rs::get(&body[..], path).ok()?;
            v.as_str().map(str::to_string)
        };
        let upstream_message = if parseable { field(&["error", "message"]) } else { None };
        let client_fault = (400..500).contains(&status) && !matches!(status, 401 | 403 | 429);
        let body = if client_fault && upstream_message.is_some() {
            body
        } else {
            // The upstream's message: OpenAI's `error.message`, Ollama's
            // `{"error":"text"}`, or the start of a plain-text / HTML body.
            let text = upstream_message
                .or_else(|| if parseable { field(&["error"]) } else { None })
                .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string());
            let message = if text.is_empty() {
                format!("The upstream provider `{}` answered with HTTP {status}.", p.name)
            } else {
                format!("The upstream provider `{}` answered with HTTP {status}: {text}", p.name)
            };
            let (kind, code) = match status {
                429 => ("rate_limit_error", "rate_limit_exceeded"),
                _ => ("upstream_error", "upstream_error"),
            };
            error_body(&message, kind, None, Some(code))
        };
        GatewayError::UpstreamStatus { provider: p.name.clone(), upstream_status: status, body, retry_after }
    }
}

fn timeout(p: &Provider, t: &super::Timeouts, phase: TimeoutPhase) -> GatewayError {
    let d = match phase {
        TimeoutPhase::Connect => t.connect,
        TimeoutPhase::FirstByte => t.first_byte,
        TimeoutPhase::Idle => t.idle,
        TimeoutPhase::Total => t.total,
    };
    GatewayError::UpstreamTimeout { provider: p.name.clone(), phase, ms: d.as_millis() as u64 }
}

/// Read a whole body with the idle timeout between frames and an overall
/// deadline. `truncate` keeps the first `max` bytes instead of failing.
async fn read_body(
    p: &Provider,
    t: &super::Timeouts,
    mut body: ResponseBody,
    max: usize,
    truncate: bool,
    deadline: Instant,
) -> Result<Bytes, GatewayError> {
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut len = 0usize;
    loop {
        let idle = (Instant::now() + t.idle).min(deadline);
        let data = match timeout_at(idle, body.chunk()).await {
            Err(_) => {
                let phase = if idle >= deadline { TimeoutPhase::Total } else { TimeoutPhase::Idle };
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

/// The upstream's SSE body as runs of whole events. The permit rides along
/// so the provider's connection slot is held exactly as long as the stream.
fn event_stream(body: ResponseBody, permit: InflightPermit, provider: String) -> EventStream {
    struct St {
        body: ResponseBody,
        split: SseSplitter,
        _permit: InflightPermit,
        provider: String,
        done: bool,
    }
    let st = St { body, split: SseSplitter::new(), _permit: permit, provider, done: false };
    futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.body.chunk().await {
                Some(Ok(data)) => {
                    if let Some(events) = st.split.push(data) {
                        return Some((Ok(events), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    let err = GatewayError::UpstreamProtocol {
                        provider: st.provider.clone(),
                        detail: format!("the stream was cut off: {e}"),
                    };
                    return Some((Err(err), st));
                }
                None => {
                    st.done = true;
                    // A last event without its blank line still counts.
                    let rest = st.split.remainder()?;
                    let mut b = BytesMut::with_capacity(rest.len() + 2);
                    b.extend_from_slice(&rest);
                    b.extend_from_slice(b"\n\n");
                    return Some((Ok(b.freeze()), st));
                }
            }
        }
    })
    .boxed_local()
}

/// Replace every occurrence of a secret with `***`.
fn scrub(body: Bytes, secrets: &[String]) -> Bytes {
    if secrets.iter().all(|s| memmem::find(&body, s.as_bytes()).is_none()) {
        return body;
    }
    let mut text = body.to_vec();
    for s in secrets {
        while let Some(i) = memmem::find(&text, s.as_bytes()) {
            text.splice(i..i + s.len(), b"***".iter().copied());
        }
    }
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_copy() {
        let s = vec!["sk-secret-123".to_string()];
        let out = scrub(Bytes::from_static(b"bad key sk-secret-123 and sk-secret-123!"), &s);
        assert_eq!(&out[..], b"bad key *** and ***!");
        let clean = Bytes::from_static(b"nothing here");
        assert_eq!(scrub(clean.clone(), &s).as_ptr(), clean.as_ptr());
    }
}
