//! The request pipeline of the proxied routes. `steps` is the path, one
//! line per step, in the order a request meets them; docs/request-path.md
//! draws the same list, with the same names:
//!
//! 1. `ingress::request_id`    — the client's `x-request-id`, or a new one
//! 2. `auth` (`KeyTable::authenticate`) — client key → policy (401)
//! 3. `budget::check`          — daily / monthly spend left (429 `insufficient_quota`)
//! 4. `ingress::read_body`     — the body, refused past `max_body_bytes` (413);
//!    an upload: `upload::receive`, read only up to its `model` field
//!    (spooled to disk when its file comes first; 413 past `max_upload_bytes`)
//! 5. `peek` (`Peek::read`)    — one lazy read of `model`, `stream`, … (400)
//! 6. `route` (`ModelTable::resolve`) — model name → table entry (404); may the key use it (403)
//! 7. `limits::admit_request`  — rpm / tpm / concurrency of key, key and model, model:
//!    admitted, queued (`[queue]`), or refused (429, or 503 when the queue is full)
//! 8. `conversation::turn`     — Responses API: the stored conversation that
//!    `previous_response_id` continues, the new response's id
//! 9. `count::estimate`        — a token counter no deployment of the model
//!    serves: the tokenizer's count, no upstream call
//! 10. `cache::step`           — a stored answer (HIT), or a share of an identical
//!     request's upstream call (single-flight), or lead one and store it
//! 11. `fetch` → `upstream::fetch` — the model's deployments, then its fallbacks,
//!     tried until one answers before the first byte (embeddings batched when
//!     the model batches them)
//! 12. `template::instead_of_failure` — every deployment failed: the model's template answer
//! 13. `conversation::Save`    — Responses API: the answer and the conversation
//!     so far, kept for the next turn (a stream's, as its final event passes)
//! 14. `relay`                 — the body, or the SSE stream event by event, back
//! 15. `record`                — metrics, `server-timing`, tokens, spend
//!
//! Auth and budgets run before the body is read, so an unauthenticated or
//! spent client cannot make the gateway buffer `max_body_bytes`.

pub mod budget;
pub mod cache;
pub mod conversation;
mod count;
pub mod ingress;
pub mod record;
pub mod relay;
pub mod resources;
pub mod template;
pub mod upload;

use actix_web::dev::Payload;
use bytes::Bytes;
use sluice_actors::response_cache::StoredAnswer;
use tokio::time::Instant;

use crate::busy_poll::Next;
use crate::cache::flight::Subscriber;
use crate::config::Price;
use crate::endpoint::Endpoint;
pub use crate::endpoint::Head;
use crate::error::GatewayError;
use crate::gateway::WorkerState;
use crate::limits;
use crate::peek::Peek;
use crate::providers::responses::Turn;
use crate::providers::{Call, Timeouts};
use crate::upstream::{Fetched, FetchedBody, UpstreamStream, capability};
use crate::usage::Usage;
use record::Record;
pub use relay::Reply;
use relay::{FlightSpec, StreamSpec};

/// Run one proxied request through every step.
pub async fn run(state: &WorkerState, req: Head<'_>, payload: Payload, endpoint: Endpoint) -> Reply {
    let activity = &state.upstream.activity;
    // Counted while it waits for its answer: a worker holding many such
    // requests does not spin (src/busy_poll.rs).
    let waiting = activity.waiting();
    activity.touch(Next::Upstream);
    let metrics = state.gateway.upstreams.metrics.clone();
    let mut rec = Record::new(endpoint, ingress::request_id(req.headers), metrics);
    rec.observe(state.gateway.telemetry.as_ref(), req.headers);
    // The steps' future is boxed: it holds every step's state (kilobytes),
    // and actix-web moves the handler's future three times before polling
    // it, each move a copy of its whole size (docs/performance.md, issue 14).
    // Allocated first and written in place: `Box::pin(steps(..))` built it
    // on the stack and copied it over (docs/performance.md, "Timeouts armed
    // only when the work waits, and the steps' future written in its box").
    let steps: Box<_> = Box::write(Box::new_uninit(), steps(state, req, payload, endpoint, &mut rec));
    let (resp, next) = match Box::into_pin(steps).await {
        Ok(ClientReply::Complete { body, usage, price }) => (relay::complete(rec, body, usage, price), Next::Client),
        // A live stream goes on: the worker waits for its next event.
        Ok(ClientReply::Stream { upstream, spec }) => (relay::stream(rec, upstream, spec), Next::Upstream),
        Ok(ClientReply::Template { body, stream }) => (relay::template(rec, body, stream), Next::Client),
        Ok(ClientReply::Stored { answer, stream, include_usage }) => {
            (relay::stored(rec, answer, stream, include_usage), Next::Client)
        }
        Ok(ClientReply::Flight { sub, spec }) => (relay::flight(rec, sub, spec), Next::Upstream),
        Err(e) => (Reply::response(relay::error(rec, &e)), Next::Client),
    };
    drop(waiting);
    activity.touch(next);
    resp
}

