//! Relay: the answer back to the client. Non-stream bodies go out whole;
//! streams go out event run by event run as they arrive, never buffered
//! (the upstream's through its [`UpstreamStream`] driver, a shared one
//! from its flight), with usage captured on the way and the usage-only
//! chunk hidden from a client that did not ask for it. Stored answers are
//! replayed in the shape asked for.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sluice_actors::response_cache::StoredAnswer;

use super::conversation::Save;
use super::ingress::X_REQUEST_ID;
use super::record::Record;
use crate::cache::answer;
use crate::cache::flight::{Next, Subscriber};
use crate::config::Price;
use crate::endpoint::{ClientProtocol, RequestId};
use crate::error::GatewayError;
use crate::metrics::RequestOutcome;
use crate::upstream::UpstreamStream;
use crate::usage::{self, Usage};

const X_SLUICE_DEPLOYMENT: HeaderName = HeaderName::from_static("x-sluice-deployment");
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
const X_SLUICE_FALLBACK: HeaderName = HeaderName::from_static("x-sluice-fallback");
const X_SLUICE_CACHE: HeaderName = HeaderName::from_static("x-sluice-cache");
const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// What the gateway adds to every answer's head: the request id, the
/// deployment that served, `server-timing`, the rate limits' headroom and
/// the cache's verdict. Kept beside the answer rather than in actix's
/// header map: the fast ingress writes these lines straight into the head
/// it sends (the map's inserts, its head and the map read back out were
/// ~2.5k instructions per request; docs/performance.md, eleventh
/// session), and [`Reply::into_response`] puts them in the map for the
/// other routes.
pub struct Stamp {
    request_id: RequestId,
    deployment: Option<HeaderValue>,
    timing: String,
    limits: Vec<(&'static str, String)>,
    cache: Option<&'static str>,
}

impl Stamp {
    /// The head lines, `name: value\r\n` each. Every value is visible
    /// ASCII by construction (the request id is checked where it is made,
    /// the deployment's is a `HeaderValue`, the rest are Sluice's).
    pub fn write(&self, w: &mut Vec<u8>) {
        line(w, X_REQUEST_ID.as_str(), self.request_id.as_bytes());
        if let Some(d) = &self.deployment {
            line(w, X_SLUICE_DEPLOYMENT.as_str(), d.as_bytes());
        }
        line(w, SERVER_TIMING.as_str(), self.timing.as_bytes());
        for (name, value) in &self.limits {
            line(w, name, value.as_bytes());
        }
        if let Some(c) = self.cache {
            line(w, X_SLUICE_CACHE.as_str(), c.as_bytes());
        }
    }

    /// The same headers, each given to `insert` (actix's map or builder:
    /// a name already there is replaced).
    fn apply(self, mut insert: impl FnMut(HeaderName, HeaderValue)) {
        if let Ok(v) = HeaderValue::from_maybe_shared(self.request_id.bytes()) {
            insert(X_REQUEST_ID, v);
        }
        if let Some(v) = self.deployment {
            insert(X_SLUICE_DEPLOYMENT, v);
        }
        if let Ok(v) = HeaderValue::try_from(self.timing) {
            insert(SERVER_TIMING, v);
        }
        for (name, value) in self.limits {
            if let Ok(v) = HeaderValue::try_from(value) {
                insert(HeaderName::from_static(name), v);
            }
        }
        if let Some(c) = self.cache {
            insert(X_SLUICE_CACHE, HeaderValue::from_static(c));
        }
    }
}

/// One head line, `name: value\r\n` (the fast ingress writes its heads
/// with it too). Inlined: with a constant name its copies are stores, where
/// a call made them `memcpy`s (callgrind, against the build before this
/// helper: 41,524 vs 41,165 instructions per request as a call, 41,391 vs
/// 41,347 inlined).
#[inline(always)]
pub fn line(w: &mut Vec<u8>, name: &str, value: &[u8]) {
    w.extend_from_slice(name.as_bytes());
    w.extend_from_slice(b": ");
    w.extend_from_slice(value);
    w.extend_from_slice(b"\r\n");
}

/// An answer on its way out, with its [`Stamp`] not yet in a header map.
pub struct Reply {
    pub answer: Answer,
    pub stamp: Option<Stamp>,
}

pub enum Answer {
    /// 200 with a whole body of this media type (the common non-stream
    /// answer): no actix response head is made for it on the fast ingress.
    Whole { media_type: HeaderValue, body: Bytes },
    /// Anything else, as actix's response (its headers never the stamp's).
    Response(HttpResponse),
}

impl Reply {
    fn stamped(rec: &mut Record, answer: Answer) -> Reply {
        Reply { answer, stamp: Some(stamp(rec)) }
    }

