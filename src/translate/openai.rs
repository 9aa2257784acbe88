//! OpenAI Chat Completions shapes, as read (requests from clients, answers
//! from OpenAI-compatible upstreams) and as written (what translated
//! upstreams' answers become). Strings borrow from the input where they need
//! no unescaping; schemas and other opaque JSON stay raw (`LazyValue`).
//!
//! Reference: https://platform.openai.com/docs/api-reference/chat

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sonic_rs::LazyValue;

use super::StrOrVec;

// ---------------------------------------------------------------- requests

/// `POST /v1/chat/completions` body. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct ChatRequest<'a> {
    #[serde(borrow, default)]
    pub messages: Vec<Message<'a>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub n: Option<u64>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(borrow, default)]
    pub stop: Option<StrOrVec<'a, Cow<'a, str>>>,
    #[serde(borrow, default)]
    pub tools: Option<Vec<Tool<'a>>>,
    #[serde(borrow, default)]
    pub tool_choice: Option<LazyValue<'a>>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(borrow, default)]
    pub user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub response_format: Option<ResponseFormat<'a>>,
    /// Legacy function calling (`functions` / `function_call`).
    #[serde(borrow, default)]
    pub functions: Option<Vec<FunctionDef<'a>>>,
    #[serde(borrow, default)]
    pub function_call: Option<LazyValue<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Message<'a> {
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    #[serde(borrow, default)]
    pub content: Option<StrOrVec<'a, Part<'a>>>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow, default)]
    pub tool_call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub function_call: Option<FunctionCall<'a>>,
    /// Not OpenAI's: a prompt-caching hint some clients put on a message
    /// (passed to Anthropic where configured).
    #[serde(borrow, default)]
    pub cache_control: Option<LazyValue<'a>>,
}

impl<'a> Message<'a> {
    /// The text of a message (a tool result, say): its string, or its text
    /// parts joined.
    pub fn text(&'a self) -> Cow<'a, str> {
        match &self.content {
            None => Cow::Borrowed(""),
            Some(StrOrVec::Str(s)) => Cow::Borrowed(s),
            Some(StrOrVec::Vec(parts)) => {
                Cow::Owned(parts.iter().filter_map(|p| p.text.as_deref()).collect::<Vec<_>>().join(""))
            }
        }
    }

    /// The tool call a `tool` message (its `tool_call_id`) or a legacy
    /// `function` message (the last legacy call, `legacy_call`) answers;
    /// `i` is its index, for the error.
    pub fn answered_call(&'a self, i: usize, legacy_call: Option<&str>) -> Result<Cow<'a, str>, super::TranslateError> {
        match (&*self.role, &self.tool_call_id, legacy_call) {
            ("tool", Some(id), _) => Ok(Cow::Borrowed(&**id)),
            ("function", _, Some(id)) => Ok(Cow::Owned(id.to_owned())),
            _ => Err(super::TranslateError::new(
                format!("Invalid 'messages[{i}]': a '{}' message must answer a tool call ('tool_call_id').", self.role),
                Some("messages"),
            )),
        }
    }
}

/// One content part. Read flat (one struct, `type` as a field) rather than
/// as a tagged enum: tagged enums buffer their input, which loses the raw
/// `LazyValue`s, and flat is faster.
#[derive(Debug, Deserialize)]
pub struct Part<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub image_url: Option<ImageUrl<'a>>,
    #[serde(borrow, default)]
    pub file: Option<FilePart<'a>>,
    #[serde(borrow, default)]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub cache_control: Option<LazyValue<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ImageUrl<'a> {
    Object {
        #[serde(borrow)]
        url: Cow<'a, str>,
    },
    Url(#[serde(borrow)] Cow<'a, str>),
}

impl ImageUrl<'_> {
    pub fn url(&self) -> &str {
        match self {
            ImageUrl::Object { url } | ImageUrl::Url(url) => url,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct FilePart<'a> {
    #[serde(borrow, default)]
    pub file_data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub file_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub filename: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct ToolCall<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub function: FunctionCall<'a>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCall<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    /// JSON text of the arguments, as a string.
    #[serde(borrow, default)]
    pub arguments: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct Tool<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub function: Option<FunctionDef<'a>>,
    #[serde(borrow, default)]
    pub cache_control: Option<LazyValue<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionDef<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub parameters: Option<LazyValue<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub json_schema: Option<JsonSchemaFormat<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct JsonSchemaFormat<'a> {
    #[serde(borrow, default)]
    pub schema: Option<LazyValue<'a>>,
}

/// `tool_choice`, read from its raw JSON: `"none" | "auto" | "required"` or
/// `{"type":"function","function":{"name":..}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

impl ToolChoice {
    pub fn read(raw: &LazyValue<'_>) -> Result<ToolChoice, super::TranslateError> {
        use sonic_rs::JsonValueTrait;
        let bad = || {
            super::TranslateError::new(
                "Invalid 'tool_choice': expected \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}.",
                Some("tool_choice"),
            )
        };
        if let Some(s) = raw.as_str() {
            return match s {
                "none" => Ok(ToolChoice::None),
                "auto" => Ok(ToolChoice::Auto),
                "required" | "any" => Ok(ToolChoice::Required),
                _ => Err(bad()),
            };
        }
        let name = sonic_rs::get(raw.as_raw_str(), ["function", "name"]).map_err(|_| bad())?;
        name.as_str().map(|n| ToolChoice::Function(n.to_owned())).ok_or_else(bad)
    }
}

// ---------------------------------------------------------------- answers

/// `chat.completion`: written for translated upstreams, read for the
/// `/v1/messages` ingress.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChatCompletion<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(borrow, default = "chat_completion")]
    pub object: Cow<'a, str>,
    #[serde(default)]
    pub created: u64,
    #[serde(borrow, default)]
    pub model: Cow<'a, str>,
    #[serde(borrow, default)]
    pub choices: Vec<Choice<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

fn chat_completion() -> Cow<'static, str> {
    Cow::Borrowed("chat.completion")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Choice<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow)]
    pub message: AssistantMessage<'a>,
    #[serde(default, skip_deserializing)]
    pub logprobs: Option<()>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AssistantMessage<'a> {
    #[serde(borrow, default = "assistant")]
    pub role: Cow<'a, str>,
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<OutToolCall<'a>>>,
    #[serde(borrow, default)]
    pub refusal: Option<Cow<'a, str>>,
}

