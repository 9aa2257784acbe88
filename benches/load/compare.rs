//! The budgets: issue 3's absolute ones (Sluice against the mock alone),
//! and issue 14's, each the ratio of Sluice to nginx measured in the same
//! run, same pinning, same mock.

use serde::Serialize;

use crate::procs::mb;
use crate::report::{HttpAgg, RateAgg, Report, StreamAgg, lat, ms, thousands};

/// An issue-3 budget.
#[derive(Clone, Debug, Serialize)]
pub struct Budget {
    pub name: String,
    pub value: String,
    pub pass: bool,
}

/// What the ratio Sluice / nginx must be.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    AtMost(f64),
    AtLeast(f64),
    /// Printed for context, no budget.
    Info,
}

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Micros,
    ReqPerS,
    StreamsPerS,
    MiB,
}

impl Unit {
    pub fn show(self, v: f64) -> String {
        match self {
            // One decimal: CPU per request differs by a few µs between gateways.
            Unit::Micros if v.abs() < 1000.0 => format!("{v:.1} µs"),
            Unit::Micros => lat(v),
            Unit::ReqPerS => format!("{} req/s", thousands(v)),
            Unit::StreamsPerS => format!("{v:.1} /s"),
            Unit::MiB => format!("{:.1} MiB", mb(v as u64)),
        }
    }
}

/// One issue-14 line: nginx, Sluice, their ratio, the budget and the verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub metric: String,
    pub unit: Unit,
    pub nginx: f64,
    pub sluice: f64,
    /// Sluice / nginx; none when nginx's value is not positive (an added
    /// latency lost in the noise).
    pub ratio: Option<f64>,
    pub budget: Want,
    /// None for `Info` rows.
    pub pass: Option<bool>,
}

impl Row {
    fn new(metric: String, unit: Unit, nginx: f64, sluice: f64, budget: Want) -> Row {
        let ratio = (nginx > 0.0).then(|| sluice / nginx);
        let pass = match (budget, ratio) {
            (Want::Info, _) => None,
            (Want::AtMost(k), Some(r)) => Some(r <= k),
            (Want::AtLeast(k), Some(r)) => Some(r >= k),
            // nginx at or below zero: a limit k × nginx cannot be scaled, so
            // Sluice must do at least as well as nginx.
            (Want::AtMost(_), None) => Some(sluice <= nginx),
            (Want::AtLeast(_), None) => Some(sluice >= nginx),
        };
        Row { metric, unit, nginx, sluice, ratio, budget, pass }
    }

    pub fn failed(&self) -> bool {
        self.pass == Some(false)
    }

    pub fn budget_str(&self) -> String {
        match self.budget {
            Want::AtMost(k) => format!("<= {k:.1}"),
            Want::AtLeast(k) => format!(">= {k:.1}"),
            Want::Info => "-".into(),
        }
    }

    pub fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "info",
        }
    }
}

/// The concurrencies issue 14 budgets; others are printed as `info`.
const BUDGETED_C: [usize; 2] = [32, 256];
/// The stream shapes issue 14 budgets (events, delay ms, concurrency):
/// throughput-bound streams, and slow streams whose first event matters.
const BUDGETED_STREAMS: [(u32, u64, usize); 2] = [(50, 0, 64), (20, 20, 64)];
/// The phase whose peak RSS is budgeted.
const RSS_C: usize = 256;

fn at(budgeted: bool, w: Want) -> Want {
    if budgeted { w } else { Want::Info }
}

