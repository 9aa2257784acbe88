//! An Anthropic Messages request as an OpenAI chat request.
//!
//! `system` → a leading `system` message (a Claude Code billing line
//! dropped); `system`-role messages → `system` messages in place; user
//! text / `image` (`base64` → `data:` URL, `url`) / `document` (base64 PDF
//! → `file` part; text or content source → text) blocks → user content
//! parts; `tool_result` blocks → `tool` messages (placed before the rest
//! of their user turn, as OpenAI requires them right after the assistant's
//! tool calls); assistant `text` → content, `tool_use` → `tool_calls`
//! (`input` serialised into `arguments`); `tools` → function tools
//! (`input_schema` → `parameters`); `tool_choice` (`any` → `required`,
//! `tool` → a named function, `disable_parallel_tool_use` →
//! `parallel_tool_calls: false`); `max_tokens`, `stop_sequences` → `stop`,
//! `temperature`, `top_p`, `metadata.user_id` → `user`;
//! `output_config.format` (or the beta's `output_format`) →
//! `response_format`; with [`Options::reasoning`], `thinking` /
//! `output_config.effort` → `reasoning_effort` and `max_tokens` →
//! `max_completion_tokens` ([`super::settings`]); `stream` (with
//! `stream_options.include_usage` so usage comes back).
//!
//! What has no chat meaning is dropped, never refused: Anthropic accepts
//! new members, blocks and roles before any translator knows them, and
//! agents send them on every turn. Dropped: `thinking` / `redacted_thinking`
//! blocks, server tools (`web_search_…`, `bash_…`, ...) and a `tool_choice`
//! naming one, server-tool result blocks, sources with nothing to send
//! (`file` ids), unknown roles and block types, `cache_control`, `top_k`,
//! `context_management`, `container`, `mcp_servers`, `service_tier`.
//! Every member is read leniently ([`crate::translate::lenient`]); only
//! JSON that is not a Messages request at all is refused.

use std::borrow::Cow;

use serde::Serialize;
use sonic_rs::JsonValueTrait;

use super::read::{BlockIn, MessagesRequest, SourceIn};
use super::settings::{self, ResponseFormat};
use crate::translate::anthropic::RawJson;
use crate::translate::lenient::Content;
use crate::translate::openai::{OutFunction, OutToolCall};
use crate::translate::{StrOrVec, TranslateError, parse, utf8};

/// How the deployment takes the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The model takes reasoning settings (`reasoning = true` on the
    /// deployment): send `reasoning_effort` and `max_completion_tokens`.
    /// Off, they are left out: OpenAI refuses `reasoning_effort` on models
    /// that do not reason, and Claude Code asks for an effort on every turn.
    pub reasoning: bool,
}

/// The first `system` block Claude Code sends is its billing line, meant
/// for Anthropic's servers; another model would only read it as noise.
const BILLING_LINE: &str = "x-anthropic-billing-header:";

#[derive(Serialize)]
struct ChatOut<'a> {
    model: &'a str,
    messages: Vec<MessageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize, Default)]
struct MessageOut<'a> {
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<StrOrVec<'a, PartOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<OutToolCall<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct PartOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_url: Option<UrlOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<FileOut<'a>>,
}

impl<'a> PartOut<'a> {
    fn text(text: Cow<'a, str>) -> PartOut<'a> {
        PartOut { kind: "text", text: Some(text), image_url: None, file: None }
    }
}

#[derive(Serialize)]
struct UrlOut<'a> {
    url: Cow<'a, str>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    file_data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'a str>,
}

#[derive(Serialize)]
struct ToolOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: RawJson<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ToolChoiceOut<'a> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NamedFunction<'a>,
    },
}

#[derive(Serialize)]
struct NamedFunction<'a> {
    name: &'a str,
}

/// Translate `body` (an Anthropic Messages request) into an OpenAI chat
/// request for the upstream model `model`, for a deployment that takes no
/// reasoning settings. Also returns whether it streams.
pub fn translate(body: &[u8], model: &str) -> Result<(Vec<u8>, bool), TranslateError> {
    translate_with(body, model, &Options::default())
}

