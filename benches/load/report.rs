//! Per-run records, their aggregates per target, and the JSON file.
//!
//! Across rounds: throughput = sum of requests / sum of durations; each
//! latency percentile = the median of that percentile over the rounds (the
//! mean of the two middle rounds when their number is even); CPU per
//! request = the process's CPU over all rounds ÷ all requests. Added =
//! target − direct, per percentile.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value, json};

use crate::cpu::CpuDelta;
use crate::h2load::RateRun;
use crate::memory::MemRun;
use crate::opts::{Options, StreamShape, Target};
use crate::procs::{Res, busy_str, command_line, mb};
use crate::streams::StreamRun;
use crate::wrk::WrkRun;

/// CPU of each process during one run (all three are sampled in every
/// run: an idle gateway's share is the noise floor).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RunCpu {
    pub mock: CpuDelta,
    pub sluice: CpuDelta,
    /// nginx's master and worker.
    pub nginx: Option<CpuDelta>,
}

impl RunCpu {
    /// The CPU of the gateway a target goes through (none for direct).
    pub fn gateway(&self, t: Target) -> Option<CpuDelta> {
        match t {
            Target::Direct => None,
            Target::Nginx => self.nginx,
            Target::Sluice => Some(self.sluice),
        }
    }

    fn sum<'a>(all: impl Iterator<Item = &'a RunCpu>) -> RunCpu {
        let mut out: Option<RunCpu> = None;
        for c in all {
            match &mut out {
                None => out = Some(*c),
                Some(o) => {
                    o.mock += c.mock;
                    o.sluice += c.sluice;
                    o.nginx = match (o.nginx, c.nginx) {
                        (Some(mut a), Some(b)) => {
                            a += b;
                            Some(a)
                        }
                        _ => None,
                    };
                }
            }
        }
        out.unwrap_or_default()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct HttpRec {
    pub concurrency: usize,
    pub round: usize,
    pub target: Target,
    pub rps: f64,
    pub cpu: RunCpu,
    /// Peak RSS (VmHWM, reset before the run) of the gateway served: Sluice,
    /// or nginx's worker.
    pub gateway_peak_rss_bytes: Option<u64>,
    /// Busy fraction of each CPU during the run (see `procs::cpu_ticks`).
    pub cores_busy: Vec<f64>,
    pub wrk: WrkRun,
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamRec {
    pub shape: StreamShape,
    pub round: usize,
    pub target: Target,
    pub cpu: RunCpu,
    pub cores_busy: Vec<f64>,
    pub run: StreamRun,
}

#[derive(Clone, Debug, Serialize)]
pub struct RateRec {
    pub round: usize,
    pub target: Target,
    pub cpu: RunCpu,
    pub cores_busy: Vec<f64>,
    pub run: RateRun,
}

/// One value per target that was measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PerTarget<T> {
    pub direct: Option<T>,
    pub nginx: Option<T>,
    pub sluice: Option<T>,
}

impl<T> PerTarget<T> {
    pub fn build(mut f: impl FnMut(Target) -> Option<T>) -> Self {
        PerTarget { direct: f(Target::Direct), nginx: f(Target::Nginx), sluice: f(Target::Sluice) }
    }

    pub fn get(&self, t: Target) -> Option<&T> {
        match t {
            Target::Direct => self.direct.as_ref(),
            Target::Nginx => self.nginx.as_ref(),
            Target::Sluice => self.sluice.as_ref(),
        }
    }
}

/// CPU of the gateway and of the mock, per request (or per stream).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PerItem {
    pub gateway_cpu_us: Option<f64>,
    pub mock_cpu_us: f64,
    /// Gateway CPU seconds per wall second: how much of its core it used.
    pub gateway_cores: Option<f64>,
    /// Seconds the gateway was runnable but waited for a CPU, per wall
    /// second: high when other work competed for its core.
    pub gateway_waited: Option<f64>,
}

