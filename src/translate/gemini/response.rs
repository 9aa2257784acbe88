//! A whole Gemini `GenerateContentResponse` as an OpenAI `chat.completion`.
//!
//! One choice per candidate (its `index`); text parts are joined into
//! `content` (thought summaries dropped); `functionCall` parts become
//! `tool_calls` with ids made by [`super::call_id`] (or Gemini's own `id`);
//! `finishReason` maps to `finish_reason` (`STOP` → `stop`, or `tool_calls`
//! when the candidate called a function; `MAX_TOKENS` → `length`; safety
//! reasons → `content_filter`); a prompt blocked before any candidate gives
//! one empty choice with `content_filter`; `usageMetadata` becomes `usage`
//! (`cachedContentTokenCount` → `cached_tokens`).

use std::borrow::Cow;

use super::{GenerateContentResponse, call_id, finish_reason};
use crate::translate::openai::{AssistantMessage, ChatCompletion, Choice, OutFunction, OutToolCall, Usage};
use crate::translate::{parse, utf8};

/// Translate `body`. `model` names the model when Gemini does not
/// (`modelVersion`), `created` stamps the answer.
pub fn translate(body: &[u8], model: &str, created: u64) -> Result<(Vec<u8>, Usage), String> {
    let r: GenerateContentResponse<'_> = utf8(body).and_then(parse)?;
    let usage = r.usage_metadata.unwrap_or_default().to_openai();
    let rid = r.response_id.as_deref();
    let mut choices = Vec::with_capacity(r.candidates.len().max(1));
    let mut n = 0u32;
    for (pos, c) in r.candidates.iter().enumerate() {
        let mut text = String::new();
        let mut calls = Vec::new();
        for p in c.content.iter().flat_map(|c| c.parts.iter()) {
            if let (Some(t), false) = (&p.text, p.thought == Some(true)) {
                text.push_str(t);
            }
            if let Some(fc) = &p.function_call {
                let id = fc.id.as_deref().map_or_else(|| call_id(rid, created, n), str::to_owned);
                n += 1;
                calls.push(OutToolCall {
                    id: Cow::Owned(id),
                    kind: Cow::Borrowed("function"),
                    function: OutFunction {
                        name: Cow::Borrowed(&fc.name),
                        arguments: fc
                            .args
                            .as_ref()
                            .map_or(Cow::Borrowed("{}"), |a| Cow::Owned(a.as_raw_str().into_owned())),
                    },
                });
            }
        }
        let reason = finish_reason(c.finish_reason.as_deref(), !calls.is_empty());
        choices.push(Choice {
            index: c.index.unwrap_or(pos as u32),
            message: AssistantMessage {
                role: Cow::Borrowed("assistant"),
                content: if text.is_empty() && !calls.is_empty() { None } else { Some(Cow::Owned(text)) },
                tool_calls: (!calls.is_empty()).then_some(calls),
                refusal: None,
            },
            logprobs: None,
            finish_reason: Some(Cow::Borrowed(reason)),
        });
    }
    if choices.is_empty() {
        // The prompt itself was blocked (`promptFeedback.blockReason`).
        choices.push(Choice {
            index: 0,
            message: AssistantMessage {
                role: Cow::Borrowed("assistant"),
                content: Some(Cow::Borrowed("")),
                ..Default::default()
            },
            logprobs: None,
            finish_reason: Some(Cow::Borrowed("content_filter")),
        });
    }
    let out = ChatCompletion {
        id: Cow::Owned(format!("chatcmpl-{}", rid.unwrap_or("gemini"))),
        object: Cow::Borrowed("chat.completion"),
        created,
        model: Cow::Borrowed(r.model_version.as_deref().unwrap_or(model)),
        choices,
        usage: Some(usage),
    };
    let mut buf = Vec::with_capacity(body.len() + 128);
    crate::translate::write_json(&mut buf, &out);
    Ok((buf, usage))
}