/// [`translate`] for a deployment described by `opts`.
pub fn translate_with(body: &[u8], model: &str, opts: &Options) -> Result<(Vec<u8>, bool), TranslateError> {
    let req: MessagesRequest<'_> =
        utf8(body).and_then(parse).map_err(|e| TranslateError::new(format!("Invalid Messages request: {e}"), None))?;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(text) = system_text(&req.system, true) {
        messages.push(MessageOut { role: "system", content: Some(StrOrVec::Str(text)), ..MessageOut::default() });
    }
    for m in &req.messages {
        match m.role.as_deref() {
            Some("user") => user(&m.content, &mut messages),
            Some("assistant") => messages.push(assistant(&m.content)),
            // Mid-conversation system messages (Claude Code's environment
            // and agent list): kept where they are. The OpenAI → Anthropic
            // and → Gemini translators hoist them into their system prompt.
            Some("system") => {
                if let Some(text) = system_text(&m.content, false) {
                    messages.push(MessageOut {
                        role: "system",
                        content: Some(StrOrVec::Str(text)),
                        ..MessageOut::default()
                    });
                }
            }
            _ => {}
        }
    }
    let mut tools = Vec::new();
    for t in req.tools.iter().flatten() {
        // Server tools (`type` other than `custom`) run only on Anthropic.
        let (None | Some("custom"), Some(name)) = (t.kind.as_deref(), t.name.as_deref()) else { continue };
        let parameters = match &t.input_schema {
            Some(s) if s.is_object() => RawJson::Borrowed(s.clone()),
            _ => RawJson::parse_owned(r#"{"type":"object","properties":{}}"#).unwrap_or_else(RawJson::empty_object),
        };
        tools.push(ToolOut {
            kind: "function",
            function: FunctionOut { name, description: t.description.as_deref(), parameters },
        });
    }
    let (tool_choice, parallel) = match &req.tool_choice {
        Some(c) if !tools.is_empty() => {
            let choice = match c.kind.as_deref() {
                Some("auto") => Some(ToolChoiceOut::Mode("auto")),
                Some("any") => Some(ToolChoiceOut::Mode("required")),
                Some("none") => Some(ToolChoiceOut::Mode("none")),
                // Only a tool that was kept can be named.
                Some("tool") => c
                    .name
                    .as_deref()
                    .filter(|n| tools.iter().any(|t| t.function.name == *n))
                    .map(|name| ToolChoiceOut::Named { kind: "function", function: NamedFunction { name } }),
                _ => None,
            };
            (choice, c.disable_parallel_tool_use.filter(|d| *d).map(|_| false))
        }
        _ => (None, None),
    };
    let stream = req.stream.unwrap_or(false);
    let (max_tokens, max_completion_tokens) = match opts.reasoning {
        true => (None, req.max_tokens),
        false => (req.max_tokens, None),
    };
    let stop = match &req.stop_sequences {
        Content::Str(s) => vec![&**s],
        Content::Parts(p) => p.iter().filter_map(|s| s.as_deref()).collect(),
        Content::None => Vec::new(),
    };
    let out = ChatOut {
        model,
        messages,
        max_tokens,
        max_completion_tokens,
        stop,
        temperature: req.temperature,
        top_p: req.top_p,
        stream,
        stream_options: stream.then_some(StreamOptions { include_usage: true }),
        tools,
        tool_choice,
        parallel_tool_calls: parallel,
        response_format: settings::response_format(req.output_config.as_ref(), req.output_format.as_ref()),
        reasoning_effort: settings::reasoning_effort(req.thinking.as_ref(), req.output_config.as_ref())
            .filter(|_| opts.reasoning),
        user: req.metadata.as_ref().and_then(|m| m.user_id.as_deref()),
    };
    let mut buf = Vec::with_capacity(body.len() + 64);
    crate::translate::write_json(&mut buf, &out);
    Ok((buf, stream))
}

/// The text of a `system` value (a string or text blocks), `None` when it
/// has none. `top`: the top-level `system`, whose billing line is dropped.
fn system_text<'a>(content: &'a Content<'a, BlockIn<'a>>, top: bool) -> Option<Cow<'a, str>> {
    match content {
        Content::None => None,
        Content::Str(s) => Some(Cow::Borrowed(&**s)),
        Content::Parts(blocks) => {
            let text: Vec<&str> = blocks
                .iter()
                .filter(|b| b.kind.as_deref() == Some("text"))
                .filter_map(|b| b.text.as_deref())
                .filter(|t| !(top && t.starts_with(BILLING_LINE)))
                .collect();
            (!text.is_empty()).then(|| Cow::Owned(text.join("\n")))
        }
    }
}

/// The text of a tool result's content: a string, or its text blocks.
fn text_of(content: &Content<'_, BlockIn<'_>>) -> String {
    match content {
        Content::None => String::new(),
        Content::Str(s) => s.to_string(),
        Content::Parts(blocks) => blocks.iter().filter_map(|b| b.text.as_deref()).collect::<Vec<_>>().join("\n"),
    }
}

