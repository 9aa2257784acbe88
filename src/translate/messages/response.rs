//! An OpenAI `chat.completion` as an Anthropic Messages answer: the first
//! choice's text becomes a `text` block, its `tool_calls` `tool_use` blocks
//! (`arguments` parsed into `input`; arguments that are not a JSON object
//! become `{}`), `finish_reason` the `stop_reason`, and usage Anthropic's
//! (`cached_tokens` → `cache_read_input_tokens`, the rest `input_tokens`).

use std::borrow::Cow;

use crate::translate::anthropic::{Block, MessagesResponse, RawJson, Usage, stop_reason};
use crate::translate::openai::ChatCompletion;
use crate::translate::{parse, utf8};

/// Translate `body`; returns the Anthropic body and the answer's OpenAI usage.
pub fn translate(body: &[u8]) -> Result<(Vec<u8>, Option<crate::translate::openai::Usage>), String> {
    let r: ChatCompletion<'_> = utf8(body).and_then(parse)?;
    let choice = r.choices.iter().find(|c| c.index == 0).or(r.choices.first());
    let mut content = Vec::new();
    let mut finish = None;
    if let Some(c) = choice {
        finish = c.finish_reason.as_deref();
        if let Some(t) = c.message.content.as_deref().filter(|t| !t.is_empty()) {
            content.push(Block::text(Cow::Borrowed(t)));
        }
        for tc in c.message.tool_calls.iter().flatten() {
            let input = match RawJson::parse_owned(&tc.function.arguments) {
                Some(v) if v.is_object() => v,
                _ => RawJson::empty_object(),
            };
            content.push(Block {
                kind: Cow::Borrowed("tool_use"),
                id: Some(Cow::Borrowed(&tc.id)),
                name: Some(Cow::Borrowed(&tc.function.name)),
                input: Some(input),
                ..Block::default()
            });
        }
    }
    let usage = r.usage.unwrap_or_default();
    let out = MessagesResponse {
        id: r.id.clone(),
        kind: Cow::Borrowed("message"),
        role: Cow::Borrowed("assistant"),
        model: r.model.clone(),
        content,
        stop_reason: Some(Cow::Borrowed(stop_reason(finish))),
        stop_sequence: None,
        usage: Usage::from_openai(&usage),
    };
    let mut buf = Vec::with_capacity(body.len() + 64);
    crate::translate::write_json(&mut buf, &out);
    Ok((buf, r.usage))
}
