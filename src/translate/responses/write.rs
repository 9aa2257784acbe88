//! The Response object, its output items and the stream events, as written.

use serde::Serialize;
use sonic_rs::OwnedLazyValue;

use super::{Context, ResponseError, Usage};
use crate::translate::SseOut;

/// One output item: a `message`, a `function_call`, a `custom_tool_call`
/// or a `reasoning` item, written flat (members of other types are absent).
#[derive(Debug, Clone, Serialize)]
pub struct OutputItem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Vec<()>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<Part>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

impl OutputItem {
    fn new(kind: &'static str, id: String) -> OutputItem {
        OutputItem {
            kind,
            id,
            status: "in_progress",
            role: None,
            summary: None,
            content: None,
            call_id: None,
            namespace: None,
            name: None,
            arguments: None,
            input: None,
        }
    }

    pub fn message(id: String) -> OutputItem {
        OutputItem { role: Some("assistant"), content: Some(Vec::new()), ..OutputItem::new("message", id) }
    }

    pub fn reasoning(id: String) -> OutputItem {
        OutputItem { summary: Some(Vec::new()), content: Some(Vec::new()), ..OutputItem::new("reasoning", id) }
    }

    /// A `function_call`, or a `custom_tool_call` when `custom`.
    pub fn call(id: String, call_id: String, namespace: Option<&str>, name: &str, custom: bool) -> OutputItem {
        let base = OutputItem {
            call_id: Some(call_id),
            namespace: namespace.map(str::to_owned),
            name: Some(name.to_owned()),
            ..OutputItem::new(if custom { "custom_tool_call" } else { "function_call" }, id)
        };
        if custom {
            OutputItem { input: Some(String::new()), ..base }
        } else {
            OutputItem { arguments: Some(String::new()), ..base }
        }
    }
}

/// A content part of a message (`output_text`, `refusal`) or of a
/// reasoning item (`reasoning_text`).
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Vec<()>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<()>>,
}

impl Part {
    pub fn output_text(text: String) -> Part {
        Part {
            kind: "output_text",
            text: Some(text),
            refusal: None,
            annotations: Some(Vec::new()),
            logprobs: Some(Vec::new()),
        }
    }

    pub fn refusal(text: String) -> Part {
        Part { kind: "refusal", text: None, refusal: Some(text), annotations: None, logprobs: None }
    }

    pub fn reasoning_text(text: String) -> Part {
        Part { kind: "reasoning_text", text: Some(text), refusal: None, annotations: None, logprobs: None }
    }

    /// The part's text, whichever member holds it.
    pub fn body_mut(&mut self) -> &mut String {
        match self.kind {
            "refusal" => self.refusal.get_or_insert_with(String::new),
            _ => self.text.get_or_insert_with(String::new),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UsageOut {
    pub input_tokens: u64,
    pub input_tokens_details: InputDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputDetails,
    pub total_tokens: u64,
}

#[derive(Debug, Serialize)]
pub struct InputDetails {
    pub cached_tokens: u64,
}

#[derive(Debug, Serialize)]
pub struct OutputDetails {
    pub reasoning_tokens: u64,
}

impl From<Usage> for UsageOut {
    fn from(u: Usage) -> Self {
        UsageOut {
            input_tokens: u.input_tokens,
            input_tokens_details: InputDetails { cached_tokens: u.cached_tokens },
            output_tokens: u.output_tokens,
            output_tokens_details: OutputDetails { reasoning_tokens: u.reasoning_tokens },
            total_tokens: u.total(),
        }
    }
}

/// An echoed request member: the client's raw JSON, or the API's default.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Echoed<'a, D: Serialize> {
    Raw(&'a OwnedLazyValue),
    Default(D),
}

fn echoed<D: Serialize>(raw: &Option<OwnedLazyValue>, default: D) -> Echoed<'_, D> {
    match raw {
        Some(v) => Echoed::Raw(v),
        None => Echoed::Default(default),
    }
}

#[derive(Debug, Serialize)]
pub struct ReasoningDefault {
    effort: Option<()>,
    summary: Option<()>,
}

#[derive(Debug, Serialize)]
pub struct TextDefault {
    format: FormatText,
}

#[derive(Debug, Serialize)]
pub struct FormatText {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
pub struct EmptyObject {}

#[derive(Debug, Serialize)]
pub struct Incomplete {
    pub reason: &'static str,
}

/// The Response object.
#[derive(Debug, Serialize)]
pub struct ResponseOut<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created_at: u64,
    pub status: &'static str,
    pub error: Option<&'a ResponseError>,
    pub incomplete_details: Option<Incomplete>,
    pub instructions: Option<&'a str>,
    pub max_output_tokens: Option<u64>,
    pub model: &'a str,
    pub output: &'a [OutputItem],
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<&'a str>,
    pub reasoning: Echoed<'a, ReasoningDefault>,
    pub store: bool,
    pub temperature: f64,
    pub text: Echoed<'a, TextDefault>,
    pub tool_choice: Echoed<'a, &'static str>,
    pub tools: Echoed<'a, [(); 0]>,
    pub top_p: f64,
    pub truncation: &'a str,
    pub usage: Option<UsageOut>,
    pub user: Option<&'a str>,
    pub metadata: Echoed<'a, EmptyObject>,
}

/// How a response ended (or has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<'a> {
    InProgress,
    Completed,
    /// `incomplete_details.reason`: `max_output_tokens` or `content_filter`.
    Incomplete(&'static str),
    Failed(&'a ResponseError),
}

impl Status<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete(_) => "incomplete",
            Status::Failed(_) => "failed",
        }
    }
}

