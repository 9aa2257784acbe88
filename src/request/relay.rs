//! Relay: the winning answer back to the client. Non-stream bodies go out
//! whole; streams go out event run by event run as they arrive, never
//! buffered, with usage captured on the way and the usage-only chunk hidden
//! from a client that did not ask for it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use super::record::{Outcome, Record};
use crate::config::Price;
use crate::endpoint::Endpoint;
use crate::error::{GatewayError, TimeoutPhase};
use crate::providers::{EventStream, Timeouts};
use crate::usage::{self, Usage};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_SLUICE_DEPLOYMENT: HeaderName = HeaderName::from_static("x-sluice-deployment");
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
const X_SLUICE_FALLBACK: HeaderName = HeaderName::from_static("x-sluice-fallback");
const X_SLUICE_CACHE: HeaderName = HeaderName::from_static("x-sluice-cache");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Common response headers, as ready-made names and values (parsing
/// `(&str, &str)` pairs showed up in the profile).
pub(super) fn head(rec: &mut Record, status: actix_web::http::StatusCode) -> actix_web::HttpResponseBuilder {
    let timing = rec.head_sent();
    let mut b = HttpResponse::build(status);
    if let Ok(v) = HeaderValue::from_str(&rec.request_id) {
        b.insert_header((X_REQUEST_ID, v));
    }
    if let Some(v) = rec.deployment_header() {
        b.insert_header((X_SLUICE_DEPLOYMENT, v));
    }
    if let Ok(v) = HeaderValue::try_from(timing) {
        b.insert_header((SERVER_TIMING, v));
    }
    if let Some(g) = &rec.limits {
        for (name, value) in crate::error::rate_limit::headers(&g.headroom()) {
            b.insert_header((name, value));
        }
    }
    if let Some(c) = rec.cache {
        b.insert_header((X_SLUICE_CACHE, HeaderValue::from_static(c)));
    }
    b
}

pub fn complete(mut rec: Record, body: Bytes, usage: Option<Usage>, price: Option<Price>) -> HttpResponse {
    let resp = head(&mut rec, actix_web::http::StatusCode::OK).insert_header((CONTENT_TYPE, JSON)).body(body);
    rec.finish(Outcome::Status(200), usage, price);
    resp
}

/// A model's template answer, marked as such.
pub fn template(mut rec: Record, body: Bytes, stream: bool) -> HttpResponse {
    let mut b = head(&mut rec, actix_web::http::StatusCode::OK);
    b.insert_header((X_SLUICE_FALLBACK, HeaderValue::from_static("template")));
    let resp = if stream {
        b.insert_header((CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
            .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            .body(body)
    } else {
        b.insert_header((CONTENT_TYPE, JSON)).body(body)
    };
    rec.finish(Outcome::Status(200), None, None);
    resp
}

pub fn error(mut rec: Record, e: &GatewayError) -> HttpResponse {
    let status = e.status();
    let mut b = head(&mut rec, status);
    b.insert_header((CONTENT_TYPE, JSON));
    for (name, value) in e.extra_headers() {
        b.insert_header((name, value));
    }
    // OpenAI's error shape, or Anthropic's on /v1/messages.
    let resp = b.body(crate::providers::messages::error_body(rec.endpoint, e));
    rec.finish(Outcome::Status(status.as_u16()), None, None);
    resp
}

/// What the relay needs to know about the stream it forwards.
pub struct StreamSpec {
    pub timeouts: Timeouts,
    /// When the upstream request was sent; the total timeout counts from here.
    pub started: Instant,
    /// The client asked for `stream_options.include_usage`.
    pub client_wants_usage: bool,
    pub price: Option<Price>,
    pub provider: String,
    /// The worker's busy poller: each relayed event and the stream's end
    /// count as activity, so a worker relaying streams keeps polling
    /// instead of paying a wake-up per event.
    pub activity: std::rc::Rc<crate::busy_poll::Activity>,
    /// The serving deployment's id, for the outcome of a failure mid-stream.
    pub deployment: usize,
    pub outcomes: std::rc::Rc<super::outcomes::OutcomeSink>,
    /// Counts the deployment as busy until the stream ends.
    pub inflight: sluice_actors::availability::InflightGuard,
    /// The provider's "reports usage on streams" flag (see `Provider`).
    pub stream_usage: std::sync::Arc<std::sync::atomic::AtomicU8>,
    /// Prompt tokens as estimated, for a stream that reports no usage.
    pub prompt_estimate: u64,
}

pub fn stream(mut rec: Record, first: Bytes, rest: EventStream, spec: StreamSpec) -> HttpResponse {
    head(&mut rec, actix_web::http::StatusCode::OK)
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        // Ask reverse proxies in front (nginx) not to buffer the stream.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(Relay::new(rec, first, rest, spec))
}

/// The client-facing stream. Enforces the idle and total timeouts, turns an
/// upstream failure into an OpenAI-style error event, and records the request
/// when it ends — or, if the client leaves first, when actix drops it, which
/// also drops (and so cancels) the upstream request.
struct Relay {
    /// `None` once handed to the task counting an answer that came without usage.
    rec: Option<Record>,
    /// The answer's text, kept only while the provider is not known to
    /// report usage on streams.
    text: Option<String>,
    first: Option<Bytes>,
    rest: EventStream,
    spec: StreamSpec,
    usage: Option<Usage>,
    /// Reads usage in the client's protocol (OpenAI chunks or Anthropic events).
    scan: usage::StreamUsage,
    idle: Pin<Box<Sleep>>,
    deadline: Instant,
    done: bool,
}

impl Relay {
    fn new(rec: Record, first: Bytes, rest: EventStream, spec: StreamSpec) -> Relay {
        let deadline = spec.started + spec.timeouts.total;
        let keep_text = spec.stream_usage.load(std::sync::atomic::Ordering::Relaxed) != 1;
        let scan = usage::StreamUsage::for_endpoint(rec.endpoint);
        Relay {
            scan,
            rec: Some(rec),
            text: keep_text.then(String::new),
            first: Some(first),
            rest,
            idle: Box::pin(tokio::time::sleep_until((Instant::now() + spec.timeouts.idle).min(deadline))),
            deadline,
            spec,
            usage: None,
            done: false,
        }
    }

    /// Capture usage and hide the usage chunk if the client did not ask.
    fn pass(&mut self, events: Bytes) -> Bytes {
        if let Some(t) = self.text.as_mut() {
            crate::tokens::push_stream_text(&events, t);
        }
        let (u, out) = self.scan.scan(events, !self.spec.client_wants_usage);
        if u.is_some() {
            self.usage = u;
        }
        out
    }

    /// Record the end of the stream. Without usage from the upstream, the
    /// kept text is counted with the tokenizer first (off the event loop).
    fn finish(&mut self, outcome: Outcome) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(mut rec) = self.rec.take() else { return };
        let price = self.spec.price;
        if self.usage.is_some() {
            self.spec.stream_usage.store(1, Relaxed);
            rec.finish(outcome, self.usage, price);
            return;
        }
        if outcome == Outcome::Status(200) {
            self.spec.stream_usage.store(2, Relaxed);
        }
        let prompt = self.spec.prompt_estimate;
        match self.text.take() {
            Some(text) => {
                actix_web::rt::spawn(async move {
                    let completion = crate::tokens::count(text).await;
                    rec.finish(
                        outcome,
                        Some(Usage { prompt_tokens: prompt, completion_tokens: completion, cached_tokens: 0 }),
                        price,
                    );
                });
            }
            None => rec.finish(outcome, Some(Usage { prompt_tokens: prompt, ..Default::default() }), price),
        }
    }

    fn fail(&mut self, e: GatewayError) -> Bytes {
        self.done = true;
        // A stream cut or stalled after its first byte counts against the deployment.
        self.spec.outcomes.push(sluice_actors::outcome::Outcome {
            deployment: self.spec.deployment,
            verdict: super::outcomes::verdict(&e),
            latency: self.spec.started.elapsed(),
            ttft: None,
            error: Some((e.label(), e.to_string())),
        });
        let request_id = self.rec.as_ref().map(|r| r.request_id.as_str()).unwrap_or("");
        tracing::warn!(request_id = %request_id, error = %e, "stream failed after its first byte");
        let endpoint = self.rec.as_ref().map_or(Endpoint::Chat, |r| r.endpoint);
        self.finish(Outcome::StreamError);
        // OpenAI's error event, or Anthropic's on /v1/messages.
        crate::providers::messages::error_event(endpoint, &e)
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            let out = this.pass(first);
            return Poll::Ready(Some(Ok(out)));
        }
        loop {
            match this.rest.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(events))) => {
                    this.spec.activity.touch();
                    let next_idle = (Instant::now() + this.spec.timeouts.idle).min(this.deadline);
                    this.idle.as_mut().reset(next_idle);
                    let out = this.pass(events);
                    if out.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(out)));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Ok(this.fail(e)))),
                Poll::Ready(None) => {
                    this.spec.activity.touch();
                    this.done = true;
                    this.finish(Outcome::Status(200));
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        if this.idle.poll_unpin(cx).is_ready() {
            let phase = if Instant::now() >= this.deadline { TimeoutPhase::Total } else { TimeoutPhase::Idle };
            let ms = match phase {
                TimeoutPhase::Total => this.spec.timeouts.total,
                _ => this.spec.timeouts.idle,
            };
            let e = GatewayError::UpstreamTimeout {
                provider: this.spec.provider.clone(),
                phase,
                ms: Duration::as_millis(&ms) as u64,
            };
            return Poll::Ready(Some(Ok(this.fail(e))));
        }
        Poll::Pending
    }
}
