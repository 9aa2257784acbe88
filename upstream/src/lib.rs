//! Sluice's upstream HTTP client: what one worker uses to reach a provider.
//!
//! - [`session`]: what every worker shares per provider — the pool's spec,
//!   live counters and concurrency cap ([`SessionTable`]);
//! - [`client`]: one worker's pooled client per provider
//!   ([`WorkerClients`], [`UpstreamClient`]) over two transports behind one
//!   API, the inline HTTP/1.1 client ([`h1`]) for plain `http://` upstreams
//!   and hyper + rustls (HTTP/2 by ALPN) for `https://`;
//! - [`connector`]: the TCP connector under hyper that counts connections
//!   and bounds the connect;
//! - [`tls`]: the TLS configuration every https pool shares;
//! - [`retry_after`]: the one reading of an upstream's `Retry-After`.
//!
//! No actors here: the `UpstreamSessions` actor (crate `sluice-actors`) owns
//! the session table, drives warm-up and keeps the error log; the request
//! path (crate `sluice`) sends through its worker's clients. Why the client
//! looks like this: docs/decisions/http-client.md.

pub mod client;
pub mod connector;
pub mod h1;
pub mod retry_after;
pub mod session;
pub mod streamed;
pub mod tls;

pub use client::{
    InflightPermit, Outgoing, ResponseBody, SendError, SessionClosed, UpstreamClient, UpstreamResponse, WorkerClients,
    error_chain,
};
pub use connector::ConnectTimeout;
pub use h1::{H1Target, Stopper, plain_http_target};
pub use streamed::{BodyAbort, StreamedBody, StreamedRequest};

/// A `Retry-After` header as read: a delay (saturated), or why it is none.
pub type RetryAfter = Result<std::time::Duration, retry_after::Invalid>;
pub use session::{PoolDetail, PoolStats, ProviderSession, SessionSpec, SessionTable, WarmRequest};
pub use tls::TlsError;
