//! Hostile clients over real HTTP (issue 13, deliver 6): slow headers, a
//! body that never finishes, 10,000 idle connections, pipelining, bodies at
//! every size around the limit, invalid UTF-8 and deep nesting, and
//! clients that leave at every phase. The gateway runs as its own process
//! (the built binary), so its memory and open descriptors are its own to
//! read from /proc; a good client keeps being served meanwhile.
//!
//! Latency: each test prints the good client's p99 quiet and under attack.
//! On a shared 2-core CI machine that ratio is noise, so CI asserts only
//! correctness (every good request answered); `SLUICE_STRICT_P99=1` (the
//! soak/bench phase, on a quiet machine) also asserts p99 under attack ≤
//! 2× quiet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The gateway binary, killed when dropped.
struct Sluice {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sluice {
    async fn spawn(mock: SocketAddr, server: &str) -> Sluice {
        let config = format!(
            r#"
[server]
workers = 2
max_body_bytes = 4096
{server}

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
forward_headers = ["x-mock-*"]
warm_connections = 0

[[models]]
name = "m"
deployments = [{{ provider = "up", model = "m" }}]

[[keys]]
name = "tester"
key = "{CLIENT_KEY}"
"#
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config).unwrap();
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config", path.to_str().unwrap(), "--listen", &addr.to_string()])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Sluice { addr, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client().get(s.url("/ready")).send().await
                && r.status() == 200
            {
                return s;
            }
            assert!(Instant::now() < deadline, "the gateway did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Open file descriptors of the gateway process.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap_or_else(|e| panic!("cannot list the gateway's descriptors: {e}"))
            .count()
    }

    /// Resident memory of the gateway process, in bytes.
    fn rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn small_body() -> String {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).to_string()
}

/// `n` good requests, one after the other: every one must be a 200. Their latencies.
async fn good_client(s: &Sluice, n: usize) -> Vec<Duration> {
    let c = client();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = c
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .header("content-type", "application/json")
            .body(small_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "a good client is always served");
        r.bytes().await.unwrap();
        out.push(t.elapsed());
    }
    out
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// Under attack, the good client's p99 may be at most twice its quiet one —
/// asserted only when asked (see the module's doc).
fn check_p99(what: &str, quiet: Duration, loaded: Duration) {
    eprintln!("{what}: good client p99 quiet {quiet:?}, under attack {loaded:?}");
    if std::env::var("SLUICE_STRICT_P99").is_ok_and(|v| v == "1") {
        assert!(loaded <= quiet * 2, "{what}: p99 {loaded:?} > 2 × {quiet:?}");
    }
}

/// Read until the server closes the connection (or `limit` passes): what it sent.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slow_headers_and_bodies_that_never_finish_are_timed_out_while_good_clients_are_served() {
    let mock = start_mock();
    let s = Sluice::spawn(mock.addr(), "client_request_timeout_ms = 1000\nbody_read_timeout_ms = 1000").await;
    let quiet = p99(good_client(&s, 300).await);
    let addr = s.addr;
    // Slowloris: a request head, one byte every 100 ms, never finished.
    let slow_heads: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                let t = Instant::now();
                c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n").await.unwrap();
                for b in b"x-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle() {
                    if c.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if t.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                t.elapsed()
            })
        })
        .collect();
    // A head, then 10 bytes of a promised 1000, then nothing.
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\":"
    );
    let stalled: Vec<_> = (0..100)
        .map(|_| {
            let head = head.clone();
            tokio::spawn(async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                let t = Instant::now();
                c.write_all(head.as_bytes()).await.unwrap();
                let got = read_until_closed(&mut c, Duration::from_secs(10)).await.expect("never answered");
                (t.elapsed(), String::from_utf8_lossy(&got).into_owned())
            })
        })
        .collect();
    let loaded = p99(good_client(&s, 300).await);
    for h in slow_heads {
        let took = h.await.unwrap();
        assert!(took < Duration::from_secs(4), "a slow head was cut after {took:?}, not ~1 s");
    }
    for h in stalled {
        let (took, answer) = h.await.unwrap();
        assert!(took < Duration::from_secs(4), "a stalled body was cut after {took:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    }
    check_p99("slow headers + stalled bodies", quiet, loaded);
    good_client(&s, 10).await;
}

/// Raise this process's open-file limit (the gateway inherits it); the new soft limit.
#[allow(unsafe_code)]
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        // Root may raise the hard limit too; others get the hard limit.
        let up = libc::rlimit { rlim_cur: want, rlim_max: want.max(lim.rlim_max) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &up) == 0 {
            return want;
        }
        let hard = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &hard) == 0 {
            return lim.rlim_max;
        }
    }
    lim.rlim_cur
}

