//! AWS Bedrock: every request signed with SigV4 (AWS's own signer, over the
//! exact body bytes sent), credentials from the environment, the shared
//! profile files or web identity (`cloud::aws`).
//!
//! - OpenAI chat requests, for every model family: `Converse` /
//!   `ConverseStream`, translated both ways (`translate::bedrock`); the
//!   stream's binary event-stream frames are decoded into SSE first
//!   (`frames`).
//! - `/v1/messages` to Claude (model ids naming `anthropic.`, inference
//!   profiles included): `InvokeModel` / `InvokeModelWithResponseStream`
//!   with Anthropic's own body (model in the URL, `anthropic_version:
//!   "bedrock-2023-05-31"` and no `stream` in the body), the answer and its
//!   events passed through as Anthropic's API sends them. `/v1/messages` to
//!   other models goes through chat.
//! - `/v1/embeddings` to Titan and Cohere embedding models: `InvokeModel`
//!   in each family's own body, several calls run concurrently when the
//!   model takes one text a call (`embed`).
//!
//! Bedrock's throttling and model-not-ready answers (HTTP 429, or a
//! `throttlingException` frame before the first event) are 429s to the
//! attempt loop: retried elsewhere, the deployment cooled down. A 403 (an
//! expired or rotated key: AWS signs its refusals 403) makes the provider
//! look for new credentials once and, if they differ, re-sign and resend.

mod embed;
mod frames;

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{ACCEPT, HOST};
use http::{HeaderName, HeaderValue, Uri};
use sluice_upstream::{SessionSpec, UpstreamClient};
use tokio::time::Instant;

use super::credentials::{CloudAuth, CredentialStatus, transport, unauthorized_or_forbidden};
use super::errors::ErrorStyle;
use super::transport::{self as http_transport, HttpUpstream, OkResponse};
use super::{Call, Provider, Reply, events};
use crate::cloud::aws::sign::{BEDROCK_SERVICE, BedrockAction, bedrock_url, sign_request};
use crate::cloud::aws::{self, AwsCredentials, AwsSettings, AwsSource};
use crate::config::ProviderConfig;
use crate::config::cloud::CloudConfig;
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::translate::anthropic::cloud::{self as claude_cloud, Cloud};
use crate::translate::bedrock::{request, response, stream::StreamTranslator};
/// Frames → SSE: public for the fuzz target `bedrock_frames` (the bytes a
/// Bedrock upstream controls on a stream), not an interface of the gateway.
#[doc(hidden)]
pub use frames::{FramesToSse, Mode};

pub struct Bedrock {
    up: HttpUpstream,
    region: String,
    auth: CloudAuth<AwsSource>,
}

/// Claude on Bedrock: `anthropic.claude-…`, and inference profiles and ARNs
/// that name it (`us.anthropic.claude-…`, `…/us.anthropic.claude-…`).
pub fn is_anthropic(model: &str) -> bool {
    model.contains("anthropic.")
}

const EVENT_STREAM: HeaderValue = HeaderValue::from_static("application/vnd.amazon.eventstream");

impl Bedrock {
    pub fn new(cfg: &ProviderConfig) -> Result<Bedrock, String> {
        let CloudConfig::Bedrock(b) = &cfg.cloud else {
            return Err(format!("provider `{}`: kind bedrock without [providers.bedrock] settings", cfg.name));
        };
        let up = HttpUpstream::new(cfg, &[], ErrorStyle::Bedrock)?;
        let t = transport(&cfg.name, std::time::Duration::from_millis(cfg.first_byte_timeout_ms))?;
        let settings = AwsSettings {
            profile: b.profile.clone(),
            region: Some(b.region.clone()),
            sts_endpoint: b.sts_endpoint.clone(),
        };
        let env = cfg.cloud_env.clone();
        let resolve = Box::new(move || aws::resolve(&env, &settings, t.clone()));
        let auth = CloudAuth::new(&cfg.name, resolve, AwsSource::describe);
        Ok(Bedrock { up, region: b.region.clone(), auth })
    }

    pub fn secrets(&self) -> &[String] {
        self.up.secrets()
    }

    /// Pools the runtime endpoint; the warm-up only opens connections
    /// (a signature cannot sit in a fixed request).
    pub fn session_spec(&self, cfg: &ProviderConfig) -> SessionSpec {
        let origin = self.up.uri(&cfg.name, "/").unwrap_or_else(|_| Uri::from_static("https://bedrock.invalid/"));
        let mut spec = self.up.session_spec(cfg, Some(origin.clone()), &origin);
        if let Some(w) = spec.warm_request.as_mut() {
            w.headers.clear();
        }
        spec
    }

    /// Does `/v1/messages` to `model` go out in Claude's own body?
    pub fn native_messages(&self, model: &str) -> bool {
        is_anthropic(model)
    }

    fn uri(&self, p: &Provider, model: &str, action: BedrockAction) -> Result<Uri, GatewayError> {
        bedrock_url(&self.region, Some(&self.up.base), model, action)
            .parse::<Uri>()
            .map_err(|e| GatewayError::Internal { detail: format!("provider `{}`: {e}", p.name) })
    }

