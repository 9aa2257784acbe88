//! The cost of talking to the actor the request path uses today,
//! `UpstreamSessions`, three ways (docs/benchmarks/micro.md has the results):
//!
//! - ask: `Addr::send(GetStatus).await` from the calling thread while the
//!   actor runs on its own Arbiter — the round trip an HTTP worker would pay
//!   to ask an actor anything (here with the actor's `/status` detail as the
//!   reply; `handler_work_alone` measures that part without the round trip)
//! - tell: `SessionsHandle::record_error`, the fire-and-forget `try_send` the
//!   request path does after an upstream failure
//! - snapshot: reading the shared `SessionTable` atomics, no message at all
//!
//! Run: `cargo bench --bench actors`.

// Benchmark set-up fails loudly on a broken fixture: unwrap/expect/panic are
// the point here, and nothing in this file runs inside the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{BenchmarkId, Criterion};
use sluice_actors::upstream_sessions::{SessionState, UpstreamErrorKind};
use sluice_actors::{Actors, GetStatus};
use sluice_upstream::SessionSpec;

fn spec(name: &str) -> SessionSpec {
    SessionSpec {
        name: name.into(),
        connect_timeout: Duration::from_secs(5),
        max_connections: 256,
        idle_timeout: Duration::from_secs(90),
        warm_connections: 0,
        warm_request: None,
        plain_http: None,
    }
}

/// The upstream error message the request path would send (built per call,
/// as `e.to_string()` is in `attempt.rs`).
fn message() -> String {
    String::from("upstream answered 503 Service Unavailable")
}

/// The floor of an ask: an actor whose reply costs nothing, on the same
/// Arbiter as `UpstreamSessions`.
struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Ping {
    n: u64,
}

impl Handler<Ping> for Echo {
    type Result = u64;

    fn handle(&mut self, msg: Ping, _ctx: &mut Context<Self>) -> u64 {
        msg.n + 1
    }
}

fn bench_actors(c: &mut Criterion) {
    // The gateway's layout: an actix System on this thread (an HTTP worker's
    // runtime), the actors on their own Arbiter thread.
    let sys = System::new();
    let spec = sluice_actors::ActorsSpec {
        sessions: vec![Some(spec("openai")), None, Some(spec("azure"))],
        breaker: Default::default(),
        availability: sluice_actors::availability::AvailabilitySpec {
            labels: vec!["openai/m".to_string(), "mock/m".to_string()].into(),
            provider_of: vec![0, 1],
            provider_names: vec!["openai".to_string(), "mock".to_string(), "azure".to_string()].into(),
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
    let actors = Actors::start(spec).expect("actors start");
    let sessions = actors.sessions.clone();
    let addr = sessions.addr().clone();
    let meta = actors.registry.metas().next().expect("UpstreamSessions is registered").clone();
    let echo = Echo::start_in_arbiter(&actors.arbiter(), |_| Echo);
    // The first ask waits for the actor to start; after it, it is running.
    sys.block_on(addr.send(GetStatus)).expect("actor answers");
    assert_eq!(sys.block_on(echo.send(Ping { n: 1 })).expect("echo answers"), 2);

    let mut g = c.benchmark_group("actors");

    // (a) Ask round trip. `meta.enqueued()` keeps the mailbox gauge right,
    // as `ActorMeta::ask` would (one relaxed atomic add).
    g.bench_function(BenchmarkId::new("ask_round_trip", "addr_send_get_status"), |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    meta.enqueued();
                    black_box(addr.send(GetStatus).await.unwrap());
                }
                t.elapsed()
            })
        })
    });
    // The messaging alone: an empty reply from an actor on the same thread.
    g.bench_function(BenchmarkId::new("ask_round_trip", "addr_send_empty_reply"), |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let t = Instant::now();
                for n in 0..iters {
                    black_box(echo.send(Ping { n }).await.unwrap());
                }
                t.elapsed()
            })
        })
    });
    // The same through `ActorMeta::ask`, which adds a tokio timeout.
    g.bench_function(BenchmarkId::new("ask_round_trip", "meta_ask_with_timeout"), |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(meta.ask(&addr, GetStatus, Duration::from_secs(1)).await.unwrap());
                }
                t.elapsed()
            })
        })
    });
    // What `/status` does: ask every registered actor (one today).
    g.bench_function(BenchmarkId::new("ask_round_trip", "registry_status"), |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(actors.registry.status(Duration::from_secs(1)).await);
                }
                t.elapsed()
            })
        })
    });
    // The reply's own work (building the status JSON), on this thread: the
    // round trip above minus this is the messaging cost.
    let state = SessionState::new(Arc::clone(sessions.table()));
    g.bench_function(BenchmarkId::new("ask_round_trip", "handler_work_alone"), |b| {
        b.iter(|| sonic_rs::to_value(&black_box(&state).detail(tokio::time::Instant::now())))
    });

    // (b) Tell. Sent in bursts no bigger than the mailbox, then drained with
    // an ask (FIFO: when it answers, every tell before it was handled) outside
    // the timing, so no tell is refused and each finds room.
    let drain = || {
        meta.enqueued();
        sys.block_on(addr.send(GetStatus)).unwrap();
    };
    for (label, burst) in [("burst_of_256", 256u64), ("to_idle_actor", 1)] {
        if burst == 1 {
            // Each timed tell is followed by an untimed drain ~10x longer:
            // keep the wall time down.
            g.warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_millis(400));
        }
        g.bench_function(BenchmarkId::new("tell_record_error", label), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(burst);
                    let t = Instant::now();
                    for _ in 0..n {
                        sessions.record_error(0, UpstreamErrorKind::Status(503), message());
                    }
                    timed += t.elapsed();
                    left -= n;
                    drain();
                }
                timed
            })
        });
    }
    assert_eq!(meta.dropped(), 0, "a tell was refused: the bench measured the full-mailbox path");

    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_millis(1500));

    // (c) Snapshot: what a handler reads instead of asking.
    g.bench_function(BenchmarkId::new("snapshot_read", "pool_stats_atomics"), |b| {
        b.iter(|| {
            let table = black_box(&sessions).table();
            table.providers[0].as_ref().map(|p| (p.stats.inflight(), p.stats.open(), p.permits.available_permits()))
        })
    });
    g.finish();

    // Clean shutdown: stop and join the actor thread, then the System.
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
    bench_actors(&mut c);
    c.final_summary();
}
