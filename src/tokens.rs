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

/// The generated text of a whole chat or legacy completion: every choice's
/// `message.content` (or `text`), plus tool-call arguments.
pub fn answer_text(body: &[u8]) -> String {
    let mut out = String::new();
    if crate::json::nesting_exceeds(body, crate::json::MAX_DEPTH) {
        return out;
    }
    let Ok(choices) = sonic_rs::get(body, ["choices"]) else { return out };
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

/// Append the generated text of a run of SSE chunks (deltas' `content`,
/// legacy `text`, tool-call argument pieces) to `out`.
pub fn push_stream_text(events: &[u8], out: &mut String) {
    for ev in crate::sse::events(events) {
        if ev.data.is_empty() || ev.data == b"[DONE]" || crate::json::nesting_exceeds(ev.data, crate::json::MAX_DEPTH) {
            continue;
        }
        let Ok(choices) = sonic_rs::get(ev.data, ["choices"]) else { continue };
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
