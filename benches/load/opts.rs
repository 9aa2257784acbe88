//! Command-line options of the load benchmark (the arguments after `--`).

use std::path::PathBuf;

use serde::Serialize;

pub const USAGE: &str = "\
cargo bench --bench load [-- OPTIONS]

Starts `sluice mock`, `sluice serve` (release build) and nginx as a plain
reverse proxy (when installed), and measures the same requests sent directly
to the mock, through nginx and through Sluice, alternating the three.

Phases (all by default, in this order):
  http      non-stream requests with wrk, per --concurrency
  streams   SSE streams with our client, per --streams
  rate      fixed request rates (--rates), evenly paced by our own client
            (or h2load, --rate-tool): CPU per request
  overload  through Sluice only: the limiter's queue far past capacity
  memory    through Sluice only: RSS with many open streams
  soak      only when named (--only soak): a Sluice and a mock of its own,
            --soak-duration of good and hostile-client traffic over mock
            faults; RSS after the first minute vs at the end (within 10%),
            and the tokens Sluice charged vs those the mock produced

  --only LIST                phases to run; `nginx-compare` = http,streams,rate
                             (the phases compared with nginx)          [all]
  --targets LIST             of direct,nginx,sluice for the first three
                             phases                                    [all three]
  --nginx PATH               the nginx binary            [nginx on PATH, /usr/sbin]
  --no-nginx                 leave nginx out
  --concurrency LIST         wrk connections per run            [1,32,64,256]
  --streams LIST             stream runs as EVENTSxDELAY_MS@CONCURRENCY
                             (EVENTS >= 3 counts role, tokens, finish and [DONE])
                                              [64x1@1,64x1@64,50x0@64,20x20@64]
  --rates LIST               total req/s of the fixed-rate runs (empty: skip)
                                                                [200,2000]
  --rate-connections N       connections at a fixed rate        [1]
  --rate-tool paced|h2load   who paces the fixed rates: our own client,
                             request i at start + i/rate; or h2load --rps,
                             which sends in bursts (docs/performance.md,
                             section Fixed rates)               [paced]
  --rate-duration S          seconds per fixed-rate run         [10]
  --duration S               seconds per http and stream run    [5]
  --rounds N                 alternations of the targets        [2]
  --pin | --no-pin           gateways (Sluice, nginx) on core 0; mock, wrk,
                             h2load and the stream client on core 1
                             (default: pin when there are >= 2 cores)
  --workers N                Sluice's server.workers            [1]
  --overload-concurrency LIST  connections in the overload phase, against a
                             model capped at 8 concurrent (empty: skip) [256]
  --memory-streams N         concurrent open streams for the memory test [10000]
  --skip-memory              skip the open-streams memory test
  --soak-duration S          seconds of the soak phase          [600]
  --soak-concurrency N       the soak's client connections      [32]
  --out PATH                 JSON output [bench-results/load-<unix-ts>.json];
                             also copied to bench-results/latest.json
  --smoke                    short CI run: concurrency 1,32,256, streams
                             16x1@1,50x0@64,20x20@64, rate duration 1,
                             overload concurrency 128, duration 1, rounds 1,
                             memory-streams 200 (explicit options still win)
  --strict                   exit 1 when a budget fails (default: report only)
  -h, --help                 this text
";

/// What a measurement is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The mock itself: the baseline every `added` is measured against.
    Direct,
    /// nginx as a plain reverse proxy in front of the mock (issue 14).
    Nginx,
    Sluice,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Direct, Target::Nginx, Target::Sluice];

    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::Sluice => "sluice",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Http,
    Streams,
    Rate,
    Overload,
    Memory,
    Soak,
}

impl Phase {
    /// The phases of a default run.
    pub const ALL: [Phase; 5] = [Phase::Http, Phase::Streams, Phase::Rate, Phase::Overload, Phase::Memory];
    /// Every phase, in the order they run (the soak runs only when named).
    pub const ORDER: [Phase; 6] =
        [Phase::Http, Phase::Streams, Phase::Rate, Phase::Overload, Phase::Memory, Phase::Soak];
}

/// One stream run's shape: `events` SSE events, `delay_ms` apart, over
/// `concurrency` connections that loop streams for the run's duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StreamShape {
    pub events: u32,
    pub delay_ms: u64,
    pub concurrency: usize,
}

impl std::fmt::Display for StreamShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} events {} ms apart, c={}", self.events, self.delay_ms, self.concurrency)
    }
}

