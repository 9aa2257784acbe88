//! One stored answer in both shapes a client may ask for.
//!
//! From a whole upstream answer, the stream form is written the way a live
//! OpenAI stream looks: a role chunk, a content chunk (and a tool-call chunk
//! when there are tool calls) per choice, a finish chunk per choice, then the
//! usage-only chunk for clients that asked `include_usage`.
//!
//! From a completed upstream stream, the stream form is the events as they
//! came (so a replay has the live stream's exact chunks), and the whole form
//! is assembled from them: content and tool-call arguments concatenated per
//! choice, finish reasons, usage.
//!
//! Both run once per stored answer, never on a hit. A stream with an error
//! event, or any choice without a finish reason, is not an answer to store.

use std::collections::BTreeMap;

use bytes::Bytes;
use sluice_actors::response_cache::StoredAnswer;
use sonic_rs::{JsonContainerTrait, JsonValueMutTrait, JsonValueTrait, Value, json};

use crate::endpoint::Endpoint;
use crate::json::MAX_DEPTH;
use crate::sse;

fn parse(data: &[u8]) -> Option<Value> {
    if crate::json::nesting_exceeds(data, MAX_DEPTH) {
        return None;
    }
    sonic_rs::from_slice(data).ok()
}

fn event(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&sonic_rs::to_vec(v).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
}

/// `id`, `object`, `created`, `model` (and `system_fingerprint`) of a chunk.
fn chunk_head(top: &Value, object: &str) -> Value {
    let mut c = json!({
        "id": top.get("id").cloned().unwrap_or_else(|| json!("")),
        "object": object,
        "created": top.get("created").cloned().unwrap_or_else(|| json!(0)),
        "model": top.get("model").cloned().unwrap_or_else(|| json!("")),
    });
    if let (Some(fp), Some(o)) = (top.get("system_fingerprint"), c.as_object_mut()) {
        o.insert("system_fingerprint", fp.clone());
    }
    c
}

fn with_choice(head: &Value, choice: Value) -> Value {
    let mut c = head.clone();
    if let Some(o) = c.as_object_mut() {
        o.insert("choices", json!([choice]));
    }
    c
}

/// The answer to store for a whole (non-stream) upstream body, or `None`
/// when it is not a complete answer.
pub fn from_body(endpoint: Endpoint, body: &Bytes) -> Option<StoredAnswer> {
    if endpoint == Endpoint::Embeddings {
        // Checked to be a JSON object with data: an error body is never stored.
        let v = parse(body)?;
        v.get("data")?.as_array()?;
        return Some(StoredAnswer { body: body.clone(), events: Bytes::new(), usage_event: Bytes::new() });
    }
    let top = parse(body)?;
    let choices = top.get("choices")?.as_array()?;
    let chat = endpoint == Endpoint::Chat;
    let head = chunk_head(&top, if chat { "chat.completion.chunk" } else { "text_completion" });
    let mut events = Vec::with_capacity(body.len() + 512);
    for ch in choices.iter() {
        let index = ch.get("index").cloned().unwrap_or_else(|| json!(0));
        let finish = ch.get("finish_reason").filter(|f| f.is_str())?.clone();
        if chat {
            let msg = ch.get("message")?;
            let start = json!({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null});
            event(&mut events, &with_choice(&head, start));
            if let Some(text) = msg.get("content").and_then(|c| c.as_str()).filter(|t| !t.is_empty()) {
                let c = json!({"index": index, "delta": {"content": text}, "logprobs": null, "finish_reason": null});
                event(&mut events, &with_choice(&head, c));
            }
            if let Some(calls) = msg.get("tool_calls").and_then(|t| t.as_array()).filter(|a| !a.is_empty()) {
                let mut indexed = Vec::with_capacity(calls.len());
                for (i, call) in calls.iter().enumerate() {
                    let mut call = call.clone();
                    if let Some(o) = call.as_object_mut() {
                        o.insert("index", json!(i));
                    }
                    indexed.push(call);
                }
                let c =
                    json!({"index": index, "delta": {"tool_calls": indexed}, "logprobs": null, "finish_reason": null});
                event(&mut events, &with_choice(&head, c));
            }
            let end = json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": finish});
            event(&mut events, &with_choice(&head, end));
        } else {
            let text = ch.get("text").and_then(|t| t.as_str()).unwrap_or("");
            let c = json!({"text": text, "index": index, "logprobs": null, "finish_reason": null});
            event(&mut events, &with_choice(&head, c));
            let end = json!({"text": "", "index": index, "logprobs": null, "finish_reason": finish});
            event(&mut events, &with_choice(&head, end));
        }
    }
    let mut usage_event = Vec::new();
    if let Some(u) = top.get("usage").filter(|u| u.is_object()) {
        let mut c = head.clone();
        if let Some(o) = c.as_object_mut() {
            o.insert("choices", json!([]));
            o.insert("usage", u.clone());
        }
        event(&mut usage_event, &c);
    }
    Some(StoredAnswer { body: body.clone(), events: Bytes::from(events), usage_event: Bytes::from(usage_event) })
}

#[derive(Default)]
struct ToolCall {
    id: Option<Value>,
    kind: Option<Value>,
    name: String,
    arguments: String,
}

