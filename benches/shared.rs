//! What shared rate limits add per request (docs/benchmarks/shared.md):
//! one admission (key scope, a request and a token limit) through
//!
//! - `in_process`: the in-process table (no `[shared]`);
//! - `redis_admit`: the shared backend: one `EVALSHA` of the GCRA script on
//!   a local `redis-server` (started here, on a free port), in the
//!   gateway's layout (the request on this thread, the Redis connection's
//!   driver on the `Replicas` thread);
//! - `redis_refused_fast_path`: the same backend once the limit is spent:
//!   refused from the copy of Redis's state, with no round trip.
//!
//! Run: `cargo bench --bench shared` (needs `redis-server` on the PATH).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::Criterion;
use sluice_actors::ActorRegistry;
use sluice_actors::rate_limiter::gcra::Rate;
use sluice_actors::rate_limiter::{LimitSpec, LimiterBackend, LimiterTable, admit};
use sluice_actors::replicas::{ReplicasHandle, ReplicasSpec};

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spec(rpm: u64, tpm: u64) -> Vec<LimitSpec> {
    vec![LimitSpec {
        name: format!("key:bench-{rpm}"),
        requests: Some(Rate::per_minute(rpm)),
        tokens: Some(Rate::per_minute(tpm)),
        concurrency: None,
    }]
}

/// Mean time of one admission, over `iters`, on this thread's runtime.
fn run(sys: &mut SystemRunner, backend: &Arc<dyn LimiterBackend>, iters: u64, expect_ok: bool) -> Duration {
    sys.block_on(async {
        let t0 = Instant::now();
        for _ in 0..iters {
            let r = admit(backend, &[0], 10).await;
            assert_eq!(r.is_ok(), expect_ok);
        }
        t0.elapsed()
    })
}

fn bench_shared(c: &mut Criterion) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _redis = Redis(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH"),
    );
    let mut sys = System::new();
    let arbiter = Arbiter::new();
    let mut registry = ActorRegistry::default();
    let shared = sys.block_on(async {
        let s = ReplicasSpec {
            url: format!("redis://127.0.0.1:{port}"),
            timeout: Duration::from_millis(100),
            probe_interval: Duration::from_millis(20),
            prefix: "bench".into(),
            ca_pem: None,
            sentinel: None,
        };
        let h = ReplicasHandle::start(&s, &arbiter.handle(), &mut registry).unwrap();
        for _ in 0..500 {
            if h.is_up() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(h.is_up(), "redis did not come up");
        h
    });
    let huge = 1_000_000_000;
    let local: Arc<dyn LimiterBackend> = LimiterTable::new(spec(huge, huge));
    let redis: Arc<dyn LimiterBackend> = Arc::new(shared.limiter(LimiterTable::new(spec(huge, huge))));
    let spent: Arc<dyn LimiterBackend> = Arc::new(shared.limiter(LimiterTable::new(spec(1, huge))));
    // Spend the one request of `spent`, so its copy refuses from now on.
    sys.block_on(async { admit(&spent, &[0], 10).await.unwrap() });

    let mut g = c.benchmark_group("shared_limiter");
    g.bench_function("in_process", |b| b.iter_custom(|n| run(&mut sys, &local, n, true)));
    g.bench_function("redis_admit", |b| b.iter_custom(|n| run(&mut sys, &redis, n, true)));
    g.bench_function("redis_refused_fast_path", |b| b.iter_custom(|n| run(&mut sys, &spent, n, false)));
    g.finish();
    let calls = shared.link().stats.calls_total.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("redis calls made: {calls} (the fast path makes none)");
    arbiter.stop();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(2000))
        .sample_size(30)
        .nresamples(10_000)
        .configure_from_args();
    bench_shared(&mut c);
    c.final_summary();
}
