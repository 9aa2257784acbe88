//! Chat chunks as the Responses event stream.
//!
//! The first chunk opens the response (`response.created`,
//! `response.in_progress`). Each kind of content becomes an output item,
//! numbered in the order it first appears: reasoning text a `reasoning`
//! item, text and refusals a `message` item (`output_text` / `refusal`
//! parts), each tool call a `function_call` (or `custom_tool_call`) item.
//! An item is announced (`response.output_item.added`, and for parts
//! `response.content_part.added`), fed deltas, and closed (`...done`
//! events, `response.output_item.done`) when content of another kind
//! starts or the choice finishes. Tool calls stay open together until then,
//! because chat servers may interleave the argument deltas of parallel
//! calls (routed by their chat `index`). Text that follows tool calls
//! opens a new message item.
//!
//! OpenAI sends usage after the finish chunk, so the last event
//! (`response.completed`, or `response.incomplete` when the answer was cut
//! by `max_output_tokens` or a content filter) is written at `[DONE]`, or
//! when the upstream ends after a finish reason. Every event carries a
//! `sequence_number`, from 0.
//!
//! Failures: [`StreamTranslator::event`] and [`StreamTranslator::end`]
//! return an error (an `{"error": ..}` chunk, a chunk that is not JSON, a
//! stream cut before its finish); the caller then ends the stream with
//! [`StreamTranslator::fail`], which writes `response.failed` with the
//! output so far. (Codex reads `response.failed`'s `error.message`, and
//! treats a stream that ends without `response.completed` as cut.)

use super::read::{Chunk, Message, upstream_error};
use super::write::{
    self, CallDelta, ErrorEvent, ItemEvent, OutputItem, Part, PartEvent, ResponseEvent, Status, TextDelta,
};
use super::{Context, ResponseError, Usage};
use crate::translate::{SseOut, StreamError, StreamTranslate, parse, utf8};

/// How the response ended, kept for [`StreamTranslator::response_body`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Completed,
    Incomplete(&'static str),
    Failed(ResponseError),
}

#[derive(Debug)]
pub struct StreamTranslator {
    ctx: Context,
    seq: u64,
    started: bool,
    end: Option<End>,
    model: String,
    items: Vec<OutputItem>,
    open_message: Option<usize>,
    open_reasoning: Option<usize>,
    /// Open tool calls: (chat tool call `index`, output index).
    open_calls: Vec<(u32, usize)>,
    calls: usize,
    /// Chat arguments of open custom tool calls: (output index, JSON text).
    custom_args: Vec<(usize, String)>,
    finish: Option<String>,
    usage: Option<Usage>,
}

