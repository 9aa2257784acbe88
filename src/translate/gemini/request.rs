//! An OpenAI chat request as a Gemini `GenerateContentRequest`.
//!
//! - `system` / `developer` messages become `systemInstruction`;
//! - `user` → role `user`, `assistant` → role `model`; consecutive messages
//!   of one role are merged;
//! - text parts → `text`; `image_url` / `file` parts with `data:` URLs →
//!   `inlineData`; other image URLs → `fileData` (the MIME type guessed from
//!   the extension);
//! - assistant `tool_calls` → `functionCall` parts (arguments parsed into
//!   `args`); `tool` messages → `functionResponse` parts in a `user` turn,
//!   named after the call they answer, with the tool's text as
//!   `response.output`;
//! - `tools` → one `functionDeclarations` tool, each schema passed as
//!   `parametersJsonSchema` (full JSON Schema, no rewriting); `tool_choice`
//!   → `toolConfig.functionCallingConfig` (`none` → `NONE`, `auto` → `AUTO`,
//!   `required` → `ANY`, a named function → `ANY` with `allowedFunctionNames`);
//! - `temperature`, `top_p`, `max_completion_tokens`/`max_tokens`
//!   (`maxOutputTokens`), `stop` (`stopSequences`), `n` (`candidateCount`),
//!   `seed`, penalties, `response_format` (`json_object` / `json_schema` →
//!   `responseMimeType: application/json` and `responseJsonSchema`).
//!
//! Refused with 400: audio input, `file_id` references, a tool message whose
//! call is not in the conversation.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;

use super::{Blob, Content, FileData, FunctionCall, FunctionResponse, Part};
use crate::translate::anthropic::RawJson;
use crate::translate::openai::{ChatRequest, Message, Part as OaPart, ToolChoice};
use crate::translate::{StrOrVec, TranslateError, parse, split_data_url, utf8};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentRequest<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolOut<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionDeclaration<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<RawJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig {
    function_calling_config: FunctionCallingConfig,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig {
    mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_function_names: Vec<String>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<RawJson<'a>>,
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.candidate_count.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
    }
}

/// Translate `body` (an OpenAI chat request). The model goes in the URL, not the body.
pub fn translate(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let req: ChatRequest<'_> =
        utf8(body).and_then(parse).map_err(|e| TranslateError::new(format!("Invalid chat request: {e}"), None))?;
    let out = build(&req)?;
    let mut buf = Vec::with_capacity(body.len() + 128);
    crate::translate::write_json(&mut buf, &out);
    Ok(buf)
}

fn build<'a>(req: &'a ChatRequest<'a>) -> Result<GenerateContentRequest<'a>, TranslateError> {
    let mut system: Vec<Part<'a>> = Vec::new();
    let mut contents: Vec<Content<'a>> = Vec::new();
    // Tool call id → function name, from the assistant messages seen so far.
    let mut names: HashMap<&'a str, &'a str> = HashMap::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, parts) = match &*m.role {
            "system" | "developer" => {
                system.extend(parts(m, i)?);
                continue;
            }
            "user" => ("user", parts(m, i)?),
            "assistant" => {
                let mut p = parts(m, i)?;
                p.retain(|p| p.text.as_deref().is_none_or(|t| !t.is_empty()));
                for tc in m.tool_calls.iter().flatten() {
                    names.insert(&tc.id, &tc.function.name);
                    p.push(Part {
                        function_call: Some(call(&tc.function.name, &tc.function.arguments, i)?),
                        ..Part::default()
                    });
                }
                if let Some(fc) = &m.function_call {
                    names.insert("", &fc.name);
                    p.push(Part { function_call: Some(call(&fc.name, &fc.arguments, i)?), ..Part::default() });
                }
                ("model", p)
            }
            "tool" | "function" => {
                let id = m.tool_call_id.as_deref().unwrap_or("");
                let name = match (&*m.role, names.get(id), &m.name) {
                    (_, Some(n), _) => *n,
                    ("function", None, Some(n)) => &**n,
                    _ => {
                        return Err(TranslateError::new(
                            format!(
                                "Invalid 'messages[{i}]': tool_call_id '{id}' does not match a tool call of an earlier assistant message."
                            ),
                            Some("messages"),
                        ));
                    }
                };
                let text = m.text();
                let mut response = Vec::with_capacity(text.len() + 16);
                crate::translate::write_json(&mut response, &Output { output: &text });
                let response = String::from_utf8(response).ok().and_then(|s| RawJson::parse_owned(&s));
                let response = response.unwrap_or_else(RawJson::empty_object);
                let part = Part {
                    function_response: Some(FunctionResponse { name: Cow::Borrowed(name), response }),
                    ..Part::default()
                };
                ("user", vec![part])
            }
            other => {
                return Err(TranslateError::new(format!("Invalid 'messages[{i}].role': '{other}'."), Some("messages")));
            }
        };
        match contents.last_mut() {
            Some(c) if c.role.as_deref() == Some(role) => c.parts.extend(parts),
            _ => contents.push(Content { role: Some(Cow::Borrowed(role)), parts }),
        }
    }

    let mut decls = Vec::new();
    for t in req.tools.iter().flatten() {
        if t.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(TranslateError::new(
                format!(
                    "Tool type '{}' is not supported by this model's Gemini deployment.",
                    t.kind.as_deref().unwrap_or("")
                ),
                Some("tools"),
            ));
        }
        if let Some(f) = &t.function {
            decls.push(declaration(f));
        }
    }
    for f in req.functions.iter().flatten() {
        decls.push(declaration(f));
    }
    let tool_config = match (&req.tool_choice, decls.is_empty()) {
        (_, true) | (None, _) => None,
        (Some(raw), false) => {
            let (mode, names) = match ToolChoice::read(raw)? {
                ToolChoice::None => ("NONE", vec![]),
                ToolChoice::Auto => ("AUTO", vec![]),
                ToolChoice::Required => ("ANY", vec![]),
                ToolChoice::Function(n) => ("ANY", vec![n]),
            };
            Some(ToolConfig { function_calling_config: FunctionCallingConfig { mode, allowed_function_names: names } })
        }
    };
    let tools = if decls.is_empty() { Vec::new() } else { vec![ToolOut { function_declarations: decls }] };

    let (response_mime_type, response_json_schema) = match &req.response_format {
        Some(f) if f.kind == "json_object" => (Some("application/json"), None),
        Some(f) if f.kind == "json_schema" => {
            (Some("application/json"), f.json_schema.as_ref().and_then(|s| s.schema.clone()).map(RawJson::Borrowed))
        }
        _ => (None, None),
    };
    let generation_config = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.max_completion_tokens.or(req.max_tokens),
        stop_sequences: match &req.stop {
            None => Vec::new(),
            Some(StrOrVec::Str(s)) => vec![Cow::Borrowed(&**s)],
            Some(StrOrVec::Vec(v)) => v.iter().map(|s| Cow::Borrowed(&**s)).collect(),
        },
        candidate_count: req.n.filter(|n| *n > 1),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        response_mime_type,
        response_json_schema,
    };
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then(|| Content { role: None, parts: system }),
        tools,
        tool_config,
        generation_config,
    })
}

