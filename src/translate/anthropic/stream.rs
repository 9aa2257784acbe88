//! Anthropic Messages stream events as OpenAI chunks: a state machine fed
//! one event payload at a time.
//!
//! | Anthropic event | OpenAI chunks |
//! |---|---|
//! | `message_start` | the role chunk (`delta.role = "assistant"`) |
//! | `content_block_start` `tool_use` | a `tool_calls` delta with `id`, `type`, `function.name` |
//! | `content_block_delta` `text_delta` | a `content` delta |
//! | `content_block_delta` `input_json_delta` | a `tool_calls` delta with `function.arguments` |
//! | `message_delta` | a chunk with `finish_reason` |
//! | `message_stop` | the usage chunk (`choices: []`), then `[DONE]` |
//! | `ping`, `content_block_stop`, thinking and signature deltas, unknown events | nothing |
//! | `error` | ends the stream with the upstream's error |
//!
//! Tool calls are numbered in order of appearance (OpenAI's
//! `tool_calls[].index`), whatever their block index.

use std::borrow::Cow;

use serde::Deserialize;

use super::{Block, MessagesResponse, Usage, finish_reason};
use crate::translate::openai::ChunkWriter;
use crate::translate::{SseOut, StreamError, StreamTranslate, parse, utf8};

#[derive(Debug, Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    message: Option<MessagesResponse<'a>>,
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    content_block: Option<Block<'a>>,
    #[serde(borrow, default)]
    delta: Option<EventDelta<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    error: Option<super::ErrorDetail<'a>>,
}

#[derive(Debug, Deserialize)]
struct EventDelta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

/// Translates one Anthropic stream.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    w: ChunkWriter,
    /// `(block index, tool call number)` of the tool_use blocks seen.
    calls: Vec<(u32, u32)>,
    usage: Usage,
    done: bool,
}

impl StreamTranslator {
    pub fn new(created: u64) -> StreamTranslator {
        StreamTranslator { w: ChunkWriter { created, ..ChunkWriter::default() }, ..StreamTranslator::default() }
    }

    /// `message_stop` has been translated: nothing more is expected.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feed one event's `data` payload; write what it becomes to `out`.
    pub fn event(&mut self, data: &[u8], out: &mut SseOut) -> Result<(), StreamError> {
        if data.is_empty() || self.done {
            return Ok(());
        }
        let ev: Event<'_> = utf8(data)
            .and_then(parse)
            .map_err(|e| StreamError::Invalid(format!("an event is not valid JSON ({e})")))?;
        match &*ev.kind {
            "message_start" => {
                if let Some(m) = ev.message {
                    self.w.id = m.id.into_owned();
                    self.w.model = m.model.into_owned();
                    self.usage.merge(&m.usage);
                }
                self.w.role(out, 0);
            }
            "content_block_start" => {
                let Some(b) = ev.content_block else { return Ok(()) };
                match &*b.kind {
                    "tool_use" => {
                        let call = self.calls.len() as u32;
                        self.calls.push((ev.index, call));
                        let id = b.id.as_deref().unwrap_or("");
                        let name = b.name.as_deref().unwrap_or("");
                        self.w.tool_call(out, 0, call, Some((id, name)), "");
                    }
                    "text" => {
                        if let Some(t) = b.text.as_deref().filter(|t| !t.is_empty()) {
                            self.w.text(out, 0, t);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let Some(d) = ev.delta else { return Ok(()) };
                match d.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(t) = d.text.as_deref().filter(|t| !t.is_empty()) {
                            self.w.text(out, 0, t);
                        }
                    }
                    Some("input_json_delta") => {
                        let call = self.calls.iter().find(|(b, _)| *b == ev.index).map(|(_, c)| *c);
                        if let (Some(call), Some(j)) = (call, d.partial_json.as_deref().filter(|j| !j.is_empty())) {
                            self.w.tool_call(out, 0, call, None, j);
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = &ev.usage {
                    self.usage.merge(u);
                }
                let reason = finish_reason(ev.delta.as_ref().and_then(|d| d.stop_reason.as_deref()));
                self.w.finish(out, 0, reason);
            }
            "message_stop" => {
                self.w.usage(out, self.usage.to_openai());
                ChunkWriter::done(out);
                self.done = true;
            }
            "error" => {
                let (kind, message) = match ev.error {
                    Some(e) => (e.kind.into_owned(), e.message.into_owned()),
                    None => ("error".to_owned(), String::new()),
                };
                return Err(StreamError::Upstream { kind, message });
            }
            // ping, content_block_stop, and event types added later.
            _ => {}
        }
        Ok(())
    }

    /// The upstream's body ended. A stream that never reached `message_stop`
    /// was cut short.
    pub fn end(&mut self, _out: &mut SseOut) -> Result<(), StreamError> {
        if self.done { Ok(()) } else { Err(StreamError::Invalid("the stream ended before message_stop".into())) }
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
