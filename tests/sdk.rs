//! The official OpenAI SDKs (Python and Node), and the Anthropic Python SDK
//! on `/v1/messages`, unchanged, against a live gateway in front of the mock
//! upstream.
//!
//! They need tools outside Cargo, so they are `#[ignore]`d: plain `cargo
//! test` lists them as ignored, not as passed. `scripts/test` installs the
//! SDKs, points `SLUICE_SDK_PYTHON` / `SLUICE_SDK_NODE_MODULES` at them and
//! runs these with `--include-ignored`. Once run, a missing prerequisite
//! fails the test: it never passes without having run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run the {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of `var`, or a failure that says how to get it.
fn required_env(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("this test needs {what}: {var} is not set. Run ./scripts/test, which installs it and sets {var}")
    })
}

/// A Python interpreter that imports `module`, or a failure.
fn python_with(module: &str) -> String {
    let python = required_env("SLUICE_SDK_PYTHON", &format!("a Python with the `{module}` package"));
    let has = Command::new(&python).args(["-c", &format!("import {module}")]).output();
    match has {
        Ok(o) if o.status.success() => python,
        Ok(o) => panic!(
            "`{python} -c 'import {module}'` failed (run ./scripts/test, which installs it): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {python} ({e}); run ./scripts/test, which installs it"),
    }
}

/// The vendor config (an OpenAI-compatible `gpt-test`, Anthropic `claude`,
/// Gemini `gemini`, the built-in `local`) plus `native`, a provider that
/// serves the Responses API itself.
fn sdk_config(mock: std::net::SocketAddr) -> String {
    vendor_config(
        mock,
        &format!(
            r#"
[[providers]]
name = "native"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"
forward_headers = ["x-mock-*"]
responses = true

[[models]]
name = "native"
deployments = [{{ provider = "native", model = "gpt-native" }}]
"#
        ),
    )
}

#[test]
#[ignore = "needs the OpenAI Python SDK: ./scripts/test installs it and runs this"]
fn official_python_sdk_works_unchanged() {
    let python = python_with("openai");
    let mock = start_mock();
    let gw = Gateway::start(&sdk_config(mock.addr()));
    let mut cmd = Command::new(python);
    // Responses: gpt-test translated to chat, native passed through, claude translated to Anthropic.
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_python.py")).args([
        gw.url("/v1"),
        CLIENT_KEY.to_string(),
        "gpt-test".to_string(),
        "gpt-test".to_string(),
        "native".to_string(),
        "claude".to_string(),
    ]);
    run(cmd, "Python SDK check");
}

#[test]
#[ignore = "needs node and the OpenAI Node SDK: ./scripts/test installs them and runs this"]
fn official_node_sdk_works_unchanged() {
    let modules = required_env("SLUICE_SDK_NODE_MODULES", "the OpenAI Node SDK (a node_modules holding `openai`)");
    let sdk = std::path::Path::new(&modules).join("openai/package.json");
    assert!(sdk.is_file(), "{} is missing: run ./scripts/test, which installs the Node SDK", sdk.display());
    let mock = start_mock();
    let gw = Gateway::start(&sdk_config(mock.addr()));
    let mut cmd = Command::new("node");
    cmd.env("SLUICE_SDK_NODE_MODULES", modules)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_node.mjs"))
        .args([
            gw.url("/v1"),
            CLIENT_KEY.into(),
            "gpt-test".into(),
            "gpt-test".into(),
            "native".into(),
            "gemini".into(),
        ]);
    run(cmd, "Node SDK check");
}

#[test]
#[ignore = "needs the Anthropic Python SDK: ./scripts/test installs it and runs this"]
fn official_anthropic_python_sdk_works_unchanged() {
    let python = python_with("anthropic");
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    let mut cmd = Command::new(python);
    // claude: an Anthropic deployment (passed through); gpt-test: OpenAI-shaped
    // (translated); local: the built-in mock; gemini: translated twice.
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/anthropic_python.py")).args([
        gw.url(""),
        CLIENT_KEY.to_string(),
        "claude".to_string(),
        "gpt-test".to_string(),
        "local".to_string(),
        "gemini".to_string(),
    ]);
    run(cmd, "Anthropic Python SDK check");
}

/// The vendor config plus `files-up`, an OpenAI-compatible provider that
/// serves files (the built-in `local` mock, first, is the default one),
/// and `whisper`, an audio model upstream.
fn uploads_config(mock: std::net::SocketAddr) -> String {
    vendor_config(
        mock,
        &format!(
            r#"
[[providers]]
name = "files-up"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"
files = true

[[models]]
name = "whisper"
deployments = [{{ provider = "up", model = "whisper-1" }}]
"#
        ),
    )
}

#[test]
#[ignore = "needs the OpenAI Python SDK: ./scripts/test installs it and runs this"]
fn official_python_sdk_uploads_files_and_batches() {
    let python = python_with("openai");
    let mock = start_mock();
    let gw = Gateway::start(&uploads_config(mock.addr()));
    let mut cmd = Command::new(python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_python_uploads.py")).args([
        gw.url("/v1"),
        CLIENT_KEY.to_string(),
        "whisper".to_string(),
        "files-up".to_string(),
    ]);
    run(cmd, "Python SDK uploads check");
    assert!(mock.stats().recent.iter().any(|r| r.path == "/v1/batches"), "files-up served a batch upstream");
}

#[test]
#[ignore = "needs node and the OpenAI Node SDK: ./scripts/test installs them and runs this"]
fn official_node_sdk_uploads_files_and_batches() {
    let modules = required_env("SLUICE_SDK_NODE_MODULES", "the OpenAI Node SDK (a node_modules holding `openai`)");
    let mock = start_mock();
    let gw = Gateway::start(&uploads_config(mock.addr()));
    let mut cmd = Command::new("node");
    cmd.env("SLUICE_SDK_NODE_MODULES", modules)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_node_uploads.mjs"))
        .args([gw.url("/v1"), CLIENT_KEY.into(), "whisper".into(), "files-up".into()]);
    run(cmd, "Node SDK uploads check");
    // `{ file, model }`: the Node SDK writes the file first, so Sluice spooled it.
    // (No other test of this binary spools: the Python SDK sends `model` first.)
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let metrics = rt.block_on(async { client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap() });
    assert!(metrics.lines().any(|l| l.starts_with("sluice_uploads_total{mode=\"spooled\"}")), "{metrics}");
}
