//! Responses tools, `tool_choice` and `text.format` in chat's shapes.
//!
//! Responses function tools are flat (`{"type": "function", "name": ..,
//! "parameters": ..}`); chat nests them under `function`. A `namespace`
//! tool's functions are flattened to `{namespace}__{name}`, and a `custom`
//! (free-form) tool becomes a function taking one string, `input` (see
//! [`super::ToolNames`]). Hosted tools (`web_search`, `file_search`,
//! `code_interpreter`, `image_generation`, `mcp`, `computer_use_preview`,
//! `local_shell`, `shell`, `apply_patch`, ...) are dropped: only OpenAI
//! runs them, and agents send some on every turn whether or not they are
//! used (Codex always sends `web_search`), so refusing them would refuse
//! every agent request. A `tool_choice` that *forces* a hosted tool is
//! refused, as the client asked for something this deployment cannot do.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sonic_rs::{JsonValueTrait, LazyValue};

use super::ToolNames;
use super::read::Text;
use crate::translate::TranslateError;

#[derive(Debug, Deserialize)]
pub struct ToolIn<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    description: Text<'a>,
    #[serde(borrow, default)]
    parameters: Option<LazyValue<'a>>,
    #[serde(default)]
    strict: Option<bool>,
    /// The members of a `namespace` tool.
    #[serde(borrow, default)]
    tools: Option<Vec<ToolIn<'a>>>,
}

#[derive(Debug, Serialize)]
pub struct ToolOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Debug, Serialize)]
struct FunctionOut<'a> {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    parameters: Params<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Params<'a> {
    Raw(LazyValue<'a>),
    Fixed(FixedSchema),
}

/// `{"type": "object", "properties": {..}}` for tools that declare no
/// parameters, and the one-string schema of a custom tool.
#[derive(Debug, Serialize)]
struct FixedSchema {
    #[serde(rename = "type")]
    kind: &'static str,
    properties: InputProperty,
    #[serde(skip_serializing_if = "Option::is_none")]
    required: Option<[&'static str; 1]>,
}

#[derive(Debug, Serialize)]
struct InputProperty {
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<StringSchema>,
}

#[derive(Debug, Serialize)]
struct StringSchema {
    #[serde(rename = "type")]
    kind: &'static str,
}

fn no_params() -> Params<'static> {
    Params::Fixed(FixedSchema { kind: "object", properties: InputProperty { input: None }, required: None })
}

fn custom_params() -> Params<'static> {
    Params::Fixed(FixedSchema {
        kind: "object",
        properties: InputProperty { input: Some(StringSchema { kind: "string" }) },
        required: Some(["input"]),
    })
}

