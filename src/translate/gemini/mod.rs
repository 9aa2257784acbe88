//! Google's Gemini API (`generateContent`, `streamGenerateContent?alt=sse`):
//! its shapes, and translation from and to the gateway's OpenAI form.
//!
//! References: https://ai.google.dev/api/generate-content,
//! https://ai.google.dev/api/caching#Content,
//! https://ai.google.dev/gemini-api/docs/function-calling,
//! https://ai.google.dev/gemini-api/docs/troubleshooting

pub mod request;
pub mod response;
pub mod stream;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::anthropic::RawJson;
use super::openai;

/// A `Content`: a role and its parts.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Content<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub parts: Vec<Part<'a>>,
}

/// One `Part`, flat: exactly one of its data fields is set.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    /// A thought summary of a thinking model (not part of the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse<'a>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob<'a> {
    #[serde(borrow)]
    pub mime_type: Cow<'a, str>,
    #[serde(borrow)]
    pub data: Cow<'a, str>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub file_uri: Cow<'a, str>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FunctionCall<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub args: Option<RawJson<'a>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FunctionResponse<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub response: RawJson<'a>,
}

/// A `GenerateContentResponse` (whole, or one stream event).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse<'a> {
    #[serde(borrow, default)]
    pub candidates: Vec<Candidate<'a>>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(borrow, default)]
    pub model_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub response_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub prompt_feedback: Option<PromptFeedback<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate<'a> {
    #[serde(borrow, default)]
    pub content: Option<Content<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub index: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback<'a> {
    #[serde(borrow, default)]
    pub block_reason: Option<Cow<'a, str>>,
}

/// `usageMetadata`. `promptTokenCount` includes the cached part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    #[serde(default)]
    pub total_token_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_content_token_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thoughts_token_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_prompt_token_count: Option<u64>,
}

impl UsageMetadata {
    /// OpenAI's view: tool-use prompt tokens count as prompt, thinking
    /// tokens as completion (as OpenAI counts reasoning tokens).
    pub fn to_openai(self) -> openai::Usage {
        let prompt = self.prompt_token_count.saturating_add(self.tool_use_prompt_token_count.unwrap_or(0));
        let completion = self.candidates_token_count.saturating_add(self.thoughts_token_count.unwrap_or(0));
        openai::Usage::new(prompt, completion, self.cached_content_token_count.unwrap_or(0))
    }
}

/// Gemini's `finishReason` as OpenAI's `finish_reason`; `called` says
/// whether the candidate made function calls.
pub fn finish_reason(reason: Option<&str>, called: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some("SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" | "LANGUAGE") => {
            "content_filter"
        }
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// A deterministic id for the `n`th function call of an answer (Gemini
/// may send no ids): a hash of the response id (or the timestamp), then `n`.
pub fn call_id(response_id: Option<&str>, created: u64, n: u32) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let seed = response_id.map_or_else(|| created.to_string(), str::to_owned);
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("call_{:08x}{n}", h as u32)
}

#[derive(Debug, Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow)]
    error: ErrorDetail<'a>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail<'a> {
    #[serde(borrow, default)]
    message: Cow<'a, str>,
    #[serde(borrow, default)]
    status: Cow<'a, str>,
}

/// `(status, message)` of a Gemini error body
/// (`{"error":{"code":429,"message":..,"status":"RESOURCE_EXHAUSTED"}}`).
pub fn error_parts(body: &[u8]) -> Option<(String, String)> {
    read_error(super::utf8(body).ok()?)
}

/// [`error_parts`] of text already checked.
fn read_error(body: &str) -> Option<(String, String)> {
    let e: ErrorBody<'_> = super::parse(body).ok()?;
    Some((e.error.status.into_owned(), e.error.message.into_owned()))
}

/// OpenAI's error `type` for a Gemini status.
pub fn error_type(status: &str) -> &'static str {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => "invalid_request_error",
        "NOT_FOUND" => "not_found_error",
        "PERMISSION_DENIED" | "UNAUTHENTICATED" => "permission_error",
        "RESOURCE_EXHAUSTED" => "rate_limit_error",
        _ => "upstream_error",
    }
}
