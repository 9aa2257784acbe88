//! Vertex AI as the mock plays it: Gemini (`generateContent`,
//! `streamGenerateContent?alt=sse`) and Claude (`rawPredict`,
//! `streamRawPredict`) under `/v1/projects/{p}/locations/{l}/publishers/…`.
//! Claude's body is Anthropic's Messages body with the model in the URL, not
//! the body, and `anthropic_version: "vertex-2023-10-16"`, as Vertex requires
//! (https://docs.anthropic.com/en/api/claude-on-vertex-ai); a body that says
//! otherwise is refused with 400, so the gateway's rewrite is checked.

use bytes::Bytes;
use http::{Response, StatusCode};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

use super::CloudRequest;
use crate::mock::body::MockBody;
use crate::mock::faults::{Controls, Fault};
use crate::mock::generate;
use crate::mock::server::{MockReply, SSE, ServerState, json, listed, reply};
use crate::mock::vendors::{self, Vendor};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Publisher {
    Google,
    Anthropic,
}

pub(crate) struct Call {
    publisher: Publisher,
    model: String,
    method: String,
}

pub(super) fn route(path: &str) -> Option<Call> {
    let rest = path.strip_prefix("/v1/projects/")?;
    let mut parts = rest.split('/');
    let (_project, locations, _location, publishers, publisher, models, target) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if locations != "locations" || publishers != "publishers" || models != "models" || parts.next().is_some() {
        return None;
    }
    let (model, method) = target.split_once(':')?;
    let publisher = match publisher {
        "google" => Publisher::Google,
        "anthropic" => Publisher::Anthropic,
        _ => return None,
    };
    Some(Call { publisher, model: model.to_owned(), method: method.to_owned() })
}

/// Vertex's version of Anthropic's API.
const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

pub(super) fn answer(
    state: &ServerState,
    call: &Call,
    req: &CloudRequest,
    controls: &Controls,
    fault: Option<Fault>,
) -> Response<MockBody> {
    let opts = &state.opts;
    let cached = controls.cached_tokens.unwrap_or(0);
    match (call.publisher, call.method.as_str()) {
        (Publisher::Google, m @ ("generateContent" | "streamGenerateContent")) => {
            let stream = m == "streamGenerateContent";
            let g = Vendor::Gemini { stream };
            if stream && req.query("alt").as_deref() != Some("sse") {
                let msg = "The mock answers streamGenerateContent as Server-Sent Events only: add ?alt=sse.";
                return json(StatusCode::BAD_REQUEST, vendors::error_body(g, 400, msg));
            }
            match vendors::parse(g, req.uri.path(), &req.body, opts.tokens, controls.tokens) {
                Ok(r) => {
                    let tool = controls.tool_call.as_deref().filter(|_| r.has_tools);
                    let out = listed(vendors::gemini(&r.request, tool, cached));
                    reply(state, StatusCode::OK, out, fault, controls, SSE)
                }
                Err(e) => json(StatusCode::BAD_REQUEST, vendors::error_body(g, 400, &e.message)),
            }
        }
        (Publisher::Anthropic, m @ ("rawPredict" | "streamRawPredict")) => {
            let bad = |msg: &str| json(StatusCode::BAD_REQUEST, vendors::error_body(Vendor::Anthropic, 400, msg));
            let Ok(v) = sonic_rs::from_slice::<sonic_rs::Value>(&req.body) else {
                return bad("The request body is not valid JSON.");
            };
            if v.get("model").is_some() {
                return bad("model: Extra inputs are not permitted (on Vertex AI the model is in the URL)");
            }
            if v.get("anthropic_version").and_then(|a| a.as_str()) != Some(VERTEX_ANTHROPIC_VERSION) {
                return bad("anthropic_version: Input should be 'vertex-2023-10-16'");
            }
            let Some(cap) = v.get("max_tokens").and_then(|m| m.as_u64()) else {
                return bad("max_tokens: Field required");
            };
            let Some(messages) = v.get("messages") else { return bad("messages: Field required") };
            let stream = m == "streamRawPredict" || v.get("stream").and_then(|s| s.as_bool()) == Some(true);
            let g = vendors::gen_request(
                call.model.clone(),
                stream,
                Some(cap),
                messages,
                &[v.get("system")],
                opts.tokens,
                controls.tokens,
            );
            let has_tools = v.get("tools").and_then(|t| t.as_array()).is_some_and(|a| !a.is_empty());
            let tool = controls.tool_call.as_deref().filter(|_| has_tools);
            reply(
                state,
                StatusCode::OK,
                listed(vendors::anthropic(&g, tool, cached, vendors::thinking_on(&v))),
                fault,
                controls,
                SSE,
            )
        }
        (Publisher::Google, "predict") => match predict(&call.model, &req.body) {
            Ok(out) => reply(state, StatusCode::OK, MockReply::Full(out), fault, controls, SSE),
            Err(msg) => json(StatusCode::BAD_REQUEST, vendors::error_body(Vendor::Gemini { stream: false }, 400, &msg)),
        },
        (p, m) => {
            let v = if p == Publisher::Anthropic { Vendor::Anthropic } else { Vendor::Gemini { stream: false } };
            let msg = format!("Method {m} is not served for this publisher's models.");
            json(StatusCode::NOT_FOUND, vendors::error_body(v, 404, &msg))
        }
    }
}

