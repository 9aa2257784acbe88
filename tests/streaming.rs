//! SSE streaming over real HTTP: event-by-event relay, usage capture,
//! cancellation, and failures after the first byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;

/// Reads an SSE response event by event.
struct Events {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Events {
    fn new(resp: reqwest::Response) -> Events {
        Events { stream: Box::pin(resp.bytes_stream()), buf: String::new() }
    }

    /// The next event's data, or None at the end of the stream.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let ev: String = self.buf.drain(..i + 2).collect();
                if let Some(d) = ev.lines().find_map(|l| l.strip_prefix("data:")) {
                    return Some(d.trim().to_string());
                }
                continue;
            }
            match self.stream.next().await {
                Some(Ok(b)) => self.buf.push_str(std::str::from_utf8(&b).unwrap()),
                Some(Err(e)) => panic!("stream transport error: {e}"),
                None => return None,
            }
        }
    }

    async fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(d) = self.next().await {
            out.push(d);
        }
        out
    }
}

async fn gate_sent(mock: std::net::SocketAddr, gate: &str) -> u64 {
    let v: serde_json::Value =
        client().get(format!("http://{mock}/mock/gates/{gate}")).send().await.unwrap().json().await.unwrap();
    v["sent"].as_u64().unwrap()
}

async fn gate_release(mock: std::net::SocketAddr, gate: &str) {
    let r = client().post(format!("http://{mock}/mock/gates/{gate}/release")).send().await.unwrap();
    assert!(r.status().is_success());
}

#[tokio::test]
async fn each_event_reaches_the_client_before_the_next_exists() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-mock-gate", "relay")
        .header("x-mock-tokens", "3")
        .json(&chat_body("gpt-test", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-sluice-deployment"], "up/mock-model");
    let mut events = Events::new(resp);
    // The client holds event i while the upstream is still held at the gate
    // before event i+1: nothing was buffered.
    for i in 1..=4u64 {
        let ev = events.next().await.unwrap();
        let chunk: serde_json::Value = serde_json::from_str(&ev).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(gate_sent(mock.addr(), "relay").await, i, "upstream sent more than the client has");
        gate_release(mock.addr(), "relay").await;
    }
    // Let the rest out.
    let mut rest = Vec::new();
    loop {
        gate_release(mock.addr(), "relay").await;
        match tokio::time::timeout(Duration::from_millis(200), events.next()).await {
            Ok(Some(ev)) => rest.push(ev),
            Ok(None) => break,
            Err(_) => continue,
        }
    }
    assert_eq!(rest.last().unwrap(), "[DONE]");
    // The usage chunk the gateway asked for was not shown to this client.
    assert!(rest.iter().all(|e| !e.contains("\"usage\":{")), "{rest:?}");
}

#[tokio::test]
async fn usage_is_captured_and_hidden_unless_asked() {
    let mock = start_mock();
    let extra = r#"
[[models]]
name = "usage-probe"
deployments = [{ provider = "up", model = "mock-model" }]
"#;
    let gw = Gateway::start(&config_for(mock.addr(), extra));
    // Not asked: the gateway still asks upstream, captures, and hides it.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-mock-tokens", "7")
        .json(&chat_body("usage-probe", true))
        .send()
        .await
        .unwrap();
    let data = Events::new(resp).rest().await;
    assert!(data.iter().all(|e| !e.contains("\"usage\":{")));
    let sent: serde_json::Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sluice_tokens_total") && l.contains("usage-probe") && l.contains("output"))
        .unwrap_or_else(|| panic!("no output tokens metric:\n{metrics}"));
    assert!(line.ends_with(" 7"), "{line}");

    // Asked: shown, as the last chunk before [DONE].
    let mut body = chat_body("usage-probe", true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-mock-tokens", "5")
        .json(&body)
        .send()
        .await
        .unwrap();
    let data = Events::new(resp).rest().await;
    let usage: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-mock-tokens", "100000")
        .header("x-mock-chunk-delay-ms", "20")
        .json(&chat_body("gpt-test", true))
        .send()
        .await
        .unwrap();
    let mut events = Events::new(resp);
    events.next().await.unwrap();
    events.next().await.unwrap();
    assert_eq!(mock.stats().streams_cancelled, 0);
    drop(events);
    // The upstream sees its connection close and stops streaming.
    wait_until(Duration::from_secs(5), || mock.stats().streams_cancelled == 1).await;
    assert_eq!(mock.stats().streams_completed, 0);
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_event() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-mock-fault", "cut")
        .header("x-mock-tokens", "20")
        .json(&chat_body("gpt-test", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let data = Events::new(resp).rest().await;
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "upstream_error");
    assert!(last["error"]["message"].as_str().unwrap().contains("cut off"));
    assert!(!data.iter().any(|d| d == "[DONE]"));
}

#[tokio::test]
async fn silence_mid_stream_hits_the_idle_timeout() {
    let mock = start_mock();
    let cfg = config_for(mock.addr(), "").replace("idle_timeout_ms = 3000", "idle_timeout_ms = 200");
    let gw = Gateway::start(&cfg);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-mock-chunk-delay-ms", "2000")
        .json(&chat_body("gpt-test", true))
        .send()
        .await
        .unwrap();
    let data = Events::new(resp).rest().await;
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout");
    assert!(last["error"]["message"].as_str().unwrap().contains("idle"));
}
