//! Amazon Bedrock's Converse API (`Converse`, `ConverseStream`): its
//! shapes, and translation from and to the gateway's OpenAI form. Converse
//! is one request and answer shape for every model family on Bedrock
//! (Claude, Llama, Mistral, Nova, Cohere, ...); Bedrock maps it onto each
//! model's own format.
//!
//! - [`request`]: an OpenAI chat request becomes a Converse request.
//! - [`response`]: a Converse answer becomes a `chat.completion`.
//! - [`stream`]: ConverseStream events become OpenAI chunks. The events
//!   arrive in AWS's binary event-stream framing; the provider decodes it
//!   and hands each event over as the union member the API reference
//!   documents (`{"contentBlockDelta": {...}}`), so this module sees JSON only.
//!
//! References: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html,
//! https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html,
//! https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ContentBlock.html,
//! https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_TokenUsage.html,
//! https://docs.aws.amazon.com/bedrock/latest/userguide/tool-use-inference-call.html

pub mod embed;
mod media;
pub mod request;
pub mod response;
pub mod stream;

use std::borrow::Cow;

use serde::Deserialize;

use super::anthropic::RawJson;
use super::openai;

/// Converse's `usage`. `inputTokens` counts the prompt tokens read neither
/// from nor into the prompt cache; those are `cacheReadInputTokens` and
/// `cacheWriteInputTokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_input_tokens: Option<u64>,
}

impl TokenUsage {
    /// OpenAI's view: every prompt token counts as prompt, cache reads as cached.
    pub fn to_openai(self) -> openai::Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_write_input_tokens.unwrap_or(0);
        let prompt = self.input_tokens.saturating_add(read).saturating_add(write);
        openai::Usage::new(prompt, self.output_tokens, read)
    }
}

/// A content block of an answer (`output.message.content[]`), read flat:
/// exactly one member is set. Reasoning blocks are read and dropped (OpenAI's
/// chat answer has no place for them), as are kinds added later.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutBlock<'a> {
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tool_use: Option<ToolUse<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUse<'a> {
    #[serde(borrow)]
    pub tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub input: Option<RawJson<'a>>,
}

/// Converse's `stopReason` as OpenAI's `finish_reason`; `called` says
/// whether the answer made tool calls.
pub fn finish_reason(stop: Option<&str>, called: bool) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        Some("tool_use") => "tool_calls",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow, default, alias = "Message")]
    message: Option<Cow<'a, str>>,
}

/// The message of a Bedrock error body (`{"message": "..."}`; some services
/// write `Message`).
pub fn error_message(body: &[u8]) -> Option<String> {
    let e: ErrorBody<'_> = super::utf8(body).and_then(super::parse).ok()?;
    e.message.map(Cow::into_owned)
}

/// OpenAI's error `type` for a Bedrock error status: the exception's name is
/// in a header, but its status says enough (400 `ValidationException`, 404
/// `ResourceNotFoundException`, 424 `ModelErrorException`, ...).
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 | 424 => "invalid_request_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "upstream_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_cache_reads_and_writes_as_prompt() {
        let u: TokenUsage = crate::translate::parse(
            r#"{"inputTokens":10,"outputTokens":5,"totalTokens":45,"cacheReadInputTokens":20,"cacheWriteInputTokens":10}"#,
        )
        .unwrap();
        let o = u.to_openai();
        assert_eq!((o.prompt_tokens, o.completion_tokens, o.cached()), (40, 5, 20));
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(finish_reason(Some("end_turn"), false), "stop");
        assert_eq!(finish_reason(Some("stop_sequence"), false), "stop");
        assert_eq!(finish_reason(Some("max_tokens"), false), "length");
        assert_eq!(finish_reason(Some("tool_use"), true), "tool_calls");
        assert_eq!(finish_reason(Some("guardrail_intervened"), false), "content_filter");
        assert_eq!(finish_reason(None, true), "tool_calls");
        assert_eq!(error_message(br#"{"Message":"x"}"#).as_deref(), Some("x"));
    }
}
