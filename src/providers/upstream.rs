//! What every networked provider shares, whatever protocol it speaks:
//! credentials and headers, one attempt over this worker's pooled client
//! (connection permit, first-byte timeout, error mapping), reading a whole
//! body, splitting an SSE body into runs of whole events, and running a
//! stream translator over those events.

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

use super::{Call, EventStream, HeaderForward, Provider, Timeouts};
use crate::config::{ProviderConfig, ProviderKind};
use crate::error::{GatewayError, TimeoutPhase, error_body};
use crate::sse::SseSplitter;
use crate::translate::{SseOut, StreamTranslate};

/// Upper bound on a whole (non-stream) upstream body kept in memory.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// How much of an upstream error body is read and shown.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// How an upstream writes its error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error":{"message":..,"type":..}}` (also Ollama's `{"error":"text"}`).
    OpenAi,
    /// `{"type":"error","error":{"type":..,"message":..}}`
    Anthropic,
    /// `{"error":{"code":..,"message":..,"status":..}}`
    Gemini,
}

/// Credentials, fixed headers and forwarding rules of one provider.
pub struct Upstream {
    pub base: String,
    auth: Option<(HeaderName, HeaderValue)>,
    extra: Vec<(HeaderName, HeaderValue)>,
    forward: HeaderForward,
    /// Strings that must never reach a client: scrubbed from upstream errors.
    secrets: Vec<String>,
    style: ErrorStyle,
}

/// An upstream answer with a 2xx status, its connection permit still held.
pub struct Answer {
    pub body: ResponseBody,
    pub event_stream: bool,
    pub permit: InflightPermit,
    /// The request's overall deadline.
    pub deadline: Instant,
    /// This attempt's waits (the provider's, overridden per model).
    pub timeouts: Timeouts,
}

