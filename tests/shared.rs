//! Shared mode (`[shared] redis_url`) over real HTTP, with separate Sluice
//! processes (the built binary) sharing one real `redis-server`: one limit
//! across three replicas, spend that adds up, budgets that hold, a cache
//! entry one replica stored read by another, news of a 429 cool-down, and
//! Redis killed and restarted under load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::redis_server::RedisServer;
use common::*;
use serde_json::{Value, json};

const KEY_A: &str = "sk-shared-key-a";
const KEY_B: &str = "sk-shared-key-b";

/// One Sluice process; killed when dropped.
struct Replica {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Replica {
    fn spawn(config: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config).unwrap();
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config", path.to_str().unwrap(), "--listen", &addr.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Replica { addr, child, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn health(&self) -> Option<Value> {
        let r = client().get(self.url("/health")).send().await.ok()?;
        r.json().await.ok()
    }

    /// Wait until it serves, uses Redis and hears the other replicas.
    async fn wait_shared(&self) {
        for _ in 0..1000 {
            if let Some(h) = self.health().await
                && h["status"] == "healthy"
                && actor(&self.status().await, "shared_state")["news_subscribed"] == true
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("replica {} never became healthy with redis: {:?}", self.addr, self.health().await);
    }

    async fn status(&self) -> Value {
        client().get(self.url("/status")).send().await.unwrap().json().await.unwrap()
    }

    async fn chat(&self, key: &str, body: &Value) -> reqwest::Response {
        client().post(self.url("/v1/chat/completions")).bearer_auth(key).json(body).send().await.unwrap()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(mock: SocketAddr, redis: &str, key_a: &str, extra: &str) -> String {
    format!(
        r#"
[server]
workers = 2

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
forward_headers = ["x-mock-*"]
warm_connections = 0

[[models]]
name = "m"
deployments = [{{ provider = "up", model = "mock-m" }}]
price = {{ input_per_mtok = 2.0, output_per_mtok = 8.0 }}

[[keys]]
name = "a"
key = "{KEY_A}"
{key_a}

[[keys]]
name = "b"
key = "{KEY_B}"

[shared]
redis_url = "{redis}"
probe_interval_ms = 50
{extra}
"#
    )
}

fn actor<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["actors"].as_array().unwrap().iter().find(|a| a["name"] == name).map(|a| &a["detail"]).unwrap()
}

/// Key `name`'s spend today, as a replica's `/status` shows it.
fn today_usd(status: &Value, name: &str) -> f64 {
    let spend = actor(status, "rate_limiter")["spend"].as_array().unwrap();
    spend.iter().find(|k| k["key"] == name).and_then(|k| k["today_usd"].as_f64()).unwrap_or(0.0)
}

/// The cost of one answer at model m's price.
fn cost(resp: &Value) -> f64 {
    let u = &resp["usage"];
    (u["prompt_tokens"].as_f64().unwrap() * 2.0 + u["completion_tokens"].as_f64().unwrap() * 8.0) / 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_limit_exactly() {
    let redis = RedisServer::start().await;
    let mock = start_mock();
    // Exactness is the point here, not degraded mode: a Redis call that
    // outlives the default 50 ms (a loaded CI machine) would let a replica
    // decide alone and admit more than 12.
    let cfg = config(mock.addr(), &redis.url(), "rpm = 12", "timeout_ms = 2000");
    let replicas: Vec<Replica> = (0..3).map(|_| Replica::spawn(&cfg)).collect();
    for r in &replicas {
        r.wait_shared().await;
    }
    assert_eq!(actor(&replicas[0].status().await, "rate_limiter")["backend"], "redis");
    // A burst of 36, spread over the three replicas at once.
    let replicas = Arc::new(replicas);
    let mut tasks = Vec::new();
    for i in 0..36 {
        let rs = replicas.clone();
        tasks.push(tokio::spawn(async move {
            let r = rs[i % 3].chat(KEY_A, &chat_body("m", false)).await;
            r.status().as_u16()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let ok = codes.iter().filter(|&&c| c == 200).count();
    let refused = codes.iter().filter(|&&c| c == 429).count();
    assert_eq!((ok, refused), (12, 24), "{codes:?}");
    // Each replica refuses on its own now (the fast path), and says so.
    for r in replicas.iter() {
        let resp = r.chat(KEY_A, &chat_body("m", false)).await;
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    }
    // Another key is not affected.
    assert_eq!(replicas[1].chat(KEY_B, &chat_body("m", false)).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spend_adds_up_across_replicas_and_budgets_hold() {
    let redis = RedisServer::start().await;
    let mock = start_mock();
    // Key a may spend about two answers' worth a day.
    let cfg = config(mock.addr(), &redis.url(), "daily_budget_usd = 0.0004", "timeout_ms = 2000");
    let (a, b, c) = (Replica::spawn(&cfg), Replica::spawn(&cfg), Replica::spawn(&cfg));
    for r in [&a, &b, &c] {
        r.wait_shared().await;
    }
    // Key b has no budget: 3 answers on a, 2 on b.
    let mut total = 0.0;
    for r in [&a, &a, &a, &b, &b] {
        let resp = r.chat(KEY_B, &chat_body("m", false)).await;
        assert_eq!(resp.status(), 200);
        total += cost(&resp.json().await.unwrap());
    }
    assert!(total > 0.0);
    // c served none of them and sees them all; so do a and b.
    for r in [&c, &a, &b] {
        let mut seen = 0.0;
        for _ in 0..500 {
            seen = today_usd(&r.status().await, "b");
            if (seen - total).abs() < 1e-9 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!((seen - total).abs() < 1e-9, "replica {} sees {seen}, spent {total}", r.addr);
    }
    // And Redis holds exactly that.
    let mut conn = redis.conn().await;
    let day = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400;
    let nanos: i64 =
        redis::cmd("HGET").arg("sluice:spend:b").arg(format!("d:{day}")).query_async(&mut conn).await.unwrap();
    assert!((nanos as f64 / 1e9 - total).abs() < 1e-8, "{nanos}");

    // Key a's budget: spent on a, it holds on b (at most what was in flight
    // may overshoot; these requests are sequential, so nothing does).
    let mut served = 0;
    for _ in 0..10 {
        let resp = a.chat(KEY_A, &chat_body("m", false)).await;
        if resp.status() != 200 {
            assert_eq!(resp.status(), 429);
            break;
        }
        served += 1;
    }
    assert!((1..10).contains(&served), "{served}");
    let mut refused = None;
    for _ in 0..200 {
        let resp = b.chat(KEY_A, &chat_body("m", false)).await;
        if resp.status() == 429 {
            refused = Some(resp.json::<Value>().await.unwrap());
            break;
        }
        // The news may take a moment; a request that slips through is one
        // in flight before it arrived.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = refused.expect("replica b never saw key a's budget spent");
    assert_eq!(refused["error"]["code"], "insufficient_quota", "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cache_entry_stored_by_one_replica_is_a_hit_on_another() {
    let redis = RedisServer::start().await;
    let mock = start_mock();
    let cfg = config(mock.addr(), &redis.url(), "", "").replace(
        "price = { input_per_mtok = 2.0, output_per_mtok = 8.0 }",
        "price = { input_per_mtok = 2.0, output_per_mtok = 8.0 }\ncache = { ttl_ms = 60000 }",
    );
    let (a, b) = (Replica::spawn(&cfg), Replica::spawn(&cfg));
    a.wait_shared().await;
    b.wait_shared().await;
    let body = json!({"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "cache me"}]});
    let first = a.chat(KEY_A, &body).await;
    assert_eq!(first.headers()["x-sluice-cache"], "MISS");
    let first: Value = first.json().await.unwrap();
    let calls = mock.stats().chat_total;
    // The write to Redis is in the background: wait until it is there.
    let mut conn = redis.conn().await;
    for _ in 0..500 {
        let keys: Vec<String> = redis::cmd("KEYS").arg("sluice:cache:*").query_async(&mut conn).await.unwrap();
        if !keys.is_empty() {
            let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut conn).await.unwrap();
            assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = b.chat(KEY_A, &body).await;
    assert_eq!(second.headers()["x-sluice-cache"], "HIT");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["choices"], second["choices"]);
    assert_eq!(mock.stats().chat_total, calls, "b did not call upstream");
    // As a stream too, from b's in-process tier now.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let s = b.chat(KEY_A, &sbody).await;
    assert_eq!(s.headers()["x-sluice-cache"], "HIT");
    let text = sse_text(&s.text().await.unwrap());
    assert_eq!(json!(text), first["choices"][0]["message"]["content"]);
    let status = b.status().await;
    assert_eq!(actor(&status, "shared_state")["cache"]["hits"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_cool_down_seen_by_one_replica_is_skipped_by_the_others() {
    let redis = RedisServer::start().await;
    // Two deployments: the first (its own mock) answers every call 429 with
    // Retry-After: 5; the second is fine.
    let limited = start_mock_with(sluice::mock::MockOptions {
        fail_rate: 1.0,
        faults: vec![sluice::mock::Fault::RateLimit],
        retry_after_s: 5,
        ..Default::default()
    });
    let fine = start_mock();
    let fine_provider = format!(
        "[[providers]]\nname = \"fine\"\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\nwarm_connections = 0",
        fine.addr()
    );
    let cfg = config(limited.addr(), &redis.url(), "", &fine_provider).replace(
        r#"deployments = [{ provider = "up", model = "mock-m" }]"#,
        r#"deployments = [{ provider = "up", model = "mock-m" }, { provider = "fine", model = "mock-other", price = { input_per_mtok = 50.0, output_per_mtok = 50.0 } }]
strategy = "cost""#,
    );
    let (a, b) = (Replica::spawn(&cfg), Replica::spawn(&cfg));
    a.wait_shared().await;
    b.wait_shared().await;
    // a's request meets the 429 and is served by the other deployment.
    let resp = a.chat(KEY_A, &chat_body("m", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-deployment"], "fine/mock-other");
    let limited_calls = limited.stats().chat_total;
    assert!(limited_calls >= 1);
    // b hears of it: its breaker for up/mock-m is cooling.
    let mut cooling = 0.0;
    for _ in 0..300 {
        let s = b.status().await;
        let deps = actor(&s, "circuit_breakers")["deployments"].as_array().unwrap().clone();
        cooling =
            deps.iter().find(|d| d["deployment"] == "up/mock-m").unwrap()["cooling_remaining_s"].as_f64().unwrap();
        if cooling > 0.0 {
            assert_eq!(actor(&s, "circuit_breakers")["remote_holds_total"], 1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cooling > 0.0, "b never heard of the cool-down");
    // b routes around it without trying it: the limited mock saw no new call.
    let resp = b.chat(KEY_A, &chat_body("m", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-deployment"], "fine/mock-other");
    assert_eq!(limited.stats().chat_total, limited_calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_run_fails_nothing_and_shared_state_resumes_when_it_returns() {
    // Persistent, as production runs it: what Redis acknowledged survives
    // the kill; what it could not take meanwhile, the replicas keep.
    let mut redis = RedisServer::start_persistent().await;
    let mock = start_mock();
    let cfg = config(mock.addr(), &redis.url(), "rpm = 100000", "");
    let replicas = Arc::new([Replica::spawn(&cfg), Replica::spawn(&cfg)]);
    for r in replicas.iter() {
        r.wait_shared().await;
    }
    // Load on both replicas, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let spent = Arc::new(std::sync::Mutex::new(0.0f64));
    let mut load = Vec::new();
    for w in 0..4 {
        let (rs, stop, failed, served, spent) =
            (replicas.clone(), stop.clone(), failed.clone(), served.clone(), spent.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let resp = rs[w % 2].chat(KEY_A, &chat_body("m", false)).await;
                if resp.status() == 200 {
                    let v: Value = resp.json().await.unwrap();
                    *spent.lock().unwrap() += cost(&v);
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let wait_served = |n: u64| {
        let served = served.clone();
        async move {
            let target = served.load(Ordering::Relaxed) + n;
            wait_until(Duration::from_secs(20), || served.load(Ordering::Relaxed) >= target).await;
        }
    };
    wait_served(50).await;
    redis.kill();
    // Both replicas notice and say so; requests keep flowing.
    for r in replicas.iter() {
        let mut degraded = None;
        for _ in 0..500 {
            let h = r.health().await.unwrap();
            if h["status"] == "degraded" {
                degraded = Some(h);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let h = degraded.expect("health never said degraded");
        assert!(h["reasons"].to_string().contains("redis is unreachable"), "{h}");
        let s = r.status().await;
        assert_eq!(actor(&s, "shared_state")["link"]["state"], "down", "{s}");
        assert!(!s.to_string().contains("redis://127.0.0.1:0"));
    }
    wait_served(100).await;
    let metrics = client().get(replicas[0].url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sluice_redis_up 0"), "{metrics}");

    // Back on the same port: no restart of Sluice needed.
    redis.restart().await;
    for r in replicas.iter() {
        r.wait_shared().await;
    }
    wait_served(50).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed because redis was down");

    // Shared again: the limiter state is back in Redis, and every answer's
    // spend — before, during and after the outage — is counted exactly once.
    let mut conn = redis.conn().await;
    let exists: i64 = redis::cmd("EXISTS").arg("sluice:rl:key:a").query_async(&mut conn).await.unwrap();
    assert_eq!(exists, 1);
    let day = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400;
    let total = *spent.lock().unwrap();
    let n = served.load(Ordering::Relaxed) as f64;
    let mut nanos = 0i64;
    for _ in 0..500 {
        nanos = redis::cmd("HGET")
            .arg("sluice:spend:a")
            .arg(format!("d:{day}"))
            .query_async::<Option<i64>>(&mut conn)
            .await
            .unwrap()
            .unwrap_or(0);
        if (nanos as f64 / 1e9 - total).abs() <= n * 1e-9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!((nanos as f64 / 1e9 - total).abs() <= n * 1e-9, "redis has {nanos} nano-USD, answers cost {total}");
}

/// The Responses API's conversations live in Redis: a conversation one
/// replica stored is continued, read and deleted on another; the byte
/// bound holds across replicas (the oldest go first).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conversations_continue_on_another_replica() {
    let redis = RedisServer::start().await;
    let mock = start_mock();
    let cfg = config(mock.addr(), &redis.url(), "", "[responses]\nmax_bytes = 65536\nmax_entry_bytes = 16384");
    let (a, b) = (Replica::spawn(&cfg), Replica::spawn(&cfg));
    for r in [&a, &b] {
        r.wait_shared().await;
    }
    let post = |r: &Replica, body: Value| {
        let url = r.url("/v1/responses");
        async move { client().post(url).bearer_auth(KEY_A).json(&body).send().await.unwrap() }
    };
    let first: Value = post(&a, json!({"model": "m", "input": "My name is Ada."})).await.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    let next = post(&b, json!({"model": "m", "input": "Who am I?", "previous_response_id": id})).await;
    assert_eq!(next.status(), 200);
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert!(up["messages"].to_string().contains("My name is Ada."), "{up}");
    let get = |r: &Replica, key: &'static str| {
        let url = r.url(&format!("/v1/responses/{id}"));
        async move { client().get(url).bearer_auth(key).send().await.unwrap() }
    };
    assert_eq!(get(&b, KEY_A).await.json::<Value>().await.unwrap(), first);
    assert_eq!(get(&b, KEY_B).await.status(), 404, "another key's");
    let del = client().delete(b.url(&format!("/v1/responses/{id}"))).bearer_auth(KEY_A).send().await.unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(get(&a, KEY_A).await.status(), 404, "deleted everywhere");
    assert_eq!(actor(&a.status().await, "conversations")["stored_shared"], 1);

    // 64 KiB for every conversation together: the oldest go first.
    let mut ids = Vec::new();
    for i in 0..40 {
        let r = if i % 2 == 0 { &a } else { &b };
        let v: Value = post(r, json!({"model": "m", "input": "x ".repeat(1000)})).await.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let used: u64 = redis::cmd("GET").arg("sluice:responses:bytes").query_async(&mut conn).await.unwrap();
    assert!(used <= 65536, "{used}");
    let oldest = client().get(a.url(&format!("/v1/responses/{}", ids[0]))).bearer_auth(KEY_A).send().await.unwrap();
    assert_eq!(oldest.status(), 404);
    let newest = client().get(a.url(&format!("/v1/responses/{}", ids[39]))).bearer_auth(KEY_A).send().await.unwrap();
    assert_eq!(newest.status(), 200);
}

/// Send a whole chat request on a fresh connection and return it unread:
/// dropping it is a client that leaves.
async fn send_raw(to: SocketAddr, key: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let body = serde_json::to_vec(&chat_body("m", false)).unwrap();
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    s
}

/// Poll a replica's `/status` until `f` holds (or fail after 10 s).
async fn until_status(r: &Replica, what: &str, f: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = r.status().await;
        if f(&s) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {}", actor(&s, "rate_limiter"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn key_a_inflight(s: &Value) -> u64 {
    let scopes = actor(s, "rate_limiter")["scopes"].as_array().unwrap();
    let a = scopes.iter().find(|x| x["scope"] == "key:a").unwrap();
    a["concurrency"]["inflight"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_cancelled_while_redis_decides_gives_back_its_concurrency_slot() {
    let redis = RedisServer::start().await;
    let mock = start_mock();
    let cfg = config(mock.addr(), &redis.url(), "rpm = 1000\nmax_concurrent = 1", "timeout_ms = 5000");
    let r = Replica::spawn(&cfg);
    r.wait_shared().await;
    // Redis holds every command for 1.5 s: the admission waits for it,
    // holding the key's one concurrency slot.
    let mut c = redis.conn().await;
    redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("ALL").query_async::<()>(&mut c).await.unwrap();
    let client_side = send_raw(r.addr, KEY_A).await;
    until_status(&r, "the slot is taken while Redis decides", |s| key_a_inflight(s) == 1).await;
    // The client leaves mid-way: the slot must come back (before, it was
    // held for good, and the key refused every request after).
    drop(client_side);
    until_status(&r, "the slot is given back", |s| key_a_inflight(s) == 0).await;
    assert_eq!(mock.stats().chat_total, 0);
    // Once Redis answers again, the key is served.
    let mut ok = false;
    for _ in 0..200 {
        if r.chat(KEY_A, &chat_body("m", false)).await.status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the key is never served again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_waiting_for_a_shared_limit_leaves_no_place_behind() {
    let redis = RedisServer::start().await;
    let mock = start_mock();
    let extra = "[queue]\nmax_wait_ms = 120000\nmax_size = 1";
    let r = Replica::spawn(&config(mock.addr(), &redis.url(), "rpm = 1", extra));
    r.wait_shared().await;
    assert_eq!(r.chat(KEY_A, &chat_body("m", false)).await.status(), 200);
    // The next waits (up to a minute) for the shared limit, then leaves.
    let client_side = send_raw(r.addr, KEY_A).await;
    let waiting = |s: &Value| actor(s, "rate_limiter")["queue"]["waiting"].as_u64().unwrap();
    until_status(&r, "the request waits", |s| waiting(s) == 1).await;
    drop(client_side);
    // Before, the count stayed: with max_size = 1, every later request of
    // any key that had to wait was shed with 503 for good.
    until_status(&r, "its place is free", |s| waiting(s) == 0).await;
    assert_eq!(mock.stats().chat_total, 1);
}
