//! The HTTP side of the mock: worker threads, connections, routing, faults.
//!
//! Thread-per-core: each worker runs its own current-thread tokio runtime and
//! accepts from a clone of the same listening socket, and a connection stays
//! on the worker that accepted it. No work stealing, no cross-thread wakeups
//! on the request path; the only shared state is the stats (atomics and a
//! briefly locked ring) and the gates.

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::MockOptions;
use super::body::{EventStream, Events, MockBody, StreamPlan};
use super::faults::{Controls, Fault, GARBAGE_BODY, Gates};
use super::generate::{self, Endpoint, GenRequest};
use super::hostile::{self, Answer, ConnIo, Hostile, SharedConn};
use super::id::Id;
use super::native;
use super::route::{Api, route};
use super::stats::{Answering, Stats, add, bump};
use super::vendors::{self, Vendor};

/// Largest request body read; bigger gets 413.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Model ids listed by `GET /v1/models`.
const MODELS: &[&str] = &["mock-gpt", "gpt-4o-mini", "gpt-4o", "text-embedding-3-small"];
/// A fixed `created` for listed models, so the list is byte-for-byte stable.
const MODELS_CREATED: u64 = 1_700_000_000;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
pub(super) const SSE: HeaderValue = HeaderValue::from_static("text/event-stream");

/// What every worker and connection of one mock server shares.
pub(crate) struct ServerState {
    pub opts: MockOptions,
    pub stats: Arc<Stats>,
    pub gates: Gates,
    /// The process-wide fault dice, changeable at run time
    /// (`POST /mock/faults`, `MockServer::set_faults`).
    pub dice: FaultDice,
    /// A hostile answer for every request (`POST /mock/faults?hostile=`).
    pub hostile: std::sync::RwLock<Option<Hostile>>,
    /// The clouds' identities and credentials (`cloud_api`).
    pub clouds: super::cloud_api::MockClouds,
    /// The Files and Batch APIs' store (`files`).
    pub files: super::files::FileStore,
}

/// `fail_rate` and `faults`, readable without a lock when the rate is 0.
pub(crate) struct FaultDice {
    rate_bits: std::sync::atomic::AtomicU64,
    faults: std::sync::RwLock<Vec<Fault>>,
}

impl FaultDice {
    pub fn new(rate: f64, faults: Vec<Fault>) -> FaultDice {
        FaultDice {
            rate_bits: std::sync::atomic::AtomicU64::new(rate.to_bits()),
            faults: std::sync::RwLock::new(faults),
        }
    }

    pub fn set(&self, rate: f64, faults: Vec<Fault>) {
        if let Ok(mut f) = self.faults.write() {
            *f = faults;
        }
        self.rate_bits.store(rate.clamp(0.0, 1.0).to_bits(), std::sync::atomic::Ordering::Release);
    }

    /// With probability `fail_rate`, a fault drawn uniformly from `faults`
    /// (`500` when the list is empty).
    pub(super) fn roll(&self) -> Option<Fault> {
        let rate = f64::from_bits(self.rate_bits.load(std::sync::atomic::Ordering::Acquire));
        if rate <= 0.0 || fastrand::f64() >= rate {
            return None;
        }
        let faults = self.faults.read().ok()?;
        Some(match faults.len() {
            0 => Fault::ServerError,
            n => faults[fastrand::usize(..n)],
        })
    }
}

/// The error a service returns for `reset`: hyper then closes the HTTP/1
/// connection without writing any response byte.
#[derive(Debug)]
pub(crate) struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock fault: reset")
    }
}

impl std::error::Error for Reset {}

/// One worker: accept until `stop` fires, then return; dropping the runtime
/// afterwards cancels the worker's open connections.
pub(crate) async fn accept_loop(listener: StdListener, state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "mock: cannot register the listener");
            return;
        }
    };
    loop {
        tokio::select! {
            biased;
            // Err means the MockServer is gone: stop as well.
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, state.clone()));
                }
                Err(e) => {
                    // Typically EMFILE or a connection reset before accept:
                    // back off briefly instead of spinning.
                    tracing::warn!(error = %e, "mock: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<ServerState>) {
    let _open = state.stats.connection();
    // Small request/response pairs must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let state = &state;
    // Shared so that a hostile answer can write past hyper.
    let conn = SharedConn::new(stream);
    let io = ConnIo(conn.clone());
    let conn = &conn;
    let svc = service_fn(move |req| handle(state, conn, req));
    let conn = http1::Builder::new()
        // No per-request timer: the mock serves trusted local clients, and
        // a header timeout would cost a timer registration per request.
        .header_read_timeout(None)
        // Answers to pipelined requests go out in one write.
        .pipeline_flush(true)
        .serve_connection(TokioIo::new(io), svc);
    // Errors here are peers going away or injected faults; nothing to report.
    let _ = conn.await;
}

pub(super) fn respond(status: StatusCode, content_type: HeaderValue, body: MockBody) -> Response<MockBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, content_type);
    r
}

