//! The upstream session table: what each provider's pool is, how it is
//! doing, and the recent errors seen on it. No actix here: the actor in
//! `mod.rs` is a thin shell over [`SessionState`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use http::Uri;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How to build and warm one provider's pool. Built by the gateway from its
/// config; the actors crate knows nothing of the config format.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// Provider name (for `/status` and metric labels).
    pub name: String,
    pub connect_timeout: Duration,
    /// Cap on concurrent upstream requests to this provider.
    pub max_connections: usize,
    /// Idle pooled connections are closed after this long.
    pub idle_timeout: Duration,
    /// Connections to open per worker at start, with `warm_request`.
    pub warm_connections: usize,
    /// A cheap request (e.g. `GET {base}/models`) that opens a pooled
    /// connection; its headers may hold the provider's key and are never shown.
    pub warm_request: Option<WarmRequest>,
    /// Set for plain-`http://` upstreams: they use the inline HTTP/1.1
    /// client; `None` means hyper (https, HTTP/2 by ALPN).
    pub plain_http: Option<super::h1::H1Target>,
}

#[derive(Clone)]
pub struct WarmRequest {
    pub uri: Uri,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl std::fmt::Debug for WarmRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers carry the provider's key: never print them.
        f.debug_struct("WarmRequest").field("uri", &self.uri).finish_non_exhaustive()
    }
}

/// Live counters of one provider's pool, shared by every worker's client.
#[derive(Debug)]
pub struct PoolStats {
    open: AtomicI64,
    opened_total: AtomicU64,
    closed_total: AtomicU64,
    connect_errors_total: AtomicU64,
    requests_total: AtomicU64,
    inflight: AtomicI64,
    warm_ok: AtomicU64,
    warm_failed: AtomicU64,
    inflight_gauge: metrics::Gauge,
    connect_errors: metrics::Counter,
}

impl PoolStats {
    pub fn new(provider: &str) -> PoolStats {
        let label = provider.to_string();
        PoolStats {
            open: AtomicI64::new(0),
            opened_total: AtomicU64::new(0),
            closed_total: AtomicU64::new(0),
            connect_errors_total: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            inflight: AtomicI64::new(0),
            warm_ok: AtomicU64::new(0),
            warm_failed: AtomicU64::new(0),
            inflight_gauge: metrics::gauge!("sluice_upstream_inflight", "provider" => label.clone()),
            connect_errors: metrics::counter!("sluice_upstream_connect_errors_total", "provider" => label),
        }
    }

    pub fn connection_opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.opened_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.closed_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connect_failed(&self) {
        self.connect_errors_total.fetch_add(1, Ordering::Relaxed);
        self.connect_errors.increment(1);
    }

    pub fn request_started(&self) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.inflight_gauge.increment(1.0);
    }

    pub fn request_ended(&self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
        self.inflight_gauge.decrement(1.0);
    }

    pub fn warmed(&self, ok: bool) {
        if ok {
            self.warm_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.warm_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn open(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn opened_total(&self) -> u64 {
        self.opened_total.load(Ordering::Relaxed)
    }

    pub fn connect_errors_total(&self) -> u64 {
        self.connect_errors_total.load(Ordering::Relaxed)
    }

    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }

    fn detail(&self) -> sonic_rs::Value {
        let open = self.open().max(0);
        let inflight = self.inflight().max(0);
        sonic_rs::json!({
            "connections_open": open,
            // HTTP/1.1 carries one request per connection; over HTTP/2 many
            // requests share one, so "idle" is a lower bound there.
            "connections_idle": (open - inflight).max(0),
            "connections_opened_total": self.opened_total(),
            "connections_closed_total": self.closed_total.load(Ordering::Relaxed),
            "connect_errors_total": self.connect_errors_total(),
            "requests_total": self.requests_total(),
            "inflight": inflight,
            "warm_ok": self.warm_ok.load(Ordering::Relaxed),
            "warm_failed": self.warm_failed.load(Ordering::Relaxed),
        })
    }
}

/// One provider's shared session: spec, counters and the concurrency cap.
#[derive(Debug)]
pub struct ProviderSession {
    pub spec: SessionSpec,
    pub stats: Arc<PoolStats>,
    pub permits: Arc<Semaphore>,
}

/// Every provider's session, indexed like the gateway's provider list.
/// `None` marks a provider with no network session (the in-process mock).
#[derive(Debug, Default)]
pub struct SessionTable {
    pub providers: Vec<Option<Arc<ProviderSession>>>,
}

impl SessionTable {
    pub fn new(specs: Vec<Option<SessionSpec>>) -> SessionTable {
        let providers = specs
            .into_iter()
            .map(|spec| {
                spec.map(|spec| {
                    Arc::new(ProviderSession {
                        stats: Arc::new(PoolStats::new(&spec.name)),
                        permits: Arc::new(Semaphore::new(spec.max_connections.max(1))),
                        spec,
                    })
                })
            })
            .collect();
        SessionTable { providers }
    }
}

/// What kind of upstream failure a handler saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Protocol,
    Status(u16),
}

