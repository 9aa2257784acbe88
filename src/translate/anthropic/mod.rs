//! Anthropic's Messages API: its shapes, and translation from and to the
//! gateway's OpenAI form.
//!
//! - [`request`]: an OpenAI chat request becomes a Messages request.
//! - [`response`]: a Messages answer (and an error body) becomes OpenAI's.
//! - [`stream`]: Messages stream events become OpenAI chunks.
//! - [`cloud`]: a Messages body as Vertex AI and Bedrock take it for Claude.
//!
//! References: https://docs.anthropic.com/en/api/messages,
//! https://docs.anthropic.com/en/api/messages-streaming,
//! https://docs.anthropic.com/en/api/errors,
//! https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching

pub mod cloud;
pub mod request;
pub mod response;
pub mod stream;

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize as De, Serialize};
use sonic_rs::{LazyValue, OwnedLazyValue};

use super::StrOrVec;
use super::openai;

/// Opaque JSON kept as raw text: borrowed from the input, or owned when it
/// had to be built or unescaped (tool arguments arrive as a JSON string).
#[derive(Debug, Clone)]
pub enum RawJson<'a> {
    Borrowed(LazyValue<'a>),
    Owned(OwnedLazyValue),
}

impl RawJson<'_> {
    pub fn as_raw_str(&self) -> Cow<'_, str> {
        use sonic_rs::JsonValueTrait;
        match self {
            RawJson::Borrowed(v) => Cow::Borrowed(v.as_raw_str()),
            // OwnedLazyValue has no raw accessor; re-serialising is exact for raw text.
            RawJson::Owned(v) => match sonic_rs::to_string(v) {
                Ok(s) => Cow::Owned(s),
                Err(_) => Cow::Borrowed(if v.is_object() { "{}" } else { "null" }),
            },
        }
    }

    pub fn is_object(&self) -> bool {
        use sonic_rs::JsonValueTrait;
        match self {
            RawJson::Borrowed(v) => v.is_object(),
            RawJson::Owned(v) => v.is_object(),
        }
    }

    /// Parse JSON text that arrived inside a string (OpenAI's tool
    /// `arguments`), refusing deep nesting first. `None` if it is not JSON.
    pub fn parse_owned<'b>(text: &str) -> Option<RawJson<'b>> {
        if crate::json::nesting_exceeds(text.as_bytes(), super::MAX_DEPTH) {
            return None;
        }
        sonic_rs::from_str::<OwnedLazyValue>(text).ok().map(RawJson::Owned)
    }

    pub fn empty_object<'b>() -> RawJson<'b> {
        RawJson::parse_owned("{}").unwrap_or(RawJson::Owned(OwnedLazyValue::default()))
    }
}

impl Serialize for RawJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RawJson::Borrowed(v) => v.serialize(s),
            RawJson::Owned(v) => v.serialize(s),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        LazyValue::deserialize(d).map(RawJson::Borrowed)
    }
}

impl<T: Serialize> Serialize for StrOrVec<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StrOrVec::Str(t) => s.serialize_str(t),
            StrOrVec::Vec(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for x in v {
                    seq.serialize_element(x)?;
                }
                seq.end()
            }
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A content block, read and written flat (see `openai::Part` for why).
#[derive(Debug, Default, Serialize, De)]
pub struct Block<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub input: Option<RawJson<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<StrOrVec<'a, Block<'a>>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_error: bool,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<RawJson<'a>>,
}

impl<'a> Block<'a> {
    pub fn text(text: Cow<'a, str>) -> Block<'a> {
        Block { kind: Cow::Borrowed("text"), text: Some(text), ..Block::default() }
    }
}

/// An image or document source: `base64` (with `media_type`, `data`), `url` or `text`.
#[derive(Debug, Default, Serialize, De)]
pub struct Source<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Cow<'a, str>>,
}

