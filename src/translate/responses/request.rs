//! A Responses request as a chat request.
//!
//! `input` (a string, or items: see [`super::input`]) after the stored
//! items of the conversation it continues; `instructions` → the leading
//! system message; tools, `tool_choice` and `text.format` → see
//! [`super::tools`]; `reasoning.effort` → `reasoning_effort`;
//! `text.verbosity` → `verbosity`; `max_output_tokens` → `max_tokens` (or
//! `max_completion_tokens`, [`Options`]); `temperature`, `top_p`,
//! `parallel_tool_calls` (only with tools: OpenAI refuses it alone);
//! `user` (or `safety_identifier`) → `user`; `stream` with
//! `stream_options.include_usage` so usage comes back.
//!
//! Not sent: `metadata` (chat accepts it only with chat's own `store`,
//! which means something else) and `store` itself, `include`,
//! `prompt_cache_key`, `service_tier`, `truncation`, `reasoning.summary`;
//! the request members a Response repeats back are kept in [`Echo`].
//! Refused with 400: `background`, `conversation` and `prompt` (templates
//! stored at OpenAI), which need state only OpenAI has.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sonic_rs::{JsonValueTrait, LazyValue, OwnedLazyValue};

use super::input::{self, Item, MessageOut};
use super::read::Text;
use super::tools::{self, ReasoningIn, ResponseFormatOut, TextIn, ToolChoiceOut, ToolIn, ToolOut};
use super::{Context, Echo, ToolNames};
use crate::translate::{TranslateError, parse, utf8};

/// Which chat member carries the output limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_tokens`: what every chat server accepts (vLLM, Ollama, ...).
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: OpenAI's newer name, which its reasoning
    /// models require.
    MaxCompletionTokens,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub max_tokens_field: MaxTokensField,
    /// Send `reasoning.effort` on as `reasoning_effort`. Only for models
    /// known to reason: OpenAI answers 400 to it on the others, and agents
    /// send an effort whatever the model (the deployment's `reasoning`).
    pub reasoning_effort: bool,
}

/// A translated request.
#[derive(Debug)]
pub struct Translated {
    /// The chat request body.
    pub body: Vec<u8>,
    pub stream: bool,
    pub echo: Echo,
    pub tools: ToolNames,
    /// This turn's input as a JSON array of items (a string input becomes
    /// one user message), for [`super::history::conversation`].
    pub input_items: Vec<u8>,
}

impl Translated {
    /// The context the answer translators need, with the caller's id and clock.
    pub fn context(&self, id: String, created_at: u64) -> Context {
        Context { id, created_at, echo: self.echo.clone(), tools: self.tools.clone() }
    }
}

#[derive(Deserialize)]
struct RequestIn<'a> {
    #[serde(borrow, default)]
    model: Text<'a>,
    #[serde(borrow, default)]
    input: Option<LazyValue<'a>>,
    #[serde(borrow, default)]
    instructions: Text<'a>,
    #[serde(borrow, default)]
    tools: Option<LazyValue<'a>>,
    #[serde(borrow, default)]
    tool_choice: Option<LazyValue<'a>>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(borrow, default)]
    reasoning: Option<LazyValue<'a>>,
    #[serde(borrow, default)]
    text: Option<LazyValue<'a>>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(borrow, default)]
    user: Text<'a>,
    #[serde(borrow, default)]
    safety_identifier: Text<'a>,
    #[serde(borrow, default)]
    metadata: Option<LazyValue<'a>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(borrow, default)]
    previous_response_id: Text<'a>,
    #[serde(borrow, default)]
    truncation: Text<'a>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(borrow, default)]
    conversation: Option<LazyValue<'a>>,
    #[serde(borrow, default)]
    prompt: Option<LazyValue<'a>>,
}

#[derive(Serialize)]
struct ChatOut<'a> {
    model: &'a str,
    messages: Vec<MessageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
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
    tool_choice: Option<ToolChoiceOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormatOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verbosity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct StringInputItem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: [InputText<'a>; 1],
}

