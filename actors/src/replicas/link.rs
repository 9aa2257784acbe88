//! The connection to Redis and whether it can be used right now.
//!
//! Every call goes through [`Link::call`], bounded by the `[shared]
//! timeout_ms`. A connection error or a timeout marks the link *down*: from
//! then on callers do not even try (they answer from in-process state at
//! once, with no wait) until the prober (`Replicas`, every
//! `probe_interval_ms`) has reconnected and seen a `PING` answered within the
//! timeout. One slow answer is enough to go down: a Redis that answers in
//! 200 ms would otherwise cost every request the whole timeout.
//!
//! One multiplexed connection serves the whole process: commands from every
//! worker are pipelined on it by its driver task (on the `Replicas`
//! thread), which is how redis-rs is meant to be used and keeps Redis's
//! connection count at one per replica (plus one for pub/sub).

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::time::Instant;

use super::connect::Connector;

/// Why a call did not reach Redis (or its answer did not come back in time).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("redis is down")]
    Down,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Redis(String),
}

/// What `/status` and `/health` show about the link.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub calls_total: AtomicU64,
    pub errors_total: AtomicU64,
    pub timeouts_total: AtomicU64,
    /// Decisions taken from in-process state because Redis could not be used.
    pub fallbacks_total: AtomicU64,
    pub downs_total: AtomicU64,
    pub ups_total: AtomicU64,
}

struct Change {
    at: Instant,
    /// The last error, with no secret in it (redis-rs errors name neither
    /// the URL nor the password).
    last_error: Option<String>,
}

pub struct Link {
    connector: Connector,
    conn: ArcSwapOption<MultiplexedConnection>,
    timeout: Duration,
    up: AtomicBool,
    pub stats: LinkStats,
    change: Mutex<Change>,
    up_gauge: metrics::Gauge,
    fallbacks: metrics::Counter,
    errors: metrics::Counter,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("up", &self.is_up()).finish_non_exhaustive()
    }
}

impl Link {
    pub fn new(connector: Connector, timeout: Duration) -> Arc<Link> {
        let up_gauge = metrics::gauge!("sluice_redis_up");
        up_gauge.set(0.0);
        Arc::new(Link {
            connector,
            conn: ArcSwapOption::empty(),
            timeout,
            up: AtomicBool::new(false),
            stats: LinkStats::default(),
            change: Mutex::new(Change { at: Instant::now(), last_error: Some("not connected yet".into()) }),
            up_gauge,
            fallbacks: metrics::counter!("sluice_redis_fallbacks_total"),
            errors: metrics::counter!("sluice_redis_errors_total"),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Can Redis be used now? (One atomic load.)
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Count a decision taken from in-process state instead of Redis.
    pub fn fell_back(&self) {
        self.stats.fallbacks_total.fetch_add(1, Ordering::Relaxed);
        self.fallbacks.increment(1);
    }

    /// Run one Redis operation, bounded by the timeout. Fails at once,
    /// without trying, while the link is down.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, LinkError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(self.timeout, f).await
    }

    /// [`Link::call`] with another bound (background writes, where no
    /// request waits, may take longer than a request may).
    pub async fn call_within<T, F, Fut>(&self, limit: Duration, f: F) -> Result<T, LinkError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return Err(LinkError::Down);
        }
        let Some(conn) = self.conn.load_full() else { return Err(LinkError::Down) };
        self.stats.calls_total.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(limit, f((*conn).clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.stats.errors_total.fetch_add(1, Ordering::Relaxed);
                self.errors.increment(1);
                let msg = e.to_string();
                if is_link_failure(&e) {
                    self.mark_down(&msg);
                    // A dropped connection is replaced by the prober.
                    self.conn.store(None);
                } else {
                    tracing::warn!(error = %msg, "redis refused a command");
                }
                Err(LinkError::Redis(msg))
            }
            Err(_) => {
                self.stats.timeouts_total.fetch_add(1, Ordering::Relaxed);
                self.errors.increment(1);
                self.mark_down(&format!("no answer within {} ms", limit.as_millis()));
                Err(LinkError::Timeout(limit))
            }
        }
    }

