//! The body peek: one lazy pass over the top-level JSON object of a request
//! that reads only what the gateway needs (`model`, `stream`,
//! `stream_options`, the prompt's size, `max_tokens`) and checks their
//! types. Everything else passes through untouched and unparsed.
//!
//! Low in the crate on purpose: the pipeline peeks the client's body, the
//! providers rewrite it from the spans found here, and the cache and the
//! embeddings batcher peek bodies of their own.

use std::ops::Range;

use sonic_rs::{JsonType, JsonValueTrait};

use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::json::MAX_DEPTH;

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
    /// Bytes of the prompt (`messages`, `prompt` or `input`, and the
    /// Responses API's `instructions`), for a token estimate.
    pub prompt_bytes: usize,
    /// `max_completion_tokens`, `max_tokens` or `max_output_tokens`, when given.
    pub max_tokens: Option<u64>,
}

impl Peek {
    /// Tokens the request may need: about one token per 4 bytes of prompt
    /// (JSON syntax included, so it errs on the large side) plus the
    /// requested output. Saturating: a client may ask for `max_tokens`
    /// up to u64::MAX, and a wrapped sum would be a small estimate that
    /// fits any token limit; saturated, it is larger than every limit and
    /// refused like any request that can never fit.
    pub fn estimated_tokens(&self) -> u64 {
        self.prompt_estimate().saturating_add(self.max_tokens.unwrap_or(0))
    }

    /// The prompt part of the estimate: about one token per 4 bytes.
    pub fn prompt_estimate(&self) -> u64 {
        (self.prompt_bytes as u64).div_ceil(4)
    }

    /// Read `model`, `stream` and `stream_options` in one validating pass over the
    /// top-level object, and check the endpoint's required fields.
    pub fn read(body: &[u8], endpoint: Endpoint) -> Result<Peek, GatewayError> {
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
        // JSON is UTF-8. sonic-rs does not check the bytes of keys it skips
        // or reads (a debug assertion in its `as_str`, hit by the fuzzer
        // through a key nested in `tools`), so a body is checked whole here,
        // before any translator parses it: about 40 GB/s.
        if std::str::from_utf8(body).is_err() {
            return Err(GatewayError::invalid(
                "We could not parse the JSON body of your request: it is not valid UTF-8.",
                None,
            ));
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
                "max_tokens" | "max_completion_tokens" | "max_output_tokens" => match value.get_type() {
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
                k if endpoint.prompt_fields().contains(&k) => {
                    p.prompt_bytes += value.as_raw_str().len();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Peek, GatewayError> {
        Peek::read(body.as_bytes(), Endpoint::Chat)
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
    fn invalid_utf8_anywhere_is_refused() {
        // The fuzzer's find: bytes that are not UTF-8 in a key deep inside
        // `tools`, where neither peek's lazy pass nor sonic-rs looks.
        let body = b"{\"model\":\"m\",\"tools\":[{\"function\":{\"parameters\":{\"propert\x80\x80\":1}}}]}";
        let e = Peek::read(body, Endpoint::Chat).unwrap_err();
        assert!(msg(e).contains("not valid UTF-8"));
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
        let e = Peek::read(br#"{"model":"a","input":"x","stream":true}"#, Endpoint::Embeddings).unwrap_err();
        assert_eq!(e.param(), Some("stream"));
        assert!(Peek::read(br#"{"model":"a"}"#, Endpoint::Embeddings).is_err());
        assert!(Peek::read(br#"{"model":"a","prompt":"x"}"#, Endpoint::Completions).is_ok());
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
}
