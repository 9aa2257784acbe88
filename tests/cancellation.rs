//! Clients that leave, over real HTTP: whatever the phase their request is
//! in — waiting in the limiter's queue, waiting for the upstream's answer,
//! uploading its body, or reading a stream — Sluice cancels the upstream
//! call and frees the request's concurrency and queue slots. The mock's
//! `client_gone` counter says when the upstream saw Sluice go.
//!
//! The clients here are raw TCP sockets, so a test decides exactly when
//! one closes. Nothing waits on a fixed sleep: each step polls the mock's
//! or the gateway's state until a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Sluice must cancel within 100 ms; the tests allow 2 s so that a loaded
/// machine cannot fail them, and print what they measured. Without
/// cancellation, each would wait for the upstream's whole answer (minutes).
const DEADLINE: Duration = Duration::from_secs(2);

/// Send the head of a POST to /v1/chat/completions and `body` (which may
/// be shorter than `content_length`), on a fresh connection.
async fn send(gw: SocketAddr, headers: &[(&str, &str)], body: &[u8], content_length: usize) -> TcpStream {
    let mut s = TcpStream::connect(gw).await.unwrap();
    let mut head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s
}

fn chat(stream: bool) -> Vec<u8> {
    serde_json::to_vec(&chat_body("gpt-test", stream)).unwrap()
}

/// Read from `s` until `needle` has been seen (response head, events).
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf)).await.expect("no answer in time").unwrap();
        assert!(n > 0, "closed before {needle:?}: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Wait until `f` holds; how long it took.
async fn within(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < deadline, "not within {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = start.elapsed();
    eprintln!("{what}: {took:?}");
    took
}

fn scope<'a>(status: &'a Value, name: &str) -> &'a Value {
    actor_detail(status, "rate_limiter")["scopes"].as_array().unwrap().iter().find(|s| s["scope"] == name).unwrap()
}

async fn inflight(gw: &Gateway) -> u64 {
    scope(&gateway_status(gw).await, "key:tester")["concurrency"]["inflight"].as_u64().unwrap()
}

#[tokio::test]
async fn a_client_leaving_while_the_upstream_has_not_answered_cancels_the_call() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), "max_concurrent = 1"));
    let s = send(gw.addr, &[("x-mock-delay-ms", "120000")], &chat(false), chat(false).len()).await;
    within("the request reached the upstream", Duration::from_secs(10), async || mock.stats().chat_total == 1).await;
    assert_eq!(inflight(&gw).await, 1);
    drop(s);
    within("the upstream saw Sluice leave", DEADLINE, async || mock.stats().client_gone == 1).await;
    within("the concurrency slot is free", DEADLINE, async || inflight(&gw).await == 0).await;
    // And the next request of the key is served at once.
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("gpt-test", false));
    assert_eq!(r.send().await.unwrap().status(), 200);
    assert_eq!(mock.stats().completion_tokens, 16, "the abandoned call produced nothing");
}

#[tokio::test]
async fn a_client_leaving_a_stream_whose_upstream_is_silent_cancels_the_call() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), "max_concurrent = 1"));
    // A gated stream: each event after the first waits for a release, so
    // nothing is written to the client after it leaves (a write error is
    // not what tells Sluice it left).
    let mut s = send(gw.addr, &[("x-mock-gate", "silent")], &chat(true), chat(true).len()).await;
    read_until(&mut s, "\"role\":\"assistant\"").await;
    mock_gate_release(mock.addr(), "silent").await;
    read_until(&mut s, "\"content\":\"").await;
    assert_eq!(mock.stats().client_gone, 0);
    drop(s);
    within("the upstream saw Sluice leave", DEADLINE, async || mock.stats().client_gone == 1).await;
    assert_eq!(mock.stats().streams_cancelled, 1);
    within("the concurrency slot is free", DEADLINE, async || inflight(&gw).await == 0).await;
}

#[tokio::test]
async fn a_client_leaving_mid_upload_never_reaches_the_upstream() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), "max_concurrent = 1"));
    let body = chat(false);
    let s = send(gw.addr, &[], &body[..body.len() / 2], body.len()).await;
    drop(s);
    // The gateway is done with it: its one slot is free, and the next
    // request (on a new connection) is served at once.
    within("the concurrency slot is free", DEADLINE, async || inflight(&gw).await == 0).await;
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("gpt-test", false));
    assert_eq!(r.send().await.unwrap().status(), 200);
    assert_eq!(mock.stats().chat_total, 1, "the half-sent request never went upstream");
}

#[tokio::test]
async fn a_client_leaving_the_queue_frees_its_place_and_is_never_admitted() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), "max_concurrent = 1\n[queue]\nmax_wait_ms = 60000\nmax_size = 1"));
    let queue = async || actor_detail(&gateway_status(&gw).await, "rate_limiter")["queue"].clone();
    // The key's one slot is taken by a gated stream.
    let mut holder = send(gw.addr, &[("x-mock-gate", "hold")], &chat(true), chat(true).len()).await;
    read_until(&mut holder, "\"role\":\"assistant\"").await;
    // The next waits in the queue, then leaves.
    let waiter = send(gw.addr, &[], &chat(false), chat(false).len()).await;
    within("the second request is queued", Duration::from_secs(10), async || queue().await["waiting"] == 1).await;
    drop(waiter);
    within("the queue forgets the request that left", DEADLINE, async || queue().await["waiting"] == 0).await;
    // Its place is free: a third request may queue (max_size = 1) ...
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("gpt-test", false));
    let third = tokio::spawn(r.send());
    within("the third request is queued", Duration::from_secs(10), async || queue().await["waiting"] == 1).await;
    // ... and is the one admitted when the slot frees.
    drop(holder);
    assert_eq!(third.await.unwrap().unwrap().status(), 200);
    let q = queue().await;
    assert_eq!((q["admitted_from_queue"].as_u64(), q["shed_full"].as_u64()), (Some(1), Some(0)), "{q}");
    assert_eq!(mock.stats().chat_total, 2, "the request that left never went upstream");
}
