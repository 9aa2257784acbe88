//! Property tests of the translators: any valid OpenAI chat request (roles,
//! content parts, tools, tool calls and results, parameters) translates to
//! Anthropic and Gemini without panicking, into valid JSON; any Anthropic
//! request the same the other way; and an SSE stream split anywhere, in any
//! number of pieces, translates to exactly the same events as when whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};
use sluice::config::PromptCaching;
use sluice::sse::{SseSplitter, events};
use sluice::translate::{SseOut, StreamTranslate, anthropic, gemini, messages};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z ]{1,12}",
        any::<String>(),
        Just("quote \" backslash \\ newline \n tab \t nul \u{0} emoji 😀".to_string()),
    ]
}

fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{}".to_string()),
        Just(r#"{"city": "Paris", "n": [1, 2.5, null, true]}"#.to_string()),
        Just(String::new()),
        Just("[1,2]".to_string()),
        Just("{\"unterminated\": ".to_string()),
        any::<String>(),
        Just(format!("{}{}", "[".repeat(300), "]".repeat(300))),
    ]
}

fn part() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(|t| json!({"type": "text", "text": t})),
        text().prop_map(|t| json!({"type": "text", "text": t, "cache_control": {"type": "ephemeral"}})),
        Just(json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})),
        Just(json!({"type": "image_url", "image_url": {"url": "https://example.com/x.jpg", "detail": "low"}})),
        text().prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
        Just(
            json!({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}})
        ),
        Just(json!({"type": "file", "file": {"file_id": "file-abc"}})),
        Just(json!({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}})),
        Just(json!({"type": "refusal", "refusal": "no"})),
    ]
}

fn content() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        text().prop_map(Value::String),
        prop::collection::vec(part(), 0..4).prop_map(Value::Array)
    ]
}

fn tool_call() -> impl Strategy<Value = Value> {
    ("[a-z0-9_]{0,8}", "[a-z_]{1,8}", json_text()).prop_map(
        |(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}),
    )
}

fn message() -> impl Strategy<Value = Value> {
    prop_oneof![
        content().prop_map(|c| json!({"role": "system", "content": c})),
        content().prop_map(|c| json!({"role": "developer", "content": c})),
        content().prop_map(|c| json!({"role": "user", "content": c, "name": "bob"})),
        (content(), prop::collection::vec(tool_call(), 0..3))
            .prop_map(|(c, calls)| json!({"role": "assistant", "content": c, "tool_calls": calls})),
        ("[a-z0-9_]{0,8}", content()).prop_map(|(id, c)| json!({"role": "tool", "tool_call_id": id, "content": c})),
        ("[a-z_]{1,6}", json_text())
            .prop_map(|(n, a)| json!({"role": "assistant", "function_call": {"name": n, "arguments": a}})),
        ("[a-z_]{1,6}", text()).prop_map(|(n, c)| json!({"role": "function", "name": n, "content": c})),
        text().prop_map(|r| json!({"role": r, "content": "x"})),
    ]
}

fn tool() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z_]{1,8}".prop_map(|n| json!({"type": "function", "function": {"name": n,
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}})),
        "[a-z_]{1,8}".prop_map(|n| json!({"type": "function", "function": {"name": n, "description": "d"}})),
        Just(json!({"type": "custom", "custom": {"name": "x"}})),
    ]
}

fn tool_choice() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!("auto")),
        Just(json!("none")),
        Just(json!("required")),
        Just(json!("bogus")),
        "[a-z_]{1,8}".prop_map(|n| json!({"type": "function", "function": {"name": n}})),
    ]
}

