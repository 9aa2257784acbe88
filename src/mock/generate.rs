//! Pure, deterministic OpenAI-shaped response generation (no I/O).
//!
//! Shared by the standalone mock server (`sluice mock`) and the gateway's
//! in-process `mock` provider, so both answer byte-for-byte alike. Everything
//! here is on a benchmark's hot path: bodies are written straight into one
//! buffer (see `json`), requests are read in one streaming pass (see
//! `parse`), and stream events are cut from a shared buffer so a whole stream
//! costs about one allocation.
//!
//! "Tokens" are words drawn from a fixed vocabulary by a hash of the model and
//! the prompt text, so the same request always yields the same text, in
//! stream and non-stream form alike.

mod json;
mod parse;
mod stream;
#[cfg(test)]
mod tests;

use std::fmt;

use bytes::{BufMut, Bytes};

use json::{push_base64, push_opt_str, push_str, push_u64};
pub use stream::{StreamEvents, stream_events};

/// Which generation API a request targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/completions` (legacy)
    Completions,
}

/// Everything needed to produce a response, read from a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenRequest {
    pub endpoint: Endpoint,
    /// Echoed in the response's `model`.
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`: add a usage chunk (and `"usage":null`
    /// on every other chunk). Non-stream answers always carry usage.
    pub include_usage: bool,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// `"stop"`, or `"length"` when `max_tokens`/`max_completion_tokens` capped the answer.
    pub finish_reason: &'static str,
    /// Picks the words; derived from the model and prompt text.
    pub seed: u64,
    /// Report usage at all (`x-mock-usage: none` turns it off, as some
    /// OpenAI-compatible servers do, to test counting without it).
    pub usage: bool,
}

/// A request the mock refuses with 400 `invalid_request_error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenError {
    /// Human-readable, says what is wrong.
    pub message: String,
    /// The offending request field, OpenAI's `param`.
    pub param: Option<&'static str>,
}

impl GenError {
    pub(crate) fn new(message: impl Into<String>, param: Option<&'static str>) -> Self {
        GenError { message: message.into(), param }
    }

    /// The OpenAI-shaped 400 body for this error.
    pub fn body(&self) -> Bytes {
        error_body(&self.message, "invalid_request_error", self.param, None)
    }
}

impl fmt::Display for GenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GenError {}

fn missing(param: &'static str) -> GenError {
    GenError::new(format!("Missing required parameter: '{param}'."), Some(param))
}

fn clamp_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Most completion tokens one answer may have, whatever is asked: a bound on
/// the memory a single request can make the mock (or the gateway's built-in
/// mock provider) allocate.
pub const MAX_COMPLETION_TOKENS: u32 = 1 << 20;

/// Most inputs in one embeddings request (OpenAI's limit too).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// Reads a chat (`messages`) or completions (`prompt`) request.
///
/// The answer has `tokens_override` (the `x-mock-tokens` header) or
/// `default_tokens` words (at most [`MAX_COMPLETION_TOKENS`]), capped by
/// `max_completion_tokens` / `max_tokens` (then `finish_reason` is `"length"`).
pub fn parse_request(
    endpoint: Endpoint,
    body: &[u8],
    default_tokens: u32,
    tokens_override: Option<u32>,
) -> Result<GenRequest, GenError> {
    let f = parse::gen_fields(endpoint, body)?;
    let Some(model) = f.model else {
        return Err(GenError::new("you must provide a model parameter", Some("model")));
    };
    if !f.has_prompt {
        return Err(missing(match endpoint {
            Endpoint::Chat => "messages",
            Endpoint::Completions => "prompt",
        }));
    }
    // max_completion_tokens is the newer name and wins when both are given.
    let (cap, cap_param) = match (f.max_completion_tokens, f.max_tokens) {
        (Some(c), _) => (Some(c), "max_completion_tokens"),
        (None, m) => (m, "max_tokens"),
    };
    if cap == Some(0) {
        return Err(GenError::new(
            format!("Invalid '{cap_param}': integer below minimum value. Expected a value >= 1, but got 0 instead."),
            Some(cap_param),
        ));
    }
    let wanted = tokens_override.unwrap_or(default_tokens).min(MAX_COMPLETION_TOKENS);
    let (completion_tokens, finish_reason) = match cap {
        Some(c) if u64::from(wanted) > c => (clamp_u32(c), "length"),
        _ => (wanted, "stop"),
    };
    let mut seed = f.prompt;
    seed.add_text(&model);
    Ok(GenRequest {
        endpoint,
        model,
        stream: f.stream,
        include_usage: f.include_usage,
        usage: true,
        prompt_tokens: clamp_u32(f.prompt.words.max(1)),
        completion_tokens,
        finish_reason,
        seed: seed.hash,
    })
}