#[derive(Serialize)]
struct InputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// This turn's input as a JSON array of items: a string input becomes one
/// user message.
fn items_of(text: Option<&str>, raw: Option<&str>) -> Vec<u8> {
    match (text, raw) {
        (Some(t), _) => {
            let mut b = Vec::with_capacity(t.len() + 80);
            let item =
                StringInputItem { kind: "message", role: "user", content: [InputText { kind: "input_text", text: t }] };
            crate::translate::write_json(&mut b, &[item]);
            b
        }
        (None, Some(raw)) => raw.as_bytes().to_vec(),
        (None, None) => b"[]".to_vec(),
    }
}

/// The `input` of a Responses request `body` as a JSON array of items (see
/// [`Translated::input_items`]), without translating the rest; `None` when
/// the body is not a JSON object or `input` is neither a string nor an array.
pub fn input_items(body: &[u8]) -> Option<Vec<u8>> {
    input_items_of(utf8(body).ok()?)
}

/// [`input_items`] of text already checked.
pub(super) fn input_items_of(body: &str) -> Option<Vec<u8>> {
    if crate::json::nesting_exceeds(body.as_bytes(), crate::translate::MAX_DEPTH) {
        return None;
    }
    match sonic_rs::get(body, ["input"]) {
        Ok(v) if v.is_null() => Some(b"[]".to_vec()),
        Ok(v) if v.is_str() => Some(items_of(v.as_str(), None)),
        Ok(v) if v.is_array() => Some(compact(v.as_raw_str()).as_bytes().to_vec()),
        Ok(_) => None,
        Err(e) if e.is_not_found() => Some(b"[]".to_vec()),
        Err(_) => None,
    }
}

fn invalid(e: String) -> TranslateError {
    TranslateError::new(format!("Invalid Responses request: {e}"), None)
}

fn refuse(what: &str, param: &'static str) -> TranslateError {
    TranslateError::new(
        format!(
            "'{what}' needs state kept by OpenAI; this model's deployment serves Chat Completions. {}",
            match param {
                "conversation" => "Use previous_response_id to continue a conversation.",
                "prompt" => "Send the prompt's text as instructions and input.",
                _ => "Send the request without it.",
            }
        ),
        Some(param),
    )
}

/// A request member kept for the echo, as compact JSON text: the
/// client's raw text may hold line breaks (pretty-printed JSON), and an
/// SSE `data:` line ends at the first one.
fn owned(v: &Option<LazyValue<'_>>) -> Option<OwnedLazyValue> {
    let raw = v.as_ref().filter(|v| !v.is_null())?.as_raw_str();
    sonic_rs::from_str::<OwnedLazyValue>(&compact(raw)).ok()
}

/// `raw` JSON without the whitespace between tokens, when it has line
/// breaks (inside strings JSON allows only escaped ones, so every raw
/// `\n`/`\r` is between tokens).
fn compact(raw: &str) -> Cow<'_, str> {
    if memchr::memchr2(b'\n', b'\r', raw.as_bytes()).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Translate `body` (a Responses request) into a chat request for the
