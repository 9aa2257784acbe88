//! Responses input items as chat messages.
//!
//! - `message` items (or bare `{role, content}`): `user` parts
//!   (`input_text`, `input_image` URL, `input_file` data or id,
//!   `input_audio`) become user content parts; `assistant` `output_text`
//!   becomes assistant content; `system` and `developer` become `system`
//!   (chat-only servers such as vLLM and Ollama do not know `developer`).
//!   `instructions` and the system/developer messages before the first
//!   other item are joined into one leading system message: many chat
//!   templates accept a single system message, at the start.
//! - `function_call` / `custom_tool_call` items become `tool_calls` of an
//!   assistant message: joined to the assistant message just before them
//!   (chat wants one assistant message carrying all parallel calls).
//! - `function_call_output` / `custom_tool_call_output` become `tool`
//!   messages; images in an output (Codex's `view_image`) cannot go in a
//!   chat tool message, so they follow the tool messages as a user message.
//! - `reasoning` items are dropped (chat has no input form for them; their
//!   encrypted content is OpenAI's), as are hosted tool calls and outputs
//!   (`web_search_call`, `local_shell_call`, `compaction`, ...), which a
//!   chat deployment never produced.
//! - `item_reference` and image or file *ids/URLs* chat cannot resolve are
//!   refused with 400.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::ToolNames;
use super::read::{Content, Text};
use crate::translate::{StrOrVec, TranslateError};

/// One input item, read flat.
#[derive(Debug, Deserialize)]
pub struct Item<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    role: Text<'a>,
    #[serde(borrow, default)]
    content: Content<'a, PartIn<'a>>,
    #[serde(borrow, default)]
    call_id: Text<'a>,
    #[serde(borrow, default)]
    namespace: Text<'a>,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    arguments: Text<'a>,
    #[serde(borrow, default)]
    input: Text<'a>,
    #[serde(borrow, default)]
    output: Content<'a, PartIn<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct PartIn<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    text: Text<'a>,
    #[serde(borrow, default)]
    refusal: Text<'a>,
    #[serde(borrow, default)]
    image_url: Text<'a>,
    #[serde(borrow, default)]
    detail: Text<'a>,
    #[serde(borrow, default)]
    file_id: Text<'a>,
    #[serde(borrow, default)]
    file_data: Text<'a>,
    #[serde(borrow, default)]
    file_url: Text<'a>,
    #[serde(borrow, default)]
    filename: Text<'a>,
    #[serde(borrow, default)]
    input_audio: Option<AudioIn<'a>>,
}

#[derive(Debug, Deserialize)]
struct AudioIn<'a> {
    #[serde(borrow, default)]
    data: Text<'a>,
    #[serde(borrow, default)]
    format: Text<'a>,
}

#[derive(Debug, Default, Serialize)]
pub struct MessageOut<'a> {
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<StrOrVec<'a, PartOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<CallOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Serialize)]
pub struct PartOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_url: Option<UrlOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<FileOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_audio: Option<AudioOut<'a>>,
}

impl<'a> PartOut<'a> {
    fn text(t: Cow<'a, str>) -> PartOut<'a> {
        PartOut { kind: "text", text: Some(t), image_url: None, file: None, input_audio: None }
    }
}

#[derive(Debug, Serialize)]
struct UrlOut<'a> {
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct FileOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    file_data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct AudioOut<'a> {
    data: &'a str,
    format: &'a str,
}

#[derive(Debug, Serialize)]
struct CallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Debug, Serialize)]
struct FunctionOut<'a> {
    name: String,
    arguments: Cow<'a, str>,
}

#[derive(Serialize)]
struct CustomArgs<'a> {
    input: &'a str,
}

