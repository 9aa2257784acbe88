//! From text to a typed [`Config`]: parse, deserialise, interpolate, then
//! check every value and cross-reference, collecting all problems.
//!
//! A TOML syntax error stops everything (there is no tree to go on with).
//! Past it, every problem is reported in one pass: deserialisation repairs
//! the tree after each unknown key, wrong type or missing key and goes on
//! (`deser`), then interpolation and the checks report all they find.

mod cache;
mod clouds;
mod deser;
mod models;
mod providers;
mod routing;
mod shared;
mod telemetry;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use super::interpolate::{self, Env};
use super::locate::{Issue, Locator, line_of};
use super::raw::{RawConfig, RawServer, Text, defaults};
use super::{Config, ConfigError, ConfigErrors, Secret, ServerConfig};

/// Read `text` (the contents of `file`) into a validated [`Config`].
pub fn load(text: &str, file: &str, env: &dyn Env) -> Result<Config, ConfigErrors> {
    let locator = match Locator::parse(text) {
        Ok(l) => l,
        Err(e) => {
            return Err(ConfigErrors(vec![ConfigError {
                file: file.to_owned(),
                line: e.span().map(|s| line_of(text, s.start)),
                key: String::new(),
                message: format!("invalid TOML: {}", e.message()),
            }]));
        }
    };
    let deser::Shaped { raw, mut issues, placeholders } = deser::shape(&locator);
    let mut config = None;
    if let Some(mut raw) = raw {
        let found = interpolate::interpolate(&mut raw, env);
        // A value whose interpolation failed still holds its `${...}` text; any
        // further complaint about it would be noise on top of the real error.
        let unresolved: HashSet<String> = found.iter().map(|i| i.path.clone()).collect();
        issues.extend(found);
        let (mut c, found) = check(raw, file);
        for p in &mut c.providers {
            let vars = match p.kind {
                super::ProviderKind::Bedrock => super::cloud::AWS_VARS,
                super::ProviderKind::Vertex => super::cloud::GOOGLE_VARS,
                _ => continue,
            };
            p.cloud_env = super::cloud::CloudEnv::capture(env, vars);
        }
        issues.extend(
            found.into_iter().filter(|i| !unresolved.contains(&i.path) && !deser::within_any(&i.path, &placeholders)),
        );
        config = Some(c);
    }
    if let Some(config) = config
        && issues.is_empty()
    {
        return Ok(config);
    }
    let mut errors: Vec<ConfigError> = issues
        .into_iter()
        .map(|i| ConfigError { file: file.to_owned(), line: locator.line(&i.path), key: i.path, message: i.message })
        .collect();
    // Stable: problems on one line keep the order they were found in.
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    Err(ConfigErrors(errors))
}

/// Check everything and build the config. The config is only meaningful
/// when no issue was found (invalid values are replaced by defaults so that
/// later checks can go on).
fn check(raw: RawConfig, file: &str) -> (Config, Vec<Issue>) {
    let mut c = Checker::default();
    let no_keys = raw.keys.is_empty();
    let server = server(&mut c, raw.server);
    let provider_names = Names::new(&mut c, "provider", "providers", raw.providers.iter().map(|p| &p.name));
    let model_names = Names::new(&mut c, "model", "models", raw.models.iter().map(|m| &m.name));
    Names::new(&mut c, "key", "keys", raw.keys.iter().map(|k| &k.name));

    let providers = providers::check(&mut c, raw.providers);
    let models = models::check_models(&mut c, raw.models, &provider_names, &providers, &model_names);
    let keys = models::check_keys(&mut c, raw.keys, &model_names);
    let breaker = routing::breaker(&mut c, raw.breaker);
    let routing = routing::routing(&mut c, raw.routing);
    let queue = routing::queue(&mut c, raw.queue);
    let spend_store = raw.spend.and_then(|s| s.store).map(|t| std::path::PathBuf::from(t.value));
    let shared = shared::settings(&mut c, raw.shared);
    if spend_store.is_none()
        && shared.is_none()
        && keys.iter().any(|k| k.daily_budget_usd.is_some() || k.monthly_budget_usd.is_some())
    {
        c.err(
            "spend",
            "budgets need [spend] store = \"path/to/spend.redb\" (or [shared] redis_url), so that \
             spend survives a restart (a restart would otherwise reset every budget)",
        );
    }
    let cache = cache::settings(&mut c, raw.cache);
    let responses = cache::responses(&mut c, raw.responses);
    let telemetry = telemetry::settings(&mut c, raw.telemetry);

    if models.is_empty() {
        c.err(
            "models",
            "no [[models]] configured: add one, e.g. [[models]] name = \"mock\" \
             deployments = [{ provider = \"mock\", model = \"mock-1\" }]",
        );
    }
    if no_keys && !server.allow_anonymous {
        c.err(
            "keys",
            "no [[keys]] configured: add one, or set server.allow_anonymous = true \
             to let every client in",
        );
    }
    let config = Config {
        source: file.to_owned(),
        digest: None,
        server,
        providers,
        models,
        keys,
        breaker,
        routing,
        queue,
        spend_store,
        cache,
        shared,
        responses,
        telemetry,
    };
    (config, c.issues)
}

