//! The response cache and single-flight over real HTTP, with the mock
//! counting the upstream calls it saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sluice::mock::Fault;

/// `gpt-test` and `same` (from `config_for`) plus `cached`, caching every
/// request, and `det`, caching only `temperature: 0`.
fn cached_config(mock: std::net::SocketAddr, extra: &str) -> String {
    let models = format!(
        r#"
[[models]]
name = "cached"
deployments = [{{ provider = "up", model = "mock-model" }}]
cache = {{ ttl_ms = 60000, only_deterministic = false }}

[[models]]
name = "det"
deployments = [{{ provider = "up", model = "mock-model" }}]
cache = {{}}
{extra}
"#
    );
    config_for(mock, &models)
}

fn body(model: &str, stream: bool, text: &str) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
        "messages": [{"role": "user", "content": text}]
    })
}

async fn post(gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn cache_header(r: &reqwest::Response) -> Option<String> {
    r.headers().get("x-sluice-cache").map(|v| v.to_str().unwrap().to_string())
}

fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_repeat_is_a_hit_whatever_its_whitespace_key_order_or_stream_flag() {
    let mock = start_mock();
    let gw = Gateway::start(&cached_config(mock.addr(), ""));
    let r = post(&gw, &body("cached", false, "hello cache"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(cache_header(&r).as_deref(), Some("MISS"));
    let first: Value = r.json().await.unwrap();
    assert_eq!(mock.stats().chat_total, 1);

    // Same request, other spelling: members reordered, spaces, a user id.
    let raw =
        r#" { "messages" : [ { "content" : "hello cache", "role" : "user" } ] , "user": "u-1", "model" : "cached" } "#;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(cache_header(&r).as_deref(), Some("HIT"));
    let again: Value = r.json().await.unwrap();
    assert_eq!(again, first, "a hit serves the stored answer as it was");

    // A stream client is served from the same entry, as SSE.
    let r = post(&gw, &body("cached", true, "hello cache"), &[]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("HIT"));
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    assert_eq!(sse_text(&text), content(&first));
    assert!(text.ends_with("data: [DONE]\n\n"));
    let usage =
        sse_data(&text).iter().filter_map(|d| serde_json::from_str::<Value>(d).ok()).find(|v| v["usage"].is_object());
    assert_eq!(usage.unwrap()["usage"], first["usage"], "usage included when asked");
    assert_eq!(mock.stats().chat_total, 1, "both hits made no upstream call");

    // Another question is another entry.
    let r = post(&gw, &body("cached", false, "something else"), &[]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("MISS"));
    assert_eq!(mock.stats().chat_total, 2);

    // A model without caching carries no header.
    let r = post(&gw, &body("gpt-test", false, "hello cache"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(cache_header(&r), None);

    let s = gateway_status(&gw).await;
    let d = actor_detail(&s, "response_cache");
    assert_eq!(d["hits"], 2);
    assert_eq!(d["misses"], 2);
    assert_eq!(d["entries"], 2);
    assert!(d["bytes"].as_u64().unwrap() > 0);
    assert!((d["hit_rate"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("sluice_cache_hits_total{model=\"cached\"}"), "{m}");
}

#[tokio::test]
async fn cache_control_bypasses_refreshes_and_bounds_age() {
    let mock = start_mock();
    let gw = Gateway::start(&cached_config(mock.addr(), ""));
    let b = body("cached", false, "control");
    assert_eq!(cache_header(&post(&gw, &b, &[]).await).as_deref(), Some("MISS"));
    assert_eq!(cache_header(&post(&gw, &b, &[]).await).as_deref(), Some("HIT"));
    // no-store: neither read nor stored.
    let r = post(&gw, &b, &[("cache-control", "no-store")]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("BYPASS"));
    assert_eq!(mock.stats().chat_total, 2);
    // no-cache: a fresh answer, stored for the next.
    let r = post(&gw, &b, &[("cache-control", "no-cache")]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("MISS"));
    assert_eq!(mock.stats().chat_total, 3);
    assert_eq!(cache_header(&post(&gw, &b, &[("cache-control", "max-age=60")]).await).as_deref(), Some("HIT"));
    // max-age=0: any stored answer is too old.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = post(&gw, &b, &[("cache-control", "max-age=0")]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("MISS"));
    assert_eq!(mock.stats().chat_total, 4);
}

#[tokio::test]
async fn only_deterministic_requests_are_cached_by_default() {
    let mock = start_mock();
    let gw = Gateway::start(&cached_config(mock.addr(), ""));
    let mut b = body("det", false, "roll the dice");
    assert_eq!(cache_header(&post(&gw, &b, &[]).await).as_deref(), Some("BYPASS"), "no temperature: 1");
    b["temperature"] = json!(0.7);
    assert_eq!(cache_header(&post(&gw, &b, &[]).await).as_deref(), Some("BYPASS"));
    b["temperature"] = json!(0);
    assert_eq!(cache_header(&post(&gw, &b, &[]).await).as_deref(), Some("MISS"));
    b["temperature"] = json!(0.0);
    assert_eq!(cache_header(&post(&gw, &b, &[]).await).as_deref(), Some("HIT"));
    assert_eq!(mock.stats().chat_total, 3);
}

#[tokio::test]
async fn errors_are_never_cached() {
    let mock = start_mock();
    let gw = Gateway::start(&cached_config(mock.addr(), ""));
    mock.set_faults(1.0, vec![Fault::ServerError]);
    let b = body("cached", false, "will fail");
    let r = post(&gw, &b, &[]).await;
    assert_eq!(r.status(), 502);
    assert_eq!(cache_header(&r).as_deref(), Some("MISS"));
    let failed = mock.stats().chat_total;
    mock.set_faults(0.0, vec![]);
    let r = post(&gw, &b, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(cache_header(&r).as_deref(), Some("MISS"), "the error was not stored");
    assert_eq!(mock.stats().chat_total, failed + 1);
    // A stream cut mid-way is not stored either.
    let s = body("cached", true, "cut me");
    let text = post(&gw, &s, &[("x-mock-fault", "cut")]).await.text().await.unwrap();
    assert!(text.contains("\"error\""), "{text}");
    let r = post(&gw, &s, &[("x-mock-fault", "cut")]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("MISS"));
}

#[tokio::test]
async fn a_stream_replayed_from_the_cache_matches_the_live_one() {
    let mock = start_mock();
    let gw = Gateway::start(&cached_config(mock.addr(), ""));
    let b = body("cached", true, "stream me");
    let r = post(&gw, &b, &[("x-mock-tokens", "12")]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("MISS"));
    let live = r.text().await.unwrap();
    let r = post(&gw, &b, &[("x-mock-tokens", "12")]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("HIT"));
    let replay = r.text().await.unwrap();
    assert_eq!(mock.stats().chat_total, 1);
    assert!(!sse_text(&live).is_empty());
    assert_eq!(sse_text(&replay), sse_text(&live));
    // Chunk for chunk: the replay is the live stream's events.
    assert_eq!(sse_data(&replay), sse_data(&live));
    // Without include_usage, the usage chunk is left out, as live.
    let mut nb = b.clone();
    nb["stream_options"] = Value::Null;
    let r = post(&gw, &nb, &[("x-mock-tokens", "12")]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("HIT"));
    let t = r.text().await.unwrap();
    assert!(sse_data(&t).iter().all(|d| !d.contains("\"choices\":[]")), "{t}");
    assert_eq!(sse_text(&t), sse_text(&live));
    // And a non-stream client gets the assembled answer.
    let r = post(&gw, &body("cached", false, "stream me"), &[("x-mock-tokens", "12")]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("HIT"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(content(&v), sse_text(&live));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["completion_tokens"], 12);
}

#[tokio::test]
async fn eviction_keeps_the_cache_within_its_bytes() {
    let mock = start_mock();
    let gw = Gateway::start(&cached_config(mock.addr(), "[cache]\nmax_bytes = 6000\nmax_entry_bytes = 3000"));
    for i in 0..8 {
        let r = post(&gw, &body("cached", false, &format!("question {i}")), &[]).await;
        assert_eq!(r.status(), 200);
    }
    let s = gateway_status(&gw).await;
    let d = actor_detail(&s, "response_cache");
    assert!(d["bytes"].as_u64().unwrap() <= 6000, "{d}");
    assert!(d["evictions"].as_u64().unwrap() >= 1, "{d}");
    assert_eq!(d["stores"], 8);
    // The most recent answer is still there; the first one was evicted.
    let r = post(&gw, &body("cached", false, "question 7"), &[]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("HIT"));
    let r = post(&gw, &body("cached", false, "question 0"), &[]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("MISS"));
}

async fn concurrent(gw: &Gateway, n: usize, b: &Value, headers: &[(&str, &str)]) -> Vec<(Option<String>, String)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let req = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(b);
            let req = headers.iter().fold(req, |r, (k, v)| r.header(*k, *v));
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                assert_eq!(r.status(), 200);
                let h = cache_header(&r);
                (h, r.text().await.unwrap())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_hundred_identical_requests_make_one_upstream_call() {
    let mock = start_mock();
    let gw = Gateway::start(&cached_config(mock.addr(), ""));
    let b = body("cached", false, "all at once");
    let got = concurrent(&gw, 100, &b, &[("x-mock-delay-ms", "300")]).await;
    assert_eq!(mock.stats().chat_total, 1, "exactly one upstream call");
    let first: Value = serde_json::from_str(&got[0].1).unwrap();
    assert!(!content(&first).is_empty());
    for (h, text) in &got {
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(content(&v), content(&first));
        assert!(matches!(h.as_deref(), Some("MISS" | "HIT")));
    }
    let s = gateway_status(&gw).await;
    let d = actor_detail(&s, "response_cache");
    assert_eq!(d["coalesced"].as_u64().unwrap() + d["hits"].as_u64().unwrap(), 99, "{d}");
}

#[tokio::test]
async fn a_hundred_identical_streams_make_one_upstream_call() {
    let mock = start_mock();
    let gw = Gateway::start(&cached_config(mock.addr(), ""));
    let b = body("cached", true, "stream to everyone");
    let got = concurrent(&gw, 100, &b, &[("x-mock-chunk-delay-ms", "10"), ("x-mock-tokens", "20")]).await;
    assert_eq!(mock.stats().chat_total, 1, "exactly one upstream call");
    let text = sse_text(&got[0].1);
    assert_eq!(text.split_whitespace().count(), 20);
    for (_, body) in &got {
        assert_eq!(sse_text(body), text, "every client got the whole stream");
        assert!(body.ends_with("data: [DONE]\n\n"));
    }
    assert_eq!(mock.stats().streams_completed, 1);
}

/// First event of a stream response (it arrives before any gate).
async fn open_stream(
    gw: &Gateway,
    b: &Value,
    gate: &str,
) -> impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> {
    let r = post(gw, b, &[("x-mock-gate", gate)]).await;
    assert_eq!(r.status(), 200);
    let mut s = Box::pin(r.bytes_stream());
    let first = s.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    s
}

#[tokio::test]
async fn a_joiner_leaving_does_not_cancel_the_others() {
    let mock = start_mock();
    let gw = Gateway::start(&cached_config(mock.addr(), ""));
    let b = body("cached", true, "gated");
    let leader = open_stream(&gw, &b, "join-1").await;
    let joiner = open_stream(&gw, &b, "join-1").await;
    drop(joiner);
    for _ in 0..40 {
        mock_gate_release(mock.addr(), "join-1").await;
    }
    let rest: Vec<u8> = leader.map(|c| c.unwrap().to_vec()).concat().await;
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    assert_eq!(mock.stats().chat_total, 1);
    assert_eq!(mock.stats().streams_cancelled, 0);
    wait_until(Duration::from_secs(5), || mock.stats().streams_completed == 1).await;
}

#[tokio::test]
async fn the_last_subscriber_leaving_cancels_the_upstream_call() {
    let mock = start_mock();
    let gw = Gateway::start(&cached_config(mock.addr(), ""));
    let b = body("cached", true, "gated, then abandoned");
    let a = open_stream(&gw, &b, "leave-1").await;
    let c = open_stream(&gw, &b, "leave-1").await;
    assert_eq!(mock.stats().chat_total, 1);
    drop(a);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(mock.stats().streams_cancelled, 0, "one subscriber is still there");
    drop(c);
    wait_until(Duration::from_secs(5), || mock.stats().streams_cancelled == 1).await;
    // Nothing was stored: the same request calls upstream again.
    let r = post(&gw, &b, &[("x-mock-gate", "leave-1")]).await;
    assert_eq!(cache_header(&r).as_deref(), Some("MISS"));
    drop(r);
    assert_eq!(mock.stats().chat_total, 2);
}

#[tokio::test]
async fn a_shared_stream_that_goes_silent_ends_with_the_idle_timeout_for_every_subscriber() {
    // The flight's leader drives the upstream stream with the same driver
    // as the relay: its idle timeout ends the stream for every subscriber,
    // and nothing is stored.
    let mock = start_mock();
    let cfg = cached_config(mock.addr(), "").replace("idle_timeout_ms = 3000", "idle_timeout_ms = 200");
    let gw = Gateway::start(&cfg);
    let b = body("cached", true, "silence after the first event");
    let got = concurrent(&gw, 3, &b, &[("x-mock-chunk-delay-ms", "2000")]).await;
    assert_eq!(mock.stats().chat_total, 1, "one upstream call");
    for (_, text) in &got {
        let last = text.trim_end().rsplit("data: ").next().unwrap();
        let v: Value = serde_json::from_str(last).unwrap();
        assert_eq!(v["error"]["code"], "upstream_timeout", "{text}");
        assert!(v["error"]["message"].as_str().unwrap().contains("idle"), "{text}");
    }
    let again = post(&gw, &b, &[("x-mock-chunk-delay-ms", "2000")]).await;
    assert_eq!(cache_header(&again).as_deref(), Some("MISS"), "a failed stream is not stored");
    drop(again);
}
