//! ConverseStream events as OpenAI chunks: a state machine fed one event at
//! a time, each the union member of `ConverseStreamOutput` the API reference
//! documents (`{"contentBlockDelta": {...}}`).
//!
//! | Converse event | OpenAI chunks |
//! |---|---|
//! | `messageStart` | the role chunk |
//! | `contentBlockStart` with `start.toolUse` | a `tool_calls` delta with `id`, `type`, `function.name` |
//! | `contentBlockDelta` `delta.text` | a `content` delta |
//! | `contentBlockDelta` `delta.toolUse.input` | a `tool_calls` delta with `function.arguments` |
//! | `messageStop` | the chunk with `finish_reason` |
//! | `metadata` | the usage chunk (`choices: []`), then `[DONE]` |
//! | `contentBlockStop`, reasoning deltas, unknown events | nothing |
//! | an exception member (`throttlingException`, ...) | ends the stream with it |
//!
//! Tool calls are numbered in order of appearance, whatever their block
//! index. Bedrock pads payloads with a `p` member; it is ignored.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{TokenUsage, finish_reason};
use crate::translate::openai::ChunkWriter;
use crate::translate::{SseOut, StreamError, StreamTranslate, parse, utf8};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(default)]
    message_start: Option<IgnoredAny>,
    #[serde(borrow, default)]
    content_block_start: Option<BlockStart<'a>>,
    #[serde(borrow, default)]
    content_block_delta: Option<BlockDelta<'a>>,
    #[serde(borrow, default)]
    message_stop: Option<MessageStop<'a>>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart<'a> {
    #[serde(default)]
    content_block_index: u32,
    #[serde(borrow, default)]
    start: Option<Start<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Start<'a> {
    #[serde(borrow, default)]
    tool_use: Option<ToolStart<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStart<'a> {
    #[serde(borrow, default)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta<'a> {
    #[serde(default)]
    content_block_index: u32,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delta<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_use: Option<ToolDelta<'a>>,
}

#[derive(Debug, Deserialize)]
struct ToolDelta<'a> {
    #[serde(borrow, default)]
    input: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop<'a> {
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: Option<TokenUsage>,
}

/// The exceptions a ConverseStream may end with, as union members.
const EXCEPTIONS: [&str; 5] = [
    "internalServerException",
    "modelStreamErrorException",
    "validationException",
    "throttlingException",
    "serviceUnavailableException",
];

/// Translates one ConverseStream.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    w: ChunkWriter,
    started: bool,
    /// `(block index, tool call number)` of the tool-use blocks seen.
    calls: Vec<(u32, u32)>,
    stopped: bool,
    done: bool,
}

impl StreamTranslator {
    /// `id` and `model` name every chunk (Converse streams carry neither).
    pub fn new(id: &str, model: &str, created: u64) -> StreamTranslator {
        StreamTranslator {
            w: ChunkWriter { id: id.to_owned(), model: model.to_owned(), created },
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
        if let Some(kind) = EXCEPTIONS.iter().find(|k| data.starts_with(&format!("{{\"{k}\""))) {
            // sonic-rs's `get` recurses over what it skips: bound the depth first.
            let readable = !crate::json::nesting_exceeds(data.as_bytes(), crate::translate::MAX_DEPTH);
            let message = readable
                .then(|| sonic_rs::get(data, [*kind, "message"]).ok())
                .flatten()
                .and_then(|m| sonic_rs::from_str::<String>(m.as_raw_str()).ok())
                .unwrap_or_default();
            return Err(StreamError::Upstream { kind: (*kind).to_owned(), message });
        }
        let ev: Event<'_> = parse(data).map_err(invalid)?;
        if ev.message_start.is_some() {
            self.open(out);
        }
        if let Some(s) = ev.content_block_start {
            self.open(out);
            if let Some(t) = s.start.and_then(|s| s.tool_use) {
                let call = self.calls.len() as u32;
                self.calls.push((s.content_block_index, call));
                self.w.tool_call(out, 0, call, Some((&t.tool_use_id, &t.name)), "");
            }
        }
        if let Some(d) = ev.content_block_delta {
            self.open(out);
            let Some(delta) = d.delta else { return Ok(()) };
            if let Some(t) = delta.text.as_deref().filter(|t| !t.is_empty()) {
                self.w.text(out, 0, t);
            }
            if let Some(tu) = delta.tool_use.filter(|t| !t.input.is_empty()) {
                let call = self.calls.iter().find(|(b, _)| *b == d.content_block_index).map(|(_, c)| *c);
                if let Some(call) = call {
                    self.w.tool_call(out, 0, call, None, &tu.input);
                }
            }
        }
        if let Some(stop) = ev.message_stop {
            self.open(out);
            self.stopped = true;
            self.w.finish(out, 0, finish_reason(stop.stop_reason.as_deref(), !self.calls.is_empty()));
        }
        if let Some(m) = ev.metadata {
            if let Some(u) = m.usage {
                self.w.usage(out, u.to_openai());
            }
            ChunkWriter::done(out);
            self.done = true;
        }
        Ok(())
    }

    fn open(&mut self, out: &mut SseOut) {
        if !self.started {
            self.started = true;
            self.w.role(out, 0);
        }
    }

    /// The upstream ended. After `messageStop` the stream is whole (usage
    /// may be missing); before it, it was cut short.
    pub fn end(&mut self, out: &mut SseOut) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        if !self.stopped {
            return Err(StreamError::Invalid("the stream ended before messageStop".into()));
        }
        self.done = true;
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
