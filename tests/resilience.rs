//! Resilience over real HTTP, with the mock's faults: rate-limit cool-downs,
//! circuits opening and closing, timeouts falling back, template answers,
//! hedging, and a chaos run. Time runs on short clocks (cool-downs of a few
//! hundred milliseconds), polled with deadlines, never long sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sluice::mock::{Fault, MockOptions};

/// Two OpenAI-compatible providers `a` and `b` (mocks), and `extra`.
fn duo(a: std::net::SocketAddr, b: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
workers = 1
shutdown_timeout_ms = 1000

[[providers]]
name = "a"
kind = "openai"
base_url = "http://{a}/v1"
forward_headers = ["x-mock-*"]
first_byte_timeout_ms = 300
warm_connections = 0

[[providers]]
name = "b"
kind = "openai"
base_url = "http://{b}/v1"
forward_headers = ["x-mock-*"]
first_byte_timeout_ms = 2000
warm_connections = 0

[[keys]]
name = "tester"
key = "${{CLIENT_KEY}}"
{extra}
"#
    )
}

async fn chat(gw: &Gateway, model: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&chat_body(model, false))
        .send()
        .await
        .unwrap()
}

async fn status(gw: &Gateway) -> Value {
    client().get(gw.url("/status")).send().await.unwrap().json().await.unwrap()
}

/// The `/status` detail of one actor.
fn actor<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["actors"].as_array().unwrap().iter().find(|a| a["name"] == name).map(|a| &a["detail"]).unwrap()
}

fn breaker<'a>(s: &'a Value, deployment: &str) -> &'a Value {
    actor(s, "circuit_breakers")["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == deployment)
        .unwrap()
}

