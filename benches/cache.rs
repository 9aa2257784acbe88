//! What a response-cache hit costs the gateway (docs/benchmarks/cache.md):
//!
//! - `key`: the 128-bit key of a request body (parse + canonical hash), next
//!   to `Peek::read` of the same body, the read every request pays anyway
//! - `lookup`: a hit read from the actor's published snapshot (DashMap get,
//!   freshness check, recency stamp) against asking the `ResponseCache` actor
//!   (a `Store` ask round trip: what an ask-per-lookup design would pay)
//! - `respond`: building the hit's response (non-stream and SSE replay)
//! - `hit_total`: key + lookup + response, the whole added work of a hit
//!
//! Run: `cargo bench --bench cache`.

// Benchmark set-up fails loudly on a broken fixture: unwrap/expect/panic are
// the point here, and nothing in this file runs inside the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use sluice::cache::{answer, key};
use sluice::config::Config;
use sluice::endpoint::Endpoint;
use sluice::mock::generate::{self, Endpoint as Gen};
use sluice::peek::Peek;
use sluice::request::record::Record;
use sluice_actors::Actors;
use sluice_actors::response_cache::{CacheEntry, Snapshot, StoredAnswer};

/// A chat request of about `size` bytes: a system prompt and user/assistant turns.
fn chat_body(size: usize) -> Bytes {
    let mut messages =
        vec![serde_json::json!({"role": "system", "content": "You are a careful assistant. Answer briefly."})];
    let mut i = 0;
    while serde_json::to_vec(&messages).unwrap().len() < size.saturating_sub(120) {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let text = format!("Turn {i}: what does the \"cache\" do with\nnon-ASCII text like café and 🙂, number {i}?");
        messages.push(serde_json::json!({"role": role, "content": text}));
        i += 1;
    }
    let body = serde_json::json!({"model": "gpt-4o-mini", "messages": messages, "temperature": 0, "max_tokens": 256, "stream": false});
    Bytes::from(serde_json::to_vec(&body).unwrap())
}

/// A stored answer as the gateway keeps it: a 64-token chat completion.
fn stored_answer() -> StoredAnswer {
    let req =
        generate::parse_request(Gen::Chat, br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#, 64, None)
            .unwrap();
    answer::from_body(Endpoint::Chat, &generate::completion_body(&req, "chatcmpl-bench", 1)).unwrap()
}

fn bench_cache(c: &mut Criterion) {
    let headers = HeaderMap::new();
    let mut g = c.benchmark_group("cache");
    for size in [1_000usize, 10_000, 100_000] {
        let body = chat_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        let label = format!("{}KB", size / 1000);
        g.bench_function(BenchmarkId::new("key", &label), |b| {
            b.iter(|| key::compute(Endpoint::Chat, "gpt-4o-mini", black_box(&body), &headers, &[], true).unwrap())
        });
        g.bench_function(BenchmarkId::new("peek_for_scale", &label), |b| {
            b.iter(|| Peek::read(black_box(&body), Endpoint::Chat).unwrap())
        });
    }
    g.throughput(Throughput::Elements(1));

    // Lookup from the published snapshot, 10,000 entries.
    let snapshot = Snapshot::new();
    let clock = AtomicU64::new(0);
    let a = stored_answer();
    let now = tokio::time::Instant::now();
    for k in 0..10_000u128 {
        snapshot.insert(k, Arc::new(CacheEntry::new(a.clone(), now, Duration::from_secs(600))));
    }
    g.bench_function(BenchmarkId::new("lookup", "snapshot_get_hit"), |b| {
        let mut k = 0u128;
        b.iter(|| {
            k = (k + 7919) % 10_000;
            let e = snapshot.get(&black_box(k)).map(|e| e.value().clone()).unwrap();
            let t = tokio::time::Instant::now();
            assert!(e.is_fresh(t));
            e.touch(&clock);
            e
        })
    });
    g.bench_function(BenchmarkId::new("lookup", "snapshot_get_miss"), |b| {
        b.iter(|| snapshot.get(&black_box(u128::MAX)).is_none())
    });

    // Building the response of a hit.
    let cfg = Config::embedded_default().unwrap();
    let metrics = Arc::new(sluice::metrics::MetricsTable::new(&sluice::route::ModelTable::from_config(&cfg)));
    for (label, stream) in [("json", false), ("sse_replay", true)] {
        g.bench_function(BenchmarkId::new("respond", label), |b| {
            b.iter(|| {
                let rec =
                    Record::new(Endpoint::Chat, sluice::endpoint::RequestId::from_static("req_bench"), metrics.clone());
                sluice::request::relay::stored(rec, a.clone(), stream, true)
            })
        });
    }

    // The whole added work of a hit on a 1 KB request.
    let body = chat_body(1_000);
    let k = key::compute(Endpoint::Chat, "gpt-4o-mini", &body, &headers, &[], true).unwrap();
    snapshot.insert(k, Arc::new(CacheEntry::new(a.clone(), now, Duration::from_secs(600))));
    g.bench_function(BenchmarkId::new("hit_total", "1KB_json"), |b| {
        b.iter(|| {
            let k = key::compute(Endpoint::Chat, "gpt-4o-mini", black_box(&body), &headers, &[], true).unwrap();
            let e = snapshot.get(&k).map(|e| e.value().clone()).unwrap();
            e.touch(&clock);
            let rec =
                Record::new(Endpoint::Chat, sluice::endpoint::RequestId::from_static("req_bench"), metrics.clone());
            sluice::request::relay::stored(rec, e.answer.clone(), false, false)
        })
    });
    g.finish();

    // Asking the actor instead: the round trip of a `Store` ask (an actix
    // System on this thread, the actors on their own Arbiter, as in the gateway).
    let sys = System::new();
    let spec = sluice_actors::ActorsSpec {
        sessions: vec![],
        breaker: Default::default(),
        availability: sluice_actors::availability::AvailabilitySpec {
            labels: Vec::<String>::new().into(),
            provider_of: vec![],
            provider_names: Vec::<String>::new().into(),
            probes: vec![],
        },
        limiter: sluice_actors::rate_limiter::LimiterSpec {
            scopes: vec![],
            spend: sluice_actors::rate_limiter::SpendTable::new(vec![], vec![]),
            store: None,
            max_queue: 1,
        },
        cache: Default::default(),
        conversations: Default::default(),
        replicas: None,
    };
    let actors = sys.block_on(async { Actors::start(spec) }).expect("actors start");
    let cache = actors.cache.clone();
    let small = StoredAnswer { body: Bytes::from_static(b"{}"), events: Bytes::new(), usage_event: Bytes::new() };
    assert!(sys.block_on(cache.store(1, small.clone(), Duration::from_secs(60))));
    let mut g = c.benchmark_group("cache");
    g.bench_function(BenchmarkId::new("lookup", "actor_ask_round_trip"), |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let t = Instant::now();
                for i in 0..iters {
                    black_box(cache.store(u128::from(i % 64), small.clone(), Duration::from_secs(60)).await);
                }
                t.elapsed()
            })
        })
    });
    g.bench_function(BenchmarkId::new("lookup", "handle_get_hit"), |b| {
        b.iter(|| cache.get(black_box(1), tokio::time::Instant::now()).unwrap())
    });
    g.finish();
    actors.stop();
    System::current().stop();
    sys.run().expect("system stops cleanly");
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .nresamples(10_000)
        .configure_from_args();
    bench_cache(&mut c);
    c.final_summary();
}
