//! The fast ingress (src/server/fast.rs) over raw TCP: the proxied routes'
//! plain HTTP/1.1 requests are served by Sluice's own connection loop, and
//! a connection's first request of any other kind goes, with the rest of
//! the connection, to actix-http. Each test runs with `server.fast_ingress`
//! on and off, and both must answer alike: the same statuses, the same
//! headers (but `date`), the same bodies and streams, the same framing
//! rules (keep-alive, `connection: close`, a body left unread).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::process::SluiceProcess;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn gateway(mock: SocketAddr, fast: bool, keep_alive_ms: Option<u64>) -> Gateway {
    let mut config = parse_config(&config_for(mock, ""));
    config.server.fast_ingress = fast;
    if let Some(ms) = keep_alive_ms {
        config.server.keep_alive_ms = ms;
    }
    Gateway::start_config(config)
}

/// One HTTP/1.1 answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lowercase names, in order, and values.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn names(&self) -> BTreeSet<String> {
        self.headers.iter().map(|(n, _)| n.clone()).filter(|n| n != "date").collect()
    }
}

/// A raw client connection that reads answers one at a time.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn { s: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Read more; false at the server's close.
    async fn fill(&mut self) -> bool {
        let mut b = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut b))
            .await
            .expect("no answer within 10 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&b[..n]);
        n > 0
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..i].to_vec()).unwrap();
                self.buf.drain(..i + 2);
                return line;
            }
            assert!(self.fill().await, "closed mid-answer: {:?}", String::from_utf8_lossy(&self.buf));
        }
    }

    async fn exactly(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "closed mid-body");
        }
        self.buf.drain(..n).collect()
    }

    /// The next answer, skipping `100 Continue`.
    async fn answer(&mut self) -> Answer {
        loop {
            let status_line = self.line().await;
            let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect(&status_line);
            assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
            let mut headers = Vec::new();
            loop {
                let l = self.line().await;
                if l.is_empty() {
                    break;
                }
                let (n, v) = l.split_once(':').expect(&l);
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            if status == 100 {
                continue;
            }
            let mut a = Answer { status, headers, body: Vec::new(), chunked: false };
            if a.header("transfer-encoding") == Some("chunked") {
                a.chunked = true;
                loop {
                    let size = usize::from_str_radix(self.line().await.trim(), 16).unwrap();
                    let data = self.exactly(size).await;
                    assert_eq!(self.line().await, "", "a chunk ends with CRLF");
                    if size == 0 {
                        break;
                    }
                    a.body.extend_from_slice(&data);
                }
            } else if let Some(n) = a.header("content-length") {
                let n: usize = n.parse().unwrap();
                a.body = self.exactly(n).await;
            }
            return a;
        }
    }

    /// True when the server closes the connection within `limit`.
    async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut b = [0u8; 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.s.read(&mut b)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }
}

fn post(path: &str, key: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn chat(stream: bool) -> Vec<u8> {
    serde_json::to_vec(&chat_body("gpt-test", stream)).unwrap()
}

fn json(a: &Answer) -> serde_json::Value {
    serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&a.body)))
}

