//! Ingress: request id, the body under its size limit, and a single lazy
//! pass over the top-level JSON object that reads only what the gateway
//! needs (`model`, `stream`, `stream_options`) and checks their types.
//! Everything else passes through untouched and unparsed.

use std::ops::Range;

use actix_web::HttpRequest;
use actix_web::web::Payload;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sonic_rs::{JsonType, JsonValueTrait};

use crate::error::GatewayError;
use crate::providers::Endpoint;

/// Deepest JSON nesting accepted (see [`crate::json::nesting_exceeds`] for
/// why there is a limit at all). Real tool schemas stay far below it.
pub const MAX_DEPTH: usize = 256;

/// Longest client-supplied `x-request-id` that is echoed; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// The client's `x-request-id` if it is sane, else a fresh one.
pub fn request_id(req: &HttpRequest) -> String {
    if let Some(v) = req.headers().get("x-request-id")
        && let Ok(s) = v.to_str()
        && !s.is_empty()
        && s.len() <= MAX_REQUEST_ID
        && s.bytes().all(|b| b.is_ascii_graphic())
    {
        return s.to_string();
    }
    new_request_id()
}

pub fn new_request_id() -> String {
    format!("req_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Read the whole body, refusing it with 413 as soon as it passes `limit`
/// (at once from `Content-Length` when the client sent one).
pub async fn read_body(req: &HttpRequest, mut payload: Payload, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        return Err(GatewayError::PayloadTooLarge { size: len, limit });
    }
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut size: usize = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| GatewayError::invalid(format!("Could not read the request body: {e}"), None))?;
        size += chunk.len();
        if size > limit {
            return Err(GatewayError::PayloadTooLarge { size: size as u64, limit });
        }
        // Most bodies arrive in one chunk: keep it as is, copy only when a
        // second chunk shows up.
        match (&mut first, &mut buf) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(declared.map_or(f.len() + chunk.len(), |d| d as usize));
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                buf = Some(b);
                first = None;
            }
            (_, Some(b)) => b.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, buf) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// What the gateway read from a JSON request body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peek {
    pub model: String,
    /// Byte range of the `model` value (with its quotes) in the body.
    pub model_span: Range<usize>,
    pub stream: bool,
    /// The client asked for `stream_options.include_usage: true`.
    pub include_usage: bool,
    /// Byte range of the `stream_options` value, when present.
    pub stream_options_span: Option<Range<usize>>,
    /// Bytes of the prompt (`messages`, `prompt` or `input`), for a token estimate.
    pub prompt_bytes: usize,
    /// `max_completion_tokens` or `max_tokens`, when given.
    pub max_tokens: Option<u64>,
}

impl Peek {
    /// Tokens the request may need: about one token per 4 bytes of prompt
    /// (JSON syntax included, so it errs on the large side) plus the
    /// requested output.
    pub fn estimated_tokens(&self) -> u64 {
        self.prompt_estimate() + self.max_tokens.unwrap_or(0)
    }

    /// The prompt part of the estimate: about one token per 4 bytes.
    pub fn prompt_estimate(&self) -> u64 {
        (self.prompt_bytes as u64).div_ceil(4)
    }
}

fn span_of(body: &[u8], raw: &str) -> Range<usize> {
    // LazyValue's raw text borrows from `body`, so its address gives its offset.
    let start = (raw.as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
    start..start + raw.len()
}

fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::Null => "null",
        JsonType::Boolean => "a boolean",
        JsonType::Number => "a number",
        JsonType::String => "a string",
        JsonType::Array => "an array",
        JsonType::Object => "an object",
    }
}

fn wrong_type(field: &'static str, want: &str, got: JsonType) -> GatewayError {
    GatewayError::invalid(
        format!("Invalid type for '{field}': expected {want}, but got {}.", type_name(got)),
        Some(field),
    )
}

fn duplicate(field: &'static str) -> GatewayError {
    // Two values for one key would let the gateway read one and the upstream
    // another (e.g. an allowed model and a forbidden one).
    GatewayError::invalid(format!("Duplicate key '{field}' in the request body."), Some(field))
}

