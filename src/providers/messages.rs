//! The Anthropic-shaped ingress (`POST /v1/messages`) over a provider that
//! does not speak Anthropic: the request becomes an OpenAI chat request for
//! the provider's usual path, and its answer becomes Anthropic's again.
//! (An `anthropic` provider takes these requests natively, untouched.)
//!
//! Also: the error body and error event a client of a route expects.

use bytes::Bytes;
use sluice_upstream::UpstreamClient;

use super::{Call, Provider, Reply, events};
use crate::endpoint::{ClientProtocol, Endpoint};
use crate::error::GatewayError;
use crate::peek::Peek;
use crate::translate::messages::{self, stream::StreamTranslator};

pub async fn send(p: &Provider, call: &Call<'_>, client: Option<&UpstreamClient>) -> Result<Reply, GatewayError> {
    let opts = messages::request::Options { reasoning: call.reasoning };
    let (chat, stream) = messages::request::translate_with(call.body, call.upstream_model, &opts)?;
    let chat = Bytes::from(chat);
    // The translated body already names the upstream model and asks for
    // usage, so the provider's own rewrite leaves it as it is.
    let peek = Peek { model: call.upstream_model.to_string(), stream, include_usage: true, ..Peek::default() };
    let inner = Call { endpoint: Endpoint::Chat, body: &chat, peek: &peek, ..*call };
    match p.send_openai(&inner, client).await? {
        Reply::Complete { body, .. } => {
            let (out, usage) = messages::response::translate(&body).map_err(|e| GatewayError::UpstreamProtocol {
                provider: p.name.clone(),
                detail: format!("invalid chat completion ({e})"),
            })?;
            Ok(Reply::Complete { body: Bytes::from(out), usage: usage.map(Into::into) })
        }
        Reply::Stream(s) => {
            Ok(Reply::Stream(events::translated(s, StreamTranslator::new(), p.name.clone(), p.secrets().to_vec())))
        }
    }
}

/// The error body for a client of `endpoint`: OpenAI's shape (the
/// Responses API's errors are OpenAI's too), or Anthropic's on
/// `/v1/messages` and `count_tokens`.
pub fn error_body(endpoint: Endpoint, e: &GatewayError) -> Bytes {
    match endpoint.protocol() {
        ClientProtocol::Anthropic => anthropic_error_body(e),
        ClientProtocol::OpenAi | ClientProtocol::Responses => e.body(),
    }
}

/// The error event that ends a stream on `endpoint` (a Responses stream
/// ends with `response.failed`, which needs the stream's state: the relay
/// writes it).
pub fn error_event(endpoint: Endpoint, e: &GatewayError) -> Bytes {
    match endpoint.protocol() {
        ClientProtocol::Anthropic => messages::error_event(&anthropic_error_body(e)),
        ClientProtocol::OpenAi | ClientProtocol::Responses => e.sse_event(),
    }
}

/// A gateway error in Anthropic's shape: the OpenAI-shaped error, translated.
fn anthropic_error_body(e: &GatewayError) -> Bytes {
    let from_upstream = matches!(e, GatewayError::UpstreamStatus { .. });
    messages::error_body(e.status().as_u16(), &e.body(), from_upstream, &e.to_string())
}
