//! Cache: answer from the `ResponseCache`, or share an identical request's
//! upstream call, or lead one that others may share and store its answer.
//!
//! A model with caching off costs one `Option` check here: no hashing, no
//! message. For a cacheable request: the key (a hash of the body), one read of
//! the actor's published snapshot, and on a miss one `DashMap` entry in the
//! single-flight table. The actor is asked only to store, by the background
//! task that fetched the answer, never by a request waiting for its answer.
//!
//! Shared mode adds Redis as a second tier: a flight's leader looks there
//! (once, within the Redis timeout) before it calls upstream, and every
//! answer stored here is also written there. Single-flight stays per replica.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sluice_actors::response_cache::{Answer, CacheCounters, CacheKey};
use tokio::time::Instant;

use super::attempt::{self, Served};
use super::record::{Outcome, Record};
use super::{Reply, relay};
use crate::cache::flight::{End, Flight, Flights, Head, Next, Ready, Role, Subscriber};
use crate::cache::{BYPASS, HIT, MISS, answer, key};
use crate::config::Price;
use crate::endpoint::Endpoint;
use crate::error::{GatewayError, TimeoutPhase};
use crate::peek::Peek;
use crate::providers::{Call, EventStream, Timeouts};
use crate::server::state::WorkerState;
use crate::usage::{self, Usage};

/// What a subscriber's response needs besides the flight.
pub struct FlightSpec {
    /// The client asked `stream_options.include_usage`.
    pub include_usage: bool,
    /// This request led the call: its usage and spend are counted (a
    /// follower's tokens were spent once, by the leader).
    pub leader: bool,
    pub price: Option<Price>,
}

/// The cache step. `None` when the model has caching off or the request
/// bypasses it (the pipeline then goes on as without a cache); otherwise the
/// request's answer.
#[allow(clippy::too_many_arguments)]
pub(super) async fn step(
    state: &WorkerState,
    req: &HttpRequest,
    body: &Bytes,
    peek: &Peek,
    endpoint: Endpoint,
    model: usize,
    rec: &mut Record,
) -> Option<Result<Reply, GatewayError>> {
    let layer = &state.shared.cache;
    let policy = layer.policy(model)?;
    let counters = layer.handle.counters();
    let control = key::control(req.headers());
    let bypass = |rec: &mut Record| {
        rec.cache = Some(BYPASS);
        policy.bypasses.increment(1);
        CacheCounters::bump(&counters.bypasses);
    };
    // Stored answers are OpenAI-shaped and replayed as OpenAI chunks; the
    // Anthropic-shaped ingress is not cached (yet).
    if control.no_store || endpoint == Endpoint::Messages {
        bypass(rec);
        return None;
    }
    let Ok(key) = key::compute(endpoint, &policy.name, body, req.headers(), &policy.forward, policy.only_deterministic)
    else {
        bypass(rec);
        return None;
    };
    let stored = |now: Instant| -> Option<Answer> {
        if control.no_cache {
            return None;
        }
        let e = layer.handle.get(key, now)?;
        control.max_age.is_none_or(|m| e.age(now) <= Duration::from_secs(m)).then(|| e.answer.clone())
    };
    if let Some(answer) = stored(Instant::now()) {
        rec.cache = Some(HIT);
        policy.hits.increment(1);
        CacheCounters::bump(&counters.hits);
        return Some(Ok(Reply::Cached { answer, stream: peek.stream, include_usage: peek.include_usage }));
    }
    rec.cache = Some(MISS);
    policy.misses.increment(1);
    CacheCounters::bump(&counters.misses);
    let sub = match layer.flights.join(key) {
        Role::Follow(sub) => {
            policy.coalesced.increment(1);
            CacheCounters::bump(&counters.coalesced);
            return Some(serve(sub, false, peek, rec).await);
        }
        Role::Lead(sub) => sub,
    };
    // A second look, now that the flight is listed: an answer stored
    // between the first look and the listing is found here, so no request
    // misses both the store and a flight.
    if let Some(answer) = stored(Instant::now()) {
        sub.flight().finish(End::Done, Some(answer.clone()));
        layer.flights.remove(key, sub.flight());
        rec.cache = Some(HIT);
        return Some(Ok(Reply::Cached { answer, stream: peek.stream, include_usage: peek.include_usage }));
    }
    // The second tier (shared mode): another replica may have stored it.
    // Asked once per flight, by its leader, within the Redis timeout.
    let tier2_key = layer.tier2.as_ref().and_then(|t| t.cache_seed()).and_then(|seed| {
        key::compute_seeded(
            seed,
            endpoint,
            &policy.name,
            body,
            req.headers(),
            &policy.forward,
            policy.only_deterministic,
        )
        .ok()
    });
    if let (Some(tier2), Some(k2)) = (layer.tier2.as_ref().filter(|_| !control.no_cache), tier2_key)
        && let Some(found) = tier2.cache_get(k2).await
        && control.max_age.is_none_or(|m| found.age <= Duration::from_secs(m))
    {
        // Kept in process for the rest of its life: the next hit is local.
        layer.handle.store(key, found.answer.clone(), found.ttl_left).await;
        sub.flight().finish(End::Done, Some(found.answer.clone()));
        layer.flights.remove(key, sub.flight());
        rec.cache = Some(HIT);
        layer.tier2_hit(model);
        return Some(Ok(Reply::Cached {
            answer: found.answer,
            stream: peek.stream,
            include_usage: peek.include_usage,
        }));
    }
    let lead = Lead {
        state: state.clone(),
        req: req.clone(),
        body: body.clone(),
        peek: peek.clone(),
        endpoint,
        model,
        key,
        tier2_key,
        ttl: policy.ttl,
        request_id: rec.request_id.clone(),
        flight: sub.flight().clone(),
        flights: sub.table().clone(),
    };
    let task = actix_web::rt::spawn(lead.run());
    sub.flight().set_task(task.abort_handle());
    Some(serve(sub, true, peek, rec).await)
}

