//! Vertex AI's text embeddings (`publishers/google/models/{m}:predict`):
//! an OpenAI `/v1/embeddings` request as Vertex's `instances`, and its
//! `predictions` back as OpenAI's `list` of `embedding`s.
//!
//! Reference: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api
//!
//! - `input` (a string or an array of strings) → one `{"content": …}`
//!   instance per string, in order. Token arrays are refused: Vertex embeds
//!   text, and turning OpenAI token ids back into text would need OpenAI's
//!   tokenizer for a model that is not OpenAI's.
//! - `dimensions` → `parameters.outputDimensionality`.
//! - `encoding_format: "base64"` is done here (Vertex has only floats): each
//!   vector as little-endian `f32`s, base64-encoded, as OpenAI sends it.
//! - `usage.prompt_tokens` is the sum of each prediction's
//!   `statistics.token_count`.

use serde::{Deserialize, Serialize};

pub use super::embeddings::Encoding;
use super::embeddings::{EmbeddingsRequest, openai_list};
use super::openai::Usage;
use super::{TranslateError, parse, utf8, write_json};

#[derive(Serialize)]
struct PredictRequest<'a> {
    instances: Vec<Instance<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Parameters>,
}

#[derive(Serialize)]
struct Instance<'a> {
    content: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Parameters {
    output_dimensionality: u32,
}

/// The `:predict` body for an OpenAI embeddings request, and how the client
/// wants the vectors encoded.
pub fn request(body: &[u8]) -> Result<(Vec<u8>, Encoding), TranslateError> {
    let text = utf8(body).map_err(|e| TranslateError::new(format!("Invalid embeddings request: {e}"), None))?;
    let (r, encoding) = EmbeddingsRequest::read(text, "Vertex AI")?;
    let instances: Vec<Instance<'_>> = r.texts().into_iter().map(|content| Instance { content }).collect();
    let parameters = r.dimensions.map(|d| Parameters { output_dimensionality: d });
    let mut out = Vec::with_capacity(body.len() + 64);
    write_json(&mut out, &PredictRequest { instances, parameters });
    Ok((out, encoding))
}

#[derive(Deserialize)]
struct PredictResponse {
    #[serde(default)]
    predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
struct Prediction {
    embeddings: Embeddings,
}

#[derive(Deserialize)]
struct Embeddings {
    values: Vec<f32>,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize)]
struct Statistics {
    /// A number; Vertex has sent it as `6` and as `6.0`.
    #[serde(default)]
    token_count: f64,
}

/// A `:predict` answer as OpenAI's embeddings list; `model` names it.
pub fn response(body: &[u8], model: &str, encoding: Encoding) -> Result<(Vec<u8>, Usage), String> {
    let r: PredictResponse = utf8(body).and_then(parse)?;
    let mut tokens = 0u64;
    let vectors: Vec<Vec<f32>> = r
        .predictions
        .into_iter()
        .map(|p| {
            let count = p.embeddings.statistics.map_or(0.0, |s| s.token_count);
            // A count is small and whole; anything else (negative, NaN) counts 0.
            tokens = tokens.saturating_add(if count.is_finite() && count > 0.0 { count as u64 } else { 0 });
            p.embeddings.values
        })
        .collect();
    Ok(openai_list(vectors, model, encoding, tokens, body.len()))
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
    fn inputs_become_instances_and_dimensions_a_parameter() {
        let (b, e) = request(br#"{"model":"m","input":["a","b\"c"],"dimensions":64,"user":"u"}"#).unwrap();
        assert_eq!(e, Encoding::Float);
        let v = json(&b);
        assert_eq!(v["instances"][1]["content"].as_str(), Some("b\"c"));
        assert_eq!(v["instances"].as_array().unwrap().len(), 2);
        assert_eq!(v["parameters"]["outputDimensionality"].as_u64(), Some(64));
        let (b, e) = request(br#"{"model":"m","input":"one","encoding_format":"base64"}"#).unwrap();
        assert_eq!(e, Encoding::Base64);
        assert_eq!(String::from_utf8(b).unwrap(), r#"{"instances":[{"content":"one"}]}"#);
    }

    #[test]
    fn token_arrays_empty_inputs_and_unknown_encodings_are_refused() {
        for bad in [
            &br#"{"model":"m","input":[1,2,3]}"#[..],
            br#"{"model":"m","input":[[1,2]]}"#,
            br#"{"model":"m","input":[]}"#,
            br#"{"model":"m"}"#,
            br#"{"model":"m","input":"x","encoding_format":"int8"}"#,
            b"[[[[",
        ] {
            assert!(request(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn predictions_become_an_openai_list_with_usage() {
        let body = br#"{"predictions":[
            {"embeddings":{"statistics":{"truncated":false,"token_count":6},"values":[0.5,-0.25]}},
            {"embeddings":{"statistics":{"truncated":false,"token_count":4.0},"values":[1,0]}}],
            "metadata":{"billableCharacterCount":30}}"#;
        let (out, usage) = response(body, "text-embedding-005", Encoding::Float).unwrap();
        assert_eq!((usage.prompt_tokens, usage.total_tokens), (10, 10));
        let v = json(&out);
        assert_eq!(v["object"].as_str(), Some("list"));
        assert_eq!(v["model"].as_str(), Some("text-embedding-005"));
        assert_eq!(v["data"][1]["index"].as_u64(), Some(1));
        assert_eq!(v["data"][0]["embedding"][1].as_f64(), Some(-0.25));
        assert_eq!(v["usage"]["prompt_tokens"].as_u64(), Some(10));

        let (out, _) = response(body, "m", Encoding::Base64).unwrap();
        let v = json(&out);
        let raw =
            base64::engine::general_purpose::STANDARD.decode(v["data"][0]["embedding"].as_str().unwrap()).unwrap();
        assert_eq!(raw, [0.5f32.to_le_bytes(), (-0.25f32).to_le_bytes()].concat());
        assert!(response(b"{\"predictions\":[{}]}", "m", Encoding::Float).is_err());
        assert!(response(b"not json", "m", Encoding::Float).is_err());
    }
}
