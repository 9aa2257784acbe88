//! Load benchmark: `cargo bench --bench load [-- OPTIONS]` (`-- --help`).
//!
//! Starts `sluice mock`, `sluice serve` (the release binary cargo built for
//! this bench) and nginx as a plain reverse proxy (issue 14's yardstick,
//! when installed) on loopback ports, and measures the same traffic sent
//! directly to the mock, through nginx and through Sluice, alternating: wrk
//! for non-stream latency and throughput, our own clients for stream timing
//! and for evenly paced fixed request rates (or h2load, `--rate-tool
//! h2load`); then Sluice alone under overload and with
//! many open streams. Prints progress, tables, the budgets (issue 3's, and
//! issue 14's as ratios to nginx), and writes JSON. See the README's
//! "Performance" section and docs/performance.md.

// A benchmark harness, not the gateway: failing loudly on a broken setup is
// what we want, so the gateway's no-unwrap/expect/panic policy is lifted here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "load/compare.rs"]
mod compare;
#[path = "load/cpu.rs"]
mod cpu;
#[path = "load/h2load.rs"]
mod h2load;
#[path = "load/memory.rs"]
mod memory;
#[path = "load/nginx.rs"]
mod nginx;
#[path = "load/opts.rs"]
mod opts;
#[path = "load/overload.rs"]
mod overload;
#[path = "load/paced.rs"]
mod paced;
#[path = "load/phases.rs"]
mod phases;
#[path = "load/procs.rs"]
mod procs;
#[path = "load/report.rs"]
mod report;
#[path = "load/soak.rs"]
mod soak;
#[path = "load/streams.rs"]
mod streams;
#[path = "load/table.rs"]
mod table;
#[path = "load/wrk.rs"]
mod wrk;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use opts::{Phase, Target};
use phases::pause;
use procs::{Proc, Res, mb, vm_bytes};
use report::Report;

