//! A whole Converse answer as an OpenAI `chat.completion`.
//!
//! `output.message.content`'s text blocks are joined into `content`;
//! `toolUse` blocks become `tool_calls` (Bedrock's `toolUseId` as the id,
//! `input` as the `arguments` text); reasoning blocks are dropped;
//! `stopReason` becomes `finish_reason` (`end_turn`, `stop_sequence` →
//! `stop`; `max_tokens` → `length`; `tool_use` → `tool_calls`;
//! `guardrail_intervened`, `content_filtered` → `content_filter`); `usage`
//! becomes OpenAI's (cache reads and writes counted as prompt, reads as
//! `cached_tokens`). Converse answers carry no id: the caller gives one.

use std::borrow::Cow;

use serde::Deserialize;

use super::{OutBlock, TokenUsage, finish_reason};
use crate::translate::openai::{AssistantMessage, ChatCompletion, Choice, OutFunction, OutToolCall, Usage};
use crate::translate::{parse, utf8};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse<'a> {
    #[serde(borrow, default)]
    output: Option<Output<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct Output<'a> {
    #[serde(borrow, default)]
    message: Option<OutMessage<'a>>,
}

#[derive(Deserialize)]
struct OutMessage<'a> {
    #[serde(borrow, default)]
    content: Vec<OutBlock<'a>>,
}

/// Translate `body`: `id` and `created` stamp the answer, `model` names it.
pub fn translate(body: &[u8], id: &str, model: &str, created: u64) -> Result<(Vec<u8>, Usage), String> {
    let r: ConverseResponse<'_> = utf8(body).and_then(parse)?;
    let usage = r.usage.unwrap_or_default().to_openai();
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in r.output.iter().flat_map(|o| o.message.iter()).flat_map(|m| m.content.iter()) {
        if let Some(t) = &b.text {
            text.push_str(t);
        }
        if let Some(tu) = &b.tool_use {
            calls.push(OutToolCall {
                id: Cow::Borrowed(&tu.tool_use_id),
                kind: Cow::Borrowed("function"),
                function: OutFunction {
                    name: Cow::Borrowed(&tu.name),
                    arguments: tu
                        .input
                        .as_ref()
                        .map_or(Cow::Borrowed("{}"), |a| Cow::Owned(a.as_raw_str().into_owned())),
                },
            });
        }
    }
    let reason = finish_reason(r.stop_reason.as_deref(), !calls.is_empty());
    let choice = Choice {
        index: 0,
        message: AssistantMessage {
            role: Cow::Borrowed("assistant"),
            content: if text.is_empty() && !calls.is_empty() { None } else { Some(Cow::Owned(text)) },
            tool_calls: (!calls.is_empty()).then_some(calls),
            refusal: None,
        },
        logprobs: None,
        finish_reason: Some(Cow::Borrowed(reason)),
    };
    let out = ChatCompletion {
        id: Cow::Borrowed(id),
        object: Cow::Borrowed("chat.completion"),
        created,
        model: Cow::Borrowed(model),
        choices: vec![choice],
        usage: Some(usage),
    };
    let mut buf = Vec::with_capacity(body.len() + 128);
    crate::translate::write_json(&mut buf, &out);
    Ok((buf, usage))
}
