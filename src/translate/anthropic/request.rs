//! An OpenAI chat request as an Anthropic Messages request.
//!
//! - `system` / `developer` messages (wherever they are) become the top-level
//!   `system` prompt, in order;
//! - `user`, `assistant` messages become turns of content blocks; consecutive
//!   turns of one role are merged (Anthropic combines them anyway);
//! - `image_url` parts become `image` blocks (`base64` for `data:` URLs,
//!   `url` otherwise), `file` parts with `file_data` become `document` blocks;
//! - assistant `tool_calls` become `tool_use` blocks (their JSON `arguments`
//!   string parsed into `input`), `tool` messages become `tool_result` blocks
//!   in a user turn; legacy `functions` / `function_call` / `function` role
//!   map the same way;
//! - `tools`, `tool_choice` (`required` → `any`), `parallel_tool_calls:
//!   false` (→ `disable_parallel_tool_use`), `stop` (→ `stop_sequences`),
//!   `max_completion_tokens` / `max_tokens` (default: the provider's
//!   `default_max_tokens`), `temperature`, `top_p`, `user` (→
//!   `metadata.user_id`), `stream`;
//! - `cache_control` on messages, parts and tools passes through unless the
//!   provider's `prompt_caching` is `off`; `auto` also marks the system
//!   prompt and the tool list.
//!
//! Not translatable, refused with 400: `n > 1`, audio input, `file_id`
//! references. Ignored (Anthropic has no equivalent): `response_format`,
//! `logprobs`, `seed`, penalties, `logit_bias`.

use std::borrow::Cow;

use serde::Serialize;

use super::{Block, PromptCaching, RawJson, Source};
use crate::translate::openai::{ChatRequest, Message, Part, ToolChoice};
use crate::translate::{StrOrVec, TranslateError, parse, split_data_url, utf8};

/// Per-provider settings the translation needs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub default_max_tokens: u32,
    pub prompt_caching: PromptCaching,
}

impl Default for Options {
    fn default() -> Self {
        Options { default_max_tokens: 4096, prompt_caching: PromptCaching::Client }
    }
}

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<StrOrVec<'a, Block<'a>>>,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolDef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
struct ToolDef<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    input_schema: RawJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<RawJson<'a>>,
}

#[derive(Serialize)]
struct ToolChoiceOut {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: Cow<'a, str>,
}

