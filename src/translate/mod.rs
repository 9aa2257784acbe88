//! Protocol translation: pure functions and small state machines, no I/O.
//!
//! The gateway's canonical form is OpenAI's: a provider that speaks another
//! protocol turns the client's OpenAI request into its own ([`anthropic`],
//! [`gemini`], [`bedrock`]'s Converse) and its answers back into OpenAI
//! bodies and chunks, so usage capture, metrics and the relay never learn
//! which protocol an upstream speaks. [`messages`] is the other direction,
//! for the Anthropic-shaped ingress `POST /v1/messages`: an Anthropic
//! request becomes an OpenAI one, and OpenAI answers become Anthropic bodies
//! and events.
//!
//! Everything here is deterministic (time and ids come in through
//! arguments), parses untrusted input only after [`utf8`] and
//! [`crate::json::nesting_exceeds`] have cleared it, and returns errors
//! instead of panicking on any input.
//!
//! It uses nothing of the gateway but [`crate::json`]: its own types (each
//! protocol's `usage`, [`TranslateError`], the Anthropic
//! [`PromptCaching`](anthropic::PromptCaching) option) are turned
//! into the gateway's by their users (`crate::usage`, `crate::error`,
//! `crate::config`), so it can be fuzzed and reviewed alone.

pub mod anthropic;
pub mod bedrock;
pub mod embeddings;
pub mod gemini;
pub mod lenient;
pub mod messages;
pub mod openai;
pub mod responses;
mod sse;
#[cfg(test)]
mod utf8_tests;
pub mod vertex;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

pub use sse::SseOut;

/// Deepest JSON nesting accepted anywhere a translator parses.
pub const MAX_DEPTH: usize = crate::json::MAX_DEPTH;

/// A request that cannot be translated: the client's fault (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    pub message: String,
    pub param: Option<&'static str>,
}

impl TranslateError {
    pub fn new(message: impl Into<String>, param: Option<&'static str>) -> Self {
        TranslateError { message: message.into(), param }
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a stream could not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The upstream sent an `error` event.
    Upstream { kind: String, message: String },
    /// An event was not what the protocol promises.
    Invalid(String),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Upstream { kind, message } => write!(f, "the upstream reported {kind}: {message}"),
            StreamError::Invalid(m) => f.write_str(m),
        }
    }
}

/// A stream translator: fed each upstream event's `data` payload, writing
/// the client-protocol events it becomes; told when the upstream ended.
pub trait StreamTranslate {
    fn event(&mut self, data: &[u8], out: &mut SseOut) -> Result<(), StreamError>;
    fn end(&mut self, out: &mut SseOut) -> Result<(), StreamError>;
    /// The stream failed with `e` (the translator's own error, or the
    /// upstream's): write the protocol's own closing events, for protocols
    /// whose failure carries the answer so far (the Responses API's
    /// `response.failed`). By default nothing: the relay then ends the
    /// stream with the client protocol's error event.
    fn fail(&mut self, _e: &StreamError, _out: &mut SseOut) {}
}

/// `body` as text, or why not: the first thing every entry point that
/// parses bytes from outside does.
///
/// sonic-rs reads object keys (and `LazyValue::as_str`) from a byte slice
/// without checking UTF-8 (it only reports invalid UTF-8 after the whole
/// parse, and keys have a `debug_assert!` alone): a key like `"propert\x80"`
/// nested in `tools` became a `&str` that is not UTF-8. The gateway checks
/// client bodies (`crate::peek`) and SSE events (`crate::json::check`), but
/// translated providers' whole answers and upstream error bodies come here
/// unchecked, and the translators are public and fuzzed on their own: so
/// they refuse such bytes themselves, once. It costs nothing extra: the
/// `&str` is handed to sonic-rs's `from_str`/`get`, which skip the UTF-8
/// pass `from_slice` makes over the whole input, so the one pass here
/// replaces it.
pub fn utf8(body: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(body).map_err(|e| format!("the JSON is not valid UTF-8 (at byte {})", e.valid_up_to()))
}

