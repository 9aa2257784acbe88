//! The accounting rule over real HTTP: every token an upstream produced for
//! a client is charged to that client's key — whether it read the whole
//! answer, left mid-stream, or left before the first byte — and a request
//! no upstream produced anything for (a cache hit, a share of another's
//! call) is charged nothing and gives its token estimate back.
//!
//! Prices are set so that a token costs a round number of dollars (input
//! $1, output $2), so a key's spend in `/status` reads as its tokens. The
//! mock's `completion_tokens` counter says what the upstream produced; its
//! gates decide exactly how far a stream gets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const KEY_A: &str = "sk-accounting-a";
const KEY_B: &str = "sk-accounting-b";

/// Model `m` (and `c`, cached) on the mock, a token = $1 in, $2 out;
/// keys a and b with `key_a` added to a's table.
fn cfg(mock: SocketAddr, key_a: &str) -> String {
    format!(
        r#"
[server]
workers = 1

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
forward_headers = ["x-mock-*"]
warm_connections = 0

[[models]]
name = "m"
deployments = [{{ provider = "up", model = "mock-m" }}]
price = {{ input_per_mtok = 1000000.0, output_per_mtok = 2000000.0 }}

[[models]]
name = "c"
deployments = [{{ provider = "up", model = "mock-c" }}]
price = {{ input_per_mtok = 1000000.0, output_per_mtok = 2000000.0 }}
cache = {{ ttl_ms = 600000 }}

[[keys]]
name = "a"
key = "{KEY_A}"
{key_a}

[[keys]]
name = "b"
key = "{KEY_B}"
tpm = 1000000
"#
    )
}

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "temperature": 0,
           "messages": [{"role": "user", "content": "Tell the accounting tests a story"}]})
}

/// The prompt estimate Sluice makes of `body`: a token per 4 bytes of `messages`.
fn prompt_estimate(body: &Value) -> u64 {
    (serde_json::to_string(&body["messages"]).unwrap().len() as u64).div_ceil(4)
}

/// Send a request on a raw connection (so the test decides when it closes).
async fn send(gw: SocketAddr, key: &str, body: &Value, headers: &[(&str, &str)]) -> TcpStream {
    let body = serde_json::to_vec(body).unwrap();
    let mut s = TcpStream::connect(gw).await.unwrap();
    let mut head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    s
}

/// Read until `n` token events (`"content":"` deltas with text) arrived.
async fn read_tokens(s: &mut TcpStream, n: usize) {
    let mut got = String::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.matches("\"delta\":{\"content\":\"").count() < n {
        let k = tokio::time::timeout_at(deadline, s.read(&mut buf)).await.expect("tokens in time").unwrap();
        assert!(k > 0, "closed early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..k]));
    }
}

async fn status(gw: &Gateway) -> Value {
    gateway_status(gw).await
}

/// Key `name`'s spend today in USD (= tokens, at these prices).
async fn spent(gw: &Gateway, name: &str) -> f64 {
    let s = status(gw).await;
    let spend = actor_detail(&s, "rate_limiter")["spend"].as_array().unwrap().clone();
    spend.iter().find(|k| k["key"] == name).and_then(|k| k["today_usd"].as_f64()).unwrap_or(0.0)
}

/// Wait until key `name` has spent `usd` (charges of streams land when
/// their counting is done); fail if it does not, or spends more.
async fn until_spent(gw: &Gateway, name: &str, usd: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = spent(gw, name).await;
        if (got - usd).abs() < 1e-6 {
            return;
        }
        assert!(got < usd + 1e-6, "key {name} charged {got}, more than {usd}");
        assert!(Instant::now() < deadline, "key {name} charged {got}, not {usd}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn release(mock: SocketAddr, gate: &str, n: usize) {
    for _ in 0..n {
        mock_gate_release(mock, gate).await;
    }
}

#[tokio::test]
async fn a_stream_abandoned_after_150_of_200_tokens_is_charged_the_prompt_and_150_tokens() {
    let mock = start_mock();
    let gw = Gateway::start(&cfg(mock.addr(), ""));
    let b = body("m", true);
    let mut s = send(gw.addr, KEY_A, &b, &[("x-mock-tokens", "200"), ("x-mock-gate", "g150")]).await;
    // The role event comes ungated, then one token per release.
    release(mock.addr(), "g150", 150).await;
    read_tokens(&mut s, 150).await;
    drop(s);
    wait_until(Duration::from_secs(5), || mock.stats().client_gone == 1).await;
    assert_eq!(mock.stats().completion_tokens, 150, "the upstream produced 150 tokens");
    // Charged: the prompt (estimated: no usage came) and the 150 tokens,
    // counted from their text.
    let want = prompt_estimate(&b) as f64 + 2.0 * 150.0;
    until_spent(&gw, "a", want).await;
}

#[tokio::test]
async fn a_client_leaving_before_the_first_byte_is_charged_the_prompt_the_upstream_received() {
    let mock = start_mock();
    let gw = Gateway::start(&cfg(mock.addr(), ""));
    let b = body("m", false);
    let s = send(gw.addr, KEY_A, &b, &[("x-mock-delay-ms", "60000")]).await;
    wait_until(Duration::from_secs(5), || mock.stats().chat_total == 1).await;
    drop(s);
    wait_until(Duration::from_secs(5), || mock.stats().client_gone == 1).await;
    assert_eq!(mock.stats().completion_tokens, 0);
    until_spent(&gw, "a", prompt_estimate(&b) as f64).await;
}

#[tokio::test]
async fn a_key_is_stopped_at_its_budget_by_abandoned_streams_alone() {
    let mock = start_mock();
    let b = body("m", true);
    // Each stream is left after 10 tokens: it costs the prompt + $20; the
    // budget is crossed by the fourth.
    let per_stream = prompt_estimate(&b) as f64 + 20.0;
    let budget = 3.5 * per_stream;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("spend.redb");
    let key_a = format!("daily_budget_usd = {budget}\n\n[spend]\nstore = \"{}\"", store.display());
    let gw = Gateway::start(&cfg(mock.addr(), &key_a));
    let mut abandoned = 0;
    loop {
        let gate = format!("budget{abandoned}");
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY_A)
            .header("x-mock-gate", gate.as_str())
            .json(&b)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "insufficient_quota", "{v}");
            break;
        }
        assert_eq!(r.status(), 200);
        let mut events = r.bytes_stream();
        release(mock.addr(), &gate, 10).await;
        let mut seen = String::new();
        while seen.matches("\"delta\":{\"content\":\"").count() < 10 {
            use futures_util::StreamExt;
            seen.push_str(&String::from_utf8_lossy(&events.next().await.unwrap().unwrap()));
        }
        drop(events);
        abandoned += 1;
        until_spent(&gw, "a", per_stream * f64::from(abandoned)).await;
        assert!(abandoned <= 4, "the budget never stopped the key");
    }
    assert_eq!(abandoned, 4, "stopped right after the stream that crossed the budget");
    assert_eq!(mock.stats().completion_tokens, 40);
    assert_eq!(mock.stats().streams_completed, 0, "no stream was read to its end");
}

