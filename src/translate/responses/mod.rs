//! OpenAI's Responses API (`POST /v1/responses`) over deployments that
//! serve only Chat Completions (vLLM, Ollama, older OpenAI-compatible
//! servers, and through the chat translators Anthropic and Gemini).
//!
//! - [`request`]: a Responses request (plus the stored items of the
//!   conversation it continues) becomes a chat request; it also returns the
//!   [`Context`] the answer needs (request fields a Response echoes, how
//!   tool names map back) and this turn's input items, for storage.
//! - [`response`]: a `chat.completion` becomes a Response object and the
//!   output items to store for a follow-up turn.
//! - [`stream`]: chat chunks become the typed Responses event sequence
//!   (`response.created` ... `response.completed`), with sequence numbers.
//! - [`history`]: the stored conversation of `previous_response_id`, and
//!   usage read from a native Responses body or event (pass-through).
//!
//! Nothing here keeps state between requests: the caller stores the items
//! [`history::conversation`] builds and hands them back with the next turn.
//! Ids and clocks come in through [`Context`].
//!
//! References: https://platform.openai.com/docs/api-reference/responses,
//! https://platform.openai.com/docs/api-reference/responses-streaming,
//! https://platform.openai.com/docs/api-reference/chat

pub mod history;
mod input;
mod read;
pub mod request;
pub mod response;
pub mod stream;
mod tools;
mod write;

use serde::Serialize;
use sonic_rs::OwnedLazyValue;

/// Token usage of one response, in the Responses API's terms:
/// `input_tokens` includes `cached_tokens`, `output_tokens` includes
/// `reasoning_tokens` (as in OpenAI's chat usage, so no conversion).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Request fields a Response object repeats back (the API reference lists
/// them as required members of every Response), kept as the client sent
/// them: opaque JSON stays raw.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    /// The model the client asked for (the upstream's name is used when the
    /// upstream reports one).
    pub model: String,
    pub instructions: Option<String>,
    pub tools: Option<OwnedLazyValue>,
    pub tool_choice: Option<OwnedLazyValue>,
    pub text: Option<OwnedLazyValue>,
    pub reasoning: Option<OwnedLazyValue>,
    pub metadata: Option<OwnedLazyValue>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_output_tokens: Option<u64>,
    pub parallel_tool_calls: Option<bool>,
    pub previous_response_id: Option<String>,
    pub store: Option<bool>,
    pub user: Option<String>,
    pub truncation: Option<String>,
}

/// How a chat tool name maps back to what the Responses client declared:
/// a function inside a `namespace` tool is flattened to
/// `{namespace}__{name}` for chat (chat names allow `[a-zA-Z0-9_-]`; the
/// double underscore is the convention MCP clients already use), and a
/// `custom` (free-form input) tool becomes a function taking one string,
/// `input`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolNames {
    entries: Vec<ToolName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ToolName {
    chat: String,
    namespace: Option<String>,
    name: String,
    custom: bool,
}

/// What a chat tool call stands for on the Responses side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolRef<'a> {
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// A `custom` tool: the call is a `custom_tool_call` whose `input` is the
    /// `input` member of the chat call's arguments.
    pub custom: bool,
}

impl ToolNames {
    /// Separator between a namespace and a function name in chat.
    pub const SEPARATOR: &'static str = "__";

    fn add(&mut self, namespace: Option<&str>, name: &str, custom: bool) -> String {
        let chat = match namespace {
            Some(ns) => format!("{ns}{}{name}", Self::SEPARATOR),
            None => name.to_owned(),
        };
        // Plain functions need an entry only to be told apart from custom
        // ones; keep the table to the tools that need mapping back.
        if namespace.is_some() || custom {
            self.entries.push(ToolName {
                chat: chat.clone(),
                namespace: namespace.map(str::to_owned),
                name: name.to_owned(),
                custom,
            });
        }
        chat
    }

    /// The Responses-side identity of the chat tool `chat_name`.
    pub fn resolve<'a>(&'a self, chat_name: &'a str) -> ToolRef<'a> {
        match self.entries.iter().find(|e| e.chat == chat_name) {
            Some(e) => ToolRef { namespace: e.namespace.as_deref(), name: &e.name, custom: e.custom },
            None => ToolRef { namespace: None, name: chat_name, custom: false },
        }
    }

