//! The mock over real HTTP on 127.0.0.1:0.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn start(opts: MockOptions) -> (MockServer, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = MockServer::start(l, MockOptions { workers: 2, ..opts }).unwrap();
    let base = format!("http://{}", s.addr());
    (s, base)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn chat_body(stream: bool) -> Value {
    json!({"model":"gpt-test","stream":stream,"messages":[{"role":"user","content":"hi there"}]})
}

async fn post(base: &str, path: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().post(format!("{base}{path}")).json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// Reads an SSE body event by event, whatever the chunking.
struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Sse {
    fn new(resp: reqwest::Response) -> Sse {
        Sse { resp, buf: Vec::new() }
    }

    /// `Ok(None)` at a clean end, `Err` when the connection broke.
    async fn next(&mut self) -> Result<Option<String>, reqwest::Error> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let ev: Vec<u8> = self.buf.drain(..p + 2).collect();
                return Ok(Some(String::from_utf8(ev).unwrap()));
            }
            match self.resp.chunk().await? {
                Some(c) => self.buf.extend_from_slice(&c),
                None => return Ok(None),
            }
        }
    }
}

/// Polls `f` until it holds, failing after a deadline (no fixed sleeps).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends one raw HTTP/1.1 request and returns everything the server sent
/// until it closed the connection.
async fn raw(addr: std::net::SocketAddr, headers: &str, body: &str) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.unwrap();
    out
}