/// Who paces the fixed-rate phase's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RateTool {
    /// Our own client (`paced.rs`): evenly spaced requests.
    Paced,
    /// `h2load --rps`: bursts of back-to-back requests, then idle.
    H2load,
}

#[derive(Clone, Debug, Serialize)]
pub struct Options {
    pub phases: Vec<Phase>,
    pub targets: Vec<Target>,
    pub nginx: Option<PathBuf>,
    pub concurrency: Vec<usize>,
    pub streams: Vec<StreamShape>,
    pub rates: Vec<usize>,
    pub rate_connections: usize,
    pub rate_duration_s: u64,
    pub rate_tool: RateTool,
    pub overload_concurrency: Vec<usize>,
    pub duration_s: u64,
    pub rounds: usize,
    /// `None`: decide from the number of cores.
    pub pin: Option<bool>,
    pub workers: usize,
    pub memory_streams: usize,
    pub soak_duration_s: u64,
    pub soak_concurrency: usize,
    pub out: Option<PathBuf>,
    pub smoke: bool,
    pub strict: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            phases: Phase::ALL.to_vec(),
            targets: Target::ALL.to_vec(),
            nginx: None,
            concurrency: vec![1, 32, 64, 256],
            streams: shapes("64x1@1,64x1@64,50x0@64,20x20@64").unwrap_or_default(),
            rates: vec![200, 2000],
            rate_connections: 1,
            rate_duration_s: 10,
            rate_tool: RateTool::Paced,
            overload_concurrency: vec![256],
            duration_s: 5,
            rounds: 2,
            pin: None,
            workers: 1,
            memory_streams: 10_000,
            soak_duration_s: 600,
            soak_concurrency: 32,
            out: None,
            smoke: false,
            strict: false,
        }
    }
}

impl Options {
    pub fn runs(&self, p: Phase) -> bool {
        self.phases.contains(&p)
    }

    pub fn has(&self, t: Target) -> bool {
        self.targets.contains(&t)
    }
}

/// What to do: the benchmark, or `--help`, or nothing (a `cargo bench FILTER`
/// that does not name this benchmark).
pub enum Parsed {
    Run(Box<Options>),
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

/// A list that may be empty (the phase is then skipped).
fn list_or_empty(flag: &str, v: &str) -> Result<Vec<usize>, String> {
    if v.trim().is_empty() { Ok(Vec::new()) } else { list(flag, v) }
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.trim().parse().map_err(|_| format!("{flag}: expected a number, got {v:?}"))
}

/// "50x0@64,20x20@64" → stream shapes.
fn shapes(v: &str) -> Result<Vec<StreamShape>, String> {
    let one = |s: &str| -> Option<StreamShape> {
        let (ev, rest) = s.trim().split_once('x')?;
        let (delay, c) = rest.split_once('@')?;
        let shape = StreamShape {
            events: ev.trim().parse().ok()?,
            delay_ms: delay.trim().trim_end_matches("ms").parse().ok()?,
            concurrency: c.trim().parse().ok()?,
        };
        (shape.events >= 3 && shape.concurrency > 0).then_some(shape)
    };
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            one(s).ok_or_else(|| {
                format!("--streams: {s:?} is not EVENTSxDELAY_MS@CONCURRENCY with EVENTS >= 3 and CONCURRENCY >= 1")
            })
        })
        .collect()
}

fn phases(v: &str) -> Result<Vec<Phase>, String> {
    let mut out: Vec<Phase> = Vec::new();
    for w in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let add: &[Phase] = match w {
            "http" => &[Phase::Http],
            "streams" => &[Phase::Streams],
            "rate" => &[Phase::Rate],
            "overload" => &[Phase::Overload],
            "memory" => &[Phase::Memory],
            "soak" => &[Phase::Soak],
            "nginx-compare" => &[Phase::Http, Phase::Streams, Phase::Rate],
            _ => {
                return Err(format!(
                    "--only: unknown phase {w:?} (http, streams, rate, overload, memory, soak, nginx-compare)"
                ));
            }
        };
        out.extend_from_slice(add);
    }
    if out.is_empty() {
        return Err("--only: no phase given".into());
    }
    // Always in the canonical order and once, whatever was given.
    Ok(Phase::ORDER.into_iter().filter(|p| out.contains(p)).collect())
}

