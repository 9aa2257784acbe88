//! The TLS configuration every https pool shares.

use std::sync::Arc;

/// Error building the TLS client configuration.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the TLS client configuration: {0}")]
pub struct TlsError(String);

/// Mozilla's roots (webpki-roots), so the image needs no system CA bundle,
/// and ALPN offering h2 then http/1.1 (set by the connector builder).
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
