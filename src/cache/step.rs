//! The cache step's logic: answer from the `ResponseCache`, or share an
//! identical request's upstream call, or lead one that others may share
//! and store its answer. (`request::cache` turns what this finds into the
//! client's reply and the request's record.)
//!
//! A model with caching off costs one `Option` check here: no hashing, no
//! message. For a cacheable request: the key (a hash of the body), one read
//! of the actor's published snapshot, and on a miss one `DashMap` entry in
//! the single-flight table. The actor is asked only to store, by the
//! background task that fetched the answer ([`super::lead`]), never by a
//! request waiting for its answer.
//!
//! Replicas mode adds Redis as a second tier: a flight's leader looks there
//! (once, within the Redis timeout) before it calls upstream, and every
//! answer stored here is also written there. Single-flight stays per replica.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sluice_actors::response_cache::{CacheCounters, StoredAnswer};
use tokio::time::Instant;

use super::flight::{End, Ready, Role, Subscriber};
use super::lead::Lead;
use super::{CacheLayer, key};
use crate::config::Price;
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::observe::RequestObs;
use crate::peek::Peek;
use crate::upstream::WorkerUpstreams;
use crate::upstream::charge::Charge;
use crate::usage::Usage;

/// What the cache step came to for one request.
pub enum Lookup {
    /// The model has caching off: nothing was looked at.
    Off,
    /// This request skips the cache (`BYPASS`): it goes on as without one.
    Bypass,
    /// A stored answer (`HIT`).
    Hit(StoredAnswer),
    /// No stored answer (`MISS`): the request's share of its key's flight,
    /// which it led or joined.
    Miss(FromFlight),
}

/// A request's answer from its key's flight.
pub struct FromFlight {
    /// This request led the call (its charge went with the call, which
    /// settles it; a follower's tokens were spent once, by the leader).
    pub leader: bool,
    /// `(model, deployment)` that served, once the upstream answered.
    pub served: Option<(usize, usize)>,
    pub price: Option<Price>,
    /// How long the leader waited on upstream (the leader's only).
    pub upstream: Option<Duration>,
    /// The answer, or the error the call failed with.
    pub answer: Result<FlightAnswer, GatewayError>,
}

/// The answer itself.
pub enum FlightAnswer {
    /// A whole answer in the shape asked for: one stored after the flight
    /// began, or the call's, assembled, when it came in the other shape.
    Assembled(StoredAnswer),
    /// The upstream's whole body (its usage is charged by the call).
    Complete { body: Bytes, usage: Option<Usage> },
    /// A live stream shared with identical requests.
    Stream(Subscriber),
}