prop_compose! {
    fn chat_request()(
        messages in prop::collection::vec(message(), 1..8),
        tools in prop::option::of(prop::collection::vec(tool(), 0..3)),
        choice in tool_choice(),
        parallel in prop::option::of(any::<bool>()),
        max_tokens in prop::option::of(0u64..100_000),
        temperature in prop::option::of(0.0f64..2.0),
        stop in prop_oneof![Just(Value::Null), text().prop_map(Value::String), prop::collection::vec(text(), 0..3).prop_map(|v| json!(v))],
        n in prop::option::of(0u64..4),
        stream in any::<bool>(),
        json_mode in any::<bool>(),
    ) -> Value {
        let mut r = json!({"model": "m", "messages": messages, "stream": stream, "stop": stop});
        if let Some(t) = tools { r["tools"] = json!(t); }
        if !choice.is_null() { r["tool_choice"] = choice; }
        if let Some(p) = parallel { r["parallel_tool_calls"] = json!(p); }
        if let Some(m) = max_tokens { r["max_tokens"] = json!(m); }
        if let Some(t) = temperature { r["temperature"] = json!(t); }
        if let Some(n) = n { r["n"] = json!(n); }
        if json_mode { r["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}); }
        r
    }
}

fn valid_json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(b)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_openai_request_translates_to_anthropic(req in chat_request(), caching in 0..3u8) {
        let body = serde_json::to_vec(&req).unwrap();
        let prompt_caching = [PromptCaching::Client, PromptCaching::Auto, PromptCaching::Off][caching as usize];
        let opts = anthropic::request::Options { default_max_tokens: 1024, prompt_caching };
        if let Ok(out) = anthropic::request::translate(&body, "claude-x", &opts) {
            let v = valid_json(&out);
            prop_assert_eq!(&v["model"], "claude-x");
            prop_assert!(v["max_tokens"].is_u64());
            for m in v["messages"].as_array().unwrap() {
                prop_assert!(m["role"] == "user" || m["role"] == "assistant");
                prop_assert!(!m["content"].as_array().unwrap().is_empty());
                for b in m["content"].as_array().unwrap() {
                    if b["type"] == "tool_use" { prop_assert!(b["input"].is_object()); }
                }
            }
            if prompt_caching == PromptCaching::Off {
                prop_assert!(!String::from_utf8_lossy(&out).contains("cache_control"));
            }
        }
    }

    #[test]
    fn any_openai_request_translates_to_gemini(req in chat_request()) {
        let body = serde_json::to_vec(&req).unwrap();
        if let Ok(out) = gemini::request::translate(&body) {
            let v = valid_json(&out);
            for c in v["contents"].as_array().unwrap() {
                prop_assert!(c["role"] == "user" || c["role"] == "model");
            }
        }
    }

    #[test]
    fn any_bytes_never_panic_a_request_translator(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = anthropic::request::translate(&body, "m", &anthropic::request::Options::default());
        let _ = gemini::request::translate(&body);
        let _ = messages::request::translate(&body, "m");
        let _ = anthropic::response::translate(&body, 0);
        let _ = gemini::response::translate(&body, "m", 0);
        let _ = messages::response::translate(&body);
    }

    #[test]
    fn any_anthropic_request_translates_to_openai(
        msgs in prop::collection::vec((any::<bool>(), content(), json_text()), 1..6),
        system in prop_oneof![Just(Value::Null), text().prop_map(Value::String)],
    ) {
        // Anthropic-shaped messages built from the same parts.
        let messages: Vec<Value> = msgs.into_iter().map(|(user, c, args)| {
            let blocks = match c {
                Value::String(s) => json!([{"type": "text", "text": s}]),
                Value::Array(_) => json!([
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": args}]}]),
                _ => json!([{"type": "tool_use", "id": "t", "name": "f", "input": {"a": args}}]),
            };
            json!({"role": if user { "user" } else { "assistant" }, "content": blocks})
        }).collect();
        let mut req = json!({"model": "m", "max_tokens": 10, "messages": messages});
        if !system.is_null() { req["system"] = system; }
        let body = serde_json::to_vec(&req).unwrap();
        let (out, _) = messages::request::translate(&body, "up").unwrap();
        let v = valid_json(&out);
        prop_assert_eq!(&v["model"], "up");
    }
}

// ------------------------------------------------------------ SSE splits

const ANTHROPIC_STREAM: &str = include_str!("fixtures/anthropic/stream/tool_use.txt");
const GEMINI_STREAM: &str = include_str!("fixtures/gemini/stream/text.txt");
const OPENAI_STREAM: &str = include_str!("fixtures/messages/stream/tool_calls.txt");

/// The `--- input` section of a fixture.
fn input(fixture: &str) -> &str {
    fixture.split("--- input\n").nth(1).and_then(|s| s.split("--- expected\n").next()).unwrap()
}

/// Feed `chunks` through the SSE splitter and a translator, as a provider does.
fn translate_chunks(t: &mut dyn StreamTranslate, chunks: &[&[u8]]) -> Vec<u8> {
    let mut split = SseSplitter::new();
    let mut out = SseOut::new();
    let mut all = Vec::new();
    let mut feed = |run: &[u8], out: &mut SseOut, all: &mut Vec<u8>| {
        for ev in events(run) {
            t.event(ev.data, out).unwrap();
        }
        all.extend_from_slice(&out.take());
    };
    for c in chunks {
        if let Some(run) = split.push(Bytes::copy_from_slice(c)) {
            feed(&run, &mut out, &mut all);
        }
    }
    if let Some(rest) = split.remainder() {
        feed(&rest, &mut out, &mut all);
    }
    t.end(&mut out).unwrap();
    all.extend_from_slice(&out.take());
    all
}

type Make = fn() -> Box<dyn StreamTranslate>;

fn streams() -> [(&'static str, Make); 3] {
    [
        (input(ANTHROPIC_STREAM), || Box::new(anthropic::stream::StreamTranslator::new(1))),
        (input(GEMINI_STREAM), || Box::new(gemini::stream::StreamTranslator::new("m", 1))),
        (input(OPENAI_STREAM), || Box::new(messages::stream::StreamTranslator::new())),
    ]
}

#[test]
fn a_stream_split_at_every_byte_boundary_translates_the_same() {
    for (stream, make) in streams() {
        let b = stream.as_bytes();
        let whole = translate_chunks(make().as_mut(), &[b]);
        assert!(!whole.is_empty());
        for cut in 0..=b.len() {
            let got = translate_chunks(make().as_mut(), &[&b[..cut], &b[cut..]]);
            assert_eq!(got, whole, "cut at byte {cut}");
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(translate_chunks(make().as_mut(), &bytes), whole, "one byte at a time");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_stream_split_anywhere_translates_the_same(cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20), which in 0..3usize) {
        let (stream, make) = streams()[which];
        let b = stream.as_bytes();
        let whole = translate_chunks(make().as_mut(), &[b]);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(b.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in at {
            chunks.push(&b[prev..c]);
            prev = c;
        }
        chunks.push(&b[prev..]);
        prop_assert_eq!(translate_chunks(make().as_mut(), &chunks), whole);
    }
}
