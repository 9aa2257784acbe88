//! OpenAI's Files and Batch APIs (`/v1/files…`, `/v1/batches…`): requests
//! that name no model, sent to one provider as the client made them —
//! method, path below `/v1`, query, body (an upload streamed through, a
//! small JSON body, or none) — and answered as the upstream answers,
//! its body streamed back (a file's content is never held whole).
//!
//! Served by `openai` providers with `files = true`, and by the built-in
//! mock (an in-memory store, `crate::mock::files`).

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::LocalBoxStream;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Uri};
use sluice_upstream::UpstreamClient;
use tokio::time::Instant;

use super::transport::OutBody;
use super::{Protocol, Provider, Timeouts};
use crate::deadline::within;
use crate::error::{GatewayError, TimeoutPhase};
use crate::upload::Upload;

/// One Files or Batch API request.
pub struct ResourceCall<'a> {
    pub method: Method,
    /// Below `/v1`, with the query string: `/files/file-1/content`.
    pub path: &'a str,
    pub body: ResourceBody,
    pub request_id: &'a str,
}

pub enum ResourceBody {
    None,
    /// A JSON body (`POST /v1/batches`).
    Json(Bytes),
    /// A multipart upload (`POST /v1/files`).
    Upload(Upload),
}

/// The upstream's answer, any status: its body still to be streamed.
pub struct ResourceReply {
    pub status: u16,
    pub content_type: HeaderValue,
    pub body: LocalBoxStream<'static, Result<Bytes, GatewayError>>,
}

impl ResourceReply {
    pub fn whole(status: u16, content_type: &'static str, body: Bytes) -> ResourceReply {
        ResourceReply {
            status,
            content_type: HeaderValue::from_static(content_type),
            body: futures_util::stream::once(async move { Ok(body) }).boxed_local(),
        }
    }
}

impl Provider {
    /// Does this provider serve the Files and Batch APIs?
    pub fn serves_files(&self) -> bool {
        match &self.protocol {
            Protocol::OpenAi(p) => p.serves_files(),
            Protocol::Mock(_) => true,
            Protocol::Azure(_)
            | Protocol::Anthropic(_)
            | Protocol::Gemini(_)
            | Protocol::Vertex(_)
            | Protocol::Bedrock(_) => false,
        }
    }

    /// Send a Files or Batch API request. An upstream error status comes
    /// back as the gateway's error (its OpenAI-shaped body passed on for
    /// the client's own mistakes, such as an unknown file id).
    pub async fn resource(
        &self,
        call: ResourceCall<'_>,
        client: Option<&UpstreamClient>,
    ) -> Result<ResourceReply, GatewayError> {
        match &self.protocol {
            Protocol::OpenAi(p) if p.serves_files() => {
                self.send_resource(p.upstream(), call, self.client(client)?).await
            }
            Protocol::Mock(m) => m.resource(call).await,
            Protocol::OpenAi(_)
            | Protocol::Azure(_)
            | Protocol::Anthropic(_)
            | Protocol::Gemini(_)
            | Protocol::Vertex(_)
            | Protocol::Bedrock(_) => Err(GatewayError::invalid(
                format!("The provider `{}` does not serve the Files and Batch APIs.", self.name),
                None,
            )),
        }
    }

    async fn send_resource(
        &self,
        up: &super::transport::HttpUpstream,
        call: ResourceCall<'_>,
        client: &UpstreamClient,
    ) -> Result<ResourceReply, GatewayError> {
        let uri: Uri = format!("{}{}", up.base, call.path)
            .parse()
            .map_err(|_| GatewayError::invalid(format!("Invalid request path: /v1{}", call.path), None))?;
        let mut headers: Vec<(HeaderName, HeaderValue)> = up.base_headers();
        if let Ok(v) = HeaderValue::from_str(call.request_id) {
            headers.push((HeaderName::from_static("x-request-id"), v));
        }
        let mut upload = None;
        let body = match call.body {
            ResourceBody::None => OutBody::Whole(Bytes::new()),
            ResourceBody::Json(b) => {
                headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
                OutBody::Whole(b)
            }
            ResourceBody::Upload(u) => {
                headers.push((CONTENT_TYPE, u.content_type.clone()));
                let body = u
                    .body(None)
                    .ok_or_else(|| GatewayError::Internal { detail: "the upload was already sent".into() })?;
                upload = Some(u);
                OutBody::Streamed(body)
            }
        };
        let t = self.timeouts;
        let sent = up.send_request(self, t, client, call.method, &uri, &headers, body).await;
        let resp = sent.map_err(|e| match upload.as_ref().and_then(|u| u.failure.take()) {
            Some(f) => f.error(),
            None => e,
        })?;
        let content_type = HeaderValue::from_static(match call.path.split('?').next() {
            Some(p) if p.ends_with("/content") => "application/octet-stream",
            _ => "application/json",
        });
        Ok(ResourceReply { status: 200, content_type, body: relay(self.name.clone(), t, resp) })
    }
}

/// An upstream body as it arrives, within the idle and total timeouts; the
/// connection's permit is held until it ends.
fn relay(
    provider: String,
    t: Timeouts,
    resp: super::transport::OkResponse,
) -> LocalBoxStream<'static, Result<Bytes, GatewayError>> {
    let state = Some((resp.body, resp.permit, resp.deadline));
    futures_util::stream::unfold(state, move |state| {
        let provider = provider.clone();
        async move {
            let (mut body, permit, deadline) = state?;
            match within(body.chunk(), || (Instant::now() + t.idle).min(deadline)).await {
                Err(_) => {
                    // A timer fires at or after its instant.
                    let (phase, d) = if Instant::now() >= deadline {
                        (TimeoutPhase::Total, t.total)
                    } else {
                        (TimeoutPhase::Idle, t.idle)
                    };
                    Some((Err(GatewayError::UpstreamTimeout { provider, phase, ms: d.as_millis() as u64 }), None))
                }
                Ok(None) => None,
                Ok(Some(Err(e))) => Some((
                    Err(GatewayError::UpstreamProtocol {
                        provider,
                        detail: format!("the response body was cut off: {e}"),
                    }),
                    None,
                )),
                Ok(Some(Ok(b))) => Some((Ok(b), Some((body, permit, deadline)))),
            }
        }
    })
    .boxed_local()
}