    /// A response whose head is complete already.
    pub fn response(resp: HttpResponse) -> Reply {
        Reply { answer: Answer::Response(resp), stamp: None }
    }

    /// As actix's response, the stamp's headers in its map.
    pub fn into_response(self) -> HttpResponse {
        let mut resp = match self.answer {
            Answer::Whole { media_type, body } => {
                let mut r = HttpResponse::with_body(StatusCode::OK, body).map_into_boxed_body();
                r.headers_mut().insert(CONTENT_TYPE, media_type);
                r
            }
            Answer::Response(r) => r,
        };
        if let Some(s) = self.stamp {
            let h = resp.headers_mut();
            s.apply(|name, value| {
                h.insert(name, value);
            });
        }
        resp
    }
}

/// The gateway's head lines for this answer; marks the head as sent.
fn stamp(rec: &mut Record) -> Stamp {
    let timing = rec.head_sent();
    Stamp {
        request_id: rec.request_id.clone(),
        deployment: rec.deployment_header(),
        timing,
        limits: rec
            .charge
            .limits
            .as_ref()
            .map(|g| crate::error::rate_limit::headers(&g.headroom()))
            .unwrap_or_default(),
        cache: rec.cache,
    }
}

/// A response builder with the stamp's headers in it already (errors, and
/// the resource routes, which answer through actix only).
pub(super) fn head(rec: &mut Record, status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    stamp(rec).apply(|name, value| {
        b.insert_header((name, value));
    });
    b
}

pub fn complete(mut rec: Record, body: Bytes, usage: Option<Usage>, price: Option<Price>) -> Reply {
    if let Some(o) = &rec.obs {
        o.note_answer(&body);
    }
    let media_type = rec.media_type.map_or(JSON, HeaderValue::from_static);
    let reply = Reply::stamped(&mut rec, Answer::Whole { media_type, body });
    rec.finish(RequestOutcome::Status(200), usage, price);
    reply
}

/// The media type of `/v1/audio/speech`'s answer: the one OpenAI sends
/// for the `response_format` asked (mp3 by default). Taken from the
/// request, so that every provider's answer (the built-in mock's too) is
/// labelled alike. The answer is relayed whole: `stream_format: "sse"`
/// (speech as events) is refused rather than labelled as audio.
pub fn speech_media_type(body: &[u8]) -> Result<&'static str, GatewayError> {
    use sonic_rs::JsonValueTrait;
    let stream_format = sonic_rs::get(body, ["stream_format"]).ok();
    if stream_format.as_ref().and_then(|f| f.as_str()) == Some("sse") {
        return Err(GatewayError::invalid(
            "Sluice relays speech as audio: 'stream_format' 'sse' is not supported.",
            Some("stream_format"),
        ));
    }
    let format = sonic_rs::get(body, ["response_format"]).ok();
    Ok(match format.as_ref().and_then(|f| f.as_str()) {
        None | Some("mp3") => "audio/mpeg",
        Some("opus") => "audio/opus",
        Some("aac") => "audio/aac",
        Some("flac") => "audio/flac",
        Some("wav") => "audio/wav",
        Some("pcm") => "audio/pcm",
        Some(_) => "application/octet-stream",
    })
}

