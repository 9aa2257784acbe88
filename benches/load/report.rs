//! Aggregates, budgets, the printed table and the JSON file.
//!
//! Across rounds: throughput = sum of requests / sum of durations; each
//! latency percentile = the median of that percentile over the rounds (the
//! mean of the two middle rounds when their number is even). Added = through
//! − direct, per percentile.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value, json};

use crate::memory::MemRun;
use crate::opts::Options;
use crate::procs::{Res, busy_str, command_line, mb};
use crate::streams::StreamRun;
use crate::wrk::WrkRun;

#[derive(Clone, Debug, Serialize)]
pub struct HttpRec {
    pub concurrency: usize,
    pub round: usize,
    pub target: &'static str,
    pub rps: f64,
    pub sluice_cpu_s: f64,
    /// Busy fraction of each CPU during the run (see `procs::cpu_ticks`).
    pub cores_busy: Vec<f64>,
    pub wrk: WrkRun,
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamRec {
    pub concurrency: usize,
    pub round: usize,
    pub target: &'static str,
    pub sluice_cpu_s: f64,
    pub cores_busy: Vec<f64>,
    pub run: StreamRun,
}

pub struct Report<'a> {
    pub opts: &'a Options,
    pub machine: Value,
    pub started_unix: u64,
    pub elapsed_s: f64,
    pub pin_note: Option<String>,
    pub pinned: bool,
    pub rss_idle_start: u64,
    pub rss_idle_warm: u64,
    /// VmHWM of the Sluice that served the load runs.
    pub hwm_load: u64,
    pub cpu_total_s: f64,
    pub cpu_runs_s: f64,
    pub http: Vec<HttpRec>,
    pub streams: Vec<StreamRec>,
    /// The overload phase (benches/load/overload.rs).
    pub overload: Vec<crate::overload::OverloadRun>,
    pub memory: Vec<MemRun>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpSide {
    pub requests: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub errors: u64,
    pub sluice_cpu_s: f64,
    /// Mean busy fraction of each CPU over the rounds.
    pub cores_busy: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HttpAgg {
    pub concurrency: usize,
    pub direct: HttpSide,
    pub through: HttpSide,
    pub added_p50_us: f64,
    pub added_p95_us: f64,
    pub added_p99_us: f64,
    pub through_over_direct: f64,
    pub sluice_cpu_us_per_request: f64,
    /// Sluice CPU seconds per wall second during the through runs.
    pub sluice_cores_busy: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamSide {
    pub streams: u64,
    pub streams_per_s: f64,
    pub ttfc_p50_us: f64,
    pub ttfc_p95_us: f64,
    pub ttfc_p99_us: f64,
    pub gap_p50_us: f64,
    pub gap_p99_us: f64,
    pub gap_p50_minus_delay_us: f64,
    pub gap_p99_minus_delay_us: f64,
    pub events: u64,
    pub event_frames: u64,
    pub coalesced_frames: u64,
    pub errors: u64,
    pub sluice_cpu_s: f64,
    pub cores_busy: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamAgg {
    pub concurrency: usize,
    pub direct: StreamSide,
    pub through: StreamSide,
    pub added_ttfc_p50_us: f64,
    pub added_ttfc_p95_us: f64,
    pub added_ttfc_p99_us: f64,
    pub added_gap_p50_us: f64,
    pub added_gap_p99_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Budget {
    pub name: String,
    pub value: String,
    pub pass: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

pub fn ms(us: f64) -> String {
    format!("{:.3}", us / 1e3)
}

/// 12345.6 → "12,346".
pub fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 && s != "0" { format!("-{out}") } else { out }
}

pub fn lat(us: f64) -> String {
    if us < 1000.0 { format!("{us:.0} µs") } else { format!("{:.2} ms", us / 1e3) }
}

pub fn pf(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

pub fn http_line(c: usize, through: bool, w: &WrkRun, busy: &[f64]) -> String {
    format!(
        "c={c:<3} {:<7} {:>8} req/s  p50 {}  p99 {}  errors {}  cores busy {}",
        if through { "through" } else { "direct" },
        thousands(w.rps()),
        lat(w.p50_us),
        lat(w.p99_us),
        w.errors.total(),
        busy_str(busy)
    )
}

pub fn stream_line(c: usize, through: bool, r: &StreamRun, busy: &[f64]) -> String {
    format!(
        "streams c={c:<3} {:<7} {:>6.1} streams/s  TTFC p50 {}  p99 {}  gap p50 {}  p99 {}  coalesced {}  errors {}  \
         cores busy {}",
        if through { "through" } else { "direct" },
        r.streams_per_s(),
        lat(r.ttfc_us.p50),
        lat(r.ttfc_us.p99),
        lat(r.gap_us.p50),
        lat(r.gap_us.p99),
        r.coalesced_frames,
        r.errors,
        busy_str(busy)
    )
}

pub fn memory_line(m: &MemRun) -> String {
    format!(
        "memory, {}: {} streams open (of {}), RSS {:.1} MB (+{:.1} KB/stream), errors {}",
        m.variant,
        thousands(m.open as f64),
        thousands(m.used as f64),
        mb(m.rss_open_bytes),
        m.rss_per_stream_bytes / 1024.0,
        m.errors
    )
}

fn http_side(runs: &[&HttpRec]) -> HttpSide {
    let requests: u64 = runs.iter().map(|r| r.wrk.requests).sum();
    let duration_s: f64 = runs.iter().map(|r| r.wrk.duration_us as f64 / 1e6).sum();
    let m = |f: fn(&WrkRun) -> f64| median(runs.iter().map(|r| f(&r.wrk)).collect());
    HttpSide {
        requests,
        duration_s,
        rps: requests as f64 / duration_s.max(1e-9),
        p50_us: m(|w| w.p50_us),
        p95_us: m(|w| w.p95_us),
        p99_us: m(|w| w.p99_us),
        max_us: runs.iter().map(|r| r.wrk.max_us).fold(0.0, f64::max),
        errors: runs.iter().map(|r| r.wrk.errors.total()).sum(),
        sluice_cpu_s: runs.iter().map(|r| r.sluice_cpu_s).sum(),
        cores_busy: mean_busy(runs.iter().map(|r| &r.cores_busy)),
    }
}

fn mean_busy<'a>(runs: impl Iterator<Item = &'a Vec<f64>> + Clone) -> Vec<f64> {
    let n = runs.clone().count().max(1) as f64;
    let cores = runs.clone().map(Vec::len).max().unwrap_or(0);
    (0..cores).map(|i| runs.clone().map(|v| v.get(i).copied().unwrap_or(0.0)).sum::<f64>() / n).collect()
}

fn stream_side(runs: &[&StreamRec], delay_us: f64) -> StreamSide {
    let streams: u64 = runs.iter().map(|r| r.run.streams).sum();
    let secs: f64 = runs.iter().map(|r| r.run.elapsed_us as f64 / 1e6).sum();
    let m = |f: fn(&StreamRun) -> f64| median(runs.iter().map(|r| f(&r.run)).collect());
    let sum = |f: fn(&StreamRun) -> u64| runs.iter().map(|r| f(&r.run)).sum::<u64>();
    let (gap50, gap99) = (m(|r| r.gap_us.p50), m(|r| r.gap_us.p99));
    StreamSide {
        streams,
        streams_per_s: streams as f64 / secs.max(1e-9),
        ttfc_p50_us: m(|r| r.ttfc_us.p50),
        ttfc_p95_us: m(|r| r.ttfc_us.p95),
        ttfc_p99_us: m(|r| r.ttfc_us.p99),
        gap_p50_us: gap50,
        gap_p99_us: gap99,
        gap_p50_minus_delay_us: gap50 - delay_us,
        gap_p99_minus_delay_us: gap99 - delay_us,
        events: sum(|r| r.events),
        event_frames: sum(|r| r.event_frames),
        coalesced_frames: sum(|r| r.coalesced_frames),
        errors: sum(|r| r.errors),
        sluice_cpu_s: runs.iter().map(|r| r.sluice_cpu_s).sum(),
        cores_busy: mean_busy(runs.iter().map(|r| &r.cores_busy)),
    }
}

/// Facts about the machine and the build, for the JSON.
pub fn machine(cores: usize, nofile: u64, wrk_version: &str) -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|l| l.trim_start_matches([' ', '\t', ':']));
    let dir = env!("CARGO_MANIFEST_DIR");
    let commit = command_line("git", &["-C", dir, "rev-parse", "HEAD"]).filter(|c| c.len() == 40);
    let dirty = std::process::Command::new("git")
        .args(["-C", dir, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty());
    json!({
        "nproc": cores,
        "cpu_model": cpu_model.unwrap_or("unknown"),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "loadavg": read("/proc/loadavg"),
        "wrk": wrk_version,
        "rustc": command_line("rustc", &["-V"]),
        "git_commit": commit,
        "git_dirty": dirty,
        "nofile_limit": nofile,
    })
}

impl Report<'_> {
    pub fn http_aggs(&self) -> Vec<HttpAgg> {
        let mut out = Vec::new();
        for &c in &self.opts.concurrency {
            let pick = |t: &str| self.http.iter().filter(|r| r.concurrency == c && r.target == t).collect::<Vec<_>>();
            let (d, t) = (http_side(&pick("direct")), http_side(&pick("through")));
            out.push(HttpAgg {
                concurrency: c,
                added_p50_us: t.p50_us - d.p50_us,
                added_p95_us: t.p95_us - d.p95_us,
                added_p99_us: t.p99_us - d.p99_us,
                through_over_direct: t.rps / d.rps.max(1e-9),
                sluice_cpu_us_per_request: t.sluice_cpu_s * 1e6 / (t.requests.max(1)) as f64,
                sluice_cores_busy: t.sluice_cpu_s / t.duration_s.max(1e-9),
                direct: d,
                through: t,
            });
        }
        out
    }

    pub fn stream_aggs(&self) -> Vec<StreamAgg> {
        let delay = self.opts.chunk_delay_ms as f64 * 1e3;
        let mut out = Vec::new();
        for &c in &self.opts.stream_concurrency {
            let pick =
                |t: &str| self.streams.iter().filter(|r| r.concurrency == c && r.target == t).collect::<Vec<_>>();
            let (d, t) = (stream_side(&pick("direct"), delay), stream_side(&pick("through"), delay));
            out.push(StreamAgg {
                concurrency: c,
                added_ttfc_p50_us: t.ttfc_p50_us - d.ttfc_p50_us,
                added_ttfc_p95_us: t.ttfc_p95_us - d.ttfc_p95_us,
                added_ttfc_p99_us: t.ttfc_p99_us - d.ttfc_p99_us,
                added_gap_p50_us: t.gap_p50_us - d.gap_p50_us,
                added_gap_p99_us: t.gap_p99_us - d.gap_p99_us,
                direct: d,
                through: t,
            });
        }
        out
    }

    fn errors_total(&self) -> u64 {
        self.http.iter().map(|r| r.wrk.errors.total()).sum::<u64>()
            + self.streams.iter().map(|r| r.run.errors).sum::<u64>()
            + self.memory.iter().map(|m| m.errors).sum::<u64>()
            + self.overload.iter().map(|r| r.errors).sum::<u64>()
    }

    pub fn budgets(&self) -> Vec<Budget> {
        let mut b = Vec::new();
        let mut add = |name: String, value: String, pass: bool| b.push(Budget { name, value, pass });
        for a in self.http_aggs() {
            if a.concurrency == 1 {
                add("c=1 added p50 <= 0.10 ms".into(), ms(a.added_p50_us), a.added_p50_us <= 100.0);
                add("c=1 added p99 <= 0.50 ms".into(), ms(a.added_p99_us), a.added_p99_us <= 500.0);
            }
            if a.concurrency == 64 || a.concurrency == 256 {
                let c = a.concurrency;
                add(format!("c={c} through >= 40,000 req/s"), thousands(a.through.rps), a.through.rps >= 40_000.0);
                let pct = a.through_over_direct * 100.0;
                add(format!("c={c} through >= 60% of direct"), format!("{pct:.1}%"), pct >= 60.0);
            }
        }
        for a in self.stream_aggs() {
            if a.concurrency == 1 || a.concurrency == 64 {
                let c = a.concurrency;
                let v = a.added_ttfc_p50_us;
                add(format!("streams c={c} added TTFC p50 <= 0.2 ms"), ms(v), v <= 200.0);
            }
        }
        let idle = self.rss_idle_start.max(self.rss_idle_warm);
        add("RSS idle <= 20 MB".into(), format!("{:.1} MB", mb(idle)), mb(idle) <= 20.0);
        for m in &self.memory {
            let v = m.rss_at_10k_bytes / (1024.0 * 1024.0);
            let how = if m.open == 10_000 { "" } else { " (extrapolated)" };
            add(format!("RSS with 10,000 streams ({}) <= 200 MB", m.variant), format!("{v:.1} MB{how}"), v <= 200.0);
        }
        let e = self.errors_total();
        add("zero errors".into(), e.to_string(), e == 0);
        b
    }

    /// Peak RSS of every Sluice process of the run.
    pub fn hwm_max(&self) -> u64 {
        self.memory.iter().map(|m| m.hwm_bytes).fold(self.hwm_load, u64::max)
    }

    pub fn all_pass(&self) -> bool {
        self.budgets().iter().all(|b| b.pass)
    }

    /// Prints the table and writes the JSON; returns its path.
    pub fn finish(&self) -> Res<PathBuf> {
        let (http, streams, budgets) = (self.http_aggs(), self.stream_aggs(), self.budgets());
        self.print(&http, &streams, &budgets);
        let doc = json!({
            "benchmark": "sluice load",
            "started_unix": self.started_unix,
            "elapsed_s": self.elapsed_s,
            "machine": self.machine,
            "options": self.opts,
            "pinned": self.pinned,
            "pin_note": self.pin_note,
            "aggregation": "throughput = sum(requests)/sum(duration); percentiles = median over rounds; added = through - direct",
            "aggregates": {
                "http": http,
                "streams": streams,
                "overload": {
                    "model_max_concurrent": crate::overload::MAX_CONCURRENT,
                    "queue_max_size": crate::overload::QUEUE_MAX,
                    "queue_max_wait_ms": crate::overload::QUEUE_WAIT_MS,
                    "upstream_delay_ms": crate::overload::DELAY_MS,
                    "runs": self.overload,
                },
                "memory": {
                    "rss_idle_start_bytes": self.rss_idle_start,
                    "rss_idle_warm_bytes": self.rss_idle_warm,
                    "hwm_load_bytes": self.hwm_load,
                    "hwm_bytes": self.hwm_max(),
                    "open_streams": self.memory,
                },
                "cpu": { "sluice_total_s": self.cpu_total_s, "sluice_runs_s": self.cpu_runs_s },
                "errors_total": self.errors_total(),
            },
            "budgets": budgets,
            "runs": { "http": self.http, "streams": self.streams },
        });
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-results");
        let path = self.opts.out.clone().unwrap_or_else(|| dir.join(format!("load-{}.json", self.started_unix)));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("latest.json"), &text).map_err(|e| e.to_string())?;
        Ok(path)
    }
}
