//! Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, Groq, Together, …).
//! The client's body bytes go out untouched unless `model` must be renamed or
//! usage must be requested on a stream; responses come back as they are.

use http::Uri;
use sluice_upstream::{SessionSpec, UpstreamClient};

use super::errors::ErrorStyle;
use super::events;
use super::rewrite::rewrite;
use super::transport::{self, HttpUpstream};
use super::{Call, Provider, Reply};
use crate::config::ProviderConfig;
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::usage;

pub struct OpenAi {
    up: HttpUpstream,
    uris: [Uri; 3],
}

impl OpenAi {
    pub fn new(cfg: &ProviderConfig) -> Result<OpenAi, String> {
        let up = HttpUpstream::new(cfg, &[], ErrorStyle::OpenAi)?;
        let uri = |e: Endpoint| up.uri(&cfg.name, e.path());
        let uris = [uri(Endpoint::Chat)?, uri(Endpoint::Completions)?, uri(Endpoint::Embeddings)?];
        Ok(OpenAi { up, uris })
    }

    fn uri(&self, e: Endpoint) -> &Uri {
        match e {
            Endpoint::Chat | Endpoint::Messages => &self.uris[0],
            Endpoint::Completions => &self.uris[1],
            Endpoint::Embeddings => &self.uris[2],
        }
    }

    pub fn secrets(&self) -> &[String] {
        self.up.secrets()
    }

    pub fn session_spec(&self, cfg: &ProviderConfig) -> SessionSpec {
        let warm = self.up.uri(&cfg.name, "/models").ok();
        self.up.session_spec(cfg, warm, &self.uris[0])
    }

    pub async fn send(&self, p: &Provider, call: &Call<'_>, client: &UpstreamClient) -> Result<Reply, GatewayError> {
        let body = rewrite(call.body, call.peek, call.upstream_model, call.endpoint.streams());
        let headers = self.up.headers(call, call.peek.stream);
        let resp = self.up.send(p, call.timeouts, client, self.uri(call.endpoint), &headers, body).await?;
        if call.peek.stream && resp.event_stream {
            return Ok(Reply::Stream(events::event_stream(resp.body, resp.permit, p)));
        }
        let bytes =
            transport::read_body(p, &resp.timeouts, resp.body, p.max_response_bytes, false, resp.deadline).await?;
        drop(resp.permit);
        transport::check_answer(p, &bytes, self.up.secrets())?;
        let usage = usage::from_body(&bytes).map_err(|e| GatewayError::UpstreamProtocol {
            provider: p.name.clone(),
            detail: format!("the response body is not valid JSON ({e})"),
        })?;
        Ok(Reply::Complete { body: bytes, usage })
    }
}
