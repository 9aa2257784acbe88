//! Command-line options of the load benchmark (the arguments after `--`).

use std::path::PathBuf;

use serde::Serialize;

pub const USAGE: &str = "\
cargo bench --bench load [-- OPTIONS]

Starts `sluice mock` and `sluice serve` (release build) and measures requests
sent directly to the mock against the same requests sent through Sluice.

  --concurrency LIST         wrk connections per run            [1,8,64,256]
  --stream-concurrency LIST  concurrent streams per stream run  [1,64]
  --duration S               seconds per run                    [5]
  --rounds N                 direct/through alternations        [2]
  --pin | --no-pin           Sluice on core 0; mock, wrk and the stream client
                             on core 1 (default: pin when there are >= 2 cores)
  --workers N                Sluice's server.workers            [1]
  --stream-chunks N          SSE events per stream (>= 3)       [64]
  --chunk-delay-ms N         delay between stream events        [1]
  --overload-concurrency LIST  connections in the overload phase, against a
                             model capped at 8 concurrent (empty: skip) [256]
  --memory-streams N         concurrent open streams for the memory test [10000]
  --skip-memory              skip the open-streams memory test
  --out PATH                 JSON output [bench-results/load-<unix-ts>.json];
                             also copied to bench-results/latest.json
  --smoke                    short CI run: concurrency 1,8, stream concurrency 1,8,
                             overload concurrency 128, duration 1, rounds 1, memory-streams 200, chunks 16
                             (explicit options still win)
  --strict                   exit 1 when a budget fails (default: report only)
  -h, --help                 this text
";

#[derive(Clone, Debug, Serialize)]
pub struct Options {
    pub concurrency: Vec<usize>,
    pub stream_concurrency: Vec<usize>,
    pub overload_concurrency: Vec<usize>,
    pub duration_s: u64,
    pub rounds: usize,
    /// `None`: decide from the number of cores.
    pub pin: Option<bool>,
    pub workers: usize,
    pub stream_chunks: u32,
    pub chunk_delay_ms: u64,
    pub memory_streams: usize,
    pub skip_memory: bool,
    pub out: Option<PathBuf>,
    pub smoke: bool,
    pub strict: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: vec![1, 8, 64, 256],
            stream_concurrency: vec![1, 64],
            overload_concurrency: vec![256],
            duration_s: 5,
            rounds: 2,
            pin: None,
            workers: 1,
            stream_chunks: 64,
            chunk_delay_ms: 1,
            memory_streams: 10_000,
            skip_memory: false,
            out: None,
            smoke: false,
            strict: false,
        }
    }
}

/// What to do: the benchmark, or `--help`, or nothing (a `cargo bench FILTER`
/// that does not name this benchmark).
pub enum Parsed {
    Run(Options),
    Help,
    Skip,
}

fn list(flag: &str, v: &str) -> Result<Vec<usize>, String> {
    let out: Result<Vec<usize>, _> = v.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse()).collect();
    match out {
        Ok(l) if !l.is_empty() && l.iter().all(|&n| n > 0) => Ok(l),
        _ => Err(format!("{flag}: expected a comma-separated list of positive integers, got {v:?}")),
    }
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.trim().parse().map_err(|_| format!("{flag}: expected a number, got {v:?}"))
}

/// Parses the arguments after the program name. `--bench` (which cargo
/// passes) is ignored; bare words are cargo's bench filters.
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options::default();
    if args.iter().any(|a| a == "--smoke") {
        o.smoke = true;
        o.concurrency = vec![1, 8];
        o.stream_concurrency = vec![1, 8];
        o.overload_concurrency = vec![128];
        o.duration_s = 1;
        o.rounds = 1;
        o.memory_streams = 200;
        o.stream_chunks = 16;
    }
    let mut filters = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().cloned().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag {
            "--bench" | "--smoke" => {}
            "-h" | "--help" => return Ok(Parsed::Help),
            "--concurrency" => o.concurrency = list(flag, &value()?)?,
            "--stream-concurrency" => o.stream_concurrency = list(flag, &value()?)?,
            "--overload-concurrency" => {
                let v = value()?;
                o.overload_concurrency = if v.trim().is_empty() { Vec::new() } else { list(flag, &v)? };
            }
            "--duration" => o.duration_s = num(flag, &value()?)?,
            "--rounds" => o.rounds = num(flag, &value()?)?,
            "--pin" => o.pin = Some(true),
            "--no-pin" => o.pin = Some(false),
            "--workers" => o.workers = num(flag, &value()?)?,
            "--stream-chunks" => o.stream_chunks = num(flag, &value()?)?,
            "--chunk-delay-ms" => o.chunk_delay_ms = num(flag, &value()?)?,
            "--memory-streams" => o.memory_streams = num(flag, &value()?)?,
            "--skip-memory" => o.skip_memory = true,
            "--out" => o.out = Some(PathBuf::from(value()?)),
            "--strict" => o.strict = true,
            f if f.starts_with('-') => return Err(format!("unknown option {f}")),
            word => filters.push(word.to_string()),
        }
    }
    if !filters.is_empty() && !filters.iter().any(|f| "load".contains(f.as_str())) {
        return Ok(Parsed::Skip);
    }
    if o.duration_s == 0 || o.rounds == 0 || o.workers == 0 {
        return Err("--duration, --rounds and --workers must be at least 1".into());
    }
    if o.stream_chunks < 3 {
        return Err("--stream-chunks must be at least 3 (role, finish and [DONE] events)".into());
    }
    if o.memory_streams == 0 {
        o.skip_memory = true;
    }
    Ok(Parsed::Run(o))
}
