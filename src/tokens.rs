//! Token counting for when an upstream reports no usage: the answer's text
//! is counted with a real BPE tokenizer (tiktoken's o200k_base, the GPT-4o
//! family's encoding), the prompt is the hot path's estimate. Exact usage
//! from the upstream is always preferred; this is the fallback.
//!
//! The encoder's tables take ~100 ms and some MB to load, so they load on
//! first use, on a blocking thread.

use std::sync::OnceLock;

use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use tiktoken_rs::CoreBPE;

static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();

fn bpe() -> Option<&'static CoreBPE> {
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// Tokens in `text`.
pub async fn count(text: String) -> u64 {
    if text.is_empty() {
        return 0;
    }
    // Loading (first call) and encoding long answers are CPU work: keep
    // them off the worker's event loop.
    actix_web::web::block(move || {
        bpe().map_or((text.len() as u64).div_ceil(4), |b| b.encode_ordinary(&text).len() as u64)
    })
    .await
    .unwrap_or(0)
}

/// The generated text of a whole answer: every choice's `message.content`
/// (or `text`) and tool-call arguments of a chat or legacy completion; the
/// text and tool inputs of a Messages answer's `content`; the text and call
/// arguments of a Response's `output`.
pub fn answer_text(body: &[u8]) -> String {
    let mut out = String::new();
    if crate::json::nesting_exceeds(body, crate::json::MAX_DEPTH) {
        return out;
    }
    let Ok(choices) = sonic_rs::get(body, ["choices"]) else {
        for member in ["content", "output"] {
            if let Ok(v) = sonic_rs::get(body, [member])
                && let Ok(v) = sonic_rs::from_str::<sonic_rs::Value>(v.as_raw_str())
            {
                strings(&v, &ANSWER_KEYS, &mut out);
            }
        }
        return out;
    };
    let Ok(v) = sonic_rs::from_str::<sonic_rs::Value>(choices.as_raw_str()) else { return out };
    for c in v.as_array().into_iter().flatten() {
        if let Some(t) = c.get("text").and_then(|t| t.as_str()) {
            out.push_str(t);
        }
        if let Some(m) = c.get("message") {
            if let Some(t) = m.get("content").and_then(|t| t.as_str()) {
                out.push_str(t);
            }
            for call in m.get("tool_calls").and_then(|t| t.as_array()).into_iter().flatten() {
                if let Some(a) = call.get("function").and_then(|f| f.get("arguments")).and_then(|a| a.as_str()) {
                    out.push_str(a);
                }
            }
        }
    }
    out
}

/// Members of a Messages or Response answer whose strings are generated text.
const ANSWER_KEYS: [&str; 5] = ["text", "thinking", "arguments", "input", "partial_json"];

/// Append every string under one of `keys` in `v` (at any depth; an object
/// under such a key, a tool's `input`, counts as its JSON text).
fn strings(v: &sonic_rs::Value, keys: &[&str], out: &mut String) {
    if let Some(o) = v.as_object() {
        for (k, x) in o.iter() {
            if keys.contains(&k) {
                match x.as_str() {
                    Some(t) => out.push_str(t),
                    None if x.is_object() => out.push_str(&x.to_string()),
                    None => strings(x, keys, out),
                }
            } else {
                strings(x, keys, out);
            }
        }
    } else if let Some(a) = v.as_array() {
        for x in a.iter() {
            strings(x, keys, out);
        }
    }
}

/// Append the generated text of a run of SSE events to `out`: OpenAI
/// chunks (deltas' `content`, legacy `text`, tool-call argument pieces),
/// Anthropic's `content_block_delta` (`text`, `thinking`, `partial_json`)
/// and the Responses API's text and argument deltas.
pub fn push_stream_text(events: &[u8], out: &mut String) {
    for ev in crate::sse::events(events) {
        if ev.data.is_empty() || ev.data == b"[DONE]" || crate::json::nesting_exceeds(ev.data, crate::json::MAX_DEPTH) {
            continue;
        }
        let Ok(choices) = sonic_rs::get(ev.data, ["choices"]) else {
            match sonic_rs::get(ev.data, ["delta"]) {
                Ok(d) if d.is_str() => out.push_str(d.as_str().unwrap_or("")),
                Ok(d) => {
                    for k in ["text", "thinking", "partial_json"] {
                        if let Ok(t) = sonic_rs::get(d.as_raw_str(), [k])
                            && let Some(t) = t.as_str()
                        {
                            out.push_str(t);
                        }
                    }
                }
                Err(_) => {}
            }
            continue;
        };
        let Ok(v) = sonic_rs::from_str::<sonic_rs::Value>(choices.as_raw_str()) else { continue };
        for c in v.as_array().into_iter().flatten() {
            if let Some(t) = c.get("text").and_then(|t| t.as_str()) {
                out.push_str(t);
            }
            if let Some(d) = c.get("delta") {
                if let Some(t) = d.get("content").and_then(|t| t.as_str()) {
                    out.push_str(t);
                }
                for call in d.get("tool_calls").and_then(|t| t.as_array()).into_iter().flatten() {
                    if let Some(a) = call.get("function").and_then(|f| f.get("arguments")).and_then(|a| a.as_str()) {
                        out.push_str(a);
                    }
                }
            }
        }
    }
}