/// The vocabulary "tokens" are drawn from: plain ASCII words, so generated
/// text never needs JSON escaping, each one token of o200k (the tokenizer
/// Sluice counts an answer with when the upstream reports no usage), alone
/// and after a space: the mock's token counts and Sluice's agree to the
/// token (tested in `crate::tokens`).
pub const WORDS: [&str; 64] = [
    "the", "quick", "brown", "fox", "runs", "over", "lazy", "dog", "lock", "gate", "river", "stream", "token", "model",
    "answer", "mock", "fast", "light", "water", "flows", "through", "wide", "channel", "and", "a", "of", "to", "in",
    "is", "it", "that", "with", "for", "on", "as", "was", "at", "by", "this", "from", "or", "an", "be", "are", "not",
    "but", "what", "all", "were", "when", "we", "there", "can", "use", "each", "which", "their", "time", "if", "will",
    "way", "about", "many", "then",
];

/// splitmix64's finaliser: a cheap, well-mixed hash of one u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Token `i` of the answer seeded by `seed`; every token but the first has a
/// leading space, so concatenating the tokens gives the answer text.
fn token(seed: u64, i: u32) -> (&'static str, bool) {
    let h = mix(seed ^ u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (WORDS[(h >> 58) as usize], i > 0)
}

fn push_token<B: BufMut>(out: &mut B, seed: u64, i: u32) {
    let (w, space) = token(seed, i);
    if space {
        out.put_u8(b' ');
    }
    out.put_slice(w.as_bytes());
}

/// The whole answer text of `req` (what a non-stream response carries).
pub fn answer_text(req: &GenRequest) -> String {
    let mut s = Vec::with_capacity(req.completion_tokens as usize * 7);
    for i in 0..req.completion_tokens {
        push_token(&mut s, req.seed, i);
    }
    // Only ASCII words and spaces were written.
    String::from_utf8(s).unwrap_or_default()
}

fn push_usage<B: BufMut>(out: &mut B, prompt: u64, completion: Option<u64>) {
    out.put_slice(b"{\"prompt_tokens\":");
    push_u64(out, prompt);
    if let Some(c) = completion {
        out.put_slice(b",\"completion_tokens\":");
        push_u64(out, c);
    }
    out.put_slice(b",\"total_tokens\":");
    push_u64(out, prompt + completion.unwrap_or(0));
    out.put_u8(b'}');
}

/// `{"id":..,"object":..,"created":..,"model":..,` — the start every body and chunk shares.
fn push_head<B: BufMut>(out: &mut B, id: &str, object: &str, created: u64, model: &str) {
    out.put_slice(b"{\"id\":");
    push_str(out, id);
    out.put_slice(b",\"object\":\"");
    out.put_slice(object.as_bytes());
    out.put_slice(b"\",\"created\":");
    push_u64(out, created);
    out.put_slice(b",\"model\":");
    push_str(out, model);
    out.put_u8(b',');
}

/// Non-stream JSON body: `chat.completion` or `text_completion`, usage included.
pub fn completion_body(req: &GenRequest, id: &str, created: u64) -> Bytes {
    let n = req.completion_tokens;
    let mut out = Vec::with_capacity(256 + id.len() + req.model.len() + n as usize * 8);
    match req.endpoint {
        Endpoint::Chat => {
            push_head(&mut out, id, "chat.completion", created, &req.model);
            out.put_slice(b"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"");
        }
        Endpoint::Completions => {
            push_head(&mut out, id, "text_completion", created, &req.model);
            out.put_slice(b"\"choices\":[{\"text\":\"");
        }
    }
    for i in 0..n {
        push_token(&mut out, req.seed, i);
    }
    match req.endpoint {
        Endpoint::Chat => out.put_slice(b"\"},\"logprobs\":null,\"finish_reason\":\""),
        Endpoint::Completions => out.put_slice(b"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\""),
    }
    out.put_slice(req.finish_reason.as_bytes());
    if req.usage {
        out.put_slice(b"\"}],\"usage\":");
        push_usage(&mut out, u64::from(req.prompt_tokens), Some(u64::from(n)));
    } else {
        out.put_slice(b"\"}]");
    }
    out.put_u8(b'}');
    Bytes::from(out)
}

/// Largest `dimensions` accepted, so a request cannot ask for a huge body.
const MAX_DIMENSIONS: u64 = 8192;

/// `POST /v1/embeddings` body: one deterministic unit vector per input,
/// derived from a hash of the input (so equal inputs embed equally).
pub fn embeddings_body(body: &[u8]) -> Result<Bytes, GenError> {
    let f = parse::emb_fields(body)?;
    let Some(model) = f.model else {
        return Err(GenError::new("you must provide a model parameter", Some("model")));
    };
    let Some(inputs) = f.inputs else {
        return Err(missing("input"));
    };
    if inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(GenError::new(
            format!("Invalid 'input': at most {MAX_EMBEDDING_INPUTS} inputs per request, got {}.", inputs.len()),
            Some("input"),
        ));
    }
    let dims = f.dimensions.unwrap_or(8);
    if dims == 0 || dims > MAX_DIMENSIONS {
        return Err(GenError::new(
            format!("Invalid 'dimensions': expected 1..={MAX_DIMENSIONS}, got {dims}."),
            Some("dimensions"),
        ));
    }
    let dims = dims as usize;
    let per_vec = if f.base64 { dims * 4 / 3 + 8 } else { dims * 12 };
    let mut out = Vec::with_capacity(128 + model.len() + inputs.len() * (48 + per_vec));
    let mut vec = vec![0f32; dims];
    let mut raw = Vec::new();
    out.put_slice(b"{\"object\":\"list\",\"data\":[");
    let mut tokens = 0u64;
    for (i, input) in inputs.iter().enumerate() {
        tokens = tokens.saturating_add(input.tokens);
        let mut norm = 0f32;
        for (j, x) in vec.iter_mut().enumerate() {
            let h = mix(input.hash ^ (j as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            // Top 24 bits -> [-1, 1).
            *x = ((h >> 40) as f32 / (1u64 << 23) as f32) - 1.0;
            norm += *x * *x;
        }
        let scale = if norm > 0.0 { 1.0 / norm.sqrt() } else { 1.0 };
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(b"{\"object\":\"embedding\",\"index\":");
        push_u64(&mut out, i as u64);
        out.put_slice(b",\"embedding\":");
        if f.base64 {
            raw.clear();
            for x in &vec {
                raw.extend_from_slice(&(x * scale).to_le_bytes());
            }
            out.put_u8(b'"');
            push_base64(&mut out, &raw);
            out.put_u8(b'"');
        } else {
            out.put_u8(b'[');
            for (j, x) in vec.iter().enumerate() {
                if j > 0 {
                    out.put_u8(b',');
                }
                // Display for f32 is the shortest text that reads back exactly.
                out.extend_from_slice((x * scale).to_string().as_bytes());
            }
            out.put_u8(b']');
        }
        out.put_u8(b'}');
    }
    out.put_slice(b"],\"model\":");
    push_str(&mut out, &model);
    out.put_slice(b",\"usage\":");
    push_usage(&mut out, tokens, None);
    out.put_u8(b'}');
    Ok(Bytes::from(out))
}

/// `GET /v1/models` body: an OpenAI list of `models`.
pub fn models_body(models: &[&str], created: u64) -> Bytes {
    let mut out = Vec::with_capacity(32 + models.len() * 96);
    out.put_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, m) in models.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(b"{\"id\":");
        push_str(&mut out, m);
        out.put_slice(b",\"object\":\"model\",\"created\":");
        push_u64(&mut out, created);
        out.put_slice(b",\"owned_by\":\"sluice-mock\"}");
    }
    out.put_slice(b"]}");
    Bytes::from(out)
}

/// OpenAI's error shape: `{"error":{"message","type","param","code"}}`.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(64 + message.len() + kind.len());
    out.put_slice(b"{\"error\":{\"message\":");
    push_str(&mut out, message);
    out.put_slice(b",\"type\":");
    push_str(&mut out, kind);
    out.put_slice(b",\"param\":");
    push_opt_str(&mut out, param);
    out.put_slice(b",\"code\":");
    push_opt_str(&mut out, code);
    out.put_slice(b"}}");
    Bytes::from(out)
}
