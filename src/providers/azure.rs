//! Azure OpenAI: OpenAI's protocol on Azure's URLs and credentials. The
//! client's bytes go out as to the `openai` provider (model renamed, usage
//! asked for on streams) and come back untouched; only the URL
//! (`/openai/deployments/{deployment}/…?api-version=…` or `/openai/v1/…`)
//! and the credential (`api-key`, or an Entra ID bearer token) differ.
//!
//! Azure's content filter: a refused prompt (HTTP 400, `code:
//! content_filter`) becomes an OpenAI-shaped 400 naming the tripped
//! categories (`errors::ErrorStyle::Azure`); a filtered answer (`finish_reason:
//! "content_filter"`, `prompt_filter_results`, `content_filter_results`)
//! passes through as Azure sent it, since OpenAI clients know it, and is
//! counted in `sluice_content_filtered_total`.

use http::Uri;
use sluice_upstream::{SessionSpec, UpstreamClient, WarmRequest};
use tokio::time::Instant;

use super::credentials::{CloudAuth, CredentialStatus, bearer, transport, unauthorized};
use super::errors::ErrorStyle;
use super::events;
use super::rewrite::rewrite;
use super::transport::{self as http_transport, HttpUpstream};
use super::{Call, Provider, Reply};
use crate::cloud::azure::content_filter::{self, FilterSource};
use crate::cloud::azure::entra::EntraClientCredentials;
use crate::cloud::azure::{self as az, AzureApi, Operation};
use crate::config::cloud::{AzureApiConfig, CloudConfig};
use crate::config::{ProviderConfig, Secret};
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::usage;

pub struct Azure {
    /// The `api-key` header, when that is the credential, is among its fixed headers.
    up: HttpUpstream,
    api: AzureApi,
    entra: Option<CloudAuth<EntraClientCredentials>>,
}

impl Azure {
    pub fn new(cfg: &ProviderConfig) -> Result<Azure, String> {
        let CloudConfig::Azure(a) = &cfg.cloud else {
            return Err(format!("provider `{}`: kind azure without [providers.azure] settings", cfg.name));
        };
        let up = HttpUpstream::new(cfg, &[], ErrorStyle::Azure)?;
        let api = match &a.api {
            AzureApiConfig::Deployments { api_version } => AzureApi::Deployments { api_version: api_version.clone() },
            AzureApiConfig::V1 { api_version } => AzureApi::V1 { api_version: api_version.clone() },
        };
        let entra = match &a.entra {
            None => None,
            Some(e) => {
                let t = transport(&cfg.name, std::time::Duration::from_millis(cfg.first_byte_timeout_ms))?;
                let (tenant, client, secret, authority) =
                    (e.tenant_id.clone(), e.client_id.clone(), e.client_secret.clone(), e.authority.clone());
                let resolve = Box::new(move || {
                    EntraClientCredentials::new(&tenant, &client, secret.clone(), authority.as_deref(), t.clone())
                });
                let describe: fn(&EntraClientCredentials) -> String =
                    |e| format!("Entra ID app {} of tenant {} ({})", e.client_id, e.tenant_id, e.token_url());
                Some(CloudAuth::new(&cfg.name, resolve, describe))
            }
        };
        Ok(Azure { up, api, entra })
    }

    pub fn secrets(&self) -> &[String] {
        self.up.secrets()
    }

    /// Pools the endpoint's origin. With an api-key the warm-up (and health
    /// probe) lists the models, an authenticated call; with Entra it only
    /// opens connections (a token cannot sit in a fixed request).
    pub fn session_spec(&self, cfg: &ProviderConfig) -> SessionSpec {
        let models = match &self.api {
            AzureApi::Deployments { api_version } => format!("/openai/models?api-version={api_version}"),
            AzureApi::V1 { .. } => "/openai/v1/models".to_owned(),
        };
        let warm = self.up.uri(&cfg.name, &models).ok();
        let any = warm.clone().unwrap_or_else(|| Uri::from_static("https://azure.invalid/"));
        let mut spec = self.up.session_spec(cfg, warm, &any);
        if self.entra.is_some()
            && let Some(w) = spec.warm_request.take()
        {
            spec.warm_request = Some(WarmRequest { uri: w.uri, headers: Vec::new() });
        }
        spec
    }

    fn uri(&self, p: &Provider, call: &Call<'_>) -> Result<Uri, GatewayError> {
        let op = match call.endpoint {
            Endpoint::Chat | Endpoint::Messages => Operation::ChatCompletions,
            Endpoint::Completions => Operation::Completions,
            Endpoint::Embeddings => Operation::Embeddings,
            // Responses arrive translated to chat; the others are not
            // served here (`Provider::serves`).
            Endpoint::Responses
            | Endpoint::CountTokens
            | Endpoint::InputTokens
            | Endpoint::Images
            | Endpoint::Moderations
            | Endpoint::Speech
            | Endpoint::Transcriptions
            | Endpoint::Translations
            | Endpoint::Files
            | Endpoint::Batches => return Err(super::unsupported(p, call)),
        };
        let url = az::url(&self.up.base, &self.api, call.upstream_model, op)
            .map_err(|e| GatewayError::Internal { detail: format!("provider `{}`: {e}", p.name) })?;
        url.parse::<Uri>().map_err(|e| GatewayError::Internal { detail: format!("provider `{}`: {e}", p.name) })
    }

    pub async fn send(&self, p: &Provider, call: &Call<'_>, client: &UpstreamClient) -> Result<Reply, GatewayError> {
        let uri = self.uri(p, call)?;
        let body = rewrite(call.body, call.peek, call.upstream_model, call.endpoint.streams());
        let headers = self.up.headers(call, call.peek.stream);
        let resp = match &self.entra {
            None => self.up.send(p, call.timeouts, client, &uri, &headers, body).await?,
            Some(auth) => {
                let deadline = Instant::now() + call.timeouts.first_byte;
                auth.send_with(deadline, unauthorized, |token: Secret| {
                    let mut h = headers.clone();
                    let body = body.clone();
                    let uri = &uri;
                    async move {
                        h.push(bearer(&token)?);
                        self.up.send(p, call.timeouts, client, uri, &h, body).await
                    }
                })
                .await?
            }
        };
        if call.peek.stream && resp.event_stream {
            return Ok(Reply::Stream(events::event_stream(resp.body, resp.permit, p)));
        }
        let bytes =
            http_transport::read_body(p, &resp.timeouts, resp.body, p.max_response_bytes, false, resp.deadline).await?;
        drop(resp.permit);
        // Azure OpenAI answers as OpenAI does, and is checked as OpenAI's are.
        let usage_at = crate::providers::transport::check_answer(p, &bytes, self.up.secrets())?;
        if let Some(v) = content_filter::filtered_completion(&bytes) {
            let source = match v.source {
                FilterSource::Prompt => "prompt",
                FilterSource::Completion => "completion",
            };
            crate::metrics::content_filtered(&p.name, source);
            tracing::info!(provider = %p.name, source, categories = ?v.categories, "Azure's content filter acted");
        }
        let usage = usage::from_checked(&bytes, usage_at).map_err(|e| GatewayError::UpstreamProtocol {
            provider: p.name.clone(),
            detail: format!("the response body is not valid JSON ({e})"),
        })?;
        Ok(Reply::Complete { body: bytes, usage })
    }

    pub fn credentials(&self) -> Option<CredentialStatus> {
        self.entra.as_ref().map(|a| a.status("azure"))
    }

    pub fn credential_problem(&self) -> Option<String> {
        self.entra.as_ref().and_then(|a| a.problem())
    }
}