    /// The chat name of the Responses tool `name` in `namespace`.
    pub fn chat_name(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) => format!("{ns}{}{name}", Self::SEPARATOR),
            None => name.to_owned(),
        }
    }
}

/// Everything the answer translators need besides the upstream's answer.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `resp_...`, chosen by the caller (unique; output item ids derive from it).
    pub id: String,
    /// Unix seconds when the request arrived.
    pub created_at: u64,
    pub echo: Echo,
    pub tools: ToolNames,
}

impl Context {
    /// The id part after `resp_`, shared by the ids of the output items.
    fn id_suffix(&self) -> &str {
        self.id.strip_prefix("resp_").unwrap_or(&self.id)
    }

    /// Id of output item `n` with the Responses prefix for its type
    /// (`msg`, `fc`, `ctc`, `rs`).
    fn item_id(&self, prefix: &str, n: usize) -> String {
        format!("{prefix}_{}_{n}", self.id_suffix())
    }

    /// A call id for a chat tool call that came without one.
    fn call_id(&self, n: usize) -> String {
        format!("call_{}_{n}", self.id_suffix())
    }
}

/// A fresh response id: `resp_` and 32 hex digits from the caller's randomness.
pub fn response_id(random: u128) -> String {
    format!("resp_{random:032x}")
}

/// The `error.code` of a failed Response for an upstream error of type or
/// code `kind`. Clients act on some codes (Codex stops retrying on
/// `context_length_exceeded` and `insufficient_quota`, and waits on
/// `rate_limit_exceeded`); everything else is `server_error`.
pub fn error_code(kind: &str) -> &'static str {
    match kind {
        "rate_limit_exceeded" | "rate_limit_error" | "rate_limit" | "too_many_requests" => "rate_limit_exceeded",
        "context_length_exceeded" => "context_length_exceeded",
        "insufficient_quota" => "insufficient_quota",
        "invalid_prompt" => "invalid_prompt",
        _ => "server_error",
    }
}

/// The `input` of a custom tool call from the chat call's `arguments`
/// (`{"input": "..."}`); arguments that are not that shape are taken whole.
fn custom_input(arguments: &str) -> String {
    use sonic_rs::JsonValueTrait;
    if crate::json::nesting_exceeds(arguments.as_bytes(), crate::translate::MAX_DEPTH) {
        return arguments.to_owned();
    }
    sonic_rs::get(arguments, ["input"])
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| arguments.to_owned())
}

/// `{"code": .., "message": ..}` of a failed Response.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResponseError {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_map_back() {
        let mut t = ToolNames::default();
        assert_eq!(t.add(None, "f", false), "f");
        assert_eq!(t.add(Some("crm"), "lookup", false), "crm__lookup");
        assert_eq!(t.add(None, "apply_patch", true), "apply_patch");
        assert_eq!(t.resolve("crm__lookup"), ToolRef { namespace: Some("crm"), name: "lookup", custom: false });
        assert_eq!(t.resolve("apply_patch"), ToolRef { namespace: None, name: "apply_patch", custom: true });
        assert_eq!(t.resolve("f"), ToolRef { namespace: None, name: "f", custom: false });
        assert_eq!(t.resolve("unknown"), ToolRef { namespace: None, name: "unknown", custom: false });
        assert_eq!(t.chat_name(Some("crm"), "lookup"), "crm__lookup");
    }

    #[test]
    fn ids() {
        let c = Context { id: response_id(0xab), ..Context::default() };
        assert_eq!(c.id, "resp_000000000000000000000000000000ab");
        assert_eq!(c.item_id("msg", 2), "msg_000000000000000000000000000000ab_2");
        assert_eq!(c.call_id(1), "call_000000000000000000000000000000ab_1");
    }

    #[test]
    fn custom_inputs() {
        assert_eq!(custom_input(r#"{"input": "*** Begin Patch\n"}"#), "*** Begin Patch\n");
        assert_eq!(custom_input("not json"), "not json");
        assert_eq!(custom_input(r#"{"other": 1}"#), r#"{"other": 1}"#);
    }

    #[test]
    fn error_codes() {
        assert_eq!(error_code("rate_limit_error"), "rate_limit_exceeded");
        assert_eq!(error_code("context_length_exceeded"), "context_length_exceeded");
        assert_eq!(error_code("overloaded_error"), "server_error");
    }
}