/// Wait for the flight's answer and turn it into this client's reply.
async fn serve(sub: Subscriber, leader: bool, peek: &Peek, rec: &mut Record) -> Result<Reply, GatewayError> {
    let head = match sub.ready().await {
        Ready::Failed(e) => return Err(e),
        Ready::Answer(answer) => {
            return Ok(Reply::Cached { answer, stream: peek.stream, include_usage: peek.include_usage });
        }
        Ready::Head(h) => h,
    };
    if leader {
        rec.add_upstream(head.upstream);
    }
    if let Some((m, d)) = head.served {
        rec.set_served(m, d);
    }
    let price = head.price;
    match (head.body, peek.stream) {
        (Some(body), false) => Ok(Reply::Complete { body, usage: head.usage.filter(|_| leader), price }),
        (None, true) => {
            let spec = FlightSpec { include_usage: peek.include_usage, leader, price };
            Ok(Reply::Flight { sub, spec })
        }
        // The other shape than the upstream gave: wait for the whole answer.
        (_, stream) => match sub.finished().await? {
            Some(answer) if stream => Ok(Reply::Cached { answer, stream, include_usage: peek.include_usage }),
            Some(answer) => {
                let usage = if leader { usage::from_body(&answer.body).ok().flatten() } else { None };
                Ok(Reply::Complete { body: answer.body, usage, price })
            }
            None => Err(GatewayError::Internal {
                detail: "the shared upstream answer could not be converted to the shape this request asked for".into(),
            }),
        },
    }
}

/// A stored (or shared, already complete) answer, in the shape asked for.
/// No upstream tokens were spent for this request: none are recorded.
pub fn serve_answer(mut rec: Record, answer: Answer, stream: bool, include_usage: bool) -> HttpResponse {
    let mut b = relay::head(&mut rec, StatusCode::OK);
    let resp = if stream {
        b.insert_header((CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
            .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            .streaming(futures_util::stream::iter(
                answer::replay(&answer, include_usage).into_iter().filter(|b| !b.is_empty()).map(Ok::<_, Infallible>),
            ))
    } else {
        b.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json"))).body(answer.body)
    };
    rec.finish(Outcome::Status(200), None, None);
    resp
}

/// A live stream shared through a flight.
pub fn serve_flight(mut rec: Record, sub: Subscriber, spec: FlightSpec) -> HttpResponse {
    relay::head(&mut rec, StatusCode::OK)
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(FlightStream { rec, sub, spec, usage: None, done: false })
}

/// One subscriber's view of a shared stream. Dropping it (the client went
/// away) only unsubscribes, unless it was the last one.
struct FlightStream {
    rec: Record,
    sub: Subscriber,
    spec: FlightSpec,
    usage: Option<Usage>,
    done: bool,
}

impl Stream for FlightStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while !this.done {
            match this.sub.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Next::Events(events)) => {
                    let (u, out) = usage::scan_events(events, !this.spec.include_usage);
                    if u.is_some() {
                        this.usage = u;
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Next::End(end)) => {
                    this.done = true;
                    let usage = this.usage.filter(|_| this.spec.leader);
                    let price = this.spec.price.filter(|_| this.spec.leader);
                    let outcome = if end.is_ok() { Outcome::Status(200) } else { Outcome::StreamError };
                    this.rec.finish(outcome, usage, price);
                }
            }
        }
        Poll::Ready(None)
    }
}

/// What the task that makes a flight's upstream call owns.
struct Lead {
    state: WorkerState,
    req: HttpRequest,
    body: Bytes,
    peek: Peek,
    endpoint: Endpoint,
    model: usize,
    key: CacheKey,
    /// The key in the second tier (shared mode; its seed is shared).
    tier2_key: Option<CacheKey>,
    ttl: Duration,
    request_id: String,
    flight: Arc<Flight>,
    flights: Arc<Flights>,
}

/// Marks the flight failed if its task ends without finishing it (the
/// worker shut down), so no subscriber waits forever.
struct Unfinished(Arc<Flight>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.0.finish(End::Failed(GatewayError::ShuttingDown), None);
    }
}

