//! CPU time and peak memory of a process group (Sluice; nginx's master and
//! worker; the mock), as precisely as /proc tells them.
//!
//! `/proc/PID/stat` utime+stime count clock ticks (10 ms at USER_HZ 100): at
//! 200 req/s for 10 s nginx spends ~0.16 s, 16 ticks, so one tick is 6% of
//! the answer. The scheduler's own count, the first field of
//! `/proc/PID/task/TID/schedstat`, is the same on-CPU time in nanoseconds,
//! but only for threads alive at both samples: a thread that exits between
//! them takes its time with it. So the nanosecond sum is used when every
//! thread of the first sample is still there (the usual case: Sluice's and
//! nginx's threads live as long as the process), and the tick count, which
//! keeps the time of exited threads, otherwise.

use std::collections::HashMap;

use serde::Serialize;

use crate::procs::cpu_seconds;

/// One sample of a process group.
#[derive(Clone, Debug, Default)]
pub struct CpuSnap {
    ticks_s: f64,
    /// Thread id → (on-CPU, runnable-but-waiting) nanoseconds; `None` if
    /// schedstat is unreadable.
    tasks: Option<HashMap<u32, (u64, u64)>>,
}

/// CPU seconds between two samples, and how they were counted.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuDelta {
    pub s: f64,
    /// utime+stime (ticks) over the same interval, for comparison.
    pub ticks_s: f64,
    /// `s` came from schedstat (nanoseconds), not from ticks.
    pub precise: bool,
    /// Time the group's threads were runnable but waited for a CPU
    /// (schedstat's second field; 0 when not `precise`): other work
    /// competing for the gateway's core shows here.
    pub wait_s: f64,
}

impl std::ops::AddAssign for CpuDelta {
    fn add_assign(&mut self, o: CpuDelta) {
        self.s += o.s;
        self.ticks_s += o.ticks_s;
        self.precise = self.precise && o.precise;
        self.wait_s += o.wait_s;
    }
}

/// On-CPU and run-queue wait nanoseconds of one thread.
fn schedstat_ns(pid: u32, tid: &str) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

fn tasks(pid: u32, into: &mut HashMap<u32, (u64, u64)>) -> Option<()> {
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let name = e.ok()?.file_name();
        let tid = name.to_str()?;
        into.insert(tid.parse().ok()?, schedstat_ns(pid, tid)?);
    }
    Some(())
}

pub fn snap(pids: &[u32]) -> CpuSnap {
    let mut all = HashMap::new();
    let ok = pids.iter().all(|&p| tasks(p, &mut all).is_some());
    CpuSnap {
        ticks_s: pids.iter().map(|&p| cpu_seconds(p).unwrap_or(0.0)).sum(),
        tasks: (ok && !pids.is_empty()).then_some(all),
    }
}

pub fn between(a: &CpuSnap, b: &CpuSnap) -> CpuDelta {
    let ticks_s = b.ticks_s - a.ticks_s;
    if let (Some(ta), Some(tb)) = (&a.tasks, &b.tasks)
        && ta.keys().all(|t| tb.contains_key(t))
    {
        let (mut run, mut wait) = (0u64, 0u64);
        for (t, &(r, w)) in tb {
            let (r0, w0) = ta.get(t).copied().unwrap_or((0, 0));
            run += r.saturating_sub(r0);
            wait += w.saturating_sub(w0);
        }
        return CpuDelta { s: run as f64 / 1e9, ticks_s, precise: true, wait_s: wait as f64 / 1e9 };
    }
    CpuDelta { s: ticks_s, ticks_s, precise: false, wait_s: 0.0 }
}

/// Processes whose parent is `pid` (nginx's workers).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let ppid = |p: &str| -> Option<u32> {
        let s = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        s[s.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| ppid(&p.to_string()) == Some(pid))
        .collect()
}

/// Resets the process's peak RSS (VmHWM) to its current RSS (`clear_refs`
/// 5, Linux 4.0+); false when not allowed, and VmHWM then counts from the
/// process's start.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}
