//! The open-streams memory test: many concurrent streams held open through
//! Sluice while its RSS is sampled.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procs::{Res, fd_count, vm_bytes};
use crate::streams::{OpenStreams, Spec};

/// File descriptors Sluice keeps for itself (listeners, epoll, pools, logs).
pub const FD_RESERVE: u64 = 256;

#[derive(Clone, Debug, Serialize)]
pub struct MemRun {
    pub variant: String,
    pub model: String,
    pub requested: usize,
    /// Streams attempted: `requested`, capped so Sluice's descriptors fit.
    pub used: usize,
    pub cap_note: Option<String>,
    pub open: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub open_all_ms: f64,
    /// The fresh Sluice process, after a few warm requests.
    pub rss_idle_bytes: u64,
    pub rss_open_bytes: u64,
    pub rss_after_close_bytes: u64,
    /// The same number of streams opened a second time, after the first
    /// ones were closed: growth here is memory kept (allocator or leak).
    pub rss_reopen_bytes: u64,
    pub rss_after_reclose_bytes: u64,
    pub hwm_bytes: u64,
    pub rss_per_stream_bytes: f64,
    /// `rss_open` if `open` is 10,000; else extrapolated to 10,000 streams.
    pub rss_at_10k_bytes: f64,
    pub fds_idle: usize,
    pub fds_open: usize,
    /// Time until Sluice's descriptor count was back near `fds_idle` after
    /// the client closed its streams.
    pub release_s: Option<f64>,
    pub sluice_cpu_s: f64,
}

pub struct Variant<'a> {
    pub name: &'a str,
    pub model: &'a str,
    /// Sluice descriptors per stream: 1 in process, 2 when proxied.
    pub fds_per_stream: u64,
}

struct Opened {
    rep: crate::streams::OpenReport,
    rss: u64,
    fds: usize,
    rss_after_close: u64,
    release_s: Option<f64>,
}

/// Opens the streams, samples Sluice, closes them, waits for Sluice to let go.
async fn open_close(exe: &Path, pid: u32, spec: &Spec, fds_idle: usize, core: Option<usize>) -> Res<Opened> {
    let mut client = OpenStreams::start(exe, spec, core)?;
    let rep = client.ready().await?;
    // Let buffers and timers settle, then sample while everything is open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = vm_bytes(pid, "VmRSS").unwrap_or(0);
    let fds = fd_count(pid);
    client.close().await?;
    let closed = Instant::now();
    let mut release_s = None;
    while closed.elapsed() < Duration::from_secs(20) {
        if fd_count(pid) <= fds_idle + 8 {
            release_s = Some(closed.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Opened { rep, rss, fds, rss_after_close: vm_bytes(pid, "VmRSS").unwrap_or(0), release_s })
}

/// The test on a fresh, warmed-up, idle Sluice (`pid` at `addr`): open,
/// sample, close; then open and close once more.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    exe: &Path,
    pid: u32,
    addr: SocketAddr,
    key: &str,
    v: &Variant<'_>,
    requested: usize,
    nofile: u64,
    core: Option<usize>,
) -> Res<MemRun> {
    let cap = (nofile.saturating_sub(FD_RESERVE) / v.fds_per_stream) as usize;
    let used = requested.min(cap);
    let cap_note = (used < requested).then(|| {
        format!(
            "capped from {requested}: open-file limit {nofile}, Sluice needs {} fd(s) per stream + {FD_RESERVE} spare",
            v.fds_per_stream
        )
    });
    let cpu0 = crate::procs::cpu_seconds(pid).unwrap_or(0.0);
    let fds_idle = fd_count(pid);
    let rss_idle = vm_bytes(pid, "VmRSS").unwrap_or(0);
    // Slow streams (an event a second, a minute long) stay open while sampled.
    let spec = Spec {
        addr,
        model: v.model.to_string(),
        key: key.to_string(),
        count: used,
        duration_ms: 0,
        tokens: 60,
        chunk_delay_ms: 1000,
    };
    let first = open_close(exe, pid, &spec, fds_idle, core).await?;
    let second = open_close(exe, pid, &spec, fds_idle, core).await?;
    let open = first.rep.open;
    let per_stream = first.rss.saturating_sub(rss_idle) as f64 / open.max(1) as f64;
    let at_10k = if open == 10_000 { first.rss as f64 } else { rss_idle as f64 + per_stream * 10_000.0 };
    let mut error_samples = first.rep.error_samples;
    error_samples.extend(second.rep.error_samples);
    error_samples.truncate(5);
    Ok(MemRun {
        variant: v.name.to_string(),
        model: v.model.to_string(),
        requested,
        used,
        cap_note,
        open,
        errors: first.rep.errors + second.rep.errors,
        error_samples,
        open_all_ms: first.rep.open_all_ms,
        rss_idle_bytes: rss_idle,
        rss_open_bytes: first.rss,
        rss_after_close_bytes: first.rss_after_close,
        rss_reopen_bytes: second.rss,
        rss_after_reclose_bytes: second.rss_after_close,
        hwm_bytes: vm_bytes(pid, "VmHWM").unwrap_or(0),
        rss_per_stream_bytes: per_stream,
        rss_at_10k_bytes: at_10k,
        fds_idle,
        fds_open: first.fds,
        release_s: first.release_s,
        sluice_cpu_s: crate::procs::cpu_seconds(pid).unwrap_or(0.0) - cpu0,
    })
}
