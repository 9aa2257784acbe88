//! A cloud provider's credentials on the request path: found once at start
//! (and looked for again while they are missing), cached and refreshed by
//! `cloud::token::TokenCache`, replaced once when the upstream refuses them,
//! and reported to `/health` and `/status` without ever showing a value.
//!
//! Identity providers (STS, Google's token endpoint, Entra ID) are called
//! through `cloud::transport::HyperTransport`, not the gateway's pooled
//! upstream client: the token cache is shared by every worker (one refresh
//! in flight for the whole process), while an `UpstreamClient` belongs to
//! one worker's runtime and is not `Send`; and an identity call happens
//! about once an hour, so pooling would buy nothing.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::time::{Instant, timeout_at};

use crate::cloud::CredentialError;
use crate::cloud::token::{DEFAULT_SKEW, Refresh, TokenCache};
use crate::cloud::transport::{HttpTransport, HyperTransport};
use crate::error::GatewayError;

/// How a provider's source is found; run at start, and again on a request
/// while it has not been found (a secret mounted after the gateway started).
pub type Resolve<R> = Box<dyn Fn() -> Result<R, CredentialError> + Send + Sync>;

pub struct CloudAuth<R: Refresh> {
    provider: String,
    resolve: Resolve<R>,
    cache: OnceLock<Arc<TokenCache<R>>>,
    describe: fn(&R) -> String,
    /// The last failure to get a credential, until one succeeds: `/health`.
    problem: Mutex<Option<String>>,
}

/// One provider's credentials as `/status` shows them: where they come
/// from, how refreshes went, never a value.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialStatus {
    pub provider: String,
    pub kind: &'static str,
    pub source: String,
    pub refreshes: u64,
    pub failures: u64,
    /// Seconds the current token has left (`null`: none yet, or it never expires).
    pub expires_in_s: Option<u64>,
    pub last_error: Option<String>,
}

