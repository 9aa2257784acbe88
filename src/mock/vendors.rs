//! The mock speaking Anthropic (`POST /v1/messages`) and Gemini
//! (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`), plus tool calls on the OpenAI chat
//! route. The answer text comes from the same deterministic generator as
//! the OpenAI routes; ids are derived from it, so equal requests get
//! byte-for-byte equal answers (tests compare a direct call with one
//! through the gateway).
//!
//! Controls (headers): `x-mock-tool-call: <name>` answers with a call of
//! that tool (when the request offers tools) whose input is
//! `{"query": <answer text>}`; `x-mock-cached-tokens: <n>` reports that many
//! prompt tokens as read from the prompt cache. Not on the OpenAI hot path:
//! the plain chat answer is untouched.
//!
//! Shapes follow https://docs.anthropic.com/en/api/messages,
//! https://docs.anthropic.com/en/api/messages-streaming and
//! https://ai.google.dev/api/generate-content.

use bytes::Bytes;
use serde::Serialize;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

use super::generate::{self, GenError, GenRequest};

/// Which vendor API a request targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vendor {
    Anthropic,
    Gemini { stream: bool },
}

/// What the mock read from a vendor request.
pub(crate) struct VendorRequest {
    pub request: GenRequest,
    pub has_tools: bool,
}

/// Deepest nesting read (like the OpenAI routes).
const MAX_DEPTH: usize = 128;

fn fnv(h: u64, s: &str) -> u64 {
    s.bytes().fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Count and hash the prompt text of a JSON value: `"text"` strings, and
/// `"content"` given as a plain string (Anthropic's shorthand).
fn texts(v: &sonic_rs::Value, words: &mut u64, hash: &mut u64) {
    if let Some(o) = v.as_object() {
        for (k, x) in o.iter() {
            match (k, x.as_str()) {
                ("text" | "content", Some(t)) => {
                    *words += t.split_whitespace().count() as u64;
                    *hash = fnv(*hash, t);
                }
                (_, Some(_)) => {}
                _ => texts(x, words, hash),
            }
        }
    } else if let Some(a) = v.as_array() {
        for x in a.iter() {
            texts(x, words, hash);
        }
    }
}

/// Read an Anthropic Messages or Gemini request.
pub(crate) fn parse(
    vendor: Vendor,
    path: &str,
    body: &[u8],
    default_tokens: u32,
    tokens: Option<u32>,
) -> Result<VendorRequest, GenError> {
    if crate::json::nesting_exceeds(body, MAX_DEPTH) {
        return Err(GenError::new("The JSON body nests too deeply.", None));
    }
    let v: sonic_rs::Value = sonic_rs::from_slice(body)
        .map_err(|e| GenError::new(format!("We could not parse the JSON body of your request: {e}"), None))?;
    if !v.is_object() {
        return Err(GenError::new("The body must be a JSON object.", None));
    }
    let (model, stream, cap, prompt_key) = match vendor {
        Vendor::Anthropic => {
            let model = v.get("model").and_then(|m| m.as_str()).map(str::to_owned);
            let Some(model) = model else { return Err(GenError::new("model: Field required", Some("model"))) };
            let Some(cap) = v.get("max_tokens").and_then(|m| m.as_u64()) else {
                return Err(GenError::new("max_tokens: Field required", Some("max_tokens")));
            };
            (model, v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false), Some(cap), "messages")
        }
        Vendor::Gemini { stream } => {
            let model = path.rsplit('/').next().unwrap_or("").split(':').next().unwrap_or("").to_owned();
            let cap = v.get("generationConfig").and_then(|g| g.get("maxOutputTokens")).and_then(|m| m.as_u64());
            (model, stream, cap, "contents")
        }
    };
    let Some(prompt) = v.get(prompt_key) else {
        return Err(GenError::new(format!("{prompt_key}: Field required"), Some(if prompt_key == "messages" { "messages" } else { "contents" })));
    };
    let (mut words, mut hash) = (0u64, 0xcbf2_9ce4_8422_2325u64);
    texts(prompt, &mut words, &mut hash);
    match v.get("system") {
        Some(s) if s.is_str() => {
            let t = s.as_str().unwrap_or("");
            words += t.split_whitespace().count() as u64;
            hash = fnv(hash, t);
        }
        Some(s) => texts(s, &mut words, &mut hash),
        None => {}
    }
    if let Some(s) = v.get("systemInstruction") {
        texts(s, &mut words, &mut hash);
    }
    let wanted = tokens.unwrap_or(default_tokens).min(generate::MAX_COMPLETION_TOKENS);
    let (completion_tokens, finish_reason) = match cap {
        Some(c) if u64::from(wanted) > c => (u32::try_from(c).unwrap_or(u32::MAX).max(1), "length"),
        _ => (wanted, "stop"),
    };
    let has_tools = v.get("tools").and_then(|t| t.as_array()).is_some_and(|a| !a.is_empty());
    let request = GenRequest {
        endpoint: generate::Endpoint::Chat,
        seed: fnv(hash, &model),
        model,
        stream,
        include_usage: false,
        prompt_tokens: u32::try_from(words.max(1)).unwrap_or(u32::MAX),
        completion_tokens,
        finish_reason,
    };
    Ok(VendorRequest { request, has_tools })
}