#[tokio::test]
async fn chat_non_stream_and_stats() {
    let (srv, base) = start(MockOptions::default());
    let r = post(&base, "/v1/chat/completions", &chat_body(false), &[("authorization", "Bearer sk-up")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-test");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["usage"]["completion_tokens"], 16);
    // Same request, same text.
    let again: Value = post(&base, "/chat/completions", &chat_body(false), &[]).await.json().await.unwrap();
    assert_eq!(again["choices"][0]["message"]["content"], v["choices"][0]["message"]["content"]);

    let st = srv.stats();
    assert_eq!((st.requests_total, st.chat_total), (2, 2));
    assert_eq!((st.completion_tokens, st.client_gone), (32, 0));
    let first = &st.recent[0];
    assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", "/v1/chat/completions"));
    assert!(first.headers.contains(&("authorization".into(), "Bearer sk-up".into())));
    assert!(first.body.contains("hi there"));
    let http: MockStatsSnapshot =
        client().get(format!("{base}/mock/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(http.chat_total, 2, "inspection routes are not counted");
    assert_eq!(http.recent.len(), 2);
    assert_eq!(http.faults_injected["429"], 0);
    client().post(format!("{base}/mock/reset")).send().await.unwrap();
    let st = srv.stats();
    assert_eq!((st.requests_total, st.recent.len(), st.completion_tokens), (0, 0, 0));
    srv.shutdown();
}

#[tokio::test]
async fn chat_stream_with_usage() {
    let (srv, base) = start(MockOptions { tokens: 4, ..Default::default() });
    let mut body = chat_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&base, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut sse = Sse::new(r);
    let mut evs = Vec::new();
    while let Some(ev) = sse.next().await.unwrap() {
        evs.push(ev);
    }
    assert_eq!(evs.len(), 1 + 4 + 1 + 1 + 1);
    assert_eq!(evs.last().unwrap(), "data: [DONE]\n\n");
    let usage: Value = serde_json::from_str(evs[6].trim_start_matches("data: ").trim()).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    let st = srv.stats();
    assert_eq!((st.streams_started, st.streams_completed, st.streams_cancelled), (1, 1, 0));
    assert_eq!((st.completion_tokens, st.client_gone), (4, 0));
}

#[tokio::test]
async fn other_routes_and_errors() {
    let (srv, base) = start(MockOptions::default());
    let c = client();
    let r = post(
        &base,
        "/v1/completions",
        &json!({"model":"m","prompt":"a b c","max_tokens":2}),
        &[("x-mock-tokens", "9")],
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"], json!({"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}));

    let v: Value = post(&base, "/v1/embeddings", &json!({"model":"e","input":["x","y"],"dimensions":4}), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);

    let v: Value = c.get(format!("{base}/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert!(v["data"].as_array().unwrap().iter().any(|m| m["id"] == "gpt-4o-mini"));

    let r = c.post(format!("{base}/v1/chat/completions")).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let r = post(&base, "/v1/chat/completions", &json!({"messages":[]}), &[]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], "model");
    let r = post(&base, "/v1/chat/completions", &chat_body(false), &[("x-mock-fault", "teapot")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("x-mock-fault"));

    let r = c.get(format!("{base}/v1/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "unknown_url");
    let r = c.get(format!("{base}/v1/chat/completions")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    let st = srv.stats();
    assert_eq!((st.completions_total, st.embeddings_total, st.models_total), (1, 1, 1));
    assert_eq!(st.requests_total, 8);
}

#[tokio::test]
async fn rate_limit_and_server_error() {
    let (srv, base) = start(MockOptions { retry_after_s: 3, ..Default::default() });
    let r = post(&base, "/v1/chat/completions", &chat_body(false), &[("x-mock-fault", "429")]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let r = post(&base, "/v1/embeddings", &json!({}), &[("x-mock-fault", "429"), ("x-mock-retry-after", "7")]).await;
    assert_eq!(r.headers()["retry-after"], "7");

    let r = post(&base, "/v1/chat/completions", &chat_body(true), &[("x-mock-fault", "500")]).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "server_error");
    let st = srv.stats();
    assert_eq!((st.faults_injected["429"], st.faults_injected["500"]), (2, 1));
}

#[tokio::test]
async fn reset_closes_without_a_byte() {
    let (srv, base) = start(MockOptions::default());
    let body = chat_body(false).to_string();
    assert!(raw(srv.addr(), "x-mock-fault: reset\r\n", &body).await.is_empty());
    let err =
        client().post(format!("{base}/v1/chat/completions")).header("x-mock-fault", "reset").body(body).send().await;
    assert!(err.is_err());
    assert_eq!(srv.stats().faults_injected["reset"], 2);
}

#[tokio::test]
async fn cut_non_stream_sends_less_than_promised() {
    let (srv, _base) = start(MockOptions::default());
    let out = raw(srv.addr(), "x-mock-fault: cut\r\n", &chat_body(false).to_string()).await;
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"));
    let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
    assert!(!body.is_empty() && body.len() < len, "got {} of {len}", body.len());
}

#[tokio::test]
async fn cut_stream_ends_without_done() {
    let (srv, base) = start(MockOptions::default());
    let r = post(&base, "/v1/chat/completions", &chat_body(true), &[("x-mock-fault", "cut")]).await;
    assert_eq!(r.status(), 200);
    let mut sse = Sse::new(r);
    let mut n = 0;
    let end = loop {
        match sse.next().await {
            Ok(Some(ev)) => {
                assert_ne!(ev, "data: [DONE]\n\n");
                n += 1;
            }
            other => break other,
        }
    };
    assert!(end.is_err(), "the connection must break, not end cleanly");
    assert_eq!(n, (1 + 16 + 2) / 2, "about half the events");

    let r =
        post(&base, "/v1/chat/completions", &chat_body(true), &[("x-mock-fault", "cut"), ("x-mock-cut-after", "3")])
            .await;
    let mut sse = Sse::new(r);
    for _ in 0..3 {
        assert!(sse.next().await.unwrap().is_some());
    }
    assert!(sse.next().await.is_err());
    let st = srv.stats();
    assert_eq!((st.faults_injected["cut"], st.streams_completed, st.streams_cancelled), (2, 0, 0));
}

#[tokio::test]
async fn garbage_is_not_json() {
    let (_srv, base) = start(MockOptions::default());
    let r = post(&base, "/v1/chat/completions", &chat_body(false), &[("x-mock-fault", "garbage")]).await;
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());

    let r = post(&base, "/v1/chat/completions", &chat_body(true), &[("x-mock-fault", "garbage")]).await;
    let mut sse = Sse::new(r);
    let first = sse.next().await.unwrap().unwrap();
    let data = first.strip_prefix("data: ").unwrap();
    assert!(serde_json::from_str::<Value>(data).is_err());
    let mut last = String::new();
    while let Some(ev) = sse.next().await.unwrap() {
        last = ev;
    }
    assert_eq!(last, "data: [DONE]\n\n");
}

#[tokio::test]
async fn hang_never_answers_and_is_cleaned_up() {
    let (srv, base) = start(MockOptions::default());
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(300)).build().unwrap();
    let err = c
        .post(format!("{base}/v1/chat/completions"))
        .header("x-mock-fault", "hang")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    drop(c);
    // The client closed its connection: the hung request must not leak it.
    eventually("hung connection closed", || srv.stats().connections_active == 0).await;
    assert_eq!(srv.stats().faults_injected["hang"], 1);
    assert_eq!((srv.stats().client_gone, srv.stats().completion_tokens), (1, 0));
}

#[tokio::test]
async fn a_client_leaving_before_the_answer_is_counted_gone_with_nothing_produced() {
    let (srv, base) = start(MockOptions::default());
    // The client leaves once the mock has the request (a timeout instead
    // raced the mock's start on a loaded machine: gone before it arrived).
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = tokio::spawn(
        c.post(format!("{base}/v1/chat/completions")).header("x-mock-delay-ms", "60000").json(&chat_body(false)).send(),
    );
    eventually("the request reached the mock", || srv.stats().chat_total == 1).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    drop(c);
    eventually("client counted gone", || srv.stats().client_gone == 1).await;
    let st = srv.stats();
    assert_eq!((st.chat_total, st.completion_tokens), (1, 0));
}

#[tokio::test]
async fn gate_releases_one_event_at_a_time() {
    let (srv, base) = start(MockOptions::default());
    let c = client();
    let r =
        post(&base, "/v1/chat/completions", &chat_body(true), &[("x-mock-gate", "g1"), ("x-mock-tokens", "2")]).await;
    let mut sse = Sse::new(r);
    let sent = || async {
        let v: Value = c.get(format!("{base}/mock/gates/g1")).send().await.unwrap().json().await.unwrap();
        v["sent"].as_u64().unwrap()
    };
    let first = sse.next().await.unwrap().unwrap();
    assert!(first.contains("\"role\":\"assistant\""));
    assert_eq!(sent().await, 1);
    // Nothing more until a release.
    assert!(tokio::time::timeout(Duration::from_millis(100), sse.next()).await.is_err());
    assert_eq!(sent().await, 1);
    // 1 role + 2 tokens + finish + [DONE] = 5 events: 4 releases.
    for i in 2..=5 {
        c.post(format!("{base}/mock/gates/g1/release")).send().await.unwrap();
        let ev = sse.next().await.unwrap().unwrap();
        assert_eq!(sent().await, i);
        if i == 5 {
            assert_eq!(ev, "data: [DONE]\n\n");
        }
    }
    assert!(sse.next().await.unwrap().is_none());
    assert_eq!(srv.stats().streams_completed, 1);
}

#[tokio::test]
async fn dropped_stream_is_counted_cancelled() {
    let (srv, base) = start(MockOptions { chunk_delay_ms: 10, tokens: 1000, ..Default::default() });
    let r = post(&base, "/v1/chat/completions", &chat_body(true), &[]).await;
    let mut sse = Sse::new(r);
    sse.next().await.unwrap().unwrap();
    sse.next().await.unwrap().unwrap();
    drop(sse);
    eventually("stream cancelled", || srv.stats().streams_cancelled == 1).await;
    let st = srv.stats();
    assert_eq!((st.streams_started, st.streams_completed, st.client_gone), (1, 0, 1));
    // The tokens sent before the peer left: at least the one read, far
    // from all 1000.
    assert!(st.completion_tokens >= 1 && st.completion_tokens < 1000, "{}", st.completion_tokens);
}

#[tokio::test]
async fn fail_rate_draws_from_the_fault_list() {
    let opts = MockOptions {
        fail_rate: 1.0,
        faults: vec![Fault::RateLimit, Fault::ServerError],
        seed: Some(7),
        ..Default::default()
    };
    let (srv, base) = start(opts);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let r = post(&base, "/v1/chat/completions", &chat_body(false), &[]).await;
        seen.insert(r.status().as_u16());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![429, 500]);
    // The header still wins over the dice.
    let r = post(&base, "/v1/chat/completions", &chat_body(false), &[("x-mock-fault", "garbage")]).await;
    assert_eq!(r.status(), 200);
    let f = srv.stats().faults_injected;
    assert_eq!(f["429"] + f["500"], 40);
}

#[tokio::test]
async fn delay_header_delays() {
    let (_srv, base) = start(MockOptions::default());
    let t = Instant::now();
    let r = post(&base, "/v1/chat/completions", &chat_body(false), &[("x-mock-delay-ms", "150")]).await;
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn shutdown_is_prompt_with_requests_in_flight() {
    let (srv, base) = start(MockOptions::default());
    let addr = srv.addr();
    let hung = tokio::spawn(async move {
        let url = format!("{base}/v1/chat/completions");
        client().post(url).header("x-mock-fault", "hang").json(&chat_body(false)).send().await
    });
    eventually("request arrived", || srv.stats().requests_total == 1).await;
    let t = Instant::now();
    tokio::task::spawn_blocking(move || srv.shutdown()).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(hung.await.unwrap().is_err(), "the in-flight request is cut");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
}
