//! Supervision over real HTTP (test builds only: `--features fault-injection`):
//! an actor that panics is restarted by its supervisor, the gateway keeps
//! serving meanwhile, and the circuit state and cached answers survive the restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use sluice::mock::{Fault, MockOptions};

async fn status(gw: &Gateway) -> Value {
    client().get(gw.url("/status")).send().await.unwrap().json().await.unwrap()
}

fn actor<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["actors"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap()
}

#[tokio::test]
async fn a_panicking_actor_is_restarted_with_its_state_and_requests_keep_flowing() {
    let bad = start_mock_with(MockOptions { fail_rate: 1.0, faults: vec![Fault::ServerError], ..Default::default() });
    let good = start_mock();
    let cfg = format!(
        r#"
[server]
workers = 1
[breaker]
min_requests = 2
failure_count = 2
cooldown_ms = 60000
[[providers]]
name = "bad"
kind = "openai"
base_url = "http://{}/v1"
warm_connections = 0
[[providers]]
name = "good"
kind = "openai"
base_url = "http://{}/v1"
warm_connections = 0
[[models]]
name = "duo"
deployments = [{{ provider = "bad", model = "m", weight = 1000 }}, {{ provider = "good", model = "m", weight = 1 }}]
[[keys]]
name = "t"
key = "${{CLIENT_KEY}}"
"#,
        bad.addr(),
        good.addr()
    );
    let gw = Gateway::start(&cfg);
    let chat =
        || client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("duo", false)).send();
    // Open bad's circuit.
    for _ in 0..20 {
        assert_eq!(chat().await.unwrap().status(), 200);
        let s = status(&gw).await;
        if actor(&s, "circuit_breakers")["detail"]["deployments"][0]["state"] == "open" {
            break;
        }
    }
    let s = status(&gw).await;
    assert_eq!(actor(&s, "circuit_breakers")["detail"]["deployments"][0]["state"], "open");

    for name in ["circuit_breakers", "model_availability"] {
        let r = client().post(gw.url(&format!("/admin/faults/panic?actor={name}"))).send().await.unwrap();
        assert_eq!(r.status(), 202);
        // Requests keep being served while the actor restarts.
        assert_eq!(chat().await.unwrap().status(), 200);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let s = status(&gw).await;
            let a = actor(&s, name);
            if a["restarts"] == 1 && a["state"] == "running" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} was not restarted: {s}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // State survived: bad's circuit is still open, so bad gets nothing more.
    let s = status(&gw).await;
    assert_eq!(actor(&s, "circuit_breakers")["detail"]["deployments"][0]["state"], "open", "{s}");
    let seen = bad.stats().chat_total;
    for _ in 0..5 {
        let r = chat().await.unwrap();
        assert_eq!(r.headers()["x-sluice-deployment"], "good/m");
    }
    assert_eq!(bad.stats().chat_total, seen);
    let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        m.lines().any(|l| l.starts_with("sluice_actor_restarts_total")
            && l.contains("circuit_breakers")
            && l.ends_with(" 1")),
        "{m}"
    );
    let h: Value = client().get(gw.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "healthy");
}

/// A repeat of `text` on the cached model: its `x-sluice-cache` header.
async fn cached_once(gw: &Gateway, text: &str) -> String {
    let body = serde_json::json!({"model": "cached", "messages": [{"role": "user", "content": text}]});
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-sluice-cache"].to_str().unwrap().to_string()
}