/// What the client gets, before the relay writes it out.
enum ClientReply {
    Complete {
        body: Bytes,
        usage: Option<Usage>,
        price: Option<Price>,
    },
    Stream {
        upstream: Box<UpstreamStream>,
        spec: StreamSpec,
    },
    Template {
        body: Bytes,
        stream: bool,
    },
    /// A stored answer, or a shared one already complete, in the shape asked for.
    Stored {
        answer: StoredAnswer,
        stream: bool,
        include_usage: bool,
    },
    /// A live stream shared with identical requests (single-flight).
    Flight {
        sub: Subscriber,
        spec: FlightSpec,
    },
}

#[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
fn steps(
    state: &WorkerState,
    req: Head<'_>,
    payload: Payload,
    endpoint: Endpoint,
    rec: &mut Record,
) -> impl Future<Output = Result<ClientReply, GatewayError>> {
    async move {
        let (gw, up) = (&state.gateway, &state.gateway.upstreams);
        if gw.is_shutting_down() {
            return Err(GatewayError::ShuttingDown);
        }
        let policy = gw.keys.authenticate(req.headers)?;
        rec.set_key(&policy.name, policy.team.as_deref());
        rec.charge.spending = Some(budget::check(state, &policy)?);
        let body_timeout = std::time::Duration::from_millis(gw.config.server.body_read_timeout_ms);
        let (body, peek, upload) = if endpoint.multipart() {
            let limits = upload::Limits {
                max_bytes: gw.config.server.max_upload_bytes,
                setting: "server.max_upload_bytes",
                idle: body_timeout,
                spool_dir: gw.config.server.spool_dir.clone(),
            };
            let u = upload::receive(req.headers, payload, &limits, true).await?;
            let model = u.model.as_ref().map(|(m, _)| m.clone()).unwrap_or_default();
            // Boxed: this future holds it through the upstream call, and
            // inline it would take 112 bytes there on every other request too.
            (Bytes::new(), Peek { model, ..Peek::default() }, Some(Box::new(u)))
        } else {
            let body = ingress::read_body(req.headers, payload, gw.config.server.max_body_bytes, body_timeout).await?;
            let peek = Peek::read(&body, endpoint)?;
            (body, peek, None)
        };
        if endpoint == Endpoint::Speech {
            rec.media_type = Some(relay::speech_media_type(&body)?);
        }
        rec.set_request(&peek, &body);
        let model = up.models.resolve(&peek.model, &policy)?;
        rec.set_model(model);
        rec.charge.set_request(model, up.models.likely_price(model), peek.prompt_estimate());
        // A token counter spends no tokens: it counts against rpm only.
        let tokens = if endpoint.counts_tokens() { 0 } else { peek.estimated_tokens() };
        rec.charge.limits =
            limits::admit_request(&up.limiter, &up.scopes, &policy, model, tokens, &gw.config.queue).await?;
        let (turn, save) = conversation::turn(&gw.conversations, &policy.name, &body, endpoint).await?;
        if endpoint.counts_tokens() && !capability::any_serves(up, model, endpoint) {
            let body = count::estimate(&body, endpoint, turn.as_deref()).await;
            return Ok(ClientReply::Complete { body, usage: Some(Usage::default()), price: None });
        }
        // An upload is neither cached nor shared: its body is not in hand. (An
        // `if let`, not a `match` on the cache's answer: the scrutinee of a
        // `match` stays in this future through the upstream call.)
        let reply = if upload.is_some() {
            fetch(state, req, &body, &peek, endpoint, model, turn.as_deref(), upload.as_deref(), rec).await
        } else if let Some(reply) = cache::step(state, req, &body, &peek, endpoint, model, rec).await {
            reply
        } else {
            fetch(state, req, &body, &peek, endpoint, model, turn.as_deref(), None, rec).await
        };
        if endpoint.multipart()
            && let Ok(ClientReply::Complete { body, .. }) = &reply
        {
            // Transcripts come as JSON or as text (`response_format` text, srt, vtt).
            rec.media_type = (!body.trim_ascii_start().starts_with(b"{")).then_some("text/plain; charset=utf-8");
        }
        let reply = template::instead_of_failure(reply, up, endpoint, model, &peek, &rec.request_id)?;
        Ok(match (reply, save) {
            (ClientReply::Complete { body, usage, price }, Some(save)) => {
                save.run(body.clone(), &rec.request_id).await;
                ClientReply::Complete { body, usage, price }
            }
            (ClientReply::Template { body, stream: false }, Some(save)) => {
                save.run(body.clone(), &rec.request_id).await;
                ClientReply::Template { body, stream: false }
            }
            (ClientReply::Stream { upstream, mut spec }, save) => {
                spec.save = save;
                ClientReply::Stream { upstream, spec }
            }
            (reply, _) => reply,
        })
    }
}

