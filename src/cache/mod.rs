//! Sending fewer requests upstream, every piece of it on this side of the
//! actors: the cache step's logic ([`step`]: bypass rules, lookup,
//! single-flight join, the second tier), the key ([`key`]), the answer
//! shapes stored and replayed ([`answer`]), the single-flight table
//! ([`flight`]) and the task that makes a flight's upstream call and stores
//! its answer ([`lead`]), embeddings batching ([`batch`]), and the
//! per-model policy ([`CacheLayer`]). The store itself is the
//! `ResponseCache` actor (`sluice-actors`); the pipeline's step is the thin
//! `request::cache`. Why it is built this way: docs/decisions/cache.md.

pub mod answer;
pub mod batch;
pub mod flight;
pub mod key;
pub mod lead;
pub mod step;

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, counter, describe_counter, describe_gauge};
use sluice_actors::response_cache::CacheHandle;

use crate::config::Config;
use crate::error::GatewayError;
use crate::providers::{Call, HeaderForward};
use crate::upstream::{Fetched, WorkerUpstreams};
use batch::Batcher;
use flight::Flights;

/// `x-sluice-cache` values.
pub const HIT: &str = "HIT";
pub const MISS: &str = "MISS";
pub const BYPASS: &str = "BYPASS";

/// How one model with caching on is cached.
pub struct ModelPolicy {
    pub name: String,
    /// What the cache key names the model by: its name and a fingerprint
    /// of where its answers come from (its deployments and fallbacks), so
    /// that a reload which changes those makes its old answers unreachable
    /// (they age out), while entries of unchanged models stay valid.
    pub key_model: String,
    pub ttl: Duration,
    pub only_deterministic: bool,
    /// The `forward_headers` of the model's providers: forwarded headers
    /// may change the answer, so they are part of the key.
    pub forward: Vec<HeaderForward>,
    pub hits: Counter,
    pub misses: Counter,
    pub bypasses: Counter,
    pub coalesced: Counter,
}

/// The cache and batching state every worker shares.
pub struct CacheLayer {
    pub handle: CacheHandle,
    pub flights: Arc<Flights>,
    /// By model index; `None` where caching is off (such requests pay nothing).
    policies: Vec<Option<ModelPolicy>>,
    /// By model index; `None` where embeddings batching is off.
    batchers: Vec<Option<Arc<Batcher>>>,
    /// Replicas mode (`[shared]`): Redis, the second tier behind the in-process store.
    pub tier2: Option<sluice_actors::replicas::ReplicasHandle>,
    /// Answers found in the second tier, by model index (`None`: caching off).
    tier2_hits: Vec<Option<Counter>>,
    /// `cache.max_entry_bytes`: larger answers are not written to the second tier.
    pub max_entry_bytes: usize,
}

impl CacheLayer {
    /// The layer of one config snapshot; `flights` (calls in flight) are
    /// shared by every snapshot, so a reload does not split a flight.
    pub fn new(
        cfg: &Config,
        handle: CacheHandle,
        tier2: Option<sluice_actors::replicas::ReplicasHandle>,
        flights: Arc<Flights>,
    ) -> CacheLayer {
        describe();
        flights.set_max_bytes(cfg.cache.max_entry_bytes);
        let policies = cfg
            .models
            .iter()
            .map(|m| {
                let c = m.cache?;
                let forward = forwarded(cfg, m);
                let name = m.name.clone();
                Some(ModelPolicy {
                    key_model: format!("{}\u{0}{:016x}", m.name, answer_source(cfg, m)),
                    ttl: Duration::from_millis(c.ttl_ms),
                    only_deterministic: c.only_deterministic,
                    forward,
                    hits: counter!("sluice_cache_hits_total", "model" => name.clone()),
                    misses: counter!("sluice_cache_misses_total", "model" => name.clone()),
                    bypasses: counter!("sluice_cache_bypasses_total", "model" => name.clone()),
                    coalesced: counter!("sluice_coalesced_total", "model" => name.clone()),
                    name,
                })
            })
            .collect();
        let batchers = cfg
            .models
            .iter()
            .map(|m| m.embeddings_batch.map(|b| Batcher::new(&m.name, b, forwarded(cfg, m), handle.clone())))
            .collect();
        let tier2_hits = cfg
            .models
            .iter()
            .map(|m| {
                (m.cache.is_some() && tier2.is_some())
                    .then(|| counter!("sluice_cache_shared_hits_total", "model" => m.name.clone()))
            })
            .collect();
        CacheLayer {
            handle,
            flights,
            policies,
            batchers,
            tier2,
            tier2_hits,
            max_entry_bytes: cfg.cache.max_entry_bytes,
        }
    }