const CLIENT_KEY: &str = "sk-bench-client-4c1d";
/// The mock and the load generators run here when pinned; the gateway
/// under test (Sluice, nginx) on core 0.
const LOAD_CORE: usize = 1;
const GATEWAY_CORE: usize = 0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    // Re-executed as a load-generating child.
    match args.first().map(String::as_str) {
        Some("--stream-client") => return child(&rt, args.get(1), streams::stream_client),
        Some("--open-streams") => return child(&rt, args.get(1), streams::open_streams),
        Some("--overload-client") => return child(&rt, args.get(1), overload::overload_client),
        Some("--soak-client") => return child(&rt, args.get(1), soak::soak_client),
        // Paces with blocking sleeps and drives its own runtime between them.
        Some("--paced-client") => {
            return match args.get(1).map(|s| serde_json::from_str(s)) {
                Some(Ok(spec)) => match paced::paced_client(spec) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("load: paced client: {e}");
                        ExitCode::from(2)
                    }
                },
                _ => {
                    eprintln!("load: paced client: missing or bad spec");
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    let opts = match opts::parse(&args) {
        Ok(opts::Parsed::Run(o)) => *o,
        Ok(opts::Parsed::Help) => {
            print!("{}", opts::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(opts::Parsed::Skip) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}\n\n{}", opts::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run(opts) => r,
            s = interrupted() => Err(format!("interrupted by {s}; children stopped")),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("load: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn child<S, F, Fut>(rt: &tokio::runtime::Runtime, spec: Option<&String>, f: F) -> ExitCode
where
    S: serde::de::DeserializeOwned,
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = Res<()>>,
{
    procs::raise_nofile();
    let spec = match spec.map(|s| serde_json::from_str(s)) {
        Some(Ok(s)) => s,
        _ => {
            eprintln!("load: stream client: missing or bad spec");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(f(spec)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: stream client: {e}");
            ExitCode::from(2)
        }
    }
}

async fn interrupted() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}

fn gateway_config(listen: SocketAddr, mock: SocketAddr, workers: usize) -> String {
    format!(
        r#"# Generated by benches/load.rs.
[server]
listen = "{listen}"
workers = {workers}
shutdown_timeout_ms = 1000

[[providers]]
name = "upstream"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "sk-bench-upstream"
forward_headers = ["x-mock-*"]
# Room for the open-streams memory test; a cap, not a preallocation.
max_connections = 20000

[[providers]]
name = "inproc"
kind = "mock"
forward_headers = ["x-mock-*"]

[[models]]
name = "bench"
deployments = [{{ provider = "upstream", model = "mock-model" }}]

[[models]]
name = "bench-inproc"
deployments = [{{ provider = "inproc", model = "mock-1" }}]

[[keys]]
name = "bench"
key = "{CLIENT_KEY}"
models = ["*"]
{overload}"#,
        overload = overload::config()
    )
}

/// Where the gateways (Sluice, nginx) and the load generators run.
#[derive(Clone, Copy)]
pub struct Pinning {
    pub gateway: Option<usize>,
    pub load: Option<usize>,
}

/// A Sluice process on a fresh port, ready.
async fn start_sluice(
    bin: &Path,
    config: &Path,
    dir: &Path,
    core: Option<usize>,
    name: &str,
) -> Res<(Proc, SocketAddr)> {
    let addr: SocketAddr = ([127, 0, 0, 1], procs::free_port()?).into();
    let args: Vec<String> =
        ["serve", "--config", &config.display().to_string(), "--listen", &addr.to_string()].map(String::from).into();
    let mut p = procs::spawn(name, bin, &args, core, dir)?;
    procs::wait_ready(&mut p, addr, "/ready").await?;
    Ok((p, addr))
}

/// `n` requests per model through Sluice, one stream in six.
async fn warm(addr: SocketAddr, models: &[&str], n: usize) -> Res<()> {
    let auth = format!("Bearer {CLIENT_KEY}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    for model in models {
        for i in 0..n {
            let body = if i % 6 == 0 {
                String::from_utf8_lossy(&streams::chat_stream_body(model)).into_owned()
            } else {
                wrk::CHAT_BODY.replace("\"bench\"", &format!("\"{model}\""))
            };
            let (status, text) = procs::http(addr, "POST", "/v1/chat/completions", &headers, &body).await?;
            if status != 200 {
                return Err(format!("warm-up request {i} for {model} got {status}: {text:.300}"));
            }
        }
    }
    Ok(())
}

fn pinning(opts: &opts::Options, cores: usize) -> (Pinning, Option<String>) {
    let none = Pinning { gateway: None, load: None };
    match opts.pin {
        Some(false) => (none, None),
        None if cores < 2 => (none, None),
        _ if cores < 2 => (none, Some(format!("--pin ignored: {cores} core(s) available"))),
        _ if procs::command_line("taskset", &["--version"]).is_none() => {
            (none, Some("taskset (util-linux) not found: not pinning".into()))
        }
        _ => (Pinning { gateway: Some(GATEWAY_CORE), load: Some(LOAD_CORE) }, None),
    }
}

/// What the run can use: nginx and h2load are optional (the parts that
/// need them are skipped, with a note); wrk is needed for the http phase.
struct Tools {
    wrk: Option<String>,
    nginx: Option<(PathBuf, String)>,
    h2load: Option<String>,
    notes: Vec<String>,
}

fn tools(opts: &opts::Options) -> Res<Tools> {
    let mut notes = Vec::new();
    let wrk = if opts.runs(Phase::Http) { Some(wrk::version()?) } else { None };
    let compared = opts.runs(Phase::Http) || opts.runs(Phase::Streams) || opts.runs(Phase::Rate);
    let nginx = if opts.has(Target::Nginx) && compared {
        match nginx::find(opts.nginx.as_deref()) {
            Some(bin) => Some((bin.clone(), nginx::version(&bin)?)),
            None => {
                notes.push(
                    "nginx not found: the nginx reference (issue 14) is skipped. Install it with \
                     scripts/bench-deps (Debian/Ubuntu: apt-get install nginx), or give --nginx PATH"
                        .into(),
                );
                None
            }
        }
    } else {
        None
    };
    let wants_h2load = opts.runs(Phase::Rate) && opts.rate_tool == opts::RateTool::H2load;
    let h2load = if wants_h2load { h2load::version() } else { None };
    if wants_h2load && h2load.is_none() {
        notes.push(
            "h2load not found: the fixed-rate phase is skipped. Install it with scripts/bench-deps \
             (Debian/Ubuntu: apt-get install nghttp2-client)"
                .into(),
        );
    }
    Ok(Tools { wrk, nginx, h2load, notes })
}

async fn run(mut opts: opts::Options) -> Res<bool> {
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let nofile = procs::raise_nofile();
    let tools = tools(&opts)?;
    if tools.h2load.is_none() && opts.rate_tool == opts::RateTool::H2load {
        opts.phases.retain(|&p| p != Phase::Rate);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (pin, pin_note) = pinning(&opts, cores);
    let tool_versions = serde_json::json!({
        "wrk": tools.wrk,
        "nginx": tools.nginx.as_ref().map(|(bin, v)| format!("{v} ({})", bin.display())),
        "h2load": tools.h2load,
    });
    let mut machine = report::machine(cores, nofile, tool_versions);

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sluice_bin = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let mock_addr: SocketAddr = ([127, 0, 0, 1], procs::free_port()?).into();
    let config = dir.path().join("sluice.toml");
    // `--listen` overrides the address in the file.
    let config_text = gateway_config(([127, 0, 0, 1], 8080).into(), mock_addr, opts.workers);
    std::fs::write(&config, config_text).map_err(|e| e.to_string())?;
    let script = dir.path().join("chat.lua");
    std::fs::write(&script, wrk::script(CLIENT_KEY)).map_err(|e| e.to_string())?;
    let body = dir.path().join("chat.json");
    std::fs::write(&body, wrk::CHAT_BODY).map_err(|e| e.to_string())?;

    let mock_args: Vec<String> =
        ["mock", "--listen", &mock_addr.to_string(), "--workers", "1"].map(String::from).into();
    let mut mock = procs::spawn("mock", &sluice_bin, &mock_args, pin.load, dir.path())?;
    procs::wait_ready(&mut mock, mock_addr, "/v1/models").await?;
    let (sluice, sluice_addr) = start_sluice(&sluice_bin, &config, dir.path(), pin.gateway, "sluice").await?;
    let nginx = match &tools.nginx {
        Some((bin, _)) => {
            let stream_c = opts.streams.iter().map(|s| s.concurrency);
            let max_c = opts.concurrency.iter().copied().chain(stream_c).fold(opts.rate_connections, usize::max);
            let started = nginx::start(bin, dir.path(), mock_addr, max_c, pin.gateway).await;
            Some(started.map_err(|e| format!("nginx did not start (--no-nginx leaves it out): {e}"))?)
        }
        None => None,
    };
    let targets: Vec<Target> =
        opts.targets.iter().copied().filter(|&t| t != Target::Nginx || nginx.is_some()).collect();

    let alternating = |p: Phase, n: usize| if opts.runs(p) { n * opts.rounds * targets.len() } else { 0 };
    let http_runs = alternating(Phase::Http, opts.concurrency.len());
    let stream_runs = alternating(Phase::Streams, opts.streams.len());
    let rate_runs = alternating(Phase::Rate, opts.rates.len());
    let overload_runs = if opts.runs(Phase::Overload) { 1 + opts.overload_concurrency.len() } else { 0 };
    let memory_runs = if opts.runs(Phase::Memory) { 2 } else { 0 };
    let soak_runs = usize::from(opts.runs(Phase::Soak));
    let steps = http_runs + stream_runs + rate_runs + overload_runs + memory_runs + soak_runs;
    let mut h = phases::Harness {
        sluice_bin,
        self_exe: std::env::current_exe().map_err(|e| e.to_string())?,
        dir: dir.path().to_path_buf(),
        config,
        pin,
        mock_addr,
        sluice_addr,
        sluice,
        mock,
        nginx,
        script,
        body,
        targets,
        sluice_hwm_seen: 0,
        peak_reset_failed: false,
        step: 0,
        steps,
    };

    let memory_s = memory_runs as u64 * (6 + 2 * opts.memory_streams as u64 / 1000);
    let est_s = (http_runs + stream_runs + overload_runs) as u64 * (opts.duration_s + 1)
        + rate_runs as u64 * (opts.rate_duration_s + 1)
        + memory_s
        + soak_runs as u64 * (opts.soak_duration_s + 10)
        + 4;
    println!("Sluice load benchmark: {cores} cores, {}", machine["cpu_model"].as_str().unwrap_or("?"));
    match (pin.gateway, pin.load) {
        (Some(a), Some(b)) => {
            println!("pinned: gateways (Sluice, nginx) on core {a}; mock, wrk, h2load and stream clients on core {b}")
        }
        _ => println!("not pinned{}", pin_note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()),
    }
    let cpus = procs::cpus_allowed;
    println!(
        "Sluice pid {} on {} (workers {}, cpus {}), mock pid {} on {} (workers 1, cpus {}); open-file limit {nofile}",
        h.sluice.pid,
        h.sluice_addr,
        opts.workers,
        cpus(h.sluice.pid),
        h.mock.pid,
        h.mock_addr,
        cpus(h.mock.pid)
    );
    if let (Some(n), Some((bin, v))) = (&h.nginx, &tools.nginx) {
        let worker = n.worker().map_or("?".into(), |w| format!("{w} (cpus {})", cpus(w)));
        println!("nginx ({v}, {}) master pid {}, worker pid {worker}, on {}", bin.display(), n.proc.pid, n.addr);
    }
    let versions: Vec<&str> = [&tools.wrk, &tools.h2load].into_iter().flatten().map(String::as_str).collect();
    if !versions.is_empty() {
        println!("load tools: {}", versions.join("; "));
    }
    for n in &tools.notes {
        println!("note: {n}");
    }
    let load = machine["loadavg"].as_str().unwrap_or("?").to_string();
    println!("load average before: {load} (other work on the machine skews the numbers)");
    let names: Vec<&str> = h.targets.iter().map(|t| t.name()).collect();
    println!(
        "plan: {steps} steps ({} alternating {}), {}-s runs, about {} min {} s",
        opts.phases.iter().map(|p| format!("{p:?}").to_lowercase()).collect::<Vec<_>>().join(", "),
        names.join("/"),
        opts.duration_s,
        est_s / 60,
        est_s % 60
    );

    // Idle memory: after start, then after a few warm requests.
    pause(1000).await;
    let rss_idle_start = vm_bytes(h.sluice.pid, "VmRSS").unwrap_or(0);
    warm(h.sluice_addr, &["bench", "bench-inproc"], 60).await?;
    if let Some(n) = &h.nginx {
        // Fills nginx's keep-alive pool to the mock, as Sluice's was.
        warm(n.addr, &["bench"], 60).await?;
    }
    pause(1000).await;
    let rss_idle_warm = vm_bytes(h.sluice.pid, "VmRSS").unwrap_or(0);
    let cpu_start = h.sluice_cpu();
    println!("idle RSS: {:.1} MB after start, {:.1} MB after warm-up", mb(rss_idle_start), mb(rss_idle_warm));

    let http = if opts.runs(Phase::Http) { phases::http_phase(&mut h, &opts).await? } else { Vec::new() };
    let streams = if opts.runs(Phase::Streams) { phases::stream_phase(&mut h, &opts).await? } else { Vec::new() };
    let rates = if opts.runs(Phase::Rate) { phases::rate_phase(&mut h, &opts).await? } else { Vec::new() };
    let hwm_load = h.sluice_hwm();
    let cpu_runs_s = h.sluice_cpu() - cpu_start;
    let cpu_total_s = h.sluice_cpu();
    let overload = if opts.runs(Phase::Overload) { phases::overload_phase(&mut h, &opts).await? } else { Vec::new() };
    let memory = if opts.runs(Phase::Memory) { phases::memory_phase(&mut h, &opts, nofile).await? } else { Vec::new() };
    let soak = if opts.runs(Phase::Soak) {
        let s = soak::run(&mut h, opts.soak_duration_s, opts.soak_concurrency, opts.workers).await?;
        h.progress("soak done");
        Some(s)
    } else {
        None
    };
    h.alive()?;
    let mut notes = tools.notes;
    if h.peak_reset_failed {
        notes.push("could not reset VmHWM (/proc/PID/clear_refs): peak RSS counts from each process's start".into());
    }
    if let Some(log) = h.nginx.as_ref().map(|n| n.error_log()).filter(|l| !l.is_empty()) {
        notes.push(format!("nginx's error log is not empty; it ends:\n{log}"));
    }
    machine["loadavg_after"] = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().into();

    let rep = Report {
        opts: &opts,
        machine,
        started_unix,
        elapsed_s: started.elapsed().as_secs_f64(),
        pin_note,
        pinned: pin.gateway.is_some(),
        notes,
        nginx: h.nginx.as_ref().and(tools.nginx.as_ref()).map(|(_, v)| v.clone()),
        rss_idle_start,
        rss_idle_warm,
        hwm_load,
        cpu_total_s,
        cpu_runs_s,
        http,
        streams,
        rates,
        overload,
        memory,
        soak,
    };
    let (out, all_pass) = rep.finish()?;
    println!("\nJSON: {}", out.display());
    println!("ran for {:.0} s", started.elapsed().as_secs_f64());
    Ok(all_pass || !opts.strict)
}
