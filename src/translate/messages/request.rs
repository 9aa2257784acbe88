//! An Anthropic Messages request as an OpenAI chat request.
//!
//! `system` → a leading `system` message; user text / `image` (`base64` →
//! `data:` URL, `url`) / `document` (base64 PDF → `file` part; text source →
//! text) blocks → user content parts; `tool_result` blocks → `tool`
//! messages (placed before the rest of their user turn, as OpenAI requires
//! them right after the assistant's tool calls); assistant `text` → content,
//! `tool_use` → `tool_calls` (`input` serialised into `arguments`),
//! `thinking` dropped; `tools` → function tools (`input_schema` →
//! `parameters`); `tool_choice` (`any` → `required`, `tool` → a named
//! function, `disable_parallel_tool_use` → `parallel_tool_calls: false`);
//! `max_tokens`, `stop_sequences` → `stop`, `temperature`, `top_p`,
//! `metadata.user_id` → `user`; `stream` (with `stream_options.include_usage`
//! so usage comes back). `cache_control` and `top_k` are dropped (OpenAI
//! caches prompts by itself). Anthropic server tools (`web_search`, `bash`,
//! ...) are refused with 400: only an Anthropic deployment can run them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sonic_rs::LazyValue;

use crate::translate::anthropic::{Block, RawJson};
use crate::translate::openai::{OutFunction, OutToolCall};
use crate::translate::{StrOrVec, TranslateError, parse};

#[derive(Deserialize)]
struct MessagesRequest<'a> {
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(borrow, default)]
    system: Option<StrOrVec<'a, Block<'a>>>,
    #[serde(borrow, default)]
    messages: Vec<MessageIn<'a>>,
    #[serde(borrow, default)]
    stop_sequences: Option<Vec<Cow<'a, str>>>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    tools: Option<Vec<ToolIn<'a>>>,
    #[serde(borrow, default)]
    tool_choice: Option<ToolChoiceIn<'a>>,
    #[serde(borrow, default)]
    metadata: Option<MetadataIn<'a>>,
}

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    content: StrOrVec<'a, Block<'a>>,
}

#[derive(Deserialize)]
struct ToolIn<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input_schema: Option<LazyValue<'a>>,
}

#[derive(Deserialize)]
struct ToolChoiceIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct MetadataIn<'a> {
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct ChatOut<'a> {
    model: &'a str,
    messages: Vec<MessageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop: Vec<Cow<'a, str>>,
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
    user: Option<Cow<'a, str>>,
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

#[derive(Serialize)]
struct UrlOut<'a> {
    url: Cow<'a, str>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    file_data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct ToolOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
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
    name: Cow<'a, str>,
}