impl<'a> Item<'a> {
    /// The user message a plain-string `input` stands for.
    pub fn user_text(text: &'a str) -> Item<'a> {
        Item {
            kind: Text(Some(Cow::Borrowed("message"))),
            role: Text(Some(Cow::Borrowed("user"))),
            content: Content::Str(Cow::Borrowed(text)),
            call_id: Text(None),
            namespace: Text(None),
            name: Text(None),
            arguments: Text(None),
            input: Text(None),
            output: Content::None,
        }
    }
}

/// Chat messages for `instructions` and `items` (stored history first,
/// then this turn's input).
pub fn messages<'a>(
    instructions: Option<&'a str>,
    items: &[&'a Item<'a>],
    names: &ToolNames,
) -> Result<Vec<MessageOut<'a>>, TranslateError> {
    let mut system: Vec<&'a str> = instructions.filter(|s| !s.is_empty()).into_iter().collect();
    let mut out: Vec<MessageOut<'a>> = Vec::with_capacity(items.len() + 1);
    let mut images: Vec<PartOut<'a>> = Vec::new();
    let mut leading = true;
    for (i, item) in items.iter().enumerate() {
        let kind = item.kind.as_deref().unwrap_or(if item.role.as_deref().is_some() { "message" } else { "" });
        if !matches!(kind, "function_call_output" | "custom_tool_call_output" | "reasoning") {
            flush_images(&mut images, &mut out);
        }
        match kind {
            "message" => match item.role.as_deref().unwrap_or("") {
                "system" | "developer" => {
                    let text = joined_text(&item.content, "\n");
                    if leading {
                        system.extend(text_parts(&item.content));
                    } else {
                        out.push(MessageOut {
                            role: "system",
                            content: Some(StrOrVec::Str(text)),
                            ..Default::default()
                        });
                    }
                }
                "user" => {
                    leading = false;
                    if let Some(content) = user_content(&item.content, i)? {
                        out.push(MessageOut { role: "user", content: Some(content), ..Default::default() });
                    }
                }
                "assistant" => {
                    leading = false;
                    let text = joined_text(&item.content, "");
                    out.push(MessageOut {
                        role: "assistant",
                        content: Some(StrOrVec::Str(text)),
                        ..Default::default()
                    });
                }
                other => {
                    return Err(TranslateError::new(
                        format!("input[{i}].role: '{other}' is not one of 'user', 'assistant', 'system', 'developer'."),
                        Some("input"),
                    ));
                }
            },
            "function_call" | "custom_tool_call" => {
                leading = false;
                let custom = kind == "custom_tool_call";
                let arguments = if custom {
                    let mut buf = Vec::new();
                    crate::translate::write_json(&mut buf, &CustomArgs { input: item.input.as_deref().unwrap_or("") });
                    Cow::Owned(String::from_utf8(buf).unwrap_or_else(|_| "{}".to_owned()))
                } else {
                    Cow::Borrowed(item.arguments.as_deref().filter(|a| !a.is_empty()).unwrap_or("{}"))
                };
                let call = CallOut {
                    id: item.call_id.as_deref().unwrap_or(""),
                    kind: "function",
                    function: FunctionOut {
                        name: names.chat_name(item.namespace.as_deref(), item.name.as_deref().unwrap_or("")),
                        arguments,
                    },
                };
                match out.last_mut() {
                    Some(m) if m.role == "assistant" => m.tool_calls.get_or_insert_with(Vec::new).push(call),
                    _ => out.push(MessageOut { role: "assistant", tool_calls: Some(vec![call]), ..Default::default() }),
                }
            }
            "function_call_output" | "custom_tool_call_output" => {
                leading = false;
                let text = joined_text(&item.output, "\n");
                if let Content::Parts(parts) = &item.output {
                    for p in parts {
                        if p.kind.as_deref() == Some("input_image") {
                            images.push(image(p, i)?);
                        }
                    }
                }
                out.push(MessageOut {
                    role: "tool",
                    content: Some(StrOrVec::Str(text)),
                    tool_call_id: Some(Cow::Borrowed(item.call_id.as_deref().unwrap_or(""))),
                    ..Default::default()
                });
            }
            "item_reference" => {
                return Err(TranslateError::new(
                    format!(
                        "input[{i}]: an item_reference needs the item stored by the upstream; this model's deployment serves Chat Completions. Send the item itself, or use previous_response_id."
                    ),
                    Some("input"),
                ));
            }
            // reasoning, hosted tool calls and their outputs, compaction, ...
            _ => {}
        }
    }
    flush_images(&mut images, &mut out);
    if !system.is_empty() {
        let text = if system.len() == 1 { Cow::Borrowed(system[0]) } else { Cow::Owned(system.join("\n\n")) };
        out.insert(0, MessageOut { role: "system", content: Some(StrOrVec::Str(text)), ..Default::default() });
    }
    Ok(out)
}