#[tokio::test]
async fn ten_thousand_idle_connections_do_not_stop_good_clients_and_are_closed_in_time() {
    const IDLE: usize = 10_000;
    let limit = raise_nofile(IDLE as u64 + 5_000);
    if limit < IDLE as u64 + 500 {
        eprintln!(
            "SKIPPED ten_thousand_idle_connections: the open-file limit is {limit} and cannot be raised \
             above {} (needs {IDLE} + 500); run as root or raise `ulimit -n`",
            IDLE + 500
        );
        return;
    }
    let mock = start_mock();
    let s = Sluice::spawn(mock.addr(), "client_request_timeout_ms = 10000").await;
    let quiet = p99(good_client(&s, 300).await);
    let (fds_before, rss_before) = (s.fds(), s.rss());
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Every one accepted (an accepted socket is a descriptor of the gateway).
    let deadline = Instant::now() + Duration::from_secs(10);
    // (The good client's own connection may have closed meanwhile: a few of slack.)
    while s.fds() + 10 < fds_before + IDLE {
        assert!(Instant::now() < deadline, "only {} accepted", s.fds().saturating_sub(fds_before));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_idle = s.rss();
    let loaded = p99(good_client(&s, 300).await);
    eprintln!(
        "{IDLE} idle connections: gateway RSS {} MiB → {} MiB ({} bytes each), opened in {:?}",
        rss_before >> 20,
        rss_idle >> 20,
        rss_idle.saturating_sub(rss_before) / IDLE as u64,
        opened.elapsed()
    );
    assert!(rss_idle.saturating_sub(rss_before) < 256 << 20, "idle connections cost too much memory");
    check_p99("10,000 idle connections", quiet, loaded);
    // Never used: closed once client_request_timeout_ms has passed.
    let deadline = Instant::now() + Duration::from_secs(25);
    while s.fds() > fds_before + 50 {
        assert!(Instant::now() < deadline, "{} idle connections still open", s.fds().saturating_sub(fds_before));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(idle);
    good_client(&s, 10).await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let mock = start_mock();
    let s = Sluice::spawn(mock.addr(), "").await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let body = small_body();
    let one = |id: usize| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\nx-request-id: pipe-{id}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let all: String =
        (0..5).map(one).collect::<String>() + "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    c.write_all(all.as_bytes()).await.unwrap();
    let got = String::from_utf8(read_until_closed(&mut c, Duration::from_secs(10)).await.unwrap()).unwrap();
    assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 6, "{got}");
    let order: Vec<usize> = (0..5).map(|i| got.find(&format!("x-request-id: pipe-{i}")).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "answers in request order: {order:?}");
}

/// A chat body of exactly `n` bytes.
fn body_of(n: usize) -> String {
    let empty = json!({"model": "m", "messages": [{"role": "user", "content": ""}]}).to_string();
    let pad = n - empty.len();
    json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(pad)}]}).to_string()
}

#[tokio::test]
async fn bodies_at_every_size_around_the_limit() {
    let mock = start_mock();
    let s = Sluice::spawn(mock.addr(), "").await;
    for n in 4090..=4102 {
        let body = body_of(n);
        assert_eq!(body.len(), n);
        let want = if n <= 4096 { 200 } else { 413 };
        // With a content-length...
        let r = client()
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{n} bytes");
        // ...and chunked, in pieces, so only the running total can tell.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let mut raw = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        for piece in body.as_bytes().chunks(1000) {
            raw.push_str(&format!("{:x}\r\n{}\r\n", piece.len(), std::str::from_utf8(piece).unwrap()));
        }
        raw.push_str("0\r\n\r\n");
        c.write_all(raw.as_bytes()).await.unwrap();
        let got =
            String::from_utf8_lossy(&read_until_closed(&mut c, Duration::from_secs(10)).await.unwrap()).into_owned();
        assert!(got.starts_with(&format!("HTTP/1.1 {want}")), "{n} bytes chunked: {got}");
    }
}

#[tokio::test]
async fn invalid_utf8_and_deep_nesting_are_clear_400s() {
    let mock = start_mock();
    let s = Sluice::spawn(mock.addr(), "").await;
    let mut bad = br#"{"model":"m","messages":[{"role":"user","content":"caf"#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(br#""}]}"#);
    let deep = format!("{{\"model\":\"m\",\"messages\":[{}{}]}}", "[".repeat(2000), "]".repeat(2000));
    for body in [bad, deep.into_bytes(), b"\xff\xfe\xfd".to_vec()] {
        let r = client()
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
    good_client(&s, 5).await;
}

#[tokio::test]
async fn clients_leaving_at_every_phase_leave_nothing_behind() {
    let mock = start_mock();
    let s = Sluice::spawn(mock.addr(), "").await;
    good_client(&s, 20).await;
    let (fds_before, rss_before) = (s.fds(), s.rss());
    let body = small_body();
    let head = |len: usize, extra: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\n{extra}content-length: {len}\r\n\r\n"
        )
    };
    let stream_body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    for round in 0..20 {
        // Connected, then gone.
        drop(TcpStream::connect(s.addr).await.unwrap());
        // Half a head.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"POST /v1/chat/compl").await.unwrap();
        drop(c);
        // A head and half a body.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(format!("{}{}", head(body.len(), ""), &body[..body.len() / 2]).as_bytes()).await.unwrap();
        drop(c);
        // A whole request, gone before the (delayed) answer.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(format!("{}{body}", head(body.len(), "x-mock-delay-ms: 200\r\n")).as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(c);
        // A stream, gone after its first bytes.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(format!("{}{stream_body}", head(stream_body.len(), "x-mock-chunk-delay-ms: 20\r\n")).as_bytes())
            .await
            .unwrap();
        let mut first = [0u8; 256];
        let n = c.read(&mut first).await.unwrap();
        assert!(n > 0 && first.starts_with(b"HTTP/1.1 200"), "round {round}");
        drop(c);
    }
    // Everything those clients opened is closed again (the delayed answers
    // and streams run out within a second or so).
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.fds() > fds_before + 40 {
        assert!(Instant::now() < deadline, "{} descriptors left behind", s.fds().saturating_sub(fds_before));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    good_client(&s, 20).await;
    let grew = s.rss().saturating_sub(rss_before);
    assert!(grew < 64 << 20, "the gateway grew by {} MiB", grew >> 20);
}