/// Until a repeat of `text` is a HIT (the store is asynchronous).
async fn until_hit(gw: &Gateway, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cached_once(gw, text).await != "HIT" {
        assert!(tokio::time::Instant::now() < deadline, "`{text}` was never stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_response_cache_restarts_and_keeps_its_entries() {
    let mock = start_mock();
    let extra = r#"
[[models]]
name = "cached"
deployments = [{ provider = "up", model = "mock-model" }]
cache = { ttl_ms = 60000, only_deterministic = false }
"#;
    let gw = Gateway::start(&config_for(mock.addr(), extra));
    assert_eq!(cached_once(&gw, "keep me").await, "MISS");
    until_hit(&gw, "keep me").await;
    let calls = mock.stats().chat_total;

    let r = client().post(gw.url("/admin/faults/panic?actor=response_cache")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    // Hits keep being served while the actor restarts (they read its snapshot).
    assert_eq!(cached_once(&gw, "keep me").await, "HIT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = status(&gw).await;
        let a = actor(&s, "response_cache");
        if a["restarts"] == 1 && a["state"] == "running" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "response_cache was not restarted: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The entry survived the restart, and the restarted actor stores new ones.
    assert_eq!(cached_once(&gw, "keep me").await, "HIT");
    assert_eq!(mock.stats().chat_total, calls);
    assert_eq!(cached_once(&gw, "new after restart").await, "MISS");
    until_hit(&gw, "new after restart").await;
    assert_eq!(mock.stats().chat_total, calls + 1);
}

/// Until `name` has been restarted `restarts` times and is in `state`.
async fn until_actor(gw: &Gateway, name: &str, restarts: u64, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = status(gw).await;
        let a = actor(&s, name);
        if a["restarts"] == restarts && a["state"] == state {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never reached {state} after {restarts} restarts: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn every_actor_is_restarted_after_a_panic() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let s = status(&gw).await;
    let names: Vec<String> =
        s["actors"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 6, "{s}");
    for name in &names {
        let r = client().post(gw.url(&format!("/admin/faults/panic?actor={name}"))).send().await.unwrap();
        assert_eq!(r.status(), 202, "{name}");
        until_actor(&gw, name, 1, "running").await;
    }
    let r = client().post(gw.url("/admin/faults/panic?actor=nobody")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let chat =
        client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("gpt-test", false));
    assert_eq!(chat.send().await.unwrap().status(), 200);
    let h: Value = client().get(gw.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "healthy", "{h}");
}

#[tokio::test]
async fn an_actor_that_keeps_panicking_is_failed_and_the_gateway_unhealthy() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let budget = sluice_actors::supervision::RESTART_BUDGET.max_restarts();
    // Within the budget: restarted each time.
    for n in 1..=u64::from(budget) {
        let r = client().post(gw.url("/admin/faults/panic?actor=rate_limiter")).send().await.unwrap();
        assert_eq!(r.status(), 202);
        until_actor(&gw, "rate_limiter", n, "running").await;
    }
    let h = client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    // One more panic within the window: failed, not restarted again.
    client().post(gw.url("/admin/faults/panic?actor=rate_limiter")).send().await.unwrap();
    let s = until_actor(&gw, "rate_limiter", u64::from(budget), "failed").await;
    assert!(actor(&s, "rate_limiter")["detail"]["error"].as_str().unwrap().contains("failed"), "{s}");
    // The others are untouched.
    assert_eq!(actor(&s, "circuit_breakers")["state"], "running");

    let h = client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(h.status(), 503);
    let h: Value = h.json().await.unwrap();
    assert_eq!(h["status"], "unhealthy");
    let reasons = h["reasons"].to_string();
    assert!(reasons.contains("actor rate_limiter failed"), "{h}");
    let ready = client().get(gw.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        m.lines()
            .any(|l| l.starts_with("sluice_actor_failures_total") && l.contains("rate_limiter") && l.ends_with(" 1")),
        "{m}"
    );
    // Requests are still served (admission reads the limiter's table, not
    // the actor) until a load balancer takes the replica out.
    let chat =
        client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("gpt-test", false));
    assert_eq!(chat.send().await.unwrap().status(), 200);
    // And it stays failed.
    client().post(gw.url("/admin/faults/panic?actor=rate_limiter")).send().await.unwrap();
    let s = status(&gw).await;
    assert_eq!(actor(&s, "rate_limiter")["state"], "failed");
    assert_eq!(actor(&s, "rate_limiter")["restarts"], u64::from(budget));
}

#[tokio::test]
async fn a_burst_while_the_rate_limiter_is_stalled_and_its_mailbox_full_loses_no_spend() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("spend.redb");
    let cfg = format!(
        r#"
[server]
workers = 2
[[providers]]
name = "up"
kind = "openai"
base_url = "http://{}/v1"
warm_connections = 0
[[models]]
name = "m"
deployments = [{{ provider = "up", model = "m" }}]
price = {{ input_per_mtok = 2.0, output_per_mtok = 8.0 }}
[[keys]]
name = "t"
key = "${{CLIENT_KEY}}"
[spend]
store = "{}"
"#,
        mock.addr(),
        store.display()
    );
    let gw = Gateway::start(&cfg);
    // Block the limiter's thread for 3 s and fill its mailbox to the brim.
    let r = client().post(gw.url("/admin/faults/stall?actor=rate_limiter&ms=3000")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let queued = r.json::<Value>().await.unwrap()["queued"].as_u64().unwrap();
    assert!(queued > 1000, "the mailbox was filled: {queued}");
    // A burst meanwhile: every answer's cost must reach the store.
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let url = gw.url("/v1/chat/completions");
            tokio::spawn(async move {
                let r = client().post(url).bearer_auth(CLIENT_KEY).json(&chat_body("m", false)).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                let u = &v["usage"];
                (u["prompt_tokens"].as_f64().unwrap() * 2.0 + u["completion_tokens"].as_f64().unwrap() * 8.0) / 1e6
            })
        })
        .collect();
    let mut spent = 0.0;
    for t in tasks {
        spent += t.await.unwrap();
    }
    eprintln!("burst of 100 served in {:?}, during the stall", started.elapsed());
    gw.shutdown();
    // A new process on the same store: every cent of the burst is there.
    let gw = Gateway::start(&cfg);
    let s = status(&gw).await;
    let today = actor(&s, "rate_limiter")["detail"]["spend"][0]["today_usd"].as_f64().unwrap();
    assert!((today - spent).abs() < 1e-9, "persisted {today} of {spent}");
}
