//! Gemini `streamGenerateContent?alt=sse` events as OpenAI chunks.
//!
//! Every event is a whole `GenerateContentResponse` holding the next piece
//! of each candidate. The first event opens each candidate's choice with a
//! role chunk; text parts become `content` deltas; each `functionCall` part
//! (Gemini sends them whole) becomes one `tool_calls` delta with id, name
//! and the complete arguments; a `finishReason` becomes the finish chunk.
//! Gemini ends a stream by closing it (there is no `[DONE]`), so the usage
//! chunk (from the last `usageMetadata` seen) and `[DONE]` are written when
//! the upstream body ends.

use super::{GenerateContentResponse, call_id, finish_reason};
use crate::translate::openai::{ChunkWriter, Usage};
use crate::translate::{SseOut, StreamError, StreamTranslate, parse, utf8};

#[derive(Debug, Default)]
pub struct StreamTranslator {
    w: ChunkWriter,
    fallback_model: String,
    response_id: Option<String>,
    /// Per candidate index: role sent, function calls made.
    candidates: Vec<(bool, u32)>,
    calls_total: u32,
    usage: Option<Usage>,
    done: bool,
}

impl StreamTranslator {
    pub fn new(model: &str, created: u64) -> StreamTranslator {
        StreamTranslator {
            w: ChunkWriter { created, ..ChunkWriter::default() },
            fallback_model: model.to_owned(),
            ..StreamTranslator::default()
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn event(&mut self, data: &[u8], out: &mut SseOut) -> Result<(), StreamError> {
        if data.is_empty() || self.done {
            return Ok(());
        }
        let invalid = |e: String| StreamError::Invalid(format!("an event is not valid JSON ({e})"));
        let data = utf8(data).map_err(invalid)?;
        // A failure mid-stream arrives as an error object instead of a response.
        if data.starts_with("{\"error\"")
            && let Some((status, message)) = super::read_error(data)
        {
            return Err(StreamError::Upstream { kind: status, message });
        }
        let r: GenerateContentResponse<'_> = parse(data).map_err(invalid)?;
        if self.w.id.is_empty() {
            self.response_id = r.response_id.as_deref().map(str::to_owned);
            self.w.id = format!("chatcmpl-{}", r.response_id.as_deref().unwrap_or("gemini"));
            self.w.model = r.model_version.as_deref().unwrap_or(&self.fallback_model).to_owned();
        }
        if let Some(u) = r.usage_metadata {
            self.usage = Some(u.to_openai());
        }
        if r.candidates.is_empty() && r.prompt_feedback.as_ref().is_some_and(|f| f.block_reason.is_some()) {
            self.open(out, 0);
            self.w.finish(out, 0, "content_filter");
        }
        for (pos, c) in r.candidates.iter().enumerate() {
            let idx = c.index.unwrap_or(pos as u32);
            self.open(out, idx);
            for p in c.content.iter().flat_map(|c| c.parts.iter()) {
                if let (Some(t), false) = (&p.text, p.thought == Some(true))
                    && !t.is_empty()
                {
                    self.w.text(out, idx, t);
                }
                if let Some(fc) = &p.function_call {
                    let id = fc.id.as_deref().map_or_else(
                        || call_id(self.response_id.as_deref(), self.w.created, self.calls_total),
                        str::to_owned,
                    );
                    self.calls_total += 1;
                    let slot = self.slot(idx);
                    let call = slot.1;
                    slot.1 += 1;
                    let args = fc.args.as_ref().map_or(std::borrow::Cow::Borrowed("{}"), |a| a.as_raw_str());
                    self.w.tool_call(out, idx, call, Some((&id, &fc.name)), &args);
                }
            }
            if let Some(reason) = c.finish_reason.as_deref() {
                let called = self.slot(idx).1 > 0;
                self.w.finish(out, idx, finish_reason(Some(reason), called));
            }
        }
        Ok(())
    }

    fn slot(&mut self, idx: u32) -> &mut (bool, u32) {
        let i = idx as usize;
        if self.candidates.len() <= i {
            // Candidate indexes are small (candidateCount ≤ 8); cap anyway.
            self.candidates.resize(i.min(64) + 1, (false, 0));
        }
        let last = self.candidates.len() - 1;
        &mut self.candidates[i.min(last)]
    }

    fn open(&mut self, out: &mut SseOut, idx: u32) {
        if !self.slot(idx).0 {
            self.slot(idx).0 = true;
            self.w.role(out, idx);
        }
    }

    /// The upstream ended: usage and `[DONE]`. A stream with no event at all
    /// was cut before it began.
    pub fn end(&mut self, out: &mut SseOut) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        if self.w.id.is_empty() {
            return Err(StreamError::Invalid("the stream ended before its first event".into()));
        }
        self.done = true;
        if let Some(u) = self.usage {
            self.w.usage(out, u);
        }
        ChunkWriter::done(out);
        Ok(())
    }
}

impl StreamTranslate for StreamTranslator {
    fn event(&mut self, data: &[u8], out: &mut SseOut) -> Result<(), StreamError> {
        StreamTranslator::event(self, data, out)
    }
    fn end(&mut self, out: &mut SseOut) -> Result<(), StreamError> {
        StreamTranslator::end(self, out)
    }
}