/// The cache step. A request that leads its key's flight hands its
/// `charge` to the flight's call.
#[allow(clippy::too_many_arguments)]
pub async fn lookup(
    layer: &CacheLayer,
    w: &WorkerUpstreams,
    req: crate::endpoint::Head<'_>,
    body: &Bytes,
    peek: &Peek,
    endpoint: Endpoint,
    model: usize,
    request_id: &crate::endpoint::RequestId,
    charge: &mut Charge,
    obs: Option<&Rc<RequestObs>>,
) -> Lookup {
    let Some(policy) = layer.policy(model) else { return Lookup::Off };
    let counters = layer.handle.counters();
    let control = key::control(req.headers);
    let bypass = || {
        policy.bypasses.increment(1);
        CacheCounters::bump(&counters.bypasses);
        Lookup::Bypass
    };
    // Stored answers are OpenAI-shaped and replayed as OpenAI chunks, so
    // only the OpenAI routes are cached. The others bypass, on purpose
    // (docs/decisions/cache.md): a Response carries an id of its own that
    // `store` and `previous_response_id` key on (a replay would hand two
    // clients one id), and agents' Messages requests differ turn by turn
    // (a session id in `metadata`, a growing history), so they would only
    // fill the store.
    if control.no_store || !matches!(endpoint, Endpoint::Chat | Endpoint::Completions | Endpoint::Embeddings) {
        return bypass();
    }
    let Ok(key) =
        key::compute(endpoint, &policy.key_model, body, req.headers, &policy.forward, policy.only_deterministic)
    else {
        return bypass();
    };
    let stored = |now: Instant| -> Option<StoredAnswer> {
        if control.no_cache {
            return None;
        }
        let e = layer.handle.get(key, now)?;
        control.max_age.is_none_or(|m| e.age(now) <= Duration::from_secs(m)).then(|| e.answer.clone())
    };
    if let Some(answer) = stored(Instant::now()) {
        policy.hits.increment(1);
        CacheCounters::bump(&counters.hits);
        return Lookup::Hit(answer);
    }
    let sub = match layer.flights.join(key) {
        Role::Follow(sub) => {
            // Done, and only not yet in the store: its leader is publishing
            // it. A stored answer in all but name, so a HIT; without this a
            // request right after a MISS could be a MISS again under load.
            if let Some(answer) = sub.flight().done_answer() {
                policy.hits.increment(1);
                CacheCounters::bump(&counters.hits);
                return Lookup::Hit(answer);
            }
            policy.misses.increment(1);
            CacheCounters::bump(&counters.misses);
            policy.coalesced.increment(1);
            CacheCounters::bump(&counters.coalesced);
            return Lookup::Miss(from_flight(sub, false, peek).await);
        }
        Role::Lead(sub) => {
            policy.misses.increment(1);
            CacheCounters::bump(&counters.misses);
            sub
        }
    };
    // A second look, now that the flight is listed: an answer stored
    // between the first look and the listing is found here, so no request
    // misses both the store and a flight.
    if let Some(answer) = stored(Instant::now()) {
        sub.flight().finish(End::Done, Some(answer.clone()));
        layer.flights.remove(key, sub.flight());
        return Lookup::Hit(answer);
    }
    // The second tier (replicas mode): another replica may have stored it.
    // Asked once per flight, by its leader, within the Redis timeout.
    let tier2_key = layer.tier2.as_ref().and_then(|t| t.cache_seed()).and_then(|seed| {
        key::compute_seeded(
            seed,
            endpoint,
            &policy.key_model,
            body,
            req.headers,
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
        layer.tier2_hit(model);
        return Lookup::Hit(found.answer);
    }
    // The call is made for this request: its charge goes with the call,
    // which settles it with what the upstream produced, even if this
    // request's client leaves before the end (followers are charged none).
    let mut charge = charge.take();
    charge.upstream_called();
    let lead = Lead {
        charge,
        upstream: w.clone(),
        batcher: layer.batcher(model).cloned(),
        store: layer.handle.clone(),
        tier2: layer.tier2.clone(),
        max_entry_bytes: layer.max_entry_bytes,
        headers: req.headers.clone(),
        query: req.query.to_string(),
        body: body.clone(),
        peek: peek.clone(),
        endpoint,
        model,
        key,
        tier2_key,
        ttl: policy.ttl,
        request_id: request_id.clone(),
        obs: obs.cloned(),
        flight: sub.flight().clone(),
        flights: sub.table().clone(),
    };
    let task = actix_web::rt::spawn(lead.run());
    sub.flight().set_task(task.abort_handle());
    Lookup::Miss(from_flight(sub, true, peek).await)
}

/// Wait for the flight's answer, in the shape this request asked for.
async fn from_flight(sub: Subscriber, leader: bool, peek: &Peek) -> FromFlight {
    let early = |answer| FromFlight { leader, served: None, price: None, upstream: None, answer };
    let head = match sub.ready().await {
        Ready::Failed(e) => return early(Err(e)),
        Ready::Answer(answer) => return early(Ok(FlightAnswer::Assembled(answer))),
        Ready::Head(h) => h,
    };
    let (served, price, upstream) = (head.served, head.price, leader.then_some(head.upstream));
    let answer = match (head.body, peek.stream) {
        // Usage is the call's to charge (see `Lead`), not the subscribers'.
        (Some(body), false) => Ok(FlightAnswer::Complete { body, usage: None }),
        (None, true) => Ok(FlightAnswer::Stream(sub)),
        // The other shape than the upstream gave: wait for the whole answer.
        (_, stream) => match sub.finished().await {
            Ok(Some(answer)) if stream => Ok(FlightAnswer::Assembled(answer)),
            Ok(Some(answer)) => Ok(FlightAnswer::Complete { body: answer.body, usage: None }),
            Ok(None) => Err(GatewayError::Internal {
                detail: "the shared upstream answer could not be converted to the shape this request asked for".into(),
            }),
            Err(e) => Err(e),
        },
    };
    FromFlight { leader, served, price, upstream, answer }
}
