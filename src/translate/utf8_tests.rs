//! Every entry point that parses bytes refuses invalid UTF-8 itself (see
//! [`super::utf8`]), one test per translator direction. Each document is
//! valid but for one byte, 0x80, in a nested object key: sonic-rs reads keys
//! without checking UTF-8, so before these checks such a key became a
//! `&str` that was not UTF-8 (the fuzzer's debug-assertion crash in
//! `anthropic_request`, a key `"propert\x80..."` inside `tools`). The same
//! document with a valid key must still translate, so no test passes by
//! refusing everything.

use super::embeddings::Encoding;
use super::*;

/// `template` with each `@` replaced by a valid key byte (`k`), and by `k`
/// followed by a lone continuation byte (invalid UTF-8).
fn pair(template: &str) -> (Vec<u8>, Vec<u8>) {
    let parts: Vec<&[u8]> = template.as_bytes().split(|&b| b == b'@').collect();
    assert!(parts.len() > 1, "the template has no key to spoil");
    (parts.join(&b"k"[..]), parts.join(&b"k\x80"[..]))
}

fn refused(message: &str) {
    assert!(message.contains("not valid UTF-8"), "not refused for its UTF-8: {message}");
}

/// An OpenAI chat request whose tool schema has the key.
const CHAT_REQUEST: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],
"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"@":{"type":"string"}}}}}]}"#;
/// An OpenAI chat completion whose usage has the key.
const CHAT_ANSWER: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,
"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"details":{"@":0}}}"#;
/// An OpenAI chunk whose delta has the key.
const CHAT_CHUNK: &str = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",
"choices":[{"index":0,"delta":{"role":"assistant","content":"hi","extra":{"@":1}},"finish_reason":null}]}"#;

/// Feed one event to `t`: the good one must pass, the bad one be refused.
fn stream_pair(mut t: impl StreamTranslate, mut bad_t: impl StreamTranslate, template: &str) {
    let (good, bad) = pair(template);
    let mut out = SseOut::new();
    t.event(&good, &mut out).unwrap();
    match bad_t.event(&bad, &mut out) {
        Err(StreamError::Invalid(m)) => refused(&m),
        other => panic!("{other:?}"),
    }
}

#[test]
fn anthropic_request() {
    let (good, bad) = pair(CHAT_REQUEST);
    let opts = anthropic::request::Options::default();
    let messages = anthropic::request::translate(&good, "m", &opts).unwrap();
    refused(&anthropic::request::translate(&bad, "m", &opts).unwrap_err().message);
    // A Messages body rewritten for a cloud (also a client's own, on `/v1/messages`).
    let (good, bad) = pair(r#"{"model":"c","messages":[{"role":"user","content":"hi"}],"metadata":{"@":1}}"#);
    assert!(anthropic::cloud::body(&good, anthropic::cloud::Cloud::Bedrock).is_ok() && !messages.is_empty());
    refused(&anthropic::cloud::body(&bad, anthropic::cloud::Cloud::Vertex).unwrap_err().message);
}

#[test]
fn anthropic_response() {
    let (good, bad) = pair(
        r#"{"id":"msg","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"hi"}],
        "stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1,"server_tool_use":{"@":1}}}"#,
    );
    anthropic::response::translate(&good, 0).unwrap();
    refused(&anthropic::response::translate(&bad, 0).unwrap_err());
    assert!(anthropic::usage_from_body(&good).is_some() && anthropic::usage_from_body(&bad).is_none());
    let (good, bad) = pair(r#"{"type":"error","error":{"type":"overloaded_error","message":"busy","x":{"@":1}}}"#);
    assert!(anthropic::response::error_parts(&good).is_some() && anthropic::response::error_parts(&bad).is_none());
}

#[test]
fn anthropic_stream() {
    stream_pair(
        anthropic::stream::StreamTranslator::new(0),
        anthropic::stream::StreamTranslator::new(0),
        r#"{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"c",
        "usage":{"input_tokens":1,"output_tokens":0,"x":{"@":1}}}}"#,
    );
}