/// Translate `body` (an Anthropic Messages request) into an OpenAI chat
/// request for the upstream model `model`. Also returns whether it streams.
pub fn translate(body: &[u8], model: &str) -> Result<(Vec<u8>, bool), TranslateError> {
    let req: MessagesRequest<'_> =
        parse(body).map_err(|e| TranslateError::new(format!("Invalid Messages request: {e}"), None))?;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    match &req.system {
        None => {}
        Some(StrOrVec::Str(s)) => messages.push(MessageOut {
            role: "system",
            content: Some(StrOrVec::Str(Cow::Borrowed(&**s))),
            ..MessageOut::default()
        }),
        Some(StrOrVec::Vec(blocks)) => {
            let text: Vec<&str> = blocks.iter().filter_map(|b| b.text.as_deref()).collect();
            messages.push(MessageOut {
                role: "system",
                content: Some(StrOrVec::Str(Cow::Owned(text.join("\n")))),
                ..MessageOut::default()
            });
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        match &*m.role {
            "user" => user(&m.content, &mut messages, i)?,
            "assistant" => messages.push(assistant(&m.content)),
            other => {
                return Err(TranslateError::new(
                    format!("messages.{i}.role: Input should be 'user' or 'assistant', not '{other}'."),
                    Some("messages"),
                ));
            }
        }
    }
    let mut tools = Vec::new();
    for t in req.tools.iter().flatten() {
        if let Some(k) = t.kind.as_deref().filter(|k| *k != "custom") {
            return Err(TranslateError::new(
                format!(
                    "tools: the server tool '{k}' runs only on an Anthropic deployment; this model's deployment is not one."
                ),
                Some("tools"),
            ));
        }
        let parameters = match &t.input_schema {
            Some(s) => RawJson::Borrowed(s.clone()),
            None => RawJson::parse_owned(r#"{"type":"object","properties":{}}"#).unwrap_or_else(RawJson::empty_object),
        };
        tools.push(ToolOut {
            kind: "function",
            function: FunctionOut {
                name: Cow::Borrowed(&t.name),
                description: t.description.as_deref().map(Cow::Borrowed),
                parameters,
            },
        });
    }
    let (tool_choice, parallel) = match &req.tool_choice {
        None => (None, None),
        Some(c) => {
            let choice = match &*c.kind {
                "auto" => ToolChoiceOut::Mode("auto"),
                "any" => ToolChoiceOut::Mode("required"),
                "none" => ToolChoiceOut::Mode("none"),
                "tool" => ToolChoiceOut::Named {
                    kind: "function",
                    function: NamedFunction { name: Cow::Borrowed(c.name.as_deref().unwrap_or("")) },
                },
                other => {
                    return Err(TranslateError::new(
                        format!("tool_choice.type: unknown type '{other}'."),
                        Some("tool_choice"),
                    ));
                }
            };
            let parallel = c.disable_parallel_tool_use.filter(|d| *d).map(|_| false);
            (if tools.is_empty() { None } else { Some(choice) }, if tools.is_empty() { None } else { parallel })
        }
    };
    let stream = req.stream.unwrap_or(false);
    let out = ChatOut {
        model,
        messages,
        max_tokens: req.max_tokens,
        stop: req.stop_sequences.iter().flatten().map(|s| Cow::Borrowed(&**s)).collect(),
        temperature: req.temperature,
        top_p: req.top_p,
        stream,
        stream_options: stream.then_some(StreamOptions { include_usage: true }),
        tools,
        tool_choice,
        parallel_tool_calls: parallel,
        user: req.metadata.as_ref().and_then(|m| m.user_id.as_deref()).map(Cow::Borrowed),
    };
    let mut buf = Vec::with_capacity(body.len() + 64);
    crate::translate::write_json(&mut buf, &out);
    Ok((buf, stream))
}

fn text_of(content: &Option<StrOrVec<'_, Block<'_>>>) -> String {
    match content {
        None => String::new(),
        Some(StrOrVec::Str(s)) => s.to_string(),
        Some(StrOrVec::Vec(blocks)) => blocks.iter().filter_map(|b| b.text.as_deref()).collect::<Vec<_>>().join("\n"),
    }
}

fn user<'a>(
    content: &'a StrOrVec<'a, Block<'a>>,
    out: &mut Vec<MessageOut<'a>>,
    i: usize,
) -> Result<(), TranslateError> {
    let blocks = match content {
        StrOrVec::Str(s) => {
            out.push(MessageOut {
                role: "user",
                content: Some(StrOrVec::Str(Cow::Borrowed(s))),
                ..MessageOut::default()
            });
            return Ok(());
        }
        StrOrVec::Vec(b) => b,
    };
    let mut parts = Vec::new();
    for b in blocks {
        match &*b.kind {
            "tool_result" => out.push(MessageOut {
                role: "tool",
                content: Some(StrOrVec::Str(Cow::Owned(text_of(&b.content)))),
                tool_call_id: Some(Cow::Borrowed(b.tool_use_id.as_deref().unwrap_or(""))),
                ..MessageOut::default()
            }),
            "text" => parts.push(PartOut {
                kind: "text",
                text: Some(Cow::Borrowed(b.text.as_deref().unwrap_or(""))),
                image_url: None,
                file: None,
            }),
            "image" => {
                let url = source_url(b, i)?;
                parts.push(PartOut { kind: "image_url", text: None, image_url: Some(UrlOut { url }), file: None });
            }
            "document" => {
                let src = b.source.as_ref();
                match src.map(|s| &*s.kind) {
                    Some("text") => parts.push(PartOut {
                        kind: "text",
                        text: src.and_then(|s| s.data.as_deref()).map(Cow::Borrowed),
                        image_url: None,
                        file: None,
                    }),
                    Some("base64") => {
                        let media = src.and_then(|s| s.media_type.as_deref()).unwrap_or("application/pdf");
                        let data = src.and_then(|s| s.data.as_deref()).unwrap_or("");
                        parts.push(PartOut {
                            kind: "file",
                            text: None,
                            image_url: None,
                            file: Some(FileOut {
                                file_data: format!("data:{media};base64,{data}"),
                                filename: b.title.as_deref().map(Cow::Borrowed),
                            }),
                        });
                    }
                    _ => {
                        return Err(TranslateError::new(
                            format!("messages.{i}: this document source is supported only by Anthropic deployments."),
                            Some("messages"),
                        ));
                    }
                }
            }
            // thinking, redacted_thinking and other assistant-side blocks carry nothing for OpenAI.
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
    Ok(())
}

fn source_url<'a>(b: &'a Block<'a>, i: usize) -> Result<Cow<'a, str>, TranslateError> {
    let bad = || TranslateError::new(format!("messages.{i}: an image needs a base64 or url source."), Some("messages"));
    let s = b.source.as_ref().ok_or_else(bad)?;
    match &*s.kind {
        "base64" => Ok(Cow::Owned(format!(
            "data:{};base64,{}",
            s.media_type.as_deref().unwrap_or("image/png"),
            s.data.as_deref().unwrap_or("")
        ))),
        "url" => s.url.as_deref().map(Cow::Borrowed).ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn assistant<'a>(content: &'a StrOrVec<'a, Block<'a>>) -> MessageOut<'a> {
    let blocks = match content {
        StrOrVec::Str(s) => {
            return MessageOut {
                role: "assistant",
                content: Some(StrOrVec::Str(Cow::Borrowed(s))),
                ..MessageOut::default()
            };
        }
        StrOrVec::Vec(b) => b,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
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
    MessageOut {
        role: "assistant",
        content: if text.is_empty() && !calls.is_empty() { None } else { Some(StrOrVec::Str(Cow::Owned(text))) },
        tool_calls: (!calls.is_empty()).then_some(calls),
        tool_call_id: None,
    }
}
