//! The pooled HTTP client of one provider, as used by one worker.
//!
//! hyper's pool drives each connection on the runtime that opened it, so a
//! pool shared by every actix worker would bounce each request between
//! threads. Each worker therefore builds its own [`WorkerClients`] from the
//! shared [`SessionTable`] once, at start; the counters, the concurrency cap
//! and the error log stay shared (see docs/decisions/http-client.md).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::OwnedSemaphorePermit;

use super::connector::CountingConnector;
use super::state::{PoolStats, ProviderSession, SessionTable};

pub type RequestBody = Full<Bytes>;
type Connector = HttpsConnector<CountingConnector<HttpConnector>>;

/// Error building the TLS client configuration.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the TLS client configuration: {0}")]
pub struct TlsError(String);

/// One provider's pooled client (cheap to clone: shares the pool).
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<Connector, RequestBody>,
    session: Arc<ProviderSession>,
}

/// Holds one of the provider's `max_connections` slots while a request runs.
#[derive(Debug)]
pub struct InflightPermit {
    _permit: OwnedSemaphorePermit,
    stats: Arc<PoolStats>,
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        self.stats.request_ended();
    }
}

/// The provider's semaphore was closed (the gateway is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the upstream session is closed")]
pub struct SessionClosed;

impl UpstreamClient {
    fn build(session: Arc<ProviderSession>, tls: &rustls::ClientConfig) -> UpstreamClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // Every event of a stream must leave at once: Nagle would hold small
        // writes for the peer's delayed ACK (up to 40 ms).
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(30)));
        // The counting layer sits under TLS, but its timeout covers only TCP;
        // TLS handshakes are bounded by the caller's first-byte timeout.
        let counting = CountingConnector::new(http, session.stats.clone(), session.spec.connect_timeout);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(counting);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(session.spec.idle_timeout)
            .pool_max_idle_per_host(session.spec.max_connections)
            .build(https);
        UpstreamClient { client, session }
    }

    pub fn session(&self) -> &ProviderSession {
        &self.session
    }

    /// Take one of the provider's concurrency slots; waits while all are busy.
    pub async fn acquire(&self) -> Result<InflightPermit, SessionClosed> {
        let permit = self.session.permits.clone().acquire_owned().await.map_err(|_| SessionClosed)?;
        self.session.stats.request_started();
        Ok(InflightPermit { _permit: permit, stats: self.session.stats.clone() })
    }

    /// Send a request on the pool.
    pub fn request(&self, req: http::Request<RequestBody>) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(req)
    }

    /// Open `warm_connections` pooled connections with the spec's warm-up
    /// request, concurrently so they are distinct connections. Returns how
    /// many succeeded and the first error seen.
    pub async fn warm_up(&self) -> (usize, Option<String>) {
        let spec = &self.session.spec;
        let Some(warm) = &spec.warm_request else { return (0, None) };
        let n = spec.warm_connections;
        let timeout = spec.connect_timeout.saturating_mul(2).max(Duration::from_secs(1));
        let attempts = (0..n).map(|_| {
            let mut req = http::Request::new(Full::new(Bytes::new()));
            *req.uri_mut() = warm.uri.clone();
            *req.headers_mut() = warm.headers.clone();
            let fut = self.client.request(req);
            async move {
                match tokio::time::timeout(timeout, fut).await {
                    Ok(Ok(resp)) => {
                        // Read the body to the end so the connection goes back to the pool.
                        drain(resp.into_body()).await;
                        Ok(())
                    }
                    Ok(Err(e)) => Err(error_chain(&e)),
                    Err(_) => Err(format!("warm-up request timed out after {timeout:?}")),
                }
            }
        });
        let results = futures_util::future::join_all(attempts).await;
        let mut ok = 0;
        let mut first_err = None;
        for r in results {
            self.session.stats.warmed(r.is_ok());
            match r {
                Ok(()) => ok += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        (ok, first_err)
    }
}

async fn drain(mut body: Incoming) {
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
}

/// An error and its causes on one line (hyper's top-level message alone,
/// "client error (Connect)", says too little). Holds no request data.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// One worker's clients, indexed like the provider list; `None` where the
/// provider needs no network session.
#[derive(Clone)]
pub struct WorkerClients {
    clients: Arc<[Option<UpstreamClient>]>,
}

impl WorkerClients {
    pub fn build(table: &SessionTable, tls: &rustls::ClientConfig) -> WorkerClients {
        let clients =
            table.providers.iter().map(|s| s.as_ref().map(|s| UpstreamClient::build(s.clone(), tls))).collect();
        WorkerClients { clients }
    }

    pub fn get(&self, provider: usize) -> Option<&UpstreamClient> {
        self.clients.get(provider).and_then(Option::as_ref)
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &UpstreamClient)> {
        self.clients.iter().enumerate().filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
    }
}

/// The TLS configuration every pool shares: Mozilla's roots (webpki-roots),
/// so the image needs no system CA bundle, and ALPN offering h2 then
/// http/1.1 (set by the connector builder).
pub fn tls_config() -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}
