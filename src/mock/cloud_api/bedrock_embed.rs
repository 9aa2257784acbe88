//! Bedrock's embedding models as the mock plays them, through `invoke`:
//! Amazon Titan Text Embeddings (V2, and G1) and Cohere Embed v3, in their
//! own bodies. Each vector is the one the mock's `/v1/embeddings` gives the
//! same text at the same size, so a test can check the gateway carried it
//! unchanged; each answer also carries AWS's `x-amzn-bedrock-input-token-count`.
//!
//! What Bedrock checks and the gateway's rewrite could get wrong is
//! refused with a `ValidationException`: an OpenAI body (`input`), an
//! extraneous key, an empty or missing text, Titan V2 `dimensions` other
//! than 256/512/1024, more than 96 Cohere texts or a missing `input_type`.
//! Shapes: https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html
//! and …/model-parameters-embed-v3.html.

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Response, StatusCode};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

use crate::mock::body::MockBody;
use crate::mock::faults::{Controls, Fault};
use crate::mock::generate;
use crate::mock::server::{MockReply, ServerState, reply};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Model {
    TitanV2,
    TitanG1,
    Cohere,
}

fn model(id: &str) -> Option<Model> {
    if id.contains("amazon.titan-embed-text-v2") {
        Some(Model::TitanV2)
    } else if id.contains("amazon.titan-embed-text-v1") || id.contains("amazon.titan-embed-g1-text") {
        Some(Model::TitanG1)
    } else if id.contains("cohere.embed-") {
        Some(Model::Cohere)
    } else {
        None
    }
}

/// Is `id` one of the embedding models this module answers for?
pub(super) fn embeds(id: &str) -> bool {
    model(id).is_some()
}

const COHERE_MAX_TEXTS: usize = 96;
const COHERE_MAX_CHARS: usize = 2048;
const COHERE_DIMS: u64 = 1024;
const COHERE_INPUT_TYPES: [&str; 5] = ["search_document", "search_query", "classification", "clustering", "image"];

fn malformed(detail: &str) -> String {
    format!("Malformed input request: {detail}, please reformat your input and try again.")
}

fn extraneous(v: &sonic_rs::Value, allowed: &[&str]) -> Result<(), String> {
    match v.as_object().and_then(|o| o.iter().find(|(k, _)| !allowed.contains(k)).map(|(k, _)| k.to_owned())) {
        Some(k) => Err(malformed(&format!("#: extraneous key [{k}] is not permitted"))),
        None if v.is_object() => Ok(()),
        None => Err(malformed("#: expected type: JSONObject")),
    }
}

/// The mock's vectors for `texts` at `dims` and their tokens, from its own
/// `/v1/embeddings`.
fn vectors(texts: &[&str], dims: u64) -> Result<(Vec<sonic_rs::Value>, u64), String> {
    let one = sonic_rs::json!({"model": "bedrock", "input": texts, "dimensions": dims});
    let openai = generate::embeddings_body(&sonic_rs::to_vec(&one).map_err(|e| e.to_string())?)
        .map_err(|e| String::from_utf8_lossy(&e.body()).into_owned())?;
    let o: sonic_rs::Value = sonic_rs::from_slice(&openai).map_err(|e| e.to_string())?;
    let data = o["data"].as_array().map(|d| d.iter().map(|i| i["embedding"].clone()).collect()).unwrap_or_default();
    Ok((data, o["usage"]["prompt_tokens"].as_u64().unwrap_or(0)))
}

