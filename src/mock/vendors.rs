//! The mock speaking Anthropic (`POST /v1/messages`) and Gemini
//! (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`), plus tool calls on the OpenAI chat
//! route. The answer text comes from the same deterministic generator as
//! the OpenAI routes; ids are derived from it, so equal requests get
//! byte-for-byte equal answers (tests compare a direct call with one
//! through the gateway).
//!
//! Controls (headers): `x-mock-tool-call: <name>` answers with a call of
//! that tool (when the request offers tools) whose input is
//! `{"query": <answer text>}`; `x-mock-cached-tokens: <n>` reports that many
//! prompt tokens as read from the prompt cache. Not on the OpenAI hot path:
//! the plain chat answer is untouched.
//!
//! Shapes follow https://docs.anthropic.com/en/api/messages,
//! https://docs.anthropic.com/en/api/messages-streaming and
//! https://ai.google.dev/api/generate-content.

use bytes::Bytes;
use serde::Serialize;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

use super::generate::{self, GenError, GenRequest};

/// Which vendor API a request targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vendor {
    Anthropic,
    Gemini { stream: bool },
}

/// What the mock read from a vendor request.
pub(crate) struct VendorRequest {
    pub request: GenRequest,
    pub has_tools: bool,
    /// Anthropic `thinking` is on (`enabled` or `adaptive`): the answer
    /// starts with a thinking block.
    pub thinking: bool,
}

/// Deepest nesting read (like the OpenAI routes).
pub(crate) const MAX_DEPTH: usize = 128;

fn fnv(h: u64, s: &str) -> u64 {
    s.bytes().fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Count and hash the prompt text of a JSON value: `"text"` strings, and
/// `"content"` given as a plain string (Anthropic's shorthand).
pub(crate) fn texts(v: &sonic_rs::Value, words: &mut u64, hash: &mut u64) {
    if let Some(o) = v.as_object() {
        for (k, x) in o.iter() {
            match (k, x.as_str()) {
                ("text" | "content", Some(t)) => {
                    *words += t.split_whitespace().count() as u64;
                    *hash = fnv(*hash, t);
                }
                (_, Some(_)) => {}
                _ => texts(x, words, hash),
            }
        }
    } else if let Some(a) = v.as_array() {
        for x in a.iter() {
            texts(x, words, hash);
        }
    }
}

/// Read an Anthropic Messages or Gemini request.
pub(crate) fn parse(
    vendor: Vendor,
    path: &str,
    body: &[u8],
    default_tokens: u32,
    tokens: Option<u32>,
) -> Result<VendorRequest, GenError> {
    if crate::json::nesting_exceeds(body, MAX_DEPTH) {
        return Err(GenError::new("The JSON body nests too deeply.", None));
    }
    let v: sonic_rs::Value = sonic_rs::from_slice(body)
        .map_err(|e| GenError::new(format!("We could not parse the JSON body of your request: {e}"), None))?;
    if !v.is_object() {
        return Err(GenError::new("The body must be a JSON object.", None));
    }
    let (model, stream, cap, prompt_key) = match vendor {
        Vendor::Anthropic => {
            let model = v.get("model").and_then(|m| m.as_str()).map(str::to_owned);
            let Some(model) = model else { return Err(GenError::new("model: Field required", Some("model"))) };
            let Some(cap) = v.get("max_tokens").and_then(|m| m.as_u64()) else {
                return Err(GenError::new("max_tokens: Field required", Some("max_tokens")));
            };
            (model, v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false), Some(cap), "messages")
        }
        Vendor::Gemini { stream } => {
            let model = path.rsplit('/').next().unwrap_or("").split(':').next().unwrap_or("").to_owned();
            let cap = v.get("generationConfig").and_then(|g| g.get("maxOutputTokens")).and_then(|m| m.as_u64());
            (model, stream, cap, "contents")
        }
    };
    let Some(prompt) = v.get(prompt_key) else {
        return Err(GenError::new(
            format!("{prompt_key}: Field required"),
            Some(if prompt_key == "messages" { "messages" } else { "contents" }),
        ));
    };
    let system = [v.get("system"), v.get("systemInstruction")];
    let request = gen_request(model, stream, cap, prompt, &system, default_tokens, tokens);
    let has_tools = v.get("tools").and_then(|t| t.as_array()).is_some_and(|a| !a.is_empty());
    let thinking = vendor == Vendor::Anthropic && thinking_on(&v);
    Ok(VendorRequest { request, has_tools, thinking })
}

