//! Google Cloud access tokens for Vertex AI.
//!
//! Sources, in the order of Google's application-default credentials (ADC):
//! an explicit key file from the provider's config, then
//! `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's well-known file
//! (`$CLOUDSDK_CONFIG` or `~/.config/gcloud/application_default_credentials.json`),
//! then the GCE metadata server — only when configured (or
//! `GCE_METADATA_HOST` is set), because probing it off Google Cloud costs a
//! DNS failure or a connect timeout on every start.
//!
//! A file is either a `service_account` key (an RS256 JWT assertion is
//! exchanged at its `token_uri`, RFC 7523) or an `authorized_user` (a
//! refresh token exchanged at Google's OAuth endpoint). Every source sits
//! behind one [`TokenCache`]: one exchange per expiry, however many requests.

pub mod jwt;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::{Env, Secret};

use super::CredentialError;
use super::token::{Refresh, Token, TokenCache};
use super::transport::{HttpTransport, endpoint_of, form_post, oauth_token};
use jwt::RsaSigner;

/// The scope Vertex AI needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's OAuth token endpoint (refresh tokens; a key file names its own).
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's address on Google Cloud.
pub const METADATA_BASE: &str = "http://metadata.google.internal";
/// The JWT-bearer grant of RFC 7523.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long an assertion is valid: Google accepts at most one hour.
const ASSERTION_TTL_S: u64 = 3600;

/// Explicit settings from the provider's config; everything else is ADC.
#[derive(Debug, Clone, Default)]
pub struct GoogleSettings {
    /// A key file (service account or authorized user) that wins over ADC.
    pub credentials_file: Option<PathBuf>,
    /// Ask the metadata server when no file is found.
    pub metadata_server: bool,
    /// Overrides for tests and private endpoints.
    pub token_uri: Option<String>,
    pub metadata_base: Option<String>,
}

/// A service account: signs its own assertions.
pub struct ServiceAccount {
    pub client_email: String,
    pub project_id: Option<String>,
    pub token_uri: String,
    signer: RsaSigner,
}

/// A user's refresh token (`gcloud auth application-default login`).
pub struct AuthorizedUser {
    pub client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    pub token_uri: String,
    pub quota_project_id: Option<String>,
}

pub enum GoogleSource {
    // Boxed: the RSA key makes it three times the size of the others.
    ServiceAccount(Box<ServiceAccount>),
    AuthorizedUser(AuthorizedUser),
    /// The metadata server's base URL.
    Metadata(String),
}

/// A source plus the transport its exchanges use.
pub struct GoogleAuth {
    pub source: GoogleSource,
    /// Where the source was found (a path, "metadata server"), for `/status`.
    pub origin: String,
    transport: Arc<dyn HttpTransport>,
}

pub type GoogleTokenProvider = TokenCache<GoogleAuth>;

impl GoogleAuth {
    pub fn new(source: GoogleSource, origin: String, transport: Arc<dyn HttpTransport>) -> Self {
        GoogleAuth { source, origin, transport }
    }

    /// The project the credentials belong to, when they say (service-account
    /// keys do): a default for the Vertex provider's `project`.
    pub fn project_id(&self) -> Option<&str> {
        match &self.source {
            GoogleSource::ServiceAccount(sa) => sa.project_id.as_deref(),
            GoogleSource::AuthorizedUser(u) => u.quota_project_id.as_deref(),
            GoogleSource::Metadata(_) => None,
        }
    }

    pub fn describe(&self) -> String {
        match &self.source {
            GoogleSource::ServiceAccount(sa) => format!("service account {} from {}", sa.client_email, self.origin),
            GoogleSource::AuthorizedUser(_) => format!("authorized user from {}", self.origin),
            GoogleSource::Metadata(base) => format!("metadata server {base}"),
        }
    }
}

