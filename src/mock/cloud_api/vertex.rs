//! Vertex AI as the mock plays it: Gemini (`generateContent`,
//! `streamGenerateContent?alt=sse`) and Claude (`rawPredict`,
//! `streamRawPredict`) under `/v1/projects/{p}/locations/{l}/publishers/…`.
//! Claude's body is Anthropic's Messages body with the model in the URL, not
//! the body, and `anthropic_version: "vertex-2023-10-16"`, as Vertex requires
//! (https://docs.anthropic.com/en/api/claude-on-vertex-ai); a body that says
//! otherwise is refused with 400, so the gateway's rewrite is checked.

use http::{Response, StatusCode};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

use super::CloudRequest;
use crate::mock::body::MockBody;
use crate::mock::faults::{Controls, Fault};
use crate::mock::server::{SSE, ServerState, json, listed, reply};
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
            reply(state, StatusCode::OK, listed(vendors::anthropic(&g, tool, cached)), fault, controls, SSE)
        }
        (p, m) => {
            let v = if p == Publisher::Anthropic { Vendor::Anthropic } else { Vendor::Gemini { stream: false } };
            let msg = format!("Method {m} is not served for this publisher's models.");
            json(StatusCode::NOT_FOUND, vendors::error_body(v, 404, &msg))
        }
    }
}