/// Does an Anthropic Messages body turn `thinking` on (`enabled`, `adaptive`)?
pub(crate) fn thinking_on(v: &sonic_rs::Value) -> bool {
    matches!(v.get("thinking").and_then(|t| t.get("type")).and_then(|t| t.as_str()), Some("enabled" | "adaptive"))
}

/// The generator's request for a vendor body already read: the model, the
/// stream flag, the output cap, the prompt (its `text` / `content` strings
/// are counted and hashed) and the system prompt in any of its shapes.
pub(crate) fn gen_request(
    model: String,
    stream: bool,
    cap: Option<u64>,
    prompt: &sonic_rs::Value,
    system: &[Option<&sonic_rs::Value>],
    default_tokens: u32,
    tokens: Option<u32>,
) -> GenRequest {
    let (mut words, mut hash) = (0u64, 0xcbf2_9ce4_8422_2325u64);
    texts(prompt, &mut words, &mut hash);
    for s in system.iter().flatten() {
        match s.as_str() {
            Some(t) => {
                words += t.split_whitespace().count() as u64;
                hash = fnv(hash, t);
            }
            None => texts(s, &mut words, &mut hash),
        }
    }
    let wanted = tokens.unwrap_or(default_tokens).min(generate::MAX_COMPLETION_TOKENS);
    let (completion_tokens, finish_reason) = match cap {
        Some(c) if u64::from(wanted) > c => (u32::try_from(c).unwrap_or(u32::MAX).max(1), "length"),
        _ => (wanted, "stop"),
    };
    GenRequest {
        endpoint: generate::Endpoint::Chat,
        seed: fnv(hash, &model),
        model,
        stream,
        include_usage: false,
        prompt_tokens: u32::try_from(words.max(1)).unwrap_or(u32::MAX),
        completion_tokens,
        finish_reason,
        // Vendors (Anthropic, Gemini, Bedrock) always report usage.
        usage: true,
    }
}

/// The answer's tokens, each with its leading space (but the first).
pub(crate) fn tokens(g: &GenRequest) -> Vec<String> {
    let text = generate::answer_text(g);
    text.split(' ').enumerate().map(|(i, w)| if i == 0 { w.to_owned() } else { format!(" {w}") }).collect()
}

/// A JSON value whose objects keep their key order, so equal requests give
/// byte-for-byte equal answers (sonic-rs's `Value` objects are hash maps).
enum J {
    S(String),
    N(u64),
    Null,
    A(Vec<J>),
    O(Vec<(&'static str, J)>),
}

impl Serialize for J {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            J::S(s) => ser.serialize_str(s),
            J::N(n) => ser.serialize_u64(*n),
            J::Null => ser.serialize_unit(),
            J::A(v) => {
                let mut seq = ser.serialize_seq(Some(v.len()))?;
                for x in v {
                    seq.serialize_element(x)?;
                }
                seq.end()
            }
            J::O(v) => {
                let mut map = ser.serialize_map(Some(v.len()))?;
                for (k, x) in v {
                    map.serialize_entry(k, x)?;
                }
                map.end()
            }
        }
    }
}

fn s(x: impl Into<String>) -> J {
    J::S(x.into())
}

