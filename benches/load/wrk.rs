//! Non-stream load with wrk: a Lua script that POSTs a chat request and
//! prints its summary as one JSON line.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::procs::{Res, command};

/// The chat request body (about 70 bytes, as in the manual measurements).
pub const CHAT_BODY: &str = r#"{"model":"bench","messages":[{"role":"user","content":"Hello, bench!"}]}"#;

/// wrk's summary of one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WrkRun {
    pub requests: u64,
    pub duration_us: u64,
    pub bytes: u64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    pub errors: WrkErrors,
}

/// wrk's error counters; `status` counts responses that were not 2xx/3xx.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WrkErrors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub status: u64,
    pub timeout: u64,
}

impl WrkErrors {
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.status + self.timeout
    }
}

impl WrkRun {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6).max(1e-9)
    }
}

/// The Lua script: the POST, and a `done()` that prints `WRK_JSON {...}`.
pub fn script(key: &str) -> String {
    format!(
        r#"wrk.method = "POST"
wrk.body = '{CHAT_BODY}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%.1f,"p95_us":%.1f,"p99_us":%.1f,' ..
    '"max_us":%.1f,"mean_us":%.1f,"errors":{{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#
    )
}

/// `wrk -v`'s first line, or an error saying how to install wrk.
pub fn version() -> Res<String> {
    match std::process::Command::new("wrk").arg("-v").output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
            Ok(String::from_utf8_lossy(&text).lines().next().unwrap_or("wrk").trim().to_string())
        }
        Err(e) => Err(format!(
            "wrk is needed for the non-stream load ({e}). Install it: `sudo apt-get install -y wrk` \
             (Debian/Ubuntu), `brew install wrk` (macOS), or build https://github.com/wg/wrk"
        )),
    }
}

/// One run: `wrk -t1 -c<conc> -d<secs>s` against `url`.
pub async fn run(url: &str, script: &Path, conc: usize, secs: u64, core: Option<usize>) -> Res<WrkRun> {
    let args: Vec<String> = vec![
        "-t1".into(),
        format!("-c{conc}"),
        format!("-d{secs}s"),
        "--timeout".into(),
        "5s".into(),
        "-s".into(),
        script.display().to_string(),
        url.into(),
    ];
    let child = command(Path::new("wrk"), &args, core)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let out = tokio::time::timeout(Duration::from_secs(secs + 60), child.wait_with_output())
        .await
        .map_err(|_| "wrk did not finish in time".to_string())?
        .map_err(|e| format!("wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("WRK_JSON ")).ok_or_else(|| {
        format!("wrk printed no summary (status {}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr))
    })?;
    serde_json::from_str(line).map_err(|e| format!("wrk summary {line:?}: {e}"))
}