/// The upstream call (`upstream::fetch`, or the model's embeddings batch).
#[allow(clippy::too_many_arguments)]
#[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
fn fetch(
    state: &WorkerState,
    req: Head<'_>,
    body: &Bytes,
    peek: &Peek,
    endpoint: Endpoint,
    model: usize,
    turn: Option<&Turn>,
    upload: Option<&crate::upload::Upload>,
    rec: &mut Record,
) -> impl Future<Output = Result<ClientReply, GatewayError>> {
    async move {
        let request_id = rec.request_id.clone();
        let obs = rec.obs.clone();
        let call = Call {
            endpoint,
            body,
            peek,
            upstream_model: "",
            client_headers: req.headers,
            client_query: req.query,
            request_id: &request_id,
            timeouts: Timeouts::default(),
            reasoning: false,
            turn,
            upload,
            obs: obs.as_deref(),
            trace_headers: None,
        };
        let started = Instant::now();
        // From here, a client that leaves is charged the prompt the upstream got.
        rec.charge.upstream_called();
        let fetched = state.gateway.cache.fetch(&state.upstream, &call, model).await;
        rec.add_upstream(started.elapsed());
        Ok(reply(fetched?, peek, rec))
    }
}

/// An upstream answer as the client's reply; who served it, in the record.
fn reply(fetched: Fetched, peek: &Peek, rec: &mut Record) -> ClientReply {
    rec.set_served(fetched.served.model, fetched.served.deployment);
    rec.charge.deployment_grant = fetched.deployment_grant;
    let price = fetched.price;
    match fetched.body {
        FetchedBody::Complete { body, usage } => ClientReply::Complete { body, usage, price },
        FetchedBody::Stream(upstream) => {
            let spec = StreamSpec { client_wants_usage: peek.include_usage, price, save: None };
            ClientReply::Stream { upstream, spec }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it.
    fn returned_size<F, Fut>(_: F) -> usize
    where
        F: FnOnce(&'static WorkerState, Head<'static>, Payload, Endpoint, &'static mut Record) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every proxied request holds this future (boxed) until its answer is
    /// ready, so its size is memory per request in flight: 8.2 KB, in
    /// mimalloc's 10 KiB class, while rarely taken branches (translated and
    /// cloud providers, uploads, a Responses save) were inline; 4.8 KB with
    /// them boxed (docs/performance.md, "A smaller request future"); 3.5 KiB
    /// with the upstream call's functions storing their arguments once
    /// ("Async functions that store their arguments twice"). A step that
    /// adds a large future inline fails here: box it, or raise the bound
    /// knowing the cost.
    #[test]
    fn the_steps_future_fits_in_three_and_a_half_kib() {
        let size = returned_size(steps);
        assert!(size <= 3584, "request::steps' future is {size} bytes");
    }
}