fn assistant() -> Cow<'static, str> {
    Cow::Borrowed("assistant")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OutToolCall<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(rename = "type", borrow, default = "function")]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub function: OutFunction<'a>,
}

fn function() -> Cow<'static, str> {
    Cow::Borrowed("function")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OutFunction<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub arguments: Cow<'a, str>,
}

/// OpenAI `usage`. `prompt_tokens` includes cached tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

impl Usage {
    pub fn new(prompt: u64, completion: u64, cached: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: Some(PromptDetails { cached_tokens: cached }),
        }
    }

    pub fn cached(&self) -> u64 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }
}

// ---------------------------------------------------------------- chunks

/// One `chat.completion.chunk`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Chunk<'a> {
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    #[serde(borrow, default = "chunk_object")]
    pub object: Cow<'a, str>,
    #[serde(default)]
    pub created: u64,
    #[serde(borrow, default)]
    pub model: Cow<'a, str>,
    #[serde(borrow, default)]
    pub choices: Vec<ChunkChoice<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

fn chunk_object() -> Cow<'static, str> {
    Cow::Borrowed("chat.completion.chunk")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChunkChoice<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow, default)]
    pub delta: Delta<'a>,
    #[serde(default, skip_deserializing)]
    pub logprobs: Option<()>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Delta<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<DeltaToolCall<'a>>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeltaToolCall<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub function: Option<DeltaFunction<'a>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeltaFunction<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Cow<'a, str>>,
}

/// Writes the chunks of one translated stream: id, model and `created` are
/// fixed when the stream starts.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl ChunkWriter {
    fn chunk<'a>(&'a self, choices: Vec<ChunkChoice<'a>>, usage: Option<Usage>) -> Chunk<'a> {
        Chunk {
            id: Cow::Borrowed(&self.id),
            object: chunk_object(),
            created: self.created,
            model: Cow::Borrowed(&self.model),
            choices,
            usage,
        }
    }

    /// A chunk with one choice (index `index`) carrying `delta` and an optional finish reason.
    pub fn delta(&self, out: &mut super::SseOut, index: u32, delta: Delta<'_>, finish: Option<&'static str>) {
        let choice = ChunkChoice { index, delta, logprobs: None, finish_reason: finish.map(Cow::Borrowed) };
        out.data(&self.chunk(vec![choice], None));
    }

    /// The role chunk that opens a stream.
    pub fn role(&self, out: &mut super::SseOut, index: u32) {
        let d = Delta { role: Some(Cow::Borrowed("assistant")), content: Some(Cow::Borrowed("")), tool_calls: None };
        self.delta(out, index, d, None);
    }

    pub fn text(&self, out: &mut super::SseOut, index: u32, text: &str) {
        let d = Delta { content: Some(Cow::Borrowed(text)), ..Delta::default() };
        self.delta(out, index, d, None);
    }

    /// A tool call's first chunk (id and name) or a later one (arguments only).
    pub fn tool_call(
        &self,
        out: &mut super::SseOut,
        index: u32,
        call: u32,
        id_name: Option<(&str, &str)>,
        arguments: &str,
    ) {
        let (id, kind, name) = match id_name {
            Some((id, name)) => (Some(Cow::Borrowed(id)), Some(Cow::Borrowed("function")), Some(Cow::Borrowed(name))),
            None => (None, None, None),
        };
        let tc = DeltaToolCall {
            index: call,
            id,
            kind,
            function: Some(DeltaFunction { name, arguments: Some(Cow::Borrowed(arguments)) }),
        };
        let d = Delta { tool_calls: Some(vec![tc]), ..Delta::default() };
        self.delta(out, index, d, None);
    }

    pub fn finish(&self, out: &mut super::SseOut, index: u32, reason: &'static str) {
        self.delta(out, index, Delta::default(), Some(reason));
    }

    /// The usage-only chunk (`choices: []`) OpenAI sends last when asked; the
    /// relay hides it from clients that did not ask.
    pub fn usage(&self, out: &mut super::SseOut, usage: Usage) {
        out.data(&self.chunk(Vec::new(), Some(usage)));
    }

    pub fn done(out: &mut super::SseOut) {
        out.raw(b"data: [DONE]\n\n");
    }
}