/// upstream model `model`. `history` is the stored conversation of
/// `previous_response_id` (a JSON array of items, as
/// [`super::history::conversation`] built it), placed before `input`.
pub fn translate(
    body: &[u8],
    model: &str,
    history: Option<&[u8]>,
    opts: &Options,
) -> Result<Translated, TranslateError> {
    let req: RequestIn<'_> = utf8(body).and_then(parse).map_err(invalid)?;
    if req.background == Some(true) {
        return Err(refuse("background", "background"));
    }
    if req.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(refuse("conversation", "conversation"));
    }
    if req.prompt.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(refuse("prompt", "prompt"));
    }

    // Items: the stored conversation, then this turn's input.
    let stored: Vec<Item<'_>> = match history {
        Some(h) => utf8(h).and_then(parse).map_err(|e| invalid(format!("stored conversation: {e}")))?,
        None => Vec::new(),
    };
    let raw_input = req.input.as_ref().filter(|v| !v.is_null());
    let input_text = raw_input.and_then(|v| v.as_str());
    let input_raw = raw_input.map(|v| v.as_raw_str());
    let listed: Vec<Item<'_>> = match (input_text, input_raw) {
        (Some(_), _) | (None, None) => Vec::new(),
        (None, Some(raw)) => parse(raw).map_err(|e| invalid(format!("input: {e}")))?,
    };
    let single = input_text.map(Item::user_text);
    let mut items: Vec<&Item<'_>> = stored.iter().collect();
    items.extend(single.iter());
    items.extend(listed.iter());
    if items.is_empty() {
        return Err(TranslateError::new("Missing required parameter: 'input'.", Some("input")));
    }

    let tool_list: Vec<ToolIn<'_>> = match req.tools.as_ref().filter(|v| !v.is_null()) {
        Some(raw) => parse(raw.as_raw_str()).map_err(|e| invalid(format!("tools: {e}")))?,
        None => Vec::new(),
    };
    let mut names = ToolNames::default();
    let chat_tools = tools::tools(&tool_list, &mut names);
    let tool_choice = match &req.tool_choice {
        Some(raw) => tools::tool_choice(raw, &names)?,
        None => None,
    };
    let text: Option<TextIn<'_>> = match req.text.as_ref().filter(|v| !v.is_null()) {
        Some(raw) => Some(parse(raw.as_raw_str()).map_err(|e| invalid(format!("text: {e}")))?),
        None => None,
    };
    let response_format = match &text {
        Some(t) => tools::response_format(t)?,
        None => None,
    };
    let reasoning: Option<ReasoningIn<'_>> = match req.reasoning.as_ref().filter(|v| !v.is_null()) {
        Some(raw) => Some(parse(raw.as_raw_str()).map_err(|e| invalid(format!("reasoning: {e}")))?),
        None => None,
    };

    let messages = input::messages(req.instructions.as_deref(), &items, &names)?;
    let stream = req.stream.unwrap_or(false);
    let has_tools = !chat_tools.is_empty();
    let (max_tokens, max_completion_tokens) = match opts.max_tokens_field {
        MaxTokensField::MaxTokens => (req.max_output_tokens, None),
        MaxTokensField::MaxCompletionTokens => (None, req.max_output_tokens),
    };
    let out = ChatOut {
        model,
        messages,
        max_tokens,
        max_completion_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stream,
        stream_options: stream.then_some(StreamOptions { include_usage: true }),
        tool_choice: if has_tools { tool_choice } else { None },
        parallel_tool_calls: if has_tools { req.parallel_tool_calls } else { None },
        tools: chat_tools,
        response_format,
        reasoning_effort: reasoning.as_ref().and_then(|r| r.effort.as_deref()).filter(|_| opts.reasoning_effort),
        verbosity: text.as_ref().and_then(|t| t.verbosity.as_deref()),
        user: req.user.as_deref().or(req.safety_identifier.as_deref()),
    };
    let mut buf = Vec::with_capacity(body.len() / 2 + 256);
    crate::translate::write_json(&mut buf, &out);

    let input_items = items_of(input_text, input_raw);
    let echo = Echo {
        model: req.model.as_deref().unwrap_or(model).to_owned(),
        instructions: req.instructions.as_deref().map(str::to_owned),
        tools: owned(&req.tools),
        tool_choice: owned(&req.tool_choice),
        text: owned(&req.text),
        reasoning: owned(&req.reasoning),
        metadata: owned(&req.metadata),
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.max_output_tokens,
        parallel_tool_calls: req.parallel_tool_calls,
        previous_response_id: req.previous_response_id.as_deref().map(str::to_owned),
        store: req.store,
        user: req.user.as_deref().map(str::to_owned),
        truncation: req.truncation.as_deref().map(str::to_owned),
    };
    Ok(Translated { body: buf, stream, echo, tools: names, input_items })
}

#[cfg(test)]
mod tests {
    use super::super::write;
    use super::*;
    use serde_json::{Value, json};

