//! Azure OpenAI's data plane as the mock plays it: OpenAI's bodies from the
//! common generator, Azure's URLs and `api-version` rule, and its content
//! filter — `prompt_filter_results` on every chat answer (the first chunk of
//! a stream carries only them, with no choices), `content_filter_results`
//! per choice, a 400 `content_filter` refusal for a filtered prompt and
//! `finish_reason: "content_filter"` for a filtered answer.
//!
//! Shapes follow https://learn.microsoft.com/azure/ai-foundry/openai/reference
//! and https://learn.microsoft.com/azure/ai-foundry/openai/concepts/content-filter.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use sonic_rs::{JsonValueMutTrait, JsonValueTrait};

use super::CloudRequest;
use crate::mock::body::{Events, MockBody};
use crate::mock::faults::{ContentFilter, Controls, Fault};
use crate::mock::generate::{self, Endpoint};
use crate::mock::server::{MockReply, SSE, ServerState, generated, json, reply};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Chat,
    Completions,
    Embeddings,
    Models,
}

pub(crate) struct Call {
    /// `None` on the `/openai/v1/` routes (the deployment is the body's `model`).
    deployment: Option<String>,
    op: Op,
}

pub(super) fn route(method: &Method, path: &str) -> Option<Call> {
    let op = |p: &str| match p {
        "chat/completions" => Some(Op::Chat),
        "completions" => Some(Op::Completions),
        "embeddings" => Some(Op::Embeddings),
        _ => None,
    };
    let call = if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, rest) = rest.split_once('/')?;
        Call { deployment: Some(deployment.to_owned()), op: op(rest)? }
    } else if let Some(rest) = path.strip_prefix("/openai/v1/") {
        match rest {
            "models" => Call { deployment: None, op: Op::Models },
            _ => Call { deployment: None, op: op(rest)? },
        }
    } else if path == "/openai/models" {
        Call { deployment: Some(String::new()), op: Op::Models }
    } else {
        return None;
    };
    let want = if call.op == Op::Models { Method::GET } else { Method::POST };
    (*method == want).then_some(call)
}

/// A verdict of every category, none tripped.
fn safe() -> sonic_rs::Value {
    sonic_rs::json!({
        "hate": {"filtered": false, "severity": "safe"},
        "self_harm": {"filtered": false, "severity": "safe"},
        "sexual": {"filtered": false, "severity": "safe"},
        "violence": {"filtered": false, "severity": "safe"}
    })
}

fn prompt_filter_results() -> sonic_rs::Value {
    sonic_rs::json!([{ "prompt_index": 0, "content_filter_results": safe() }])
}

/// The refusal of a filtered prompt, as Azure sends it.
fn prompt_refused() -> Bytes {
    let body = sonic_rs::json!({"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
        "type": null,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": {"filtered": true, "severity": "high"},
                "jailbreak": {"filtered": false, "detected": false},
                "self_harm": {"filtered": false, "severity": "safe"},
                "sexual": {"filtered": false, "severity": "safe"},
                "violence": {"filtered": false, "severity": "safe"}
            }
        }
    }});
    Bytes::from(body.to_string())
}

