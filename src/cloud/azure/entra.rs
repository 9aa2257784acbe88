//! Microsoft Entra ID client-credentials flow (OAuth 2.0 RFC 6749 §4.4):
//! `POST {authority}/{tenant}/oauth2/v2.0/token` with the app's id and
//! secret and the scope `https://cognitiveservices.azure.com/.default`.
//! Tokens live about an hour; the [`TokenCache`](crate::cloud::token::TokenCache)
//! refreshes them before expiry, one request at a time.

use std::sync::Arc;

use crate::cloud::CredentialError;
use crate::cloud::token::{Refresh, Token};
use crate::cloud::transport::{HttpTransport, endpoint_of, form_post, oauth_token};
use crate::config::Secret;

/// Entra ID's public-cloud authority.
pub const AUTHORITY: &str = "https://login.microsoftonline.com";

pub struct EntraClientCredentials {
    pub tenant_id: String,
    pub client_id: String,
    client_secret: Secret,
    pub scope: String,
    /// `{authority}/{tenant}/oauth2/v2.0/token`, built once.
    token_url: String,
    transport: Arc<dyn HttpTransport>,
}

impl EntraClientCredentials {
    /// `authority`: [`AUTHORITY`] unless a sovereign cloud or the mock.
    pub fn new(
        tenant_id: &str,
        client_id: &str,
        client_secret: Secret,
        authority: Option<&str>,
        transport: Arc<dyn HttpTransport>,
    ) -> Result<Self, CredentialError> {
        // A tenant is a GUID or a verified domain: no character that could
        // change the path.
        if tenant_id.is_empty() || !tenant_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            return Err(CredentialError::Invalid {
                what: "Entra ID tenant",
                message: format!("{tenant_id:?} is neither a tenant GUID nor a domain"),
            });
        }
        if client_id.is_empty() {
            return Err(CredentialError::Invalid { what: "Entra ID client", message: "client_id is empty".into() });
        }
        let authority = authority.unwrap_or(AUTHORITY).trim_end_matches('/');
        Ok(EntraClientCredentials {
            tenant_id: tenant_id.to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
            scope: super::COGNITIVE_SERVICES_SCOPE.to_owned(),
            token_url: format!("{authority}/{tenant_id}/oauth2/v2.0/token"),
            transport,
        })
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }
}

impl Refresh for EntraClientCredentials {
    type Value = Secret;
    async fn fetch(&self) -> Result<Token<Secret>, CredentialError> {
        let request = form_post(
            &self.token_url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &self.client_id),
                ("client_secret", self.client_secret.expose()),
                ("scope", &self.scope),
            ],
        )?;
        let endpoint = endpoint_of(request.uri());
        oauth_token(&endpoint, self.transport.send(request).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cloud::aws::tests::transport;
    use crate::cloud::azure::AzureAuth;
    use crate::cloud::token::{DEFAULT_SKEW, TokenCache};
    use crate::cloud::transport::testing::serve;
    use crate::mock::clouds::azure::EntraIssuer;

    /// Client credentials over real HTTP against the mock's Entra issuer:
    /// the form is what Entra expects, 30 concurrent requests cause one
    /// token request, and a wrong secret is Entra's AADSTS error.
    #[tokio::test]
    async fn client_credentials_over_http_against_the_mock() {
        let issuer = Arc::new(EntraIssuer::new("tenant-1", "app-1", "s3cret", Duration::from_secs(3600)));
        let i = issuer.clone();
        let server =
            serve(Arc::new(move |seen| match i.exchange(&seen.uri, &seen.body, std::time::SystemTime::now()) {
                Ok(json) => (200, json),
                Err(r) => (r.status, r.body),
            }))
            .await;
        let authority = format!("http://{}", server.addr);
        let entra =
            EntraClientCredentials::new("tenant-1", "app-1", Secret::new("s3cret"), Some(&authority), transport())
                .unwrap();
        let cache = Arc::new(TokenCache::new(entra, DEFAULT_SKEW));
        let auth = Arc::new(AzureAuth::Entra(cache.clone()));
        let tasks: Vec<_> = (0..30)
            .map(|_| {
                let a = auth.clone();
                tokio::spawn(async move { a.header().await })
            })
            .collect();
        for t in tasks {
            let (name, value) = t.await.unwrap().unwrap();
            assert_eq!(name, http::header::AUTHORIZATION);
            assert!(issuer.check_bearer(value.to_str().ok(), std::time::SystemTime::now()).is_ok());
        }
        assert_eq!(server.count(), 1);

        let wrong =
            EntraClientCredentials::new("tenant-1", "app-1", Secret::new("nope"), Some(&authority), transport())
                .unwrap();
        let err = TokenCache::new(wrong, DEFAULT_SKEW).get().await.unwrap_err().to_string();
        assert!(err.contains("HTTP 401") && err.contains("invalid_client: AADSTS7000215"), "{err}");
        assert!(!err.contains("nope"));
    }

    #[test]
    fn tenant_and_url_checks() {
        let e =
            EntraClientCredentials::new("contoso.onmicrosoft.com", "a", Secret::new("s"), None, transport()).unwrap();
        assert_eq!(e.token_url(), "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
        assert_eq!(e.scope, "https://cognitiveservices.azure.com/.default");
        assert!(EntraClientCredentials::new("a/b", "a", Secret::new("s"), None, transport()).is_err());
        assert!(EntraClientCredentials::new("t", "", Secret::new("s"), None, transport()).is_err());
    }
}