/// What one connection sees for: a chat answer, a streamed chat answer, a
/// route the fast ingress does not serve (from which actix-http has the
/// connection), a chat answer again.
async fn one_connection(addr: SocketAddr) -> Vec<Answer> {
    let mut c = Conn::open(addr).await;
    let mut got = Vec::new();
    c.send(&post("/v1/chat/completions", CLIENT_KEY, "x-request-id: first\r\n", &chat(false))).await;
    got.push(c.answer().await);
    c.send(&post("/v1/chat/completions", CLIENT_KEY, "", &chat(true))).await;
    got.push(c.answer().await);
    c.send(format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\n\r\n").as_bytes())
        .await;
    got.push(c.answer().await);
    c.send(&post("/v1/chat/completions", CLIENT_KEY, "", &chat(false))).await;
    got.push(c.answer().await);
    got
}

/// A long non-stream answer: past the size the fast ingress copies behind
/// its head, so it goes out as head and body in one `writev`.
async fn long_answer(addr: SocketAddr) -> Answer {
    let mut c = Conn::open(addr).await;
    c.send(&post("/v1/chat/completions", CLIENT_KEY, "x-mock-tokens: 6000\r\n", &chat(false))).await;
    c.answer().await
}

#[tokio::test]
async fn both_ingresses_answer_alike_on_one_keep_alive_connection() {
    let mock = start_mock();
    let fast = gateway(mock.addr(), true, None);
    let actix = gateway(mock.addr(), false, None);
    let (f, a) = (one_connection(fast.addr).await, one_connection(actix.addr).await);
    for (i, (f, a)) in f.iter().zip(&a).enumerate() {
        assert_eq!(f.status, 200, "answer {i}: {f:?}");
        assert_eq!(f.status, a.status, "answer {i}");
        assert_eq!(f.names(), a.names(), "answer {i}: the same headers");
        assert_eq!(f.chunked, a.chunked, "answer {i}: the same framing");
        assert!(f.header("date").is_some(), "answer {i}");
    }
    // The gateway's own headers (relay::Stamp): written into the head by
    // the fast ingress, put in actix's map by the other.
    for answers in [&f, &a] {
        assert_eq!(answers[0].header("x-request-id"), Some("first"));
        for (i, x) in answers.iter().enumerate().filter(|(i, _)| *i != 2) {
            assert_eq!(x.header("x-sluice-deployment"), Some("up/mock-model"), "answer {i}");
            assert!(x.header("server-timing").is_some_and(|t| t.starts_with("gateway;dur=")), "answer {i}");
        }
    }
    assert_eq!(json(&f[0])["object"], "chat.completion");
    assert_eq!(json(&f[0])["choices"], json(&a[0])["choices"]);
    // The stream: the same events, then [DONE].
    let (fe, ae) = (sse_data(&String::from_utf8_lossy(&f[1].body)), sse_data(&String::from_utf8_lossy(&a[1].body)));
    assert!(fe.len() > 2, "{fe:?}");
    assert_eq!(fe.len(), ae.len());
    assert_eq!(fe.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(f[1].header("content-type"), Some("text/event-stream"));
    assert_eq!(json(&f[2])["object"], "list");
    assert_eq!(json(&f[3])["object"], "chat.completion");
    let (fl, al) = (long_answer(fast.addr).await, long_answer(actix.addr).await);
    assert_eq!((fl.status, al.status), (200, 200));
    assert!(fl.body.len() > 16 * 1024, "{} bytes: not past the copy limit", fl.body.len());
    assert_eq!(json(&fl)["choices"], json(&al)["choices"]);
    assert_eq!(fl.names(), al.names());
}

#[tokio::test]
async fn a_body_that_follows_its_head_in_pieces_is_read() {
    let mock = start_mock();
    for fast in [true, false] {
        let gw = gateway(mock.addr(), fast, None);
        let mut c = Conn::open(gw.addr).await;
        let req = post("/v1/chat/completions", CLIENT_KEY, "", &chat(false));
        let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        // The head in two writes, then the body in two.
        for part in [&req[..20], &req[20..head_end], &req[head_end..head_end + 10], &req[head_end + 10..]] {
            c.send(part).await;
            c.s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let a = c.answer().await;
        assert_eq!(a.status, 200, "fast {fast}: {a:?}");
        assert_eq!(json(&a)["object"], "chat.completion");
    }
}

#[tokio::test]
async fn a_large_body_sent_after_its_head_is_read_whole() {
    let mock = start_mock();
    // ~60 KB of content, under config_for's max_body_bytes of 65,536.
    let body = serde_json::to_vec(&serde_json::json!({
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "x".repeat(60_000)}]
    }))
    .unwrap();
    for fast in [true, false] {
        let gw = gateway(mock.addr(), fast, None);
        let mut c = Conn::open(gw.addr).await;
        let req = post("/v1/chat/completions", CLIENT_KEY, "", &body);
        let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        c.send(&req[..head_end]).await;
        c.s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        for part in req[head_end..].chunks(7_000) {
            c.send(part).await;
        }
        let a = c.answer().await;
        assert_eq!(a.status, 200, "fast {fast}: {a:?}");
        assert_eq!(json(&a)["object"], "chat.completion");
        let seen = mock.stats();
        assert!(last_request(&seen).body.contains(&"x".repeat(60_000)), "fast {fast}: the upstream got the whole body");
    }
}

#[tokio::test]
async fn an_error_before_the_body_arrived_is_answered_then_the_connection_closes() {
    let mock = start_mock();
    for fast in [true, false] {
        let gw = gateway(mock.addr(), fast, None);
        let mut c = Conn::open(gw.addr).await;
        // A wrong key, a promised 30,000-byte body, and only its first bytes.
        c.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong\r\ncontent-length: 30000\r\n\r\n{\"model\":")
            .await;
        let a = c.answer().await;
        assert_eq!(a.status, 401, "fast {fast}: {a:?}");
        assert_eq!(json(&a)["error"]["code"], "invalid_api_key", "fast {fast}");
        if fast {
            assert_eq!(a.header("connection"), Some("close"));
        }
        assert!(c.closed_within(Duration::from_secs(5)).await, "fast {fast}: the connection stays open");
    }
}

#[tokio::test]
async fn an_unread_body_already_in_hand_is_skipped_and_the_connection_kept() {
    let mock = start_mock();
    for fast in [true, false] {
        let gw = gateway(mock.addr(), fast, None);
        let mut c = Conn::open(gw.addr).await;
        let mut both = post("/v1/chat/completions", "wrong", "", &chat(false));
        both.extend(post("/v1/chat/completions", CLIENT_KEY, "", &chat(false)));
        c.send(&both).await;
        let (first, second) = (c.answer().await, c.answer().await);
        assert_eq!((first.status, second.status), (401, 200), "fast {fast}");
        assert_eq!(json(&second)["object"], "chat.completion");
    }
}

#[tokio::test]
async fn chunked_bodies_expect_continue_and_connection_close_are_served_by_actix_http() {
    let mock = start_mock();
    for fast in [true, false] {
        let gw = gateway(mock.addr(), fast, None);
        let body = chat(false);
        // A chunked body.
        let mut c = Conn::open(gw.addr).await;
        let mut req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        req.extend_from_slice(b"\r\n0\r\n\r\n");
        c.send(&req).await;
        assert_eq!(c.answer().await.status, 200, "fast {fast}: chunked");
        // Expect: 100-continue, on the same connection (now actix-http's).
        c.send(&post("/v1/chat/completions", CLIENT_KEY, "expect: 100-continue\r\n", &body)).await;
        assert_eq!(c.answer().await.status, 200, "fast {fast}: expect");
        // Connection: close on a fresh connection.
        let mut c = Conn::open(gw.addr).await;
        c.send(&post("/v1/chat/completions", CLIENT_KEY, "connection: close\r\n", &body)).await;
        let a = c.answer().await;
        assert_eq!(a.status, 200, "fast {fast}: close");
        assert!(c.closed_within(Duration::from_secs(5)).await, "fast {fast}: not closed after connection: close");
    }
}

#[tokio::test]
async fn keep_alive_is_bounded_and_can_be_off() {
    let mock = start_mock();
    for fast in [true, false] {
        // Idle for longer than keep_alive_ms: closed.
        let gw = gateway(mock.addr(), fast, Some(300));
        let mut c = Conn::open(gw.addr).await;
        c.send(&post("/v1/chat/completions", CLIENT_KEY, "", &chat(false))).await;
        assert_eq!(c.answer().await.status, 200);
        assert!(c.closed_within(Duration::from_secs(5)).await, "fast {fast}: an idle connection stays open");
        // Keep-alive off: every answer is the connection's last.
        let gw = gateway(mock.addr(), fast, Some(0));
        let mut c = Conn::open(gw.addr).await;
        c.send(&post("/v1/chat/completions", CLIENT_KEY, "", &chat(false))).await;
        let a = c.answer().await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("connection"), Some("close"), "fast {fast}");
        assert!(c.closed_within(Duration::from_secs(5)).await, "fast {fast}: open with keep-alive off");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_from_its_length() {
    let mock = start_mock();
    for fast in [true, false] {
        let gw = gateway(mock.addr(), fast, None);
        let mut c = Conn::open(gw.addr).await;
        // config_for's max_body_bytes is 65,536; nothing of the body is sent.
        c.send(format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\ncontent-length: 1000000\r\n\r\n").as_bytes())
            .await;
        let a = c.answer().await;
        assert_eq!(a.status, 413, "fast {fast}: {a:?}");
        assert!(c.closed_within(Duration::from_secs(5)).await, "fast {fast}");
    }
}

/// `sluice_ingress_handovers_total`, summed over reasons, from the gateway's /metrics.
async fn handovers(p: &SluiceProcess) -> (u64, String) {
    let text = client().get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let n = text
        .lines()
        .filter(|l| l.starts_with("sluice_ingress_handovers_total{"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>() as u64;
    (n, text)
}

/// The proof that the fast ingress serves the proxied routes: the gateway
/// runs as its own process (its metrics are its own), and a connection of
/// chat requests, streamed and not, is never handed to actix-http, while
/// each `/metrics` read (another route) is.
#[tokio::test]
async fn the_proxied_routes_are_served_by_the_fast_ingress_and_others_handed_over() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let config =
        config_for(mock.addr(), "").replace("${UPSTREAM_KEY}", UPSTREAM_KEY).replace("${CLIENT_KEY}", CLIENT_KEY);
    std::fs::write(&path, config).unwrap();
    let p = SluiceProcess::spawn(&path);
    p.wait_ready(false).await;
    let (before, _) = handovers(&p).await;
    let mut c = Conn::open(p.addr).await;
    for stream in [false, true, false] {
        c.send(&post("/v1/chat/completions", CLIENT_KEY, "", &chat(stream))).await;
        assert_eq!(c.answer().await.status, 200);
    }
    c.send(&post("/v1/embeddings", CLIENT_KEY, "", br#"{"model":"gpt-test","input":"hi"}"#)).await;
    assert_eq!(c.answer().await.status, 200);
    let (after, text) = handovers(&p).await;
    // Only the second /metrics read's connection went to actix-http.
    assert_eq!(after, before + 1, "{text}");
    assert!(text.contains(r#"sluice_ingress_handovers_total{reason="route"}"#), "{text}");
}
