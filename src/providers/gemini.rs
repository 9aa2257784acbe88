//! Google's Gemini API: `POST {base}/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` for streams. OpenAI chat requests are
//! translated (`crate::translate::gemini`) and answers come back as OpenAI
//! bodies and chunks. Sends `x-goog-api-key`.

use bytes::Bytes;
use http::Uri;
use sluice_upstream::{SessionSpec, UpstreamClient};

use super::errors::ErrorStyle;
use super::events;
use super::transport::{self, HttpUpstream, OkResponse};
use super::{Call, Provider, Reply};
use crate::config::ProviderConfig;
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::translate::gemini::{self, stream::StreamTranslator};

pub struct Gemini {
    up: HttpUpstream,
    /// Any URI on the upstream's origin (for pooling).
    origin: Uri,
}

impl Gemini {
    pub fn new(cfg: &ProviderConfig) -> Result<Gemini, String> {
        let up = HttpUpstream::new(cfg, &[], ErrorStyle::Gemini)?;
        let origin = up.uri(&cfg.name, "/models")?;
        Ok(Gemini { up, origin })
    }

    pub fn secrets(&self) -> &[String] {
        self.up.secrets()
    }

    pub fn session_spec(&self, cfg: &ProviderConfig) -> SessionSpec {
        self.up.session_spec(cfg, Some(self.origin.clone()), &self.origin)
    }

    fn uri(&self, p: &Provider, model: &str, stream: bool) -> Result<Uri, GatewayError> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        let method = if stream { ":streamGenerateContent?alt=sse" } else { ":generateContent" };
        format!("{}/models/{model}{method}", self.up.base).parse::<Uri>().map_err(|e| GatewayError::Internal {
            detail: format!("provider `{}`: the model name `{model}` does not fit in a URL: {e}", p.name),
        })
    }

    pub async fn send(&self, p: &Provider, call: &Call<'_>, client: &UpstreamClient) -> Result<Reply, GatewayError> {
        if call.endpoint != Endpoint::Chat {
            return Err(super::unsupported(p, call));
        }
        let stream = call.peek.stream;
        let uri = self.uri(p, call.upstream_model, stream)?;
        let body = Bytes::from(gemini::request::translate(call.body)?);
        let headers = self.up.headers(call, stream);
        let created = crate::translate::unix_now();
        let resp = self.up.send(p, call.timeouts, client, &uri, &headers, body).await?;
        answer(p, resp, stream, call.upstream_model, created, self.up.secrets()).await
    }
}

/// A Gemini answer (whole or streamed) as an OpenAI one; shared with
/// Vertex AI, which answers Gemini requests the same way.
pub(super) async fn answer(
    p: &Provider,
    resp: OkResponse,
    stream: bool,
    model: &str,
    created: u64,
    secrets: &[String],
) -> Result<Reply, GatewayError> {
    if stream && resp.event_stream {
        let raw = events::event_stream(resp.body, resp.permit, p);
        let t = StreamTranslator::new(model, created);
        return Ok(Reply::Stream(events::translated(raw, t, p.name.clone(), secrets.to_vec())));
    }
    let bytes = transport::read_body(p, &resp.timeouts, resp.body, p.max_response_bytes, false, resp.deadline).await?;
    drop(resp.permit);
    let (body, usage) = gemini::response::translate(&bytes, model, created).map_err(|e| {
        GatewayError::UpstreamProtocol { provider: p.name.clone(), detail: format!("invalid Gemini resp ({e})") }
    })?;
    Ok(Reply::Complete { body: Bytes::from(body), usage: Some(usage.into()) })
}