fn server(c: &mut Checker, s: RawServer) -> ServerConfig {
    let fallback = SocketAddr::from(([127, 0, 0, 1], 8080));
    let listen = match &s.listen {
        None => defaults::LISTEN.parse().unwrap_or(fallback),
        Some(t) => t.value.parse().unwrap_or_else(|_| {
            c.err(
                "server.listen",
                format!(
                    "{} is not an IP address and port; write e.g. \"127.0.0.1:8080\", \
                     \"0.0.0.0:8080\" or \"[::]:8080\" (host names are not accepted)",
                    t.shown()
                ),
            );
            fallback
        }),
    };
    let admin_key = s.admin_key.map(|k| {
        if k.value.is_empty() {
            c.err(
                "server.admin_key",
                "admin_key is empty; set a value (e.g. \"${SLUICE_ADMIN_KEY}\"), or remove \
                 the line to leave /status open",
            );
        }
        c.secret_chars("server.admin_key", &k);
        Secret::new(k.value)
    });
    ServerConfig {
        listen,
        admin_key,
        max_body_bytes: c.usize("server.max_body_bytes", s.max_body_bytes, defaults::MAX_BODY_BYTES, 1, ""),
        workers: usize::try_from(c.int(
            "server.workers",
            s.workers,
            defaults::WORKERS,
            0,
            MAX_WORKERS,
            "(0 means one per core)",
        ))
        .unwrap_or(0),
        shutdown_timeout_ms: c.u64(
            "server.shutdown_timeout_ms",
            s.shutdown_timeout_ms,
            defaults::SHUTDOWN_TIMEOUT_MS,
            0,
            "",
        ),
        allow_anonymous: s.allow_anonymous.unwrap_or(defaults::ALLOW_ANONYMOUS),
        busy_poll_us: c
            .u64("server.busy_poll_us", s.busy_poll_us, defaults::BUSY_POLL_US, 0, "(0 turns busy polling off)")
            .min(MAX_BUSY_POLL_US),
        fast_ingress: s.fast_ingress.unwrap_or(defaults::FAST_INGRESS),
        client_request_timeout_ms: ms(
            c,
            "server.client_request_timeout_ms",
            s.client_request_timeout_ms,
            defaults::CLIENT_REQUEST_TIMEOUT_MS,
            1,
        ),
        client_disconnect_timeout_ms: ms(
            c,
            "server.client_disconnect_timeout_ms",
            s.client_disconnect_timeout_ms,
            defaults::CLIENT_DISCONNECT_TIMEOUT_MS,
            0,
        ),
        keep_alive_ms: ms(c, "server.keep_alive_ms", s.keep_alive_ms, defaults::KEEP_ALIVE_MS, 0),
        body_read_timeout_ms: ms(
            c,
            "server.body_read_timeout_ms",
            s.body_read_timeout_ms,
            defaults::BODY_READ_TIMEOUT_MS,
            1,
        ),
        max_upload_bytes: c.u64("server.max_upload_bytes", s.max_upload_bytes, defaults::MAX_UPLOAD_BYTES, 1, ""),
        max_file_bytes: c.u64("server.max_file_bytes", s.max_file_bytes, defaults::MAX_FILE_BYTES, 1, ""),
        spool_dir: spool_dir(c, s.spool_dir),
    }
}

/// `server.spool_dir`: an existing directory (the system's temporary one by default).
fn spool_dir(c: &mut Checker, v: Option<Text>) -> std::path::PathBuf {
    match v {
        Some(t) if t.unresolved => std::env::temp_dir(),
        Some(t) => {
            let p = std::path::PathBuf::from(&t.value);
            if !p.is_dir() {
                c.err("server.spool_dir", format!("`{}` is not a directory", t.value));
            }
            p
        }
        None => std::env::temp_dir(),
    }
}

/// A client-facing timeout: `min` to one hour.
fn ms(c: &mut Checker, path: &str, v: Option<i64>, default: i64, min: i64) -> u64 {
    u64::try_from(c.int(path, v, default, min, 3_600_000, "(milliseconds)")).unwrap_or(0)
}

/// A longer spin saves nothing more and burns a core between sparse requests.
const MAX_BUSY_POLL_US: u64 = 10_000;

/// More threads than this is a typo, not a machine.
const MAX_WORKERS: i64 = 4096;

