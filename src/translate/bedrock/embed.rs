//! Embeddings on Bedrock through `InvokeModel`, in each model family's own
//! body: an OpenAI `/v1/embeddings` request becomes one or more InvokeModel
//! bodies, and their answers one OpenAI list.
//!
//! - Amazon Titan Text Embeddings (`amazon.titan-embed-text-v2:0`, and G1,
//!   `amazon.titan-embed-text-v1`) take one text per call:
//!   `{"inputText", "dimensions", "normalize"}` (G1: `inputText` only) and
//!   answer `{"embedding": [...], "inputTextTokenCount"}`. A request with
//!   n inputs is n calls (the provider runs them). `dimensions` is passed
//!   as Titan's (V2 takes 256, 512 or 1024; Bedrock refuses others);
//!   `normalize` is always true, since OpenAI's vectors are unit length.
//! - Cohere Embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`)
//!   takes up to 96 texts per call: `{"texts": [...], "input_type"}` and
//!   answers `{"embeddings": [[...]], "id", "response_type", "texts"}` (or
//!   `{"embeddings": {"float": [[...]]}}` when types were asked for). Its
//!   vectors have a fixed size, so `dimensions` is refused. `input_type` is
//!   `search_document` unless the request names another of Cohere's four
//!   (a Sluice extension: OpenAI has no such field).
//!
//! References: https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html,
//! https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed-v3.html

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::translate::embeddings::{EmbeddingsRequest, Encoding, openai_list};
use crate::translate::openai::Usage;
use crate::translate::{TranslateError, parse, utf8, write_json};

/// Most texts in one Cohere Embed call (Bedrock's limit).
pub const COHERE_MAX_TEXTS: usize = 96;
/// Most inputs in one request (OpenAI's own limit): a Titan request is one
/// signed call per input.
pub const MAX_INPUTS: usize = 2048;
const INPUT_TYPES: [&str; 4] = ["search_document", "search_query", "classification", "clustering"];

/// The embedding model families Sluice speaks on Bedrock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Titan Text Embeddings V2: `dimensions` and `normalize`.
    TitanV2,
    /// Titan Embeddings G1 - Text: `inputText` only.
    TitanG1,
    Cohere,
}

impl Family {
    /// The family of a model id (foundation model ids, and inference
    /// profiles or ARNs that name one); `None` for models that do not embed.
    pub fn of(model: &str) -> Option<Family> {
        if model.contains("amazon.titan-embed-text-v2") {
            Some(Family::TitanV2)
        } else if model.contains("amazon.titan-embed-text-v1") || model.contains("amazon.titan-embed-g1-text") {
            Some(Family::TitanG1)
        } else if model.contains("cohere.embed-") {
            Some(Family::Cohere)
        } else {
            None
        }
    }
}

/// One InvokeModel call: its body and how many inputs it embeds.
#[derive(Debug)]
pub struct Invocation {
    pub body: Vec<u8>,
    pub inputs: usize,
}

/// The InvokeModel calls one embeddings request becomes.
#[derive(Debug)]
pub struct Plan {
    pub family: Family,
    /// The calls, in input order.
    pub calls: Vec<Invocation>,
    pub encoding: Encoding,
    /// Every input, for a token count when the answers carry none (Cohere).
    pub texts: Vec<String>,
}

#[derive(Deserialize)]
struct CohereOptions<'a> {
    #[serde(borrow, default)]
    input_type: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TitanBody<'a> {
    input_text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    normalize: Option<bool>,
}

#[derive(Serialize)]
struct CohereBody<'a> {
    texts: &'a [&'a str],
    input_type: &'a str,
}

/// The InvokeModel bodies for an OpenAI embeddings request to `family`.
pub fn request(body: &[u8], family: Family) -> Result<Plan, TranslateError> {
    let body = utf8(body).map_err(|e| TranslateError::new(format!("Invalid embeddings request: {e}"), None))?;
    let (r, encoding) = EmbeddingsRequest::read(body, "Bedrock")?;
    let texts = r.texts();
    if texts.len() > MAX_INPUTS {
        return Err(TranslateError::new(
            format!("Invalid 'input': at most {MAX_INPUTS} inputs per request, got {}.", texts.len()),
            Some("input"),
        ));
    }
    let calls = match family {
        Family::TitanV2 | Family::TitanG1 => {
            let v2 = family == Family::TitanV2;
            if !v2 && r.dimensions.is_some() {
                return Err(TranslateError::new(
                    "Titan Embeddings G1 vectors have a fixed size: 'dimensions' is not supported for this model.",
                    Some("dimensions"),
                ));
            }
            let normalize = v2.then_some(true);
            texts
                .iter()
                .map(|t| {
                    let mut out = Vec::with_capacity(t.len() + 64);
                    write_json(&mut out, &TitanBody { input_text: t, dimensions: r.dimensions, normalize });
                    Invocation { body: out, inputs: 1 }
                })
                .collect()
        }
        Family::Cohere => {
            if r.dimensions.is_some() {
                return Err(TranslateError::new(
                    "Cohere Embed vectors have a fixed size: 'dimensions' is not supported for this model.",
                    Some("dimensions"),
                ));
            }
            let o: CohereOptions<'_> = parse(body).map_err(|e| TranslateError::new(e, Some("input_type")))?;
            let input_type = o.input_type.as_deref().unwrap_or("search_document");
            if !INPUT_TYPES.contains(&input_type) {
                return Err(TranslateError::new(
                    format!(
                        "Invalid 'input_type' for Cohere Embed: expected one of {INPUT_TYPES:?}, got '{input_type}'."
                    ),
                    Some("input_type"),
                ));
            }
            texts
                .chunks(COHERE_MAX_TEXTS)
                .map(|chunk| {
                    let mut out = Vec::with_capacity(chunk.iter().map(|t| t.len() + 3).sum::<usize>() + 64);
                    write_json(&mut out, &CohereBody { texts: chunk, input_type });
                    Invocation { body: out, inputs: chunk.len() }
                })
                .collect()
        }
    };
    let texts = texts.into_iter().map(str::to_owned).collect();
    Ok(Plan { family, calls, encoding, texts })
}

