//! The pooled HTTP client of one provider, as used by one worker.
//!
//! hyper's pool drives each connection on the runtime that opened it, so a
//! pool shared by every actix worker would bounce each request between
//! threads. Each worker therefore builds its own [`WorkerClients`] from the
//! shared [`SessionTable`] once, at start; the counters and the concurrency
//! cap stay shared (see docs/decisions/http-client.md).
//!
//! Two transports sit behind one API: plain `http://` upstreams use the
//! inline HTTP/1.1 client in `h1/`; `https://` upstreams use hyper
//! (rustls, HTTP/2 by ALPN).

use std::cell::RefCell;
use std::error::Error as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Either, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::OwnedSemaphorePermit;

use crate::connector::{ConnectTimeout, CountingConnector};
use crate::h1::{H1Body, H1Error, H1Pool, H1Request};
use crate::session::{PoolStats, ProviderSession, SessionTable};

type Connector = HttpsConnector<CountingConnector<HttpConnector>>;

/// hyper's request body: whole, or streamed through a channel
/// ([`UpstreamClient::send_streamed`]).
pub(crate) type HyperBody = Either<Full<Bytes>, crate::streamed::PulledBody>;

/// One request to send upstream.
pub struct Outgoing<'a> {
    pub method: Method,
    pub uri: &'a Uri,
    /// Besides `host` and `content-length`, which the transport sets.
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: Bytes,
}

/// Why a request got no response head.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Failed(String),
}

/// A response head and its body.
pub struct UpstreamResponse {
    pub status: u16,
    /// `content-type` is `text/event-stream`.
    pub event_stream: bool,
    /// The `Retry-After` header, read ([`crate::retry_after`]).
    pub retry_after: Option<crate::RetryAfter>,
    pub body: ResponseBody,
    /// Times the request was sent again, on another connection, because it
    /// provably never reached the upstream (counted in the pool's stats too).
    pub resends: u32,
}

/// A response body from either transport.
pub enum ResponseBody {
    Hyper(hyper::body::Incoming),
    H1(H1Body),
}

impl ResponseBody {
    /// How to tell the upstream to stop sending this body while what it
    /// sent is still read (HTTP/1.1 bodies only; an HTTP/2 stream is simply
    /// dropped).
    pub fn stopper(&self) -> Option<crate::h1::Stopper> {
        match self {
            ResponseBody::H1(b) => Some(b.stopper()),
            ResponseBody::Hyper(_) => None,
        }
    }

    /// The next piece of body data; `None` at its end. An error means the
    /// body was cut off or malformed.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, String>> {
        match self {
            ResponseBody::H1(b) => b.chunk().await.map(|r| r.map_err(|e| e.to_string())),
            ResponseBody::Hyper(b) => loop {
                match b.frame().await? {
                    Ok(f) => {
                        if let Ok(data) = f.into_data() {
                            return Some(Ok(data));
                        }
                    }
                    Err(e) => return Some(Err(error_chain(&e))),
                }
            },
        }
    }
}

pub(crate) enum Transport {
    Hyper(Box<Client<Connector, HyperBody>>),
    H1(H1Pool),
}

