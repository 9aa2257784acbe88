//! A flight's upstream call: the task the first request for a key (its
//! leader) spawns on its worker. It fetches (batched, for embeddings of a
//! model that batches them), feeds every subscriber of the flight as the
//! answer arrives, and stores the answer: in process, and in the second
//! tier in replicas mode. The last subscriber leaving aborts it, which
//! drops the upstream stream and so cancels the call.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use sluice_actors::response_cache::{CacheHandle, CacheKey, StoredAnswer};
use tokio::time::Instant;

use super::answer;
use super::batch::{self, Batcher};
use super::flight::{End, Flight, Flights, Head};
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::peek::Peek;
use crate::providers::{Call, Timeouts};
use crate::upstream::charge::Charge;
use crate::upstream::{FetchedBody, WorkerUpstreams};

/// What the task that makes a flight's upstream call owns.
pub(super) struct Lead {
    /// The charge of the request that led the call: settled with what the
    /// upstream produced, whoever is still subscribed (see `upstream::charge`).
    /// Dropped unsettled when the task is aborted before the answer: then
    /// the prompt is charged.
    pub charge: Charge,
    pub upstream: WorkerUpstreams,
    /// The model's embeddings batcher, when it has one.
    pub batcher: Option<Arc<Batcher>>,
    pub store: CacheHandle,
    /// Replicas mode: Redis, the second tier.
    pub tier2: Option<sluice_actors::replicas::ReplicasHandle>,
    pub max_entry_bytes: usize,
    /// The leading request's headers and query, for the upstream call.
    pub headers: actix_web::http::header::HeaderMap,
    pub query: String,
    pub body: Bytes,
    pub peek: Peek,
    pub endpoint: Endpoint,
    pub model: usize,
    pub key: CacheKey,
    /// The key in the second tier (its seed is the replicas').
    pub tier2_key: Option<CacheKey>,
    pub ttl: Duration,
    pub request_id: crate::endpoint::RequestId,
    /// The leading request's telemetry: the upstream call is its attempts.
    pub obs: Option<std::rc::Rc<crate::observe::RequestObs>>,
    pub flight: Arc<Flight>,
    pub flights: Arc<Flights>,
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
    pub async fn run(mut self) {
        let _unfinished = Unfinished(self.flight.clone());
        if let Some(a) = self.call().await {
            // Replicas mode: the other replicas find it in Redis.
            if let (Some(tier2), Some(k2)) = (&self.tier2, self.tier2_key)
                && a.size() <= self.max_entry_bytes
            {
                tier2.cache_put(k2, &a, self.ttl);
            }
            // The flight stays listed until the answer is published, so no
            // request finds neither.
            self.store.store(self.key, a, self.ttl).await;
        }
        self.flights.remove(self.key, &self.flight);
    }

    /// Make the call and feed the flight; the answer to store, if any.
    async fn call(&mut self) -> Option<StoredAnswer> {
        let flight = &self.flight;
        let call = Call {
            endpoint: self.endpoint,
            body: &self.body,
            peek: &self.peek,
            upstream_model: "",
            client_headers: &self.headers,
            client_query: &self.query,
            request_id: &self.request_id,
            timeouts: Timeouts::default(),
            reasoning: false,
            turn: None,
            upload: None,
            obs: self.obs.as_deref(),
            trace_headers: None,
        };
        let started = Instant::now();
        let fetched = match batch::fetch(self.batcher.as_ref(), &self.upstream, &call, self.model).await {
            Ok(f) => f,
            Err(e) => {
                flight.finish(End::Failed(e), None);
                self.charge.take().keep_estimate();
                return None;
            }
        };
        let upstream = started.elapsed();
        let served = Some((fetched.served.model, fetched.served.deployment));
        let price = fetched.price;
        let mut charge = self.charge.take();
        // The serving deployment's caps are settled with the same count.
        charge.deployment_grant = fetched.deployment_grant;
        match fetched.body {
            FetchedBody::Complete { body, usage } => {
                match usage {
                    Some(u) => charge.settle(Some(fetched.served.model), u, price),
                    None => charge.keep_estimate(),
                }
                let answer = answer::from_body(self.endpoint, &body);
                flight.head(Head { served, price, upstream, body: Some(body), usage });
                flight.finish(End::Done, answer.clone());
                answer
            }
            FetchedBody::Stream(mut stream) => {
                // The stream settles the charge when it ends, fails, or is
                // dropped with this task (every subscriber left).
                stream.bill(charge, Some(fetched.served.model), price);
                flight.head(Head { served, price, upstream, body: None, usage: None });
                while let Some(run) = stream.next().await {
                    match run {
                        Ok(events) => flight.push(events),
                        Err(e) => {
                            tracing::warn!(request_id = %self.request_id, error = %e, "shared stream failed after its first byte");
                            flight.push(e.sse_event());
                            flight.finish(End::StreamFailed(e), None);
                            return None;
                        }
                    }
                }
                // Past `max_entry_bytes` the flight kept no copy: not stored.
                let answer = flight.all_events().and_then(|all| answer::from_stream(self.endpoint, &all));
                flight.finish(End::Done, answer.clone());
                answer
            }
        }
    }
}