/// `body` as text sonic-rs's lazy readers (`get`, `LazyValue`) may be
/// given: UTF-8 ([`utf8`]) and nested no deeper than [`MAX_DEPTH`] (they
/// recurse over what they skip). [`parse`] bounds the depth itself.
pub fn readable(body: &[u8]) -> Result<&str, String> {
    let text = utf8(body)?;
    if crate::json::nesting_exceeds(body, MAX_DEPTH) {
        return Err(format!("the JSON nests deeper than {MAX_DEPTH} levels"));
    }
    Ok(text)
}

/// Parse untrusted JSON into `T`, borrowing strings from `body` where they
/// need no unescaping. Refuses bodies that nest deeper than [`MAX_DEPTH`]
/// (sonic-rs would overflow its stack on them, see `crate::json`). The
/// error names the path of the offending value (`messages[2].content`).
/// Takes text, not bytes: see [`utf8`].
pub fn parse<'a, T: Deserialize<'a>>(body: &'a str) -> Result<T, String> {
    if crate::json::nesting_exceeds(body.as_bytes(), MAX_DEPTH) {
        return Err(format!("the JSON nests arrays/objects deeper than {MAX_DEPTH} levels"));
    }
    // Fast path without path tracking; only a failure pays for a second,
    // path-tracking pass that says where the bad value is.
    if let Ok(v) = sonic_rs::from_str(body) {
        return Ok(v);
    }
    let mut de = sonic_rs::Deserializer::from_str(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => Ok(v),
        Err(e) => {
            // sonic-rs adds a multi-line excerpt of the input; the first line says it.
            let inner = e.inner().to_string();
            let inner = inner.lines().next().unwrap_or("").trim();
            let path = e.path().to_string();
            if path == "." || path.is_empty() { Err(inner.to_owned()) } else { Err(format!("{path}: {inner}")) }
        }
    }
}

/// Serialise `v` as JSON, appending to `out`.
pub fn write_json<T: serde::Serialize>(out: &mut Vec<u8>, v: &T) {
    // Serialising our own types into a Vec cannot fail (no I/O, no maps with
    // non-string keys); if it ever did, the event would be dropped rather
    // than the gateway panic.
    let _ = sonic_rs::to_writer(&mut *out, v);
}

/// A JSON value that is either one string or an array of `T` (OpenAI's
/// `content`, `stop`; Anthropic's `system`, `tool_result.content`).
#[derive(Debug, Clone, PartialEq)]
pub enum StrOrVec<'a, T> {
    Str(Cow<'a, str>),
    Vec(Vec<T>),
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for StrOrVec<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(std::marker::PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = StrOrVec<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(StrOrVec::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(StrOrVec::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(StrOrVec::Str(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(StrOrVec::Vec(v))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Seconds since the Unix epoch, for `created` (the only clock translators see,
/// passed in by their callers).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Split a `data:` URL (`data:image/png;base64,AAAA`) into media type and
/// base64 payload.
pub fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_or_vec() {
        let v: StrOrVec<'_, u32> = parse(r#""a\"b""#).unwrap();
        assert_eq!(v, StrOrVec::Str(Cow::Owned("a\"b".into())));
        let v: StrOrVec<'_, u32> = parse("[1,2]").unwrap();
        assert_eq!(v, StrOrVec::Vec(vec![1, 2]));
        assert!(parse::<StrOrVec<'_, u32>>("{}").is_err());
        let deep = "[".repeat(1000);
        assert!(parse::<StrOrVec<'_, u32>>(&deep).unwrap_err().contains("deeper"));
        assert!(utf8(b"{\"a\x80\":1}").unwrap_err().contains("UTF-8 (at byte 3)"));
    }

    #[test]
    fn data_urls() {
        assert_eq!(split_data_url("data:image/png;base64,AAAA"), Some(("image/png", "AAAA")));
        assert_eq!(split_data_url("https://x/y.png"), None);
        assert_eq!(split_data_url("data:text/plain,hi"), None);
    }
}
