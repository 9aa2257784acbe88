//! Azure OpenAI: endpoint URLs, the two ways to authenticate (`api-key`
//! header or a Microsoft Entra ID bearer token), and content-filter errors.
//!
//! URL forms (Azure OpenAI REST reference):
//! - deployments: `{endpoint}/openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=…`;
//!   the Responses API has no deployment segment:
//!   `{endpoint}/openai/responses?api-version=…` with the deployment as `model`;
//! - v1: `{endpoint}/openai/v1/{chat/completions|completions|embeddings|responses}`
//!   (OpenAI's own paths; the deployment goes in the body's `model`; an
//!   `api-version` only for previews).
//!
//! `{endpoint}` is `https://{resource}.openai.azure.com` or a configured
//! base URL (custom domains, `*.cognitiveservices.azure.com`, the mock).

pub mod content_filter;
pub mod entra;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::CredentialError;
use super::token::TokenCache;
use crate::config::Secret;
use entra::EntraClientCredentials;

/// The header Azure OpenAI reads a key from.
pub const API_KEY_HEADER: &str = "api-key";
/// The Entra ID scope of Azure OpenAI (Cognitive Services).
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// Which URL family a provider uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureApi {
    /// Deployment URLs; `api-version` is required (e.g. `2024-10-21`).
    Deployments { api_version: String },
    /// The `/openai/v1/` form; `api_version` only for previews (`preview`).
    V1 { api_version: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
}

impl Operation {
    fn path(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat/completions",
            Operation::Completions => "completions",
            Operation::Embeddings => "embeddings",
            Operation::Responses => "responses",
        }
    }
}

/// `https://{resource}.openai.azure.com`, for a valid resource name
/// (letters, digits and hyphens: Azure's rule for the subdomain).
pub fn resource_endpoint(resource: &str) -> Result<String, CredentialError> {
    check("resource", resource, |c| c.is_ascii_alphanumeric() || c == '-')?;
    Ok(format!("https://{}.openai.azure.com", resource.to_ascii_lowercase()))
}

/// The URL of one call. The v1 form and the Responses API ignore
/// `deployment` (it goes in the body's `model`).
pub fn url(endpoint: &str, api: &AzureApi, deployment: &str, op: Operation) -> Result<String, CredentialError> {
    let endpoint = endpoint.trim_end_matches('/');
    let version = |v: &str| -> Result<String, CredentialError> {
        check("api-version", v, |c| c.is_ascii_alphanumeric() || c == '-' || c == '.')?;
        Ok(format!("?api-version={v}"))
    };
    match api {
        AzureApi::V1 { api_version } => {
            let query = api_version.as_deref().map(version).transpose()?.unwrap_or_default();
            Ok(format!("{endpoint}/openai/v1/{}{query}", op.path()))
        }
        AzureApi::Deployments { api_version } if op == Operation::Responses => {
            Ok(format!("{endpoint}/openai/responses{}", version(api_version)?))
        }
        AzureApi::Deployments { api_version } => {
            check("deployment", deployment, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))?;
            Ok(format!("{endpoint}/openai/deployments/{deployment}/{}{}", op.path(), version(api_version)?))
        }
    }
}

fn check(what: &'static str, value: &str, ok: impl Fn(char) -> bool) -> Result<(), CredentialError> {
    if value.is_empty() || value.len() > 128 || !value.chars().all(ok) || value.starts_with('.') {
        return Err(CredentialError::Invalid {
            what: "Azure OpenAI endpoint",
            message: format!("{what} {value:?} has characters an Azure {what} cannot have"),
        });
    }
    Ok(())
}

/// How requests to one Azure provider authenticate.
pub enum AzureAuth {
    ApiKey(Secret),
    Entra(Arc<TokenCache<EntraClientCredentials>>),
}

impl AzureAuth {
    /// The header to add to a request: `api-key: …` or `authorization:
    /// Bearer …`, marked sensitive so no HTTP library logs it.
    pub async fn header(&self) -> Result<(HeaderName, HeaderValue), CredentialError> {
        let (name, value) = match self {
            AzureAuth::ApiKey(key) => (HeaderName::from_static(API_KEY_HEADER), key.expose().to_owned()),
            AzureAuth::Entra(cache) => (http::header::AUTHORIZATION, format!("Bearer {}", cache.get().await?.expose())),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| CredentialError::Invalid {
            what: "Azure credential",
            message: "it has characters an HTTP header cannot carry".into(),
        })?;
        value.set_sensitive(true);
        Ok((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: &str = "https://contoso.openai.azure.com";

    #[test]
    fn deployment_urls() {
        let api = AzureApi::Deployments { api_version: "2024-10-21".into() };
        assert_eq!(resource_endpoint("Contoso").unwrap(), E);
        assert_eq!(
            url(E, &api, "gpt-4o", Operation::ChatCompletions).unwrap(),
            "https://contoso.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            url(&format!("{E}/"), &api, "text-embedding-3-small", Operation::Embeddings).unwrap(),
            "https://contoso.openai.azure.com/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21"
        );
        let preview = AzureApi::Deployments { api_version: "2025-03-01-preview".into() };
        assert_eq!(
            url(E, &preview, "ignored", Operation::Responses).unwrap(),
            "https://contoso.openai.azure.com/openai/responses?api-version=2025-03-01-preview"
        );
    }

    #[test]
    fn v1_urls() {
        let ga = AzureApi::V1 { api_version: None };
        assert_eq!(
            url(E, &ga, "gpt-4o", Operation::ChatCompletions).unwrap(),
            "https://contoso.openai.azure.com/openai/v1/chat/completions"
        );
        assert_eq!(
            url(E, &ga, "x", Operation::Responses).unwrap(),
            "https://contoso.openai.azure.com/openai/v1/responses"
        );
        let preview = AzureApi::V1 { api_version: Some("preview".into()) };
        assert_eq!(
            url("http://127.0.0.1:9", &preview, "x", Operation::Embeddings).unwrap(),
            "http://127.0.0.1:9/openai/v1/embeddings?api-version=preview"
        );
    }

    #[test]
    fn nothing_can_inject_a_path_or_query() {
        let api = AzureApi::Deployments { api_version: "2024-10-21".into() };
        for d in ["", "a/b", "x?y", "..", "d#f", "d e"] {
            assert!(url(E, &api, d, Operation::ChatCompletions).is_err(), "{d}");
        }
        let bad = AzureApi::Deployments { api_version: "2024&x=1".into() };
        assert!(url(E, &bad, "d", Operation::ChatCompletions).is_err());
        assert!(resource_endpoint("evil.com/x").is_err());
    }

    #[tokio::test]
    async fn api_key_header_is_sensitive() {
        let (name, value) = AzureAuth::ApiKey(Secret::new("k-123")).header().await.unwrap();
        assert_eq!(name, "api-key");
        assert_eq!(value, "k-123");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("k-123"));
    }
}
