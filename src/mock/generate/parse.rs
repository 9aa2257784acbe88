//! Reading request bodies in one streaming pass.
//!
//! Requests are read with serde visitors over sonic-rs instead of derived
//! structs: the mock needs only a handful of fields plus word counts and a
//! hash of the prompt text, so the visitors fold the prompt into
//! [`TextStats`] as it is parsed and never build a message list. Unknown
//! fields are skipped (validated, not stored). When a field has the wrong
//! type, the visitor records which one in a side cell so the error can name
//! it as OpenAI's `param`.

use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Endpoint, GenError};

mod embeddings;
pub(crate) use embeddings::emb_fields;

/// Word count and a deterministic hash of the text seen so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TextStats {
    pub words: u64,
    pub hash: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for TextStats {
    fn default() -> Self {
        TextStats { words: 0, hash: FNV_OFFSET }
    }
}

impl TextStats {
    /// Counts whitespace-separated words and folds the bytes into the hash
    /// (FNV-1a: simple, stable across runs and platforms).
    pub(crate) fn add_text(&mut self, s: &str) {
        let mut h = self.hash;
        let mut in_word = false;
        let mut words = 0u64;
        for &b in s.as_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
            let ws = b.is_ascii_whitespace();
            words += u64::from(!ws && !in_word);
            in_word = !ws;
        }
        // A separator, so ["ab"] and ["a", "b"] hash differently.
        self.hash = (h ^ 0xff).wrapping_mul(FNV_PRIME);
        self.words += words;
    }

    /// A pre-tokenised prompt: each integer is one token.
    pub(crate) fn add_token(&mut self, t: u64) {
        self.hash = (self.hash ^ t).wrapping_mul(FNV_PRIME);
        self.words += 1;
    }
}

/// What `parse_request` needs from a chat or completions body.
#[derive(Default)]
pub(crate) struct GenFields {
    pub model: Option<String>,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub prompt: TextStats,
    /// `messages` (chat) or `prompt` (completions) was present.
    pub has_prompt: bool,
}

/// Deepest nesting accepted in a body (serde_json's default limit too).
const MAX_DEPTH: usize = 128;

/// Parses `body` with `seed` as a whole JSON document, turning errors into
/// OpenAI-style messages that name the offending field when known.
fn run<'de, S: DeserializeSeed<'de>>(
    body: &'de [u8],
    seed: S,
    failed: &Cell<Option<&'static str>>,
) -> Result<S::Value, GenError> {
    if crate::json::nesting_exceeds(body, MAX_DEPTH) {
        return Err(GenError::new(format!("The JSON body nests deeper than {MAX_DEPTH} levels."), None));
    }
    let mut de = sonic_rs::Deserializer::from_slice(body);
    let res = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    res.map_err(|e| match failed.get() {
        Some(param) => GenError::new(format!("Invalid value for '{param}': {e}"), Some(param)),
        None => GenError::new(
            format!(
                "We could not parse the JSON body of your request: {e}. \
                 The body must be a JSON object."
            ),
            None,
        ),
    })
}

/// Reads the next value of `map` with `seed`, recording `param` as the culprit on error.
fn value_seed<'de, A: MapAccess<'de>, S: DeserializeSeed<'de>>(
    map: &mut A,
    seed: S,
    failed: &Cell<Option<&'static str>>,
    param: &'static str,
) -> Result<S::Value, A::Error> {
    map.next_value_seed(seed).inspect_err(|_| failed.set(Some(param)))
}

fn value<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    failed: &Cell<Option<&'static str>>,
    param: &'static str,
) -> Result<T, A::Error> {
    map.next_value().inspect_err(|_| failed.set(Some(param)))
}

/// Top-level keys the mock reads. Matching on `&str` in `visit_str` avoids
/// allocating a `String` per key.
enum Key {
    Model,
    Messages,
    Prompt,
    Stream,
    StreamOptions,
    MaxTokens,
    MaxCompletionTokens,
    Input,
    Dimensions,
    EncodingFormat,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "model" => Key::Model,
                    "messages" => Key::Messages,
                    "prompt" => Key::Prompt,
                    "stream" => Key::Stream,
                    "stream_options" => Key::StreamOptions,
                    "max_tokens" => Key::MaxTokens,
                    "max_completion_tokens" => Key::MaxCompletionTokens,
                    "input" => Key::Input,
                    "dimensions" => Key::Dimensions,
                    "encoding_format" => Key::EncodingFormat,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Seed for a chat or completions body.
pub(crate) struct GenSeed<'c> {
    pub endpoint: Endpoint,
    pub failed: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for GenSeed<'_> {
    type Value = GenFields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<GenFields, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for GenSeed<'_> {
    type Value = GenFields;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GenFields, A::Error> {
        let fl = self.failed;
        let mut out = GenFields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match (key, self.endpoint) {
                (Key::Model, _) => out.model = Some(value(&mut map, fl, "model")?),
                (Key::Messages, Endpoint::Chat) => {
                    value_seed(&mut map, MessagesSeed(&mut out.prompt), fl, "messages")?;
                    out.has_prompt = true;
                }
                (Key::Prompt, Endpoint::Completions) => {
                    value_seed(&mut map, PromptSeed(&mut out.prompt), fl, "prompt")?;
                    out.has_prompt = true;
                }
                (Key::Stream, _) => out.stream = value::<_, Option<bool>>(&mut map, fl, "stream")?.unwrap_or(false),
                (Key::StreamOptions, _) => {
                    let so: Option<StreamOptions> = value(&mut map, fl, "stream_options")?;
                    out.include_usage = so.and_then(|s| s.include_usage).unwrap_or(false);
                }
                (Key::MaxTokens, _) => out.max_tokens = value(&mut map, fl, "max_tokens")?,
                (Key::MaxCompletionTokens, _) => {
                    out.max_completion_tokens = value(&mut map, fl, "max_completion_tokens")?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

pub(crate) fn gen_fields(endpoint: Endpoint, body: &[u8]) -> Result<GenFields, GenError> {
    let failed = Cell::new(None);
    run(body, GenSeed { endpoint, failed: &failed }, &failed)
}

/// `messages`: an array of message objects; only `content` is read.
struct MessagesSeed<'s>(&'s mut TextStats);

impl<'de> DeserializeSeed<'de> for MessagesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for MessagesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of messages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(MessageSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct MessageSeed<'s>(&'s mut TextStats);

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<MsgKey>()? {
            match key {
                MsgKey::Content => map.next_value_seed(ContentSeed(&mut *self.0))?,
                MsgKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

enum MsgKey {
    Content,
    Other,
}

impl<'de> Deserialize<'de> for MsgKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MsgKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<MsgKey, E> {
                Ok(match s {
                    "content" | "text" => MsgKey::Content,
                    _ => MsgKey::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A message's `content`: a string, null, or an array of parts (objects with
/// an optional `text`, e.g. `{"type":"text","text":"..."}`; images etc. are
/// skipped).
struct ContentSeed<'s>(&'s mut TextStats);

impl<'de> DeserializeSeed<'de> for ContentSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContentSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array of content parts, or null")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.add_text(s);
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // A part is an object; its `text` (if any) is read by MessageSeed's
        // visitor, which treats `text` like `content`.
        while seq.next_element_seed(MessageSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// Completions `prompt`: a string, an array of strings, an array of token
/// ids, or an array of arrays of token ids.
struct PromptSeed<'s>(&'s mut TextStats);

impl<'de> DeserializeSeed<'de> for PromptSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PromptSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array of strings, or an array of token arrays")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.add_text(s);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, t: u64) -> Result<(), E> {
        self.0.add_token(t);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(PromptSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}