/// The answer's tokens, each with its leading space (but the first).
fn tokens(g: &GenRequest) -> Vec<String> {
    let text = generate::answer_text(g);
    text.split(' ').enumerate().map(|(i, w)| if i == 0 { w.to_owned() } else { format!(" {w}") }).collect()
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    sonic_rs::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

fn event<T: Serialize>(out: &mut Vec<Bytes>, name: &str, v: &T) {
    let mut b = Vec::with_capacity(128);
    if !name.is_empty() {
        b.extend_from_slice(b"event: ");
        b.extend_from_slice(name.as_bytes());
        b.push(b'\n');
    }
    b.extend_from_slice(b"data: ");
    b.extend_from_slice(&json(v));
    b.extend_from_slice(b"\n\n");
    out.push(Bytes::from(b));
}

/// The tool call a request asked for, as `(name, input JSON)`.
fn tool_input(g: &GenRequest) -> String {
    String::from_utf8(json(&sonic_rs::json!({ "query": generate::answer_text(g) }))).unwrap_or_default()
}

// ------------------------------------------------------------- Anthropic

/// A whole Messages answer, or its stream events.
pub(crate) fn anthropic(g: &GenRequest, tool: Option<&str>, cached: u64) -> Result<Bytes, Vec<Bytes>> {
    let id = format!("msg_mock{:016x}", g.seed);
    let cached = cached.min(u64::from(g.prompt_tokens));
    let input = u64::from(g.prompt_tokens) - cached;
    let out_tokens = u64::from(g.completion_tokens);
    let stop = match (tool, g.finish_reason) {
        (Some(_), _) => "tool_use",
        (None, "length") => "max_tokens",
        _ => "end_turn",
    };
    let usage = sonic_rs::json!({
        "input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached,
        "output_tokens": out_tokens,
    });
    let tool_id = format!("toolu_mock{:016x}", g.seed);
    if !g.stream {
        let content = match tool {
            Some(name) => sonic_rs::json!([{ "type": "tool_use", "id": tool_id, "name": name,
                "input": sonic_rs::from_str::<sonic_rs::Value>(&tool_input(g)).unwrap_or_default() }]),
            None => sonic_rs::json!([{ "type": "text", "text": generate::answer_text(g) }]),
        };
        let body = sonic_rs::json!({
            "id": id, "type": "message", "role": "assistant", "model": g.model, "content": content,
            "stop_reason": stop, "stop_sequence": null, "usage": usage,
        });
        return Ok(Bytes::from(json(&body)));
    }
    let mut ev = Vec::new();
    let start_usage = sonic_rs::json!({
        "input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached, "output_tokens": 1,
    });
    event(&mut ev, "message_start", &sonic_rs::json!({ "type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": g.model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": start_usage }}));
    event(&mut ev, "ping", &sonic_rs::json!({ "type": "ping" }));
    match tool {
        Some(name) => {
            event(&mut ev, "content_block_start", &sonic_rs::json!({ "type": "content_block_start", "index": 0,
                "content_block": { "type": "tool_use", "id": tool_id, "name": name, "input": {} }}));
            let input = tool_input(g);
            let mid = input.char_indices().map(|(i, _)| i).nth(input.chars().count() / 2).unwrap_or(0);
            for piece in [&input[..mid], &input[mid..]] {
                event(&mut ev, "content_block_delta", &sonic_rs::json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "input_json_delta", "partial_json": piece }}));
            }
        }
        None => {
            event(&mut ev, "content_block_start", &sonic_rs::json!({ "type": "content_block_start", "index": 0,
                "content_block": { "type": "text", "text": "" }}));
            for t in tokens(g) {
                event(&mut ev, "content_block_delta", &sonic_rs::json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "text_delta", "text": t }}));
            }
        }
    }
    event(&mut ev, "content_block_stop", &sonic_rs::json!({ "type": "content_block_stop", "index": 0 }));
    event(&mut ev, "message_delta", &sonic_rs::json!({ "type": "message_delta",
        "delta": { "stop_reason": stop, "stop_sequence": null }, "usage": { "output_tokens": out_tokens }}));
    event(&mut ev, "message_stop", &sonic_rs::json!({ "type": "message_stop" }));
    Err(ev)
}

// ------------------------------------------------------------- Gemini

