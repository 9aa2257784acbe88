//! What every worker's client of one provider shares: the pool's spec, its
//! live counters and the concurrency cap. Built once by the gateway from its
//! config (this crate knows nothing of the config format) and handed to the
//! `UpstreamSessions` actor, which owns it; each worker builds its own
//! transports over it ([`crate::WorkerClients`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use http::Uri;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::h1::H1Target;
use crate::tls::{TlsError, tls_config};

/// How to build and warm one provider's pool.
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
    pub plain_http: Option<H1Target>,
}

impl SessionSpec {
    /// Does a worker open connections at start for this provider?
    pub fn warms(&self) -> bool {
        self.warm_connections > 0 && self.warm_request.is_some()
    }
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
    resends_total: AtomicU64,
    inflight_gauge: metrics::Gauge,
    connect_errors: metrics::Counter,
    resends: metrics::Counter,
}

/// The pool as `/status` shows it (`upstream_sessions` → `providers[].pool`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolDetail {
    pub connections_open: i64,
    /// HTTP/1.1 carries one request per connection; over HTTP/2 many
    /// requests share one, so "idle" is a lower bound there.
    pub connections_idle: i64,
    pub connections_opened_total: u64,
    pub connections_closed_total: u64,
    pub connect_errors_total: u64,
    pub requests_total: u64,
    pub inflight: i64,
    pub warm_ok: u64,
    pub warm_failed: u64,
    /// Requests sent again on another connection because they provably
    /// never reached the upstream (see `h1` and `client`).
    pub resends_total: u64,
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
            resends_total: AtomicU64::new(0),
            inflight_gauge: metrics::gauge!("sluice_upstream_inflight", "provider" => label.clone()),
            connect_errors: metrics::counter!("sluice_upstream_connect_errors_total", "provider" => label.clone()),
            resends: metrics::counter!("sluice_upstream_resends_total", "provider" => label),
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

    /// A request sent again because it never reached the upstream.
    pub fn resent(&self) {
        self.resends_total.fetch_add(1, Ordering::Relaxed);
        self.resends.increment(1);
    }

    pub fn resends_total(&self) -> u64 {
        self.resends_total.load(Ordering::Relaxed)
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

    /// A read of the counters (no change).
    pub fn detail(&self) -> PoolDetail {
        let open = self.open().max(0);
        let inflight = self.inflight().max(0);
        PoolDetail {
            connections_open: open,
            connections_idle: (open - inflight).max(0),
            connections_opened_total: self.opened_total(),
            connections_closed_total: self.closed_total.load(Ordering::Relaxed),
            connect_errors_total: self.connect_errors_total(),
            requests_total: self.requests_total(),
            inflight,
            warm_ok: self.warm_ok.load(Ordering::Relaxed),
            warm_failed: self.warm_failed.load(Ordering::Relaxed),
            resends_total: self.resends_total(),
        }
    }
}

/// One provider's shared session: spec, counters and the concurrency cap.
#[derive(Debug)]
pub struct ProviderSession {
    pub spec: SessionSpec,
    pub stats: Arc<PoolStats>,
    pub permits: Arc<Semaphore>,
}

/// Every provider's session, by provider id, and the TLS configuration
/// every https pool shares. `None` marks a provider with no network session
/// (the in-process mock). Append-only: a reload that adds (or changes) a
/// provider adds a session under a new id, and ids are never reused, so a
/// request of the old config keeps its pool.
#[derive(Debug)]
pub struct SessionTable {
    pub providers: boxcar::Vec<Option<Arc<ProviderSession>>>,
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

impl SessionTable {
    pub fn new(specs: Vec<Option<SessionSpec>>) -> Result<SessionTable, TlsError> {
        let t = SessionTable { providers: boxcar::Vec::new(), tls: Arc::new(tls_config()?) };
        for spec in specs {
            t.add(spec);
        }
        Ok(t)
    }

    /// Add a provider's session; returns its id.
    pub fn add(&self, spec: Option<SessionSpec>) -> usize {
        self.providers.push(spec.map(|spec| {
            Arc::new(ProviderSession {
                stats: Arc::new(PoolStats::new(&spec.name)),
                permits: Arc::new(Semaphore::new(spec.max_connections.max(1))),
                spec,
            })
        }))
    }

    pub fn get(&self, provider: usize) -> Option<&Arc<ProviderSession>> {
        self.providers.get(provider).and_then(Option::as_ref)
    }

    /// Provider ids ever added.
    pub fn len(&self) -> usize {
        self.providers.count()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let d = s.detail();
        assert_eq!((d.connections_open, d.connections_idle, d.connections_closed_total), (1, 1, 1));
    }
}