/// The Response object for `ctx` in state `status`.
pub fn response<'a>(
    ctx: &'a Context,
    model: &'a str,
    status: Status<'a>,
    output: &'a [OutputItem],
    usage: Option<Usage>,
) -> ResponseOut<'a> {
    let e = &ctx.echo;
    ResponseOut {
        id: &ctx.id,
        object: "response",
        created_at: ctx.created_at,
        status: status.name(),
        error: match status {
            Status::Failed(err) => Some(err),
            _ => None,
        },
        incomplete_details: match status {
            Status::Incomplete(reason) => Some(Incomplete { reason }),
            _ => None,
        },
        instructions: e.instructions.as_deref(),
        max_output_tokens: e.max_output_tokens,
        model: if model.is_empty() { &e.model } else { model },
        output,
        parallel_tool_calls: e.parallel_tool_calls.unwrap_or(true),
        previous_response_id: e.previous_response_id.as_deref(),
        reasoning: echoed(&e.reasoning, ReasoningDefault { effort: None, summary: None }),
        store: e.store.unwrap_or(true),
        temperature: e.temperature.unwrap_or(1.0),
        text: echoed(&e.text, TextDefault { format: FormatText { kind: "text" } }),
        tool_choice: echoed(&e.tool_choice, "auto"),
        tools: echoed(&e.tools, []),
        top_p: e.top_p.unwrap_or(1.0),
        truncation: e.truncation.as_deref().unwrap_or("disabled"),
        usage: usage.map(UsageOut::from),
        user: e.user.as_deref(),
        metadata: echoed(&e.metadata, EmptyObject {}),
    }
}

/// `incomplete_details.reason` for a chat `finish_reason`, if it means the
/// answer was cut short.
pub fn incomplete_reason(finish: Option<&str>) -> Option<&'static str> {
    match finish {
        Some("length") => Some("max_output_tokens"),
        Some("content_filter") => Some("content_filter"),
        _ => None,
    }
}

// ------------------------------------------------------------ events

#[derive(Serialize)]
pub struct ResponseEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub response: ResponseOut<'a>,
}

#[derive(Serialize)]
pub struct ItemEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub output_index: usize,
    pub item: &'a OutputItem,
}

#[derive(Serialize)]
pub struct PartEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    pub part: &'a Part,
}

/// `response.output_text.delta`, `response.refusal.delta`,
/// `response.reasoning_text.delta`.
#[derive(Serialize)]
pub struct TextDelta<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    pub delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<[(); 0]>,
}

/// `response.output_text.done`, `response.refusal.done`,
/// `response.reasoning_text.done`.
#[derive(Serialize)]
pub struct TextDone<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<[(); 0]>,
}

/// `response.function_call_arguments.delta` and
/// `response.custom_tool_call_input.delta`.
#[derive(Serialize)]
pub struct CallDelta<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    pub delta: &'a str,
}

/// `response.function_call_arguments.done` and
/// `response.custom_tool_call_input.done`.
#[derive(Serialize)]
pub struct CallDone<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a str>,
}

/// `error`.
#[derive(Serialize)]
pub struct ErrorEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sequence_number: u64,
    pub code: &'a str,
    pub message: &'a str,
    pub param: Option<&'a str>,
}

/// The events that close output item `i` (its final state in `item`):
/// `...done` and `response.content_part.done` per part, the call's
/// arguments or input, then `response.output_item.done`. `seq` is the next
/// sequence number, advanced per event.
pub fn done_events(out: &mut SseOut, seq: &mut u64, i: usize, item: &OutputItem) {
    let mut next = || {
        let s = *seq;
        *seq += 1;
        s
    };
    for (k, part) in item.content.iter().flatten().enumerate() {
        let (done, text, refusal) = match part.kind {
            "refusal" => ("response.refusal.done", None, part.refusal.as_deref()),
            "reasoning_text" => ("response.reasoning_text.done", part.text.as_deref(), None),
            _ => ("response.output_text.done", part.text.as_deref(), None),
        };
        let logprobs = (part.kind == "output_text").then_some([]);
        let e = TextDone {
            kind: done,
            sequence_number: next(),
            item_id: &item.id,
            output_index: i,
            content_index: k,
            text,
            refusal,
            logprobs,
        };
        out.event(done, &e);
        let kind = "response.content_part.done";
        out.event(
            kind,
            &PartEvent { kind, sequence_number: next(), item_id: &item.id, output_index: i, content_index: k, part },
        );
    }
    let id = &item.id;
    match item.kind {
        "function_call" => {
            let kind = "response.function_call_arguments.done";
            let (name, arguments) = (item.name.as_deref(), item.arguments.as_deref());
            let e =
                CallDone { kind, sequence_number: next(), item_id: id, output_index: i, name, arguments, input: None };
            out.event(kind, &e);
        }
        "custom_tool_call" => {
            // Chat streams the input inside JSON arguments, so it is known
            // whole only now: one delta with all of it.
            let input = item.input.as_deref().unwrap_or("");
            let kind = "response.custom_tool_call_input.delta";
            out.event(kind, &CallDelta { kind, sequence_number: next(), item_id: id, output_index: i, delta: input });
            let kind = "response.custom_tool_call_input.done";
            let e = CallDone {
                kind,
                sequence_number: next(),
                item_id: id,
                output_index: i,
                name: None,
                arguments: None,
                input: Some(input),
            };
            out.event(kind, &e);
        }
        _ => {}
    }
    let kind = "response.output_item.done";
    out.event(kind, &ItemEvent { kind, sequence_number: next(), output_index: i, item });
}
