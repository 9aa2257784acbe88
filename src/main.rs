//! `sluice`: parse the command line, call the library, exit 0 (ok),
//! 1 (bad config or usage) or 2 (runtime failure).

use std::net::TcpListener;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

/// mimalloc (v3, libmimalloc-sys's default) instead of glibc's malloc: the request
/// path allocates many small, short-lived buffers, and glibc's
/// free/consolidate showed up at ~10% of the gateway's CPU under load. Sluice
/// CPU per non-stream request at c=64, `busy_poll_us = 0`, medians of six
/// 5-s runs: glibc 21.6 µs, mimalloc v3 17.8 µs, v2 18.3 µs, jemalloc 18.8 µs.
///
/// Built with `no_thp`, and transparent huge pages are turned off for the
/// process at start ([`no_huge_pages`]): with them, mimalloc's arenas were
/// backed by 2 MiB pages as soon as touched — 19.0 MB idle instead of 9.9 MB,
/// 343 MB with 10,000 open streams instead of 164 MB — for no measurable gain
/// in CPU per request (the gateway's heap is small). jemalloc and mimalloc
/// v2 hold 10,000 streams in the same memory but cost more CPU; glibc keeps
/// growing across open/close cycles (fragmentation). docs/performance.md ("Memory")
/// has every number. Called through its C API by `sluice::alloc`, which
/// asks for plain blocks where the `mimalloc` crate asked for aligned ones.
#[global_allocator]
static ALLOC: sluice::alloc::Mimalloc = sluice::alloc::Mimalloc;
use sluice::cli::{CheckArgs, Cli, Command, HealthArgs, MockArgs, ServeArgs};
use sluice::config::{Config, ProcessEnv};

fn main() -> ExitCode {
    let thp = no_huge_pages();
    init_tracing();
    if let Err(e) = thp {
        tracing::debug!(error = %e, "could not turn transparent huge pages off");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    match cli.command {
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
        Some(Command::Check(args)) => check(args),
        Some(Command::Mock(args)) => mock(args),
        Some(Command::Health(args)) => health(args),
    }
}

/// `--help` and `--version` exit 0; every other command-line error exits 1,
/// the code the contract gives bad usage (clap's own default is 2, which
/// here means a runtime failure).
fn usage(e: &clap::Error) -> ExitCode {
    // Printing can only fail when stdout/stderr is gone; the exit code still says it.
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

/// Transparent huge pages off for this process, whatever the host's setting
/// (`always` would otherwise back the allocator's arenas with 2 MiB pages
/// even though mimalloc is built not to ask for them). Memory touched before
/// this call (a few allocations) keeps what it got.
#[cfg(target_os = "linux")]
fn no_huge_pages() -> Result<(), rustix::io::Errno> {
    rustix::thread::disable_transparent_huge_pages(true)
}

#[cfg(not(target_os = "linux"))]
fn no_huge_pages() -> Result<(), std::convert::Infallible> {
    Ok(())
}

/// A minimal HTTP/1.0 GET of /health over std's TcpStream: enough for a
/// HEALTHCHECK, with no HTTP client in the image.
fn health(args: HealthArgs) -> ExitCode {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_millis(args.timeout_ms.max(1));
    let probe = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&args.addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(format!("GET /health HTTP/1.0\r\nHost: {}\r\n\r\n", args.addr).as_bytes())?;
        let mut out = String::new();
        s.take(64 * 1024).read_to_string(&mut out)?;
        Ok(out)
    };
    match probe() {
        Ok(resp) if resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200") => {
            println!("{}", resp.split("\r\n\r\n").nth(1).unwrap_or(""));
            ExitCode::SUCCESS
        }
        Ok(resp) => {
            eprintln!("unhealthy: {}", resp.lines().next().unwrap_or(""));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    let result = match Config::resolve_path(path) {
        Some(p) => Config::load(&p),
        None => Config::embedded_default(),
    };
    result.map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(1)
    })
}

fn serve(args: ServeArgs) -> ExitCode {
    let path = Config::resolve_path(args.config.as_deref());
    let mut config = match load(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let listener = match TcpListener::bind(config.server.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", config.server.listen);
            return ExitCode::from(2);
        }
    };
    tracing::info!(config = %config.source, listen = %config.server.listen, "starting sluice");
    // SIGHUP and POST /admin/reload re-read the same file.
    let opts = sluice::server::RunOptions {
        reload: path.map(|path| sluice::server::ReloadSource { path, env: std::sync::Arc::new(ProcessEnv) }),
        sighup: true,
        release_code_pages: true,
    };
    let result = actix_rt::System::new().block_on(sluice::server::run_with(listener, config, shutdown_signal(), opts));
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT); both drain gracefully.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn check(args: CheckArgs) -> ExitCode {
    match Config::load(&args.config) {
        Ok(c) => {
            // The file is valid; can each cloud provider find its credentials?
            let problems = sluice::providers::credentials::preflight(&c);
            for (i, problem) in &problems {
                let name = c.providers.get(*i).map_or("", |p| p.name.as_str());
                eprintln!("error: {}: providers[{i}] (`{name}`): {problem}", c.source);
            }
            if !problems.is_empty() {
                eprintln!("{}: {} error(s)", args.config.display(), problems.len());
                return ExitCode::from(1);
            }
            println!(
                "{}: ok ({} providers, {} models, {} keys)",
                c.source,
                c.providers.len(),
                c.models.len(),
                c.keys.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", args.config.display(), errors.0.len());
            ExitCode::from(1)
        }
    }
}

fn mock(args: MockArgs) -> ExitCode {
    let mut faults = Vec::new();
    for f in &args.faults {
        match f.parse::<sluice::mock::Fault>() {
            Ok(f) => faults.push(f),
            Err(e) => {
                eprintln!("error: --faults: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let hostile = match args.hostile.as_deref().map(str::parse::<sluice::mock::Hostile>) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            eprintln!("error: --hostile: {e}");
            return ExitCode::from(1);
        }
    };
    if !(0.0..=1.0).contains(&args.fail_rate) {
        eprintln!("error: --fail-rate must be between 0 and 1");
        return ExitCode::from(1);
    }
    let opts = sluice::mock::MockOptions {
        fail_rate: args.fail_rate,
        faults,
        delay_ms: args.delay_ms,
        chunk_delay_ms: args.chunk_delay_ms,
        tokens: args.tokens,
        retry_after_s: args.retry_after_s,
        workers: args.workers,
        seed: args.seed,
        hostile,
        clouds: Default::default(),
    };
    let listener = match TcpListener::bind(args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    tracing::info!(listen = %args.listen, "sluice mock serving");
    match sluice::mock::run_blocking(listener, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
