//! The overload phase: what admitted requests see when far more arrive than
//! a limit admits (issue 5: queueing and load shedding). A model with
//! `max_concurrent` in front of a slow upstream, the bounded `[queue]`, and
//! a client of our own (wrk cannot split latency by status): every answer's
//! latency is kept by status, so admitted (200) requests are timed apart
//! from the ones shed (503 `overloaded`) or refused (429).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};

use crate::procs::Res;
use crate::streams::{Pcts, Sender, connect};

/// The capped model's limit, the queue and the upstream's delay: capacity
/// is `MAX_CONCURRENT / DELAY_MS` requests per ms (800 req/s).
pub const MAX_CONCURRENT: usize = 8;
pub const QUEUE_MAX: usize = 64;
pub const QUEUE_WAIT_MS: u64 = 500;
pub const DELAY_MS: u64 = 10;

/// The gateway config's part for this phase.
pub fn config() -> String {
    format!(
        r#"
[queue]
max_size = {QUEUE_MAX}
max_wait_ms = {QUEUE_WAIT_MS}

[[models]]
name = "bench-capped"
deployments = [{{ provider = "upstream", model = "mock-model" }}]
max_concurrent = {MAX_CONCURRENT}
"#
    )
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub addr: SocketAddr,
    pub model: String,
    pub key: String,
    pub count: usize,
    pub duration_ms: u64,
    pub delay_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OverloadRun {
    pub concurrency: usize,
    pub elapsed_us: u64,
    /// Admitted and answered (200).
    pub ok: u64,
    pub ok_us: Pcts,
    /// Shed at once because the queue was full (503).
    pub shed: u64,
    pub shed_us: Pcts,
    /// Refused after waiting the queue's maximum (429).
    pub refused: u64,
    pub refused_us: Pcts,
    /// Anything else: other statuses, connection errors.
    pub errors: u64,
    pub error_samples: Vec<String>,
}

impl OverloadRun {
    pub fn ok_per_s(&self) -> f64 {
        self.ok as f64 / (self.elapsed_us as f64 / 1e6).max(1e-9)
    }
}

#[derive(Default)]
struct Tally {
    ok: Vec<u64>,
    shed: Vec<u64>,
    refused: Vec<u64>,
    errors: u64,
    samples: Vec<String>,
}

/// One request: its status and latency (request sent → whole body read).
async fn one(s: &mut Sender, spec: &Spec, body: &Bytes) -> Res<(u16, u64)> {
    let req = http::Request::post("/v1/chat/completions")
        .header(http::header::HOST, spec.addr.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {}", spec.key))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-mock-delay-ms", spec.delay_ms.to_string())
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    s.ready().await.map_err(|e| format!("connection: {e}"))?;
    let t0 = Instant::now();
    let resp = s.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
    Ok((status, t0.elapsed().as_nanos() as u64))
}

async fn loop_requests(spec: Arc<Spec>, deadline: Instant) -> Tally {
    let mut t = Tally::default();
    let body = Bytes::from(format!(
        r#"{{"model":"{}","messages":[{{"role":"user","content":"Hello, bench!"}}]}}"#,
        spec.model
    ));
    let mut sender: Option<Sender> = None;
    let fail = |t: &mut Tally, e: String| {
        t.errors += 1;
        if t.samples.len() < 5 {
            t.samples.push(e);
        }
    };
    while Instant::now() < deadline {
        let s = match &mut sender {
            Some(s) if !s.is_closed() => s,
            _ => match connect(spec.addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    fail(&mut t, e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match one(s, &spec, &body).await {
            Ok((200, ns)) => t.ok.push(ns),
            Ok((503, ns)) => t.shed.push(ns),
            Ok((429, ns)) => t.refused.push(ns),
            Ok((status, _)) => fail(&mut t, format!("status {status}")),
            Err(e) => {
                fail(&mut t, e);
                sender = None;
            }
        }
    }
    t
}

/// `--overload-client`: `count` connections loop requests for
/// `duration_ms`; prints `OVERLOAD_JSON {OverloadRun}`.
pub async fn overload_client(spec: Spec) -> Res<()> {
    let spec = Arc::new(spec);
    let start = Instant::now();
    let deadline = start + Duration::from_millis(spec.duration_ms);
    let tasks: Vec<_> = (0..spec.count).map(|_| tokio::spawn(loop_requests(spec.clone(), deadline))).collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.map_err(|e| e.to_string())?;
        all.ok.extend(t.ok);
        all.shed.extend(t.shed);
        all.refused.extend(t.refused);
        all.errors += t.errors;
        for s in t.samples {
            if all.samples.len() < 5 {
                all.samples.push(s);
            }
        }
    }
    let run = OverloadRun {
        concurrency: spec.count,
        elapsed_us: start.elapsed().as_micros() as u64,
        ok: all.ok.len() as u64,
        ok_us: Pcts::of_ns(all.ok),
        shed: all.shed.len() as u64,
        shed_us: Pcts::of_ns(all.shed),
        refused: all.refused.len() as u64,
        refused_us: Pcts::of_ns(all.refused),
        errors: all.errors,
        error_samples: all.samples,
    };
    println!("OVERLOAD_JSON {}", serde_json::to_string(&run).map_err(|e| e.to_string())?);
    Ok(())
}

/// Runs `--overload-client` as a (pinned) child and returns its numbers.
pub async fn run_client(exe: &Path, spec: &Spec, core: Option<usize>) -> Res<OverloadRun> {
    crate::streams::run_child(exe, "--overload-client", "OVERLOAD_JSON ", spec, spec.duration_ms, core).await
}

/// One line of progress and of the table.
pub fn line(r: &OverloadRun, capacity_per_s: f64) -> String {
    format!(
        "{:>5}  admitted {:>7.0}/s ({:>3.0}% of capacity) p50 {:>7.2} p99 {:>7.2} max {:>7.2}  shed 503 {:>8} p50 {:.3}  refused 429 {:>5}  errors {}",
        r.concurrency,
        r.ok_per_s(),
        100.0 * r.ok_per_s() / capacity_per_s,
        r.ok_us.p50 / 1e3,
        r.ok_us.p99 / 1e3,
        r.ok_us.max / 1e3,
        r.shed,
        r.shed_us.p50 / 1e3,
        r.refused,
        r.errors,
    )
}
