//! The one door identity-provider calls go through (STS, Google's token
//! endpoint, the GCE metadata server, Entra ID).
//!
//! A trait, so each flow can be tested against a scripted server and the
//! transport swapped. [`HyperTransport`] is the one the providers use, not
//! the gateway's pooled upstream client: a token cache is shared by every
//! worker and refreshes from whichever worker's task needs it, so its
//! futures must be `Send`, and an `UpstreamClient` belongs to one worker's
//! runtime; identity calls are rare (about one an hour), so pooling would
//! buy nothing (docs/decisions/clouds.md, "As wired").

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::CredentialError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends one small request and reads the whole (small) answer.
pub trait HttpTransport: Send + Sync {
    fn send(&self, request: http::Request<Bytes>) -> BoxFuture<'_, Result<http::Response<Bytes>, CredentialError>>;
}

/// Token answers are a few kilobytes; anything past this is not one.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// hyper over rustls (ring, Mozilla's roots), http and https.
pub struct HyperTransport {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HyperTransport {
    /// `timeout` bounds a whole exchange, connect to last byte: a hung
    /// identity provider must not hold the refresh lock for ever.
    pub fn new(timeout: Duration) -> Result<Self, CredentialError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| CredentialError::Invalid { what: "TLS configuration", message: e.to_string() })?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).timer(TokioTimer::new()).build(https);
        Ok(HyperTransport { client, timeout })
    }
}

impl HttpTransport for HyperTransport {
    fn send(&self, request: http::Request<Bytes>) -> BoxFuture<'_, Result<http::Response<Bytes>, CredentialError>> {
        Box::pin(async move {
            let endpoint = endpoint_of(request.uri());
            let failed = |message: String| CredentialError::Transport { endpoint: endpoint.clone(), message };
            let exchange = async {
                let (parts, body) = request.into_parts();
                let response = self
                    .client
                    .request(http::Request::from_parts(parts, Full::new(body)))
                    .await
                    .map_err(|e| failed(format!("request failed: {e}")))?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map_err(|e| failed(format!("reading the answer failed: {e}")))?
                    .to_bytes();
                Ok(http::Response::from_parts(parts, body))
            };
            match tokio::time::timeout(self.timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(failed(format!("no answer within {} ms", self.timeout.as_millis()))),
            }
        })
    }
}

/// Scheme, host and path of a URL, for error messages: never its query,
/// which could carry a secret.
pub fn endpoint_of(uri: &http::Uri) -> String {
    format!("{}://{}{}", uri.scheme_str().unwrap_or("http"), uri.authority().map_or("", |a| a.as_str()), uri.path())
}

/// A form-encoded POST, the shape of every OAuth and STS token request.
pub(crate) fn form_post(url: &str, fields: &[(&str, &str)]) -> Result<http::Request<Bytes>, CredentialError> {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(http::header::ACCEPT, "application/json")
        .body(Bytes::from(body))
        .map_err(|e| CredentialError::Invalid { what: "token endpoint URL", message: format!("{url}: {e}") })
}

/// Turns a non-2xx answer into [`CredentialError::Rejected`] with the
/// provider's own words (OAuth `error_description`, or a bounded excerpt).
pub(crate) fn check_status(
    endpoint: &str,
    response: http::Response<Bytes>,
) -> Result<http::Response<Bytes>, CredentialError> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let body = response.body();
    // Only text that is UTF-8 and nested no deeper than `json::MAX_DEPTH`
    // goes to sonic-rs: it skips the members it does not want recursively,
    // so a deeply nested answer would overflow the stack (here and below).
    let message = crate::translate::readable(body)
        .ok()
        .and_then(|text| sonic_rs::from_str::<OAuthError>(text).ok())
        .map(|e| match e.error_description {
            Some(d) => format!("{}: {}", e.error, d),
            None => e.error,
        })
        .unwrap_or_else(|| super::error::excerpt(body, 300));
    Err(CredentialError::Rejected { endpoint: endpoint.to_owned(), status, message })
}

/// The longest life an OAuth answer's `expires_in` is believed for: a day
/// (Google's and Entra's tokens last an hour or so; a later refresh costs nothing).
const MAX_TOKEN_TTL_SECS: u64 = 24 * 3600;

