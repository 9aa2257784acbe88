//! Google Vertex AI: Gemini, Claude and Google's embedding models of one
//! project and location (embeddings: `:predict`, `translate::vertex`).
//!
//! - Gemini (`publishers/google`): `generateContent` /
//!   `streamGenerateContent?alt=sse` with the `gemini` provider's
//!   translation, both ways.
//! - Claude (`publishers/anthropic`, model ids starting with `claude`):
//!   `rawPredict` / `streamRawPredict` with Anthropic's Messages body, the
//!   model in the URL and `anthropic_version: "vertex-2023-10-16"` in the
//!   body (`translate::anthropic::cloud`). `/v1/messages` requests go out as
//!   the client wrote them but for that rewrite, and come back untouched;
//!   OpenAI chat requests are translated as for the `anthropic` provider.
//!
//! Every call carries `Authorization: Bearer` with a Google access token
//! from a service-account key or application-default credentials
//! (`cloud::google`), cached, refreshed before expiry, one exchange at a
//! time; a 401 fetches a new token once and retries the call.

use bytes::Bytes;
use http::Uri;
use sluice_upstream::{SessionSpec, UpstreamClient};
use tokio::time::Instant;

use super::credentials::{CloudAuth, CredentialStatus, bearer, transport, unauthorized};
use super::errors::ErrorStyle;
use super::transport::{HttpUpstream, OkResponse};
use super::{Call, Provider, Reply, anthropic, gemini};
use crate::cloud::google::{self, GoogleAuth, GoogleSettings};
use crate::cloud::vertex::{Method, Publisher, VertexTarget, endpoint_url};
use crate::config::cloud::CloudConfig;
use crate::config::{ProviderConfig, Secret};
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::translate::anthropic::cloud::{self as claude_cloud, Cloud};
use crate::translate::anthropic::request::Options;
use crate::translate::vertex as embeddings;

pub struct Vertex {
    up: HttpUpstream,
    project: Option<String>,
    location: String,
    auth: CloudAuth<GoogleAuth>,
}

/// Claude's model ids on Vertex (`claude-sonnet-4@20250514`); every other
/// model is Google's.
pub fn publisher(model: &str) -> Publisher {
    if model.starts_with("claude") { Publisher::Anthropic } else { Publisher::Google }
}

impl Vertex {
    pub fn new(cfg: &ProviderConfig) -> Result<Vertex, String> {
        let CloudConfig::Vertex(v) = &cfg.cloud else {
            return Err(format!("provider `{}`: kind vertex without [providers.vertex] settings", cfg.name));
        };
        let up = HttpUpstream::new(cfg, &[], ErrorStyle::Vertex)?;
        let t = transport(&cfg.name, std::time::Duration::from_millis(cfg.first_byte_timeout_ms))?;
        let settings = GoogleSettings {
            credentials_file: v.credentials_file.clone(),
            metadata_server: v.metadata_server,
            token_uri: v.token_url.clone(),
            metadata_base: None,
        };
        let env = cfg.cloud_env.clone();
        let resolve = Box::new(move || google::resolve(&env, &settings, t.clone()));
        let auth = CloudAuth::new(&cfg.name, resolve, GoogleAuth::describe);
        Ok(Vertex { up, project: v.project.clone(), location: v.location.clone(), auth })
    }

    pub fn secrets(&self) -> &[String] {
        self.up.secrets()
    }

    /// Pools the regional (or global) endpoint; the warm-up only opens
    /// connections (a token cannot sit in a fixed request).
    pub fn session_spec(&self, cfg: &ProviderConfig) -> SessionSpec {
        let origin = self.up.uri(&cfg.name, "/").unwrap_or_else(|_| Uri::from_static("https://vertex.invalid/"));
        let mut spec = self.up.session_spec(cfg, Some(origin.clone()), &origin);
        if let Some(w) = spec.warm_request.as_mut() {
            w.headers.clear();
        }
        spec
    }

    /// Does `/v1/messages` to `model` go out natively (Claude)?
    pub fn native_messages(&self, model: &str) -> bool {
        publisher(model) == Publisher::Anthropic
    }

