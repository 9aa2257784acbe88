//! The table printed at the end of a run.

use crate::procs::{busy_str, mb};
use crate::report::{Budget, HttpAgg, Report, StreamAgg, ms, pf, thousands};

impl Report<'_> {
    pub fn print(&self, http: &[HttpAgg], streams: &[StreamAgg], budgets: &[Budget]) {
        let o = self.opts;
        let pin = if self.pinned { "pinned" } else { "not pinned" };
        println!(
            "\n== Sluice load benchmark: {}-s runs x {} round(s), Sluice workers {}, {pin}",
            o.duration_s, o.rounds, o.workers
        );
        println!("   (latency in ms; each percentile is the median over rounds; req/s = all requests / all time;");
        println!("    `added` = through - direct, and in the req/s column through as a % of direct;");
        println!("    cpu0/1 busy = each CPU's busy share during the runs, all processes and softirq included:");
        println!(
            "    when pinned, Sluice has cpu0 and the load generators cpu1; other work on the machine shows here)"
        );
        println!("\nNon-stream POST /v1/chat/completions (wrk -t1)");
        println!(
            "{:>5}  {:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>11}  Sluice CPU",
            "c", "", "req/s", "p50", "p95", "p99", "max", "errors", "cpu0/1 busy"
        );
        for a in http {
            for (name, s) in [("direct", &a.direct), ("through", &a.through)] {
                let cpu = if name == "through" {
                    format!("{:.1} µs/req, {:.0}% of a core", a.sluice_cpu_us_per_request, a.sluice_cores_busy * 100.0)
                } else {
                    format!("{:.2} s (idle)", s.sluice_cpu_s)
                };
                println!(
                    "{:>5}  {name:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>11}  {cpu}",
                    a.concurrency,
                    thousands(s.rps),
                    ms(s.p50_us),
                    ms(s.p95_us),
                    ms(s.p99_us),
                    ms(s.max_us),
                    s.errors,
                    busy_str(&s.cores_busy)
                );
            }
            println!(
                "{:>5}  {:<8} {:>8.1}% {:>+8.3} {:>+8.3} {:>+8.3}",
                a.concurrency,
                "added",
                a.through_over_direct * 100.0,
                a.added_p50_us / 1e3,
                a.added_p95_us / 1e3,
                a.added_p99_us / 1e3
            );
        }
        println!(
            "\nStreams: {} events, {} ms apart (gap-delay = gap minus that delay; coalesced = frames with > 1 event)",
            o.stream_chunks, o.chunk_delay_ms
        );
        println!(
            "{:>5}  {:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>11}",
            "c",
            "",
            "streams/s",
            "TTFC p50",
            "p95",
            "p99",
            "gap p50",
            "p99",
            "gap-delay",
            "coalesced",
            "errors",
            "cpu0/1 busy"
        );
        for a in streams {
            for (name, s) in [("direct", &a.direct), ("through", &a.through)] {
                println!(
                    "{:>5}  {name:<8} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>11}",
                    a.concurrency,
                    s.streams_per_s,
                    ms(s.ttfc_p50_us),
                    ms(s.ttfc_p95_us),
                    ms(s.ttfc_p99_us),
                    ms(s.gap_p50_us),
                    ms(s.gap_p99_us),
                    ms(s.gap_p50_minus_delay_us),
                    s.coalesced_frames,
                    s.errors,
                    busy_str(&s.cores_busy)
                );
            }
            println!(
                "{:>5}  {:<8} {:>9} {:>+8.3} {:>+8.3} {:>+8.3} {:>+8.3} {:>+8.3}",
                a.concurrency,
                "added",
                "",
                a.added_ttfc_p50_us / 1e3,
                a.added_ttfc_p95_us / 1e3,
                a.added_ttfc_p99_us / 1e3,
                a.added_gap_p50_us / 1e3,
                a.added_gap_p99_us / 1e3
            );
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
        println!(
            "\nCPU (Sluice utime+stime): {:.1} s over the load runs, {:.1} s including start-up and warm-up",
            self.cpu_runs_s, self.cpu_total_s
        );
        let la = |k: &str| self.machine[k].as_str().unwrap_or("?").to_string();
        println!("load average: before {}; after {}", la("loadavg"), la("loadavg_after"));
        if let Some(n) = &self.pin_note {
            println!("note: {n}");
        }
        let passed = budgets.iter().filter(|b| b.pass).count();
        println!("\nBudgets: {passed}/{} pass", budgets.len());
        for b in budgets {
            println!("  {}  {:<56} {}", pf(b.pass), b.name, b.value);
        }
        for r in self.http.iter().filter(|r| r.wrk.errors.total() > 0) {
            println!("  errors: c={} {} round {}: {:?}", r.concurrency, r.target, r.round, r.wrk.errors);
        }
        for r in self.streams.iter().filter(|r| r.run.errors > 0) {
            println!("  errors: streams c={} {} round {}: {:?}", r.concurrency, r.target, r.round, r.run.error_samples);
        }
        for m in self.memory.iter().filter(|m| m.errors > 0) {
            println!("  errors: memory {}: {:?}", m.variant, m.error_samples);
        }
    }
}
