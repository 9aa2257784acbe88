//! The running processes (mock, Sluice, nginx) and the phases that load
//! them. Every phase that compares targets alternates them within a round
//! and rotates the order between rounds, so drift (a build starting, the
//! machine warming) hits all of them alike.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cpu::{self, CpuSnap};
use crate::nginx::Nginx;
use crate::opts::{Options, RateTool, Target};
use crate::procs::{self, Proc, Res, vm_bytes};
use crate::report::{self, HttpRec, RateRec, RunCpu, StreamRec};
use crate::{CLIENT_KEY, Pinning, h2load, memory, overload, paced, streams, wrk};

pub struct Harness {
    pub sluice_bin: PathBuf,
    pub self_exe: PathBuf,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub pin: Pinning,
    pub mock_addr: SocketAddr,
    pub sluice_addr: SocketAddr,
    pub sluice: Proc,
    pub mock: Proc,
    pub nginx: Option<Nginx>,
    /// wrk's Lua script and h2load's request body.
    pub script: PathBuf,
    pub body: PathBuf,
    /// The targets of the alternating phases (nginx only when it runs).
    pub targets: Vec<Target>,
    /// Sluice's VmHWM read before each reset (see [`Harness::reset_peak`]).
    pub sluice_hwm_seen: u64,
    pub peak_reset_failed: bool,
    pub step: usize,
    pub steps: usize,
}

/// CPU samples of every process, taken before a run.
pub struct Snaps {
    mock: CpuSnap,
    sluice: CpuSnap,
    nginx: Option<CpuSnap>,
}

impl Harness {
    pub fn progress(&mut self, line: &str) {
        self.step += 1;
        let w = self.steps.to_string().len();
        println!("[{:>w$}/{}] {line}", self.step, self.steps);
    }

    pub fn alive(&mut self) -> Res<()> {
        self.sluice.check_alive()?;
        self.mock.check_alive()?;
        match &mut self.nginx {
            Some(n) => n.proc.check_alive(),
            None => Ok(()),
        }
    }

    pub fn sluice_cpu(&self) -> f64 {
        procs::cpu_seconds(self.sluice.pid).unwrap_or(0.0)
    }

    fn addr(&self, t: Target) -> Res<SocketAddr> {
        match t {
            Target::Direct => Ok(self.mock_addr),
            Target::Sluice => Ok(self.sluice_addr),
            Target::Nginx => self.nginx.as_ref().map(|n| n.addr).ok_or_else(|| "nginx is not running".into()),
        }
    }

    /// Round 0: direct, nginx, sluice; each later round starts one further.
    fn order(&self, round: usize) -> Vec<Target> {
        let mut v = self.targets.clone();
        let n = v.len().max(1);
        v.rotate_left(round % n);
        v
    }

    fn snap(&self) -> Snaps {
        Snaps {
            mock: cpu::snap(&[self.mock.pid]),
            sluice: cpu::snap(&[self.sluice.pid]),
            nginx: self.nginx.as_ref().map(|n| cpu::snap(&n.pids())),
        }
    }

    fn since(&self, a: &Snaps) -> RunCpu {
        let b = self.snap();
        RunCpu {
            mock: cpu::between(&a.mock, &b.mock),
            sluice: cpu::between(&a.sluice, &b.sluice),
            nginx: a.nginx.as_ref().zip(b.nginx.as_ref()).map(|(a, b)| cpu::between(a, b)),
        }
    }

    /// The process whose peak RSS stands for the target's gateway: Sluice,
    /// or nginx's worker (the master holds no connection; adding its RSS
    /// would count their shared pages twice).
    fn gateway_pid(&self, t: Target) -> Option<u32> {
        match t {
            Target::Direct => None,
            Target::Sluice => Some(self.sluice.pid),
            Target::Nginx => self.nginx.as_ref()?.worker(),
        }
    }

    /// Starts a fresh peak-RSS count for the target's gateway.
    fn reset_peak(&mut self, t: Target) {
        if t == Target::Sluice {
            self.sluice_hwm_seen = self.sluice_hwm_seen.max(vm_bytes(self.sluice.pid, "VmHWM").unwrap_or(0));
        }
        if let Some(pid) = self.gateway_pid(t) {
            self.peak_reset_failed |= !cpu::reset_peak(pid);
        }
    }

    fn peak(&self, t: Target) -> Option<u64> {
        vm_bytes(self.gateway_pid(t)?, "VmHWM")
    }

    /// Sluice's peak RSS over everything it served so far.
    pub fn sluice_hwm(&self) -> u64 {
        self.sluice_hwm_seen.max(vm_bytes(self.sluice.pid, "VmHWM").unwrap_or(0))
    }

    pub async fn start_sluice(&self, name: &str) -> Res<(Proc, SocketAddr)> {
        crate::start_sluice(&self.sluice_bin, &self.config, &self.dir, self.pin.gateway, name).await
    }
}

pub async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

pub async fn http_phase(h: &mut Harness, opts: &Options) -> Res<Vec<HttpRec>> {
    let mut out = Vec::new();
    for &c in &opts.concurrency {
        for round in 0..opts.rounds {
            for t in h.order(round) {
                h.alive()?;
                let url = format!("http://{}/v1/chat/completions", h.addr(t)?);
                h.reset_peak(t);
                let (snap, ticks0) = (h.snap(), procs::cpu_ticks());
                let w = wrk::run(&url, &h.script, c, opts.duration_s, h.pin.load).await?;
                let (cpu, cores_busy) = (h.since(&snap), procs::busy_between(&ticks0, &procs::cpu_ticks()));
                if w.requests == w.errors.status {
                    return Err(format!("c={c} {}: no successful request ({w:?})", t.name()));
                }
                h.progress(&report::http_line(c, t, &w, &cpu, &cores_busy));
                out.push(HttpRec {
                    concurrency: c,
                    round,
                    target: t,
                    rps: w.rps(),
                    cpu,
                    gateway_peak_rss_bytes: h.peak(t),
                    cores_busy,
                    wrk: w,
                });
            }
        }
    }
    Ok(out)
}