impl UpstreamErrorKind {
    pub fn label(self) -> String {
        match self {
            UpstreamErrorKind::Connect => "connect".into(),
            UpstreamErrorKind::Timeout => "timeout".into(),
            UpstreamErrorKind::Protocol => "protocol".into(),
            UpstreamErrorKind::Status(s) => format!("status_{s}"),
        }
    }
}

#[derive(Debug, Clone)]
struct RecordedError {
    kind: UpstreamErrorKind,
    message: String,
    at: Instant,
}

/// How many recent errors `/status` keeps per provider.
pub const RECENT_ERRORS: usize = 8;

/// The actor's state: the table plus what only the actor mutates.
#[derive(Debug)]
pub struct SessionState {
    pub table: Arc<SessionTable>,
    recent_errors: Vec<VecDeque<RecordedError>>,
    errors_total: Vec<u64>,
}

impl SessionState {
    pub fn new(table: Arc<SessionTable>) -> SessionState {
        let n = table.providers.len();
        SessionState { table, recent_errors: vec![VecDeque::new(); n], errors_total: vec![0; n] }
    }

    /// Remember an upstream failure; only the newest [`RECENT_ERRORS`] are kept.
    pub fn record_error(&mut self, provider: usize, kind: UpstreamErrorKind, message: String, now: Instant) {
        let (Some(log), Some(total)) = (self.recent_errors.get_mut(provider), self.errors_total.get_mut(provider))
        else {
            return;
        };
        *total += 1;
        if log.len() == RECENT_ERRORS {
            log.pop_front();
        }
        log.push_back(RecordedError { kind, message, at: now });
    }

    pub fn errors_total(&self, provider: usize) -> u64 {
        self.errors_total.get(provider).copied().unwrap_or(0)
    }

    /// `/status` detail: one entry per networked provider.
    pub fn detail(&self, now: Instant) -> sonic_rs::Value {
        let mut providers = Vec::new();
        for (idx, session) in self.table.providers.iter().enumerate() {
            let Some(session) = session else { continue };
            let recent: Vec<sonic_rs::Value> = self.recent_errors[idx]
                .iter()
                .rev()
                .map(|e| {
                    sonic_rs::json!({
                        "kind": e.kind.label(),
                        "message": e.message.as_str(),
                        "age_s": now.saturating_duration_since(e.at).as_secs_f64(),
                    })
                })
                .collect();
            providers.push(sonic_rs::json!({
                "provider": session.spec.name.as_str(),
                "max_connections": session.spec.max_connections,
                "connect_timeout_ms": session.spec.connect_timeout.as_millis() as u64,
                "pool": session.stats.detail(),
                "errors_total": self.errors_total[idx],
                "recent_errors": recent,
            }));
        }
        sonic_rs::json!({ "providers": providers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_rs::{JsonContainerTrait, JsonValueTrait};

    fn spec(name: &str) -> SessionSpec {
        SessionSpec {
            name: name.into(),
            connect_timeout: Duration::from_millis(100),
            max_connections: 2,
            idle_timeout: Duration::from_secs(90),
            warm_connections: 0,
            warm_request: None,
            plain_http: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_only_recent_errors_newest_first() {
        let table = Arc::new(SessionTable::new(vec![Some(spec("a")), None]));
        let mut st = SessionState::new(table);
        for i in 0..(RECENT_ERRORS + 3) {
            st.record_error(0, UpstreamErrorKind::Status(500), format!("e{i}"), Instant::now());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Out-of-range and session-less providers are ignored, not a panic.
        st.record_error(7, UpstreamErrorKind::Connect, "x".into(), Instant::now());
        assert_eq!(st.errors_total(0), (RECENT_ERRORS + 3) as u64);
        let d = st.detail(Instant::now());
        let s = sonic_rs::to_string(&d).unwrap();
        let last = format!("e{}", RECENT_ERRORS + 2);
        assert!(s.contains(&last));
        assert!(!s.contains("\"e0\""));
        let v: sonic_rs::Value = sonic_rs::from_str(&s).unwrap();
        let recent = v["providers"][0]["recent_errors"].as_array().unwrap();
        assert_eq!(recent.len(), RECENT_ERRORS);
        assert_eq!(recent[0]["message"].as_str(), Some(last.as_str()));
        assert_eq!(recent[0]["age_s"].as_f64(), Some(1.0));
        // Only the networked provider is listed.
        assert_eq!(v["providers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn pool_stats_count_connections_and_inflight() {
        let s = PoolStats::new("p");
        s.connection_opened();
        s.connection_opened();
        s.connection_closed();
        s.request_started();
        assert_eq!(s.open(), 1);
        assert_eq!(s.opened_total(), 2);
        assert_eq!(s.inflight(), 1);
        s.request_ended();
        assert_eq!(s.inflight(), 0);
        assert_eq!(s.requests_total(), 1);
    }
}