impl Lead {
    async fn run(self) {
        let _unfinished = Unfinished(self.flight.clone());
        let answer = self.fetch().await;
        let shared = &self.state.shared;
        if let Some(a) = answer {
            // Shared mode: the other replicas find it in Redis.
            if let (Some(tier2), Some(k2)) = (&shared.cache.tier2, self.tier2_key)
                && a.size() <= shared.config.cache.max_entry_bytes
            {
                tier2.cache_put(k2, &a, self.ttl);
            }
            // The flight stays listed until the answer is published, so no
            // request finds neither.
            shared.cache.handle.store(self.key, a, self.ttl).await;
        }
        self.flights.remove(self.key, &self.flight);
    }

    /// Make the call and feed the flight; the answer to store, if any.
    async fn fetch(&self) -> Option<Answer> {
        let (state, flight) = (&self.state, &self.flight);
        let shared = &state.shared;
        let plan = match super::plan(shared, self.model, self.endpoint, &self.peek) {
            Ok(p) => p,
            Err(e) => {
                flight.finish(End::Failed(e), None);
                return None;
            }
        };
        let call = Call {
            endpoint: self.endpoint,
            body: &self.body,
            peek: &self.peek,
            upstream_model: "",
            client_headers: self.req.headers(),
            request_id: &self.request_id,
            timeouts: Timeouts::default(),
        };
        let started = Instant::now();
        if self.endpoint == Endpoint::Embeddings
            && let Some(b) = shared.cache.batcher(self.model)
        {
            return match b.submit(state, &call, self.model).await {
                None => self.alone(&call, &plan, started).await,
                Some(Ok(got)) => {
                    let answer = answer::from_body(self.endpoint, &got.body);
                    let upstream = started.elapsed();
                    flight.head(Head {
                        served: got.served,
                        price: got.price,
                        upstream,
                        body: Some(got.body),
                        usage: got.usage,
                    });
                    flight.finish(End::Done, answer.clone());
                    answer
                }
                Some(Err(e)) => {
                    flight.finish(End::Failed(e), None);
                    None
                }
            };
        }
        self.alone(&call, &plan, started).await
    }

    /// The call through the attempt loop (not batched).
    async fn alone(&self, call: &Call<'_>, plan: &super::attempt::Plan<'_>, started: Instant) -> Option<Answer> {
        let (state, flight) = (&self.state, &self.flight);
        let shared = &state.shared;
        let w = match attempt::run(state, call, plan).await {
            Ok(w) => w,
            Err(e) => {
                flight.finish(End::Failed(e), None);
                return None;
            }
        };
        let upstream = started.elapsed();
        if w.candidate.model != self.model {
            shared.metrics.record_fallback(self.model, w.candidate.model);
        }
        let price = shared.models.deployment(w.candidate).and_then(|d| d.price);
        let served = Some((w.candidate.model, w.candidate.deployment));
        let _inflight = w.inflight;
        match w.served {
            Served::Complete { body, usage } => {
                let answer = answer::from_body(self.endpoint, &body);
                flight.head(Head { served, price, upstream, body: Some(body), usage });
                flight.finish(End::Done, answer.clone());
                answer
            }
            Served::Stream { first, rest } => {
                flight.head(Head { served, price, upstream, body: None, usage: None });
                let t = Drive { timeouts: w.timeouts, started: w.started, provider: &w.provider };
                match t.drive(state, flight, first, rest).await {
                    Ok(()) => {
                        let answer = answer::from_stream(self.endpoint, &flight.all_events());
                        flight.finish(End::Done, answer.clone());
                        answer
                    }
                    Err(e) => {
                        state.outcomes.push(sluice_actors::outcome::Outcome {
                            deployment: w.candidate.id,
                            verdict: super::outcomes::verdict(&e),
                            latency: w.started.elapsed(),
                            ttft: None,
                            error: Some((e.label(), e.to_string())),
                        });
                        tracing::warn!(request_id = %self.request_id, error = %e, "shared stream failed after its first byte");
                        flight.push(e.sse_event());
                        flight.finish(End::StreamFailed(e), None);
                        None
                    }
                }
            }
        }
    }
}

/// The upstream stream's waits, as the relay enforces them for an unshared one.
struct Drive<'a> {
    timeouts: Timeouts,
    started: Instant,
    provider: &'a str,
}

impl Drive<'_> {
    async fn drive(
        &self,
        state: &WorkerState,
        flight: &Flight,
        first: Bytes,
        mut rest: EventStream,
    ) -> Result<(), GatewayError> {
        flight.push(first);
        let deadline = self.started + self.timeouts.total;
        loop {
            let idle = (Instant::now() + self.timeouts.idle).min(deadline);
            match tokio::time::timeout_at(idle, rest.next()).await {
                Ok(Some(Ok(events))) => {
                    state.activity.touch();
                    flight.push(events);
                }
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) => return Ok(()),
                Err(_) => {
                    let total = Instant::now() >= deadline;
                    let (phase, d) = if total {
                        (TimeoutPhase::Total, self.timeouts.total)
                    } else {
                        (TimeoutPhase::Idle, self.timeouts.idle)
                    };
                    return Err(GatewayError::UpstreamTimeout {
                        provider: self.provider.to_string(),
                        phase,
                        ms: d.as_millis() as u64,
                    });
                }
            }
        }
    }
}
