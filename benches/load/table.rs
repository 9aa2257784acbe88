//! The tables printed at the end of a run.

use crate::compare::{Budget, Row};
use crate::opts::{RateTool, Target};
use crate::procs::{busy_str, mb};
use crate::report::{HttpAgg, PerItem, RateAgg, Report, StreamAgg, ms, pf, thousands};

/// "17.9 µs (93%/2%)": the gateway's CPU per item, its share of a core,
/// and the share of the time it waited for that core.
fn gw(p: &PerItem) -> String {
    match (p.gateway_cpu_us, p.gateway_cores, p.gateway_waited) {
        (Some(us), Some(cores), Some(w)) => format!("{us:.1} µs ({:.0}%/{:.0}%)", cores * 100.0, w * 100.0),
        _ => "-".into(),
    }
}

fn rss(v: Option<u64>) -> String {
    v.map_or("-".into(), |b| format!("{:.1} MiB", mb(b)))
}

impl Report<'_> {
    pub fn print(
        &self,
        http: &[HttpAgg],
        streams: &[StreamAgg],
        rates: &[RateAgg],
        budgets: &[Budget],
        compare: &[Row],
    ) {
        let o = self.opts;
        let pin = if self.pinned { "pinned" } else { "not pinned" };
        let nginx = self.nginx.as_ref().map_or(String::new(), |v| format!(", {v} worker_processes 1"));
        println!(
            "\n== Sluice load benchmark: {}-s runs x {} round(s), Sluice workers {}{nginx}, {pin}",
            o.duration_s, o.rounds, o.workers
        );
        println!("   (latency in ms; each percentile is the median over rounds; req/s = all requests / all time;");
        println!("    +nginx/+sluice = that target - direct, and in the req/s column that target as a % of direct;");
        println!(
            "    gw CPU = the gateway's CPU per request (per stream), then (its share of a core / the share of the"
        );
        println!("    time it was runnable but waited for the core: other work on the machine); mock CPU per request;");
        println!("    cpu0/1 busy = each CPU's busy share, all processes and softirq included: when pinned, the");
        println!("    gateways have cpu0 and the mock and load generators cpu1; other work on the machine shows here)");
        if !http.is_empty() {
            self.print_http(http);
        }
        if !streams.is_empty() {
            self.print_streams(streams);
        }
        if !rates.is_empty() {
            self.print_rates(rates);
        }
        if !self.overload.is_empty() {
            use crate::overload::{DELAY_MS, MAX_CONCURRENT, QUEUE_MAX, QUEUE_WAIT_MS};
            let capacity = MAX_CONCURRENT as f64 * 1000.0 / DELAY_MS as f64;
            println!(
                "\nOverload: model max_concurrent {MAX_CONCURRENT}, upstream {DELAY_MS} ms (capacity {capacity:.0} req/s), \
                 [queue] max_size {QUEUE_MAX}, max_wait_ms {QUEUE_WAIT_MS}; through Sluice; latency in ms"
            );
            for r in &self.overload {
                println!("  {}", crate::overload::line(r, capacity));
            }
        }
        self.print_memory();
        println!(
            "\nCPU (Sluice): {:.1} s over the load runs, {:.1} s including start-up and warm-up",
            self.cpu_runs_s, self.cpu_total_s
        );
        let la = |k: &str| self.machine[k].as_str().unwrap_or("?").to_string();
        println!("load average: before {}; after {}", la("loadavg"), la("loadavg_after"));
        for n in self.pin_note.iter().chain(&self.notes) {
            println!("note: {n}");
        }
        let passed = budgets.iter().filter(|b| b.pass).count();
        println!("\nBudgets (issue 3, Sluice against direct): {passed}/{} pass", budgets.len());
        for b in budgets {
            println!("  {}  {:<56} {}", pf(b.pass), b.name, b.value);
        }
        self.print_errors();
        print_compare(compare);
    }

    fn print_http(&self, http: &[HttpAgg]) {
        println!("\nNon-stream POST /v1/chat/completions (wrk -t1)");
        println!(
            "{:>5}  {:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>11}  {:>19} {:>9} {:>10}",
            "c", "", "req/s", "p50", "p95", "p99", "max", "errors", "cpu0/1 busy", "gw CPU/req", "mock CPU", "peak RSS"
        );
        for a in http {
            for t in Target::ALL {
                let Some(s) = a.side.get(t) else { continue };
                println!(
                    "{:>5}  {:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>11}  {:>19} {:>9} {:>10}",
                    a.concurrency,
                    t.name(),
                    thousands(s.rps),
                    ms(s.p50_us),
                    ms(s.p95_us),
                    ms(s.p99_us),
                    ms(s.max_us),
                    s.errors,
                    busy_str(&s.cores_busy),
                    gw(&s.per_request),
                    format!("{:.1} µs", s.per_request.mock_cpu_us),
                    rss(s.peak_rss_bytes),
                );
            }
            for t in [Target::Nginx, Target::Sluice] {
                let (Some(add), Some(s), Some(d)) = (a.added.get(t), a.side.get(t), &a.side.direct) else { continue };
                println!(
                    "{:>5}  {:<8} {:>8.1}% {:>+8.3} {:>+8.3} {:>+8.3}",
                    a.concurrency,
                    format!("+{}", t.name()),
                    s.rps / d.rps.max(1e-9) * 100.0,
                    add.p50_us / 1e3,
                    add.p95_us / 1e3,
                    add.p99_us / 1e3
                );
            }
        }
    }

    fn print_streams(&self, streams: &[StreamAgg]) {
        println!(
            "\nStreams (gap-delay = gap minus the configured delay; coalesced = frames with > 1 event; \
             held = events of paced streams that came < delay/4 after the one before)"
        );
        println!(
            "{:>13}  {:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6} {:>11}  {:>19} {:>9}",
            "events x ms@c",
            "",
            "streams/s",
            "TTFC p50",
            "p95",
            "p99",
            "gap p50",
            "p99",
            "gap-delay",
            "coalesced",
            "held",
            "errors",
            "cpu0/1 busy",
            "gw CPU/stream",
            "mock CPU"
        );
        for a in streams {
            let sh = format!("{}x{}@{}", a.shape.events, a.shape.delay_ms, a.shape.concurrency);
            for t in Target::ALL {
                let Some(s) = a.side.get(t) else { continue };
                println!(
                    "{sh:>13}  {:<8} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6} {:>11}  {:>19} {:>9}",
                    t.name(),
                    s.streams_per_s,
                    ms(s.ttfc_p50_us),
                    ms(s.ttfc_p95_us),
                    ms(s.ttfc_p99_us),
                    ms(s.gap_p50_us),
                    ms(s.gap_p99_us),
                    ms(s.gap_p50_minus_delay_us),
                    s.coalesced_frames,
                    s.held_events,
                    s.errors,
                    busy_str(&s.cores_busy),
                    gw(&s.per_stream),
                    format!("{:.1} µs", s.per_stream.mock_cpu_us),
                );
            }
            for t in [Target::Nginx, Target::Sluice] {
                let Some(add) = a.added.get(t) else { continue };
                println!(
                    "{sh:>13}  {:<8} {:>9} {:>+8.3} {:>+8.3} {:>+8.3} {:>+8.3} {:>+8.3}",
                    format!("+{}", t.name()),
                    "",
                    add.ttfc_p50_us / 1e3,
                    add.ttfc_p95_us / 1e3,
                    add.ttfc_p99_us / 1e3,
                    add.gap_p50_us / 1e3,
                    add.gap_p99_us / 1e3
                );
            }
        }
    }

    fn print_rates(&self, rates: &[RateAgg]) {
        let o = self.opts;
        let tool = match o.rate_tool {
            RateTool::Paced => "evenly paced by the bench's own client",
            RateTool::H2load => "h2load --rps, which sends in bursts",
        };
        println!(
            "\nFixed rate ({tool}, {} connection(s), {}-s runs; latency = the mean, in ms)",
            o.rate_connections, o.rate_duration_s
        );
        println!(
            "{:>7}  {:<8} {:>9} {:>8} {:>8} {:>7} {:>11}  {:>19} {:>9}",
            "req/s", "", "done/s", "mean", "max", "errors", "cpu0/1 busy", "gw CPU/req", "mock CPU"
        );
        for a in rates {
            for t in Target::ALL {
                let Some(s) = a.side.get(t) else { continue };
                println!(
                    "{:>7}  {:<8} {:>9.1} {:>8} {:>8} {:>7} {:>11}  {:>19} {:>9}",
                    thousands(a.rate as f64),
                    t.name(),
                    s.rps,
                    ms(s.mean_us),
                    ms(s.max_us),
                    s.errors,
                    busy_str(&s.cores_busy),
                    gw(&s.per_request),
                    format!("{:.1} µs", s.per_request.mock_cpu_us),
                );
            }
        }
    }

    fn print_memory(&self) {
        println!("\nMemory (Sluice VmRSS)");
        println!(
            "  idle after start {:.1} MB, after warm-up {:.1} MB",
            mb(self.rss_idle_start),
            mb(self.rss_idle_warm)
        );
        for m in &self.memory {
            println!(
                "  {}, fresh Sluice: idle {:.1} MB; {} streams open: {:.1} MB (+{:.1} KB/stream; {} fds; opened in {:.2} s)",
                m.variant,
                mb(m.rss_idle_bytes),
                thousands(m.open as f64),
                mb(m.rss_open_bytes),
                m.rss_per_stream_bytes / 1024.0,
                thousands(m.fds_open as f64),
                m.open_all_ms / 1e3,
            );
            println!(
                "    closed: {:.1} MB, fds released in {}; opened again: {:.1} MB, closed: {:.1} MB; peak {:.1} MB",
                mb(m.rss_after_close_bytes),
                m.release_s.map_or("> 20 s".to_string(), |s| format!("{s:.1} s")),
                mb(m.rss_reopen_bytes),
                mb(m.rss_after_reclose_bytes),
                mb(m.hwm_bytes),
            );
            if let Some(n) = &m.cap_note {
                println!("    {n}");
            }
        }
        println!(
            "  peak (VmHWM): {:.1} MB in the load runs, {:.1} MB over the whole run",
            mb(self.hwm_load),
            mb(self.hwm_max())
        );
    }

    fn print_errors(&self) {
        for r in self.http.iter().filter(|r| r.wrk.errors.total() > 0) {
            println!("  errors: c={} {} round {}: {:?}", r.concurrency, r.target.name(), r.round, r.wrk.errors);
        }
        for r in self.streams.iter().filter(|r| r.run.errors > 0) {
            println!("  errors: streams {} {} round {}: {:?}", r.shape, r.target.name(), r.round, r.run.error_samples);
        }
        for r in self.rates.iter().filter(|r| r.run.errors() > 0) {
            println!("  errors: rate {} {} round {}: {:?}", r.run.rate, r.target.name(), r.round, r.run);
        }
        for m in self.memory.iter().filter(|m| m.errors > 0) {
            println!("  errors: memory {}: {:?}", m.variant, m.error_samples);
        }
    }
}

fn print_compare(rows: &[Row]) {
    if rows.is_empty() {
        println!("\nvs nginx (issue 14): nothing to compare (nginx or Sluice not in this run)");
        return;
    }
    let budgeted: Vec<_> = rows.iter().filter(|r| r.pass.is_some()).collect();
    let passed = budgeted.iter().filter(|r| r.pass == Some(true)).count();
    println!(
        "\nvs nginx (issue 14: ratio = Sluice / nginx, same run, same core): {passed}/{} budgets pass",
        budgeted.len()
    );
    println!("  {:<44} {:>14} {:>14} {:>7} {:>7}  verdict", "", "nginx", "Sluice", "ratio", "budget");
    for r in rows {
        println!(
            "  {:<44} {:>14} {:>14} {:>7} {:>7}  {}",
            r.metric,
            r.unit.show(r.nginx),
            r.unit.show(r.sluice),
            r.ratio.map_or("n/a".into(), |x| format!("{x:.2}")),
            r.budget_str(),
            r.verdict()
        );
    }
}
