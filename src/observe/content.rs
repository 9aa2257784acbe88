//! What a trace takes from the request and the answer: the `model` the
//! upstream answered with and, only with `record_content = true`, the
//! prompt and the answer text, each cut at `max_content_bytes`. Nothing
//! here runs for an unsampled request.

use sonic_rs::JsonValueTrait;

use super::RequestObs;
use crate::endpoint::Endpoint;

impl RequestObs {
    /// The request's prompt (`messages`, `prompt` or `input`, as the client
    /// sent it), when content is recorded.
    pub fn note_request(&self, body: &[u8], endpoint: Endpoint) {
        let Some(limit) = self.content_limit().filter(|_| self.wants_response()) else { return };
        let field = match endpoint {
            Endpoint::Chat | Endpoint::Messages | Endpoint::CountTokens => "messages",
            Endpoint::Completions | Endpoint::Images => "prompt",
            Endpoint::Embeddings
            | Endpoint::Responses
            | Endpoint::InputTokens
            | Endpoint::Moderations
            | Endpoint::Speech => "input",
            // Multipart, or no prompt at all: nothing to note.
            Endpoint::Transcriptions | Endpoint::Translations | Endpoint::Files | Endpoint::Batches => return,
        };
        if let Ok(v) = sonic_rs::get(body, [field]) {
            self.response().input = Some(cut(v.as_raw_str(), limit).to_string());
        }
    }

    /// A whole answer: its `model`, and its text when content is recorded.
    pub fn note_answer(&self, body: &[u8]) {
        if !self.wants_response() || crate::json::nesting_exceeds(body, crate::json::MAX_DEPTH) {
            return;
        }
        let mut r = self.response();
        if let Ok(m) = sonic_rs::get(body, ["model"])
            && let Some(m) = m.as_str()
        {
            r.model = Some(m.to_string());
        }
        if let Some(limit) = self.content_limit() {
            let text = crate::tokens::answer_text(body);
            r.output = Some(cut(&text, limit).to_string());
        }
    }

    /// A run of stream events: the first `model` seen, and the text so far
    /// when content is recorded.
    pub fn note_events(&self, events: &[u8]) {
        if !self.wants_response() {
            return;
        }
        let mut r = self.response();
        if r.model.is_none() {
            for ev in crate::sse::events(events) {
                if crate::json::nesting_exceeds(ev.data, crate::json::MAX_DEPTH) {
                    continue;
                }
                if let Ok(m) = sonic_rs::get(ev.data, ["model"])
                    && let Some(m) = m.as_str()
                {
                    r.model = Some(m.to_string());
                    break;
                }
            }
        }
        if let Some(limit) = self.content_limit() {
            let out = r.output.get_or_insert_with(String::new);
            if out.len() < limit {
                crate::tokens::push_stream_text(events, out);
                let n = cut(out, limit).len();
                out.truncate(n);
            }
        }
    }
}

/// At most `limit` bytes of `s`, cut on a character boundary.
fn cut(s: &str, limit: usize) -> &str {
    if s.len() <= limit {
        return s;
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(super::cut("héllo", 2), "h");
        assert_eq!(super::cut("héllo", 3), "hé");
        assert_eq!(super::cut("abc", 10), "abc");
    }
}
