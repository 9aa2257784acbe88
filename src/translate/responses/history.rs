//! What `previous_response_id` needs kept, and usage read from a Responses
//! body or event where the deployment serves the Responses API itself.
//!
//! A conversation is stored as one JSON array of items: every earlier
//! turn's input items and output items, in order. `instructions` are not
//! part of it: as with OpenAI, a turn's instructions do not carry over to
//! the next (the API reference for `instructions` says so).

use sonic_rs::JsonValueTrait;

use super::Usage;

/// The stored conversation after a turn: `previous` (the conversation the
/// turn continued, if any), then its `input` items, then its `output`
/// items, each a JSON array. Refuses anything that is not an array.
pub fn conversation(previous: Option<&[u8]>, input: &[u8], output: &[u8]) -> Result<Vec<u8>, String> {
    let parts: Vec<&[u8]> = previous.into_iter().chain([input, output]).collect();
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 2);
    out.push(b'[');
    let mut first = true;
    for (n, p) in parts.iter().enumerate() {
        let inner = array_body(p).ok_or_else(|| format!("part {n} of the conversation is not a JSON array"))?;
        if inner.is_empty() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(inner);
        first = false;
    }
    out.push(b']');
    Ok(out)
}

/// A Responses request continuing a conversation Sluice keeps, for a
/// deployment that serves the Responses API itself but may never have seen
/// the earlier turns: `history` (the stored items) goes in front of the
/// request's own `input`, `previous_response_id` is dropped, and `model`
/// becomes the upstream's name. Every other member is copied as sent.
pub fn expand(body: &[u8], history: &[u8], model: &str) -> Result<Vec<u8>, String> {
    let body = crate::translate::readable(body)?;
    let input = super::request::input_items_of(body).ok_or("'input' must be a string or an array of items")?;
    let items = conversation(Some(history), &input, b"[]")?;
    let mut out = Vec::with_capacity(body.len() + items.len() + 16);
    out.push(b'{');
    let push = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
        if out.len() > 1 {
            out.push(b',');
        }
        crate::translate::write_json(out, &key);
        out.push(b':');
        out.extend_from_slice(value);
    };
    for member in sonic_rs::to_object_iter(body) {
        let (k, v) = member.map_err(|e| format!("the body is not a JSON object ({e})"))?;
        match &*k {
            "previous_response_id" | "input" => {}
            "model" => {
                let mut name = Vec::with_capacity(model.len() + 2);
                crate::translate::write_json(&mut name, &model);
                push(&mut out, "model", &name);
            }
            key => push(&mut out, key, v.as_raw_str().as_bytes()),
        }
    }
    push(&mut out, "input", &items);
    out.push(b'}');
    Ok(out)
}

/// The members of a JSON array, without its brackets and outer spaces;
/// `None` if `b` is not one valid array.
fn array_body(b: &[u8]) -> Option<&[u8]> {
    let text = crate::translate::readable(b).ok()?;
    let v: sonic_rs::LazyValue<'_> = sonic_rs::from_str(text).ok()?;
    if !v.is_array() {
        return None;
    }
    let t = b.trim_ascii();
    let inner = t.get(1..t.len().checked_sub(1)?)?;
    Some(inner.trim_ascii())
}

/// The `output` array of a Response object (from a deployment that serves
/// the Responses API), for [`conversation`].
pub fn output_items(response: &[u8]) -> Option<Vec<u8>> {
    let response = crate::translate::readable(response).ok()?;
    let v = sonic_rs::get(response, ["output"]).ok()?;
    v.is_array().then(|| v.as_raw_str().as_bytes().to_vec())
}

/// Usage of a Response object (a non-streamed answer).
pub fn usage_from_body(body: &[u8]) -> Option<Usage> {
    let body = crate::translate::readable(body).ok()?;
    let u = sonic_rs::get(body, ["usage"]).ok()?;
    read_usage(u.as_raw_str())
}

