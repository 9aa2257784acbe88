//! A whole Anthropic Messages answer as an OpenAI `chat.completion`, and an
//! Anthropic error body's type and message.
//!
//! Text blocks are joined into `message.content`; `tool_use` blocks become
//! `tool_calls` (their `input` object serialised into `arguments`);
//! `thinking` blocks are dropped; `stop_reason` maps to `finish_reason`
//! (`end_turn`/`stop_sequence` → `stop`, `max_tokens` → `length`,
//! `tool_use` → `tool_calls`, `refusal` → `content_filter`); usage counts
//! cache reads and writes as prompt tokens, cache reads also as
//! `prompt_tokens_details.cached_tokens`.

use std::borrow::Cow;

use super::{ErrorBody, MessagesResponse, finish_reason};
use crate::translate::openai::{AssistantMessage, ChatCompletion, Choice, OutFunction, OutToolCall, Usage};
use crate::translate::{parse, utf8};

/// Translate `body`; `created` is the timestamp to stamp (Anthropic sends none).
pub fn translate(body: &[u8], created: u64) -> Result<(Vec<u8>, Usage), String> {
    let r: MessagesResponse<'_> = utf8(body).and_then(parse)?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in &r.content {
        match &*b.kind {
            "text" => text.push_str(b.text.as_deref().unwrap_or("")),
            "tool_use" => calls.push(OutToolCall {
                id: Cow::Borrowed(b.id.as_deref().unwrap_or("")),
                kind: Cow::Borrowed("function"),
                function: OutFunction {
                    name: Cow::Borrowed(b.name.as_deref().unwrap_or("")),
                    arguments: b
                        .input
                        .as_ref()
                        .map_or(Cow::Borrowed("{}"), |i| Cow::Owned(i.as_raw_str().into_owned())),
                },
            }),
            _ => {}
        }
    }
    let usage = r.usage.to_openai();
    let content = if text.is_empty() && !calls.is_empty() { None } else { Some(Cow::Owned(text)) };
    let out = ChatCompletion {
        id: r.id.clone(),
        object: Cow::Borrowed("chat.completion"),
        created,
        model: r.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: Cow::Borrowed("assistant"),
                content,
                tool_calls: (!calls.is_empty()).then_some(calls),
                refusal: None,
            },
            logprobs: None,
            finish_reason: Some(Cow::Borrowed(finish_reason(r.stop_reason.as_deref()))),
        }],
        usage: Some(usage),
    };
    let mut buf = Vec::with_capacity(body.len() + 128);
    crate::translate::write_json(&mut buf, &out);
    Ok((buf, usage))
}

/// `(type, message)` of an Anthropic error body, if it is one.
pub fn error_parts(body: &[u8]) -> Option<(String, String)> {
    let e: ErrorBody<'_> = utf8(body).and_then(parse).ok()?;
    Some((e.error.kind.into_owned(), e.error.message.into_owned()))
}