fn user<'a>(content: &'a Content<'a, BlockIn<'a>>, out: &mut Vec<MessageOut<'a>>) {
    let blocks = match content {
        Content::None => return,
        Content::Str(s) => {
            out.push(MessageOut {
                role: "user",
                content: Some(StrOrVec::Str(Cow::Borrowed(s))),
                ..MessageOut::default()
            });
            return;
        }
        Content::Parts(b) => b,
    };
    let mut parts = Vec::new();
    for b in blocks {
        match b.kind.as_deref() {
            Some("tool_result") => out.push(MessageOut {
                role: "tool",
                content: Some(StrOrVec::Str(Cow::Owned(text_of(&b.content)))),
                tool_call_id: Some(Cow::Borrowed(b.tool_use_id.as_deref().unwrap_or(""))),
                ..MessageOut::default()
            }),
            Some("text") => parts.push(PartOut::text(Cow::Borrowed(b.text.as_deref().unwrap_or("")))),
            Some("image") => {
                if let Some(url) = b.source.as_ref().and_then(source_url) {
                    parts.push(PartOut { kind: "image_url", text: None, image_url: Some(UrlOut { url }), file: None });
                }
            }
            Some("document") => document(b, &mut parts),
            // thinking, redacted_thinking, server-tool results and blocks
            // newer than this translator carry nothing for a chat model.
            _ => {}
        }
    }
    if !parts.is_empty() {
        let content = match parts.as_slice() {
            [PartOut { kind: "text", text: Some(_), .. }] => parts.pop().and_then(|p| p.text).map(StrOrVec::Str),
            _ => Some(StrOrVec::Vec(parts)),
        };
        out.push(MessageOut { role: "user", content, ..MessageOut::default() });
    }
}

/// A `document` block: its text (a `text` or `content` source), or a base64
/// file; other sources (`file` ids, URLs) have nothing a chat model reads.
fn document<'a>(b: &'a BlockIn<'a>, parts: &mut Vec<PartOut<'a>>) {
    let Some(src) = b.source.as_ref() else { return };
    match src.kind.as_deref() {
        Some("text") => {
            if let Some(t) = src.data.as_deref() {
                parts.push(PartOut::text(Cow::Borrowed(t)));
            }
        }
        Some("content") => match &src.content {
            Content::Str(s) => parts.push(PartOut::text(Cow::Borrowed(s))),
            Content::Parts(blocks) => {
                parts.extend(blocks.iter().filter_map(|b| b.text.as_deref()).map(|t| PartOut::text(Cow::Borrowed(t))))
            }
            Content::None => {}
        },
        Some("base64") => {
            let media = src.media_type.as_deref().unwrap_or("application/pdf");
            let data = src.data.as_deref().unwrap_or("");
            parts.push(PartOut {
                kind: "file",
                text: None,
                image_url: None,
                file: Some(FileOut { file_data: format!("data:{media};base64,{data}"), filename: b.title.as_deref() }),
            });
        }
        _ => {}
    }
}

/// An image source as a chat `image_url`: a `data:` URL or the URL itself.
fn source_url<'a>(s: &'a SourceIn<'a>) -> Option<Cow<'a, str>> {
    match s.kind.as_deref() {
        Some("base64") => Some(Cow::Owned(format!(
            "data:{};base64,{}",
            s.media_type.as_deref().unwrap_or("image/png"),
            s.data.as_deref().unwrap_or("")
        ))),
        Some("url") => s.url.as_deref().map(Cow::Borrowed),
        _ => None,
    }
}

fn assistant<'a>(content: &'a Content<'a, BlockIn<'a>>) -> MessageOut<'a> {
    let blocks = match content {
        Content::None => &[][..],
        Content::Str(s) => {
            return MessageOut {
                role: "assistant",
                content: Some(StrOrVec::Str(Cow::Borrowed(s))),
                ..MessageOut::default()
            };
        }
        Content::Parts(b) => b.as_slice(),
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.kind.as_deref() {
            Some("text") => text.push_str(b.text.as_deref().unwrap_or("")),
            Some("tool_use") => calls.push(OutToolCall {
                id: Cow::Borrowed(b.id.as_deref().unwrap_or("")),
                kind: Cow::Borrowed("function"),
                function: OutFunction {
                    name: Cow::Borrowed(b.name.as_deref().unwrap_or("")),
                    arguments: b.input.as_ref().map_or(Cow::Borrowed("{}"), |i| Cow::Borrowed(i.as_raw_str())),
                },
            }),
            _ => {}
        }
    }
    MessageOut {
        role: "assistant",
        content: if text.is_empty() && !calls.is_empty() { None } else { Some(StrOrVec::Str(Cow::Owned(text))) },
        tool_calls: (!calls.is_empty()).then_some(calls),
        tool_call_id: None,
    }
}