/// Most instances in one `:predict` call (text-embedding-005's limit).
const MAX_INSTANCES: usize = 250;

/// A text-embedding `:predict` answer: per instance, the mock's
/// deterministic vector for its `content` (the same one `/v1/embeddings`
/// gives that text) and its token count, in Vertex's shape. A body that is
/// not Vertex's (`input` instead of `instances`, an instance without
/// `content`) is refused, so the gateway's rewrite is checked; so is a
/// model that does not embed.
fn predict(model: &str, body: &[u8]) -> Result<Bytes, String> {
    // Google's embedding models all say so (text-embedding-005,
    // text-multilingual-embedding-002, gemini-embedding-001).
    if !model.contains("embedding") {
        return Err(format!("Model {model} does not support the predict method for text embeddings."));
    }
    let v: sonic_rs::Value =
        sonic_rs::from_slice(body).map_err(|_| "The request body is not valid JSON.".to_owned())?;
    let Some(instances) = v.get("instances").and_then(|i| i.as_array()) else {
        return Err("Invalid JSON payload received. Required field \"instances\" is missing.".into());
    };
    if instances.is_empty() || instances.len() > MAX_INSTANCES {
        return Err(format!("{} instances: a request holds 1 to {MAX_INSTANCES}.", instances.len()));
    }
    let dims = v.get("parameters").and_then(|p| p.get("outputDimensionality")).and_then(|d| d.as_u64());
    let mut predictions = Vec::with_capacity(instances.len());
    let mut chars = 0usize;
    for (i, inst) in instances.iter().enumerate() {
        let Some(content) = inst.get("content").and_then(|c| c.as_str()) else {
            return Err(format!("instances[{i}]: Required field \"content\" is missing."));
        };
        chars = chars.saturating_add(content.chars().count());
        let one = sonic_rs::json!({"model": model, "input": content, "dimensions": dims.unwrap_or(8)});
        let openai = generate::embeddings_body(&sonic_rs::to_vec(&one).map_err(|e| e.to_string())?)
            .map_err(|e| String::from_utf8_lossy(&e.body()).into_owned())?;
        let o: sonic_rs::Value = sonic_rs::from_slice(&openai).map_err(|e| e.to_string())?;
        let values = o["data"][0]["embedding"].clone();
        let tokens = o["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
        predictions.push(sonic_rs::json!({
            "embeddings": {"statistics": {"truncated": false, "token_count": tokens}, "values": values}
        }));
    }
    let out = sonic_rs::json!({"predictions": predictions, "metadata": {"billableCharacterCount": chars}});
    sonic_rs::to_vec(&out).map(Bytes::from).map_err(|e| e.to_string())
}
