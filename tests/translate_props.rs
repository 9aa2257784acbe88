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
use sluice::translate::{SseOut, StreamTranslate, anthropic, bedrock, gemini, messages, responses};

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

    /// Whatever the chat request, a Converse body alternates its roles from
    /// a user turn, holds no blank text block, and declares tools whenever a
    /// turn holds tool blocks: what Bedrock refuses otherwise.
    #[test]
    fn any_openai_request_translates_to_bedrock(req in chat_request()) {
        let body = serde_json::to_vec(&req).unwrap();
        if let Ok(out) = bedrock::request::translate(&body) {
            let v = valid_json(&out);
            let mut last = "";
            let mut tool_blocks = false;
            for m in v["messages"].as_array().unwrap() {
                let role = m["role"].as_str().unwrap();
                prop_assert!(role == "user" || role == "assistant");
                prop_assert_ne!(role, last, "{}", v);
                last = role;
                let content = m["content"].as_array().unwrap();
                prop_assert!(!content.is_empty());
                for b in content {
                    prop_assert_eq!(b.as_object().unwrap().len(), 1, "{}", b);
                    prop_assert!(b.get("text").is_none_or(|t| !t.as_str().unwrap().is_empty()));
                    tool_blocks |= b.get("toolUse").is_some() || b.get("toolResult").is_some();
                }
            }
            if tool_blocks {
                prop_assert!(v["toolConfig"]["tools"].is_array(), "{}", v);
            }
        }
    }

    #[test]
    fn any_bytes_never_panic_a_request_translator(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = anthropic::request::translate(&body, "m", &anthropic::request::Options::default());
        let _ = gemini::request::translate(&body);
        let _ = bedrock::request::translate(&body);
        let _ = bedrock::response::translate(&body, "id", "m", 0);
        let _ = anthropic::cloud::body(&body, anthropic::cloud::Cloud::Bedrock);
        let mut b = bedrock::stream::StreamTranslator::new("id", "m", 0);
        let _ = b.event(&body, &mut SseOut::new());
        let _ = messages::request::translate(&body, "m");
        let _ = anthropic::response::translate(&body, 0);
        let _ = gemini::response::translate(&body, "m", 0);
        let _ = messages::response::translate(&body);
        let _ = responses::request::translate(&body, "m", None, &Default::default());
        let _ = responses::request::translate(br#"{"input":"x"}"#, "m", Some(&body), &Default::default());
        let _ = responses::response::translate(&body, &responses::Context::default());
        let _ = responses::history::conversation(Some(&body), b"[]", &body);
        let _ = responses::history::usage_from_event(&body);
        let mut t = responses::stream::StreamTranslator::new(responses::Context::default());
        let mut out = SseOut::new();
        if t.event(&body, &mut out).and_then(|()| t.end(&mut out)).is_err() {
            t.fail(&mut out, "server_error", "x");
        }
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
const BEDROCK_STREAM: &str = include_str!("fixtures/bedrock/stream/tool_use.txt");
const OPENAI_STREAM: &str = include_str!("fixtures/messages/stream/tool_calls.txt");
const RESPONSES_TOOLS_STREAM: &str = include_str!("fixtures/responses/stream/tool_calls.txt");
const RESPONSES_MIXED_STREAM: &str = include_str!("fixtures/responses/stream/interleaved.txt");

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
        if let Ok(Some(run)) = split.push(Bytes::copy_from_slice(c)) {
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

/// The context of a Responses stream translator for a fixture whose tools it names.
fn responses_ctx(fixture: &str) -> responses::Context {
    let req = fixture.lines().find_map(|l| l.strip_prefix("# request: ")).unwrap();
    let t = responses::request::translate(req.as_bytes(), "m", None, &Default::default()).unwrap();
    t.context("resp_p".into(), 1)
}

fn streams() -> [(&'static str, Make); 6] {
    [
        (input(BEDROCK_STREAM), || Box::new(bedrock::stream::StreamTranslator::new("id", "m", 1))),
        (input(ANTHROPIC_STREAM), || Box::new(anthropic::stream::StreamTranslator::new(1))),
        (input(GEMINI_STREAM), || Box::new(gemini::stream::StreamTranslator::new("m", 1))),
        (input(OPENAI_STREAM), || Box::new(messages::stream::StreamTranslator::new())),
        (input(RESPONSES_TOOLS_STREAM), || {
            Box::new(responses::stream::StreamTranslator::new(responses_ctx(RESPONSES_TOOLS_STREAM)))
        }),
        (input(RESPONSES_MIXED_STREAM), || {
            Box::new(responses::stream::StreamTranslator::new(responses_ctx(RESPONSES_MIXED_STREAM)))
        }),
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
    fn a_stream_split_anywhere_translates_the_same(cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20), which in 0..6usize) {
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

// ------------------------------------------------------------ Responses API

/// One step of a generated chat stream.
#[derive(Debug, Clone)]
enum Step {
    Text(String),
    Refusal(String),
    Reasoning(String),
    /// A tool call's first delta: chat index, whether it has an id, name, first arguments.
    CallStart(u32, bool, String, String),
    CallArgs(u32, String),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        text().prop_map(Step::Text),
        "[a-z ]{1,6}".prop_map(Step::Refusal),
        text().prop_map(Step::Reasoning),
        (
            0u32..3,
            any::<bool>(),
            prop_oneof![Just("f".to_string()), Just("ns__g".to_string()), Just("patch".to_string())],
            json_text()
        )
            .prop_map(|(i, id, n, a)| Step::CallStart(i, id, n, a)),
        (0u32..3, json_text()).prop_map(|(i, a)| Step::CallArgs(i, a)),
    ]
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

fn chat_stream(steps: &[Step], finish: Option<&str>, usage: bool, done: bool) -> String {
    let mut s = chunk(json!({"role": "assistant", "content": ""}), None);
    for (n, st) in steps.iter().enumerate() {
        let d = match st {
            Step::Text(t) => json!({"content": t}),
            Step::Refusal(t) => json!({"refusal": t}),
            Step::Reasoning(t) => json!({"reasoning_content": t}),
            Step::CallStart(i, id, name, args) => {
                let mut tc = json!({"index": i, "type": "function", "function": {"name": name, "arguments": args}});
                if *id {
                    tc["id"] = json!(format!("call_{n}"));
                }
                json!({"tool_calls": [tc]})
            }
            Step::CallArgs(i, args) => json!({"tool_calls": [{"index": i, "function": {"arguments": args}}]}),
        };
        s.push_str(&chunk(d, None));
    }
    if let Some(f) = finish {
        s.push_str(&chunk(json!({}), Some(f)));
    }
    if usage {
        s.push_str(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n",
        );
    }
    if done {
        s.push_str("data: [DONE]\n\n");
    }
    s
}

fn responses_stream_ctx() -> responses::Context {
    let req = json!({"model": "m", "input": "x", "stream": true, "tools": [
        {"type": "function", "name": "f"},
        {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]},
        {"type": "custom", "name": "patch"}]});
    // Pretty-printed on purpose: the echoed members must not break the SSE lines.
    let body = serde_json::to_string_pretty(&req).unwrap();
    let t = responses::request::translate(body.as_bytes(), "m", None, &Default::default()).unwrap();
    t.context("resp_p".into(), 1)
}

/// Translate a whole chat SSE text; a translator error ends the stream with `response.failed`.
fn responses_events(sse: &str) -> Vec<Value> {
    let mut t = responses::stream::StreamTranslator::new(responses_stream_ctx());
    let mut out = SseOut::new();
    let mut failed = None;
    for ev in events(sse.as_bytes()) {
        if let Err(e) = t.event(ev.data, &mut out) {
            failed = Some(e);
            break;
        }
    }
    if failed.is_none()
        && let Err(e) = t.end(&mut out)
    {
        failed = Some(e);
    }
    if let Some(e) = failed {
        t.fail_with(&mut out, &e);
    }
    named_events(&out.take())
}

/// The payloads of an SSE text, checking each event's name is its payload's `type`.
fn named_events(sse: &[u8]) -> Vec<Value> {
    std::str::from_utf8(sse)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let v: Value = serde_json::from_str(e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
            assert_eq!(Some(name), v["type"].as_str(), "the event name is the payload's type");
            v
        })
        .collect()
}

/// The protocol's invariants: numbering, item lifecycles, deltas adding up
/// to the done texts, and the final response listing exactly the items.
fn check_well_formed(evs: &[Value]) -> Result<(), TestCaseError> {
    prop_assert!(evs.len() >= 3);
    prop_assert_eq!(&evs[0]["type"], "response.created");
    prop_assert_eq!(&evs[1]["type"], "response.in_progress");
    let mut added: Vec<Value> = Vec::new();
    let mut done: Vec<Option<Value>> = Vec::new();
    let mut texts: Vec<Vec<String>> = Vec::new();
    let mut args: Vec<String> = Vec::new();
    for (n, e) in evs.iter().enumerate() {
        prop_assert_eq!(e["sequence_number"].as_u64(), Some(n as u64));
        let kind = e["type"].as_str().unwrap();
        let last = n == evs.len() - 1;
        if matches!(kind, "response.completed" | "response.incomplete" | "response.failed") {
            prop_assert!(last, "{} before the end", kind);
            let output = e["response"]["output"].as_array().unwrap();
            prop_assert_eq!(output.len(), added.len());
            if kind != "response.failed" {
                for (i, item) in output.iter().enumerate() {
                    prop_assert_eq!(Some(item), done[i].as_ref(), "output {} is the item of its done event", i);
                }
            }
            continue;
        }
        prop_assert!(!last, "the stream ends with a final response event");
        let Some(i) = e["output_index"].as_u64().map(|i| i as usize) else { continue };
        if kind == "response.output_item.added" {
            prop_assert_eq!(i, added.len(), "items are numbered in order");
            prop_assert_eq!(&e["item"]["status"], "in_progress");
            added.push(e["item"].clone());
            done.push(None);
            texts.push(Vec::new());
            args.push(String::new());
            continue;
        }
        prop_assert!(i < added.len() && done[i].is_none(), "{} for item {} that is not open", kind, i);
        prop_assert_eq!(&e["item_id"].as_str().or(e["item"]["id"].as_str()), &added[i]["id"].as_str());
        match kind {
            "response.content_part.added" => {
                prop_assert_eq!(e["content_index"].as_u64(), Some(texts[i].len() as u64));
                texts[i].push(String::new());
            }
            "response.output_text.delta" | "response.refusal.delta" | "response.reasoning_text.delta" => {
                let k = e["content_index"].as_u64().unwrap() as usize;
                prop_assert!(k < texts[i].len());
                texts[i][k].push_str(e["delta"].as_str().unwrap());
            }
            "response.output_text.done" | "response.reasoning_text.done" | "response.refusal.done" => {
                let k = e["content_index"].as_u64().unwrap() as usize;
                let full = e["text"].as_str().or(e["refusal"].as_str()).unwrap();
                prop_assert_eq!(full, texts[i][k].as_str(), "deltas add up to the done text");
            }
            "response.function_call_arguments.delta" => args[i].push_str(e["delta"].as_str().unwrap()),
            "response.function_call_arguments.done" => {
                let a = e["arguments"].as_str().unwrap();
                let complete = a == args[i] || (args[i].is_empty() && a == "{}");
                prop_assert!(complete, "arguments {:?} are the deltas {:?}", a, args[i]);
            }
            "response.output_item.done" => {
                prop_assert_eq!(&e["item"]["id"], &added[i]["id"]);
                prop_assert_eq!(&e["item"]["type"], &added[i]["type"]);
                done[i] = Some(e["item"].clone());
            }
            _ => {}
        }
    }
    let kind = evs.last().unwrap()["type"].as_str().unwrap();
    if kind != "response.failed" {
        prop_assert!(done.iter().all(Option::is_some), "every item is done before the end");
    }
    Ok(())
}

fn responses_request() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        text().prop_map(|t| json!({"type": "input_text", "text": t})),
        Just(json!({"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "high"})),
        Just(json!({"type": "input_image", "file_id": "file-1"})),
        Just(json!({"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"})),
        Just(json!({"type": "input_file", "file_url": "https://x/a.pdf"})),
        text().prop_map(|t| json!({"type": "output_text", "text": t, "annotations": []})),
        Just(json!({"type": "mystery", "x": {"y": [1]}})),
    ];
    let content = prop_oneof![
        text().prop_map(Value::String),
        prop::collection::vec(part, 0..4).prop_map(Value::Array),
        Just(Value::Null)
    ];
    let role = prop_oneof![Just("user"), Just("assistant"), Just("system"), Just("developer"), Just("tool")];
    let item = prop_oneof![
        (role, content.clone()).prop_map(|(r, c)| json!({"type": "message", "role": r, "content": c})),
        content.clone().prop_map(|c| json!({"role": "user", "content": c})),
        ("[a-z_]{0,6}", json_text())
            .prop_map(|(id, a)| json!({"type": "function_call", "call_id": id, "name": "f", "arguments": a})),
        ("[a-z_]{0,6}", content.clone())
            .prop_map(|(id, c)| json!({"type": "function_call_output", "call_id": id, "output": c})),
        (text()).prop_map(|i| json!({"type": "custom_tool_call", "call_id": "c", "name": "patch", "input": i})),
        Just(json!({"type": "reasoning", "id": "rs", "summary": [], "content": null, "encrypted_content": "x"})),
        Just(json!({"type": "computer_call_output", "call_id": "c", "output": {"type": "computer_screenshot"}})),
        Just(json!({"type": "item_reference", "id": "msg_1"})),
    ];
    (
        prop_oneof![text().prop_map(Value::String), prop::collection::vec(item, 0..8).prop_map(Value::Array)],
        prop::option::of(text()),
        any::<bool>(),
        prop_oneof![Just(Value::Null), Just(json!("auto")), Just(json!("required")), Just(json!({"type": "function", "name": "f"})),
            Just(json!({"type": "allowed_tools", "mode": "auto", "tools": []})), Just(json!({"type": "file_search"}))],
        prop::option::of(0u64..10_000),
    )
        .prop_map(|(input, instructions, stream, choice, max)| {
            let mut r = json!({"model": "m", "input": input, "stream": stream,
                "tools": [{"type": "function", "name": "f"}, {"type": "custom", "name": "patch"}, {"type": "web_search"}],
                "reasoning": {"effort": "low"}});
            if let Some(i) = instructions { r["instructions"] = json!(i); }
            if !choice.is_null() { r["tool_choice"] = choice; }
            if let Some(m) = max { r["max_output_tokens"] = json!(m); }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_chat_stream_gives_well_formed_responses_events(
        steps in prop::collection::vec(step(), 0..12),
        finish in prop_oneof![Just(None), Just(Some("stop")), Just(Some("tool_calls")), Just(Some("length"))],
        usage in any::<bool>(),
        done in any::<bool>(),
    ) {
        let evs = responses_events(&chat_stream(&steps, finish, usage, done));
        check_well_formed(&evs)?;
        let last = evs.last().unwrap();
        match (finish, done) {
            (Some("length"), _) => prop_assert_eq!(&last["type"], "response.incomplete"),
            (Some(_), _) | (None, true) => prop_assert_eq!(&last["type"], "response.completed"),
            (None, false) => prop_assert_eq!(&last["type"], "response.failed"),
        }
        if usage && last["type"] != "response.failed" {
            prop_assert_eq!(&last["response"]["usage"]["total_tokens"], 7);
        }
    }

    #[test]
    fn any_responses_request_translates_to_a_chat_request(req in responses_request()) {
        let body = serde_json::to_vec(&req).unwrap();
        if let Ok(t) = responses::request::translate(&body, "up", None, &Default::default()) {
            let v = valid_json(&t.body);
            prop_assert_eq!(&v["model"], "up");
            for m in v["messages"].as_array().unwrap() {
                prop_assert!(["system", "user", "assistant", "tool"].contains(&m["role"].as_str().unwrap()));
            }
            for tool in v["tools"].as_array().into_iter().flatten() {
                prop_assert!(tool["function"]["parameters"].is_object());
            }
            // The pipeline reads the same input items without translating.
            let items = responses::request::input_items(&body).unwrap();
            prop_assert_eq!(valid_json(&items), valid_json(&t.input_items));
            // What is stored for the next turn reads back as the same turn.
            let history = responses::history::conversation(None, &t.input_items, b"[]").unwrap();
            // A Responses server gets the stored turns in front of this one's input.
            let expanded = valid_json(&responses::history::expand(&body, &history, "srv").unwrap());
            prop_assert_eq!(&expanded["model"], "srv");
            prop_assert!(expanded.get("previous_response_id").is_none());
            let n = valid_json(&items).as_array().unwrap().len();
            prop_assert_eq!(expanded["input"].as_array().unwrap().len(), 2 * n);
            let again = responses::request::translate(br#"{"model":"m","input":[]}"#, "up", Some(&history), &Default::default()).unwrap();
            let v2 = valid_json(&again.body);
            let instructions = req.get("instructions").is_some_and(|i| !i.as_str().unwrap().is_empty());
            if !instructions {
                prop_assert_eq!(&v2["messages"], &v["messages"]);
            }
        }
    }
}

#[test]
fn responses_stream_split_at_every_byte_keeps_well_formed_events() {
    // The fixtures' byte-split test above compares bytes; this one checks
    // that the events of the split stream are still well-formed.
    let sse = input(RESPONSES_MIXED_STREAM);
    let b = sse.as_bytes();
    for cut in 0..=b.len() {
        let out = translate_chunks(make_mixed().as_mut(), &[&b[..cut], &b[cut..]]);
        check_well_formed(&named_events(&out)).unwrap();
    }
}

fn make_mixed() -> Box<dyn StreamTranslate> {
    Box::new(responses::stream::StreamTranslator::new(responses_ctx(RESPONSES_MIXED_STREAM)))
}
