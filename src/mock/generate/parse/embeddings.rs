//! Reading an embeddings request: its inputs (each hashed and counted, never
//! kept), `dimensions` and `encoding_format`, in the same one pass.

use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{GenError, Key, TextStats, run, value, value_seed};

/// One embeddings input: its hash and token count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EmbInput {
    pub hash: u64,
    pub tokens: u64,
}

#[derive(Default)]
pub(crate) struct EmbFields {
    pub model: Option<String>,
    pub inputs: Option<Vec<EmbInput>>,
    pub dimensions: Option<u64>,
    pub base64: bool,
}

struct EmbSeed<'c> {
    failed: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for EmbSeed<'_> {
    type Value = EmbFields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<EmbFields, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EmbSeed<'_> {
    type Value = EmbFields;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EmbFields, A::Error> {
        let fl = self.failed;
        let mut out = EmbFields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Model => out.model = Some(value(&mut map, fl, "model")?),
                Key::Input => out.inputs = Some(value_seed(&mut map, InputSeed, fl, "input")?),
                Key::Dimensions => out.dimensions = value(&mut map, fl, "dimensions")?,
                Key::EncodingFormat => {
                    let f: Option<&str> = value(&mut map, fl, "encoding_format")?;
                    out.base64 = match f {
                        None | Some("float") => false,
                        Some("base64") => true,
                        Some(_) => {
                            fl.set(Some("encoding_format"));
                            return Err(de::Error::custom("expected \"float\" or \"base64\""));
                        }
                    };
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

pub(crate) fn emb_fields(body: &[u8]) -> Result<EmbFields, GenError> {
    let failed = Cell::new(None);
    run(body, EmbSeed { failed: &failed }, &failed)
}

/// Embeddings `input`: one string, or an array of strings, or one array of
/// token ids, or an array of arrays of token ids.
struct InputSeed;

impl<'de> DeserializeSeed<'de> for InputSeed {
    type Value = Vec<EmbInput>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<EmbInput>, D::Error> {
        d.deserialize_any(self)
    }
}

fn text_input(s: &str) -> EmbInput {
    let mut t = TextStats::default();
    t.add_text(s);
    EmbInput { hash: t.hash, tokens: t.words.max(1) }
}

impl<'de> Visitor<'de> for InputSeed {
    type Value = Vec<EmbInput>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array of strings, an array of integers, or an array of arrays of integers")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<EmbInput>, E> {
        Ok(vec![text_input(s)])
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<EmbInput>, A::Error> {
        let mut inputs = Vec::new();
        // Integers at the top level form a single tokenised input.
        let mut flat: Option<TextStats> = None;
        while let Some(item) = seq.next_element::<InputItem>()? {
            match item {
                InputItem::Token(t) if inputs.is_empty() => flat.get_or_insert_with(TextStats::default).add_token(t),
                InputItem::Input(i) if flat.is_none() => inputs.push(i),
                _ => return Err(de::Error::custom("mixes integers with strings or arrays")),
            }
        }
        if let Some(t) = flat {
            inputs.push(EmbInput { hash: t.hash, tokens: t.words });
        }
        if inputs.is_empty() {
            return Err(de::Error::custom("must not be an empty array"));
        }
        Ok(inputs)
    }
}

enum InputItem {
    Token(u64),
    Input(EmbInput),
}

impl<'de> Deserialize<'de> for InputItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an integer, or an array of integers")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<InputItem, E> {
                Ok(InputItem::Input(text_input(s)))
            }
            fn visit_u64<E: de::Error>(self, t: u64) -> Result<InputItem, E> {
                Ok(InputItem::Token(t))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InputItem, A::Error> {
                let mut t = TextStats::default();
                while let Some(tok) = seq.next_element::<u64>()? {
                    t.add_token(tok);
                }
                if t.words == 0 {
                    return Err(de::Error::custom("a token array must not be empty"));
                }
                Ok(InputItem::Input(EmbInput { hash: t.hash, tokens: t.words }))
            }
        }
        d.deserialize_any(V)
    }
}