/// The answer of embedding model `id` to an `invoke` body; `Err` is the
/// message of a `ValidationException`.
pub(super) fn answer(
    state: &ServerState,
    id: &str,
    v: &sonic_rs::Value,
    controls: &Controls,
    fault: Option<Fault>,
) -> Result<Response<MockBody>, String> {
    let Some(m) = model(id) else {
        return Err(format!("The model {id} does not embed."));
    };
    let (body, tokens) = match m {
        Model::TitanV2 | Model::TitanG1 => {
            let allowed: &[&str] = if m == Model::TitanV2 {
                &["inputText", "dimensions", "normalize", "embeddingTypes"]
            } else {
                &["inputText"]
            };
            extraneous(v, allowed)?;
            let Some(text) = v.get("inputText").and_then(|t| t.as_str()) else {
                return Err(malformed("#: required key [inputText] not found"));
            };
            if text.is_empty() {
                return Err(malformed("#/inputText: expected minLength: 1, actual: 0"));
            }
            let dims = match (m, v.get("dimensions")) {
                (Model::TitanG1, _) => 1536,
                (_, None) => 1024,
                (_, Some(d)) => match d.as_u64() {
                    Some(d @ (256 | 512 | 1024)) => d,
                    _ => return Err(malformed(&format!("#/dimensions: {d} is not a valid enum value"))),
                },
            };
            if v.get("normalize").is_some_and(|n| !n.is_boolean()) {
                return Err(malformed("#/normalize: expected type: Boolean"));
            }
            let (mut vecs, tokens) = vectors(&[text], dims)?;
            let embedding = vecs.pop().unwrap_or_default();
            let out = if m == Model::TitanV2 {
                sonic_rs::json!({"embedding": embedding.clone(), "inputTextTokenCount": tokens,
                                 "embeddingsByType": {"float": embedding}})
            } else {
                sonic_rs::json!({"embedding": embedding, "inputTextTokenCount": tokens})
            };
            (out, tokens)
        }
        Model::Cohere => {
            extraneous(v, &["texts", "images", "input_type", "truncate", "embedding_types"])?;
            let Some(texts) = v.get("texts").and_then(|t| t.as_array()) else {
                return Err(malformed("#: required key [texts] not found"));
            };
            let texts: Vec<&str> = texts.iter().filter_map(|t| t.as_str()).collect();
            if texts.is_empty() || texts.len() > COHERE_MAX_TEXTS {
                return Err(malformed(&format!("#/texts: expected 1 to {COHERE_MAX_TEXTS} texts")));
            }
            if let Some(i) = texts.iter().position(|t| t.chars().count() > COHERE_MAX_CHARS) {
                return Err(malformed(&format!("#/texts/{i}: expected maxLength: {COHERE_MAX_CHARS}")));
            }
            match v.get("input_type").and_then(|t| t.as_str()) {
                Some(t) if COHERE_INPUT_TYPES.contains(&t) => {}
                Some(t) => return Err(malformed(&format!("#/input_type: {t} is not a valid enum value"))),
                None => return Err(malformed("#: required key [input_type] not found")),
            }
            let by_type = match v.get("embedding_types") {
                None => false,
                Some(t) if t.as_array().is_some_and(|a| a.len() == 1 && a[0].as_str() == Some("float")) => true,
                Some(_) => return Err("The mock generates float embeddings only.".into()),
            };
            let (vecs, tokens) = vectors(&texts, COHERE_DIMS)?;
            let id = format!("{:016x}-mock", fastrand::u64(..));
            let out = if by_type {
                sonic_rs::json!({"id": id, "embeddings": {"float": vecs}, "response_type": "embeddings_by_type",
                                 "texts": texts})
            } else {
                sonic_rs::json!({"id": id, "embeddings": vecs, "response_type": "embeddings_floats", "texts": texts})
            };
            (out, tokens)
        }
    };
    let body = sonic_rs::to_vec(&body).map(Bytes::from).map_err(|e| e.to_string())?;
    let mut r = reply(
        state,
        StatusCode::OK,
        MockReply::Full(body),
        fault,
        controls,
        HeaderValue::from_static("application/json"),
    );
    if r.status() == StatusCode::OK {
        r.headers_mut().insert("x-amzn-bedrock-input-token-count", HeaderValue::from(tokens));
    }
    Ok(r)
}