/// Usage of a stream event: the Response carried by `response.completed`,
/// `response.incomplete` or `response.failed`; `None` for other events.
pub fn usage_from_event(data: &[u8]) -> Option<Usage> {
    // Only the final events carry usage; skip the rest without parsing.
    memchr::memmem::find(data, b"\"usage\"")?;
    let data = crate::translate::readable(data).ok()?;
    let kind = sonic_rs::get(data, ["type"]).ok()?;
    if !matches!(kind.as_str(), Some("response.completed" | "response.incomplete" | "response.failed")) {
        return None;
    }
    let u = sonic_rs::get(data, ["response", "usage"]).ok()?;
    read_usage(u.as_raw_str())
}

fn read_usage(raw: &str) -> Option<Usage> {
    let n = |path: &[&str]| sonic_rs::get(raw, path).ok().and_then(|v| v.as_u64());
    Some(Usage {
        input_tokens: n(&["input_tokens"])?,
        output_tokens: n(&["output_tokens"])?,
        cached_tokens: n(&["input_tokens_details", "cached_tokens"]).unwrap_or(0),
        reasoning_tokens: n(&["output_tokens_details", "reasoning_tokens"]).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn conversations_concatenate() {
        let c = conversation(Some(br#"[{"a":1}]"#), b" [ ] ", br#"[{"b":2},{"c":3}]"#).unwrap();
        let v: Value = serde_json::from_slice(&c).unwrap();
        assert_eq!(v, json!([{"a": 1}, {"b": 2}, {"c": 3}]));
        let c = conversation(None, br#"[{"a":1}]"#, b"[]").unwrap();
        assert_eq!(c, br#"[{"a":1}]"#);
        assert_eq!(conversation(None, b"[]", b"[]").unwrap(), b"[]");
        assert!(conversation(None, br#"{"a":1}"#, b"[]").is_err());
        assert!(conversation(None, b"[1,", b"[]").is_err());
        assert!(conversation(None, b"", b"[]").is_err());
        assert!(conversation(None, b"[\"\xff\"]", b"[]").is_err(), "invalid UTF-8 is refused");
    }

    #[test]
    fn expanded_requests_carry_the_history() {
        let body = br#"{"model":"alias","previous_response_id":"resp_1","input":"c","store":true,"tools":[{"type":"web_search"}]}"#;
        let history =
            br#"[{"type":"message","role":"user","content":"a"},{"type":"message","role":"assistant","content":[]}]"#;
        let out = expand(body, history, "gpt-x").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-x");
        assert!(v.get("previous_response_id").is_none());
        assert_eq!(v["store"], true);
        assert_eq!(v["tools"][0]["type"], "web_search");
        let input = v["input"].as_array().unwrap();
        assert_eq!(input.len(), 3);
        assert_eq!(
            input[2],
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "c"}]})
        );
        // No input of its own: the history alone.
        let out = expand(br#"{"model":"m","previous_response_id":"r"}"#, history, "m").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["input"].as_array().unwrap().len(), 2);
        assert!(expand(br#"{"model":"m","input":5}"#, history, "m").is_err());
        assert!(expand(b"[1]", history, "m").is_err());
    }

    #[test]
    fn usage_of_bodies_and_events() {
        let u = json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 15});
        let want = Usage { input_tokens: 10, output_tokens: 5, cached_tokens: 4, reasoning_tokens: 2 };
        let body = json!({"id": "resp_1", "output": [{"type": "message"}], "usage": u}).to_string();
        assert_eq!(usage_from_body(body.as_bytes()), Some(want));
        assert_eq!(output_items(body.as_bytes()).unwrap(), br#"[{"type":"message"}]"#);
        let ev = json!({"type": "response.completed", "sequence_number": 9, "response": {"usage": u}}).to_string();
        assert_eq!(usage_from_event(ev.as_bytes()), Some(want));
        let delta = json!({"type": "response.output_text.delta", "delta": "\"usage\""}).to_string();
        assert_eq!(usage_from_event(delta.as_bytes()), None);
        let created = json!({"type": "response.created", "response": {"usage": null}}).to_string();
        assert_eq!(usage_from_event(created.as_bytes()), None);
        assert_eq!(usage_from_body(br#"{"usage": null}"#), None);
    }
}
