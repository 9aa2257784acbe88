//! How the link reaches Redis: one address (`redis://`, `rediss://` with
//! TLS on rustls, `unix://`), or through Sentinel, which names the current
//! master each time the link (re)connects — so after a failover the next
//! probe finds the new master.
//!
//! TLS: the server's certificate is checked against `ca_file` when one is
//! given (a private CA, as managed Redis offerings and self-hosted TLS
//! use), else against the Mozilla roots (webpki-roots) and the system's.

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates, TlsMode};

use super::redact_url;

/// Where the master is, and how to talk to it.
pub enum Connector {
    Direct(redis::Client),
    /// Behind a lock: asking the sentinels takes `&mut` (it remembers which
    /// sentinel answered last).
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connector::Direct(_) => f.write_str("Connector::Direct"),
            Connector::Sentinel(_) => f.write_str("Connector::Sentinel"),
        }
    }
}

/// `[shared]` Sentinel settings.
#[derive(Clone)]
pub struct SentinelSpec {
    /// The sentinels' URLs (`redis://` or `rediss://`, with the sentinels'
    /// own credentials, the same for all).
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the master under.
    pub master_name: String,
}

impl Connector {
    /// From the `[shared]` settings: `url` is the master's (in Sentinel
    /// mode its scheme, credentials and database; the sentinels give the
    /// address), `ca_pem` a PEM bundle to verify TLS servers with.
    pub fn new(url: &str, ca_pem: Option<&[u8]>, sentinel: Option<&SentinelSpec>) -> Result<Connector, String> {
        let certs = || TlsCertificates { client_tls: None, root_cert: ca_pem.map(<[u8]>::to_vec) };
        let master = url.into_connection_info().map_err(|e| e.to_string())?;
        let tls = matches!(master.addr(), ConnectionAddr::TcpTls { .. });
        let Some(s) = sentinel else {
            let client = match ca_pem {
                Some(_) if tls => redis::Client::build_with_tls(master, certs()),
                _ => redis::Client::open(master),
            };
            return client.map(Connector::Direct).map_err(|e| e.to_string());
        };
        let mut addrs = Vec::new();
        let mut sentinel_auth: Option<(Option<String>, Option<String>)> = None;
        let mut sentinel_tls = None;
        for u in &s.sentinels {
            let info = u.as_str().into_connection_info().map_err(|e| format!("{}: {e}", redact_url(u)))?;
            let r = info.redis_settings();
            let auth = (r.username().map(str::to_string), r.password().map(str::to_string));
            if sentinel_auth.get_or_insert_with(|| auth.clone()) != &auth {
                return Err("every sentinel must have the same credentials".into());
            }
            let is_tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
            if *sentinel_tls.get_or_insert(is_tls) != is_tls {
                return Err("every sentinel must use the same scheme (redis:// or rediss://)".into());
            }
            addrs.push(info.addr().clone());
        }
        let r = master.redis_settings();
        let mut b = SentinelClientBuilder::new(addrs, &s.master_name, SentinelServerType::Master)
            .map_err(|e| e.to_string())?
            .set_client_to_redis_db(r.db());
        if let Some(u) = r.username() {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = r.password() {
            b = b.set_client_to_redis_password(p);
        }
        if tls {
            b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
            if ca_pem.is_some() {
                b = b.set_client_to_redis_certificates(certs());
            }
        }
        if let Some((user, pass)) = sentinel_auth {
            if let Some(u) = user {
                b = b.set_client_to_sentinel_username(u);
            }
            if let Some(p) = pass {
                b = b.set_client_to_sentinel_password(p);
            }
        }
        if sentinel_tls == Some(true) {
            b = b.set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if ca_pem.is_some() {
                b = b.set_client_to_sentinel_certificates(certs());
            }
        }
        b.build().map(|c| Connector::Sentinel(tokio::sync::Mutex::new(c))).map_err(|e| e.to_string())
    }

    /// A client for the master as of now (in Sentinel mode: asks the
    /// sentinels, and checks the answer is a master).
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Connector::Direct(c) => Ok(c.clone()),
            Connector::Sentinel(s) => s.lock().await.async_get_client().await,
        }
    }
}