fn ephemeral<'b>() -> RawJson<'b> {
    RawJson::parse_owned(r#"{"type":"ephemeral"}"#).unwrap_or_else(RawJson::empty_object)
}

/// Translate `body` (an OpenAI chat request) for the upstream model `model`.
pub fn translate(body: &[u8], model: &str, opts: &Options) -> Result<Vec<u8>, TranslateError> {
    let req: ChatRequest<'_> =
        utf8(body).and_then(parse).map_err(|e| TranslateError::new(format!("Invalid chat request: {e}"), None))?;
    let out = build(&req, model, opts)?;
    let mut buf = Vec::with_capacity(body.len() + 128);
    crate::translate::write_json(&mut buf, &out);
    Ok(buf)
}

fn build<'a>(req: &'a ChatRequest<'a>, model: &'a str, opts: &Options) -> Result<MessagesRequest<'a>, TranslateError> {
    if req.n.unwrap_or(1) > 1 {
        return Err(TranslateError::new(
            "'n' greater than 1 is not supported by this model's Anthropic deployment.",
            Some("n"),
        ));
    }
    let keep_cache = opts.prompt_caching != PromptCaching::Off;
    let cache = |c: &Option<sonic_rs::LazyValue<'a>>| if keep_cache { c.clone().map(RawJson::Borrowed) } else { None };

    let mut system: Vec<Block<'a>> = Vec::new();
    let mut turns: Vec<Turn<'a>> = Vec::new();
    // The id given to the latest legacy `function_call`, for the `function` message answering it.
    let mut legacy_call: Option<String> = None;
    for (i, m) in req.messages.iter().enumerate() {
        let (role, mut blocks) = match &*m.role {
            "system" | "developer" => {
                system.extend(text_blocks(m, keep_cache)?);
                continue;
            }
            "user" => ("user", user_blocks(m, keep_cache)?),
            "assistant" => {
                let (blocks, legacy) = assistant_blocks(m, i, keep_cache)?;
                if legacy.is_some() {
                    legacy_call = legacy;
                }
                ("assistant", blocks)
            }
            "tool" | "function" => {
                let id = m.answered_call(i, legacy_call.as_deref())?;
                let content = tool_result_content(m, keep_cache)?;
                let block = Block {
                    kind: Cow::Borrowed("tool_result"),
                    tool_use_id: Some(id),
                    content: Some(content),
                    ..Block::default()
                };
                ("user", vec![block])
            }
            other => {
                return Err(TranslateError::new(
                    format!(
                        "Invalid 'messages[{i}].role': '{other}'. Expected 'system', 'developer', 'user', 'assistant' or 'tool'."
                    ),
                    Some("messages"),
                ));
            }
        };
        if let (Some(cc), Some(last)) = (cache(&m.cache_control), blocks.last_mut()) {
            last.cache_control = Some(cc);
        }
        match turns.last_mut() {
            Some(t) if t.role == role => t.content.append(&mut blocks),
            _ => turns.push(Turn { role, content: blocks }),
        }
    }

    let mut tools: Vec<ToolDef<'a>> = Vec::new();
    for t in req.tools.iter().flatten() {
        if t.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(TranslateError::new(
                format!(
                    "Tool type '{}' is not supported by this model's Anthropic deployment.",
                    t.kind.as_deref().unwrap_or("")
                ),
                Some("tools"),
            ));
        }
        let Some(f) = &t.function else {
            return Err(TranslateError::new("Invalid 'tools': each tool needs a 'function'.", Some("tools")));
        };
        tools.push(ToolDef {
            name: Cow::Borrowed(&f.name),
            description: f.description.as_deref().map(Cow::Borrowed),
            input_schema: schema(&f.parameters),
            cache_control: cache(&t.cache_control),
        });
    }
    for f in req.functions.iter().flatten() {
        tools.push(ToolDef {
            name: Cow::Borrowed(&f.name),
            description: f.description.as_deref().map(Cow::Borrowed),
            input_schema: schema(&f.parameters),
            cache_control: None,
        });
    }

    let choice = match (&req.tool_choice, &req.function_call) {
        (Some(raw), _) => Some(ToolChoice::read(raw)?),
        (None, Some(raw)) => Some(legacy_choice(raw)?),
        (None, None) => None,
    };
    let no_parallel = req.parallel_tool_calls == Some(false);
    let tool_choice = match choice {
        _ if tools.is_empty() => None,
        Some(ToolChoice::None) => Some(ToolChoiceOut { kind: "none", name: None, disable_parallel_tool_use: false }),
        Some(ToolChoice::Auto) => {
            Some(ToolChoiceOut { kind: "auto", name: None, disable_parallel_tool_use: no_parallel })
        }
        Some(ToolChoice::Required) => {
            Some(ToolChoiceOut { kind: "any", name: None, disable_parallel_tool_use: no_parallel })
        }
        Some(ToolChoice::Function(name)) => {
            Some(ToolChoiceOut { kind: "tool", name: Some(name), disable_parallel_tool_use: no_parallel })
        }
        None if no_parallel => Some(ToolChoiceOut { kind: "auto", name: None, disable_parallel_tool_use: true }),
        None => None,
    };

    if opts.prompt_caching == PromptCaching::Auto {
        if let Some(last) = system.last_mut() {
            last.cache_control.get_or_insert_with(ephemeral);
        }
        if let Some(last) = tools.last_mut() {
            last.cache_control.get_or_insert_with(ephemeral);
        }
    }
    let system = match system.len() {
        0 => None,
        1 if system[0].cache_control.is_none() => system.pop().and_then(|b| b.text).map(StrOrVec::Str),
        _ => Some(StrOrVec::Vec(system)),
    };
    let stop_sequences = match &req.stop {
        None => Vec::new(),
        Some(StrOrVec::Str(s)) => vec![Cow::Borrowed(&**s)],
        Some(StrOrVec::Vec(v)) => v.iter().map(|s| Cow::Borrowed(&**s)).collect(),
    };
    Ok(MessagesRequest {
        model,
        max_tokens: req.max_completion_tokens.or(req.max_tokens).unwrap_or(u64::from(opts.default_max_tokens)),
        system,
        messages: turns,
        stop_sequences,
        temperature: req.temperature,
        top_p: req.top_p,
        stream: req.stream.unwrap_or(false),
        tools,
        tool_choice,
        metadata: req.user.as_deref().map(|u| Metadata { user_id: Cow::Borrowed(u) }),
    })
}