/// Read `model`, `stream` and `stream_options` in one validating pass over the
/// top-level object, and check the endpoint's required fields.
pub fn peek(body: &[u8], endpoint: Endpoint) -> Result<Peek, GatewayError> {
    let trimmed = body.trim_ascii_start();
    match trimmed.first() {
        None => {
            return Err(GatewayError::invalid(
                "The request body is empty. Send a JSON object with at least a 'model'.",
                None,
            ));
        }
        Some(b'{') => {}
        Some(_) => {
            return Err(GatewayError::invalid(
                "We could not parse the JSON body of your request: the body must be a JSON object.",
                None,
            ));
        }
    }
    if crate::json::nesting_exceeds(body, MAX_DEPTH) {
        return Err(GatewayError::invalid(
            format!("The JSON body nests arrays/objects deeper than {MAX_DEPTH} levels."),
            None,
        ));
    }
    let mut p = Peek::default();
    let mut seen_model = false;
    let mut seen_stream = false;
    let required = endpoint.required_fields();
    let mut seen_required = [false; 2];
    for item in sonic_rs::to_object_iter(body) {
        let (key, value) = item.map_err(|e| {
            GatewayError::invalid(format!("We could not parse the JSON body of your request: {e}"), None)
        })?;
        match &*key {
            "model" => {
                if seen_model {
                    return Err(duplicate("model"));
                }
                seen_model = true;
                let s = value.as_str().ok_or_else(|| wrong_type("model", "a string", value.get_type()))?;
                p.model = s.to_string();
                p.model_span = span_of(body, value.as_raw_str());
            }
            "stream" => {
                if seen_stream {
                    return Err(duplicate("stream"));
                }
                seen_stream = true;
                p.stream = match value.get_type() {
                    JsonType::Boolean => value.as_bool().unwrap_or(false),
                    JsonType::Null => false,
                    t => return Err(wrong_type("stream", "a boolean", t)),
                };
            }
            "stream_options" => {
                if p.stream_options_span.is_some() {
                    return Err(duplicate("stream_options"));
                }
                p.stream_options_span = Some(span_of(body, value.as_raw_str()));
                match value.get_type() {
                    JsonType::Null => {}
                    JsonType::Object => {
                        if let Ok(u) = sonic_rs::get(value.as_raw_str(), ["include_usage"]) {
                            p.include_usage = match u.get_type() {
                                JsonType::Boolean => u.as_bool().unwrap_or(false),
                                JsonType::Null => false,
                                t => return Err(wrong_type("stream_options.include_usage", "a boolean", t)),
                            };
                        }
                    }
                    t => return Err(wrong_type("stream_options", "an object", t)),
                }
            }
            k if let Some(i) = required.iter().position(|(name, _)| *name == k) => {
                if let Some(seen) = seen_required.get_mut(i) {
                    *seen = true;
                }
                let (name, kinds) = required[i];
                let t = value.get_type();
                if !kinds.contains(&t) {
                    let want = kinds.iter().map(|k| type_name(*k)).collect::<Vec<_>>().join(" or ");
                    return Err(wrong_type(name, &want, t));
                }
                if name == "messages" && value.as_raw_str()[1..].trim_start().starts_with(']') {
                    return Err(GatewayError::invalid(
                        "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                        Some("messages"),
                    ));
                }
                if name == "max_tokens" {
                    let n = value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                        GatewayError::invalid(
                            "Invalid 'max_tokens': expected an integer of at least 1.",
                            Some("max_tokens"),
                        )
                    })?;
                    p.max_tokens = Some(p.max_tokens.map_or(n, |m| m.max(n)));
                } else {
                    p.prompt_bytes = value.as_raw_str().len();
                }
            }
            "max_tokens" | "max_completion_tokens" => match value.get_type() {
                JsonType::Null => {}
                JsonType::Number => {
                    let n = value.as_u64().ok_or_else(|| {
                        GatewayError::invalid(format!("Invalid '{key}': expected a non-negative integer."), None)
                    })?;
                    p.max_tokens = Some(p.max_tokens.map_or(n, |m| m.max(n)));
                }
                t => {
                    return Err(GatewayError::invalid(
                        format!("Invalid type for '{}': expected an integer, but got {}.", &*key, type_name(t)),
                        None,
                    ));
                }
            },
            "prompt" if required.is_empty() => {
                p.prompt_bytes = value.as_raw_str().len();
            }
            _ => {}
        }
    }
    if !seen_model {
        return Err(GatewayError::invalid("You must provide a model parameter.", Some("model")));
    }
    for (i, (name, _)) in required.iter().enumerate() {
        if !seen_required.get(i).copied().unwrap_or(true) {
            return Err(GatewayError::invalid(format!("Missing required parameter: '{name}'."), Some(name)));
        }
    }
    if p.stream && !endpoint.streams() {
        return Err(GatewayError::invalid(
            format!("'stream' is not supported on {}.", endpoint.path()),
            Some("stream"),
        ));
    }
    Ok(p)
}

/// Rewrite the body for the upstream: replace `model` when the deployment's
/// name differs, and ask for usage on streams when the client did not.
/// Returns the original bytes (no copy) when nothing must change.
pub fn rewrite(body: &Bytes, peek: &Peek, upstream_model: &str, want_usage: bool) -> Bytes {
    let change_model = peek.model != upstream_model;
    let inject_usage = want_usage && peek.stream && !peek.include_usage;
    if !change_model && !inject_usage {
        return body.clone();
    }
    // (range to replace, replacement), applied in body order.
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::with_capacity(2);
    if change_model {
        edits.push((peek.model_span.clone(), json_string(upstream_model)));
    }
    if inject_usage {
        match &peek.stream_options_span {
            Some(span) => edits.push((span.clone(), stream_options_with_usage(&body[span.clone()]))),
            None => {
                // Insert right after the opening brace; the object already has
                // a `model` member, so a trailing comma is always valid.
                let brace = body.iter().position(|&b| b == b'{').unwrap_or(0);
                edits.push((brace + 1..brace + 1, b"\"stream_options\":{\"include_usage\":true},".to_vec()));
            }
        }
    }
    edits.sort_by_key(|(r, _)| r.start);
    let extra: usize = edits.iter().map(|(_, v)| v.len()).sum();
    let mut out = BytesMut::with_capacity(body.len() + extra);
    let mut pos = 0;
    for (range, replacement) in edits {
        out.extend_from_slice(&body[pos..range.start]);
        out.extend_from_slice(&replacement);
        pos = range.end;
    }
    out.extend_from_slice(&body[pos..]);
    out.freeze()
}

