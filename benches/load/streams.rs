//! Our own SSE client, for what wrk cannot time: time to first chunk and the
//! gaps between chunks. It runs as a child process (this bench binary again,
//! `--stream-client SPEC` or `--open-streams SPEC`, SPEC being JSON), so it
//! can be pinned with taskset like the other load generators.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::{Semaphore, mpsc};

use crate::procs::{Res, command};

/// What a stream client does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub addr: SocketAddr,
    pub model: String,
    pub key: String,
    /// Concurrent connections (`--stream-client`) or streams to hold open (`--open-streams`).
    pub count: usize,
    /// `--stream-client`: each connection loops streams for this long.
    pub duration_ms: u64,
    pub tokens: u32,
    pub chunk_delay_ms: u64,
}

/// Percentiles of a sample, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Pcts {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Pcts {
    pub fn of_ns(mut v: Vec<u64>) -> Pcts {
        if v.is_empty() {
            return Pcts::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1e3;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64 / 1e3;
        Pcts { count: v.len() as u64, p50: at(0.50), p95: at(0.95), p99: at(0.99), max: at(1.0), mean }
    }
}

/// One `--stream-client` run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StreamRun {
    pub streams: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub elapsed_us: u64,
    /// Request sent → first body frame holding a whole event.
    pub ttfc_us: Pcts,
    /// Between consecutive body frames holding events.
    pub gap_us: Pcts,
    pub events: u64,
    pub event_frames: u64,
    /// Frames that carried more than one event (events held back and coalesced).
    pub coalesced_frames: u64,
    /// Paced streams (a delay of 4 ms or more): events whose frame came less
    /// than a quarter of the delay after the previous event's. The upstream
    /// paces them, so such an event was held back somewhere and let go
    /// together with the next one (a missed wake-up, or the client's own
    /// scheduling: compare with the direct run).
    #[serde(default)]
    pub held_events: u64,
}

impl StreamRun {
    pub fn streams_per_s(&self) -> f64 {
        self.streams as f64 / (self.elapsed_us as f64 / 1e6).max(1e-9)
    }
}

/// `--open-streams`: how the opening went.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OpenReport {
    pub open: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub open_all_ms: f64,
}

#[derive(Default)]
struct Tally {
    run: StreamRun,
    ttfc: Vec<u64>,
    gaps: Vec<u64>,
}

impl Tally {
    fn error(&mut self, e: String) {
        self.run.errors += 1;
        if self.run.error_samples.len() < 5 {
            self.run.error_samples.push(e);
        }
    }
}

pub fn chat_stream_body(model: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"model":"{model}","stream":true,"messages":[{{"role":"user","content":"Hello, bench!"}}]}}"#
    ))
}

pub type Sender = SendRequest<Full<Bytes>>;

pub async fn connect(addr: SocketAddr) -> Res<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one stream request; returns the response body once its headers
/// are in, and when the request went out.
async fn send(s: &mut Sender, spec: &Spec, body: &Bytes) -> Res<(hyper::body::Incoming, Instant)> {
    let req = http::Request::post("/v1/chat/completions")
        .header(http::header::HOST, spec.addr.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {}", spec.key))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-mock-tokens", spec.tokens.to_string())
        .header("x-mock-chunk-delay-ms", spec.chunk_delay_ms.to_string())
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    s.ready().await.map_err(|e| format!("connection: {e}"))?;
    let t0 = Instant::now();
    let resp = s.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = resp.into_body();
    if !status.is_success() {
        let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(format!("status {status}: {}", String::from_utf8_lossy(&text[..text.len().min(200)])));
    }
    Ok((body, t0))
}

/// Events (`\n\n`-terminated) that end in this frame; `nl` carries a
/// trailing newline over from the previous frame.
fn events_in(data: &[u8], nl: &mut bool) -> u64 {
    let mut n = 0;
    let mut prev = *nl;
    for &b in data {
        if b == b'\n' {
            if prev {
                n += 1;
                prev = false;
                continue;
            }
            prev = true;
        } else if b != b'\r' {
            prev = false;
        }
    }
    *nl = prev;
    n
}