impl PerItem {
    fn new(t: Target, cpu: &RunCpu, items: u64, wall_s: f64) -> PerItem {
        let n = items.max(1) as f64;
        let g = cpu.gateway(t);
        PerItem {
            gateway_cpu_us: g.map(|g| g.s * 1e6 / n),
            mock_cpu_us: cpu.mock.s * 1e6 / n,
            gateway_cores: g.map(|g| g.s / wall_s.max(1e-9)),
            gateway_waited: g.map(|g| g.wait_s / wall_s.max(1e-9)),
        }
    }
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
    pub cpu: RunCpu,
    pub per_request: PerItem,
    /// The largest of the rounds' gateway peaks.
    pub peak_rss_bytes: Option<u64>,
    /// Mean busy fraction of each CPU over the rounds.
    pub cores_busy: Vec<f64>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Added {
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct HttpAgg {
    pub concurrency: usize,
    #[serde(flatten)]
    pub side: PerTarget<HttpSide>,
    /// Target − direct.
    pub added: PerTarget<Added>,
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
    /// Events of paced streams held back and let go with the next (see `StreamRun`).
    pub held_events: u64,
    pub errors: u64,
    pub cpu: RunCpu,
    pub per_stream: PerItem,
    pub cores_busy: Vec<f64>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StreamAdded {
    pub ttfc_p50_us: f64,
    pub ttfc_p95_us: f64,
    pub ttfc_p99_us: f64,
    pub gap_p50_us: f64,
    pub gap_p99_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamAgg {
    pub shape: StreamShape,
    #[serde(flatten)]
    pub side: PerTarget<StreamSide>,
    pub added: PerTarget<StreamAdded>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RateSide {
    pub requests: u64,
    pub elapsed_s: f64,
    pub rps: f64,
    /// Median over the rounds of the mean latency (our paced client's or h2load's).
    pub mean_us: f64,
    pub max_us: f64,
    pub errors: u64,
    pub cpu: RunCpu,
    pub per_request: PerItem,
    pub cores_busy: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RateAgg {
    pub rate: usize,
    #[serde(flatten)]
    pub side: PerTarget<RateSide>,
}

pub struct Report<'a> {
    pub opts: &'a Options,
    pub machine: Value,
    pub started_unix: u64,
    pub elapsed_s: f64,
    pub pin_note: Option<String>,
    pub pinned: bool,
    /// Why nginx (or h2load) is not in the run, when it is not.
    pub notes: Vec<String>,
    /// nginx's version when it ran.
    pub nginx: Option<String>,
    pub rss_idle_start: u64,
    pub rss_idle_warm: u64,
    /// VmHWM of the Sluice that served the load runs (the largest of the
    /// peaks read before each reset and at the end).
    pub hwm_load: u64,
    pub cpu_total_s: f64,
    pub cpu_runs_s: f64,
    pub http: Vec<HttpRec>,
    pub streams: Vec<StreamRec>,
    pub rates: Vec<RateRec>,
    /// The overload phase (benches/load/overload.rs).
    pub overload: Vec<crate::overload::OverloadRun>,
    pub memory: Vec<MemRun>,
    /// The soak phase (benches/load/soak.rs), when it ran.
    pub soak: Option<Value>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
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
    if us.abs() < 1000.0 { format!("{us:.0} µs") } else { format!("{:.2} ms", us / 1e3) }
}

pub fn pf(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn cpu_note(t: Target, cpu: &RunCpu, items: u64) -> String {
    let n = items.max(1) as f64;
    match cpu.gateway(t) {
        Some(g) => format!(
            "{} {:.1} µs/req (waited for the CPU {:.0} ms), mock {:.1}",
            t.name(),
            g.s * 1e6 / n,
            g.wait_s * 1e3,
            cpu.mock.s * 1e6 / n
        ),
        None => format!("mock {:.1} µs/req", cpu.mock.s * 1e6 / n),
    }
}

pub fn http_line(c: usize, t: Target, w: &WrkRun, cpu: &RunCpu, busy: &[f64]) -> String {
    format!(
        "c={c:<3} {:<6} {:>8} req/s  p50 {}  p99 {}  errors {}  CPU {}  cores busy {}",
        t.name(),
        thousands(w.rps()),
        lat(w.p50_us),
        lat(w.p99_us),
        w.errors.total(),
        cpu_note(t, cpu, w.requests),
        busy_str(busy)
    )
}

pub fn stream_line(s: &StreamShape, t: Target, r: &StreamRun, busy: &[f64]) -> String {
    format!(
        "streams {}x{}ms c={:<3} {:<6} {:>7.1} streams/s  TTFC p50 {}  p99 {}  gap p50 {}  p99 {}  coalesced {}  \
         held {}  errors {}  cores busy {}",
        s.events,
        s.delay_ms,
        s.concurrency,
        t.name(),
        r.streams_per_s(),
        lat(r.ttfc_us.p50),
        lat(r.ttfc_us.p99),
        lat(r.gap_us.p50),
        lat(r.gap_us.p99),
        r.coalesced_frames,
        r.held_events,
        r.errors,
        busy_str(busy)
    )
}

pub fn rate_line(t: Target, r: &RateRun, cpu: &RunCpu, busy: &[f64]) -> String {
    format!(
        "rate {:>5}/s {:<6} {:>8.1} req/s done  mean {}  max {}  errors {}  CPU {}  cores busy {}",
        r.rate,
        t.name(),
        r.rps(),
        lat(r.mean_us),
        lat(r.max_us),
        r.errors(),
        cpu_note(t, cpu, r.done),
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

fn mean_busy<'a>(runs: impl Iterator<Item = &'a Vec<f64>> + Clone) -> Vec<f64> {
    let n = runs.clone().count().max(1) as f64;
    let cores = runs.clone().map(Vec::len).max().unwrap_or(0);
    (0..cores).map(|i| runs.clone().map(|v| v.get(i).copied().unwrap_or(0.0)).sum::<f64>() / n).collect()
}

fn http_side(t: Target, runs: &[&HttpRec]) -> Option<HttpSide> {
    if runs.is_empty() {
        return None;
    }
    let requests: u64 = runs.iter().map(|r| r.wrk.requests).sum();
    let duration_s: f64 = runs.iter().map(|r| r.wrk.duration_us as f64 / 1e6).sum();
    let m = |f: fn(&WrkRun) -> f64| median(runs.iter().map(|r| f(&r.wrk)).collect());
    let cpu = RunCpu::sum(runs.iter().map(|r| &r.cpu));
    Some(HttpSide {
        requests,
        duration_s,
        rps: requests as f64 / duration_s.max(1e-9),
        p50_us: m(|w| w.p50_us),
        p95_us: m(|w| w.p95_us),
        p99_us: m(|w| w.p99_us),
        max_us: runs.iter().map(|r| r.wrk.max_us).fold(0.0, f64::max),
        errors: runs.iter().map(|r| r.wrk.errors.total()).sum(),
        per_request: PerItem::new(t, &cpu, requests, duration_s),
        cpu,
        peak_rss_bytes: runs.iter().filter_map(|r| r.gateway_peak_rss_bytes).max(),
        cores_busy: mean_busy(runs.iter().map(|r| &r.cores_busy)),
    })
}

fn stream_side(t: Target, runs: &[&StreamRec], delay_us: f64) -> Option<StreamSide> {
    if runs.is_empty() {
        return None;
    }
    let streams: u64 = runs.iter().map(|r| r.run.streams).sum();
    let secs: f64 = runs.iter().map(|r| r.run.elapsed_us as f64 / 1e6).sum();
    let m = |f: fn(&StreamRun) -> f64| median(runs.iter().map(|r| f(&r.run)).collect());
    let sum = |f: fn(&StreamRun) -> u64| runs.iter().map(|r| f(&r.run)).sum::<u64>();
    let (gap50, gap99) = (m(|r| r.gap_us.p50), m(|r| r.gap_us.p99));
    let cpu = RunCpu::sum(runs.iter().map(|r| &r.cpu));
    Some(StreamSide {
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
        held_events: sum(|r| r.held_events),
        errors: sum(|r| r.errors),
        per_stream: PerItem::new(t, &cpu, streams, secs),
        cpu,
        cores_busy: mean_busy(runs.iter().map(|r| &r.cores_busy)),
    })
}

fn rate_side(t: Target, runs: &[&RateRec]) -> Option<RateSide> {
    if runs.is_empty() {
        return None;
    }
    let requests: u64 = runs.iter().map(|r| r.run.done).sum();
    let elapsed_s: f64 = runs.iter().map(|r| r.run.elapsed_s).sum();
    let cpu = RunCpu::sum(runs.iter().map(|r| &r.cpu));
    Some(RateSide {
        requests,
        elapsed_s,
        rps: requests as f64 / elapsed_s.max(1e-9),
        mean_us: median(runs.iter().map(|r| r.run.mean_us).collect()),
        max_us: runs.iter().map(|r| r.run.max_us).fold(0.0, f64::max),
        errors: runs.iter().map(|r| r.run.errors()).sum(),
        per_request: PerItem::new(t, &cpu, requests, elapsed_s),
        cpu,
        cores_busy: mean_busy(runs.iter().map(|r| &r.cores_busy)),
    })
}

/// Facts about the machine and the build, for the JSON.
pub fn machine(cores: usize, nofile: u64, tools: Value) -> Value {
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
        "tools": tools,
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
            let side = PerTarget::build(|t| {
                http_side(t, &self.http.iter().filter(|r| r.concurrency == c && r.target == t).collect::<Vec<_>>())
            });
            let added = PerTarget::build(|t| {
                let (s, d) = (side.get(t)?, side.direct.as_ref().filter(|_| t != Target::Direct)?);
                Some(Added { p50_us: s.p50_us - d.p50_us, p95_us: s.p95_us - d.p95_us, p99_us: s.p99_us - d.p99_us })
            });
            if side.direct.is_some() || side.nginx.is_some() || side.sluice.is_some() {
                out.push(HttpAgg { concurrency: c, side, added });
            }
        }
        out
    }

    pub fn stream_aggs(&self) -> Vec<StreamAgg> {
        let mut out = Vec::new();
        for &shape in &self.opts.streams {
            let delay = shape.delay_ms as f64 * 1e3;
            let side = PerTarget::build(|t| {
                let runs: Vec<_> = self.streams.iter().filter(|r| r.shape == shape && r.target == t).collect();
                stream_side(t, &runs, delay)
            });
            let added = PerTarget::build(|t| {
                let (s, d) = (side.get(t)?, side.direct.as_ref().filter(|_| t != Target::Direct)?);
                Some(StreamAdded {
                    ttfc_p50_us: s.ttfc_p50_us - d.ttfc_p50_us,
                    ttfc_p95_us: s.ttfc_p95_us - d.ttfc_p95_us,
                    ttfc_p99_us: s.ttfc_p99_us - d.ttfc_p99_us,
                    gap_p50_us: s.gap_p50_us - d.gap_p50_us,
                    gap_p99_us: s.gap_p99_us - d.gap_p99_us,
                })
            });
            if side.direct.is_some() || side.nginx.is_some() || side.sluice.is_some() {
                out.push(StreamAgg { shape, side, added });
            }
        }
        out
    }

    pub fn rate_aggs(&self) -> Vec<RateAgg> {
        let mut out = Vec::new();
        for &rate in &self.opts.rates {
            let side = PerTarget::build(|t| {
                rate_side(t, &self.rates.iter().filter(|r| r.run.rate == rate && r.target == t).collect::<Vec<_>>())
            });
            if side.direct.is_some() || side.nginx.is_some() || side.sluice.is_some() {
                out.push(RateAgg { rate, side });
            }
        }
        out
    }

    pub fn errors_total(&self) -> u64 {
        self.http.iter().map(|r| r.wrk.errors.total()).sum::<u64>()
            + self.streams.iter().map(|r| r.run.errors).sum::<u64>()
            + self.rates.iter().map(|r| r.run.errors()).sum::<u64>()
            + self.memory.iter().map(|m| m.errors).sum::<u64>()
            + self.overload.iter().map(|r| r.errors).sum::<u64>()
    }

    /// Peak RSS of every Sluice process of the run.
    pub fn hwm_max(&self) -> u64 {
        self.memory.iter().map(|m| m.hwm_bytes).fold(self.hwm_load, u64::max)
    }

    /// Prints the tables and writes the JSON; returns its path and whether
    /// every budget passed.
    pub fn finish(&self) -> Res<(PathBuf, bool)> {
        let (http, streams, rates) = (self.http_aggs(), self.stream_aggs(), self.rate_aggs());
        let budgets = self.budgets(&http, &streams);
        let compare = crate::compare::rows(&http, &streams, &rates);
        self.print(&http, &streams, &rates, &budgets, &compare);
        let all_pass = budgets.iter().all(|b| b.pass) && compare.iter().all(|r| !r.failed());
        let doc = json!({
            "benchmark": "sluice load",
            "started_unix": self.started_unix,
            "elapsed_s": self.elapsed_s,
            "machine": self.machine,
            "options": self.opts,
            "pinned": self.pinned,
            "pin_note": self.pin_note,
            "notes": self.notes,
            "aggregation": "throughput = sum(requests)/sum(duration); percentiles = median over rounds; \
                            added = target - direct; CPU per request = process CPU over all rounds / all requests \
                            (schedstat ns when every thread lived through the run, else utime+stime ticks)",
            "aggregates": {
                "http": http,
                "streams": streams,
                "rate": rates,
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
                "soak": self.soak,
                "cpu": { "sluice_total_s": self.cpu_total_s, "sluice_runs_s": self.cpu_runs_s },
                "errors_total": self.errors_total(),
            },
            "nginx_compare": compare,
            "budgets": budgets,
            "runs": { "http": self.http, "streams": self.streams, "rate": self.rates },
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
        Ok((path, all_pass))
    }
}