#[derive(Serialize)]
struct Output<'s> {
    output: &'s str,
}

fn declaration<'a>(f: &'a crate::translate::openai::FunctionDef<'a>) -> FunctionDeclaration<'a> {
    use sonic_rs::JsonValueTrait;
    FunctionDeclaration {
        name: Cow::Borrowed(&f.name),
        description: f.description.as_deref().map(Cow::Borrowed),
        parameters_json_schema: f.parameters.as_ref().filter(|p| p.is_object()).cloned().map(RawJson::Borrowed),
    }
}

fn call<'a>(name: &'a str, arguments: &str, i: usize) -> Result<FunctionCall<'a>, TranslateError> {
    let args = if arguments.trim().is_empty() {
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
    Ok(FunctionCall { id: None, name: Cow::Borrowed(name), args: Some(args) })
}

fn parts<'a>(m: &'a Message<'a>, i: usize) -> Result<Vec<Part<'a>>, TranslateError> {
    match &m.content {
        None => Ok(Vec::new()),
        Some(StrOrVec::Str(s)) => Ok(vec![Part { text: Some(Cow::Borrowed(s)), ..Part::default() }]),
        Some(StrOrVec::Vec(ps)) => ps.iter().filter_map(|p| part(p, i).transpose()).collect(),
    }
}

fn part<'a>(p: &'a OaPart<'a>, i: usize) -> Result<Option<Part<'a>>, TranslateError> {
    let unsupported = |what: &str| {
        TranslateError::new(
            format!("Invalid 'messages[{i}]': {what} is not supported by this model's Gemini deployment."),
            Some("messages"),
        )
    };
    Ok(Some(match &*p.kind {
        "text" => Part { text: Some(Cow::Borrowed(p.text.as_deref().unwrap_or(""))), ..Part::default() },
        "refusal" => match &p.refusal {
            Some(r) => Part { text: Some(Cow::Borrowed(r)), ..Part::default() },
            None => return Ok(None),
        },
        "image_url" => {
            let url = p.image_url.as_ref().map(|u| u.url()).unwrap_or("");
            match split_data_url(url) {
                Some((mime, data)) => Part {
                    inline_data: Some(Blob { mime_type: Cow::Borrowed(mime), data: Cow::Borrowed(data) }),
                    ..Part::default()
                },
                None if url.starts_with("http://") || url.starts_with("https://") || url.starts_with("gs://") => Part {
                    file_data: Some(FileData {
                        mime_type: Some(Cow::Borrowed(guess_image_type(url))),
                        file_uri: Cow::Borrowed(url),
                    }),
                    ..Part::default()
                },
                None => return Err(unsupported("an image that is neither a URL nor a base64 data: URL")),
            }
        }
        "file" => match p.file.as_ref().and_then(|f| f.file_data.as_deref()).and_then(split_data_url) {
            Some((mime, data)) => Part {
                inline_data: Some(Blob { mime_type: Cow::Borrowed(mime), data: Cow::Borrowed(data) }),
                ..Part::default()
            },
            None => return Err(unsupported("a file part without inline 'file_data'")),
        },
        other => return Err(unsupported(&format!("content part type '{other}'"))),
    }))
}

fn guess_image_type(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url).to_ascii_lowercase();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("heic") => "image/heic",
        Some("heif") => "image/heif",
        _ => "image/jpeg",
    }
}