/// A whole (non-stream) Messages answer, and `message_start.message`.
#[derive(Debug, Default, Serialize, De)]
pub struct MessagesResponse<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(rename = "type", borrow, default = "message")]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default = "assistant")]
    pub role: Cow<'a, str>,
    #[serde(borrow, default)]
    pub model: Cow<'a, str>,
    #[serde(borrow, default)]
    pub content: Vec<Block<'a>>,
    #[serde(borrow, default)]
    pub stop_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub stop_sequence: Option<Cow<'a, str>>,
    #[serde(default)]
    pub usage: Usage,
}

fn message() -> Cow<'static, str> {
    Cow::Borrowed("message")
}

fn assistant() -> Cow<'static, str> {
    Cow::Borrowed("assistant")
}

/// What Sluice does with prompt-caching hints (`cache_control`) on requests
/// it translates for Anthropic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PromptCaching {
    /// `cache_control` the client put on messages, content parts or tools is
    /// copied to the matching Anthropic blocks; nothing is added.
    #[default]
    Client,
    /// As `Client`, and Sluice also marks the end of the system prompt and of
    /// the tool list (the usual stable prefix) as cacheable.
    Auto,
    /// Every `cache_control` hint is dropped.
    Off,
}

/// Anthropic `usage`. `input_tokens` excludes tokens read from or written
/// to the prompt cache, which are counted apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, De)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
}

impl Usage {
    /// Later counts win (`message_delta` usage is cumulative and may repeat
    /// the input counts of `message_start`).
    pub fn merge(&mut self, later: &Usage) {
        let pick = |a: &mut Option<u64>, b: Option<u64>| {
            if b.is_some() {
                *a = b;
            }
        };
        pick(&mut self.input_tokens, later.input_tokens);
        pick(&mut self.cache_creation_input_tokens, later.cache_creation_input_tokens);
        pick(&mut self.cache_read_input_tokens, later.cache_read_input_tokens);
        pick(&mut self.output_tokens, later.output_tokens);
    }

    /// OpenAI's view: every prompt token (fresh, cache writes and cache
    /// reads) in `prompt_tokens`, cache reads also in `cached_tokens`.
    pub fn to_openai(self) -> openai::Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let prompt = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
            .saturating_add(cached);
        openai::Usage::new(prompt, self.output_tokens.unwrap_or(0), cached)
    }

    /// The reverse, for the `/v1/messages` ingress over OpenAI-shaped upstreams.
    pub fn from_openai(u: &openai::Usage) -> Usage {
        let cached = u.cached().min(u.prompt_tokens);
        Usage {
            input_tokens: Some(u.prompt_tokens - cached),
            cache_creation_input_tokens: Some(0),
            cache_read_input_tokens: Some(cached),
            output_tokens: Some(u.completion_tokens),
        }
    }
}

/// The usage of a whole Messages answer, in OpenAI's terms.
pub fn usage_from_body(body: &[u8]) -> Option<openai::Usage> {
    let body = super::readable(body).ok()?;
    let raw = sonic_rs::get(body, ["usage"]).ok()?;
    let u: Usage = sonic_rs::from_str(raw.as_raw_str()).ok()?;
    Some(u.to_openai())
}

/// Anthropic's `stop_reason` as OpenAI's `finish_reason`.
pub fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, unknown
        _ => "stop",
    }
}

/// OpenAI's `finish_reason` as Anthropic's `stop_reason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// `{"type":"error","error":{"type":..,"message":..}}`
#[derive(Debug, Serialize, De)]
pub struct ErrorBody<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize, De)]
pub struct ErrorDetail<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub message: Cow<'a, str>,
}

/// An Anthropic error body from its type and message.
pub fn error_body(kind: &str, message: &str) -> bytes::Bytes {
    let body = ErrorBody {
        kind: Cow::Borrowed("error"),
        error: ErrorDetail { kind: Cow::Borrowed(kind), message: Cow::Borrowed(message) },
    };
    let mut out = Vec::with_capacity(64 + message.len());
    super::write_json(&mut out, &body);
    bytes::Bytes::from(out)
}

/// Anthropic's error `type` for an HTTP status
/// (https://docs.anthropic.com/en/api/errors).
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        // 400 and any other 4xx.
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}
