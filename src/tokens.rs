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
/// legacy `text`, tool-call argument pieces; on `/v1/messages`, Anthropic's
/// `content_block_delta` text and tool-input pieces) to `out`.
pub fn push_stream_text(events: &[u8], out: &mut String) {
    for ev in crate::sse::events(events) {
        if ev.data.is_empty() || ev.data == b"[DONE]" || crate::json::nesting_exceeds(ev.data, crate::json::MAX_DEPTH) {
            continue;
        }
        if let Ok(delta) = sonic_rs::get(ev.data, ["delta"]) {
            // Anthropic's events: `{"type":"content_block_delta","delta":{"text":..}}`.
            for field in ["text", "partial_json", "thinking"] {
                if let Ok(t) = sonic_rs::get(delta.as_raw_str(), [field])
                    && let Some(t) = t.as_str()
                {
                    out.push_str(t);
                }
            }
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