/// Collects issues and reads numbers with their ranges.
#[derive(Default)]
pub(super) struct Checker {
    issues: Vec<Issue>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue::new(path, message));
    }

    /// An integer setting in `min..=max`, or `default` when left out. Out of
    /// range is reported and replaced by the default.
    fn int(&mut self, path: &str, v: Option<i64>, default: i64, min: i64, max: i64, why: &str) -> i64 {
        let Some(v) = v else { return default };
        let why = if why.is_empty() { String::new() } else { format!(" {why}") };
        if v < min {
            self.err(path, format!("must be at least {min}, found {v}{why}"));
            default
        } else if v > max {
            self.err(path, format!("must be at most {max}, found {v}{why}"));
            default
        } else {
            v
        }
    }

    fn u64(&mut self, path: &str, v: Option<i64>, default: i64, min: i64, why: &str) -> u64 {
        self.int(path, v, default, min.max(0), i64::MAX, why).unsigned_abs()
    }

    fn usize(&mut self, path: &str, v: Option<i64>, default: i64, min: i64, why: &str) -> usize {
        let n = self.u64(path, v, default, min, why);
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    fn u32(&mut self, path: &str, v: Option<i64>, default: i64, min: i64, why: &str) -> u32 {
        let n = self.int(path, v, default, min.max(0), i64::from(u32::MAX), why);
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Secrets travel in HTTP headers, where a control character (often a
    /// trailing newline in an environment variable) cannot go. The value
    /// itself is never printed.
    fn secret_chars(&mut self, path: &str, t: &Text) {
        if !is_header_value(&t.value) {
            let origin =
                if t.template.is_some() { " (check the environment variable: a trailing newline?)" } else { "" };
            self.err(
                path,
                format!(
                    "the value contains a control character such as a newline, which \
                     cannot be sent in an HTTP header{origin}"
                ),
            );
        }
    }
}

/// Bytes an HTTP header value may hold: visible characters, space and tab.
fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The names of one kind of item (providers, models, keys), for lookups and
/// for listing them in "no such name" messages. Building it reports empty
/// and duplicate names.
pub(super) struct Names {
    what: &'static str,
    section: &'static str,
    list: Vec<Text>,
    index: HashMap<String, usize>,
}

impl Names {
    fn new<'a>(
        c: &mut Checker,
        what: &'static str,
        section: &'static str,
        names: impl Iterator<Item = &'a Text>,
    ) -> Names {
        let mut n = Names { what, section, list: Vec::new(), index: HashMap::new() };
        for (i, name) in names.enumerate() {
            let path = format!("{section}[{i}].name");
            if name.value.is_empty() {
                c.err(path, format!("the {what} name is empty; give it a name"));
            } else if let Some(&first) = n.index.get(&name.value) {
                c.err(
                    path,
                    format!(
                        "duplicate {what} name {}: {section}[{first}] already uses it; \
                         {what} names must be unique",
                        name.shown()
                    ),
                );
            } else {
                n.index.insert(name.value.clone(), i);
            }
            n.list.push(name.clone());
        }
        n
    }

    pub(super) fn find(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub(super) fn get(&self, i: usize) -> Option<&Text> {
        self.list.get(i)
    }

    /// "no provider named `x`; did you mean `y`? defined providers: ..."
    pub(super) fn unknown(&self, name: &Text) -> String {
        let mut m = format!("no {} named {}", self.what, name.shown());
        if self.list.is_empty() {
            m.push_str(&format!("; no [[{}]] are defined, add one", self.section));
            return m;
        }
        // Only literal names may be suggested: an interpolated one is never printed.
        let literal: Vec<&str> = self.list.iter().filter(|t| t.template.is_none()).map(|t| t.value.as_str()).collect();
        if name.template.is_none()
            && let Some(s) = closest(&name.value, &literal)
        {
            m.push_str(&format!(" (did you mean `{s}`?)"));
        }
        // Each valid name once, in file order.
        let defined: Vec<String> = self
            .list
            .iter()
            .enumerate()
            .filter(|(i, t)| self.index.get(&t.value) == Some(i))
            .map(|(_, t)| t.shown())
            .collect();
        let more = if defined.len() > 20 { ", ..." } else { "" };
        let defined = defined.get(..20).unwrap_or(&defined).join(", ");
        m.push_str(&format!("; defined {}: {defined}{more}", self.section));
        m
    }
}

/// The candidate nearest to `word` by edit distance, if near enough to be a typo.
pub(super) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w: Vec<char> = word.chars().collect();
    candidates
        .iter()
        .map(|c| (edit_distance(&w, c), *c))
        .filter(|(d, c)| *d > 0 && *d <= 2 && *d < c.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