/// Chat tools for `tools`, filling `names` with what must map back.
pub fn tools<'a>(tools: &'a [ToolIn<'a>], names: &mut ToolNames) -> Vec<ToolOut<'a>> {
    let mut out = Vec::with_capacity(tools.len());
    for t in tools {
        match t.kind.as_deref().unwrap_or("function") {
            "function" | "custom" => push(&mut out, t, None, names),
            "namespace" => {
                let ns = t.name.as_deref().unwrap_or("");
                for inner in t.tools.iter().flatten() {
                    if matches!(inner.kind.as_deref().unwrap_or("function"), "function" | "custom") {
                        push(&mut out, inner, Some(ns), names);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn push<'a>(out: &mut Vec<ToolOut<'a>>, t: &'a ToolIn<'a>, namespace: Option<&str>, names: &mut ToolNames) {
    let Some(name) = t.name.as_deref() else { return };
    let custom = t.kind.as_deref() == Some("custom");
    let parameters = match (&t.parameters, custom) {
        (_, true) => custom_params(),
        (Some(p), false) if p.is_object() => Params::Raw(p.clone()),
        _ => no_params(),
    };
    out.push(ToolOut {
        kind: "function",
        function: FunctionOut {
            name: names.add(namespace, name, custom),
            description: t.description.as_deref().map(Cow::Borrowed),
            parameters,
            strict: if custom { None } else { t.strict },
        },
    });
}

/// Chat `tool_choice`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ToolChoiceOut {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: Named,
    },
}

#[derive(Debug, Serialize)]
pub struct Named {
    name: String,
}

/// Read a Responses `tool_choice`: `"none" | "auto" | "required"`,
/// `{"type": "function" | "custom", "name": ..}` (a namespaced function
/// names its `namespace` too), `{"type": "allowed_tools", "mode": ..}`
/// (sent as its mode: chat servers have no allow-list), or a hosted tool
/// type (refused).
pub fn tool_choice(raw: &LazyValue<'_>, names: &ToolNames) -> Result<Option<ToolChoiceOut>, TranslateError> {
    let bad = |what: String| TranslateError::new(what, Some("tool_choice"));
    if raw.is_null() {
        return Ok(None);
    }
    if let Some(s) = raw.as_str() {
        return match s {
            "none" => Ok(Some(ToolChoiceOut::Mode("none"))),
            "auto" => Ok(Some(ToolChoiceOut::Mode("auto"))),
            "required" => Ok(Some(ToolChoiceOut::Mode("required"))),
            other => Err(bad(format!(
                "Invalid 'tool_choice': '{other}'. Expected \"none\", \"auto\", \"required\" or an object."
            ))),
        };
    }
    let text = raw.as_raw_str();
    let field = |k: &str| sonic_rs::get(text, [k]).ok().and_then(|v| v.as_str().map(str::to_owned));
    let kind = field("type").unwrap_or_default();
    match kind.as_str() {
        "function" | "custom" => {
            let name =
                field("name").ok_or_else(|| bad("Invalid 'tool_choice': a function choice needs a 'name'.".into()))?;
            let namespace = field("namespace");
            Ok(Some(ToolChoiceOut::Named {
                kind: "function",
                function: Named { name: names.chat_name(namespace.as_deref(), &name) },
            }))
        }
        "allowed_tools" => Ok(Some(ToolChoiceOut::Mode(match field("mode").as_deref() {
            Some("required") => "required",
            _ => "auto",
        }))),
        "" => Err(bad("Invalid 'tool_choice': expected a string or an object with a 'type'.".into())),
        hosted => Err(bad(format!(
            "tool_choice: the hosted tool '{hosted}' runs only on a deployment that serves the Responses API; this model's deployment serves Chat Completions."
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub struct TextIn<'a> {
    #[serde(borrow, default)]
    format: Option<FormatIn<'a>>,
    #[serde(borrow, default)]
    pub verbosity: Text<'a>,
}

#[derive(Debug, Deserialize)]
struct FormatIn<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    description: Text<'a>,
    #[serde(borrow, default)]
    schema: Option<LazyValue<'a>>,
    #[serde(default)]
    strict: Option<bool>,
}

/// Chat `response_format`.
#[derive(Debug, Serialize)]
pub struct ResponseFormatOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    json_schema: Option<JsonSchemaOut<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonSchemaOut<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<LazyValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

/// `text.format` → `response_format` (`text` needs none).
pub fn response_format<'a>(text: &'a TextIn<'a>) -> Result<Option<ResponseFormatOut<'a>>, TranslateError> {
    let Some(f) = &text.format else { return Ok(None) };
    match f.kind.as_deref().unwrap_or("text") {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormatOut { kind: "json_object", json_schema: None })),
        "json_schema" => Ok(Some(ResponseFormatOut {
            kind: "json_schema",
            json_schema: Some(JsonSchemaOut {
                name: Cow::Borrowed(f.name.as_deref().unwrap_or("response")),
                description: f.description.as_deref().map(Cow::Borrowed),
                schema: f.schema.clone(),
                strict: f.strict,
            }),
        })),
        other => Err(TranslateError::new(
            format!("Invalid 'text.format.type': '{other}'. Expected 'text', 'json_object' or 'json_schema'."),
            Some("text.format"),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct ReasoningIn<'a> {
    #[serde(borrow, default)]
    pub effort: Text<'a>,
}
