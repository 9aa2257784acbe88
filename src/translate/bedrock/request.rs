//! An OpenAI chat request as a Bedrock Converse request.
//!
//! - `system` / `developer` messages (wherever they are) become `system`
//!   text blocks, in order;
//! - `user` and `assistant` messages become turns of content blocks;
//!   consecutive turns of one role are merged (Converse requires the roles
//!   to alternate, starting with `user`); empty text parts are dropped
//!   (Bedrock refuses blank text blocks);
//! - `image_url` parts with `data:` URLs become `image` blocks (`png`,
//!   `jpeg`, `gif`, `webp`; base64 bytes), `s3://` URLs `s3Location`
//!   sources; `file` parts with `file_data` become `document` blocks (pdf,
//!   csv, doc, docx, xls, xlsx, html, txt, md);
//! - assistant `tool_calls` become `toolUse` blocks (their JSON
//!   `arguments` parsed into `input`); `tool` messages become `toolResult`
//!   blocks in a user turn; legacy `functions` / `function_call` / `function`
//!   messages map the same way;
//! - `tools` → `toolConfig.tools[].toolSpec` (the parameters schema as
//!   `inputSchema.json`); `tool_choice` `auto` → `auto`, `required` → `any`,
//!   a named function → `tool`; `none` sends no tools (Converse cannot
//!   forbid them), unless the conversation already holds tool blocks, which
//!   Bedrock accepts only with the tools declared (tools a conversation used
//!   but the request does not declare are declared, taking any input);
//! - `max_completion_tokens` / `max_tokens` → `inferenceConfig.maxTokens`,
//!   `temperature`, `top_p` → `topP`, `stop` → `stopSequences`;
//! - `cache_control` on a message, part or tool (a common OpenAI-SDK
//!   extension) → a `cachePoint` block after it.
//!
//! Refused with 400: `n > 1`, audio, images by `http(s)` URL (Bedrock takes
//! bytes or S3), `file_id` references, unknown media types. Ignored (no
//! Converse equivalent): `response_format`, `seed`, penalties, `logprobs`,
//! `logit_bias`, `user`.

use std::borrow::Cow;

use serde::Serialize;

use super::media::{document_format, document_name, guess_mime, image_format};
use crate::translate::anthropic::RawJson;
use crate::translate::openai::{ChatRequest, FunctionDef, Message, Part as OaPart, ToolChoice};
use crate::translate::{StrOrVec, TranslateError, parse, split_data_url, utf8};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest<'a> {
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

/// A `ContentBlock` (or `SystemContentBlock`): a union, one member set.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Block<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<Media<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<Document<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_use: Option<ToolUse<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_result: Option<ToolResult<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_point: Option<CachePoint>,
}

impl<'a> Block<'a> {
    fn text(t: Cow<'a, str>) -> Block<'a> {
        Block { text: Some(t), ..Block::default() }
    }

    fn cache_point() -> Block<'a> {
        Block { cache_point: Some(CachePoint { kind: "default" }), ..Block::default() }
    }
}

#[derive(Serialize)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Media<'a> {
    format: &'static str,
    source: Source<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Source<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    s3_location: Option<S3Location<'a>>,
}

#[derive(Serialize)]
struct S3Location<'a> {
    uri: Cow<'a, str>,
}

#[derive(Serialize)]
struct Document<'a> {
    format: &'static str,
    name: String,
    source: Source<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    tool_use_id: Cow<'a, str>,
    name: Cow<'a, str>,
    input: RawJson<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult<'a> {
    tool_use_id: Cow<'a, str>,
    content: Vec<ResultText<'a>>,
}

#[derive(Serialize)]
struct ResultText<'a> {
    text: Cow<'a, str>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<Cow<'a, str>>,
}

impl InferenceConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut>,
}

/// A `Tool`: a spec or a cache point.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_spec: Option<ToolSpec<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_point: Option<CachePoint>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    input_schema: InputSchema<'a>,
}

#[derive(Serialize)]
struct InputSchema<'a> {
    json: RawJson<'a>,
}

#[derive(Serialize, Default)]
struct Empty {}

#[derive(Serialize)]
struct Named {
    name: String,
}

/// `ToolChoice`: a union of `auto`, `any` and `tool`.
#[derive(Serialize)]
struct ToolChoiceOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    auto: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    any: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<Named>,
}

/// Translate `body` (an OpenAI chat request). The model goes in the URL.
pub fn translate(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let req: ChatRequest<'_> =
        utf8(body).and_then(parse).map_err(|e| TranslateError::new(format!("Invalid chat request: {e}"), None))?;
    let out = build(&req)?;
    let mut buf = Vec::with_capacity(body.len() + 128);
    crate::translate::write_json(&mut buf, &out);
    Ok(buf)
}

