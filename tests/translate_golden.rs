//! Golden fixtures for every translation direction, written from the
//! providers' public API references (each fixture cites its sources in its
//! header). A fixture is a text file:
//!
//! ```text
//! # comments, and directives such as `# status: 429`
//! --- input
//! <JSON body, or an SSE stream>
//! --- expected
//! <JSON body, or an SSE stream>
//! ```
//!
//! JSON is compared as values (key order and spacing do not matter); SSE
//! streams event by event (event name, and data as JSON or `[DONE]`).
//! `GOLDEN_BLESS=1 cargo test --test translate_golden` rewrites the
//! `expected` sections from the current output, for review in the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use sluice::endpoint::Endpoint;
use sluice::error::GatewayError;
use sluice::providers::errors::{ErrorStyle, map_status_error};
use sluice::translate::anthropic::PromptCaching;
use sluice::translate::{SseOut, StreamTranslate, anthropic, bedrock, gemini, messages, responses};

const CREATED: u64 = 1_700_000_000;
const MODEL: &str = "upstream-model";

struct Fixture {
    path: PathBuf,
    header: String,
    input: String,
    expected: String,
}

impl Fixture {
    fn directive(&self, key: &str) -> Option<&str> {
        self.header.lines().find_map(|l| l.strip_prefix("# ")?.strip_prefix(key)?.strip_prefix(": ")).map(str::trim)
    }
}

fn read(path: &Path) -> Fixture {
    let text = std::fs::read_to_string(path).unwrap();
    let (header, rest) = text.split_once("--- input\n").unwrap_or_else(|| panic!("{}: no `--- input`", path.display()));
    let (input, expected) =
        rest.split_once("--- expected\n").unwrap_or_else(|| panic!("{}: no `--- expected`", path.display()));
    assert!(header.contains("http"), "{}: cite the API reference the fixture was written from", path.display());
    Fixture { path: path.to_owned(), header: header.to_owned(), input: input.to_owned(), expected: expected.to_owned() }
}

fn fixtures(dir: &str) -> Vec<Fixture> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", root.display());
    paths.iter().map(|p| read(p)).collect()
}

fn bless(f: &Fixture, actual: &str) -> bool {
    if std::env::var("GOLDEN_BLESS").is_err() {
        return false;
    }
    let text = format!("{}--- input\n{}--- expected\n{}\n", f.header, f.input, actual.trim_end());
    std::fs::write(&f.path, text).unwrap();
    true
}

fn json(s: &str, f: &Fixture) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{}: not JSON ({e}):\n{s}", f.path.display()))
}

fn pretty(b: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(b).unwrap();
    serde_json::to_string_pretty(&v).unwrap()
}

fn check_json(f: &Fixture, actual: &[u8]) {
    if bless(f, &pretty(actual)) {
        return;
    }
    let a: serde_json::Value = serde_json::from_slice(actual).unwrap();
    assert_eq!(a, json(&f.expected, f), "{}\nactual:\n{}", f.path.display(), pretty(actual));
}

/// `(event name, data)` pairs of an SSE text.
fn events(s: &str) -> Vec<(String, serde_json::Value)> {
    s.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event:")).unwrap_or("").trim().to_string();
            let data = e.lines().find_map(|l| l.strip_prefix("data:")).unwrap_or("").trim();
            let v = if data == "[DONE]" {
                serde_json::Value::String(data.into())
            } else {
                serde_json::from_str(data).unwrap()
            };
            (name, v)
        })
        .collect()
}

fn run_stream(t: &mut dyn StreamTranslate, input: &str) -> Result<String, String> {
    let mut out = SseOut::new();
    let mut text = String::new();
    for ev in input.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = ev.lines().find_map(|l| l.strip_prefix("data:")).unwrap_or("").trim();
        if let Err(e) = t.event(data.as_bytes(), &mut out) {
            text.push_str(&String::from_utf8_lossy(&out.take()));
            return Err(format!("{text}ERROR {e}"));
        }
    }
    if let Err(e) = t.end(&mut out) {
        text.push_str(&String::from_utf8_lossy(&out.take()));
        return Err(format!("{text}ERROR {e}"));
    }
    text.push_str(&String::from_utf8_lossy(&out.take()));
    Ok(text)
}