/// A whole `GenerateContentResponse`, or its stream events.
pub(crate) fn gemini(g: &GenRequest, tool: Option<&str>, cached: u64) -> Result<Bytes, Vec<Bytes>> {
    let rid = format!("mock{:016x}", g.seed);
    let p = u64::from(g.prompt_tokens);
    let c = u64::from(g.completion_tokens);
    let mut usage = sonic_rs::json!({ "promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c });
    if cached > 0 {
        usage["cachedContentTokenCount"] = sonic_rs::json!(cached.min(p));
    }
    let finish = if g.finish_reason == "length" && tool.is_none() { "MAX_TOKENS" } else { "STOP" };
    let call = |name: &str| {
        sonic_rs::json!({ "functionCall": { "name": name,
            "args": sonic_rs::from_str::<sonic_rs::Value>(&tool_input(g)).unwrap_or_default() }})
    };
    if !g.stream {
        let parts = match tool {
            Some(name) => sonic_rs::json!([call(name)]),
            None => sonic_rs::json!([{ "text": generate::answer_text(g) }]),
        };
        let body = sonic_rs::json!({
            "candidates": [{ "content": { "parts": parts, "role": "model" }, "finishReason": finish, "index": 0 }],
            "usageMetadata": usage, "modelVersion": g.model, "responseId": rid,
        });
        return Ok(Bytes::from(json(&body)));
    }
    let mut ev = Vec::new();
    if tool.is_none() {
        let toks = tokens(g);
        let last = toks.len().saturating_sub(1);
        for (i, t) in toks.into_iter().enumerate() {
            let mut cand = sonic_rs::json!({ "content": { "parts": [{ "text": t }], "role": "model" }, "index": 0 });
            let mut chunk = sonic_rs::json!({ "modelVersion": g.model, "responseId": rid });
            if i == last {
                cand["finishReason"] = sonic_rs::json!(finish);
                chunk["usageMetadata"] = usage.clone();
            }
            chunk["candidates"] = sonic_rs::json!([cand]);
            event(&mut ev, "", &chunk);
        }
    } else if let Some(name) = tool {
        event(&mut ev, "", &sonic_rs::json!({
            "candidates": [{ "content": { "parts": [call(name)], "role": "model" }, "finishReason": finish, "index": 0 }],
            "usageMetadata": usage, "modelVersion": g.model, "responseId": rid }));
    }
    Err(ev)
}

// ------------------------------------------------------------- OpenAI tool calls

/// A chat answer that calls `name` (non-stream body, or stream events).
pub(crate) fn openai_tool_call(g: &GenRequest, name: &str) -> Result<Bytes, Vec<Bytes>> {
    let id = format!("chatcmpl-mock{:016x}", g.seed);
    let call_id = format!("call_mock{:016x}", g.seed);
    let args = tool_input(g);
    let p = u64::from(g.prompt_tokens);
    let c = u64::from(g.completion_tokens);
    let usage = sonic_rs::json!({ "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c });
    let created = 1_700_000_000u64;
    if !g.stream {
        let body = sonic_rs::json!({ "id": id, "object": "chat.completion", "created": created, "model": g.model,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": null, "tool_calls": [
                { "id": call_id, "type": "function", "function": { "name": name, "arguments": args }}]},
                "logprobs": null, "finish_reason": "tool_calls" }],
            "usage": usage });
        return Ok(Bytes::from(json(&body)));
    }
    let chunk = |choices: sonic_rs::Value| {
        sonic_rs::json!({ "id": id, "object": "chat.completion.chunk", "created": created, "model": g.model,
            "choices": choices })
    };
    let mut ev = Vec::new();
    event(&mut ev, "", &chunk(sonic_rs::json!([{ "index": 0, "delta": { "role": "assistant", "content": null,
        "tool_calls": [{ "index": 0, "id": call_id, "type": "function", "function": { "name": name, "arguments": "" }}]},
        "logprobs": null, "finish_reason": null }])));
    let mid = args.char_indices().map(|(i, _)| i).nth(args.chars().count() / 2).unwrap_or(0);
    for piece in [&args[..mid], &args[mid..]] {
        event(&mut ev, "", &chunk(sonic_rs::json!([{ "index": 0, "delta": { "tool_calls": [{ "index": 0,
            "function": { "arguments": piece }}]}, "logprobs": null, "finish_reason": null }])));
    }
    event(&mut ev, "", &chunk(sonic_rs::json!([{ "index": 0, "delta": {}, "logprobs": null, "finish_reason": "tool_calls" }])));
    if g.include_usage {
        let mut u = chunk(sonic_rs::json!([]));
        u["usage"] = usage;
        event(&mut ev, "", &u);
    }
    ev.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Err(ev)
}

/// Does an OpenAI chat body offer tools? (Read only when a tool call is asked for.)
pub(crate) fn has_tools(body: &[u8]) -> bool {
    !crate::json::nesting_exceeds(body, MAX_DEPTH)
        && sonic_rs::get(body, ["tools"]).is_ok_and(|t| t.as_raw_str().trim_start().starts_with('[') && t.as_raw_str().len() > 2)
}

// ------------------------------------------------------------- errors

/// An error body in the vendor's shape.
pub(crate) fn error_body(vendor: Vendor, status: u16, message: &str) -> Bytes {
    let v = match vendor {
        Vendor::Anthropic => {
            let kind = crate::translate::anthropic::error_type_for_status(status);
            sonic_rs::json!({ "type": "error", "error": { "type": kind, "message": message }})
        }
        Vendor::Gemini { .. } => {
            let s = match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            sonic_rs::json!({ "error": { "code": status, "message": message, "status": s }})
        }
    };
    Bytes::from(json(&v))
}