    fn chat(req: Value) -> Value {
        let t = translate(req.to_string().as_bytes(), "up", None, &Options::default()).unwrap();
        serde_json::from_slice(&t.body).unwrap()
    }

    #[test]
    fn string_input_and_instructions() {
        let v = chat(json!({"model": "m", "instructions": "Be brief.", "input": "Hi", "max_output_tokens": 50}));
        assert_eq!(
            v,
            json!({"model": "up", "max_tokens": 50, "messages": [
                {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})
        );
    }

    #[test]
    fn max_completion_tokens_when_asked() {
        let body = json!({"model": "m", "input": "Hi", "max_output_tokens": 9}).to_string();
        let opts = Options { max_tokens_field: MaxTokensField::MaxCompletionTokens, ..Options::default() };
        let t = translate(body.as_bytes(), "up", None, &opts).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["max_completion_tokens"], 9);
        assert!(v.get("max_tokens").is_none());
    }

    #[test]
    fn history_goes_first_and_input_is_kept_for_storage() {
        let history = json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
             "content": [{"type": "output_text", "text": "b", "annotations": []}]}]);
        let body = json!({"model": "m", "input": "c", "previous_response_id": "resp_1", "stream": true}).to_string();
        let h = history.to_string();
        let t = translate(body.as_bytes(), "up", Some(h.as_bytes()), &Options::default()).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        let roles: Vec<&str> = v["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(v["stream_options"]["include_usage"], true);
        let stored: Value = serde_json::from_slice(&t.input_items).unwrap();
        assert_eq!(
            stored,
            json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "c"}]}])
        );
        assert_eq!(t.echo.previous_response_id.as_deref(), Some("resp_1"));
    }

    #[test]
    fn refusals_name_the_parameter() {
        for (req, param) in [
            (json!({"model": "m", "input": "x", "background": true}), "background"),
            (json!({"model": "m", "input": "x", "conversation": "conv_1"}), "conversation"),
            (json!({"model": "m", "input": "x", "prompt": {"id": "pmpt_1"}}), "prompt"),
            (json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}), "input"),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}),
                "tool_choice",
            ),
            (json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}), "text.format"),
            (json!({"model": "m"}), "input"),
        ] {
            let e = translate(req.to_string().as_bytes(), "up", None, &Options::default()).unwrap_err();
            assert_eq!(e.param, Some(param), "{req}: {}", e.message);
        }
        assert!(translate(b"[1]", "up", None, &Options::default()).is_err());
        assert!(translate(b"{\"input\": [1]}", "up", None, &Options::default()).is_err());
    }

    #[test]
    fn echoed_members_are_compact() {
        assert_eq!(compact("{\n  \"a\": [1, 2],\r\n  \"b\": \"x \\\" \\n y\"\n}"), r#"{"a":[1,2],"b":"x \" \n y"}"#);
        assert_eq!(compact(r#"{"a": 1}"#), r#"{"a": 1}"#);
        let pretty = serde_json::to_string_pretty(
            &json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f",
            "description": "two\nlines", "parameters": {"type": "object"}}], "metadata": {"k": "v w"}}),
        )
        .unwrap();
        let t = translate(pretty.as_bytes(), "up", None, &Options::default()).unwrap();
        let ctx = t.context("resp_1".into(), 0);
        let mut out = Vec::new();
        crate::translate::write_json(&mut out, &write::response(&ctx, "", write::Status::InProgress, &[], None));
        assert!(!out.contains(&b'\n'), "{}", String::from_utf8_lossy(&out));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["tools"][0]["description"], "two\nlines");
        assert_eq!(v["metadata"]["k"], "v w");
    }

    #[test]
    fn hosted_tools_are_dropped_and_without_tools_no_choice_is_sent() {
        let v =
            chat(json!({"model": "m", "input": "x", "tools": [{"type": "web_search", "external_web_access": false}],
            "tool_choice": "auto", "parallel_tool_calls": true}));
        assert!(v.get("tools").is_none() && v.get("tool_choice").is_none() && v.get("parallel_tool_calls").is_none());
    }
}
