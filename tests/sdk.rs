//! The official OpenAI SDKs (Python and Node), and the Anthropic Python SDK
//! on `/v1/messages`, unchanged, against a live gateway in front of the mock
//! upstream. `scripts/test` installs them and points `SLUICE_SDK_PYTHON` /
//! `SLUICE_SDK_NODE_MODULES` at them; plain `cargo test` without them says so
//! and skips.
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

#[test]
fn official_python_sdk_works_unchanged() {
    let Ok(python) = std::env::var("SLUICE_SDK_PYTHON") else {
        eprintln!("skipped: SLUICE_SDK_PYTHON is not set (scripts/test sets it up)");
        return;
    };
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let mut cmd = Command::new(python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_python.py")).args([
        gw.url("/v1"),
        CLIENT_KEY.to_string(),
        "gpt-test".to_string(),
    ]);
    run(cmd, "Python SDK check");
}

#[test]
fn official_node_sdk_works_unchanged() {
    let Ok(modules) = std::env::var("SLUICE_SDK_NODE_MODULES") else {
        eprintln!("skipped: SLUICE_SDK_NODE_MODULES is not set (scripts/test sets it up)");
        return;
    };
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let mut cmd = Command::new("node");
    cmd.env("SLUICE_SDK_NODE_MODULES", modules)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_node.mjs"))
        .args([gw.url("/v1"), CLIENT_KEY.to_string(), "gpt-test".to_string()]);
    run(cmd, "Node SDK check");
}

#[test]
fn official_anthropic_python_sdk_works_unchanged() {
    let Ok(python) = std::env::var("SLUICE_SDK_PYTHON") else {
        eprintln!("skipped: SLUICE_SDK_PYTHON is not set (scripts/test sets it up)");
        return;
    };
    let has_sdk = Command::new(&python).args(["-c", "import anthropic"]).output().is_ok_and(|o| o.status.success());
    if !has_sdk {
        eprintln!("skipped: the anthropic package is not installed in {python} (scripts/test installs it)");
        return;
    }
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