/// Every issue-14 line that this run measured (both nginx and Sluice ran).
pub fn rows(http: &[HttpAgg], streams: &[StreamAgg], rates: &[RateAgg]) -> Vec<Row> {
    let mut out = Vec::new();
    for a in http {
        let (Some(n), Some(s)) = (&a.side.nginx, &a.side.sluice) else { continue };
        let c = a.concurrency;
        if let (1, Some(na), Some(sa)) = (c, &a.added.nginx, &a.added.sluice) {
            out.push(Row::new("added latency p50, c=1".into(), Unit::Micros, na.p50_us, sa.p50_us, Want::AtMost(1.0)));
            out.push(Row::new("added latency p99, c=1".into(), Unit::Micros, na.p99_us, sa.p99_us, Want::AtMost(1.0)));
        }
        if c > 1 {
            let b = BUDGETED_C.contains(&c);
            if let (Some(nc), Some(sc)) = (n.per_request.gateway_cpu_us, s.per_request.gateway_cpu_us) {
                let name = format!("CPU per request, c={c}");
                out.push(Row::new(name, Unit::Micros, nc, sc, at(b, Want::AtMost(1.0))));
            }
            let name = format!("throughput, c={c}");
            out.push(Row::new(name, Unit::ReqPerS, n.rps, s.rps, at(b, Want::AtLeast(1.0))));
        }
    }
    // Peak RSS in the c=256 phase; without one, the highest concurrency, unbudgeted.
    let rss_c = http.iter().map(|a| a.concurrency).find(|&c| c == RSS_C).or(http.iter().map(|a| a.concurrency).max());
    if let Some(a) = http.iter().find(|a| Some(a.concurrency) == rss_c) {
        let np = a.side.nginx.as_ref().and_then(|n| n.peak_rss_bytes);
        let sp = a.side.sluice.as_ref().and_then(|s| s.peak_rss_bytes);
        if let (Some(np), Some(sp)) = (np, sp) {
            let name = format!("peak RSS during c={}", a.concurrency);
            out.push(Row::new(name, Unit::MiB, np as f64, sp as f64, at(a.concurrency == RSS_C, Want::AtMost(1.5))));
        }
    }
    for a in streams {
        let (Some(n), Some(s)) = (&a.side.nginx, &a.side.sluice) else { continue };
        let sh = a.shape;
        if sh.concurrency == 1 {
            continue; // issue 3 budgets c=1 streams against direct
        }
        let what = format!("{} events {} ms apart, c={}", sh.events, sh.delay_ms, sh.concurrency);
        let b = BUDGETED_STREAMS.contains(&(sh.events, sh.delay_ms, sh.concurrency));
        if sh.delay_ms == 0 {
            let name = format!("streams/s, {what}");
            out.push(Row::new(name, Unit::StreamsPerS, n.streams_per_s, s.streams_per_s, at(b, Want::AtLeast(0.9))));
            if let (Some(na), Some(sa)) = (&a.added.nginx, &a.added.sluice) {
                let name = format!("added TTFC p50, {what}");
                out.push(Row::new(name, Unit::Micros, na.ttfc_p50_us, sa.ttfc_p50_us, at(b, Want::AtMost(1.0))));
            }
        } else {
            let name = format!("TTFC p99, {what}");
            out.push(Row::new(name, Unit::Micros, n.ttfc_p99_us, s.ttfc_p99_us, at(b, Want::AtMost(1.5))));
        }
    }
    for a in rates {
        let (Some(n), Some(s)) = (&a.side.nginx, &a.side.sluice) else { continue };
        if let (Some(nc), Some(sc)) = (n.per_request.gateway_cpu_us, s.per_request.gateway_cpu_us) {
            let name = format!("CPU per request at {} req/s", thousands(a.rate as f64));
            out.push(Row::new(name, Unit::Micros, nc, sc, Want::AtMost(1.2)));
        }
    }
    out
}

impl Report<'_> {
    /// Issue 3's budgets, for what this run measured.
    pub fn budgets(&self, http: &[HttpAgg], streams: &[StreamAgg]) -> Vec<Budget> {
        let mut b = Vec::new();
        let mut add = |name: String, value: String, pass: bool| b.push(Budget { name, value, pass });
        for a in http {
            let (Some(d), Some(s), Some(added)) = (&a.side.direct, &a.side.sluice, &a.added.sluice) else { continue };
            if a.concurrency == 1 {
                add("c=1 added p50 <= 0.10 ms".into(), ms(added.p50_us), added.p50_us <= 100.0);
                add("c=1 added p99 <= 0.50 ms".into(), ms(added.p99_us), added.p99_us <= 500.0);
            }
            if a.concurrency == 64 || a.concurrency == 256 {
                let c = a.concurrency;
                add(format!("c={c} Sluice >= 40,000 req/s"), thousands(s.rps), s.rps >= 40_000.0);
                let pct = s.rps / d.rps.max(1e-9) * 100.0;
                add(format!("c={c} Sluice >= 60% of direct"), format!("{pct:.1}%"), pct >= 60.0);
            }
        }
        for a in streams {
            let c = a.shape.concurrency;
            // The budget was set on streams of events 1 ms apart.
            if let (1, 1 | 64, Some(added)) = (a.shape.delay_ms, c, &a.added.sluice) {
                let v = added.ttfc_p50_us;
                add(format!("streams c={c} added TTFC p50 <= 0.2 ms"), ms(v), v <= 200.0);
            }
        }
        if self.rss_idle_start > 0 {
            let idle = self.rss_idle_start.max(self.rss_idle_warm);
            add("RSS idle <= 20 MB".into(), format!("{:.1} MB", mb(idle)), mb(idle) <= 20.0);
        }
        for m in &self.memory {
            let v = m.rss_at_10k_bytes / (1024.0 * 1024.0);
            let how = if m.open == 10_000 { "" } else { " (extrapolated)" };
            add(format!("RSS with 10,000 streams ({}) <= 200 MB", m.variant), format!("{v:.1} MB{how}"), v <= 200.0);
        }
        let e = self.errors_total();
        add("zero errors".into(), e.to_string(), e == 0);
        b
    }
}