async fn metrics(gw: &Gateway) -> String {
    client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Poll `/status` until `f` holds.
async fn until_status(gw: &Gateway, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(gw).await;
        if f(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_429_cools_that_deployment_and_the_request_succeeds_elsewhere() {
    let a = start_mock_with(MockOptions {
        fail_rate: 1.0,
        faults: vec![Fault::RateLimit],
        retry_after_s: 30,
        ..Default::default()
    });
    let b = start_mock();
    let extra = r#"
[[models]]
name = "duo"
deployments = [{ provider = "a", model = "m", weight = 1000 }, { provider = "b", model = "m", weight = 1 }]
"#;
    let gw = Gateway::start(&duo(a.addr(), b.addr(), extra));
    let r = chat(&gw, "duo").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-deployment"], "b/m");
    // `a` cools for its Retry-After (30 s, under the 10 s default cap: 10 s),
    // without opening its circuit.
    let s = until_status(&gw, "a cooling", |s| breaker(s, "a/m")["cooling_remaining_s"].as_f64().unwrap() > 5.0).await;
    assert_eq!(breaker(&s, "a/m")["state"], "closed");
    assert_eq!(breaker(&s, "a/m")["rate_limited_total"], 1);
    for _ in 0..10 {
        let r = chat(&gw, "duo").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-sluice-deployment"], "b/m");
    }
    assert_eq!(a.stats().chat_total, 1, "a cooling deployment gets no traffic");
}

#[tokio::test]
async fn a_burst_of_500s_opens_the_circuit_and_a_half_open_probe_closes_it() {
    let a = start_mock_with(MockOptions { fail_rate: 1.0, faults: vec![Fault::ServerError], ..Default::default() });
    let b = start_mock();
    let extra = r#"
[breaker]
min_requests = 3
failure_count = 3
failure_ratio = 0.5
cooldown_ms = 300

[[models]]
name = "duo"
deployments = [{ provider = "a", model = "m", weight = 1000 }, { provider = "b", model = "m", weight = 1 }]
"#;
    let gw = Gateway::start(&duo(a.addr(), b.addr(), extra));
    // Every request still succeeds (on b) while a fails.
    let mut sent = 0;
    loop {
        assert_eq!(chat(&gw, "duo").await.status(), 200);
        sent += 1;
        if breaker(&status(&gw).await, "a/m")["state"] == "open" {
            break;
        }
        assert!(sent < 50, "the circuit never opened");
    }
    let seen_by_a = a.stats().chat_total;
    for _ in 0..5 {
        assert_eq!(chat(&gw, "duo").await.headers()["x-sluice-deployment"], "b/m");
    }
    assert_eq!(a.stats().chat_total, seen_by_a, "an open circuit gets no traffic");
    // a recovers; after the cool-down one probe goes through and closes it.
    a.set_faults(0.0, vec![]);
    until_status(&gw, "cool-down over", |s| breaker(s, "a/m")["open_remaining_s"].as_f64().unwrap() == 0.0).await;
    let r = chat(&gw, "duo").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-deployment"], "a/m", "the probe goes to a");
    let s = until_status(&gw, "closed", |s| breaker(s, "a/m")["state"] == "closed").await;
    assert_eq!(breaker(&s, "a/m")["opens_total"], 1);
    // The transitions are metrics too (process-wide in this test binary, so
    // other tests' `a/m` may add to them: at least ours are there).
    let m = metrics(&gw).await;
    assert!(metric(&m, "sluice_circuit_transitions_total", &["a/m", "to=\"open\""]) >= 1.0, "{m}");
    assert!(metric(&m, "sluice_circuit_transitions_total", &["a/m", "to=\"closed\""]) >= 1.0);
}

#[tokio::test]
async fn a_hang_hits_the_first_byte_timeout_and_falls_back() {
    let a = start_mock_with(MockOptions { fail_rate: 1.0, faults: vec![Fault::Hang], ..Default::default() });
    let b = start_mock();
    let extra = r#"
[[models]]
name = "primary"
deployments = [{ provider = "a", model = "m" }]
fallbacks = ["backup"]
max_attempts = 2

[[models]]
name = "backup"
deployments = [{ provider = "b", model = "m" }]
"#;
    let gw = Gateway::start(&duo(a.addr(), b.addr(), extra));
    let t = std::time::Instant::now();
    let r = chat(&gw, "primary").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-deployment"], "b/m");
    assert!(t.elapsed() >= Duration::from_millis(300), "waited for the first-byte timeout");
    let m = metrics(&gw).await;
    assert_eq!(metric(&m, "sluice_fallbacks_total", &["from=\"primary\"", "to=\"backup\""]), 1.0);
    let s = status(&gw).await;
    let primary = s["models"].as_array().unwrap().iter().find(|m| m["model"] == "primary").unwrap();
    assert_eq!(primary["fallbacks_taken"], 1);
    let a_last = &actor(&s, "model_availability")["deployments"][0]["last_error"]["message"];
    assert!(a_last.as_str().unwrap().contains("first byte timeout"), "{s}");
}

#[tokio::test]
async fn a_stream_cut_after_its_first_byte_counts_against_the_deployment() {
    let a = start_mock();
    let b = start_mock();
    let extra = r#"
[[models]]
name = "solo"
deployments = [{ provider = "a", model = "m" }]
"#;
    let gw = Gateway::start(&duo(a.addr(), b.addr(), extra));
    let body = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-mock-fault", "cut")
        .json(&chat_body("solo", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let last: Value = serde_json::from_str(sse_data(&body).last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "upstream_error");
    let s = until_status(&gw, "the cut counted", |s| breaker(s, "a/m")["failures_total"] == 1).await;
    // The attempt itself succeeded (first event arrived); the cut came after.
    assert_eq!(breaker(&s, "a/m")["successes_total"], 1);
    let avail = actor(&s, "model_availability")["deployments"].as_array().unwrap();
    assert!(avail[0]["last_error"]["message"].as_str().unwrap().contains("cut off"), "{s}");
}

#[tokio::test]
async fn every_deployment_down_gives_503_or_the_template() {
    let (a, b) = (dead_addr(), dead_addr());
    let extra = r#"
[[models]]
name = "duo"
deployments = [{ provider = "a", model = "m" }, { provider = "b", model = "m" }]

[[models]]
name = "kind"
deployments = [{ provider = "a", model = "m" }]
fallback_response = "Our models are busy right now; please try again in a minute."
"#;
    let gw = Gateway::start(&duo(a, b, extra));
    let r = chat(&gw, "duo").await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_deployment_available");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("a/m") && msg.contains("b/m"), "{msg}");

    let r = chat(&gw, "kind").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-fallback"], "template");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Our models are busy right now; please try again in a minute.");
    // Streamed the same way.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&chat_body("kind", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-sluice-fallback"], "template");
    let data = sse_data(&r.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(data.iter().any(|d| d.contains("Our models are busy")));
}

#[tokio::test]
async fn the_hedge_wins_against_a_slow_deployment_and_the_loser_is_closed() {
    let a = start_mock_with(MockOptions { delay_ms: 3000, ..Default::default() });
    let b = start_mock();
    let extra = r#"
[[models]]
name = "hedged"
deployments = [{ provider = "a", model = "m", weight = 100000 }, { provider = "b", model = "m", weight = 1 }]
hedge = { after_ms = 100 }
"#;
    let cfg = duo(a.addr(), b.addr(), extra).replace("first_byte_timeout_ms = 300", "first_byte_timeout_ms = 10000");
    let gw = Gateway::start(&cfg);
    let t = std::time::Instant::now();
    let r = chat(&gw, "hedged").await;
    let took = t.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-deployment"], "b/m");
    assert!(took >= Duration::from_millis(100) && took < Duration::from_millis(2000), "{took:?}");
    // The slow attempt was cancelled: a saw its connection close.
    wait_until(Duration::from_secs(5), || {
        let s = a.stats();
        s.chat_total == 1 && s.connections_active == 0 && s.connections_closed >= 1
    })
    .await;
    let m = metrics(&gw).await;
    assert_eq!(metric(&m, "sluice_hedges_total", &["model=\"hedged\""]), 1.0);
    assert_eq!(metric(&m, "sluice_hedge_wins_total", &["model=\"hedged\""]), 1.0);
    let s = status(&gw).await;
    let model = s["models"].as_array().unwrap().iter().find(|m| m["model"] == "hedged").unwrap();
    assert_eq!((model["hedges"].as_u64(), model["hedge_wins"].as_u64()), (Some(1), Some(1)));
}

#[tokio::test]
async fn a_provider_failing_its_health_probe_is_tried_last() {
    let a = dead_addr();
    let b = start_mock();
    let extra = r#"
[[models]]
name = "duo"
deployments = [{ provider = "a", model = "m", weight = 100000 }, { provider = "b", model = "m", weight = 1 }]
"#;
    let cfg = duo(a, b.addr(), extra).replacen(
        "warm_connections = 0",
        "warm_connections = 0\nhealth_probe_interval_ms = 50",
        1,
    );
    let gw = Gateway::start(&cfg);
    let s =
        until_status(&gw, "a unhealthy", |s| actor(s, "model_availability")["providers"][0]["health"] == "unhealthy")
            .await;
    assert!(actor(&s, "model_availability")["deployments"][0]["healthy"] == false);
    // Despite its weight, a is now tried only after b: no failed attempt first.
    let r = chat(&gw, "duo").await;
    assert_eq!(r.headers()["x-sluice-deployment"], "b/m");
    // (Metrics are process-wide in this test binary; /status is this gateway's.)
    let s = status(&gw).await;
    let a_stats = &actor(&s, "model_availability")["deployments"][0];
    assert_eq!((a_stats["successes"].as_u64(), a_stats["failures"].as_u64()), (Some(0), Some(0)), "{s}");
}

#[tokio::test]
async fn timeouts_can_be_set_per_model() {
    let a = start_mock_with(MockOptions { delay_ms: 500, ..Default::default() });
    let b = start_mock();
    let extra = r#"
[[models]]
name = "patient"
deployments = [{ provider = "a", model = "m" }]

[[models]]
name = "hasty"
deployments = [{ provider = "a", model = "m" }]
timeouts = { first_byte_ms = 100 }
max_attempts = 1
"#;
    let cfg = duo(a.addr(), b.addr(), extra).replace("first_byte_timeout_ms = 300", "first_byte_timeout_ms = 2000");
    let gw = Gateway::start(&cfg);
    assert_eq!(chat(&gw, "patient").await.status(), 200);
    let r = chat(&gw, "hasty").await;
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("100 ms"), "{v}");
}

#[tokio::test]
async fn context_window_picks_a_fallback_that_fits_or_refuses() {
    let a = start_mock();
    let b = start_mock();
    let extra = r#"
[[models]]
name = "small"
deployments = [{ provider = "a", model = "m" }]
context_window = 100
fallbacks = ["large"]

[[models]]
name = "large"
deployments = [{ provider = "b", model = "m" }]
context_window = 100000

[[models]]
name = "tiny"
deployments = [{ provider = "a", model = "m" }]
context_window = 10
"#;
    let gw = Gateway::start(&duo(a.addr(), b.addr(), extra));
    let long = json!({"model": "small", "messages": [{"role": "user", "content": "word ".repeat(200)}]});
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&long).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-deployment"], "b/m");
    let r = chat(&gw, "small").await;
    assert_eq!(r.headers()["x-sluice-deployment"], "a/m", "a short prompt fits the small model");
    let r = chat(&gw, "tiny").await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
}

#[tokio::test]
async fn chaos_every_request_succeeds_and_the_failing_circuit_opens() {
    let a = start_mock_with(MockOptions {
        fail_rate: 0.3,
        faults: vec![Fault::ServerError, Fault::RateLimit, Fault::Hang, Fault::Reset],
        // Retry-After: 0 keeps `a` in rotation after its 429s, so the run
        // exercises the circuit (a 1 s cool-down would sideline it instead).
        retry_after_s: 0,
        seed: Some(42),
        ..Default::default()
    });
    let b = start_mock();
    let extra = r#"
[breaker]
min_requests = 10
failure_count = 5
failure_ratio = 0.1
cooldown_ms = 200
window_ms = 5000

[routing]
max_attempts = 3
backoff_base_ms = 5
backoff_429_base_ms = 10

[[models]]
name = "duo"
deployments = [{ provider = "a", model = "m" }, { provider = "b", model = "m" }]
"#;
    let cfg = duo(a.addr(), b.addr(), extra).replace("first_byte_timeout_ms = 300", "first_byte_timeout_ms = 150");
    let gw = std::sync::Arc::new(Gateway::start(&cfg));
    let http = client();
    let results: Vec<u16> = futures_util::stream::iter(0..2000)
        .map(|_| {
            let (gw, http) = (gw.clone(), http.clone());
            async move {
                let r = http
                    .post(gw.url("/v1/chat/completions"))
                    .bearer_auth(CLIENT_KEY)
                    .json(&chat_body("duo", false))
                    .send()
                    .await
                    .unwrap();
                let s = r.status().as_u16();
                if s != 200 {
                    eprintln!("failed: {s} {}", r.text().await.unwrap_or_default());
                }
                s
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed = results.iter().filter(|s| **s != 200).count();
    assert_eq!(failed, 0, "{failed} of 2000 requests failed for the client");
    let s = status(&gw).await;
    assert!(breaker(&s, "a/m")["opens_total"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(breaker(&s, "b/m")["opens_total"], 0);
    let m = metrics(&gw).await;
    assert!(metric(&m, "sluice_retries_total", &["model=\"duo\""]) > 0.0);
}
