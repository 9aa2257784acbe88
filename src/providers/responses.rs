//! OpenAI's Responses API (`POST /v1/responses`) over a provider that does
//! not serve it: the request (with the conversation it continues) becomes
//! a chat request for the provider's usual path — so Anthropic and Gemini
//! work through their chat translators — and the answer or stream becomes
//! a Response and its typed events again (`crate::translate::responses`).
//! (An `openai` provider with `responses = true` takes these requests
//! natively, see `openai.rs`.)

use bytes::Bytes;
use sluice_upstream::UpstreamClient;

use super::{Call, Provider, Reply, events};
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::peek::Peek;
use crate::translate::responses::request::{MaxTokensField, Options};
use crate::translate::responses::stream::StreamTranslator;
use crate::translate::responses::{self, Context};

/// One Responses request as the providers need it, worked out once before
/// the first attempt.
#[derive(Debug, Clone, Default)]
pub struct Turn {
    /// The id a translated answer gets (`resp_…`; a native upstream names
    /// its own).
    pub id: String,
    /// Unix seconds when the request arrived.
    pub created_at: u64,
    /// The client's `previous_response_id`, if it sent one.
    pub previous_id: Option<String>,
    /// The stored conversation of `previous_id` (a JSON array of items),
    /// when Sluice keeps it.
    pub history: Option<Bytes>,
}

impl Turn {
    /// A `previous_response_id` Sluice has no conversation for: a
    /// deployment that does not serve the Responses API cannot continue it.
    fn unknown_previous(&self) -> Option<&str> {
        self.previous_id.as_deref().filter(|_| self.history.is_none())
    }
}

pub async fn send(p: &Provider, call: &Call<'_>, client: Option<&UpstreamClient>) -> Result<Reply, GatewayError> {
    let turn =
        call.turn.ok_or_else(|| GatewayError::Internal { detail: "a Responses request without its turn".into() })?;
    if let Some(id) = turn.unknown_previous() {
        return Err(GatewayError::ResponseNotFound { id: id.to_owned(), param: Some("previous_response_id") });
    }
    let opts = Options {
        // OpenAI's reasoning models take only the newer name.
        max_tokens_field: if call.reasoning { MaxTokensField::MaxCompletionTokens } else { MaxTokensField::MaxTokens },
        reasoning_effort: call.reasoning,
    };
    let t = responses::request::translate(call.body, call.upstream_model, turn.history.as_deref(), &opts)?;
    let ctx: Context = t.context(turn.id.clone(), turn.created_at);
    let chat = Bytes::from(t.body);
    // The translated body already names the upstream model and asks for
    // usage, so the provider's own rewrite leaves it as it is.
    let peek =
        Peek { model: call.upstream_model.to_string(), stream: t.stream, include_usage: true, ..Peek::default() };
    let inner = Call { endpoint: Endpoint::Chat, body: &chat, peek: &peek, ..*call };
    match p.send_openai(&inner, client).await? {
        Reply::Complete { body, .. } => {
            let a = responses::response::translate(&body, &ctx).map_err(|e| GatewayError::UpstreamProtocol {
                provider: p.name.clone(),
                detail: format!("invalid chat completion ({e})"),
            })?;
            Ok(Reply::Complete { body: Bytes::from(a.body), usage: a.usage.map(Into::into) })
        }
        Reply::Stream(s) => {
            Ok(Reply::Stream(events::translated(s, StreamTranslator::new(ctx), p.name.clone(), p.secrets().to_vec())))
        }
    }
}