/// A tool's `parameters` as `input_schema` (Anthropic requires one).
fn schema<'a>(p: &Option<sonic_rs::LazyValue<'a>>) -> RawJson<'a> {
    use sonic_rs::JsonValueTrait;
    match p {
        Some(v) if v.is_object() => RawJson::Borrowed(v.clone()),
        _ => RawJson::parse_owned(r#"{"type":"object","properties":{}}"#).unwrap_or_else(RawJson::empty_object),
    }
}

fn legacy_choice(raw: &sonic_rs::LazyValue<'_>) -> Result<ToolChoice, TranslateError> {
    use sonic_rs::JsonValueTrait;
    if let Some(s) = raw.as_str() {
        return match s {
            "none" => Ok(ToolChoice::None),
            _ => Ok(ToolChoice::Auto),
        };
    }
    match sonic_rs::get(raw.as_raw_str(), ["name"]).ok().and_then(|n| n.as_str().map(str::to_owned)) {
        Some(n) => Ok(ToolChoice::Function(n)),
        None => Err(TranslateError::new("Invalid 'function_call'.", Some("function_call"))),
    }
}

/// Text-only content (system prompts, tool results): a string or text parts.
fn text_blocks<'a>(m: &'a Message<'a>, keep_cache: bool) -> Result<Vec<Block<'a>>, TranslateError> {
    let mut out = Vec::new();
    match &m.content {
        None => {}
        Some(StrOrVec::Str(s)) => out.push(Block::text(Cow::Borrowed(&**s))),
        Some(StrOrVec::Vec(parts)) => {
            for p in parts {
                match (&*p.kind, &p.text) {
                    ("text", Some(t)) => {
                        let mut b = Block::text(Cow::Borrowed(&**t));
                        if keep_cache {
                            b.cache_control = p.cache_control.clone().map(RawJson::Borrowed);
                        }
                        out.push(b);
                    }
                    (kind, _) => {
                        return Err(TranslateError::new(
                            format!("Content part type '{kind}' is not allowed in a '{}' message.", m.role),
                            Some("messages"),
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn part_block<'a>(p: &'a Part<'a>, keep_cache: bool) -> Result<Option<Block<'a>>, TranslateError> {
    let mut b = match &*p.kind {
        "text" => match &p.text {
            Some(t) => Block::text(Cow::Borrowed(&**t)),
            None => return Err(TranslateError::new("A 'text' content part needs 'text'.", Some("messages"))),
        },
        "refusal" => match &p.refusal {
            Some(t) => Block::text(Cow::Borrowed(&**t)),
            None => return Ok(None),
        },
        "image_url" => {
            let Some(img) = &p.image_url else {
                return Err(TranslateError::new("An 'image_url' content part needs 'image_url'.", Some("messages")));
            };
            let url = img.url();
            let source = match split_data_url(url) {
                Some((media, data)) => Source {
                    kind: Cow::Borrowed("base64"),
                    media_type: Some(Cow::Borrowed(media)),
                    data: Some(Cow::Borrowed(data)),
                    url: None,
                },
                None if url.starts_with("https://") || url.starts_with("http://") => {
                    Source { kind: Cow::Borrowed("url"), url: Some(Cow::Borrowed(url)), ..Source::default() }
                }
                None => {
                    return Err(TranslateError::new(
                        "Invalid image URL: expected an http(s) URL or a base64 data: URL.",
                        Some("messages"),
                    ));
                }
            };
            Block { kind: Cow::Borrowed("image"), source: Some(source), ..Block::default() }
        }
        "file" => {
            let data = p.file.as_ref().and_then(|f| f.file_data.as_deref()).and_then(split_data_url);
            let Some((media, data)) = data else {
                return Err(TranslateError::new(
                    "File content parts need inline 'file_data' (a base64 data: URL) for this model's Anthropic deployment; 'file_id' references are not supported.",
                    Some("messages"),
                ));
            };
            Block {
                kind: Cow::Borrowed("document"),
                source: Some(Source {
                    kind: Cow::Borrowed("base64"),
                    media_type: Some(Cow::Borrowed(media)),
                    data: Some(Cow::Borrowed(data)),
                    url: None,
                }),
                title: p.file.as_ref().and_then(|f| f.filename.as_deref()).map(Cow::Borrowed),
                ..Block::default()
            }
        }
        other => {
            return Err(TranslateError::new(
                format!("Content part type '{other}' is not supported by this model's Anthropic deployment."),
                Some("messages"),
            ));
        }
    };
    if keep_cache {
        b.cache_control = p.cache_control.clone().map(RawJson::Borrowed);
    }
    Ok(Some(b))
}

/// Drop empty text blocks (Anthropic refuses them) unless nothing else is left.
fn drop_empty_text(blocks: &mut Vec<Block<'_>>) {
    if blocks.len() > 1 {
        blocks.retain(|b| b.kind != "text" || b.text.as_deref().is_some_and(|t| !t.is_empty()));
    }
}

fn user_blocks<'a>(m: &'a Message<'a>, keep_cache: bool) -> Result<Vec<Block<'a>>, TranslateError> {
    let mut out = Vec::new();
    match &m.content {
        None => out.push(Block::text(Cow::Borrowed(""))),
        Some(StrOrVec::Str(s)) => out.push(Block::text(Cow::Borrowed(&**s))),
        Some(StrOrVec::Vec(parts)) => {
            for p in parts {
                if let Some(b) = part_block(p, keep_cache)? {
                    out.push(b);
                }
            }
        }
    }
    if out.is_empty() {
        out.push(Block::text(Cow::Borrowed("")));
    }
    drop_empty_text(&mut out);
    Ok(out)
}

/// An assistant message's blocks, and the id given to a legacy `function_call`.
fn assistant_blocks<'a>(
    m: &'a Message<'a>,
    i: usize,
    keep_cache: bool,
) -> Result<(Vec<Block<'a>>, Option<String>), TranslateError> {
    let mut out = match &m.content {
        None => Vec::new(),
        Some(StrOrVec::Str(s)) => vec![Block::text(Cow::Borrowed(&**s))],
        Some(StrOrVec::Vec(parts)) => {
            let mut v = Vec::new();
            for p in parts {
                if let Some(b) = part_block(p, keep_cache)? {
                    v.push(b);
                }
            }
            v
        }
    };
    for tc in m.tool_calls.iter().flatten() {
        out.push(tool_use(Cow::Borrowed(&tc.id), &tc.function.name, &tc.function.arguments, i)?);
    }
    let mut legacy = None;
    if let Some(fc) = &m.function_call {
        let id = format!("call_fn_{i}");
        out.push(tool_use(Cow::Owned(id.clone()), &fc.name, &fc.arguments, i)?);
        legacy = Some(id);
    }
    if out.is_empty() {
        out.push(Block::text(Cow::Borrowed("")));
    }
    drop_empty_text(&mut out);
    Ok((out, legacy))
}

fn tool_use<'a>(id: Cow<'a, str>, name: &'a str, arguments: &str, i: usize) -> Result<Block<'a>, TranslateError> {
    let input = if arguments.trim().is_empty() {
        RawJson::empty_object()
    } else {
        match RawJson::parse_owned(arguments) {
            Some(v) if v.is_object() => v,
            _ => {
                return Err(TranslateError::new(
                    format!("Invalid 'messages[{i}]': tool call arguments must be a JSON object."),
                    Some("messages"),
                ));
            }
        }
    };
    Ok(Block {
        kind: Cow::Borrowed("tool_use"),
        id: Some(id),
        name: Some(Cow::Borrowed(name)),
        input: Some(input),
        ..Block::default()
    })
}

fn tool_result_content<'a>(m: &'a Message<'a>, keep_cache: bool) -> Result<StrOrVec<'a, Block<'a>>, TranslateError> {
    Ok(match &m.content {
        None => StrOrVec::Str(Cow::Borrowed("")),
        Some(StrOrVec::Str(s)) => StrOrVec::Str(Cow::Borrowed(&**s)),
        Some(StrOrVec::Vec(parts)) => {
            let mut v = Vec::new();
            for p in parts {
                if let Some(b) = part_block(p, keep_cache)? {
                    v.push(b);
                }
            }
            StrOrVec::Vec(v)
        }
    })
}