/// One whole stream, timed.
async fn one_stream(s: &mut Sender, spec: &Spec, body: &Bytes, t: &mut Tally) -> Res<()> {
    let (mut incoming, t0) = send(s, spec, body).await?;
    let (mut last, mut nl, mut done) = (None::<Instant>, false, false);
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        let Ok(data) = frame.into_data() else { continue };
        let now = Instant::now();
        let n = events_in(&data, &mut nl);
        if n > 0 {
            let since = last.unwrap_or(t0);
            let ns = now.duration_since(since).as_nanos() as u64;
            if last.is_none() {
                t.ttfc.push(ns)
            } else {
                t.gaps.push(ns);
                if spec.chunk_delay_ms >= 4 && ns < spec.chunk_delay_ms * 1_000_000 / 4 {
                    t.run.held_events += n;
                }
            }
            last = Some(now);
            t.run.events += n;
            t.run.event_frames += 1;
            t.run.coalesced_frames += u64::from(n > 1);
        }
        done |= memchr::memmem::find(&data, b"[DONE]").is_some();
    }
    if !done {
        return Err("stream ended without data: [DONE]".into());
    }
    Ok(())
}

async fn loop_streams(spec: Arc<Spec>, deadline: Instant) -> Tally {
    let mut t = Tally::default();
    let body = chat_stream_body(&spec.model);
    let mut sender: Option<Sender> = None;
    while Instant::now() < deadline {
        let s = match &mut sender {
            Some(s) if !s.is_closed() => s,
            _ => match connect(spec.addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    t.error(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match one_stream(s, &spec, &body, &mut t).await {
            Ok(()) => t.run.streams += 1,
            Err(e) => {
                t.error(e);
                sender = None;
            }
        }
    }
    t
}

/// `--stream-client`: `count` connections loop streams for `duration_ms`;
/// prints `STREAM_JSON {StreamRun}`.
pub async fn stream_client(spec: Spec) -> Res<()> {
    let spec = Arc::new(spec);
    let start = Instant::now();
    let deadline = start + Duration::from_millis(spec.duration_ms);
    let tasks: Vec<_> = (0..spec.count).map(|_| tokio::spawn(loop_streams(spec.clone(), deadline))).collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.map_err(|e| e.to_string())?;
        all.run.streams += t.run.streams;
        all.run.events += t.run.events;
        all.run.event_frames += t.run.event_frames;
        all.run.coalesced_frames += t.run.coalesced_frames;
        all.run.held_events += t.run.held_events;
        for e in t.run.error_samples.iter().cloned() {
            all.error(e);
        }
        all.run.errors += t.run.errors - t.run.error_samples.len() as u64;
        all.ttfc.extend(t.ttfc);
        all.gaps.extend(t.gaps);
    }
    let mut run = all.run;
    run.elapsed_us = start.elapsed().as_micros() as u64;
    run.ttfc_us = Pcts::of_ns(all.ttfc);
    run.gap_us = Pcts::of_ns(all.gaps);
    println!("STREAM_JSON {}", serde_json::to_string(&run).map_err(|e| e.to_string())?);
    Ok(())
}

/// Opens one stream and waits for its first event; then keeps reading it in
/// the background (so it stays open) until it ends or the process exits.
async fn open_one(spec: Arc<Spec>, body: Bytes) -> Res<()> {
    let mut s = connect(spec.addr).await?;
    let (mut incoming, _) = send(&mut s, &spec, &body).await?;
    let mut nl = false;
    loop {
        match incoming.frame().await {
            Some(Ok(f)) => {
                if f.data_ref().is_some_and(|d| events_in(d, &mut nl) > 0) {
                    break;
                }
            }
            Some(Err(e)) => return Err(format!("body: {e}")),
            None => return Err("stream ended before its first event".into()),
        }
    }
    tokio::spawn(async move {
        let _keep = s;
        while let Some(Ok(_)) = incoming.frame().await {}
    });
    Ok(())
}

/// `--open-streams`: opens `count` concurrent streams (64 being opened at a
/// time), prints `READY {OpenReport}` once each has its first event (or
/// failed), then holds them open until stdin closes.
pub async fn open_streams(spec: Spec) -> Res<()> {
    let spec = Arc::new(spec);
    let body = chat_stream_body(&spec.model);
    let gate = Arc::new(Semaphore::new(64));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    for _ in 0..spec.count {
        let (spec, body, gate, tx) = (spec.clone(), body.clone(), gate.clone(), tx.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let r = tokio::time::timeout(Duration::from_secs(30), open_one(spec, body)).await;
            drop(permit);
            let _ = tx.send(r.unwrap_or_else(|_| Err("no first event within 30 s".into())));
        });
    }
    drop(tx);
    let mut rep = OpenReport::default();
    while let Some(r) = rx.recv().await {
        match r {
            Ok(()) => rep.open += 1,
            Err(e) => {
                rep.errors += 1;
                if rep.error_samples.len() < 5 {
                    rep.error_samples.push(e);
                }
            }
        }
    }
    rep.open_all_ms = start.elapsed().as_secs_f64() * 1e3;
    println!("READY {}", serde_json::to_string(&rep).map_err(|e| e.to_string())?);
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    Ok(())
}

/// Runs `--stream-client` as a (pinned) child and returns its numbers.
pub async fn run_client(exe: &Path, spec: &Spec, core: Option<usize>) -> Res<StreamRun> {
    run_child(exe, "--stream-client", "STREAM_JSON ", spec, spec.duration_ms, core).await
}

/// Runs this bench binary again as a (pinned) load-generating child with
/// `flag SPEC-as-JSON`, and parses the line it prints after `prefix`.
pub async fn run_child<S: Serialize, R: serde::de::DeserializeOwned>(
    exe: &Path,
    flag: &str,
    prefix: &str,
    spec: &S,
    duration_ms: u64,
    core: Option<usize>,
) -> Res<R> {
    let arg = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let child = command(exe, &[flag.into(), arg], core)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {flag}: {e}"))?;
    let limit = Duration::from_millis(duration_ms) + Duration::from_secs(60);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| format!("{flag} did not finish in time"))?
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix(prefix)).ok_or_else(|| {
        format!("{flag} failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr))
    })?;
    serde_json::from_str(line).map_err(|e| format!("{flag} output: {e}"))
}