pub async fn stream_phase(h: &mut Harness, opts: &Options) -> Res<Vec<StreamRec>> {
    let mut out = Vec::new();
    for &shape in &opts.streams {
        for round in 0..opts.rounds {
            for t in h.order(round) {
                h.alive()?;
                let spec = streams::Spec {
                    addr: h.addr(t)?,
                    model: "bench".into(),
                    key: CLIENT_KEY.into(),
                    count: shape.concurrency,
                    duration_ms: opts.duration_s * 1000,
                    tokens: shape.events - 3, // role, tokens..., finish, [DONE]
                    chunk_delay_ms: shape.delay_ms,
                };
                let (snap, ticks0) = (h.snap(), procs::cpu_ticks());
                let r = streams::run_client(&h.self_exe, &spec, h.pin.load).await?;
                let (cpu, cores_busy) = (h.since(&snap), procs::busy_between(&ticks0, &procs::cpu_ticks()));
                if r.streams == 0 {
                    return Err(format!("streams {shape} {}: no stream completed: {:?}", t.name(), r.error_samples));
                }
                h.progress(&report::stream_line(&shape, t, &r, &cores_busy));
                out.push(StreamRec { shape, round, target: t, cpu, cores_busy, run: r });
            }
        }
    }
    Ok(out)
}

/// Fixed request rates, paced by our own client (or h2load): what each
/// process spends per request when it is not saturated.
pub async fn rate_phase(h: &mut Harness, opts: &Options) -> Res<Vec<RateRec>> {
    let mut out = Vec::new();
    for &rate in &opts.rates {
        for round in 0..opts.rounds {
            for t in h.order(round) {
                h.alive()?;
                let url = format!("http://{}/v1/chat/completions", h.addr(t)?);
                let (snap, ticks0) = (h.snap(), procs::cpu_ticks());
                let conns = opts.rate_connections;
                let r = match opts.rate_tool {
                    RateTool::Paced => {
                        let spec = paced::Spec {
                            addr: h.addr(t)?,
                            key: CLIENT_KEY.into(),
                            body: h.body.clone(),
                            rate,
                            connections: conns,
                            duration_ms: opts.rate_duration_s * 1000,
                        };
                        paced::run_client(&h.self_exe, &spec, h.pin.load).await?
                    }
                    RateTool::H2load => {
                        h2load::run(&url, &h.body, CLIENT_KEY, rate, conns, opts.rate_duration_s, h.pin.load).await?
                    }
                };
                let (cpu, cores_busy) = (h.since(&snap), procs::busy_between(&ticks0, &procs::cpu_ticks()));
                if r.succeeded == 0 {
                    return Err(format!("rate {rate}/s {}: no successful request ({r:?})", t.name()));
                }
                h.progress(&report::rate_line(t, &r, &cpu, &cores_busy));
                out.push(RateRec { round, target: t, cpu, cores_busy, run: r });
            }
        }
    }
    Ok(out)
}

/// Through Sluice only: the capped model at its own concurrency (no queue),
/// then at each overload concurrency, far past what it admits.
pub async fn overload_phase(h: &mut Harness, opts: &Options) -> Res<Vec<overload::OverloadRun>> {
    let mut out = Vec::new();
    let capacity = overload::MAX_CONCURRENT as f64 * 1000.0 / overload::DELAY_MS as f64;
    let mut levels = vec![overload::MAX_CONCURRENT];
    levels.extend(opts.overload_concurrency.iter().copied());
    for c in levels {
        h.alive()?;
        let spec = overload::Spec {
            addr: h.sluice_addr,
            model: "bench-capped".into(),
            key: CLIENT_KEY.into(),
            count: c,
            duration_ms: opts.duration_s * 1000,
            delay_ms: overload::DELAY_MS,
        };
        let r = overload::run_client(&h.self_exe, &spec, h.pin.load).await?;
        if r.ok == 0 {
            return Err(format!("overload c={c}: nothing admitted: {:?}", r.error_samples));
        }
        h.progress(&format!("overload {}", overload::line(&r, capacity)));
        out.push(r);
    }
    Ok(out)
}

/// Each variant on a fresh Sluice, so that its RSS owes nothing to the
/// load runs or to the other variant (freed memory is not all returned).
pub async fn memory_phase(h: &mut Harness, opts: &Options, nofile: u64) -> Res<Vec<memory::MemRun>> {
    let variants = [
        memory::Variant { name: "in-process mock", model: "bench-inproc", fds_per_stream: 1 },
        memory::Variant { name: "external mock", model: "bench", fds_per_stream: 2 },
    ];
    let mut out = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        h.alive()?;
        let (mut p, addr) = h.start_sluice(&format!("sluice-memory-{i}")).await?;
        crate::warm(addr, &[v.model], 12).await?;
        pause(1000).await;
        let m = memory::run(&h.self_exe, p.pid, addr, CLIENT_KEY, v, opts.memory_streams, nofile, h.pin.load).await?;
        p.check_alive()?;
        h.progress(&report::memory_line(&m));
        out.push(m);
    }
    Ok(out)
}