/// A model's template answer, marked as such.
pub fn template(mut rec: Record, body: Bytes, stream: bool) -> Reply {
    let stamp = stamp(&mut rec);
    let mut b = HttpResponse::build(StatusCode::OK);
    b.insert_header((X_SLUICE_FALLBACK, HeaderValue::from_static("template")));
    let resp = if stream {
        b.insert_header((CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
            .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            .body(body)
    } else {
        b.insert_header((CONTENT_TYPE, JSON)).body(body)
    };
    rec.finish(RequestOutcome::Status(200), None, None);
    Reply { answer: Answer::Response(resp), stamp: Some(stamp) }
}

/// The error's answer. Its head is made whole here: an error's own headers
/// (a 429's limits, `retry-after`) replace the stamp's of the same name.
pub fn error(mut rec: Record, e: &GatewayError) -> HttpResponse {
    rec.error = Some(e.code());
    let status = e.status();
    let mut b = head(&mut rec, status);
    b.insert_header((CONTENT_TYPE, JSON));
    for (name, value) in e.extra_headers() {
        b.insert_header((name, value));
    }
    // OpenAI's error shape, or Anthropic's on /v1/messages.
    let resp = b.body(crate::providers::messages::error_body(rec.endpoint, e));
    rec.finish(RequestOutcome::Status(status.as_u16()), None, None);
    resp
}

/// What the relay of an upstream stream needs besides the stream.
pub struct StreamSpec {
    /// The client asked for `stream_options.include_usage`.
    pub client_wants_usage: bool,
    pub price: Option<Price>,
    /// A Responses stream to keep for the next turn: saved as its final
    /// event passes, which is held back until then.
    pub save: Option<Box<Save>>,
}

pub fn stream(mut rec: Record, mut upstream: Box<UpstreamStream>, spec: StreamSpec) -> Reply {
    if !spec.client_wants_usage {
        upstream.hide_usage_chunk();
    }
    // The stream settles the request's charge — also if it is dropped
    // because the client left mid-stream (see `UpstreamStream::bill`).
    upstream.bill(rec.charge.take(), rec.served_model(), spec.price);
    let stamp = stamp(&mut rec);
    let resp = event_stream().streaming(Relay { rec, upstream, spec, saving: None, done: false });
    Reply { answer: Answer::Response(resp), stamp: Some(stamp) }
}

/// The head of a live event stream.
fn event_stream() -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::build(StatusCode::OK);
    b.insert_header((CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        // Ask reverse proxies in front (nginx) not to buffer the stream.
        .insert_header((X_ACCEL_BUFFERING, HeaderValue::from_static("no")));
    b
}

/// The final run of a Responses stream, held while its conversation is stored.
type Saving = (Pin<Box<dyn Future<Output = ()>>>, Bytes);

/// The client-facing side of an upstream stream: turns an upstream failure
/// into an error event in the client's protocol, and records the request
/// when it ends — or, if the client leaves first, when actix drops it,
/// which drops the [`UpstreamStream`] and so cancels the upstream request
/// (and charges what it produced so far).
struct Relay {
    rec: Record,
    upstream: Box<UpstreamStream>,
    spec: StreamSpec,
    saving: Option<Saving>,
    done: bool,
}

impl Relay {
    /// The run that carried a Responses stream's final Response: if it is
    /// to be kept, start storing it and hold the run until that is done.
    fn hold_for_save(&mut self, events: Bytes) -> Result<Bytes, Saving> {
        let response = match self.upstream.responses().and_then(|w| w.response.clone()) {
            Some(r) if self.spec.save.is_some() => r,
            _ => return Ok(events),
        };
        let Some(save) = self.spec.save.take() else { return Ok(events) };
        let request_id = self.rec.request_id.clone();
        Err((Box::pin(async move { save.run(response, &request_id).await }), events))
    }

    /// The stream failed after its first byte (the driver told the
    /// deployment's breaker): end it with the client protocol's error
    /// event — unless the stream already ended in its protocol (a
    /// translated Responses stream closes itself with `response.failed`).
    fn fail(&mut self, e: GatewayError) -> Bytes {
        self.done = true;
        tracing::warn!(request_id = %self.rec.request_id, error = %e, "stream failed after its first byte");
        self.rec.error = Some(e.code());
        self.rec.finish(RequestOutcome::StreamError, None, None);
        let endpoint = self.rec.endpoint;
        match (endpoint.protocol(), self.upstream.responses()) {
            (ClientProtocol::Responses, Some(w)) if w.ended => Bytes::new(),
            (ClientProtocol::Responses, Some(w)) => {
                let mut out = crate::translate::SseOut::new();
                crate::translate::responses::stream::failed_event(
                    &mut out,
                    w.events,
                    w.id.as_deref().unwrap_or(""),
                    w.created_at,
                    &w.model,
                    crate::translate::responses::error_code(e.code()),
                    &e.to_string(),
                );
                out.take()
            }
            // OpenAI's error event, or Anthropic's on /v1/messages.
            _ => crate::providers::messages::error_event(endpoint, &e),
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some((saving, _)) = this.saving.as_mut() {
            if saving.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if let Some((_, held)) = this.saving.take() {
                return Poll::Ready(Some(Ok(held)));
            }
        }
        if this.done {
            return Poll::Ready(None);
        }
        match this.upstream.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(events))) => {
                if let Some(o) = &this.rec.obs {
                    o.note_events(&events);
                }
                match this.hold_for_save(events) {
                    Ok(events) => Poll::Ready(Some(Ok(events))),
                    Err(saving) => {
                        this.saving = Some(saving);
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => match this.fail(e) {
                b if b.is_empty() => Poll::Ready(None),
                b => Poll::Ready(Some(Ok(b))),
            },
            Poll::Ready(None) => {
                this.done = true;
                this.rec.finish(RequestOutcome::Status(200), None, None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A stored (or shared, already complete) answer, in the shape asked for.
/// No upstream tokens were spent for this request (or, for a shared call's
/// leader, its call settles them): none are recorded here.
pub fn stored(mut rec: Record, answer: StoredAnswer, stream: bool, include_usage: bool) -> Reply {
    let stamp = stamp(&mut rec);
    let reply = if stream {
        let mut b = HttpResponse::build(StatusCode::OK);
        let resp = b
            .insert_header((CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
            .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            .streaming(futures_util::stream::iter(
                answer::replay(&answer, include_usage).into_iter().filter(|b| !b.is_empty()).map(Ok::<_, Infallible>),
            ));
        Answer::Response(resp)
    } else {
        Answer::Whole { media_type: JSON, body: answer.body }
    };
    rec.finish(RequestOutcome::Status(200), None, None);
    Reply { answer: reply, stamp: Some(stamp) }
}

/// What the relay of a shared stream needs besides its flight.
pub struct FlightSpec {
    /// The client asked `stream_options.include_usage`.
    pub include_usage: bool,
}

/// A live stream shared through a flight. Its tokens are charged by the
/// flight's call (to the request that led it), never here.
pub fn flight(mut rec: Record, sub: Subscriber, spec: FlightSpec) -> Reply {
    let stamp = stamp(&mut rec);
    let resp = event_stream().streaming(FlightRelay { rec, sub, spec, done: false });
    Reply { answer: Answer::Response(resp), stamp: Some(stamp) }
}

/// One subscriber's view of a shared stream. Dropping it (the client went
/// away) only unsubscribes, unless it was the last one.
struct FlightRelay {
    rec: Record,
    sub: Subscriber,
    spec: FlightSpec,
    done: bool,
}

impl Stream for FlightRelay {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while !this.done {
            match this.sub.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Next::Events(events)) => {
                    let (_, out) = usage::scan_events(events, !this.spec.include_usage);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Next::End(end)) => {
                    this.done = true;
                    let outcome = if end.is_ok() { RequestOutcome::Status(200) } else { RequestOutcome::StreamError };
                    this.rec.finish(outcome, None, None);
                }
            }
        }
        Poll::Ready(None)
    }
}
