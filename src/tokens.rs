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
    actix_web::web::block(move || count_now(&text)).await.unwrap_or(0)
}

/// The generated text of a stream whose upstream reports no usage, counted
/// as it goes so that what is kept stays bounded whatever the answer's
/// length: text gathers up to [`COUNT_EVERY`] bytes, then that piece is
/// counted on a blocking thread (the tokenizer is CPU work, off the event
/// loop) and let go. Pieces are cut just before a space that follows a
/// word, where o200k's pre-tokenizer splits too (a word carries its
/// leading space), so the pieces' counts add up to the whole text's.
#[derive(Default)]
pub struct StreamText {
    pending: String,
    counting: Vec<tokio::task::JoinHandle<u64>>,
}

/// How much text a stream keeps before counting it.
pub const COUNT_EVERY: usize = 16 * 1024;

impl StreamText {
    /// Add a run of SSE chunks' text (see [`push_stream_text`]).
    pub fn push(&mut self, events: &[u8]) {
        push_stream_text(events, &mut self.pending);
        if self.pending.len() >= COUNT_EVERY {
            // Cut before the last " word" of the piece's end (a long
            // stretch without one is cut anywhere on a char boundary).
            let end = self.pending.len();
            let from = end.saturating_sub(256);
            let bytes = self.pending.as_bytes();
            let cut = (from.max(1)..end)
                .rev()
                .find(|&i| bytes[i] == b' ' && !bytes[i - 1].is_ascii_whitespace())
                .unwrap_or(end);
            let rest = self.pending.split_off(cut);
            let piece = std::mem::replace(&mut self.pending, rest);
            self.counting.push(tokio::task::spawn_blocking(move || count_now(&piece)));
        }
    }

    /// Bytes of text held right now (at most about [`COUNT_EVERY`] plus one run).
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Every token of the text pushed.
    pub async fn count(self) -> u64 {
        let mut n = count(self.pending).await;
        for h in self.counting {
            n += h.await.unwrap_or(0);
        }
        n
    }
}

fn count_now(text: &str) -> u64 {
    bpe().map_or((text.len() as u64).div_ceil(4), |b| b.encode_ordinary(text).len() as u64)
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

    #[actix_rt::test]
    async fn stream_text_is_counted_as_it_goes_and_kept_bounded() {
        let word = "data: {\"choices\":[{\"delta\":{\"content\":\"hello \"}}]}\n\n";
        let run = word.repeat(1000);
        let mut t = StreamText::default();
        let mut whole = String::new();
        for _ in 0..20 {
            t.push(run.as_bytes());
            push_stream_text(run.as_bytes(), &mut whole);
            assert!(t.held() < COUNT_EVERY + 6 * 1000, "{}", t.held());
        }
        assert_eq!(whole.len(), 120_000);
        assert_eq!(t.count().await, count(whole).await);
    }

    #[test]
    fn counts_with_a_real_tokenizer() {
        let n = bpe().map(|b| b.encode_ordinary("Hello world, how are you today?").len());
        assert_eq!(n, Some(8));
    }
}