fn refuse(i: usize, what: &str) -> TranslateError {
    TranslateError::new(
        format!("Invalid 'messages[{i}]': {what} is not supported by this model's Bedrock deployment."),
        Some("messages"),
    )
}

fn build<'a>(req: &'a ChatRequest<'a>) -> Result<ConverseRequest<'a>, TranslateError> {
    if req.n.unwrap_or(1) > 1 {
        return Err(TranslateError::new(
            "'n' greater than 1 is not supported by this model's Bedrock deployment.",
            Some("n"),
        ));
    }
    let mut system: Vec<Block<'a>> = Vec::new();
    let mut turns: Vec<Turn<'a>> = Vec::new();
    let mut documents = 0usize;
    // The id given to the latest legacy `function_call`, for the `function` message answering it.
    let mut legacy_call: Option<String> = None;
    let mut tool_blocks = false;
    for (i, m) in req.messages.iter().enumerate() {
        let (role, mut blocks) = match &*m.role {
            "system" | "developer" => {
                let mut blocks = parts(m, i, &mut documents)?;
                blocks.retain(|b| b.text.is_some() || b.cache_point.is_some());
                if m.cache_control.is_some() && !blocks.is_empty() {
                    blocks.push(Block::cache_point());
                }
                system.extend(blocks);
                continue;
            }
            "user" => ("user", parts(m, i, &mut documents)?),
            "assistant" => {
                let mut blocks = parts(m, i, &mut documents)?;
                for tc in m.tool_calls.iter().flatten() {
                    blocks.push(tool_use(Cow::Borrowed(&tc.id), &tc.function.name, &tc.function.arguments, i)?);
                }
                if let Some(fc) = &m.function_call {
                    let id = format!("call_legacy_{i}");
                    blocks.push(tool_use(Cow::Owned(id.clone()), &fc.name, &fc.arguments, i)?);
                    legacy_call = Some(id);
                }
                ("assistant", blocks)
            }
            "tool" | "function" => {
                let id = m.answered_call(i, legacy_call.as_deref())?;
                let result = ToolResult { tool_use_id: id, content: vec![ResultText { text: m.text() }] };
                ("user", vec![Block { tool_result: Some(result), ..Block::default() }])
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
        tool_blocks |= blocks.iter().any(|b| b.tool_use.is_some() || b.tool_result.is_some());
        if m.cache_control.is_some() && !blocks.is_empty() {
            blocks.push(Block::cache_point());
        }
        match turns.last_mut() {
            Some(t) if t.role == role => t.content.append(&mut blocks),
            _ if blocks.is_empty() => {}
            _ => turns.push(Turn { role, content: blocks }),
        }
    }

    let mut tool_config = tool_config(req, tool_blocks)?;
    if tool_blocks && tool_config.is_none() {
        // Bedrock accepts tool blocks only with the tools declared: declare
        // the ones the conversation used, taking any input.
        let mut names: Vec<&'a str> = Vec::new();
        for b in turns.iter().flat_map(|t| t.content.iter()) {
            if let Some(tu) = &b.tool_use
                && let Cow::Borrowed(name) = tu.name
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
        let tools = names
            .into_iter()
            .map(|name| ToolOut {
                tool_spec: Some(ToolSpec { name: Cow::Borrowed(name), description: None, input_schema: open_schema() }),
                cache_point: None,
            })
            .collect();
        tool_config = Some(ToolConfig { tools, tool_choice: None });
    }
    let inference_config = InferenceConfig {
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        stop_sequences: match &req.stop {
            None => Vec::new(),
            Some(StrOrVec::Str(s)) => vec![Cow::Borrowed(&**s)],
            Some(StrOrVec::Vec(v)) => v.iter().map(|s| Cow::Borrowed(&**s)).collect(),
        },
    };
    Ok(ConverseRequest { messages: turns, system, inference_config, tool_config })
}

fn tool_config<'a>(req: &'a ChatRequest<'a>, tool_blocks: bool) -> Result<Option<ToolConfig<'a>>, TranslateError> {
    let mut tools = Vec::new();
    for t in req.tools.iter().flatten() {
        if t.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(TranslateError::new(
                format!(
                    "Tool type '{}' is not supported by this model's Bedrock deployment.",
                    t.kind.as_deref().unwrap_or("")
                ),
                Some("tools"),
            ));
        }
        let Some(f) = &t.function else {
            return Err(TranslateError::new("Invalid 'tools': each tool needs a 'function'.", Some("tools")));
        };
        tools.push(ToolOut { tool_spec: Some(spec(f)), cache_point: None });
        if t.cache_control.is_some() {
            tools.push(ToolOut { tool_spec: None, cache_point: Some(CachePoint { kind: "default" }) });
        }
    }
    for f in req.functions.iter().flatten() {
        tools.push(ToolOut { tool_spec: Some(spec(f)), cache_point: None });
    }
    if tools.is_empty() {
        return Ok(None);
    }
    let choice = match &req.tool_choice {
        None => None,
        Some(raw) => Some(ToolChoice::read(raw)?),
    };
    let tool_choice = match choice {
        Some(ToolChoice::None) if !tool_blocks => return Ok(None),
        None | Some(ToolChoice::None) => None,
        Some(ToolChoice::Auto) => Some(ToolChoiceOut { auto: Some(Empty {}), any: None, tool: None }),
        Some(ToolChoice::Required) => Some(ToolChoiceOut { auto: None, any: Some(Empty {}), tool: None }),
        Some(ToolChoice::Function(name)) => Some(ToolChoiceOut { auto: None, any: None, tool: Some(Named { name }) }),
    };
    Ok(Some(ToolConfig { tools, tool_choice }))
}

fn spec<'a>(f: &'a FunctionDef<'a>) -> ToolSpec<'a> {
    use sonic_rs::JsonValueTrait;
    let schema = f.parameters.as_ref().filter(|p| p.is_object()).cloned().map(RawJson::Borrowed);
    ToolSpec {
        name: Cow::Borrowed(&f.name),
        description: f.description.as_deref().map(Cow::Borrowed),
        // Bedrock requires a schema; a function without parameters takes none.
        input_schema: schema.map_or_else(open_schema, |json| InputSchema { json }),
    }
}

fn open_schema<'a>() -> InputSchema<'a> {
    let json = RawJson::parse_owned(r#"{"type":"object","properties":{}}"#).unwrap_or_else(RawJson::empty_object);
    InputSchema { json }
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
    Ok(Block { tool_use: Some(ToolUse { tool_use_id: id, name: Cow::Borrowed(name), input }), ..Block::default() })
}

fn parts<'a>(m: &'a Message<'a>, i: usize, documents: &mut usize) -> Result<Vec<Block<'a>>, TranslateError> {
    match &m.content {
        None => Ok(Vec::new()),
        Some(StrOrVec::Str(s)) if s.is_empty() => Ok(Vec::new()),
        Some(StrOrVec::Str(s)) => Ok(vec![Block::text(Cow::Borrowed(s))]),
        Some(StrOrVec::Vec(ps)) => {
            let mut out = Vec::with_capacity(ps.len());
            for p in ps {
                if let Some(b) = part(p, i, documents)? {
                    out.push(b);
                    if p.cache_control.is_some() {
                        out.push(Block::cache_point());
                    }
                }
            }
            Ok(out)
        }
    }
}

fn part<'a>(p: &'a OaPart<'a>, i: usize, documents: &mut usize) -> Result<Option<Block<'a>>, TranslateError> {
    Ok(Some(match &*p.kind {
        "text" => match p.text.as_deref() {
            Some(t) if !t.is_empty() => Block::text(Cow::Borrowed(t)),
            _ => return Ok(None),
        },
        "refusal" => match p.refusal.as_deref() {
            Some(r) if !r.is_empty() => Block::text(Cow::Borrowed(r)),
            _ => return Ok(None),
        },
        "image_url" => {
            let url = p.image_url.as_ref().map(|u| u.url()).unwrap_or("");
            let source = match (split_data_url(url), url.starts_with("s3://")) {
                (Some((mime, data)), _) => {
                    (image_format(mime), Source { bytes: Some(Cow::Borrowed(data)), s3_location: None })
                }
                (None, true) => (
                    image_format(guess_mime(url)),
                    Source { bytes: None, s3_location: Some(S3Location { uri: Cow::Borrowed(url) }) },
                ),
                (None, false) => return Err(refuse(i, "an image by http(s) URL (send it as a base64 data: URL)")),
            };
            let Some(format) = source.0 else { return Err(refuse(i, "an image that is not png, jpeg, gif or webp")) };
            Block { image: Some(Media { format, source: source.1 }), ..Block::default() }
        }
        "file" => {
            let Some(f) = &p.file else { return Err(refuse(i, "a file part without 'file'")) };
            let Some((mime, data)) = f.file_data.as_deref().and_then(split_data_url) else {
                return Err(refuse(i, "a file part without inline 'file_data'"));
            };
            let Some(format) = document_format(mime) else {
                return Err(refuse(i, &format!("a document of type '{mime}'")));
            };
            *documents += 1;
            let name = document_name(f.filename.as_deref(), *documents);
            let source = Source { bytes: Some(Cow::Borrowed(data)), s3_location: None };
            Block { document: Some(Document { format, name, source }), ..Block::default() }
        }
        other => return Err(refuse(i, &format!("content part type '{other}'"))),
    }))
}