fn check_stream(f: &Fixture, actual: Result<String, String>) {
    let actual = match actual {
        Ok(s) => s,
        Err(s) => s.replace("ERROR ", "# error: "),
    };
    // Events, one per paragraph; a translator error is written `# error: ...` last.
    let normalized: String = events(actual.split("# error: ").next().unwrap_or(""))
        .iter()
        .map(|(n, d)| {
            let data = if d == "[DONE]" { "[DONE]".to_string() } else { serde_json::to_string(d).unwrap() };
            if n.is_empty() { format!("data: {data}\n\n") } else { format!("event: {n}\ndata: {data}\n\n") }
        })
        .collect::<String>()
        + &actual.split_once("# error: ").map(|(_, e)| format!("# error: {e}\n")).unwrap_or_default();
    if bless(f, &normalized) {
        return;
    }
    let (exp_events, exp_err) = match f.expected.split_once("# error: ") {
        Some((ev, err)) => (ev, Some(err.trim())),
        None => (f.expected.as_str(), None),
    };
    let (act_events, act_err) = match normalized.split_once("# error: ") {
        Some((ev, err)) => (ev, Some(err.trim())),
        None => (normalized.as_str(), None),
    };
    assert_eq!(events(act_events), events(exp_events), "{}\nactual:\n{normalized}", f.path.display());
    assert_eq!(act_err, exp_err, "{}", f.path.display());
}

fn caching(f: &Fixture) -> PromptCaching {
    match f.directive("prompt_caching") {
        Some("auto") => PromptCaching::Auto,
        Some("off") => PromptCaching::Off,
        _ => PromptCaching::Client,
    }
}

#[test]
fn anthropic_requests() {
    for f in fixtures("anthropic/request") {
        let opts = anthropic::request::Options { default_max_tokens: 4096, prompt_caching: caching(&f) };
        match anthropic::request::translate(f.input.as_bytes(), MODEL, &opts) {
            Ok(out) => check_json(&f, &out),
            Err(e) => {
                let v = serde_json::json!({"error": e.message, "param": e.param});
                check_json(&f, v.to_string().as_bytes());
            }
        }
    }
}

#[test]
fn anthropic_responses() {
    for f in fixtures("anthropic/response") {
        let (out, _) = anthropic::response::translate(f.input.as_bytes(), CREATED).unwrap();
        check_json(&f, &out);
    }
}

#[test]
fn anthropic_streams() {
    for f in fixtures("anthropic/stream") {
        let mut t = anthropic::stream::StreamTranslator::new(CREATED);
        check_stream(&f, run_stream(&mut t, &f.input));
    }
}

fn check_error(dir: &str, style: ErrorStyle) {
    for f in fixtures(dir) {
        let status: u16 = f.directive("status").unwrap().parse().unwrap();
        let out = map_status_error(style, "prov", status, Bytes::from(f.input.trim().to_string()));
        check_json(&f, &out);
    }
}

#[test]
fn anthropic_errors() {
    check_error("anthropic/error", ErrorStyle::Anthropic);
}

#[test]
fn gemini_requests() {
    for f in fixtures("gemini/request") {
        match gemini::request::translate(f.input.as_bytes()) {
            Ok(out) => check_json(&f, &out),
            Err(e) => check_json(&f, serde_json::json!({"error": e.message, "param": e.param}).to_string().as_bytes()),
        }
    }
}

#[test]
fn gemini_responses() {
    for f in fixtures("gemini/response") {
        let (out, _) = gemini::response::translate(f.input.as_bytes(), MODEL, CREATED).unwrap();
        check_json(&f, &out);
    }
}

#[test]
fn gemini_streams() {
    for f in fixtures("gemini/stream") {
        let mut t = gemini::stream::StreamTranslator::new(MODEL, CREATED);
        check_stream(&f, run_stream(&mut t, &f.input));
    }
}

#[test]
fn gemini_errors() {
    check_error("gemini/error", ErrorStyle::Gemini);
}

#[test]
fn bedrock_requests() {
    for f in fixtures("bedrock/request") {
        match bedrock::request::translate(f.input.as_bytes()) {
            Ok(out) => check_json(&f, &out),
            Err(e) => check_json(&f, serde_json::json!({"error": e.message, "param": e.param}).to_string().as_bytes()),
        }
    }
}

#[test]
fn bedrock_responses() {
    for f in fixtures("bedrock/response") {
        let (out, _) = bedrock::response::translate(f.input.as_bytes(), "chatcmpl-req1", MODEL, CREATED).unwrap();
        check_json(&f, &out);
    }
}

#[test]
fn bedrock_streams() {
    for f in fixtures("bedrock/stream") {
        let mut t = bedrock::stream::StreamTranslator::new("chatcmpl-req1", MODEL, CREATED);
        check_stream(&f, run_stream(&mut t, &f.input));
    }
}