/// One provider's pooled client on one worker (cheap to clone: shares the pool).
#[derive(Clone)]
pub struct UpstreamClient {
    pub(crate) transport: Rc<Transport>,
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
        let spec = &session.spec;
        let transport = match &spec.plain_http {
            Some(target) => Transport::H1(H1Pool::new(
                target.clone(),
                session.stats.clone(),
                spec.max_connections,
                spec.idle_timeout,
                spec.connect_timeout,
            )),
            None => Transport::Hyper(Box::new(hyper_client(&session, tls))),
        };
        UpstreamClient { transport: Rc::new(transport), session }
    }

    pub fn session(&self) -> &ProviderSession {
        &self.session
    }

    /// Take one of the provider's concurrency slots; waits while all are busy.
    pub async fn acquire(&self) -> Result<InflightPermit, SessionClosed> {
        let permits = self.session.permits.clone();
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => permits.acquire_owned().await.map_err(|_| SessionClosed)?,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(SessionClosed),
        };
        self.session.stats.request_started();
        Ok(InflightPermit { _permit: permit, stats: self.session.stats.clone() })
    }

    /// Send a request and wait for the response head.
    pub async fn send(&self, req: Outgoing<'_>) -> Result<UpstreamResponse, SendError> {
        match &*self.transport {
            Transport::H1(pool) => {
                let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
                let h1 = H1Request { method: req.method.as_str(), path, headers: req.headers, body: &req.body };
                let r = pool.send(&h1).await.map_err(|e| match e {
                    H1Error::ConnectTimeout(d) => SendError::ConnectTimeout(d),
                    H1Error::Connect(e) => SendError::Connect(e.to_string()),
                    other => SendError::Failed(other.to_string()),
                })?;
                Ok(UpstreamResponse {
                    status: r.status,
                    event_stream: r.event_stream,
                    retry_after: r.retry_after,
                    body: ResponseBody::H1(r.body),
                    resends: r.resends,
                })
            }
            Transport::Hyper(client) => {
                // hyper's own retry of "canceled" requests is off (see
                // `hyper_client`): the same rule is applied here, counted.
                let mut resends = 0;
                let resp = loop {
                    let mut r = http::Request::new(Either::Left(Full::new(req.body.clone())));
                    *r.method_mut() = req.method.clone();
                    *r.uri_mut() = req.uri.clone();
                    let h = r.headers_mut();
                    for (n, v) in req.headers {
                        h.append(n.clone(), v.clone());
                    }
                    match client.request(r).await {
                        Ok(resp) => break resp,
                        Err(e) if never_sent(&e) && resends < MAX_RESENDS => {
                            resends += 1;
                            self.session.stats.resent();
                        }
                        Err(e) => return Err(classify(&e)),
                    }
                };
                Ok(hyper_response(resp, resends))
            }
        }
    }

    /// Open `warm_connections` pooled connections with the spec's warm-up
    /// request, concurrently so they are distinct connections. Returns how
    /// many succeeded and the first error seen.
    pub async fn warm_up(&self) -> (usize, Option<String>) {
        let spec = &self.session.spec;
        let Some(warm) = &spec.warm_request else { return (0, None) };
        let timeout = spec.connect_timeout.saturating_mul(2).max(Duration::from_secs(1));
        let attempts = (0..spec.warm_connections).map(|_| async move {
            let req = Outgoing { method: Method::GET, uri: &warm.uri, headers: &warm.headers, body: Bytes::new() };
            match tokio::time::timeout(timeout, self.send(req)).await {
                Ok(Ok(mut resp)) => {
                    // Read the body to the end so the connection goes back to the pool.
                    while let Some(Ok(_)) = resp.body.chunk().await {}
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("warm-up request timed out after {timeout:?}")),
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

/// A hyper response as the transport-neutral [`UpstreamResponse`].
pub(crate) fn hyper_response(resp: http::Response<hyper::body::Incoming>, resends: u32) -> UpstreamResponse {
    let event_stream = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .map(|v| crate::retry_after::parse(v.as_bytes(), std::time::SystemTime::now()));
    UpstreamResponse {
        status: resp.status().as_u16(),
        event_stream,
        retry_after,
        body: ResponseBody::Hyper(resp.into_body()),
        resends,
    }
}

fn hyper_client(session: &ProviderSession, tls: &rustls::ClientConfig) -> Client<Connector, HyperBody> {
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
    Client::builder(TokioExecutor::new())
        // Re-sent by `UpstreamClient::send` instead, so each one is counted.
        .retry_canceled_requests(false)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(session.spec.idle_timeout)
        .pool_max_idle_per_host(session.spec.max_connections)
        .build(https)
}

/// Re-sends of one request, at most.
const MAX_RESENDS: u32 = 4;

/// Did hyper give the request up before writing any of it (its connection
/// closed while the request waited for it)? hyper calls that "canceled",
/// and returns it unsent: the one case a POST may be sent again.
fn never_sent(e: &hyper_util::client::legacy::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            return h.is_canceled();
        }
        cur = c.source();
    }
    false
}

/// Sort a hyper client error by its typed causes, never by message text.
pub(crate) fn classify(e: &hyper_util::client::legacy::Error) -> SendError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<ConnectTimeout>() {
            return SendError::ConnectTimeout(t.0);
        }
        cur = c.source();
    }
    if e.is_connect() { SendError::Connect(error_chain(e)) } else { SendError::Failed(error_chain(e)) }
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

/// One worker's clients, by provider id; `None` where the provider needs no
/// network session. A provider's pool is built on this worker the first
/// time it is asked for (or warmed), so providers added by a reload get
/// pools without the worker being rebuilt; pools of unchanged providers
/// (same id) are kept across reloads, connections and all.
#[derive(Clone)]
pub struct WorkerClients {
    table: Arc<SessionTable>,
    clients: Rc<RefCell<Vec<Option<Option<UpstreamClient>>>>>,
}

impl WorkerClients {
    pub fn build(table: &Arc<SessionTable>) -> WorkerClients {
        let w = WorkerClients { table: table.clone(), clients: Rc::default() };
        for i in 0..table.len() {
            let _ = w.get(i);
        }
        w
    }

    /// Provider `provider`'s client on this worker (a cheap clone: the pool
    /// is shared), built on first use.
    pub fn get(&self, provider: usize) -> Option<UpstreamClient> {
        if let Some(Some(c)) = self.clients.borrow().get(provider) {
            return c.clone();
        }
        let session = self.table.providers.get(provider)?;
        let built = session.as_ref().map(|s| UpstreamClient::build(s.clone(), &self.table.tls));
        let mut clients = self.clients.borrow_mut();
        if clients.len() <= provider {
            clients.resize(provider + 1, None);
        }
        clients[provider] = Some(built.clone());
        built
    }

    /// Drop this worker's pool of a provider no snapshot uses any more
    /// (requests still using it hold their own clone until they end).
    pub fn retire(&self, provider: usize) {
        if let Some(slot) = self.clients.borrow_mut().get_mut(provider) {
            *slot = None;
        }
    }

    /// The clients built so far.
    pub fn iter(&self) -> Vec<(usize, UpstreamClient)> {
        self.clients.borrow().iter().enumerate().filter_map(|(i, c)| c.clone().flatten().map(|c| (i, c))).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::h1::plain_http_target;
    use crate::session::{SessionSpec, SessionTable, WarmRequest};

    /// A tiny server: answers every request on a connection with `reply`.
    async fn server(reply: &'static [u8]) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {
                                if s.write_all(reply).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        port
    }

    fn clients(port: u16, inline_h1: bool) -> (WorkerClients, Arc<SessionTable>, Uri) {
        let uri: Uri = format!("http://127.0.0.1:{port}/v1/chat/completions").parse().unwrap();
        let spec = SessionSpec {
            name: "p".into(),
            connect_timeout: Duration::from_secs(1),
            max_connections: 4,
            idle_timeout: Duration::from_secs(90),
            warm_connections: 2,
            warm_request: Some(WarmRequest {
                uri: format!("http://127.0.0.1:{port}/v1/models").parse().unwrap(),
                headers: vec![],
            }),
            plain_http: if inline_h1 { plain_http_target(&uri) } else { None },
        };
        let table = Arc::new(SessionTable::new(vec![Some(spec)]).unwrap());
        (WorkerClients::build(&table), table, uri)
    }

    #[tokio::test]
    async fn both_transports_send_warm_and_count() {
        const REPLY: &[u8] =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nretry-after: 3\r\ncontent-length: 9\r\n\r\ndata: x\n\n";
        for inline_h1 in [true, false] {
            let port = server(REPLY).await;
            let (clients, table, uri) = clients(port, inline_h1);
            let c = clients.get(0).unwrap();
            assert!(clients.get(1).is_none());
            let (ok, err) = c.warm_up().await;
            assert_eq!((ok, err), (2, None), "inline_h1={inline_h1}");
            let stats = &table.providers[0].as_ref().unwrap().stats;
            assert_eq!(stats.opened_total(), 2);
            for _ in 0..3 {
                let _permit = c.acquire().await.unwrap();
                let req = Outgoing { method: Method::POST, uri: &uri, headers: &[], body: Bytes::from_static(b"{}") };
                let mut r = c.send(req).await.unwrap();
                assert_eq!(r.status, 200);
                assert!(r.event_stream);
                assert_eq!(r.retry_after, Some(Ok(Duration::from_secs(3))));
                let mut body = Vec::new();
                while let Some(chunk) = r.body.chunk().await {
                    body.extend_from_slice(&chunk.unwrap());
                }
                assert_eq!(body, b"data: x\n\n");
            }
            // Warm connections were reused: no new ones.
            assert_eq!(stats.opened_total(), 2, "inline_h1={inline_h1}");
            assert_eq!(stats.requests_total(), 3);
            assert_eq!(stats.inflight(), 0);
        }
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors_on_both() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        for inline_h1 in [true, false] {
            let (clients, table, uri) = clients(port, inline_h1);
            let req = Outgoing { method: Method::POST, uri: &uri, headers: &[], body: Bytes::new() };
            let e = clients.get(0).unwrap().send(req).await.err().unwrap();
            assert!(matches!(e, SendError::Connect(_)), "inline_h1={inline_h1}: {e}");
            assert_eq!(table.providers[0].as_ref().unwrap().stats.connect_errors_total(), 1);
        }
    }
}