fn targets(v: &str) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for w in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let t = Target::ALL
            .into_iter()
            .find(|t| t.name() == w)
            .ok_or_else(|| format!("--targets: unknown target {w:?} (direct, nginx, sluice)"))?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.is_empty() {
        return Err("--targets: no target given".into());
    }
    Ok(Target::ALL.into_iter().filter(|t| out.contains(t)).collect())
}

/// Parses the arguments after the program name. `--bench` (which cargo
/// passes) is ignored; bare words are cargo's bench filters.
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options::default();
    if args.iter().any(|a| a == "--smoke") {
        o.smoke = true;
        o.concurrency = vec![1, 32, 256];
        o.streams = shapes("16x1@1,50x0@64,20x20@64")?;
        o.rate_duration_s = 1;
        o.overload_concurrency = vec![128];
        o.duration_s = 1;
        o.rounds = 1;
        o.memory_streams = 200;
    }
    let mut filters = Vec::new();
    let mut no_nginx = false;
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
            "--only" => o.phases = phases(&value()?)?,
            "--targets" => o.targets = targets(&value()?)?,
            "--nginx" => o.nginx = Some(PathBuf::from(value()?)),
            "--no-nginx" => no_nginx = true,
            "--concurrency" => o.concurrency = list(flag, &value()?)?,
            "--streams" => o.streams = shapes(&value()?)?,
            "--rates" => o.rates = list_or_empty(flag, &value()?)?,
            "--rate-connections" => o.rate_connections = num(flag, &value()?)?,
            "--rate-duration" => o.rate_duration_s = num(flag, &value()?)?,
            "--rate-tool" => {
                o.rate_tool = match value()?.as_str() {
                    "paced" => RateTool::Paced,
                    "h2load" => RateTool::H2load,
                    v => return Err(format!("--rate-tool: expected paced or h2load, got {v:?}")),
                }
            }
            "--overload-concurrency" => o.overload_concurrency = list_or_empty(flag, &value()?)?,
            "--duration" => o.duration_s = num(flag, &value()?)?,
            "--rounds" => o.rounds = num(flag, &value()?)?,
            "--pin" => o.pin = Some(true),
            "--no-pin" => o.pin = Some(false),
            "--workers" => o.workers = num(flag, &value()?)?,
            "--memory-streams" => o.memory_streams = num(flag, &value()?)?,
            "--skip-memory" => o.memory_streams = 0,
            "--soak-duration" => o.soak_duration_s = num(flag, &value()?)?,
            "--soak-concurrency" => o.soak_concurrency = num(flag, &value()?)?,
            "--out" => o.out = Some(PathBuf::from(value()?)),
            "--strict" => o.strict = true,
            "--stream-concurrency" | "--stream-chunks" | "--chunk-delay-ms" => {
                return Err(format!("{flag} is gone: use --streams EVENTSxDELAY_MS@CONCURRENCY,..."));
            }
            f if f.starts_with('-') => return Err(format!("unknown option {f}")),
            word => filters.push(word.to_string()),
        }
    }
    if !filters.is_empty() && !filters.iter().any(|f| "load".contains(f.as_str())) {
        return Ok(Parsed::Skip);
    }
    if no_nginx {
        o.targets.retain(|&t| t != Target::Nginx);
        if o.targets.is_empty() {
            return Err("--no-nginx left no target".into());
        }
    }
    if o.duration_s == 0 || o.rounds == 0 || o.workers == 0 || o.rate_duration_s == 0 || o.rate_connections == 0 {
        return Err("--duration, --rate-duration, --rate-connections, --rounds and --workers must be at least 1".into());
    }
    if let Some(&r) = o.rates.iter().find(|&&r| r < o.rate_connections) {
        return Err(format!("--rates: {r} req/s is less than one per connection (--rate-connections)"));
    }
    if o.runs(Phase::Soak) && (o.soak_duration_s < 2 || o.soak_concurrency == 0) {
        return Err("--soak-duration must be at least 2 and --soak-concurrency at least 1".into());
    }
    if o.memory_streams == 0 {
        o.phases.retain(|&p| p != Phase::Memory);
    }
    if o.overload_concurrency.is_empty() {
        o.phases.retain(|&p| p != Phase::Overload);
    }
    if o.rates.is_empty() {
        o.phases.retain(|&p| p != Phase::Rate);
    }
    if o.streams.is_empty() {
        o.phases.retain(|&p| p != Phase::Streams);
    }
    Ok(Parsed::Run(Box::new(o)))
}