pub(super) fn json(status: StatusCode, body: Bytes) -> Response<MockBody> {
    respond(status, JSON, MockBody::full(body))
}

pub(super) fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response<MockBody> {
    json(status, generate::error_body(message, kind, None, code))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn handle(
    state: &Arc<ServerState>,
    conn: &Arc<SharedConn>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Reset> {
    if let Some(rest) = req.uri().path().strip_prefix("/mock/") {
        return Ok(super::inspect::inspect(state, req.method(), rest, req.uri().query()));
    }
    // Dropped with this future (the peer closed the connection) before the
    // answer was made: counted as `client_gone`.
    let answering = Answering::new(&state.stats);
    let r = answer(state, conn, req).await;
    answering.done();
    r
}

async fn answer(
    state: &Arc<ServerState>,
    conn: &Arc<SharedConn>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Reset> {
    let (parts, body) = req.into_parts();
    // Uploads are scanned as they arrive, not read whole first.
    if let Some(r) = super::uploads::route(&parts.method, parts.uri.path()) {
        return Ok(super::uploads::answer(state, r, parts, body).await);
    }
    let controls = Controls::from_headers(&parts.headers);
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large for the mock (64 MiB max).",
                "invalid_request_error",
                Some("request_too_large"),
            ));
        }
        // The client went away mid-body: nothing to answer.
        Err(_) => {
            bump(&state.stats.client_gone);
            return Err(Reset);
        }
    };
    let stats = &state.stats;
    bump(&stats.requests_total);
    if let Some(cloud) = super::cloud_api::route(&parts.method, parts.uri.path()) {
        let req = super::cloud_api::CloudRequest {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        };
        // Azure OpenAI answers as an OpenAI server does, so it can answer
        // with the same hostile bytes (`x-mock-hostile`; credentials are not
        // checked first: the mode is about the answer). Bedrock too: a whole
        // JSON answer's modes apply to its non-stream calls as they are.
        if let (Some(mode), super::cloud_api::CloudRoute::Azure(_) | super::cloud_api::CloudRoute::Bedrock(_)) =
            (controls.hostile, &cloud)
        {
            stats.hostile(mode);
            let api = if parts.uri.path().ends_with("/chat/completions") { Api::Chat } else { Api::Embeddings };
            let drip = Duration::from_millis(controls.drip_ms.unwrap_or(1000));
            return Ok(hostile_answer(conn, mode, api, &body, &state.opts, drip));
        }
        stats.record(parts.method, parts.uri, parts.headers, &body);
        if let Some((header, expected)) = controls.bad {
            let msg = format!("Invalid {header} header: expected {expected}.");
            return Ok(error(StatusCode::BAD_REQUEST, &msg, "invalid_request_error", None));
        }
        return super::cloud_api::handle(state, cloud, req, controls).await;
    }
    let api = route(&parts.method, parts.uri.path());
    match api {
        Ok(Api::Chat) => bump(&stats.chat_total),
        Ok(Api::Completions) => bump(&stats.completions_total),
        Ok(Api::Embeddings) => bump(&stats.embeddings_total),
        Ok(Api::Models) => bump(&stats.models_total),
        Ok(Api::Vendor(Vendor::Anthropic)) => bump(&stats.messages_total),
        Ok(Api::Vendor(Vendor::Gemini { .. })) => bump(&stats.gemini_total),
        Ok(Api::Native(n)) => n.count(stats),
        Err(_) => {}
    }
    // Gemini names the model in the path, which `record` takes.
    let vendor_path = matches!(api, Ok(Api::Vendor(_))).then(|| parts.uri.path().to_owned());
    stats.record(parts.method, parts.uri, parts.headers, &body);
    if let Some((header, expected)) = controls.bad {
        let msg = format!("Invalid {header} header: expected {expected}.");
        return Ok(error(StatusCode::BAD_REQUEST, &msg, "invalid_request_error", None));
    }
    let api = match api {
        Ok(api) => api,
        Err(not_found) => return Ok(*not_found),
    };

    let opts = &state.opts;
    let delay = controls.delay_ms.unwrap_or(opts.delay_ms);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let hostile = controls.hostile.or_else(|| state.hostile.read().ok().and_then(|h| *h));
    if let Some(mode) = hostile {
        stats.hostile(mode);
        let drip = Duration::from_millis(controls.drip_ms.unwrap_or(1000));
        return Ok(hostile_answer(conn, mode, api, &body, opts, drip));
    }
    let fault = controls.fault.or_else(|| state.dice.roll());
    let vendor = match api {
        Api::Vendor(v) => Some(v),
        Api::Native(n) => n.vendor(),
        Api::Chat | Api::Completions | Api::Embeddings | Api::Models => None,
    };
    match fault {
        Some(Fault::RateLimit) => {
            stats.fault(Fault::RateLimit);
            let retry_after = controls.retry_after.clone().unwrap_or_else(|| HeaderValue::from(opts.retry_after_s));
            let message = "Rate limit reached for requests (mock). Please try again later.";
            let body = match vendor {
                Some(v) => vendors::error_body(v, 429, message),
                None => generate::error_body(message, "requests", None, Some("rate_limit_exceeded")),
            };
            let mut r = json(StatusCode::TOO_MANY_REQUESTS, body);
            r.headers_mut().insert(RETRY_AFTER, retry_after);
            return Ok(r);
        }
        Some(Fault::ServerError) => {
            stats.fault(Fault::ServerError);
            let message = "The server had an error while processing your request (mock fault).";
            return Ok(match vendor {
                Some(v) => json(StatusCode::INTERNAL_SERVER_ERROR, vendors::error_body(v, 500, message)),
                None => error(StatusCode::INTERNAL_SERVER_ERROR, message, "server_error", None),
            });
        }
        Some(Fault::Hang) => {
            stats.fault(Fault::Hang);
            // Never answer. hyper notices the peer closing (EOF while a
            // request is in flight) and drops this future with the connection.
            return std::future::pending().await;
        }
        Some(Fault::Reset) => {
            stats.fault(Fault::Reset);
            return Err(Reset);
        }
        Some(Fault::Cut | Fault::Garbage) | None => {}
    }

    // `tokens`: completion tokens of an answer made whole up front (a
    // generated stream counts its own, event by event).
    let (status, answer, tokens) = match api {
        Api::Chat if controls.tool_call.is_some() && vendors::has_tools(&body) => {
            match generate::parse_request(Endpoint::Chat, &body, opts.tokens, controls.tokens) {
                Ok(g) => (
                    StatusCode::OK,
                    listed(vendors::openai_tool_call(&g, controls.tool_call.as_deref().unwrap_or(""))),
                    g.completion_tokens,
                ),
                Err(e) => (StatusCode::BAD_REQUEST, MockReply::Full(e.body()), 0),
            }
        }
        Api::Vendor(v) => {
            match vendors::parse(v, vendor_path.as_deref().unwrap_or(""), &body, opts.tokens, controls.tokens) {
                Ok(r) => {
                    let tool = controls.tool_call.as_deref().filter(|_| r.has_tools);
                    let cached = controls.cached_tokens.unwrap_or(0);
                    let out = match v {
                        Vendor::Anthropic => vendors::anthropic(&r.request, tool, cached, r.thinking),
                        Vendor::Gemini { .. } => vendors::gemini(&r.request, tool, cached),
                    };
                    (StatusCode::OK, listed(out), r.request.completion_tokens)
                }
                Err(e) => (StatusCode::BAD_REQUEST, MockReply::Full(vendors::error_body(v, 400, &e.message)), 0),
            }
        }
        Api::Chat | Api::Completions => {
            let endpoint = if api == Api::Chat { Endpoint::Chat } else { Endpoint::Completions };
            match generate::parse_request(endpoint, &body, opts.tokens, controls.tokens) {
                Ok(mut g) => {
                    g.usage = !controls.no_usage;
                    (StatusCode::OK, generated(&g), if g.stream { 0 } else { g.completion_tokens })
                }
                Err(e) => (StatusCode::BAD_REQUEST, MockReply::Full(e.body()), 0),
            }
        }
        Api::Embeddings => match generate::embeddings_body(&body) {
            Ok(b) => (StatusCode::OK, MockReply::Full(b), 0),
            Err(e) => (StatusCode::BAD_REQUEST, MockReply::Full(e.body()), 0),
        },
        Api::Models => (StatusCode::OK, MockReply::Full(generate::models_body(MODELS, MODELS_CREATED)), 0),
        // Not in `completion_tokens`: that counter covers chat, completions
        // and Messages, what the accounting tests drive.
        Api::Native(n) => match native::answer(n, &body, opts, &controls) {
            Ok((status, answer)) => (status, answer, 0),
            Err(typed) => return Ok(*typed),
        },
    };
    // A whole answer cut short or replaced by garbage delivers nothing usable.
    if !matches!(fault, Some(Fault::Cut | Fault::Garbage)) || matches!(answer, MockReply::Stream(_)) {
        add(&stats.completion_tokens, u64::from(tokens));
    }

    Ok(reply(state, status, answer, fault, &controls, SSE))
}