fn flush_images<'a>(images: &mut Vec<PartOut<'a>>, out: &mut Vec<MessageOut<'a>>) {
    if !images.is_empty() {
        out.push(MessageOut {
            role: "user",
            content: Some(StrOrVec::Vec(std::mem::take(images))),
            ..Default::default()
        });
    }
}

/// The texts of a content (`input_text`, `output_text`, `text`, `refusal`).
fn text_parts<'a>(c: &'a Content<'a, PartIn<'a>>) -> Vec<&'a str> {
    match c {
        Content::None => Vec::new(),
        Content::Str(s) => vec![&**s],
        Content::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref().or(p.refusal.as_deref())).collect(),
    }
}

fn joined_text<'a>(c: &'a Content<'a, PartIn<'a>>, sep: &str) -> Cow<'a, str> {
    match c {
        Content::Str(s) => Cow::Borrowed(&**s),
        _ => {
            let parts = text_parts(c);
            match parts.as_slice() {
                [] => Cow::Borrowed(""),
                [one] => Cow::Borrowed(one),
                many => Cow::Owned(many.join(sep)),
            }
        }
    }
}

fn user_content<'a>(
    c: &'a Content<'a, PartIn<'a>>,
    i: usize,
) -> Result<Option<StrOrVec<'a, PartOut<'a>>>, TranslateError> {
    let parts = match c {
        Content::None => return Ok(None),
        Content::Str(s) => return Ok(Some(StrOrVec::Str(Cow::Borrowed(&**s)))),
        Content::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p.kind.as_deref().unwrap_or("") {
            "input_text" | "output_text" | "text" => {
                out.push(PartOut::text(Cow::Borrowed(p.text.as_deref().unwrap_or(""))));
            }
            "input_image" => out.push(image(p, i)?),
            "input_file" => {
                if p.file_url.as_deref().is_some() && p.file_data.as_deref().is_none() {
                    return Err(TranslateError::new(
                        format!(
                            "input[{i}]: input_file.file_url cannot be sent to a Chat Completions deployment; send file_data."
                        ),
                        Some("input"),
                    ));
                }
                out.push(PartOut {
                    kind: "file",
                    text: None,
                    image_url: None,
                    file: Some(FileOut {
                        file_data: p.file_data.as_deref(),
                        file_id: p.file_id.as_deref(),
                        filename: p.filename.as_deref(),
                    }),
                    input_audio: None,
                });
            }
            "input_audio" => {
                if let Some(a) = &p.input_audio {
                    out.push(PartOut {
                        kind: "input_audio",
                        text: None,
                        image_url: None,
                        file: None,
                        input_audio: Some(AudioOut {
                            data: a.data.as_deref().unwrap_or(""),
                            format: a.format.as_deref().unwrap_or("wav"),
                        }),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(match out.as_slice() {
        [] => None,
        [PartOut { kind: "text", .. }] => out.pop().and_then(|p| p.text).map(StrOrVec::Str),
        _ => Some(StrOrVec::Vec(out)),
    })
}

fn image<'a>(p: &'a PartIn<'a>, i: usize) -> Result<PartOut<'a>, TranslateError> {
    let url = p.image_url.as_deref().ok_or_else(|| {
        TranslateError::new(
            format!("input[{i}]: input_image.file_id cannot be sent to a Chat Completions deployment; send image_url (a URL or a data: URL)."),
            Some("input"),
        )
    })?;
    Ok(PartOut {
        kind: "image_url",
        text: None,
        image_url: Some(UrlOut { url, detail: p.detail.as_deref() }),
        file: None,
        input_audio: None,
    })
}