impl Refresh for GoogleAuth {
    type Value = Secret;
    async fn fetch(&self) -> Result<Token<Secret>, CredentialError> {
        let request = match &self.source {
            GoogleSource::ServiceAccount(sa) => {
                let assertion = sa.assertion(SystemTime::now())?;
                form_post(&sa.token_uri, &[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)])?
            }
            GoogleSource::AuthorizedUser(u) => form_post(
                &u.token_uri,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", &u.client_id),
                    ("client_secret", u.client_secret.expose()),
                    ("refresh_token", u.refresh_token.expose()),
                ],
            )?,
            GoogleSource::Metadata(base) => {
                let url = format!("{base}/computeMetadata/v1/instance/service-accounts/default/token");
                let request = http::Request::get(&url)
                    .header("metadata-flavor", "Google")
                    .body(Bytes::new())
                    .map_err(|e| CredentialError::Invalid { what: "metadata server URL", message: e.to_string() })?;
                return oauth_token(&endpoint_of(request.uri()), self.transport.send(request).await?);
            }
        };
        let endpoint = endpoint_of(request.uri());
        oauth_token(&endpoint, self.transport.send(request).await?)
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl ServiceAccount {
    /// The signed JWT assertion of RFC 7523 §2.1 that `token_uri` exchanges.
    pub fn assertion(&self, now: SystemTime) -> Result<String, CredentialError> {
        let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: &self.client_email,
            scope: CLOUD_PLATFORM_SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + ASSERTION_TTL_S,
        };
        let json = sonic_rs::to_vec(&claims)
            .map_err(|e| CredentialError::Invalid { what: "JWT claims", message: e.to_string() })?;
        self.signer.sign(&json)
    }
}

#[derive(serde::Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    project_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    quota_project_id: Option<String>,
}

/// Parses a credentials JSON file's content. `origin` names it in errors.
pub fn from_json(json: &[u8], origin: &str, settings: &GoogleSettings) -> Result<GoogleSource, CredentialError> {
    let file_err = |message: String| CredentialError::File { path: origin.to_owned(), message };
    let key: KeyFile =
        sonic_rs::from_slice(json).map_err(|e| file_err(format!("not a Google credentials JSON file: {e}")))?;
    let need =
        |v: Option<String>, field: &str| v.filter(|s| !s.is_empty()).ok_or_else(|| file_err(format!("no \"{field}\"")));
    match key.kind.as_deref() {
        Some("service_account") => {
            let private_key = need(key.private_key, "private_key")?;
            Ok(GoogleSource::ServiceAccount(Box::new(ServiceAccount {
                client_email: need(key.client_email, "client_email")?,
                project_id: key.project_id,
                token_uri: settings.token_uri.clone().or(key.token_uri).unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned()),
                signer: RsaSigner::from_pem(&private_key, key.private_key_id).map_err(|e| file_err(e.to_string()))?,
            })))
        }
        Some("authorized_user") => Ok(GoogleSource::AuthorizedUser(AuthorizedUser {
            client_id: need(key.client_id, "client_id")?,
            client_secret: Secret::new(need(key.client_secret, "client_secret")?),
            refresh_token: Secret::new(need(key.refresh_token, "refresh_token")?),
            token_uri: settings.token_uri.clone().unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned()),
            quota_project_id: key.quota_project_id,
        })),
        Some(other) => Err(file_err(format!(
            "credentials of type {other:?} are not supported; use a service_account key or authorized_user credentials"
        ))),
        None => Err(file_err("no \"type\" (expected service_account or authorized_user)".into())),
    }
}

/// Application-default credentials, in the order of the module doc.
pub fn resolve(
    env: &dyn Env,
    settings: &GoogleSettings,
    transport: Arc<dyn HttpTransport>,
) -> Result<GoogleAuth, CredentialError> {
    let from_file = |path: &Path| -> Result<GoogleAuth, CredentialError> {
        let origin = path.display().to_string();
        let json =
            std::fs::read(path).map_err(|e| CredentialError::File { path: origin.clone(), message: e.to_string() })?;
        Ok(GoogleAuth::new(from_json(&json, &origin, settings)?, origin, transport.clone()))
    };
    if let Some(path) = &settings.credentials_file {
        return from_file(path);
    }
    // Set means meant: a missing file named here is an error, not a fall-through.
    if let Some(path) = env.get("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
        return from_file(Path::new(&path));
    }
    let well_known = match env.get("CLOUDSDK_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("application_default_credentials.json"),
        None => {
            Path::new(&env.get("HOME").unwrap_or_default()).join(".config/gcloud/application_default_credentials.json")
        }
    };
    if well_known.is_file() {
        return from_file(&well_known);
    }
    let metadata_host = env.get("GCE_METADATA_HOST").map(|h| format!("http://{h}"));
    if settings.metadata_server || metadata_host.is_some() {
        let base = settings.metadata_base.clone().or(metadata_host).unwrap_or_else(|| METADATA_BASE.to_owned());
        return Ok(GoogleAuth::new(GoogleSource::Metadata(base), "metadata server".into(), transport));
    }
    Err(CredentialError::Missing {
        cloud: "Google",
        tried: format!(
            "no credentials_file configured, GOOGLE_APPLICATION_CREDENTIALS is not set, {} does not exist, \
             and the metadata server is not enabled",
            well_known.display()
        ),
    })
}

#[cfg(test)]
mod tests;
