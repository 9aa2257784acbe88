//! What the clouds' embedding translations share (`vertex`, `bedrock::embed`):
//! reading an OpenAI `/v1/embeddings` request's text inputs and encoding,
//! and writing vectors back as OpenAI's `list` of `embedding`s.
//!
//! Token-array inputs are refused: the clouds' models embed text, and
//! turning OpenAI token ids back into text would need OpenAI's tokenizer
//! for a model that is not OpenAI's. `encoding_format: "base64"` is done
//! here (the clouds answer floats only): each vector as little-endian
//! `f32`s, base64-encoded, as OpenAI sends it.

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::openai::Usage;
use super::{StrOrVec, TranslateError, parse, write_json};

#[derive(Deserialize)]
pub(super) struct EmbeddingsRequest<'a> {
    #[serde(borrow)]
    pub input: StrOrVec<'a, Cow<'a, str>>,
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(borrow, default)]
    encoding_format: Option<Cow<'a, str>>,
}

impl<'a> EmbeddingsRequest<'a> {
    /// The request, for `cloud` (named in the error when `input` is not
    /// text). Text, not bytes: its callers have checked UTF-8 ([`super::utf8`]).
    pub fn read(body: &'a str, cloud: &str) -> Result<(EmbeddingsRequest<'a>, Encoding), TranslateError> {
        let r: EmbeddingsRequest<'_> = parse(body).map_err(|e| {
            TranslateError::new(
                format!(
                    "Invalid embeddings request for {cloud} ({e}); `input` must be a string or an array of strings."
                ),
                None,
            )
        })?;
        let encoding = match r.encoding_format.as_deref() {
            None | Some("float") => Encoding::Float,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                return Err(TranslateError::new(
                    format!("Invalid 'encoding_format': expected 'float' or 'base64', got '{other}'."),
                    Some("encoding_format"),
                ));
            }
        };
        if matches!(&r.input, StrOrVec::Vec(v) if v.is_empty()) {
            return Err(TranslateError::new("Invalid 'input': it must not be empty.", Some("input")));
        }
        Ok((r, encoding))
    }

    /// The input strings, in order.
    pub fn texts(&self) -> Vec<&str> {
        match &self.input {
            StrOrVec::Str(s) => vec![s],
            StrOrVec::Vec(v) => v.iter().map(|s| &**s).collect(),
        }
    }
}

/// Does the client want base64 vectors? Needed again for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct Item {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

/// `vectors` (in input order) as OpenAI's embeddings list, `tokens` as its
/// `usage.prompt_tokens`; `size_hint` presizes the output.
pub fn openai_list(
    vectors: impl IntoIterator<Item = Vec<f32>>,
    model: &str,
    encoding: Encoding,
    tokens: u64,
    size_hint: usize,
) -> (Vec<u8>, Usage) {
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, values)| {
            let embedding = match encoding {
                Encoding::Float => Vector::Float(values),
                Encoding::Base64 => {
                    let raw: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Vector::Base64(base64::engine::general_purpose::STANDARD.encode(raw))
                }
            };
            Item { object: "embedding", index, embedding }
        })
        .collect();
    let usage =
        Usage { prompt_tokens: tokens, completion_tokens: 0, total_tokens: tokens, prompt_tokens_details: None };
    let mut out = Vec::with_capacity(size_hint + 64);
    write_json(&mut out, &List { object: "list", data, model, usage });
    (out, usage)
}