#[test]
fn gemini_request() {
    let (good, bad) = pair(CHAT_REQUEST);
    gemini::request::translate(&good).unwrap();
    refused(&gemini::request::translate(&bad).unwrap_err().message);
}

const GEMINI_ANSWER: &str = r#"{"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"},"finishReason":"STOP",
"index":0,"safetyRatings":[{"@":1}]}],"modelVersion":"g","responseId":"r"}"#;

#[test]
fn gemini_response() {
    let (good, bad) = pair(GEMINI_ANSWER);
    gemini::response::translate(&good, "g", 0).unwrap();
    refused(&gemini::response::translate(&bad, "g", 0).unwrap_err());
    let (good, bad) =
        pair(r#"{"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED","details":[{"@":1}]}}"#);
    assert!(gemini::error_parts(&good).is_some() && gemini::error_parts(&bad).is_none());
}

#[test]
fn gemini_stream() {
    stream_pair(
        gemini::stream::StreamTranslator::new("g", 0),
        gemini::stream::StreamTranslator::new("g", 0),
        GEMINI_ANSWER,
    );
    // A mid-stream error object is read only once it is known to be text.
    let (good, bad) = pair(r#"{"error":{"code":503,"message":"down","status":"UNAVAILABLE","details":[{"@":1}]}}"#);
    let mut out = SseOut::new();
    assert!(matches!(
        gemini::stream::StreamTranslator::new("g", 0).event(&good, &mut out),
        Err(StreamError::Upstream { .. })
    ));
    match gemini::stream::StreamTranslator::new("g", 0).event(&bad, &mut out) {
        Err(StreamError::Invalid(m)) => refused(&m),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bedrock_request() {
    let (good, bad) = pair(CHAT_REQUEST);
    bedrock::request::translate(&good).unwrap();
    refused(&bedrock::request::translate(&bad).unwrap_err().message);
    let (good, bad) = pair(r#"{"model":"e","input":["a"],"x":{"@":1}}"#);
    for family in [bedrock::embed::Family::TitanV2, bedrock::embed::Family::Cohere] {
        bedrock::embed::request(&good, family).unwrap();
        refused(&bedrock::embed::request(&bad, family).unwrap_err().message);
    }
}

#[test]
fn bedrock_response() {
    let (good, bad) = pair(
        r#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"stopReason":"end_turn",
        "usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2},"metrics":{"@":1}}"#,
    );
    bedrock::response::translate(&good, "id", "m", 0).unwrap();
    refused(&bedrock::response::translate(&bad, "id", "m", 0).unwrap_err());
    let (good, bad) = pair(r#"{"message":"no","x":{"@":1}}"#);
    assert!(bedrock::error_message(&good).is_some() && bedrock::error_message(&bad).is_none());
    let (good, bad) = pair(r#"{"embedding":[0.5],"inputTextTokenCount":1,"x":{"@":1}}"#);
    bedrock::embed::answer(bedrock::embed::Family::TitanV2, &good, 1).unwrap();
    refused(&bedrock::embed::answer(bedrock::embed::Family::TitanV2, &bad, 1).err().unwrap());
}

#[test]
fn bedrock_stream() {
    let new = || bedrock::stream::StreamTranslator::new("id", "m", 0);
    stream_pair(new(), new(), r#"{"contentBlockDelta":{"contentBlockIndex":0,"delta":{"text":"hi","x":{"@":1}}}}"#);
    // An exception event is read only once it is known to be text.
    let (good, bad) = pair(r#"{"throttlingException":{"message":"slow","x":{"@":1}}}"#);
    let mut out = SseOut::new();
    assert!(matches!(new().event(&good, &mut out), Err(StreamError::Upstream { .. })));
    match new().event(&bad, &mut out) {
        Err(StreamError::Invalid(m)) => refused(&m),
        other => panic!("{other:?}"),
    }
}

#[test]
fn messages_request() {
    let (good, bad) =
        pair(r#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"metadata":{"@":1}}"#);
    messages::request::translate(&good, "m").unwrap();
    refused(&messages::request::translate(&bad, "m").unwrap_err().message);
}

#[test]
fn messages_response() {
    let (good, bad) = pair(CHAT_ANSWER);
    messages::response::translate(&good).unwrap();
    refused(&messages::response::translate(&bad).unwrap_err());
    // An upstream's own error body, passed on in Anthropic's shape.
    let (good, bad) = pair(r#"{"error":{"message":"no","type":"invalid_request_error","x":{"@":1}}}"#);
    let read = |b: &[u8]| String::from_utf8(messages::error_body(400, b, true, "unreadable").to_vec()).unwrap();
    assert!(read(&good).contains("\"no\"") && read(&bad).contains("unreadable"));
}

#[test]
fn messages_stream() {
    stream_pair(messages::stream::StreamTranslator::new(), messages::stream::StreamTranslator::new(), CHAT_CHUNK);
}

#[test]
fn responses_request() {
    let opts = responses::request::Options::default();
    let (good, bad) = pair(
        r#"{"model":"m","input":"hi","tools":[{"type":"function","name":"f","parameters":{"type":"object","properties":{"@":{}}}}]}"#,
    );
    responses::request::translate(&good, "m", None, &opts).unwrap();
    refused(&responses::request::translate(&bad, "m", None, &opts).unwrap_err().message);
    assert!(responses::request::input_items(&good).is_some() && responses::request::input_items(&bad).is_none());
    refused(&responses::history::expand(&bad, b"[]", "m").unwrap_err());
    // A stored conversation is checked as well as the request.
    let (good_h, bad_h) = pair(r#"[{"type":"message","role":"user","content":"hi","x":{"@":1}}]"#);
    let next = br#"{"model":"m","input":"next"}"#;
    responses::request::translate(next, "m", Some(&good_h), &opts).unwrap();
    refused(&responses::request::translate(next, "m", Some(&bad_h), &opts).unwrap_err().message);
    responses::history::expand(&good, &good_h, "m").unwrap();
    assert!(responses::history::expand(next, &bad_h, "m").is_err());
    assert!(responses::history::conversation(Some(&good_h), b"[]", b"[]").is_ok());
    assert!(responses::history::conversation(Some(&bad_h), b"[]", b"[]").is_err());
}

#[test]
fn responses_response() {
    let (good, bad) = pair(CHAT_ANSWER);
    responses::response::translate(&good, &responses::Context::default()).unwrap();
    refused(&responses::response::translate(&bad, &responses::Context::default()).err().unwrap());
    // A Response object from a deployment that serves the Responses API.
    let (good, bad) = pair(
        r#"{"id":"r","output":[{"type":"message","x":{"@":1}}],"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}"#,
    );
    assert!(responses::history::output_items(&good).is_some() && responses::history::output_items(&bad).is_none());
    assert!(
        responses::history::usage_from_body(&good).is_some() && responses::history::usage_from_body(&bad).is_none()
    );
    let (good, bad) = pair(
        r#"{"type":"response.completed","response":{"x":{"@":1},"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}}"#,
    );
    assert!(responses::history::usage_from_event(&good).is_some());
    assert!(responses::history::usage_from_event(&bad).is_none());
}

#[test]
fn responses_stream() {
    let new = || responses::stream::StreamTranslator::new(responses::Context::default());
    stream_pair(new(), new(), CHAT_CHUNK);
}

#[test]
fn vertex_embeddings() {
    let (good, bad) = pair(r#"{"model":"e","input":"a","x":{"@":1}}"#);
    vertex::request(&good).unwrap();
    refused(&vertex::request(&bad).unwrap_err().message);
    let (good, bad) =
        pair(r#"{"predictions":[{"embeddings":{"values":[0.5],"statistics":{"token_count":1,"x":{"@":1}}}}]}"#);
    vertex::response(&good, "e", Encoding::Float).unwrap();
    refused(&vertex::response(&bad, "e", Encoding::Float).unwrap_err());
}