impl<R: Refresh + 'static> CloudAuth<R>
where
    R::Value: PartialEq,
{
    pub fn new(provider: &str, resolve: Resolve<R>, describe: fn(&R) -> String) -> CloudAuth<R> {
        let auth = CloudAuth {
            provider: provider.to_owned(),
            resolve,
            cache: OnceLock::new(),
            describe,
            problem: Mutex::new(None),
        };
        if let Err(e) = auth.cache() {
            tracing::error!(provider, error = %e, "no credentials for this provider; its requests will fail");
        }
        auth
    }

    fn cache(&self) -> Result<&Arc<TokenCache<R>>, CredentialError> {
        if let Some(c) = self.cache.get() {
            return Ok(c);
        }
        match (self.resolve)() {
            Ok(source) => Ok(self.cache.get_or_init(|| Arc::new(TokenCache::new(source, DEFAULT_SKEW)))),
            Err(e) => {
                self.set_problem(Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// A valid credential, refreshed first when needed, within `deadline`.
    pub async fn get(&self, deadline: Instant) -> Result<R::Value, GatewayError> {
        let cache = self.cache().map_err(|e| self.error(&e))?;
        let got = match timeout_at(deadline, cache.get()).await {
            Ok(r) => r,
            Err(_) => Err(CredentialError::Transport {
                endpoint: "the identity provider".into(),
                message: "no credential before the request's first-byte timeout".into(),
            }),
        };
        match got {
            Ok(v) => {
                if self.problem.lock().map(|p| p.is_some()).unwrap_or(false) {
                    self.set_problem(None);
                }
                Ok(v)
            }
            Err(e) => {
                self.set_problem(Some(e.to_string()));
                Err(self.error(&e))
            }
        }
    }

    /// Send with a credential; when the upstream refuses it (`refused`
    /// says which answers mean that), forget it and, if a different one can
    /// be had (a rotated key file, a new token), send once more with that.
    pub async fn send_with<T, F, Fut>(
        &self,
        deadline: Instant,
        refused: fn(&GatewayError) -> bool,
        mut send: F,
    ) -> Result<T, GatewayError>
    where
        F: FnMut(R::Value) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let used = self.get(deadline).await?;
        match send(used.clone()).await {
            Err(e) if refused(&e) => {
                if let Some(c) = self.cache.get() {
                    c.invalidate_if(&used);
                }
                let next = self.get(deadline).await?;
                if next == used {
                    return Err(e);
                }
                tracing::info!(provider = %self.provider, "the upstream refused a credential; retrying with a new one");
                send(next).await
            }
            r => r,
        }
    }

    fn set_problem(&self, p: Option<String>) {
        if let Ok(mut slot) = self.problem.lock() {
            *slot = p;
        }
    }

    fn error(&self, e: &CredentialError) -> GatewayError {
        credential_error(&self.provider, e)
    }

    /// The credential source, once found.
    pub fn source(&self) -> Option<&R> {
        self.cache.get().map(|c| c.source())
    }

    /// Why this provider's credentials fail right now, if they do.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }

    pub fn status(&self, kind: &'static str) -> CredentialStatus {
        let cache = self.cache.get();
        let stats = cache.map(|c| c.stats()).unwrap_or_default();
        CredentialStatus {
            provider: self.provider.clone(),
            kind,
            source: cache.map_or_else(|| "not found".to_owned(), |c| (self.describe)(c.source())),
            refreshes: stats.refreshes,
            failures: stats.failures,
            expires_in_s: cache.and_then(|c| c.expires_in()).map(|d| d.as_secs()),
            last_error: self.problem(),
        }
    }
}

/// A credential failure as the client sees it: 503 when nothing is
/// configured where it was looked for (the gateway's setup), 502 when an
/// identity provider refused or could not be reached.
pub fn credential_error(provider: &str, e: &CredentialError) -> GatewayError {
    let unavailable = matches!(root(e), CredentialError::Missing { .. } | CredentialError::File { .. });
    GatewayError::UpstreamCredentials { provider: provider.to_owned(), detail: e.to_string(), unavailable }
}

fn root(e: &CredentialError) -> &CredentialError {
    match e {
        CredentialError::Shared(inner) => root(inner),
        other => other,
    }
}

/// The transport identity-provider calls use; `timeout` bounds one exchange.
pub fn transport(provider: &str, timeout: Duration) -> Result<Arc<dyn HttpTransport>, String> {
    HyperTransport::new(timeout)
        .map(|t| Arc::new(t) as Arc<dyn HttpTransport>)
        .map_err(|e| format!("provider `{provider}`: {e}"))
}

/// An upstream answer that refuses the credential sent: 401, and for AWS
/// (whose signature errors are 403) 403 too.
pub fn unauthorized(e: &GatewayError) -> bool {
    matches!(e, GatewayError::UpstreamStatus { upstream_status: 401, .. })
}

pub fn unauthorized_or_forbidden(e: &GatewayError) -> bool {
    matches!(e, GatewayError::UpstreamStatus { upstream_status: 401 | 403, .. })
}

/// `Authorization: Bearer …`, marked sensitive so no HTTP library logs it.
pub fn bearer(token: &crate::config::Secret) -> Result<(http::HeaderName, http::HeaderValue), GatewayError> {
    let mut v = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| GatewayError::Internal { detail: "an access token holds bytes a header cannot carry".into() })?;
    v.set_sensitive(true);
    Ok((http::header::AUTHORIZATION, v))
}

/// What `sluice check` can know of each cloud provider's credentials
/// without a network call: that a source is configured where the cloud's
/// SDKs would look, that its files exist and parse, and (Vertex) that a
/// project is known. Whether the identity provider accepts them shows at
/// the first request (and in `/health`). Returns (provider index, problem).
pub fn preflight(config: &crate::config::Config) -> Vec<(usize, String)> {
    use crate::config::cloud::CloudConfig;
    let mut problems = Vec::new();
    for (i, p) in config.providers.iter().enumerate() {
        let t = match transport(&p.name, Duration::from_millis(p.first_byte_timeout_ms)) {
            Ok(t) => t,
            Err(e) => {
                problems.push((i, e));
                continue;
            }
        };
        match &p.cloud {
            CloudConfig::Vertex(v) => {
                let settings = crate::cloud::google::GoogleSettings {
                    credentials_file: v.credentials_file.clone(),
                    metadata_server: v.metadata_server,
                    token_uri: v.token_url.clone(),
                    metadata_base: None,
                };
                match crate::cloud::google::resolve(&p.cloud_env, &settings, t) {
                    Err(e) => problems.push((i, e.to_string())),
                    Ok(auth) if v.project.is_none() && auth.project_id().is_none() => problems.push((
                        i,
                        format!("no Vertex AI project: {} names none; set [providers.vertex] project", auth.describe()),
                    )),
                    Ok(_) => {}
                }
            }
            CloudConfig::Bedrock(b) => {
                let settings = crate::cloud::aws::AwsSettings {
                    profile: b.profile.clone(),
                    region: Some(b.region.clone()),
                    sts_endpoint: b.sts_endpoint.clone(),
                };
                match crate::cloud::aws::resolve(&p.cloud_env, &settings, t) {
                    Err(e) => problems.push((i, e.to_string())),
                    // The platform may rotate the token, but it must be there.
                    Ok(crate::cloud::aws::AwsSource::WebIdentity(w)) => {
                        if let Err(e) = std::fs::metadata(&w.token_file) {
                            problems.push((
                                i,
                                format!("{}: the web-identity token file cannot be read: {e}", w.describe()),
                            ));
                        }
                    }
                    Ok(_) => {}
                }
            }
            CloudConfig::Azure(_) | CloudConfig::None => {}
        }
    }
    problems
}