fn json_string(s: &str) -> Vec<u8> {
    sonic_rs::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec())
}

/// `stream_options` with `include_usage: true` and every other member kept.
fn stream_options_with_usage(raw: &[u8]) -> Vec<u8> {
    let mut out = b"{\"include_usage\":true".to_vec();
    for (k, v) in sonic_rs::to_object_iter(raw).flatten() {
        if &*k == "include_usage" {
            continue;
        }
        out.push(b',');
        out.extend_from_slice(&json_string(&k));
        out.push(b':');
        out.extend_from_slice(v.as_raw_str().as_bytes());
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Peek, GatewayError> {
        peek(body.as_bytes(), Endpoint::Chat)
    }

    fn msg(e: GatewayError) -> String {
        e.to_string()
    }

    #[test]
    fn reads_fields_and_spans() {
        let body = r#"{"messages":[{"role":"user","content":"hi"}], "model" : "gpt-4o", "stream":true}"#;
        let p = chat(body).unwrap();
        assert_eq!(p.model, "gpt-4o");
        assert_eq!(&body[p.model_span.clone()], "\"gpt-4o\"");
        assert!(p.stream);
        assert!(!p.include_usage);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(msg(chat("").unwrap_err()).contains("empty"));
        assert!(msg(chat("[1]").unwrap_err()).contains("JSON object"));
        assert!(msg(chat(r#"{"model": "a", "messages": [}"#).unwrap_err()).contains("could not parse"));
        assert!(msg(chat(r#"{"messages":[{"role":"user"}]}"#).unwrap_err()).contains("model parameter"));
        let e = chat(r#"{"model": 5, "messages":[{}]}"#).unwrap_err();
        assert_eq!(e.param(), Some("model"));
        assert!(msg(e).contains("expected a string, but got a number"));
        let e = chat(r#"{"model":"a","stream":"yes","messages":[{}]}"#).unwrap_err();
        assert_eq!(e.param(), Some("stream"));
        let e = chat(r#"{"model":"a"}"#).unwrap_err();
        assert!(msg(e).contains("'messages'"));
        let e = chat(r#"{"model":"a","messages":"hi"}"#).unwrap_err();
        assert!(msg(e).contains("expected an array"));
        let e = chat(r#"{"model":"a","messages":[ ]}"#).unwrap_err();
        assert!(msg(e).contains("empty array"));
        let e = chat(r#"{"model":"a","model":"b","messages":[{}]}"#).unwrap_err();
        assert!(msg(e).contains("Duplicate"));
        let e = peek(br#"{"model":"a","input":"x","stream":true}"#, Endpoint::Embeddings).unwrap_err();
        assert_eq!(e.param(), Some("stream"));
        assert!(peek(br#"{"model":"a"}"#, Endpoint::Embeddings).is_err());
        assert!(peek(br#"{"model":"a","prompt":"x"}"#, Endpoint::Completions).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut body = String::from(r#"{"model":"m","messages":[{"role":"user","content":"#);
        body.push_str(&"[".repeat(100_000));
        body.push_str(&"]".repeat(100_000));
        body.push_str("}]}");
        let e = chat(&body).unwrap_err();
        assert!(msg(e).contains("deeper than"));
    }

    #[test]
    fn rewrite_is_zero_copy_when_nothing_changes() {
        let body = Bytes::from_static(br#"{"model":"m","messages":[{}]}"#);
        let p = chat(std::str::from_utf8(&body).unwrap()).unwrap();
        let out = rewrite(&body, &p, "m", true);
        assert_eq!(out.as_ptr(), body.as_ptr());
    }

    #[test]
    fn rewrite_model_and_inject_usage() {
        let body = Bytes::from_static(br#"{"model":"alias","stream":true,"messages":[{"role":"user","content":"x"}]}"#);
        let p = chat(std::str::from_utf8(&body).unwrap()).unwrap();
        let out = rewrite(&body, &p, "real\"name", true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "real\"name");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["messages"][0]["content"], "x");
    }

    #[test]
    fn rewrite_existing_stream_options_keeps_other_members() {
        let body = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1},"messages":[{}]}"#,
        );
        let p = chat(std::str::from_utf8(&body).unwrap()).unwrap();
        assert!(!p.include_usage);
        let out = rewrite(&body, &p, "m", true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
        // Already asked: untouched.
        let body2 = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{}]}"#,
        );
        let p2 = chat(std::str::from_utf8(&body2).unwrap()).unwrap();
        assert!(p2.include_usage);
        assert_eq!(rewrite(&body2, &p2, "m", true).as_ptr(), body2.as_ptr());
    }
}