#[derive(serde::Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The answer of every OAuth 2.0 token endpoint we call (RFC 6749 §5.1),
/// and of the GCE metadata server.
#[derive(serde::Deserialize)]
pub(crate) struct OAuthToken {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Parses an OAuth token answer into a token that expires `expires_in`
/// from now (an hour when the endpoint does not say).
pub(crate) fn oauth_token(
    endpoint: &str,
    response: http::Response<Bytes>,
) -> Result<super::token::Token<crate::config::Secret>, CredentialError> {
    let response = check_status(endpoint, response)?;
    let not_oauth = |e: String| CredentialError::Transport {
        endpoint: endpoint.to_owned(),
        message: format!("the token answer is not OAuth JSON: {e}"),
    };
    let text = crate::translate::readable(response.body()).map_err(not_oauth)?;
    let parsed: OAuthToken = sonic_rs::from_str(text).map_err(|e| not_oauth(e.to_string()))?;
    if parsed.access_token.is_empty() {
        return Err(CredentialError::Transport { endpoint: endpoint.to_owned(), message: "empty access_token".into() });
    }
    // The endpoint's number, capped: `Instant + Duration` panics past the
    // clock's range (`"expires_in": 18446744073709551615` did).
    let ttl = Duration::from_secs(parsed.expires_in.unwrap_or(3600).min(MAX_TOKEN_TTL_SECS));
    Ok(super::token::Token::valid_for(crate::config::Secret::new(parsed.access_token), ttl))
}

#[cfg(test)]
pub(crate) mod testing {
    //! A real HTTP server on a loopback port whose answers a test scripts.

    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    /// What the server saw: method, path and query, headers, body.
    #[derive(Debug, Clone)]
    pub struct Seen {
        pub method: String,
        pub uri: String,
        pub headers: http::HeaderMap,
        pub body: Bytes,
    }

    pub type Handler = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

    pub struct Loopback {
        pub addr: SocketAddr,
        pub seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Loopback {
        pub fn url(&self, path: &str) -> String {
            format!("http://{}{}", self.addr, path)
        }
        pub fn count(&self) -> usize {
            self.seen.lock().unwrap().len()
        }
    }

    /// Serves `handler`'s (status, JSON or XML body) for every request.
    pub async fn serve(handler: Handler) -> Loopback {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let seen = Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                            };
                            let (status, text) = handler(&seen);
                            log.lock().unwrap().push(seen);
                            Ok::<_, Infallible>(
                                http::Response::builder().status(status).body(Full::new(Bytes::from(text))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Loopback { addr, seen }
    }

    /// The decoded fields of a form body.
    pub fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
        form_urlencoded::parse(body).into_owned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::testing::serve;
    use super::*;

    #[tokio::test]
    async fn oauth_errors_carry_the_providers_words_and_no_query() {
        let server =
            serve(Arc::new(|_| (400, r#"{"error":"invalid_grant","error_description":"Bad JWT"}"#.into()))).await;
        let t = HyperTransport::new(Duration::from_secs(5)).unwrap();
        let url = server.url("/token?secret=hunter2");
        let endpoint = endpoint_of(&url.parse().unwrap());
        let resp = t.send(form_post(&url, &[("a", "b")]).unwrap()).await.unwrap();
        let err = oauth_token(&endpoint, resp).unwrap_err().to_string();
        assert!(err.contains("HTTP 400") && err.contains("invalid_grant: Bad JWT"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    fn answer(status: u16, body: String) -> http::Response<Bytes> {
        http::Response::builder().status(status).body(Bytes::from(body)).unwrap()
    }

    #[test]
    fn a_huge_expires_in_is_capped_not_a_panic() {
        // `Instant::now() + 2^64 - 1 s` panicked ("overflow when adding duration to instant").
        let body = r#"{"access_token":"t","expires_in":18446744073709551615}"#.to_string();
        let token = oauth_token("e", answer(200, body)).unwrap();
        let left = token.expires_at.unwrap() - tokio::time::Instant::now();
        assert!(left <= Duration::from_secs(MAX_TOKEN_TTL_SECS) && left > Duration::from_secs(3600), "{left:?}");
    }

    #[test]
    fn deeply_nested_answers_are_errors_not_a_stack_overflow() {
        // sonic-rs skips unknown members recursively: 200k levels overflowed the stack.
        let deep = format!(r#"{{"error":"e","x":{}1{}}}"#, "[".repeat(200_000), "]".repeat(200_000));
        let err = check_status("e", answer(400, deep.clone())).unwrap_err().to_string();
        assert!(err.contains("HTTP 400") && err.contains("[[["), "{err}");
        let deep = deep.replacen(r#""error":"e""#, r#""access_token":"t""#, 1);
        let err = oauth_token("e", answer(200, deep)).unwrap_err().to_string();
        assert!(err.contains("not OAuth JSON") && err.contains("deeper"), "{err}");
        // Shallow ones read as before.
        let err = check_status("e", answer(400, r#"{"error":"e","x":[[1]]}"#.into())).unwrap_err().to_string();
        assert!(err.ends_with("(HTTP 400): e"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_retryable_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let t = HyperTransport::new(Duration::from_secs(5)).unwrap();
        let err = t.send(form_post(&format!("http://{addr}/token"), &[]).unwrap()).await.unwrap_err();
        assert!(err.retryable(), "{err}");
    }
}
