//! Fixed-rate load with h2load (Debian's `nghttp2-client`): `--rps` paces
//! each connection at a fixed request rate, which wrk cannot do. At a
//! moderate rate a gateway is idle between requests, so its CPU per request
//! shows what waking up, polling and going back to sleep cost, which
//! saturating load hides (issue 14: "LLM traffic is mostly moderate rates").

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::procs::{Res, command};

/// h2load's summary of one run (its `-D` main duration only).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RateRun {
    /// Requests per second asked for, over all connections.
    pub rate: usize,
    pub connections: usize,
    pub elapsed_s: f64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    /// Answers that were not 2xx.
    pub non_2xx: u64,
    /// "time for request": h2load gives min, max, mean and sd, no percentiles.
    pub mean_us: f64,
    pub max_us: f64,
    pub sd_us: f64,
}

impl RateRun {
    pub fn rps(&self) -> f64 {
        self.done as f64 / self.elapsed_s.max(1e-9)
    }

    pub fn errors(&self) -> u64 {
        self.failed + self.errored + self.timeout + self.non_2xx
    }
}

/// `h2load --version`, or None when it is not installed.
pub fn version() -> Option<String> {
    crate::procs::command_line("h2load", &["--version"])
}

/// "12us", "4.11ms", "1.02s" → microseconds.
fn micros(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * scale)
}

/// The numbers of `label: 12 total, 3 started, ...` as (name, value) pairs.
fn counts(line: &str) -> Vec<(&str, u64)> {
    line.split(',')
        .filter_map(|part| {
            let mut w = part.split_whitespace();
            let n = w.next()?.parse().ok()?;
            Some((w.next()?, n))
        })
        .collect()
}

pub fn parse(out: &str, rate: usize, connections: usize) -> Res<RateRun> {
    let mut r = RateRun { rate, connections, ..RateRun::default() };
    let mut seen = 0;
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            let secs = rest.split(',').next().and_then(micros).ok_or_else(|| format!("h2load: {line:?}"))?;
            r.elapsed_s = secs / 1e6;
            seen += 1;
        } else if let Some(rest) = line.strip_prefix("requests:") {
            for (name, n) in counts(rest) {
                match name {
                    "done" => r.done = n,
                    "succeeded" => r.succeeded = n,
                    "failed" => r.failed = n,
                    "errored" => r.errored = n,
                    "timeout" => r.timeout = n,
                    _ => {}
                }
            }
            seen += 1;
        } else if let Some(rest) = line.strip_prefix("status codes:") {
            r.non_2xx = counts(rest).iter().filter(|(k, _)| *k != "2xx").map(|(_, n)| n).sum();
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            let v: Vec<f64> = rest.split_whitespace().filter_map(micros).collect();
            if let [_min, max, mean, sd, ..] = v[..] {
                (r.max_us, r.mean_us, r.sd_us) = (max, mean, sd);
                seen += 1;
            }
        }
    }
    if seen < 3 {
        return Err(format!("h2load printed no summary:\n{out}"));
    }
    Ok(r)
}

/// One run: `rate` req/s in all over `connections` HTTP/1.1 connections
/// for `secs`, POSTing `body_file` to `url`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    url: &str,
    body_file: &Path,
    key: &str,
    rate: usize,
    connections: usize,
    secs: u64,
    core: Option<usize>,
) -> Res<RateRun> {
    let per_conn = rate as f64 / connections as f64;
    let args: Vec<String> = vec![
        "--h1".into(),
        "-t1".into(),
        format!("-c{connections}"),
        format!("--rps={per_conn}"),
        format!("-D{secs}"),
        "-d".into(),
        body_file.display().to_string(),
        "-H".into(),
        format!("Authorization: Bearer {key}"),
        "-H".into(),
        "Content-Type: application/json".into(),
        url.into(),
    ];
    let child = command(Path::new("h2load"), &args, core)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run h2load: {e}"))?;
    let out = tokio::time::timeout(Duration::from_secs(secs + 60), child.wait_with_output())
        .await
        .map_err(|_| "h2load did not finish in time".to_string())?
        .map_err(|e| format!("h2load: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse(&text, rate, connections)
        .map_err(|e| format!("{e}\n(status {}) {}", out.status, String::from_utf8_lossy(&out.stderr)))
}
