//! OpenAI chunks as Anthropic Messages stream events, for `/v1/messages`
//! over OpenAI-shaped deployments.
//!
//! The first chunk opens the message (`message_start`). Text deltas go into
//! a `text` block, each tool call into a `tool_use` block (opened with its
//! id and name, its `arguments` pieces as `input_json_delta`); a block is
//! closed (`content_block_stop`) when the next kind of content starts or
//! the choice finishes. OpenAI sends usage after the finish chunk, so
//! `message_delta` (stop reason and usage) and `message_stop` are written
//! at `[DONE]` (or when the upstream ends after a finish reason).

use std::borrow::Cow;

use serde::Serialize;

use crate::translate::anthropic::{MessagesResponse, Usage, stop_reason};
use crate::translate::openai::{self, Chunk};
use crate::translate::{SseOut, StreamError, StreamTranslate, parse, utf8};

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: MessagesResponse<'a>,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: StartBlock<'a>,
}

#[derive(Serialize)]
struct StartBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<EmptyObject>,
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaOut<'a>,
}

#[derive(Serialize)]
struct DeltaOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial_json: Option<&'a str>,
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: Usage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct MessageStop {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text(u32),
    /// `(block index, OpenAI tool call index)`
    Tool(u32, u32),
}

#[derive(Debug)]
pub struct StreamTranslator {
    started: bool,
    open: Open,
    next_block: u32,
    finish: Option<&'static str>,
    usage: Option<openai::Usage>,
    done: bool,
}

impl Default for StreamTranslator {
    fn default() -> Self {
        StreamTranslator { started: false, open: Open::None, next_block: 0, finish: None, usage: None, done: false }
    }
}

impl StreamTranslator {
    pub fn new() -> StreamTranslator {
        StreamTranslator::default()
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn event(&mut self, data: &[u8], out: &mut SseOut) -> Result<(), StreamError> {
        if data.is_empty() || self.done {
            return Ok(());
        }
        let invalid = |e: String| StreamError::Invalid(format!("a chunk is not valid JSON ({e})"));
        let data = utf8(data).map_err(invalid)?;
        if data == "[DONE]" {
            return self.close(out);
        }
        // OpenAI-compatible servers (vLLM, ...) report a failure mid-stream
        // as a chunk `{"error": {...}}`.
        if memchr::memmem::find(data.as_bytes(), b"\"error\"").is_some()
            && let Some((kind, message)) = upstream_error(data)
        {
            return Err(StreamError::Upstream { kind, message });
        }
        let c: Chunk<'_> = parse(data).map_err(invalid)?;
        if !self.started {
            self.started = true;
            let message = MessagesResponse {
                id: c.id.clone(),
                kind: Cow::Borrowed("message"),
                role: Cow::Borrowed("assistant"),
                model: c.model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: Usage { input_tokens: Some(0), output_tokens: Some(0), ..Usage::default() },
            };
            out.event("message_start", &MessageStart { kind: "message_start", message });
        }
        if let Some(u) = c.usage {
            self.usage = Some(u);
        }
        for choice in c.choices.iter().filter(|ch| ch.index == 0) {
            let d = &choice.delta;
            if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
                let index = match self.open {
                    Open::Text(i) => i,
                    _ => {
                        self.stop_block(out);
                        let i = self
                            .start(out, StartBlock { kind: "text", text: Some(""), id: None, name: None, input: None });
                        self.open = Open::Text(i);
                        i
                    }
                };
                let delta = DeltaOut { kind: "text_delta", text: Some(t), partial_json: None };
                out.event("content_block_delta", &BlockDelta { kind: "content_block_delta", index, delta });
            }
            for tc in d.tool_calls.iter().flatten() {
                let new_call = match self.open {
                    Open::Tool(_, call) => call != tc.index || tc.id.is_some(),
                    _ => true,
                };
                if new_call {
                    self.stop_block(out);
                    let f = tc.function.as_ref();
                    let name = f.and_then(|f| f.name.as_deref()).unwrap_or("");
                    let start = StartBlock {
                        kind: "tool_use",
                        text: None,
                        id: Some(tc.id.as_deref().unwrap_or("")),
                        name: Some(name),
                        input: Some(EmptyObject {}),
                    };
                    let i = self.start(out, start);
                    self.open = Open::Tool(i, tc.index);
                }
                let args = tc.function.as_ref().and_then(|f| f.arguments.as_deref()).filter(|a| !a.is_empty());
                if let (Open::Tool(index, _), Some(a)) = (self.open, args) {
                    let delta = DeltaOut { kind: "input_json_delta", text: None, partial_json: Some(a) };
                    out.event("content_block_delta", &BlockDelta { kind: "content_block_delta", index, delta });
                }
            }
            if let Some(f) = choice.finish_reason.as_deref() {
                self.finish = Some(stop_reason(Some(f)));
                self.stop_block(out);
            }
        }
        Ok(())
    }

    fn start(&mut self, out: &mut SseOut, block: StartBlock<'_>) -> u32 {
        let index = self.next_block;
        self.next_block += 1;
        out.event("content_block_start", &BlockStart { kind: "content_block_start", index, content_block: block });
        index
    }

    fn stop_block(&mut self, out: &mut SseOut) {
        let index = match self.open {
            Open::None => return,
            Open::Text(i) | Open::Tool(i, _) => i,
        };
        self.open = Open::None;
        out.event("content_block_stop", &BlockStop { kind: "content_block_stop", index });
    }

    /// `message_delta` and `message_stop`.
    fn close(&mut self, out: &mut SseOut) -> Result<(), StreamError> {
        if !self.started {
            return Err(StreamError::Invalid("the stream ended before its first chunk".into()));
        }
        self.stop_block(out);
        let usage = Usage::from_openai(&self.usage.unwrap_or_default());
        let delta = StopDelta { stop_reason: self.finish.unwrap_or("end_turn"), stop_sequence: None };
        out.event("message_delta", &MessageDelta { kind: "message_delta", delta, usage });
        out.event("message_stop", &MessageStop { kind: "message_stop" });
        self.done = true;
        Ok(())
    }

    /// The upstream ended. Without `[DONE]`, a stream that reached a finish
    /// reason is closed normally; one that did not was cut short.
    pub fn end(&mut self, out: &mut SseOut) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        if self.finish.is_some() {
            return self.close(out);
        }
        Err(StreamError::Invalid("the stream ended before a finish reason".into()))
    }
}

/// `(type, message)` of a `{"error": {...}}` chunk.
fn upstream_error(data: &str) -> Option<(String, String)> {
    use sonic_rs::JsonValueTrait;
    if crate::json::nesting_exceeds(data.as_bytes(), crate::translate::MAX_DEPTH) {
        return None;
    }
    let err = sonic_rs::get(data, ["error"]).ok()?;
    let raw = err.as_raw_str();
    let text = |k: &str| sonic_rs::get(raw, [k]).ok().and_then(|v| v.as_str().map(str::to_owned));
    let message = text("message").or_else(|| err.as_str().map(str::to_owned))?;
    Some((text("type").unwrap_or_else(|| "error".to_owned()), message))
}

impl StreamTranslate for StreamTranslator {
    fn event(&mut self, data: &[u8], out: &mut SseOut) -> Result<(), StreamError> {
        StreamTranslator::event(self, data, out)
    }
    fn end(&mut self, out: &mut SseOut) -> Result<(), StreamError> {
        StreamTranslator::end(self, out)
    }
}