    fn mark_down(&self, why: &str) {
        let was_up = self.up.swap(false, Ordering::AcqRel);
        if let Ok(mut c) = self.change.lock() {
            if was_up {
                c.at = Instant::now();
            }
            c.last_error = Some(why.to_string());
        }
        if was_up {
            self.stats.downs_total.fetch_add(1, Ordering::Relaxed);
            self.up_gauge.set(0.0);
            tracing::warn!(error = %why, "redis is unavailable: running on in-process state until it is back");
        }
    }

    fn mark_up(&self) {
        if let Ok(mut c) = self.change.lock() {
            c.at = Instant::now();
            c.last_error = None;
        }
        if !self.up.swap(true, Ordering::AcqRel) {
            self.stats.ups_total.fetch_add(1, Ordering::Relaxed);
            self.up_gauge.set(1.0);
            tracing::info!("redis is reachable: shared state is in use");
        }
    }

    /// One probe: (re)connect when needed and `PING` within the timeout.
    /// True when the link went from down to up (the caller then resyncs).
    pub async fn probe(&self) -> bool {
        let was_up = self.is_up();
        let conn = match self.conn.load_full() {
            Some(c) => Some((*c).clone()),
            None => {
                let cfg = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(200))))
                    .set_response_timeout(None);
                // Through Sentinel, this asks which server is the master now.
                let connect = async {
                    let client = self.connector.client().await?;
                    client.get_multiplexed_async_connection_with_config(&cfg).await
                };
                match tokio::time::timeout(self.timeout.max(Duration::from_millis(200)), connect).await {
                    Ok(Ok(c)) => {
                        self.conn.store(Some(Arc::new(c.clone())));
                        Some(c)
                    }
                    Ok(Err(e)) => {
                        self.mark_down(&e.to_string());
                        None
                    }
                    Err(_) => {
                        self.mark_down("connect timed out");
                        None
                    }
                }
            }
        };
        let Some(mut conn) = conn else { return false };
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(self.timeout, ping).await {
            Ok(Ok(_)) => {
                self.mark_up();
                !was_up
            }
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                if is_link_failure(&e) {
                    self.conn.store(None);
                }
                false
            }
            Err(_) => {
                self.mark_down(&format!("PING not answered within {} ms", self.timeout.as_millis()));
                false
            }
        }
    }

    /// A pub/sub connection (its own socket: a subscribed connection can
    /// send nothing else).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, LinkError> {
        let connect = async { self.connector.client().await?.get_async_pubsub().await };
        match tokio::time::timeout(self.timeout.max(Duration::from_millis(200)), connect).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(LinkError::Redis(e.to_string())),
            Err(_) => Err(LinkError::Timeout(self.timeout)),
        }
    }

    /// Why the link is down (no secret in it).
    pub fn last_error(&self) -> Option<String> {
        self.change.lock().ok().and_then(|c| c.last_error.clone())
    }

    /// `/status` detail of the link (a read).
    pub fn detail(&self) -> LinkDetail {
        let (since_s, last_error) = match self.change.lock() {
            Ok(c) => (c.at.elapsed().as_secs_f64(), c.last_error.clone()),
            Err(_) => (0.0, None),
        };
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LinkDetail {
            state: if self.is_up() { "up" } else { "down" },
            since_s,
            last_error,
            timeout_ms: self.timeout.as_millis() as u64,
            calls_total: get(&s.calls_total),
            errors_total: get(&s.errors_total),
            timeouts_total: get(&s.timeouts_total),
            fallbacks_total: get(&s.fallbacks_total),
            downs_total: get(&s.downs_total),
            ups_total: get(&s.ups_total),
        }
    }
}

