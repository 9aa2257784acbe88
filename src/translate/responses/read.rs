//! Lenient readers, and the chat answers as this translation reads them.
//!
//! Agents resend whole conversations, including item types and fields a
//! chat deployment has no use for (hosted tool calls whose `output` is an
//! object, reasoning items with `content: null`, ...). A strict reader
//! would turn one such member into a 400 for the whole request; these
//! readers take what they understand and skip the rest.
//!
//! The chat answer types are separate from `translate::openai`'s because
//! this direction needs what those leave out: `reasoning_content` /
//! `reasoning` text (vLLM, Ollama, DeepSeek), `refusal` deltas, and
//! `completion_tokens_details.reasoning_tokens`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A string, or nothing when the value is null or of another type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(s))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Message content or tool output: a string, a list of parts, or
/// (null, or an object such as a hosted tool's structured output) nothing
/// this translation can use.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Content<'a, T> {
    #[default]
    None,
    Str(Cow<'a, str>),
    Parts(Vec<T>),
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for Content<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = Content<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Content::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Content::Str(Cow::Owned(s)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(Content::Parts(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Content::None)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

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
pub fn upstream_error(data: &[u8]) -> Option<(String, String)> {
    use sonic_rs::JsonValueTrait;
    if crate::json::nesting_exceeds(data, crate::translate::MAX_DEPTH) {
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
        let t: T<'_> = parse(br#"{"a": {"x": [1, {"y": 2}]}, "c": {"type": "computer_screenshot"}}"#).unwrap();
        assert_eq!(t.a, Text(None));
        assert_eq!(t.c, Content::None);
        let t: T<'_> = parse(br#"{"a": "q\"s", "c": [1, 2]}"#).unwrap();
        assert_eq!(t.a.as_deref(), Some("q\"s"));
        assert_eq!(t.c, Content::Parts(vec![1, 2]));
        let t: T<'_> = parse(br#"{"a": null, "c": "s"}"#).unwrap();
        assert_eq!(t.a, Text(None));
        assert_eq!(t.c, Content::Str(Cow::Borrowed("s")));
        let t: T<'_> = parse(br#"{"a": 1.5, "c": true}"#).unwrap();
        assert_eq!((t.a, t.c), (Text(None), Content::None));
    }

    #[test]
    fn upstream_errors() {
        let e =
            upstream_error(br#"{"error": {"message": "boom", "type": "server_error", "code": "rate_limit_exceeded"}}"#);
        assert_eq!(e, Some(("rate_limit_exceeded".into(), "boom".into())));
        assert_eq!(upstream_error(br#"{"error": "plain"}"#), Some(("error".into(), "plain".into())));
        assert_eq!(upstream_error(br#"{"error": null}"#), None);
        assert_eq!(upstream_error(br#"{"choices": []}"#), None);
    }
}
