//! A `chat.completion` as a Response object.
//!
//! The first choice becomes output items in this order: a `reasoning` item
//! (reasoning text some servers return as `reasoning_content`), a
//! `message` (its `output_text`, and a `refusal` part), then one
//! `function_call` (or `custom_tool_call`, see [`super::ToolNames`]) per
//! tool call. `finish_reason: "length"` makes the response `incomplete`
//! with `incomplete_details.reason = "max_output_tokens"` (and
//! `content_filter` likewise); usage becomes the Responses usage.

use super::read::{Completion, Message};
use super::write::{self, OutputItem, Part, Status};
use super::{Context, Usage};
use crate::translate::{parse, utf8};

/// A translated answer.
#[derive(Debug)]
pub struct Answer {
    /// The Response object.
    pub body: Vec<u8>,
    pub usage: Option<Usage>,
    /// The output items as a JSON array, for
    /// [`super::history::conversation`].
    pub output_items: Vec<u8>,
}

/// Translate `body` (a chat completion) into the Response for `ctx`.
pub fn translate(body: &[u8], ctx: &Context) -> Result<Answer, String> {
    let c: Completion<'_> = utf8(body).and_then(parse)?;
    let choices = c.choices.as_deref().unwrap_or(&[]);
    let choice = choices.iter().find(|ch| ch.index.unwrap_or(0) == 0).or(choices.first());
    let finish = choice.and_then(|ch| ch.finish_reason.as_deref());
    let incomplete = write::incomplete_reason(finish);
    let empty = Message::default();
    let msg = choice.and_then(|ch| ch.message.as_ref()).unwrap_or(&empty);
    let output = items(ctx, msg, incomplete.is_some());
    let usage = c.usage.map(|u| u.to_usage());
    let status = match incomplete {
        Some(reason) => Status::Incomplete(reason),
        None => Status::Completed,
    };
    let model = c.model.as_deref().unwrap_or("");
    let response = write::response(ctx, model, status, &output, usage);
    let mut out = Vec::with_capacity(body.len() + 512);
    crate::translate::write_json(&mut out, &response);
    let mut stored = Vec::with_capacity(body.len());
    crate::translate::write_json(&mut stored, &output);
    Ok(Answer { body: out, usage, output_items: stored })
}

fn items(ctx: &Context, msg: &Message<'_>, incomplete: bool) -> Vec<OutputItem> {
    let mut out = Vec::new();
    let done = if incomplete { "incomplete" } else { "completed" };
    if let Some(r) = msg.reasoning() {
        let mut item = OutputItem::reasoning(ctx.item_id("rs", out.len()));
        item.content = Some(vec![Part::reasoning_text(r.to_owned())]);
        item.status = done;
        out.push(item);
    }
    let text = msg.content.as_deref().filter(|t| !t.is_empty());
    let refusal = msg.refusal.as_deref().filter(|t| !t.is_empty());
    if text.is_some() || refusal.is_some() {
        let mut item = OutputItem::message(ctx.item_id("msg", out.len()));
        let mut parts = Vec::with_capacity(2);
        if let Some(t) = text {
            parts.push(Part::output_text(t.to_owned()));
        }
        if let Some(r) = refusal {
            parts.push(Part::refusal(r.to_owned()));
        }
        item.content = Some(parts);
        item.status = done;
        out.push(item);
    }
    for (n, tc) in msg.tool_calls.iter().flatten().enumerate() {
        let f = tc.function.as_ref();
        let chat_name = f.and_then(|f| f.name.as_deref()).unwrap_or("");
        let arguments = f.and_then(|f| f.arguments.as_deref()).unwrap_or("");
        let tool = ctx.tools.resolve(chat_name);
        let call_id = tc.id.as_deref().filter(|i| !i.is_empty()).map_or_else(|| ctx.call_id(n), str::to_owned);
        let prefix = if tool.custom { "ctc" } else { "fc" };
        let mut item =
            OutputItem::call(ctx.item_id(prefix, out.len()), call_id, tool.namespace, tool.name, tool.custom);
        if tool.custom {
            item.input = Some(super::custom_input(arguments));
        } else {
            item.arguments = Some(if arguments.is_empty() { "{}".to_owned() } else { arguments.to_owned() });
        }
        item.status = "completed";
        out.push(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn ctx() -> Context {
        Context { id: "resp_x".into(), created_at: 7, ..Context::default() }
    }

    #[test]
    fn length_is_incomplete() {
        let body = json!({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "length",
            "message": {"role": "assistant", "content": "Hel"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}});
        let a = translate(body.to_string().as_bytes(), &ctx()).unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(v["output"][0]["status"], "incomplete");
        assert_eq!(v["usage"]["total_tokens"], 8);
        assert_eq!(a.usage, Some(Usage { input_tokens: 5, output_tokens: 3, cached_tokens: 0, reasoning_tokens: 0 }));
        let stored: Value = serde_json::from_slice(&a.output_items).unwrap();
        assert_eq!(stored, v["output"]);
    }

    #[test]
    fn no_choices_is_an_empty_completed_response() {
        let a = translate(br#"{"choices": null, "usage": null}"#, &ctx()).unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["output"], json!([]));
        assert_eq!(a.usage, None);
        assert!(translate(b"not json", &ctx()).is_err());
    }
}
