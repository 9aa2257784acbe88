//! The body peek: one pass that checks a request's JSON and notes its
//! top-level members (`json::check_top`), then a read of only what the
//! gateway needs (`model`, `stream`, `stream_options`, the prompt's size,
//! `max_tokens`), with their types checked. Everything else passes through
//! untouched and unparsed.
//!
//! Low in the crate on purpose: the pipeline peeks the client's body, the
//! providers rewrite it from the spans found here, and the cache and the
//! embeddings batcher peek bodies of their own.

use std::borrow::Cow;
use std::ops::Range;

use sonic_rs::JsonType;

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
        // The whole body is checked in one pass (UTF-8, nesting, RFC 8259
        // syntax) that also notes where each top-level member is; they are
        // read from there without a parser. sonic-rs's lazy object walk cost
        // ~2.9k instructions on a small chat body (docs/performance.md,
        // "The request's and the answer's JSON read in their checks").
        let members = crate::json::check_top(body).map_err(|why| unparsable(body, why))?;
        let mut p = Peek::default();
        let mut seen_model = false;
        let mut seen_stream = false;
        let required = endpoint.required_fields();
        let mut seen_required = [false; 2];
        for (key, span) in members {
            let key = name(body.get(key).unwrap_or_default());
            let raw = body.get(span.clone()).unwrap_or_default();
            let t = json_type(raw);
            match &*key {
                b"model" => {
                    if seen_model {
                        return Err(duplicate("model"));
                    }
                    seen_model = true;
                    if t != JsonType::String {
                        return Err(wrong_type("model", "a string", t));
                    }
                    p.model = text(raw);
                    p.model_span = span;
                }
                b"stream" => {
                    if seen_stream {
                        return Err(duplicate("stream"));
                    }
                    seen_stream = true;
                    p.stream = match t {
                        JsonType::Boolean => raw == b"true",
                        JsonType::Null => false,
                        t => return Err(wrong_type("stream", "a boolean", t)),
                    };
                }
                b"stream_options" => {
                    if p.stream_options_span.is_some() {
                        return Err(duplicate("stream_options"));
                    }
                    p.stream_options_span = Some(span.clone());
                    match t {
                        JsonType::Null => {}
                        JsonType::Object => {
                            let first = crate::json::members(body, span.start)
                                .find(|(k, _)| *name(k) == *b"include_usage")
                                .map(|(_, v)| body.get(v).unwrap_or_default());
                            if let Some(u) = first {
                                p.include_usage = match json_type(u) {
                                    JsonType::Boolean => u == b"true",
                                    JsonType::Null => false,
                                    t => return Err(wrong_type("stream_options.include_usage", "a boolean", t)),
                                };
                            }
                        }
                        t => return Err(wrong_type("stream_options", "an object", t)),
                    }
                }
                k if let Some(i) = required.iter().position(|(name, _)| name.as_bytes() == k) => {
                    if let Some(seen) = seen_required.get_mut(i) {
                        *seen = true;
                    }
                    let (name, kinds) = required[i];
                    if !kinds.contains(&t) {
                        let want = kinds.iter().map(|k| type_name(*k)).collect::<Vec<_>>().join(" or ");
                        return Err(wrong_type(name, &want, t));
                    }
                    if name == "messages" && raw.get(1..).unwrap_or_default().trim_ascii_start().starts_with(b"]") {
                        return Err(GatewayError::invalid(
                            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                            Some("messages"),
                        ));
                    }
                    if name == "max_tokens" {
                        let n = crate::json::as_u64(raw).filter(|n| *n > 0).ok_or_else(|| {
                            GatewayError::invalid(
                                "Invalid 'max_tokens': expected an integer of at least 1.",
                                Some("max_tokens"),
                            )
                        })?;
                        p.max_tokens = Some(p.max_tokens.map_or(n, |m| m.max(n)));
                    } else {
                        p.prompt_bytes = raw.len();
                    }
                }
                b"max_tokens" | b"max_completion_tokens" | b"max_output_tokens" => match t {
                    JsonType::Null => {}
                    JsonType::Number => {
                        let n = crate::json::as_u64(raw).ok_or_else(|| {
                            let key = String::from_utf8_lossy(&key);
                            GatewayError::invalid(format!("Invalid '{key}': expected a non-negative integer."), None)
                        })?;
                        p.max_tokens = Some(p.max_tokens.map_or(n, |m| m.max(n)));
                    }
                    t => {
                        let key = String::from_utf8_lossy(&key);
                        return Err(GatewayError::invalid(
                            format!("Invalid type for '{key}': expected an integer, but got {}.", type_name(t)),
                            None,
                        ));
                    }
                },
                k if endpoint.prompt_fields().iter().any(|f| f.as_bytes() == k) => {
                    p.prompt_bytes += raw.len();
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

/// Why a body that is not one JSON document was refused. The syntax
/// error's place comes from sonic-rs, run on the refused body only, and
/// only when the body does not nest past the limit (which sonic-rs would
/// recurse into, see [`crate::json::nesting_exceeds`]).
fn unparsable(body: &[u8], why: crate::json::Unfit) -> GatewayError {
    use crate::json::Unfit;
    let message = match why {
        Unfit::NotUtf8 => "We could not parse the JSON body of your request: it is not valid UTF-8.".to_string(),
        Unfit::TooDeep => format!("The JSON body nests arrays/objects deeper than {MAX_DEPTH} levels."),
        Unfit::NotJson if crate::json::nesting_exceeds(body, MAX_DEPTH) => {
            "We could not parse the JSON body of your request: it is not valid JSON.".to_string()
        }
        Unfit::NotJson => match sonic_rs::from_slice::<serde::de::IgnoredAny>(body) {
            Err(e) => format!("We could not parse the JSON body of your request: {e}"),
            Ok(_) => "We could not parse the JSON body of your request: it is not valid JSON.".to_string(),
        },
    };
    GatewayError::invalid(message, None)
}

/// A member's name (its bytes between the quotes, from a checked body),
/// its escapes (rare in a name) undone: `"mod\u0065l"` is `model` to every
/// upstream's parser, so it is here too. Compared as bytes: names are
/// matched, and only an error message needs them as text.
fn name(key: &[u8]) -> Cow<'_, [u8]> {
    if !key.contains(&b'\\') {
        return Cow::Borrowed(key);
    }
    let mut quoted = Vec::with_capacity(key.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(key);
    quoted.push(b'"');
    Cow::Owned(sonic_rs::from_slice::<String>(&quoted).unwrap_or_default().into_bytes())
}

/// A checked string value's text, its escapes undone.
fn text(raw: &[u8]) -> String {
    match raw.get(1..raw.len().saturating_sub(1)) {
        Some(inner) if !inner.contains(&b'\\') => std::str::from_utf8(inner).unwrap_or_default().to_owned(),
        _ => sonic_rs::from_slice::<String>(raw).unwrap_or_default(),
    }
}

/// A checked value's type, from its first byte.
fn json_type(raw: &[u8]) -> JsonType {
    match raw.first() {
        Some(b'"') => JsonType::String,
        Some(b'{') => JsonType::Object,
        Some(b'[') => JsonType::Array,
        Some(b't' | b'f') => JsonType::Boolean,
        Some(b'n') => JsonType::Null,
        _ => JsonType::Number,
    }
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
    fn names_and_values_are_read_with_their_escapes_undone() {
        // An escaped name is the same member to the upstream's parser: a
        // second `model` written so is still a duplicate.
        let e = chat(r#"{"model":"a","mod\u0065l":"b","messages":[{}]}"#).unwrap_err();
        assert!(msg(e).contains("Duplicate"));
        let p = chat(r#"{"mod\u0065l":"gpt-\u0034o","messages":[{}],"str\u0065am":true}"#).unwrap();
        assert_eq!(p.model, "gpt-4o");
        assert!(p.stream);
        let body = r#" { "messages" : [ { } ] , "model" : "a\"b" , "stream_options" : { "x" : [ "include_usage" ] , "include_usage" : true } } "#;
        let p = chat(body).unwrap();
        assert_eq!(p.model, "a\"b");
        assert_eq!(&body[p.model_span.clone()], r#""a\"b""#);
        assert!(p.include_usage);
        assert_eq!(
            &body[p.stream_options_span.clone().unwrap()],
            r#"{ "x" : [ "include_usage" ] , "include_usage" : true }"#
        );
        assert_eq!(p.prompt_bytes, "[ { } ]".len());
    }

    #[test]
    fn counts_and_types() {
        let p =
            chat(r#"{"model":"a","messages":[{}],"max_tokens":null,"max_completion_tokens":70,"max_output_tokens":9}"#);
        assert_eq!(p.unwrap().max_tokens, Some(70));
        for bad in
            [r#""max_tokens":-1"#, r#""max_tokens":1.5"#, r#""max_tokens":"7""#, r#""max_tokens":18446744073709551616"#]
        {
            assert!(chat(&format!(r#"{{"model":"a","messages":[{{}}],{bad}}}"#)).is_err(), "{bad}");
        }
        let e = Peek::read(br#"{"model":"a","messages":[{}],"max_tokens":0}"#, Endpoint::Messages).unwrap_err();
        assert_eq!(e.param(), Some("max_tokens"));
        let p = Peek::read(br#"{"model":"a","messages":[{}],"max_tokens":256}"#, Endpoint::Messages).unwrap();
        assert_eq!(p.max_tokens, Some(256));
        let e = chat(r#"{"model":"a","messages":[{}],"stream_options":{"include_usage":1}}"#).unwrap_err();
        assert!(msg(e).contains("stream_options.include_usage"));
        assert!(chat(r#"{"model":"a","messages":[{}],"stream_options":[]}"#).is_err());
        assert!(!chat(r#"{"model":"a","messages":[{}],"stream":null}"#).unwrap().stream);
    }

    #[test]
    fn only_one_json_document_passes() {
        // Trailing bytes, a bad escape or a raw control character deep in a
        // member the gateway does not read: refused, with where it went wrong.
        for bad in [
            "{\"model\":\"a\",\"messages\":[{}]} x",
            "{\"model\":\"a\",\"messages\":[{\"content\":\"\\q\"}]}",
            "{\"model\":\"a\",\"messages\":[{\"content\":\"\u{1}\"}]}",
            "{\"model\":\"a\",\"messages\":[{}],}",
        ] {
            let e = msg(chat(bad).unwrap_err());
            assert!(e.contains("could not parse") && e.contains("column"), "{bad}: {e}");
        }
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