impl StreamTranslator {
    pub fn new(ctx: Context) -> StreamTranslator {
        StreamTranslator {
            ctx,
            seq: 0,
            started: false,
            end: None,
            model: String::new(),
            items: Vec::new(),
            open_message: None,
            open_reasoning: None,
            open_calls: Vec::new(),
            calls: 0,
            custom_args: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.end.is_some()
    }

    /// Usage the upstream reported (its last usage chunk).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The output items so far as a JSON array, for
    /// [`super::history::conversation`] once the stream completed.
    pub fn output_items(&self) -> Vec<u8> {
        let mut b = Vec::new();
        crate::translate::write_json(&mut b, &self.items);
        b
    }

    /// The final Response object (what `response.completed` carried), for
    /// `GET /v1/responses/{id}`; `None` before the stream ended.
    pub fn response_body(&self) -> Option<Vec<u8>> {
        let status = match self.end.as_ref()? {
            End::Completed => Status::Completed,
            End::Incomplete(r) => Status::Incomplete(r),
            End::Failed(e) => Status::Failed(e),
        };
        let mut b = Vec::new();
        crate::translate::write_json(&mut b, &write::response(&self.ctx, &self.model, status, &self.items, self.usage));
        Some(b)
    }

    fn next(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    pub fn event(&mut self, data: &[u8], out: &mut SseOut) -> Result<(), StreamError> {
        if data.is_empty() || self.end.is_some() {
            return Ok(());
        }
        let invalid = |e: String| StreamError::Invalid(format!("a chunk is not valid JSON ({e})"));
        let data = utf8(data).map_err(invalid)?;
        if data == "[DONE]" {
            if !self.started {
                return Err(StreamError::Invalid("the stream ended before its first chunk".into()));
            }
            self.complete(out);
            return Ok(());
        }
        if memchr::memmem::find(data.as_bytes(), b"\"error\"").is_some()
            && let Some((kind, message)) = upstream_error(data)
        {
            return Err(StreamError::Upstream { kind, message });
        }
        let c: Chunk<'_> = parse(data).map_err(invalid)?;
        if !self.started {
            self.model = c.model.as_deref().unwrap_or("").to_owned();
            self.start(out);
        }
        if let Some(u) = c.usage {
            self.usage = Some(u.to_usage());
        }
        for choice in c.choices.iter().flatten().filter(|ch| ch.index.unwrap_or(0) == 0) {
            if let Some(d) = &choice.delta {
                self.delta(d, out);
            }
            if let Some(f) = choice.finish_reason.as_deref() {
                self.finish = Some(f.to_owned());
                self.close_all(out);
            }
        }
        Ok(())
    }

    /// The upstream ended. Without `[DONE]`, a stream that reached a finish
    /// reason completes normally; one that did not was cut short.
    pub fn end(&mut self, out: &mut SseOut) -> Result<(), StreamError> {
        if self.end.is_some() {
            return Ok(());
        }
        if self.finish.is_some() {
            self.complete(out);
            return Ok(());
        }
        Err(StreamError::Invalid(if self.started {
            "the stream ended before a finish reason".into()
        } else {
            "the stream ended before its first chunk".into()
        }))
    }

    /// End the stream as failed: `response.failed` with `code` (see
    /// [`super::error_code`]) and `message`, and the output so far. Opens
    /// the response first if no chunk had. Nothing once the stream ended.
    pub fn fail(&mut self, out: &mut SseOut, code: &str, message: &str) {
        if self.end.is_some() {
            return;
        }
        if !self.started {
            self.start(out);
        }
        for item in &mut self.items {
            if item.status == "in_progress" {
                item.status = "incomplete";
            }
        }
        let err = ResponseError { code: code.to_owned(), message: message.to_owned() };
        let seq = self.next();
        let response = write::response(&self.ctx, &self.model, Status::Failed(&err), &self.items, self.usage);
        out.event("response.failed", &ResponseEvent { kind: "response.failed", sequence_number: seq, response });
        self.end = Some(End::Failed(err));
    }

    /// [`Self::fail`] for a translator error.
    pub fn fail_with(&mut self, out: &mut SseOut, e: &StreamError) {
        match e {
            StreamError::Upstream { kind, message } => self.fail(out, super::error_code(kind), message),
            StreamError::Invalid(m) => self.fail(out, "server_error", &format!("The upstream stream broke: {m}")),
        }
    }

    fn start(&mut self, out: &mut SseOut) {
        self.started = true;
        for kind in ["response.created", "response.in_progress"] {
            let seq = self.next();
            let response = write::response(&self.ctx, &self.model, Status::InProgress, &[], None);
            out.event(kind, &ResponseEvent { kind, sequence_number: seq, response });
        }
    }

    fn delta(&mut self, d: &Message<'_>, out: &mut SseOut) {
        if let Some(r) = d.reasoning() {
            let i = match self.open_reasoning {
                Some(i) => i,
                None => {
                    self.close_message(out);
                    self.close_calls(out);
                    let i = self.add(OutputItem::reasoning(self.ctx.item_id("rs", self.items.len())), out);
                    self.add_part(i, Part::reasoning_text(String::new()), out);
                    self.open_reasoning = Some(i);
                    i
                }
            };
            self.part_delta(i, 0, "response.reasoning_text.delta", r, out);
        }
        for (kind, text) in [("output_text", d.content.as_deref()), ("refusal", d.refusal.as_deref())] {
            let Some(t) = text.filter(|t| !t.is_empty()) else { continue };
            self.close_reasoning(out);
            self.close_calls(out);
            let i = match self.open_message {
                Some(i) => i,
                None => {
                    let i = self.add(OutputItem::message(self.ctx.item_id("msg", self.items.len())), out);
                    self.open_message = Some(i);
                    i
                }
            };
            let existing = self.items[i].content.as_ref().and_then(|c| c.iter().position(|p| p.kind == kind));
            let k = match existing {
                Some(k) => k,
                None => {
                    let part =
                        if kind == "refusal" { Part::refusal(String::new()) } else { Part::output_text(String::new()) };
                    self.add_part(i, part, out)
                }
            };
            let event = if kind == "refusal" { "response.refusal.delta" } else { "response.output_text.delta" };
            self.part_delta(i, k, event, t, out);
        }
        for tc in d.tool_calls.iter().flatten() {
            self.close_reasoning(out);
            self.close_message(out);
            let index = tc.index.unwrap_or(0);
            let id = tc.id.as_deref().filter(|s| !s.is_empty());
            let f = tc.function.as_ref();
            let open = self.open_calls.iter().rev().find(|(ci, _)| *ci == index).map(|(_, i)| *i);
            // A new id on an open index is a new call (some servers number every call 0).
            let same = open.filter(|i| id.is_none_or(|id| self.items[*i].call_id.as_deref() == Some(id)));
            let i = match same {
                Some(i) => i,
                None => {
                    let chat_name = f.and_then(|f| f.name.as_deref()).unwrap_or("");
                    let call_id = id.map_or_else(|| self.ctx.call_id(self.calls), str::to_owned);
                    self.calls += 1;
                    let tool = self.ctx.tools.resolve(chat_name);
                    let prefix = if tool.custom { "ctc" } else { "fc" };
                    let item_id = self.ctx.item_id(prefix, self.items.len());
                    let item = OutputItem::call(item_id, call_id, tool.namespace, tool.name, tool.custom);
                    let i = self.add(item, out);
                    self.open_calls.push((index, i));
                    i
                }
            };
            let Some(args) = f.and_then(|f| f.arguments.as_deref()).filter(|a| !a.is_empty()) else { continue };
            if self.items[i].kind == "custom_tool_call" {
                // The chat arguments (`{"input": ..}`) become `input` when the call closes.
                match self.custom_args.iter_mut().find(|(ci, _)| *ci == i) {
                    Some((_, buf)) => buf.push_str(args),
                    None => self.custom_args.push((i, args.to_owned())),
                }
            } else {
                self.items[i].arguments.get_or_insert_with(String::new).push_str(args);
                let seq = self.next();
                let e = CallDelta {
                    kind: "response.function_call_arguments.delta",
                    sequence_number: seq,
                    item_id: &self.items[i].id,
                    output_index: i,
                    delta: args,
                };
                out.event(e.kind, &e);
            }
        }
    }

    /// Append `item` and announce it; returns its output index.
    fn add(&mut self, item: OutputItem, out: &mut SseOut) -> usize {
        let i = self.items.len();
        self.items.push(item);
        let seq = self.next();
        let e = ItemEvent {
            kind: "response.output_item.added",
            sequence_number: seq,
            output_index: i,
            item: &self.items[i],
        };
        out.event(e.kind, &e);
        i
    }

    /// Append an empty part to item `i` and announce it; returns its content index.
    fn add_part(&mut self, i: usize, part: Part, out: &mut SseOut) -> usize {
        let content = self.items[i].content.get_or_insert_with(Vec::new);
        content.push(part);
        let k = content.len() - 1;
        let seq = self.next();
        let item = &self.items[i];
        if let Some(part) = item.content.as_ref().and_then(|c| c.get(k)) {
            let e = PartEvent {
                kind: "response.content_part.added",
                sequence_number: seq,
                item_id: &item.id,
                output_index: i,
                content_index: k,
                part,
            };
            out.event(e.kind, &e);
        }
        k
    }

    fn part_delta(&mut self, i: usize, k: usize, kind: &'static str, delta: &str, out: &mut SseOut) {
        if let Some(p) = self.items[i].content.as_mut().and_then(|c| c.get_mut(k)) {
            p.body_mut().push_str(delta);
        }
        let seq = self.next();
        let e = TextDelta {
            kind,
            sequence_number: seq,
            item_id: &self.items[i].id,
            output_index: i,
            content_index: k,
            delta,
            logprobs: (kind == "response.output_text.delta").then_some([]),
        };
        out.event(kind, &e);
    }

    fn close_reasoning(&mut self, out: &mut SseOut) {
        if let Some(i) = self.open_reasoning.take() {
            self.close_item(i, out);
        }
    }

    fn close_message(&mut self, out: &mut SseOut) {
        if let Some(i) = self.open_message.take() {
            self.close_item(i, out);
        }
    }

    fn close_calls(&mut self, out: &mut SseOut) {
        let mut open = std::mem::take(&mut self.open_calls);
        open.sort_by_key(|(_, i)| *i);
        for (_, i) in open {
            self.close_item(i, out);
        }
    }

    fn close_all(&mut self, out: &mut SseOut) {
        // In output order: at most one of reasoning/message is open, and
        // it precedes any open call only if it was opened first.
        let mut open: Vec<usize> = self.open_reasoning.take().into_iter().chain(self.open_message.take()).collect();
        open.extend(std::mem::take(&mut self.open_calls).into_iter().map(|(_, i)| i));
        open.sort_unstable();
        for i in open {
            self.close_item(i, out);
        }
    }

    /// The `...done` events of item `i`, then `response.output_item.done`.
    fn close_item(&mut self, i: usize, out: &mut SseOut) {
        let cut = self.finish.as_deref().and_then(|f| write::incomplete_reason(Some(f))).is_some();
        let kind = self.items[i].kind;
        if kind == "custom_tool_call" {
            let args = match self.custom_args.iter().position(|(ci, _)| *ci == i) {
                Some(p) => self.custom_args.swap_remove(p).1,
                None => String::new(),
            };
            self.items[i].input = Some(super::custom_input(&args));
        }
        if kind == "function_call" && self.items[i].arguments.as_deref() == Some("") {
            self.items[i].arguments = Some("{}".to_owned());
        }
        self.items[i].status =
            if cut && kind != "function_call" && kind != "custom_tool_call" { "incomplete" } else { "completed" };
        write::done_events(out, &mut self.seq, i, &self.items[i]);
    }

    /// Close what is open and write the final event.
    fn complete(&mut self, out: &mut SseOut) {
        self.close_all(out);
        let (kind, end, status) = match write::incomplete_reason(self.finish.as_deref()) {
            Some(r) => ("response.incomplete", End::Incomplete(r), Status::Incomplete(r)),
            None => ("response.completed", End::Completed, Status::Completed),
        };
        let seq = self.next();
        let response = write::response(&self.ctx, &self.model, status, &self.items, self.usage);
        out.event(kind, &ResponseEvent { kind, sequence_number: seq, response });
        self.end = Some(end);
    }
}

impl StreamTranslate for StreamTranslator {
    fn event(&mut self, data: &[u8], out: &mut SseOut) -> Result<(), StreamError> {
        StreamTranslator::event(self, data, out)
    }
    fn end(&mut self, out: &mut SseOut) -> Result<(), StreamError> {
        StreamTranslator::end(self, out)
    }
    fn fail(&mut self, e: &StreamError, out: &mut SseOut) {
        self.fail_with(out, e)
    }
}

/// `response.failed`, for a gateway failure on a stream the translator does
/// not write (a deployment that serves the Responses API natively), or one
/// the translator never saw (a timeout in the relay): the Response as far
/// as the gateway followed it — its id, creation time and model — with
/// `error`. `sequence_number` continues the stream's numbering. (Codex
/// reads `response.failed` and retries; it ignores a bare `error` event.)
pub fn failed_event(
    out: &mut SseOut,
    sequence_number: u64,
    id: &str,
    created_at: u64,
    model: &str,
    code: &str,
    message: &str,
) {
    let ctx = Context { id: id.to_owned(), created_at, ..Context::default() };
    let err = ResponseError { code: code.to_owned(), message: message.to_owned() };
    let response = write::response(&ctx, model, Status::Failed(&err), &[], None);
    out.event("response.failed", &ResponseEvent { kind: "response.failed", sequence_number, response });
}

/// An `error` event, for a gateway failure on a stream the translator does
/// not write (a deployment that serves the Responses API natively):
/// `sequence_number` continues the upstream's numbering.
pub fn error_event(out: &mut SseOut, sequence_number: u64, code: &str, message: &str) {
    out.event("error", &ErrorEvent { kind: "error", sequence_number, code, message, param: None });
}