#[tokio::test]
async fn cache_hits_give_their_token_estimate_back() {
    let mock = start_mock();
    let gw = Gateway::start(&cfg(mock.addr(), "tpm = 1000"));
    // Each request is estimated at 600+ tokens (max_tokens); the limit
    // holds one such estimate at a time.
    let mut b = body("c", false);
    b["max_tokens"] = json!(600);
    let chat = async || client().post(gw.url("/v1/chat/completions")).bearer_auth(KEY_A).json(&b).send().await.unwrap();
    let first = chat().await;
    assert_eq!((first.status().as_u16(), first.headers()["x-sluice-cache"].to_str().unwrap()), (200, "MISS"));
    let usage = first.json::<Value>().await.unwrap()["usage"].clone();
    for i in 0..5 {
        let r = chat().await;
        // Before, a hit kept its estimate: the second one was refused.
        assert_eq!(r.status(), 200, "hit {i}");
        assert_eq!(r.headers()["x-sluice-cache"], "HIT");
    }
    // Only the miss was charged: its usage, 16 tokens out.
    assert_eq!(usage["completion_tokens"], 16);
    until_spent(&gw, "a", usage["prompt_tokens"].as_f64().unwrap() + 32.0).await;
    assert_eq!(mock.stats().chat_total, 1);
}

#[tokio::test]
async fn a_shared_call_is_charged_once_to_its_leader_even_when_the_leader_leaves() {
    let mock = start_mock();
    let gw = Gateway::start(&cfg(mock.addr(), "tpm = 1000000"));
    let b = body("c", true);
    // a leads a gated stream; b joins it.
    let headers = [("x-mock-tokens", "30"), ("x-mock-gate", "shared")];
    let mut leader = send(gw.addr, KEY_A, &b, &headers).await;
    release(mock.addr(), "shared", 5).await;
    read_tokens(&mut leader, 5).await;
    let mut with_usage = b.clone();
    with_usage["stream_options"] = json!({"include_usage": true});
    let mut follower = send(gw.addr, KEY_B, &with_usage, &headers).await;
    read_tokens(&mut follower, 5).await;
    // The leader leaves; the follower reads to the end.
    drop(leader);
    release(mock.addr(), "shared", 100).await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), follower.read_to_end(&mut rest)).await.ok();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("[DONE]"), "{text}");
    assert_eq!(mock.stats().chat_total, 1, "one upstream call for both");
    assert_eq!(mock.stats().completion_tokens, 30);
    // The whole call is charged once, to the leader's key, as the
    // upstream's usage (it came at the end) says.
    let usage: Value = sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v["usage"].is_object())
        .expect("the usage chunk");
    let u = &usage["usage"];
    assert_eq!(u["completion_tokens"], 30);
    let want = u["prompt_tokens"].as_f64().unwrap() + 2.0 * 30.0;
    until_spent(&gw, "a", want).await;
    assert_eq!(spent(&gw, "b").await, 0.0, "the follower's tokens are the leader's");
}