pub(super) fn answer(
    state: &ServerState,
    call: &Call,
    req: &CloudRequest,
    controls: &Controls,
    fault: Option<Fault>,
) -> Response<MockBody> {
    let needs_version = call.deployment.is_some();
    match req.query("api-version") {
        None if needs_version => {
            let body = Bytes::from_static(br#"{"error":{"code":"404","message":"Resource not found"}}"#);
            return json(StatusCode::NOT_FOUND, body);
        }
        Some(v) if !needs_version && v != "preview" && v != "latest" => {
            let body = Bytes::from_static(br#"{"error":{"code":"BadRequest","message":"API version not supported"}}"#);
            return json(StatusCode::BAD_REQUEST, body);
        }
        _ => {}
    }
    let opts = &state.opts;
    let endpoint = match call.op {
        Op::Models => return json(StatusCode::OK, generate::models_body(&["gpt-4o", "text-embedding-3-small"], 1)),
        Op::Embeddings => {
            return match generate::embeddings_body(&req.body) {
                Ok(b) => json(StatusCode::OK, b),
                Err(e) => json(StatusCode::BAD_REQUEST, e.body()),
            };
        }
        Op::Chat => Endpoint::Chat,
        Op::Completions => Endpoint::Completions,
    };
    let mut g = match generate::parse_request(endpoint, &req.body, opts.tokens, controls.tokens) {
        Ok(g) => g,
        Err(e) => return json(StatusCode::BAD_REQUEST, e.body()),
    };
    if let Some(d) = &call.deployment {
        // Azure answers with the deployment's model; the mock, its name.
        g.model = d.clone();
    }
    let filter = controls.content_filter;
    if filter == Some(ContentFilter::Prompt) {
        return json(StatusCode::BAD_REQUEST, prompt_refused());
    }
    if let Some(name) = controls.tool_call.as_deref().filter(|_| endpoint == Endpoint::Chat)
        && crate::mock::vendors::has_tools(&req.body)
    {
        let answer = crate::mock::server::listed(crate::mock::vendors::openai_tool_call(&g, name));
        return reply(state, StatusCode::OK, answer, fault, controls, SSE);
    }
    if endpoint != Endpoint::Chat {
        return reply(state, StatusCode::OK, generated(&g), fault, controls, SSE);
    }
    let cut = filter == Some(ContentFilter::Completion);
    let id = format!("chatcmpl-azure{:016x}", g.seed);
    let created = 1_700_000_000;
    let answer = if g.stream {
        let mut events: Vec<Bytes> = Vec::new();
        let first = sonic_rs::json!({
            "choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": prompt_filter_results()
        });
        events.push(Bytes::from(format!("data: {first}\n\n")));
        for ev in generate::stream_events(&g, &id, created) {
            events.push(annotate_chunk(ev, cut));
        }
        MockReply::Stream(Events::List(events.into_iter()))
    } else {
        MockReply::Full(annotate_completion(generate::completion_body(&g, &id, created), cut))
    };
    reply(state, StatusCode::OK, answer, fault, controls, SSE)
}

/// A whole answer with Azure's verdicts; `cut`: the filter stopped it.
fn annotate_completion(body: Bytes, cut: bool) -> Bytes {
    let Ok(mut v) = sonic_rs::from_slice::<sonic_rs::Value>(&body) else { return body };
    if let Some(o) = v.as_object_mut() {
        o.insert("prompt_filter_results", prompt_filter_results());
    }
    if let Some(choices) = v.get_mut("choices").and_then(|c| c.as_array_mut()) {
        for c in choices.iter_mut() {
            if let Some(o) = c.as_object_mut() {
                o.insert("content_filter_results", verdict(cut));
                if cut {
                    o.insert("finish_reason", sonic_rs::json!("content_filter"));
                }
            }
        }
    }
    Bytes::from(v.to_string())
}

fn verdict(cut: bool) -> sonic_rs::Value {
    let mut v = safe();
    if cut && let Some(o) = v.as_object_mut() {
        o.insert("violence", sonic_rs::json!({"filtered": true, "severity": "medium"}));
    }
    v
}

/// One stream event with Azure's per-choice verdict; the finish chunk says
/// `content_filter` when the filter cut the answer.
fn annotate_chunk(ev: Bytes, cut: bool) -> Bytes {
    let Some(data) = ev.strip_prefix(b"data: ").and_then(|d| d.strip_suffix(b"\n\n")) else { return ev };
    let Ok(mut v) = sonic_rs::from_slice::<sonic_rs::Value>(data) else { return ev };
    let mut changed = false;
    if let Some(choices) = v.get_mut("choices").and_then(|c| c.as_array_mut()) {
        for c in choices.iter_mut() {
            let finishing = c.get("finish_reason").is_some_and(|f| f.is_str());
            if let Some(o) = c.as_object_mut() {
                o.insert("content_filter_results", verdict(cut && finishing));
                if cut && finishing {
                    o.insert("finish_reason", sonic_rs::json!("content_filter"));
                }
                changed = true;
            }
        }
    }
    if !changed {
        return ev;
    }
    Bytes::from(format!("data: {v}\n\n"))
}