/// A running `--open-streams` child: streams stay open until [`OpenStreams::close`].
pub struct OpenStreams {
    child: tokio::process::Child,
}

impl OpenStreams {
    pub fn start(exe: &Path, spec: &Spec, core: Option<usize>) -> Res<OpenStreams> {
        let arg = serde_json::to_string(spec).map_err(|e| e.to_string())?;
        let child = command(exe, &["--open-streams".into(), arg], core)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the open-streams client: {e}"))?;
        Ok(OpenStreams { child })
    }

    /// Waits for every stream to be open (or failed).
    pub async fn ready(&mut self) -> Res<OpenReport> {
        let out = self.child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(out).lines();
        let wait = async {
            while let Some(l) = lines.next_line().await.map_err(|e| e.to_string())? {
                if let Some(j) = l.strip_prefix("READY ") {
                    return serde_json::from_str(j).map_err(|e| e.to_string());
                }
            }
            Err("the open-streams client exited before it was ready".to_string())
        };
        tokio::time::timeout(Duration::from_secs(180), wait).await.map_err(|_| "opening the streams took > 180 s")?
    }

    /// Closes every stream (the client exits) and waits for it.
    pub async fn close(mut self) -> Res<()> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let _ = self.child.start_kill();
                Err("the open-streams client did not exit".into())
            }
        }
    }
}
