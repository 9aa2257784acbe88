//! Evenly paced fixed-rate load: our own client, because h2load's `--rps`
//! sends in bursts (at "2,000 req/s" on one connection ~95% of requests go
//! out right after the previous answer, then it idles for milliseconds;
//! docs/performance.md, "Fixed rates"), so its runs measure back-to-back
//! traffic rather than a gateway that idles between requests.
//!
//! Each connection sends request *i* at *start + offset + i × period*
//! (period = connections / rate, the connections' offsets spread over one
//! period), or at once when the previous answer came late. Requests are
//! timed with `std::thread::sleep` (a `nanosleep`, tens of µs late at worst)
//! rather than tokio's timer, whose 1-ms resolution would send pairs back to
//! back at 2,000 req/s; the HTTP exchange itself is hyper's, driven by a
//! current-thread runtime between sleeps. It runs as a child process (this
//! bench binary again, `--paced-client SPEC`), pinned like the other load
//! generators, and reports an [`RateRun`] as h2load's parser does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};

use crate::h2load::RateRun;
use crate::procs::Res;
use crate::streams::{self, Sender};

/// What a paced client does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub addr: SocketAddr,
    pub key: String,
    pub body: PathBuf,
    /// Requests per second over all connections.
    pub rate: usize,
    pub connections: usize,
    pub duration_ms: u64,
}

const PREFIX: &str = "PACED_JSON ";

/// Runs the paced client as a pinned child process and returns its summary.
pub async fn run_client(exe: &Path, spec: &Spec, core: Option<usize>) -> Res<RateRun> {
    streams::run_child(exe, "--paced-client", PREFIX, spec, spec.duration_ms, core).await
}

/// A connection, and when its next request is due.
struct Conn {
    sender: Sender,
    next_due: Instant,
}

/// The child's body: paces the requests, then prints one `PACED_JSON` line.
/// Runs on the current thread: the sleeps block it on purpose (see the
/// module's comment).
pub fn paced_client(spec: Spec) -> Res<()> {
    if spec.rate == 0 || spec.connections == 0 {
        return Err("rate and connections must be at least 1".into());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let body = Bytes::from(std::fs::read(&spec.body).map_err(|e| format!("{}: {e}", spec.body.display()))?);
    let period = Duration::from_secs_f64(spec.connections as f64 / spec.rate as f64);
    let offset = period / spec.connections as u32;
    let mut conns = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        conns.push(rt.block_on(streams::connect(spec.addr))?);
    }
    let start = Instant::now() + Duration::from_millis(10);
    let end = start + Duration::from_millis(spec.duration_ms);
    let mut conns: Vec<Conn> =
        conns.into_iter().enumerate().map(|(k, sender)| Conn { sender, next_due: start + offset * k as u32 }).collect();
    let mut r = RateRun { rate: spec.rate, connections: spec.connections, ..RateRun::default() };
    let (mut sum, mut sum_sq, mut max) = (0f64, 0f64, 0f64);
    // The connection whose request is due first (one request at a time per
    // connection, as HTTP/1.1 without pipelining allows), until the end.
    while let Some(c) = conns.iter_mut().min_by_key(|c| c.next_due).filter(|c| c.next_due < end) {
        let now = Instant::now();
        if c.next_due > now {
            // A load generator's own thread, blocked on purpose: tokio's
            // timer would round the wait up to its 1-ms tick.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(c.next_due - now);
        }
        let sent = Instant::now();
        let outcome = rt.block_on(exchange(&mut c.sender, &spec, &body));
        let us = sent.elapsed().as_secs_f64() * 1e6;
        c.next_due += period;
        r.done += 1;
        match outcome {
            Ok(true) => r.succeeded += 1,
            Ok(false) => r.non_2xx += 1,
            Err(e) => {
                r.errored += 1;
                if r.errored == 1 {
                    eprintln!("paced client: {e}");
                }
                // A broken connection is replaced, so the rate goes on.
                c.sender = rt.block_on(streams::connect(spec.addr))?;
            }
        }
        sum += us;
        sum_sq += us * us;
        max = f64::max(max, us);
    }
    r.elapsed_s = start.elapsed().as_secs_f64().max(1e-3);
    if r.done > 0 {
        let n = r.done as f64;
        r.mean_us = sum / n;
        r.max_us = max;
        r.sd_us = (sum_sq / n - r.mean_us * r.mean_us).max(0.0).sqrt();
    }
    println!("{PREFIX}{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
    Ok(())
}

/// Sends one request and reads its whole answer; true for a 2xx.
async fn exchange(s: &mut Sender, spec: &Spec, body: &Bytes) -> Res<bool> {
    let req = http::Request::post("/v1/chat/completions")
        .header(http::header::HOST, spec.addr.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {}", spec.key))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    s.ready().await.map_err(|e| format!("connection: {e}"))?;
    let resp = s.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let ok = resp.status().is_success();
    resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
    Ok(ok)
}
