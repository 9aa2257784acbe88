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

/// Tokens in `text`, counted on the calling thread (CPU work: callers on
/// an event loop use [`count`]).
fn count_now(text: &str) -> u64 {
    bpe().map_or((text.len() as u64).div_ceil(4), |b| b.encode_ordinary(text).len() as u64)
}

/// Tokens in `text`.
pub async fn count(text: String) -> u64 {
    if text.is_empty() {
        return 0;
    }
    // Loading (first call) and encoding long answers are CPU work: keep
    // them off the worker's event loop.
    actix_web::web::block(move || count_now(&text)).await.unwrap_or(0)
}

/// Event runs kept before their text is read out of them.
const RAW_MAX: usize = 256 * 1024;
/// Text kept before a part of it is counted (on a blocking thread).
const TEXT_MAX: usize = 256 * 1024;

/// The text a stream produced, so far, for counting its tokens when the
/// upstream reports none (or the client left before the report came).
///
/// Cheap while the stream flows — each run of events is kept as it came
/// (a reference count, no parsing) — and bounded however long it runs:
/// past [`RAW_MAX`] the runs are read for their text and dropped, and past
/// [`TEXT_MAX`] the text is counted a part at a time on a blocking thread.
/// So a stream that ends with usage (the common case) never pays for
/// reading its text, and an endless one holds at most about half a MiB.
#[derive(Default)]
pub struct Tally {
    raw: Vec<bytes::Bytes>,
    raw_len: usize,
    text: String,
    /// Counts of text already handed to blocking threads.
    counted: Vec<tokio::task::JoinHandle<u64>>,
}

impl Tally {
    /// Keep one run of SSE events.
    pub fn push(&mut self, events: &bytes::Bytes) {
        self.raw_len += events.len();
        self.raw.push(events.clone());
        if self.raw_len > RAW_MAX {
            self.read_text();
            if self.text.len() > TEXT_MAX {
                self.count_part();
            }
        }
    }

    fn read_text(&mut self) {
        for run in self.raw.drain(..) {
            push_stream_text(&run, &mut self.text);
        }
        self.raw_len = 0;
    }

    /// Count all the text but its last word on a blocking thread (cut
    /// before a space, where the tokenizer splits anyway, so the parts
    /// count as the whole would).
    fn count_part(&mut self) {
        let cut = self.text.rfind(' ').filter(|&i| i > 0).unwrap_or(self.text.len());
        let rest = self.text.split_off(cut);
        let part = std::mem::replace(&mut self.text, rest);
        self.counted.push(tokio::task::spawn_blocking(move || count_now(&part)));
    }

    /// Every token of the text kept.
    pub async fn count(mut self) -> u64 {
        self.read_text();
        let mut n = count(std::mem::take(&mut self.text)).await;
        for part in self.counted {
            n = n.saturating_add(part.await.unwrap_or(0));
        }
        n
    }
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
    fn reads_anthropic_deltas_too() {
        let mut s = String::new();
        push_stream_text(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi there\"}}\n\n",
            &mut s,
        );
        assert_eq!(s, "Hi there");
    }

    #[actix_web::test]
    async fn a_long_stream_is_counted_in_parts_as_a_whole_and_held_bounded() {
        let event = |w: &str| {
            bytes::Bytes::from(format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" {w}\"}}}}]}}\n\n"
            ))
        };
        let mut t = Tally::default();
        let mut words = 0u64;
        for i in 0..20_000usize {
            let eight: Vec<&str> = (0..8).map(|j| crate::mock::generate::WORDS[(i + j) % 64]).collect();
            t.push(&event(&eight.join(" ")));
            words += 8;
            assert!(t.raw_len <= RAW_MAX + 100 && t.text.len() <= TEXT_MAX + 100);
        }
        assert!(!t.counted.is_empty(), "counted a part at a time");
        assert_eq!(t.count().await, words);
    }

    #[test]
    fn every_word_of_the_mock_is_one_token() {
        let b = bpe().unwrap();
        for w in crate::mock::generate::WORDS {
            assert_eq!(b.encode_ordinary(w).len(), 1, "{w}");
            assert_eq!(b.encode_ordinary(&format!(" {w}")).len(), 1, "' {w}'");
        }
    }

    #[test]
    fn counts_with_a_real_tokenizer() {
        let n = bpe().map(|b| b.encode_ordinary("Hello world, how are you today?").len());
        assert_eq!(n, Some(8));
    }
}