/// The response for an answer, spoiled by a `cut` or `garbage` fault if
/// one was drawn; streams are paced by the request's controls and sent
/// with `stream_type` (SSE, or AWS's event stream).
pub(super) fn reply(
    state: &ServerState,
    status: StatusCode,
    answer: MockReply,
    fault: Option<Fault>,
    controls: &Controls,
    stream_type: HeaderValue,
) -> Response<MockBody> {
    let stats = &state.stats;
    let opts = &state.opts;
    match answer {
        MockReply::Full(b) => match fault {
            Some(Fault::Cut) => {
                stats.fault(Fault::Cut);
                let full_len = b.len() as u64;
                let part = b.slice(..b.len() / 2);
                respond(status, JSON, MockBody::Cut { part: Some(part), full_len, flushed: false })
            }
            Some(Fault::Garbage) => {
                stats.fault(Fault::Garbage);
                json(StatusCode::OK, Bytes::from_static(GARBAGE_BODY))
            }
            _ => json(status, b),
        },
        MockReply::Stream(events) => {
            if let Some(f @ (Fault::Cut | Fault::Garbage)) = fault {
                stats.fault(f);
            }
            let plan = StreamPlan {
                chunk_delay: Duration::from_millis(controls.chunk_delay_ms.unwrap_or(opts.chunk_delay_ms)),
                gate: controls.gate.as_ref().map(|g| state.gates.get(g.to_str().unwrap_or(""))),
                cut: (fault == Some(Fault::Cut)).then_some(controls.cut_after),
                garbage: fault == Some(Fault::Garbage),
            };
            let body = EventStream::start(events, stats.clone(), plan);
            let mut r = respond(StatusCode::OK, stream_type, MockBody::Stream(Box::new(body)));
            r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
    }
}

/// A hostile answer made of what `api` would have answered (the chat or
/// completion the request asks for, else a small JSON body).
fn hostile_answer(
    conn: &Arc<SharedConn>,
    mode: Hostile,
    api: Api,
    body: &Bytes,
    opts: &MockOptions,
    drip: Duration,
) -> Response<MockBody> {
    let endpoint = match api {
        Api::Completions => Some(Endpoint::Completions),
        Api::Chat => Some(Endpoint::Chat),
        Api::Embeddings | Api::Models | Api::Vendor(_) | Api::Native(_) => None,
    };
    let parsed = endpoint.and_then(|e| generate::parse_request(e, body, opts.tokens, None).ok());
    let script = match (parsed, api) {
        (Some(g), _) => {
            let id = Id::new(g.endpoint);
            if g.stream {
                let events: Vec<Bytes> = generate::stream_events(&g, id.as_str(), unix_now()).collect();
                hostile::script(conn, mode, Answer::Events(&events), drip)
            } else {
                let b = generate::completion_body(&g, id.as_str(), unix_now());
                hostile::script(conn, mode, Answer::Json(&b), drip)
            }
        }
        (None, Api::Models) => {
            let b = generate::models_body(MODELS, MODELS_CREATED);
            hostile::script(conn, mode, Answer::Json(&b), drip)
        }
        (None, _) => hostile::script(conn, mode, Answer::Json(b"{\"object\":\"mock\"}"), drip),
    };
    respond(StatusCode::OK, JSON, MockBody::Raw(Box::new(script)))
}

/// What the mock answers a request with, before a fault may spoil it.
pub(super) enum MockReply {
    Full(Bytes),
    Stream(Events),
}

/// A whole body (`Ok`) or a prebuilt list of stream events (`Err`).
pub(super) fn listed(r: Result<Bytes, Vec<Bytes>>) -> MockReply {
    match r {
        Ok(b) => MockReply::Full(b),
        Err(events) => MockReply::Stream(Events::List(events.into_iter())),
    }
}

pub(super) fn generated(g: &GenRequest) -> MockReply {
    let id = Id::new(g.endpoint);
    let created = unix_now();
    if g.stream {
        MockReply::Stream(Events::Gen(generate::stream_events(g, id.as_str(), created)))
    } else {
        MockReply::Full(generate::completion_body(g, id.as_str(), created))
    }
}