impl Upstream {
    /// Strings scrubbed from anything an upstream says that reaches a client.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// `defaults` are headers sent unless the config sets the same name
    /// (e.g. Anthropic's `anthropic-version`).
    pub fn new(cfg: &ProviderConfig, defaults: &[(&str, &str)], style: ErrorStyle) -> Result<Upstream, String> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let mut secrets = Vec::new();
        let auth = match &cfg.api_key {
            Some(k) => {
                let (name, text) = match cfg.kind {
                    ProviderKind::Anthropic | ProviderKind::Gemini => {
                        (HeaderName::from_static(cfg.kind.auth_header()), k.expose().to_string())
                    }
                    ProviderKind::OpenAi | ProviderKind::Mock => (AUTHORIZATION, format!("Bearer {}", k.expose())),
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
        Ok(Upstream { base, auth, extra, forward, secrets, style })
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
        if let Ok(v) = HeaderValue::from_str(call.request_id) {
            h.push((HeaderName::from_static("x-request-id"), v));
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
    pub async fn send(
        &self,
        p: &Provider,
        t: Timeouts,
        client: &UpstreamClient,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Answer, GatewayError> {
        let started = Instant::now();
        let first_byte = started + t.first_byte;
        let deadline = started + t.total;
        let permit = timeout_at(first_byte, client.acquire())
            .await
            .map_err(|_| GatewayError::UpstreamSaturated { provider: p.name.clone() })?
            .map_err(|_| GatewayError::ShuttingDown)?;
        let req = Outgoing { method: Method::POST, uri, headers, body };
        let resp = match timeout_at(first_byte, client.send(req)).await {
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
        let status = resp.status;
        if !(200..300).contains(&status) {
            let bytes = read_body(p, &t, resp.body, MAX_ERROR_BYTES, true, deadline).await.unwrap_or_default();
            return Err(self.status_error(p, status, bytes, resp.retry_after));
        }
        Ok(Answer { body: resp.body, event_stream: resp.event_stream, permit, deadline, timeouts: t })
    }

    /// An upstream error status as an OpenAI-shaped error, scrubbed of this
    /// provider's secrets. When the request itself was at fault (4xx other
    /// than 401/403/429) the upstream's own error passes through: as is
    /// from OpenAI-compatible upstreams (so the SDK sees their `param` and
    /// `code`), as its type and message from Anthropic and Gemini.
    /// Everything else is the gateway's error (`upstream_error` /
    /// `rate_limit_exceeded`) quoting the upstream's message, since the
    /// client's request was not the problem.
    pub fn status_error(&self, p: &Provider, status: u16, body: Bytes, retry_after: Option<String>) -> GatewayError {
        let body = map_status_error(self.style, &p.name, status, scrub(body, &self.secrets));
        GatewayError::UpstreamStatus { provider: p.name.clone(), upstream_status: status, body, retry_after }
    }
}

/// The OpenAI-shaped error body for an upstream's error `status` and
/// `body` (already scrubbed of secrets); see [`Upstream::status_error`].
pub fn map_status_error(style: ErrorStyle, provider: &str, status: u16, body: Bytes) -> Bytes {
    // Parse only bodies that cannot overflow the parser's stack.
    let parseable = !crate::json::nesting_exceeds(&body, crate::json::MAX_DEPTH);
    let field = |path: &[&str]| -> Option<String> {
        let v = sonic_rs::get(&body[..], path).ok()?;
        v.as_str().map(str::to_string)
    };
    // (OpenAI error type, message) of the upstream's own error.
    let parsed: Option<(Option<String>, String)> = if !parseable {
        None
    } else {
        match style {
            ErrorStyle::OpenAi => field(&["error", "message"]).map(|m| (None, m)),
            ErrorStyle::Anthropic => {
                crate::translate::anthropic::response::error_parts(&body).map(|(t, m)| (Some(t), m))
            }
            ErrorStyle::Gemini => crate::translate::gemini::error_parts(&body)
                .map(|(s, m)| (Some(crate::translate::gemini::error_type(&s).to_string()), m)),
        }
    };
    let client_fault = (400..500).contains(&status) && !matches!(status, 401 | 403 | 429);
    match (client_fault, parsed) {
        (true, Some((None, _))) => body,
        (true, Some((Some(kind), message))) => error_body(&message, &kind, None, None),
        (_, parsed) => {
            // The upstream's message: its error's, Ollama's
            // `{"error":"text"}`, or the start of a plain-text / HTML body.
            let text = parsed
                .map(|(_, m)| m)
                .or_else(|| if parseable { field(&["error"]) } else { None })
                .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string());
            let message = if text.is_empty() {
                format!("The upstream provider `{provider}` answered with HTTP {status}.")
            } else {
                format!("The upstream provider `{provider}` answered with HTTP {status}: {text}")
            };
            let (kind, code) = match status {
                429 => ("rate_limit_error", "rate_limit_exceeded"),
                _ => ("upstream_error", "upstream_error"),
            };
            error_body(&message, kind, None, Some(code))
        }
    }
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
pub fn event_stream(body: ResponseBody, permit: InflightPermit, provider: String) -> EventStream {
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

/// Run `t` over a stream of whole-event runs: each run becomes the events
/// `t` writes for it (runs that translate to nothing are skipped, so every
/// item carries at least one event); the end of `raw` is told to `t`, whose
/// final events (or complaint) close the stream. A complaint becomes an
/// error item after the events already translated, its text scrubbed of
/// `secrets` (an upstream's error event is quoted in it).
pub fn translated<T: StreamTranslate + 'static>(
    raw: EventStream,
    t: T,
    provider: String,
    secrets: Vec<String>,
) -> EventStream {
    struct St<T> {
        raw: EventStream,
        t: T,
        out: SseOut,
        provider: String,
        secrets: Vec<String>,
        /// An error to yield after the events translated before it.
        failed: Option<GatewayError>,
        done: bool,
    }
    impl<T> St<T> {
        fn fail(&mut self, e: crate::translate::StreamError) -> Option<Bytes> {
            let mut detail = e.to_string();
            for s in &self.secrets {
                detail = detail.replace(s.as_str(), "***");
            }
            self.failed = Some(GatewayError::UpstreamProtocol { provider: self.provider.clone(), detail });
            (!self.out.is_empty()).then(|| self.out.take())
        }
    }
    let st = St { raw, t, out: SseOut::new(), provider, secrets, failed: None, done: false };
    futures_util::stream::unfold(st, move |mut st| async move {
        if let Some(e) = st.failed.take() {
            st.done = true;
            return Some((Err(e), st));
        }
        if st.done {
            return None;
        }
        loop {
            match st.raw.next().await {
                Some(Ok(run)) => {
                    for ev in crate::sse::events(&run) {
                        if let Err(e) = st.t.event(ev.data, &mut st.out) {
                            return match st.fail(e) {
                                Some(before) => Some((Ok(before), st)),
                                None => {
                                    st.done = true;
                                    let e = st.failed.take()?;
                                    Some((Err(e), st))
                                }
                            };
                        }
                    }
                    if !st.out.is_empty() {
                        let b = st.out.take();
                        return Some((Ok(b), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    return match st.t.end(&mut st.out) {
                        Err(e) => match st.fail(e) {
                            Some(before) => Some((Ok(before), st)),
                            None => st.failed.take().map(|e| (Err(e), st)),
                        },
                        Ok(()) if st.out.is_empty() => None,
                        Ok(()) => {
                            let b = st.out.take();
                            Some((Ok(b), st))
                        }
                    };
                }
            }
        }
    })
    .boxed_local()
}

/// Replace every occurrence of a secret with `***`.
pub fn scrub(body: Bytes, secrets: &[String]) -> Bytes {
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