/// One call's vectors (in its inputs' order) and the tokens it reports.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanAnswer {
    embedding: Vec<f32>,
    #[serde(default)]
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct CohereAnswer {
    embeddings: CohereEmbeddings,
    #[serde(default)]
    meta: Option<CohereMeta>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    /// `response_type: "embeddings_floats"`.
    Floats(Vec<Vec<f32>>),
    /// `response_type: "embeddings_by_type"`.
    ByType { float: Vec<Vec<f32>> },
}

#[derive(Deserialize)]
struct CohereMeta {
    #[serde(default)]
    billed_units: Option<BilledUnits>,
}

#[derive(Deserialize)]
struct BilledUnits {
    #[serde(default)]
    input_tokens: Option<u64>,
}

/// One InvokeModel answer of `family` for a call of `inputs` texts.
pub fn answer(family: Family, body: &[u8], inputs: usize) -> Result<Answer, String> {
    let a = match family {
        Family::TitanV2 | Family::TitanG1 => {
            let t: TitanAnswer = utf8(body).and_then(parse)?;
            Answer { vectors: vec![t.embedding], tokens: t.input_text_token_count }
        }
        Family::Cohere => {
            let c: CohereAnswer = utf8(body).and_then(parse)?;
            let vectors = match c.embeddings {
                CohereEmbeddings::Floats(v) | CohereEmbeddings::ByType { float: v } => v,
            };
            let tokens = c.meta.and_then(|m| m.billed_units).and_then(|b| b.input_tokens);
            Answer { vectors, tokens }
        }
    };
    if a.vectors.len() != inputs {
        return Err(format!("{} embeddings for {inputs} inputs", a.vectors.len()));
    }
    Ok(a)
}