#[derive(Default)]
struct Choice {
    content: Option<String>,
    refusal: Option<String>,
    tools: BTreeMap<u64, ToolCall>,
    finish: Option<Value>,
}

/// The answer to store for a completed upstream stream (every event as
/// received, `[DONE]` included), or `None` when it is not a complete answer.
pub fn from_stream(endpoint: Endpoint, stream: &[u8]) -> Option<StoredAnswer> {
    let chat = endpoint == Endpoint::Chat;
    let mut first: Option<Value> = None;
    let mut choices: BTreeMap<u64, Choice> = BTreeMap::new();
    let mut usage: Option<Value> = None;
    let mut events = Vec::with_capacity(stream.len());
    let mut usage_event: &[u8] = &[];
    let mut done = false;
    for ev in sse::events(stream) {
        let raw = &stream[ev.start..ev.end];
        if ev.data.is_empty() {
            continue;
        }
        if ev.data == b"[DONE]" {
            done = true;
            continue;
        }
        let v = parse(ev.data)?;
        if v.get("error").is_some() {
            return None;
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            usage = Some(u.clone());
        }
        let list = v.get("choices").and_then(|c| c.as_array());
        if list.is_some_and(|l| l.is_empty()) && usage.is_some() {
            usage_event = raw;
            continue;
        }
        events.extend_from_slice(raw);
        for ch in list.into_iter().flat_map(|l| l.iter()) {
            let idx = ch.get("index").and_then(|i| i.as_u64()).unwrap_or(0);
            let c = choices.entry(idx).or_default();
            if let Some(f) = ch.get("finish_reason").filter(|f| f.is_str()) {
                c.finish = Some(f.clone());
            }
            let (text, delta) = if chat {
                let d = ch.get("delta");
                (d.and_then(|d| d.get("content")).and_then(|t| t.as_str()), d)
            } else {
                (ch.get("text").and_then(|t| t.as_str()), None)
            };
            if let Some(t) = text {
                c.content.get_or_insert_with(String::new).push_str(t);
            }
            let Some(d) = delta else { continue };
            if let Some(r) = d.get("refusal").and_then(|r| r.as_str()) {
                c.refusal.get_or_insert_with(String::new).push_str(r);
            }
            for call in d.get("tool_calls").and_then(|t| t.as_array()).into_iter().flat_map(|a| a.iter()) {
                let ti = call.get("index").and_then(|i| i.as_u64()).unwrap_or(0);
                let tc = c.tools.entry(ti).or_default();
                if let Some(id) = call.get("id").filter(|i| i.is_str()) {
                    tc.id = Some(id.clone());
                }
                if let Some(k) = call.get("type").filter(|k| k.is_str()) {
                    tc.kind = Some(k.clone());
                }
                if let Some(f) = call.get("function") {
                    if let Some(n) = f.get("name").and_then(|n| n.as_str()) {
                        tc.name.push_str(n);
                    }
                    if let Some(a) = f.get("arguments").and_then(|a| a.as_str()) {
                        tc.arguments.push_str(a);
                    }
                }
            }
        }
        if first.is_none() {
            first = Some(v);
        }
    }
    let first = first?;
    if !done || choices.is_empty() || choices.values().any(|c| c.finish.is_none()) {
        return None;
    }
    let mut head = chunk_head(&first, if chat { "chat.completion" } else { "text_completion" });
    let list: Vec<Value> = choices
        .into_iter()
        .map(|(i, c)| {
            let finish = c.finish.unwrap_or_else(|| json!("stop"));
            if !chat {
                return json!({"text": c.content.unwrap_or_default(), "index": i, "logprobs": null, "finish_reason": finish});
            }
            let mut msg = json!({"role": "assistant", "content": c.content});
            if let Some(o) = msg.as_object_mut() {
                if let Some(r) = c.refusal {
                    o.insert("refusal", json!(r));
                }
                if !c.tools.is_empty() {
                    let calls: Vec<Value> = c
                        .tools
                        .into_values()
                        .map(|t| {
                            json!({
                                "id": t.id.unwrap_or_else(|| json!("")),
                                "type": t.kind.unwrap_or_else(|| json!("function")),
                                "function": {"name": t.name, "arguments": t.arguments},
                            })
                        })
                        .collect();
                    o.insert("tool_calls", json!(calls));
                }
            }
            json!({"index": i, "message": msg, "logprobs": null, "finish_reason": finish})
        })
        .collect();
    if let Some(o) = head.as_object_mut() {
        o.insert("choices", json!(list));
        if let Some(u) = usage {
            o.insert("usage", u);
        }
    }
    Some(StoredAnswer {
        body: Bytes::from(sonic_rs::to_vec(&head).ok()?),
        events: Bytes::from(events),
        usage_event: Bytes::copy_from_slice(usage_event),
    })
}

/// The SSE replay of `a` for a client, as pieces sent one after another
/// (no copy): the events, the usage chunk if asked, and `[DONE]`.
pub fn replay(a: &StoredAnswer, include_usage: bool) -> [Bytes; 3] {
    let usage = if include_usage { a.usage_event.clone() } else { Bytes::new() };
    [a.events.clone(), usage, Bytes::from_static(b"data: [DONE]\n\n")]
}

#[cfg(test)]
mod tests;