    fn uri(&self, p: &Provider, model: &str, method: Method) -> Result<Uri, GatewayError> {
        // The project: the config's, else the one the credentials name.
        let project = self.project.as_deref().or_else(|| self.auth.source().and_then(GoogleAuth::project_id));
        let Some(project) = project else {
            return Err(GatewayError::UpstreamCredentials {
                provider: p.name.clone(),
                detail: "no Vertex AI project: set [providers.vertex] project, or use credentials that name one".into(),
                unavailable: true,
            });
        };
        let target = VertexTarget { project, location: &self.location, base_url: Some(&self.up.base) };
        let url = endpoint_url(&target, publisher(model), model, method)
            .map_err(|e| GatewayError::invalid(format!("provider `{}`: {e}", p.name), Some("model")))?;
        url.parse::<Uri>().map_err(|e| GatewayError::Internal { detail: format!("provider `{}`: {e}", p.name) })
    }

    /// Send `body` to `uri` with a fresh token; one retry with a new token
    /// when Vertex says the token is not (or no longer) valid.
    async fn post(
        &self,
        p: &Provider,
        call: &Call<'_>,
        client: &UpstreamClient,
        uri: &Uri,
        body: Bytes,
    ) -> Result<OkResponse, GatewayError> {
        let headers = self.up.headers(call, call.peek.stream);
        let deadline = Instant::now() + call.timeouts.first_byte;
        self.auth
            .send_with(deadline, unauthorized, |token: Secret| {
                let mut h = headers.clone();
                let body = body.clone();
                async move {
                    h.push(bearer(&token)?);
                    self.up.send(p, call.timeouts, client, uri, &h, body).await
                }
            })
            .await
    }

    /// An OpenAI chat request: to Gemini or Claude, translated both ways;
    /// an embeddings request to Google's embedding models (`:predict`).
    pub async fn send(&self, p: &Provider, call: &Call<'_>, client: &UpstreamClient) -> Result<Reply, GatewayError> {
        match (call.endpoint, publisher(call.upstream_model)) {
            (Endpoint::Chat, _) => {}
            (Endpoint::Embeddings, Publisher::Google) => return self.embed(p, call, client).await,
            _ => return Err(super::unsupported(p, call)),
        }
        let stream = call.peek.stream;
        let model = call.upstream_model;
        let uri = self.uri(p, model, Method::for_publisher(publisher(model), stream))?;
        let created = crate::translate::unix_now();
        match publisher(model) {
            Publisher::Google => {
                let body = Bytes::from(crate::translate::gemini::request::translate(call.body)?);
                let resp = self.post(p, call, client, &uri, body).await?;
                gemini::answer(p, resp, stream, model, created, self.up.secrets()).await
            }
            Publisher::Anthropic => {
                let messages = crate::translate::anthropic::request::translate(call.body, model, &Options::default())?;
                let body = Bytes::from(claude_cloud::body(&messages, Cloud::Vertex)?);
                let resp = self.post(p, call, client, &uri, body).await?;
                anthropic::translated_answer(p, resp, stream, created, self.up.secrets()).await
            }
        }
    }

    /// A `/v1/messages` request to Claude: the client's body, rewritten only
    /// for Vertex (model out, `anthropic_version` in), the answer untouched.
    pub async fn send_native(
        &self,
        p: &Provider,
        call: &Call<'_>,
        client: &UpstreamClient,
    ) -> Result<Reply, GatewayError> {
        let uri = self.uri(p, call.upstream_model, Method::for_publisher(Publisher::Anthropic, call.peek.stream))?;
        let body = Bytes::from(claude_cloud::body(call.body, Cloud::Vertex)?);
        let resp = self.post(p, call, client, &uri, body).await?;
        anthropic::native_answer(p, resp, call.peek.stream).await
    }

    /// `/v1/embeddings`: the inputs as `:predict` instances, the
    /// predictions back as OpenAI's list (`translate::vertex`).
    async fn embed(&self, p: &Provider, call: &Call<'_>, client: &UpstreamClient) -> Result<Reply, GatewayError> {
        let model = call.upstream_model;
        let uri = self.uri(p, model, Method::Predict)?;
        let (body, encoding) = embeddings::request(call.body)?;
        let resp = self.post(p, call, client, &uri, Bytes::from(body)).await?;
        let bytes =
            super::transport::read_body(p, &resp.timeouts, resp.body, p.max_response_bytes, false, resp.deadline)
                .await?;
        drop(resp.permit);
        let (body, usage) = embeddings::response(&bytes, model, encoding).map_err(|e| {
            GatewayError::UpstreamProtocol { provider: p.name.clone(), detail: format!("invalid predict answer ({e})") }
        })?;
        Ok(Reply::Complete { body: Bytes::from(body), usage: Some(usage.into()) })
    }

    pub fn credentials(&self) -> CredentialStatus {
        self.auth.status("vertex")
    }

    pub fn credential_problem(&self) -> Option<String> {
        self.auth.problem()
    }
}
