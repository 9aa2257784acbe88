//! Anthropic's Messages API. OpenAI chat requests are translated
//! (`crate::translate::anthropic`) and answers come back as OpenAI bodies
//! and chunks; requests that arrived on the Anthropic-shaped ingress
//! (`/v1/messages`) go out as the client wrote them, with only `model`
//! renamed, and come back untouched — with the client's query string
//! (`?beta=true`) and its `anthropic-beta` and `anthropic-version` headers,
//! which make the newer request members legal upstream. Sends `x-api-key`
//! and `anthropic-version` (the client's, else the configured one).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use sluice_upstream::{SessionSpec, UpstreamClient};

use super::errors::ErrorStyle;
use super::events;
use super::rewrite::rewrite;
use super::transport::{self, HttpUpstream, OkResponse};
use super::{Call, Provider, Reply};
use crate::config::ProviderConfig;
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::translate::anthropic::{self, request::Options, stream::StreamTranslator};

pub struct Anthropic {
    up: HttpUpstream,
    uri: Uri,
    /// `/messages/count_tokens`.
    count_uri: Uri,
    opts: Options,
    /// `anthropic-version` is pinned in the provider's `headers`: the
    /// operator's choice wins over the client's.
    version_pinned: bool,
}

/// Client headers an Anthropic upstream needs to accept what the client
/// sent: the betas that make newer request members legal, and the API
/// version the client was written for.
const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

impl Anthropic {
    pub fn new(cfg: &ProviderConfig) -> Result<Anthropic, String> {
        let a = &cfg.anthropic;
        let up = HttpUpstream::new(cfg, &[("anthropic-version", &a.version)], ErrorStyle::Anthropic)?;
        let uri = up.uri(&cfg.name, "/messages")?;
        let count_uri = up.uri(&cfg.name, Endpoint::CountTokens.path())?;
        let opts = Options { default_max_tokens: a.default_max_tokens, prompt_caching: a.prompt_caching };
        let version_pinned = cfg.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("anthropic-version"));
        Ok(Anthropic { up, uri, count_uri, opts, version_pinned })
    }

    pub fn secrets(&self) -> &[String] {
        self.up.secrets()
    }

    pub fn session_spec(&self, cfg: &ProviderConfig) -> SessionSpec {
        let warm = self.up.uri(&cfg.name, "/models").ok();
        self.up.session_spec(cfg, warm, &self.uri)
    }

    /// An OpenAI chat request, translated both ways.
    pub async fn send(&self, p: &Provider, call: &Call<'_>, client: &UpstreamClient) -> Result<Reply, GatewayError> {
        if call.endpoint != Endpoint::Chat {
            return Err(super::unsupported(p, call));
        }
        let body = Bytes::from(anthropic::request::translate(call.body, call.upstream_model, &self.opts)?);
        let headers = self.up.headers(call, call.peek.stream);
        let created = crate::translate::unix_now();
        let resp = self.up.send(p, call.timeouts, client, &self.uri, &headers, body).await?;
        translated_answer(p, resp, call.peek.stream, created, self.up.secrets()).await
    }

    /// A `/v1/messages` (or `count_tokens`) request: the client's bytes
    /// (model renamed when the deployment's name differs), query string and
    /// Anthropic headers out, the upstream's bytes back.
    pub async fn send_native(
        &self,
        p: &Provider,
        call: &Call<'_>,
        client: &UpstreamClient,
    ) -> Result<Reply, GatewayError> {
        let body = rewrite(call.body, call.peek, call.upstream_model, false);
        let mut headers = self.up.headers(call, call.peek.stream);
        self.client_headers(call, &mut headers);
        let base = if call.endpoint == Endpoint::CountTokens { &self.count_uri } else { &self.uri };
        let with_query;
        let uri = match call.client_query {
            "" => base,
            q => {
                with_query = format!("{base}?{q}")
                    .parse::<Uri>()
                    .map_err(|_| GatewayError::invalid("The query string is not valid in a URL.", None))?;
                &with_query
            }
        };
        let resp = self.up.send(p, call.timeouts, client, uri, &headers, body).await?;
        native_answer(p, resp, call.peek.stream).await
    }

    /// The client's `anthropic-beta` (added) and `anthropic-version`
    /// (replacing the configured default, unless `headers` pins it).
    fn client_headers(&self, call: &Call<'_>, headers: &mut Vec<(HeaderName, HeaderValue)>) {
        if let Some(v) = call.client_headers.get(ANTHROPIC_VERSION.as_str()).filter(|_| !self.version_pinned)
            && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
        {
            headers.retain(|(n, _)| *n != ANTHROPIC_VERSION);
            headers.push((ANTHROPIC_VERSION, v));
        }
        if !headers.iter().any(|(n, _)| *n == ANTHROPIC_BETA) {
            for v in call.client_headers.get_all(ANTHROPIC_BETA.as_str()) {
                if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                    headers.push((ANTHROPIC_BETA, v));
                }
            }
        }
    }
}

/// A Messages answer to a translated OpenAI request, as OpenAI's (shared
/// with Claude on Vertex AI).
pub(super) async fn translated_answer(
    p: &Provider,
    resp: OkResponse,
    stream: bool,
    created: u64,
    secrets: &[String],
) -> Result<Reply, GatewayError> {
    if stream && resp.event_stream {
        let raw = events::event_stream(resp.body, resp.permit, p);
        let t = StreamTranslator::new(created);
        return Ok(Reply::Stream(events::translated(raw, t, p.name.clone(), secrets.to_vec())));
    }
    let bytes = transport::read_body(p, &resp.timeouts, resp.body, p.max_response_bytes, false, resp.deadline).await?;
    drop(resp.permit);
    let (body, usage) = anthropic::response::translate(&bytes, created).map_err(|e| {
        GatewayError::UpstreamProtocol { provider: p.name.clone(), detail: format!("invalid Messages resp ({e})") }
    })?;
    Ok(Reply::Complete { body: Bytes::from(body), usage: Some(usage.into()) })
}

/// A Messages answer to a `/v1/messages` request, untouched (shared with
/// Claude on Vertex AI).
pub(super) async fn native_answer(p: &Provider, resp: OkResponse, stream: bool) -> Result<Reply, GatewayError> {
    if stream && resp.event_stream {
        return Ok(Reply::Stream(events::event_stream(resp.body, resp.permit, p)));
    }
    let bytes = transport::read_body(p, &resp.timeouts, resp.body, p.max_response_bytes, false, resp.deadline).await?;
    drop(resp.permit);
    transport::check_json(p, &bytes)?;
    let usage = anthropic::usage_from_body(&bytes).map(Into::into);
    Ok(Reply::Complete { body: bytes, usage })
}
