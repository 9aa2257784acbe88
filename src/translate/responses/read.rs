//! The chat answers as the Responses translation reads them, and the
//! lenient readers it shares with the Messages translation
//! ([`crate::translate::lenient`]).
//!
//! The chat answer types are separate from `translate::openai`'s because
//! this direction needs what those leave out: `reasoning_content` /
//! `reasoning` text (vLLM, Ollama, DeepSeek), `refusal` deltas, and
//! `completion_tokens_details.reasoning_tokens`.

use serde::Deserialize;

pub use crate::translate::lenient::{Content, Text};

// ------------------------------------------------------------ chat answers

/// `chat.completion`.
#[derive(Debug, Deserialize)]
pub struct Completion<'a> {
    #[serde(borrow, default)]
    pub model: Text<'a>,
    #[serde(borrow, default)]
    pub choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    pub usage: Option<ChatUsage>,
}

#[derive(Debug, Deserialize)]
pub struct Choice<'a> {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(borrow, default)]
    pub message: Option<Message<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Text<'a>,
}

/// The assistant message of a completion, or the delta of a chunk (the
/// same members, each optional).
#[derive(Debug, Default, Deserialize)]
pub struct Message<'a> {
    #[serde(borrow, default)]
    pub content: Text<'a>,
    #[serde(borrow, default)]
    pub refusal: Text<'a>,
    #[serde(borrow, default)]
    pub reasoning_content: Text<'a>,
    #[serde(borrow, default)]
    pub reasoning: Text<'a>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
}

impl Message<'_> {
    /// Reasoning text, under either name servers use for it.
    pub fn reasoning(&self) -> Option<&str> {
        self.reasoning_content.as_deref().or(self.reasoning.as_deref()).filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Deserialize)]
pub struct ToolCall<'a> {
    /// Only in chunks: which call of the message a delta continues.
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(borrow, default)]
    pub id: Text<'a>,
    #[serde(borrow, default)]
    pub function: Option<Function<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Function<'a> {
    #[serde(borrow, default)]
    pub name: Text<'a>,
    #[serde(borrow, default)]
    pub arguments: Text<'a>,
}

/// `chat.completion.chunk`.
#[derive(Debug, Deserialize)]
pub struct Chunk<'a> {
    #[serde(borrow, default)]
    pub model: Text<'a>,
    #[serde(borrow, default)]
    pub choices: Option<Vec<ChunkChoice<'a>>>,
    #[serde(default)]
    pub usage: Option<ChatUsage>,
}

#[derive(Debug, Deserialize)]
pub struct ChunkChoice<'a> {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(borrow, default)]
    pub delta: Option<Message<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Text<'a>,
}

/// Chat `usage`, with the details this direction reports.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct ChatUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct CompletionDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl ChatUsage {
    pub fn to_usage(self) -> super::Usage {
        super::Usage {
            input_tokens: self.prompt_tokens.unwrap_or(0),
            output_tokens: self.completion_tokens.unwrap_or(0),
            cached_tokens: self.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
            reasoning_tokens: self.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

/// `(code or type, message)` of a chat error body or a mid-stream
/// `{"error": {...}}` chunk (vLLM and others report failures that way).
pub fn upstream_error(data: &str) -> Option<(String, String)> {
    use sonic_rs::JsonValueTrait;
    if crate::json::nesting_exceeds(data.as_bytes(), crate::translate::MAX_DEPTH) {
        return None;
    }
    let err = sonic_rs::get(data, ["error"]).ok()?;
    if err.is_null() {
        return None;
    }
    let raw = err.as_raw_str();
    let text = |k: &str| sonic_rs::get(raw, [k]).ok().and_then(|v| v.as_str().map(str::to_owned));
    let message = text("message").or_else(|| err.as_str().map(str::to_owned))?;
    let kind = text("code").or_else(|| text("type")).unwrap_or_else(|| "error".to_owned());
    Some((kind, message))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::translate::parse;

    #[derive(Deserialize)]
    struct T<'a> {
        #[serde(borrow, default)]
        a: Text<'a>,
        #[serde(borrow, default)]
        c: Content<'a, u32>,
    }

    #[test]
    fn lenient_readers_skip_what_they_do_not_use() {
        let t: T<'_> = parse(r#"{"a": {"x": [1, {"y": 2}]}, "c": {"type": "computer_screenshot"}}"#).unwrap();
        assert_eq!(t.a, Text(None));
        assert_eq!(t.c, Content::None);
        let t: T<'_> = parse(r#"{"a": "q\"s", "c": [1, 2]}"#).unwrap();
        assert_eq!(t.a.as_deref(), Some("q\"s"));
        assert_eq!(t.c, Content::Parts(vec![1, 2]));
        let t: T<'_> = parse(r#"{"a": null, "c": "s"}"#).unwrap();
        assert_eq!(t.a, Text(None));
        assert_eq!(t.c, Content::Str(Cow::Borrowed("s")));
        let t: T<'_> = parse(r#"{"a": 1.5, "c": true}"#).unwrap();
        assert_eq!((t.a, t.c), (Text(None), Content::None));
    }

    #[test]
    fn upstream_errors() {
        let e =
            upstream_error(r#"{"error": {"message": "boom", "type": "server_error", "code": "rate_limit_exceeded"}}"#);
        assert_eq!(e, Some(("rate_limit_exceeded".into(), "boom".into())));
        assert_eq!(upstream_error(r#"{"error": "plain"}"#), Some(("error".into(), "plain".into())));
        assert_eq!(upstream_error(r#"{"error": null}"#), None);
        assert_eq!(upstream_error(r#"{"choices": []}"#), None);
    }
}