fn o(v: Vec<(&'static str, J)>) -> J {
    J::O(v)
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    sonic_rs::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

fn event(out: &mut Vec<Bytes>, name: &str, v: &J) {
    let mut b = Vec::with_capacity(128);
    if !name.is_empty() {
        b.extend_from_slice(b"event: ");
        b.extend_from_slice(name.as_bytes());
        b.push(b'\n');
    }
    b.extend_from_slice(b"data: ");
    b.extend_from_slice(&json(v));
    b.extend_from_slice(b"\n\n");
    out.push(Bytes::from(b));
}

/// The input of the tool call a request asked for: `{"query": <answer text>}`.
pub(crate) fn tool_args_json(g: &GenRequest) -> Vec<u8> {
    json(&tool_args(g))
}

fn tool_args(g: &GenRequest) -> J {
    o(vec![("query", s(generate::answer_text(g)))])
}

fn tool_input(g: &GenRequest) -> String {
    String::from_utf8(json(&tool_args(g))).unwrap_or_default()
}

/// `s` cut in two at a character boundary near its middle.
pub(crate) fn halves(s: &str) -> [&str; 2] {
    let mid = s.char_indices().map(|(i, _)| i).nth(s.chars().count() / 2).unwrap_or(0);
    [&s[..mid], &s[mid..]]
}

// ------------------------------------------------------------- Anthropic

/// The thinking a `thinking` request's answer starts with, and its words.
const THINKING: &str = "Thinking it over briefly.";
const THINKING_WORDS: u64 = 4;

/// A whole Messages answer (`Ok`), or its stream events (`Err`). With
/// `thinking`, a `thinking` block (its text and a signature) comes first.
pub(crate) fn anthropic(g: &GenRequest, tool: Option<&str>, cached: u64, thinking: bool) -> Result<Bytes, Vec<Bytes>> {
    let id = format!("msg_mock{:016x}", g.seed);
    let cached = cached.min(u64::from(g.prompt_tokens));
    let input = u64::from(g.prompt_tokens) - cached;
    let out_tokens = u64::from(g.completion_tokens) + if thinking { THINKING_WORDS } else { 0 };
    let signature = format!("mock-signature-{:016x}", g.seed);
    let stop = match (tool, g.finish_reason) {
        (Some(_), _) => "tool_use",
        (None, "length") => "max_tokens",
        _ => "end_turn",
    };
    let usage = |output: u64| {
        o(vec![
            ("input_tokens", J::N(input)),
            ("cache_creation_input_tokens", J::N(0)),
            ("cache_read_input_tokens", J::N(cached)),
            ("output_tokens", J::N(output)),
        ])
    };
    let tool_id = format!("toolu_mock{:016x}", g.seed);
    let message = |content: J, stop: J, output: u64| {
        o(vec![
            ("id", s(&id)),
            ("type", s("message")),
            ("role", s("assistant")),
            ("model", s(&g.model)),
            ("content", content),
            ("stop_reason", stop),
            ("stop_sequence", J::Null),
            ("usage", usage(output)),
        ])
    };
    if !g.stream {
        let mut content = Vec::new();
        if thinking {
            content.push(o(vec![("type", s("thinking")), ("thinking", s(THINKING)), ("signature", s(&signature))]));
        }
        content.push(match tool {
            Some(name) => {
                o(vec![("type", s("tool_use")), ("id", s(&tool_id)), ("name", s(name)), ("input", tool_args(g))])
            }
            None => o(vec![("type", s("text")), ("text", s(generate::answer_text(g)))]),
        });
        return Ok(Bytes::from(json(&message(J::A(content), s(stop), out_tokens))));
    }
    let mut ev = Vec::new();
    event(
        &mut ev,
        "message_start",
        &o(vec![("type", s("message_start")), ("message", message(J::A(vec![]), J::Null, 1))]),
    );
    event(&mut ev, "ping", &o(vec![("type", s("ping"))]));
    let index = u64::from(thinking);
    let start = move |i: u64, block: J| {
        o(vec![("type", s("content_block_start")), ("index", J::N(i)), ("content_block", block)])
    };
    let delta = move |i: u64, d: J| o(vec![("type", s("content_block_delta")), ("index", J::N(i)), ("delta", d)]);
    let stop_block = |i: u64| o(vec![("type", s("content_block_stop")), ("index", J::N(i))]);
    if thinking {
        let block = o(vec![("type", s("thinking")), ("thinking", s("")), ("signature", s(""))]);
        event(&mut ev, "content_block_start", &start(0, block));
        let d = o(vec![("type", s("thinking_delta")), ("thinking", s(THINKING))]);
        event(&mut ev, "content_block_delta", &delta(0, d));
        let d = o(vec![("type", s("signature_delta")), ("signature", s(&signature))]);
        event(&mut ev, "content_block_delta", &delta(0, d));
        event(&mut ev, "content_block_stop", &stop_block(0));
    }
    match tool {
        Some(name) => {
            let block = o(vec![("type", s("tool_use")), ("id", s(&tool_id)), ("name", s(name)), ("input", o(vec![]))]);
            event(&mut ev, "content_block_start", &start(index, block));
            let input = tool_input(g);
            for piece in halves(&input) {
                let d = o(vec![("type", s("input_json_delta")), ("partial_json", s(piece))]);
                event(&mut ev, "content_block_delta", &delta(index, d));
            }
        }
        None => {
            event(&mut ev, "content_block_start", &start(index, o(vec![("type", s("text")), ("text", s(""))])));
            for t in tokens(g) {
                let d = o(vec![("type", s("text_delta")), ("text", s(t))]);
                event(&mut ev, "content_block_delta", &delta(index, d));
            }
        }
    }
    event(&mut ev, "content_block_stop", &stop_block(index));
    let md = o(vec![
        ("type", s("message_delta")),
        ("delta", o(vec![("stop_reason", s(stop)), ("stop_sequence", J::Null)])),
        ("usage", o(vec![("output_tokens", J::N(out_tokens))])),
    ]);
    event(&mut ev, "message_delta", &md);
    event(&mut ev, "message_stop", &o(vec![("type", s("message_stop"))]));
    Err(ev)
}

// ------------------------------------------------------------- Gemini

/// A whole `GenerateContentResponse` (`Ok`), or its stream events (`Err`).
pub(crate) fn gemini(g: &GenRequest, tool: Option<&str>, cached: u64) -> Result<Bytes, Vec<Bytes>> {
    let rid = format!("mock{:016x}", g.seed);
    let p = u64::from(g.prompt_tokens);
    let c = u64::from(g.completion_tokens);
    let usage = || {
        let mut u =
            vec![("promptTokenCount", J::N(p)), ("candidatesTokenCount", J::N(c)), ("totalTokenCount", J::N(p + c))];
        if cached > 0 {
            u.push(("cachedContentTokenCount", J::N(cached.min(p))));
        }
        o(u)
    };
    let finish = if g.finish_reason == "length" && tool.is_none() { "MAX_TOKENS" } else { "STOP" };
    let response = |parts: Vec<J>, last: bool| {
        let mut cand = vec![("content", o(vec![("parts", J::A(parts)), ("role", s("model"))]))];
        if last {
            cand.push(("finishReason", s(finish)));
        }
        cand.push(("index", J::N(0)));
        let mut r = vec![("candidates", J::A(vec![o(cand)]))];
        if last {
            r.push(("usageMetadata", usage()));
        }
        r.push(("modelVersion", s(&g.model)));
        r.push(("responseId", s(&rid)));
        o(r)
    };
    let call = |name: &str| o(vec![("functionCall", o(vec![("name", s(name)), ("args", tool_args(g))]))]);
    if !g.stream {
        let parts = match tool {
            Some(name) => vec![call(name)],
            None => vec![o(vec![("text", s(generate::answer_text(g)))])],
        };
        return Ok(Bytes::from(json(&response(parts, true))));
    }
    let mut ev = Vec::new();
    match tool {
        Some(name) => event(&mut ev, "", &response(vec![call(name)], true)),
        None => {
            let toks = tokens(g);
            let last = toks.len().saturating_sub(1);
            for (i, t) in toks.into_iter().enumerate() {
                event(&mut ev, "", &response(vec![o(vec![("text", s(t))])], i == last));
            }
        }
    }
    Err(ev)
}

// ------------------------------------------------------------- OpenAI tool calls

/// A chat answer that calls `name` (non-stream body `Ok`, or stream events `Err`).
pub(crate) fn openai_tool_call(g: &GenRequest, name: &str) -> Result<Bytes, Vec<Bytes>> {
    let id = format!("chatcmpl-mock{:016x}", g.seed);
    let call_id = format!("call_mock{:016x}", g.seed);
    let args = tool_input(g);
    let p = u64::from(g.prompt_tokens);
    let c = u64::from(g.completion_tokens);
    let usage = || o(vec![("prompt_tokens", J::N(p)), ("completion_tokens", J::N(c)), ("total_tokens", J::N(p + c))]);
    let created = 1_700_000_000u64;
    let head = |object: &str, choices: J| {
        vec![
            ("id", s(&id)),
            ("object", s(object)),
            ("created", J::N(created)),
            ("model", s(&g.model)),
            ("choices", choices),
        ]
    };
    let function = |name: Option<&str>, arguments: &str| {
        let mut f = Vec::new();
        if let Some(n) = name {
            f.push(("name", s(n)));
        }
        f.push(("arguments", s(arguments)));
        o(f)
    };
    if !g.stream {
        let call = o(vec![("id", s(&call_id)), ("type", s("function")), ("function", function(Some(name), &args))]);
        let message = o(vec![("role", s("assistant")), ("content", J::Null), ("tool_calls", J::A(vec![call]))]);
        let choice = o(vec![
            ("index", J::N(0)),
            ("message", message),
            ("logprobs", J::Null),
            ("finish_reason", s("tool_calls")),
        ]);
        let mut body = head("chat.completion", J::A(vec![choice]));
        body.push(("usage", usage()));
        return Ok(Bytes::from(json(&o(body))));
    }
    let chunk = |delta: J, finish: J| {
        let choice = o(vec![("index", J::N(0)), ("delta", delta), ("logprobs", J::Null), ("finish_reason", finish)]);
        o(head("chat.completion.chunk", J::A(vec![choice])))
    };
    let mut ev = Vec::new();
    let first = o(vec![
        ("index", J::N(0)),
        ("id", s(&call_id)),
        ("type", s("function")),
        ("function", function(Some(name), "")),
    ]);
    let d = o(vec![("role", s("assistant")), ("content", J::Null), ("tool_calls", J::A(vec![first]))]);
    event(&mut ev, "", &chunk(d, J::Null));
    for piece in halves(&args) {
        let tc = o(vec![("index", J::N(0)), ("function", function(None, piece))]);
        event(&mut ev, "", &chunk(o(vec![("tool_calls", J::A(vec![tc]))]), J::Null));
    }
    event(&mut ev, "", &chunk(o(vec![]), s("tool_calls")));
    if g.include_usage {
        let mut u = head("chat.completion.chunk", J::A(vec![]));
        u.push(("usage", usage()));
        event(&mut ev, "", &o(u));
    }
    ev.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Err(ev)
}

/// Does an OpenAI chat body offer tools? (Read only when a tool call is asked for.)
pub(crate) fn has_tools(body: &[u8]) -> bool {
    !crate::json::nesting_exceeds(body, MAX_DEPTH)
        && sonic_rs::get(body, ["tools"])
            .is_ok_and(|t| t.as_raw_str().trim_start().starts_with('[') && t.as_raw_str().len() > 2)
}

// ------------------------------------------------------------- errors

/// An error body in the vendor's shape.
pub(crate) fn error_body(vendor: Vendor, status: u16, message: &str) -> Bytes {
    let v = match vendor {
        Vendor::Anthropic => {
            let kind = crate::translate::anthropic::error_type_for_status(status);
            o(vec![("type", s("error")), ("error", o(vec![("type", s(kind)), ("message", s(message))]))])
        }
        Vendor::Gemini { .. } => {
            let st = match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            let e = o(vec![("code", J::N(u64::from(status))), ("message", s(message)), ("status", s(st))]);
            o(vec![("error", e)])
        }
    };
    Bytes::from(json(&v))
}