    pub fn policy(&self, model: usize) -> Option<&ModelPolicy> {
        self.policies.get(model)?.as_ref()
    }

    /// Count a hit served from the second tier (Redis).
    pub fn tier2_hit(&self, model: usize) {
        if let Some(Some(c)) = self.tier2_hits.get(model) {
            c.increment(1);
        }
    }

    pub fn batcher(&self, model: usize) -> Option<&Arc<Batcher>> {
        self.batchers.get(model)?.as_ref()
    }

    /// A request's upstream call: in its model's embeddings batch when it
    /// can be, else alone (`upstream::fetch`).
    ///
    /// A plain function returning `batch::fetch`'s future: an `async fn`
    /// around it would store its arguments beside it, in every request's
    /// future (docs/performance.md, "Async functions that store their
    /// arguments twice").
    pub fn fetch(
        &self,
        w: &WorkerUpstreams,
        call: &Call<'_>,
        model: usize,
    ) -> impl Future<Output = Result<Fetched, GatewayError>> {
        batch::fetch(self.batcher(model), w, call, model)
    }
}

/// A fingerprint of where a model's answers come from: each deployment's
/// provider (every setting but secrets, which `Debug` masks) and upstream
/// model, and its fallbacks' names (a fallback model that changes has its
/// own fingerprint, but not in this one: its answers under this name stay).
fn answer_source(cfg: &Config, m: &crate::config::ModelConfig) -> u64 {
    let mut text = String::new();
    for d in &m.deployments {
        let p = cfg.providers.get(d.provider).map(|p| format!("{p:?}")).unwrap_or_default();
        text.push_str(&format!("{p}\u{0}{}\u{0}", d.model));
    }
    for f in &m.fallbacks {
        text.push_str(f);
        text.push('\u{0}');
    }
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// The `forward_headers` of a model's providers (each provider once).
fn forwarded(cfg: &Config, m: &crate::config::ModelConfig) -> Vec<HeaderForward> {
    let mut providers: Vec<usize> = m.deployments.iter().map(|d| d.provider).collect();
    providers.sort_unstable();
    providers.dedup();
    providers
        .into_iter()
        .filter_map(|p| cfg.providers.get(p))
        .filter(|p| !p.forward_headers.is_empty())
        .map(|p| HeaderForward::new(&p.forward_headers))
        .collect()
}

fn describe() {
    describe_counter!("sluice_cache_hits_total", "Requests answered from the response cache, by model.");
    describe_counter!(
        "sluice_cache_misses_total",
        "Cacheable requests not in the cache (or refreshed with no-cache), by model."
    );
    describe_counter!(
        "sluice_cache_bypasses_total",
        "Requests to a cached model that skipped the cache (no-store, or not deterministic), by model."
    );
    describe_counter!(
        "sluice_coalesced_total",
        "Requests that shared an identical in-flight request's upstream call, by model."
    );
    describe_counter!("sluice_cache_evictions_total", "Entries evicted to stay within cache.max_bytes.");
    describe_counter!(
        "sluice_cache_shared_hits_total",
        "Cache hits found in Redis (the shared second tier) after an in-process miss, by model."
    );
    describe_gauge!("sluice_cache_entries", "Answers in the response cache.");
    describe_gauge!("sluice_cache_bytes", "Bytes held by the response cache.");
    describe_counter!(
        "sluice_embeddings_batched_total",
        "Embedding requests merged with others into one upstream call, by model."
    );
    describe_counter!(
        "sluice_embeddings_batches_total",
        "Upstream calls made for merged embedding requests, by model."
    );
}