/// The link as `/status` shows it (`shared_state` → `link`).
#[derive(Debug, Serialize)]
pub struct LinkDetail {
    /// `up` or `down`.
    pub state: &'static str,
    /// Since the last change of state.
    pub since_s: f64,
    /// Why it is down (no secret in it).
    pub last_error: Option<String>,
    pub timeout_ms: u64,
    pub calls_total: u64,
    pub errors_total: u64,
    pub timeouts_total: u64,
    pub fallbacks_total: u64,
    pub downs_total: u64,
    pub ups_total: u64,
}

/// Errors that say the connection (not the command) is broken — or that
/// the server it reaches is no longer the master (`READONLY`: a failover
/// demoted it), so the next probe must find the master again.
fn is_link_failure(e: &redis::RedisError) -> bool {
    e.code() == Some("READONLY")
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// Is `url` one redis-rs can connect with? (Parsed only; no connection.)
/// The error never repeats the URL.
pub fn check_url(url: &str) -> Result<(), String> {
    // Parsed as a connection address: `rediss://` needs the TLS feature,
    // which is built in.
    redis::Client::open(url).map(drop).map_err(|_| "unsupported scheme or malformed URL".to_string())
}

/// The host a Redis URL names (`None` for a Unix socket or a bad URL).
pub fn url_host(url: &str) -> Option<String> {
    use redis::IntoConnectionInfo;
    match url.into_connection_info().ok()?.addr() {
        redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. } => Some(host.clone()),
        _ => None,
    }
}

/// `redis://user:secret@host:6379/0` → `redis://***@host:6379/0`, and
/// `redis+unix:///run/redis.sock?db=1&pass=secret` →
/// `redis+unix:///run/redis.sock?db=1&pass=***`: the URL as logs, errors
/// and `/status` may show it. redis-rs reads a password from the userinfo
/// of a TCP URL and from the `pass` (or `password`) query parameter of a
/// unix socket URL; both are masked, whatever the scheme.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.find("://") {
        None if head.contains('@') => "***".to_string(),
        None => head.to_string(),
        Some(scheme_end) => {
            let rest = &head[scheme_end + 3..];
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{}***{}", &head[..scheme_end + 3], &rest[at..]),
                None => head.to_string(),
            }
        }
    };
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                None if is_secret_param(pair) => pair.to_string(),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// A query parameter that may carry a password: `pass` and `password` as
/// redis-rs reads them, in any case, and anything else that looks like one
/// (masking too much is harmless).
fn is_secret_param(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("pass") || k.contains("%70as") || k.contains("secret") || k.contains("token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact_url("redis://:hunter2@redis:6379/0"), "redis://***@redis:6379/0");
        assert_eq!(redact_url("rediss://user:p@ss@host/1"), "rediss://***@host/1");
        assert_eq!(redact_url("user:pw@host"), "***");
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1&pass=hunter2"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(redact_url("unix:///tmp/r.sock?password=hunter2&db=3"), "unix:///tmp/r.sock?password=***&db=3");
        assert_eq!(redact_url("unix:///tmp/r.sock?PASS=hunter2"), "unix:///tmp/r.sock?PASS=***");
        assert_eq!(redact_url("redis://:pw@host/0?password=x"), "redis://***@host/0?password=***");
        assert_eq!(redact_url("/tmp/r.sock?pass=hunter2"), "/tmp/r.sock?pass=***");
    }

    #[tokio::test(start_paused = true)]
    async fn a_link_that_never_connected_is_down_and_fails_at_once() {
        let link = Link::new(Connector::new("redis://127.0.0.1:1", None, None).unwrap(), Duration::from_millis(50));
        assert!(!link.is_up());
        let t0 = Instant::now();
        let r: Result<String, _> =
            link.call(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await;
        assert_eq!(r, Err(LinkError::Down));
        assert_eq!(t0.elapsed(), Duration::ZERO, "no wait while down");
    }
}