#[test]
fn bedrock_errors() {
    check_error("bedrock/error", ErrorStyle::Bedrock);
}

#[test]
fn vertex_errors() {
    check_error("vertex/error", ErrorStyle::Vertex);
}

#[test]
fn messages_requests() {
    for f in fixtures("messages/request") {
        match messages::request::translate(f.input.as_bytes(), MODEL) {
            Ok((out, _)) => check_json(&f, &out),
            Err(e) => check_json(&f, serde_json::json!({"error": e.message, "param": e.param}).to_string().as_bytes()),
        }
    }
}

#[test]
fn messages_responses() {
    for f in fixtures("messages/response") {
        let (out, _) = messages::response::translate(f.input.as_bytes()).unwrap();
        check_json(&f, &out);
    }
}

#[test]
fn messages_streams() {
    for f in fixtures("messages/stream") {
        let mut t = messages::stream::StreamTranslator::new();
        check_stream(&f, run_stream(&mut t, &f.input));
    }
}

#[test]
fn messages_errors() {
    // The input is an OpenAI-shaped error body an upstream (or the gateway) produced.
    for f in fixtures("messages/error") {
        let status: u16 = f.directive("status").unwrap().parse().unwrap();
        let e = GatewayError::UpstreamStatus {
            provider: "prov".into(),
            upstream_status: status,
            body: Bytes::from(f.input.trim().to_string()),
            retry_after: None,
        };
        check_json(&f, &sluice::providers::messages::error_body(Endpoint::Messages, &e));
    }
}

// ------------------------------------------------------------ Responses API

const RESPONSE_ID: &str = "resp_test";

/// The translation for a deployment that takes reasoning settings
/// (`reasoning = true`), so `reasoning.effort` is carried over.
fn reasoning_opts() -> responses::request::Options {
    responses::request::Options { reasoning_effort: true, ..Default::default() }
}

/// The answer translators' context for a fixture, built from its
/// `# request:` directive (a Responses request on one line).
fn responses_context(f: &Fixture) -> responses::Context {
    let req = f.directive("request").unwrap_or_else(|| panic!("{}: no `# request:`", f.path.display()));
    let t = responses::request::translate(req.as_bytes(), MODEL, None, &reasoning_opts())
        .unwrap_or_else(|e| panic!("{}: {e}", f.path.display()));
    t.context(RESPONSE_ID.into(), CREATED)
}

#[test]
fn responses_requests() {
    for f in fixtures("responses/request") {
        let history = f.directive("history").map(str::as_bytes);
        match responses::request::translate(f.input.as_bytes(), MODEL, history, &reasoning_opts()) {
            Ok(t) => check_json(&f, &t.body),
            Err(e) => check_json(&f, serde_json::json!({"error": e.message, "param": e.param}).to_string().as_bytes()),
        }
    }
}

#[test]
fn responses_responses() {
    for f in fixtures("responses/response") {
        let a = responses::response::translate(f.input.as_bytes(), &responses_context(&f)).unwrap();
        check_json(&f, &a.body);
        // What is stored for the next turn is exactly the output.
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        let stored: serde_json::Value = serde_json::from_slice(&a.output_items).unwrap();
        assert_eq!(stored, body["output"], "{}", f.path.display());
    }
}

#[test]
fn responses_streams() {
    for f in fixtures("responses/stream") {
        let mut t = responses::stream::StreamTranslator::new(responses_context(&f));
        let mut out = SseOut::new();
        let mut err = None;
        for ev in f.input.split("\n\n").filter(|e| !e.trim().is_empty()) {
            let data = ev.lines().find_map(|l| l.strip_prefix("data:")).unwrap_or("").trim();
            if let Err(e) = t.event(data.as_bytes(), &mut out) {
                err = Some(e);
                break;
            }
        }
        if err.is_none()
            && let Err(e) = t.end(&mut out)
        {
            err = Some(e);
        }
        // As the relay will: a translator error ends the stream with `response.failed`.
        if let Some(e) = &err {
            t.fail_with(&mut out, e);
        }
        let text = String::from_utf8(out.take().to_vec()).unwrap();
        assert!(t.is_done(), "{}", f.path.display());
        // The stored final Response is the last event's.
        let last = events(&text).pop().unwrap().1;
        let stored: serde_json::Value = serde_json::from_slice(&t.response_body().unwrap()).unwrap();
        assert_eq!(stored, last["response"], "{}", f.path.display());
        check_stream(
            &f,
            match err {
                None => Ok(text),
                Some(e) => Err(format!("{text}ERROR {e}")),
            },
        );
    }
}