    /// The request's headers, signed with `creds` over `body` (SigV4:
    /// `x-amz-date`, `authorization`, and `x-amz-security-token` for
    /// temporary keys).
    fn sign(
        &self,
        p: &Provider,
        uri: &Uri,
        mut headers: Vec<(HeaderName, HeaderValue)>,
        body: &[u8],
        creds: &AwsCredentials,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let failed = |detail: String| GatewayError::Internal { detail: format!("provider `{}`: {detail}", p.name) };
        let mut req = http::Request::post(uri.clone()).body(()).map_err(|e| failed(e.to_string()))?;
        {
            let h = req.headers_mut();
            // The transport sends the URL's authority as `host`; it must be signed as sent.
            let host = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            h.insert(HOST, HeaderValue::from_str(host).map_err(|e| failed(e.to_string()))?);
            for (n, v) in &headers {
                h.append(n.clone(), v.clone());
            }
        }
        sign_request(&mut req, body, creds, &self.region, BEDROCK_SERVICE, SystemTime::now())
            .map_err(|e| failed(e.to_string()))?;
        for name in ["x-amz-date", "authorization", "x-amz-security-token"] {
            if let Some(v) = req.headers().get(name) {
                let mut v = v.clone();
                v.set_sensitive(name != "x-amz-date");
                headers.push((HeaderName::from_static(name), v));
            }
        }
        Ok(headers)
    }

    /// Sign and send; on a 403, once more with new credentials if there are any.
    async fn post(
        &self,
        p: &Provider,
        call: &Call<'_>,
        client: &UpstreamClient,
        uri: &Uri,
        body: Bytes,
        stream: bool,
    ) -> Result<OkResponse, GatewayError> {
        let mut headers = self.up.headers(call, false);
        if stream && let Some(a) = headers.iter_mut().find(|(n, _)| *n == ACCEPT) {
            a.1 = EVENT_STREAM;
        }
        let deadline = Instant::now() + call.timeouts.first_byte;
        self.auth
            .send_with(deadline, unauthorized_or_forbidden, |creds: AwsCredentials| {
                let body = body.clone();
                let signed = self.sign(p, uri, headers.clone(), &body, &creds);
                async move { self.up.send(p, call.timeouts, client, uri, &signed?, body).await }
            })
            .await
    }

    /// An OpenAI chat request: Converse or ConverseStream, translated both
    /// ways; an embeddings request: InvokeModel (`embed`).
    pub async fn send(&self, p: &Provider, call: &Call<'_>, client: &UpstreamClient) -> Result<Reply, GatewayError> {
        match call.endpoint {
            Endpoint::Chat => {}
            Endpoint::Embeddings => return self.embed(p, call, client).await,
            _ => return Err(super::unsupported(p, call)),
        }
        let stream = call.peek.stream;
        let action = if stream { BedrockAction::ConverseStream } else { BedrockAction::Converse };
        let uri = self.uri(p, call.upstream_model, action)?;
        let body = Bytes::from(request::translate(call.body)?);
        let id = format!("chatcmpl-{}", call.request_id);
        let created = crate::translate::unix_now();
        let resp = self.post(p, call, client, &uri, body, stream).await?;
        if stream {
            let frames = FramesToSse::new(Mode::Converse, p.name.clone(), self.up.secrets().to_vec());
            let raw = frames::event_stream(resp.body, resp.permit, frames);
            let t = StreamTranslator::new(&id, call.upstream_model, created);
            return Ok(Reply::Stream(events::translated(raw, t, p.name.clone(), self.up.secrets().to_vec())));
        }
        let bytes = read(p, resp).await?;
        let (body, usage) = response::translate(&bytes, &id, call.upstream_model, created).map_err(|e| {
            GatewayError::UpstreamProtocol {
                provider: p.name.clone(),
                detail: format!("invalid Converse answer ({e})"),
            }
        })?;
        Ok(Reply::Complete { body: Bytes::from(body), usage: Some(usage.into()) })
    }

    /// A `/v1/messages` request to Claude: InvokeModel with Anthropic's body,
    /// the answer (or each streamed event) passed through.
    pub async fn send_native(
        &self,
        p: &Provider,
        call: &Call<'_>,
        client: &UpstreamClient,
    ) -> Result<Reply, GatewayError> {
        let stream = call.peek.stream;
        let action = if stream { BedrockAction::InvokeWithResponseStream } else { BedrockAction::Invoke };
        let uri = self.uri(p, call.upstream_model, action)?;
        let body = Bytes::from(claude_cloud::body(call.body, Cloud::Bedrock)?);
        let resp = self.post(p, call, client, &uri, body, stream).await?;
        if stream {
            let frames = FramesToSse::new(Mode::Invoke, p.name.clone(), self.up.secrets().to_vec());
            return Ok(Reply::Stream(frames::event_stream(resp.body, resp.permit, frames)));
        }
        let bytes = read(p, resp).await?;
        crate::providers::transport::check_json(p, &bytes)?;
        let usage = crate::translate::anthropic::usage_from_body(&bytes).map(Into::into);
        Ok(Reply::Complete { body: bytes, usage })
    }

    pub fn credentials(&self) -> CredentialStatus {
        self.auth.status("bedrock")
    }

    pub fn credential_problem(&self) -> Option<String> {
        self.auth.problem()
    }
}

async fn read(p: &Provider, resp: OkResponse) -> Result<Bytes, GatewayError> {
    let bytes =
        http_transport::read_body(p, &resp.timeouts, resp.body, p.max_response_bytes, false, resp.deadline).await?;
    drop(resp.permit);
    Ok(bytes)
}