/// Every call's vectors, in order, as OpenAI's list with `tokens` as usage.
pub fn response(answers: Vec<Answer>, model: &str, encoding: Encoding, tokens: u64) -> (Vec<u8>, Usage) {
    let floats: usize = answers.iter().flat_map(|a| &a.vectors).map(Vec::len).sum();
    let vectors = answers.into_iter().flat_map(|a| a.vectors);
    openai_list(vectors, model, encoding, tokens, floats.saturating_mul(12))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

    fn json(b: &[u8]) -> Value {
        sonic_rs::from_slice(b).unwrap()
    }

    #[test]
    fn families_by_model_id() {
        assert_eq!(Family::of("amazon.titan-embed-text-v2:0"), Some(Family::TitanV2));
        assert_eq!(Family::of("amazon.titan-embed-text-v1"), Some(Family::TitanG1));
        assert_eq!(Family::of("cohere.embed-english-v3"), Some(Family::Cohere));
        assert_eq!(Family::of("us.cohere.embed-multilingual-v3"), Some(Family::Cohere));
        assert_eq!(Family::of("anthropic.claude-3-5-sonnet-20240620-v1:0"), None);
        assert_eq!(Family::of("cohere.command-r-v1:0"), None);
    }

    #[test]
    fn titan_is_one_body_per_input() {
        let p = request(br#"{"model":"m","input":["a","b\"c"],"dimensions":256,"user":"u"}"#, Family::TitanV2).unwrap();
        assert_eq!(p.encoding, Encoding::Float);
        assert_eq!(p.calls.len(), 2);
        assert_eq!(
            String::from_utf8(p.calls[1].body.clone()).unwrap(),
            r#"{"inputText":"b\"c","dimensions":256,"normalize":true}"#
        );
        assert_eq!(p.texts, ["a", "b\"c"]);
        let p = request(br#"{"model":"m","input":"one","encoding_format":"base64"}"#, Family::TitanV2).unwrap();
        assert_eq!(p.encoding, Encoding::Base64);
        assert_eq!(String::from_utf8(p.calls[0].body.clone()).unwrap(), r#"{"inputText":"one","normalize":true}"#);
        let p = request(br#"{"model":"m","input":"one"}"#, Family::TitanG1).unwrap();
        assert_eq!(String::from_utf8(p.calls[0].body.clone()).unwrap(), r#"{"inputText":"one"}"#);
        assert!(request(br#"{"model":"m","input":"one","dimensions":256}"#, Family::TitanG1).is_err());
    }

    #[test]
    fn cohere_takes_96_texts_a_call() {
        let inputs: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        let body = sonic_rs::to_vec(&sonic_rs::json!({"model": "m", "input": inputs})).unwrap();
        let p = request(&body, Family::Cohere).unwrap();
        assert_eq!(p.calls.len(), 2);
        let first = json(&p.calls[0].body);
        assert_eq!(first["texts"].as_array().unwrap().len(), 96);
        assert_eq!(first["input_type"].as_str(), Some("search_document"));
        let second = json(&p.calls[1].body);
        assert_eq!(second["texts"][3].as_str(), Some("t99"));
        let p = request(br#"{"model":"m","input":"q","input_type":"search_query"}"#, Family::Cohere).unwrap();
        assert_eq!(
            String::from_utf8(p.calls[0].body.clone()).unwrap(),
            r#"{"texts":["q"],"input_type":"search_query"}"#
        );
        assert!(request(br#"{"model":"m","input":"q","input_type":"image"}"#, Family::Cohere).is_err());
        assert!(request(br#"{"model":"m","input":"q","dimensions":256}"#, Family::Cohere).is_err());
    }

    #[test]
    fn token_arrays_and_empty_inputs_are_refused() {
        for family in [Family::TitanV2, Family::Cohere] {
            for bad in [
                &br#"{"model":"m","input":[1,2,3]}"#[..],
                br#"{"model":"m","input":[[1,2]]}"#,
                br#"{"model":"m","input":[]}"#,
                br#"{"model":"m"}"#,
                br#"{"model":"m","input":"x","encoding_format":"int8"}"#,
                b"[[[[",
            ] {
                let e = request(bad, family).unwrap_err();
                assert!(!e.message.is_empty(), "{}", String::from_utf8_lossy(bad));
            }
        }
        let e = request(br#"{"model":"m","input":[[1,2]]}"#, Family::TitanV2).unwrap_err();
        assert!(e.message.contains("must be a string or an array of strings"), "{}", e.message);
    }

    #[test]
    fn answers_become_one_openai_list() {
        let t1 = answer(
            Family::TitanV2,
            br#"{"embedding":[0.5,-0.25],"inputTextTokenCount":3,"embeddingsByType":{"float":[0.5,-0.25]}}"#,
            1,
        )
        .unwrap();
        let t2 = answer(Family::TitanV2, br#"{"embedding":[1,0],"inputTextTokenCount":4}"#, 1).unwrap();
        assert_eq!(t1.tokens, Some(3));
        let (out, usage) = response(vec![t1, t2], "amazon.titan-embed-text-v2:0", Encoding::Float, 7);
        assert_eq!((usage.prompt_tokens, usage.total_tokens), (7, 7));
        let v = json(&out);
        assert_eq!(v["object"].as_str(), Some("list"));
        assert_eq!(v["model"].as_str(), Some("amazon.titan-embed-text-v2:0"));
        assert_eq!(v["data"][1]["index"].as_u64(), Some(1));
        assert_eq!(v["data"][0]["embedding"][1].as_f64(), Some(-0.25));

        let c = answer(
            Family::Cohere,
            br#"{"embeddings":[[0.5,-0.25],[1,0]],"id":"x","response_type":"embeddings_floats","texts":["a","b"]}"#,
            2,
        )
        .unwrap();
        assert_eq!(c.tokens, None);
        let (out, _) = response(vec![c], "cohere.embed-english-v3", Encoding::Base64, 2);
        let v = json(&out);
        let raw =
            base64::engine::general_purpose::STANDARD.decode(v["data"][0]["embedding"].as_str().unwrap()).unwrap();
        assert_eq!(raw, [0.5f32.to_le_bytes(), (-0.25f32).to_le_bytes()].concat());
        assert_eq!(v["data"][1]["index"].as_u64(), Some(1));

        let by_type = br#"{"embeddings":{"float":[[1,2]]},"response_type":"embeddings_by_type","meta":{"billed_units":{"input_tokens":5}}}"#;
        assert_eq!(
            answer(Family::Cohere, by_type, 1).unwrap(),
            Answer { vectors: vec![vec![1.0, 2.0]], tokens: Some(5) }
        );
        // Too few vectors, a missing embedding, not JSON: protocol errors.
        assert!(answer(Family::Cohere, by_type, 2).is_err());
        assert!(answer(Family::TitanV2, br#"{"inputTextTokenCount":3}"#, 1).is_err());
        assert!(answer(Family::TitanV2, b"not json", 1).is_err());
    }
}