/// Codex's real requests (captured from Codex CLI 0.171, long texts replaced
/// by placeholders: tests/fixtures/agents/, docs/notes/agents.md) translate
/// for a chat deployment: its developer messages become the one leading
/// system message, its namespaced tools are flattened, the hosted
/// `web_search` it always sends is dropped, and the tool loop round-trips.
#[test]
fn codex_requests_translate() {
    let read = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents").join(name);
        let body = std::fs::read(&path).unwrap();
        let t = responses::request::translate(&body, MODEL, None, &reasoning_opts())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let v: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
        v
    };
    let roles = |v: &serde_json::Value| -> Vec<String> {
        v["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap().to_owned()).collect()
    };
    let first = read("codex_request.json");
    assert_eq!(roles(&first), ["system", "user", "user"]);
    assert_eq!(first["messages"][2]["content"], "Say hello");
    let names: Vec<&str> =
        first["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 12, "{names:?}");
    assert!(names.contains(&"exec_command") && names.contains(&"multi_agent_v1__spawn_agent"));
    assert_eq!((&first["tool_choice"], &first["parallel_tool_calls"]), (&"auto".into(), &true.into()));
    assert_eq!(first["stream_options"]["include_usage"], true);
    assert!(first.get("max_tokens").is_none() && first.get("reasoning_effort").is_none());

    let next = read("codex_tool_output_request.json");
    assert_eq!(roles(&next), ["system", "user", "user", "assistant", "tool"]);
    assert_eq!(next["messages"][3]["tool_calls"][0]["id"], "call_1");
    assert_eq!(next["messages"][3]["tool_calls"][0]["function"]["name"], "exec_command");
    assert_eq!(next["messages"][4]["tool_call_id"], "call_1");

    let schema = read("codex_output_schema_request.json");
    assert_eq!(schema["reasoning_effort"], "high");
    assert_eq!(schema["response_format"]["json_schema"]["name"], "codex_output_schema");
    assert_eq!(schema["response_format"]["json_schema"]["strict"], true);
    // A deployment not known to reason gets no effort: OpenAI refuses it there.
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents/codex_output_schema_request.json"),
    )
    .unwrap();
    let t = responses::request::translate(&body, MODEL, None, &responses::request::Options::default()).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
    assert!(v.get("reasoning_effort").is_none(), "{v}");
}

/// Claude Code's real requests (captured from Claude Code 2.1.197, long
/// texts replaced by placeholders: tests/fixtures/agents/,
/// docs/notes/agents.md) translate for a chat deployment: its mid-
/// conversation `system` message stays in place (this was a 400 before),
/// its billing line is dropped, its 24 tools pass, and its effort reaches
/// only a deployment that takes reasoning settings.
#[test]
fn claude_code_requests_translate() {
    let read = |name: &str, reasoning: bool| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents").join(name);
        let body = std::fs::read(&path).unwrap();
        let opts = messages::request::Options { reasoning };
        let (out, stream) =
            messages::request::translate_with(&body, MODEL, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        (v, stream)
    };
    let roles = |v: &serde_json::Value| -> Vec<String> {
        v["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap().to_owned()).collect()
    };
    let (first, stream) = read("claude_code_request.json", false);
    assert!(stream);
    assert_eq!(roles(&first), ["system", "user", "system"]);
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(!system.contains("x-anthropic-billing-header"), "{system}");
    assert_eq!(first["tools"].as_array().unwrap().len(), 24);
    assert!(first.get("reasoning_effort").is_none() && first.get("max_completion_tokens").is_none());
    assert_eq!(first["max_tokens"], 32000);
    assert!(first["user"].as_str().unwrap().contains("device_id"));
    let (reasoning, _) = read("claude_code_request.json", true);
    assert_eq!(reasoning["reasoning_effort"], "high");
    assert_eq!(reasoning["max_completion_tokens"], 32000);
    assert!(reasoning.get("max_tokens").is_none());

    let (next, _) = read("claude_code_tool_result_request.json", false);
    let r = roles(&next);
    assert_eq!(r[..3], ["system", "user", "system"]);
    let assistant = next["messages"].as_array().unwrap().iter().find(|m| m["role"] == "assistant").unwrap();
    let call_id = assistant["tool_calls"][0]["id"].as_str().unwrap();
    let tool = next["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["tool_call_id"], call_id);
}