/// Tokens of the prompt of a Messages or Responses request (`body`), for
/// the token counters where no upstream can count: the text of `system` /
/// `instructions`, every message or input item (and `history`, the stored
/// conversation a Responses request continues) and the tools, with the
/// tokenizer. Message structure costs a few tokens each, counted as 3 per
/// message or item, as OpenAI documents for chat. Never 0 for a request
/// that has a prompt.
pub async fn prompt_tokens(body: bytes::Bytes, history: Option<bytes::Bytes>) -> u64 {
    actix_web::web::block(move || {
        let mut text = String::new();
        let mut items = 0u64;
        let mut add = |raw: &[u8], text: &mut String| {
            if crate::json::nesting_exceeds(raw, crate::json::MAX_DEPTH) {
                return;
            }
            let Ok(v) = sonic_rs::from_slice::<sonic_rs::Value>(raw) else { return };
            match v.as_str() {
                Some(t) => {
                    text.push_str(t);
                    items += 1;
                }
                None => {
                    items += v.as_array().map_or(0, |a| a.len() as u64);
                    prompt_strings(&v, text);
                }
            }
        };
        if let Some(h) = &history {
            add(h, &mut text);
        }
        for member in ["system", "instructions", "messages", "input", "tools"] {
            if let Ok(v) = sonic_rs::get(&body[..], [member]) {
                add(v.as_raw_str().as_bytes(), &mut text);
                text.push('\n');
            }
        }
        let counted = bpe().map_or((text.len() as u64).div_ceil(4), |b| b.encode_ordinary(&text).len() as u64);
        counted + 3 * items
    })
    .await
    .unwrap_or(0)
}

/// Every string value in `v` that a model reads: text, tool names and
/// descriptions, schemas (as JSON), tool inputs and outputs; not the `type`
/// tags, ids and signatures that only frame them.
fn prompt_strings(v: &sonic_rs::Value, out: &mut String) {
    const FRAMING: [&str; 6] = ["type", "id", "call_id", "tool_use_id", "signature", "cache_control"];
    if let Some(o) = v.as_object() {
        for (k, x) in o.iter() {
            if FRAMING.contains(&k) {
                continue;
            }
            match x.as_str() {
                Some(t) => {
                    out.push_str(t);
                    out.push(' ');
                }
                None if matches!(k, "input_schema" | "parameters" | "input") && x.is_object() => {
                    out.push_str(&x.to_string());
                    out.push(' ');
                }
                None => prompt_strings(x, out),
            }
        }
    } else if let Some(a) = v.as_array() {
        for x in a.iter() {
            prompt_strings(x, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_text() {
        let body = br#"{"choices":[{"message":{"content":"Hello there","tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}"#;
        assert_eq!(answer_text(body), "Hello there{\"a\":1}");
        let mut s = String::new();
        push_stream_text(
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n",
            &mut s,
        );
        assert_eq!(s, "Hi");
    }

    #[test]
    fn answers_of_every_protocol_have_text() {
        let messages = br#"{"type":"message","content":[{"type":"text","text":"Hi "},{"type":"tool_use","id":"t","name":"f","input":{"a":1}}]}"#;
        assert_eq!(answer_text(messages), "Hi {\"a\":1}");
        let response = br#"{"object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"Yo","annotations":[]}]},{"type":"function_call","name":"f","arguments":"{}"}]}"#;
        assert_eq!(answer_text(response), "Yo{}");
        let mut s = String::new();
        push_stream_text(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ab\"}}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"cd\"}\n\n", &mut s);
        assert_eq!(s, "abcd");
    }

    #[actix_web::test]
    async fn prompts_are_counted_never_zero() {
        let body = bytes::Bytes::from_static(br#"{"model":"m","system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"Hello world, how are you today?"}]}],"tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object"}}]}"#);
        let n = prompt_tokens(body, None).await;
        // 8 tokens of the question alone, plus the rest and the overhead.
        assert!(n > 12 && n < 60, "{n}");
        let short = prompt_tokens(bytes::Bytes::from_static(br#"{"model":"m","input":"Hi"}"#), None).await;
        assert!(short >= 1);
        let history = bytes::Bytes::from_static(
            br#"[{"type":"message","role":"user","content":"Hello world, how are you today?"}]"#,
        );
        let more = prompt_tokens(bytes::Bytes::from_static(br#"{"model":"m","input":"Hi"}"#), Some(history)).await;
        assert!(more > short + 7, "{more} vs {short}");
    }

    #[test]
    fn counts_with_a_real_tokenizer() {
        let n = bpe().map(|b| b.encode_ordinary("Hello world, how are you today?").len());
        assert_eq!(n, Some(8));
    }
}
