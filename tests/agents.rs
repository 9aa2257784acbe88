//! The coding agents themselves — Claude Code and Codex CLI, the versions
//! `scripts/agents` pins — each completing a turn through a live gateway in
//! front of the mock: once on a deployment of its own protocol (Claude Code
//! on Anthropic, Codex on a Responses server), once translated (Claude Code
//! on an OpenAI-compatible chat server, Codex on Anthropic).
//!
//! They need node and the agents, so they are `#[ignore]`d: plain `cargo
//! test` lists them as ignored. `scripts/test` installs the agents
//! (`scripts/agents install`), points `SLUICE_AGENT_CLAUDE` /
//! `SLUICE_AGENT_CODEX` at them and runs these with `--include-ignored`;
//! run that way, a missing agent fails the test. Each agent runs with a
//! throwaway `HOME` (and `CODEX_HOME`) and every non-essential traffic off,
//! as `scripts/agents` runs them (docs/notes/agents.md says why).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use common::*;

/// How long one agent turn may take (a cold start of node included).
const TURN: Duration = Duration::from_secs(120);

fn agent(var: &str, what: &str) -> PathBuf {
    let path = std::env::var(var).unwrap_or_else(|_| {
        panic!("this test needs {what}: {var} is not set. Run ./scripts/test, which installs it (scripts/agents install) and sets {var}")
    });
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{var}={} does not exist: run scripts/agents install", path.display());
    path
}

/// Run `cmd` to its end within [`TURN`] (killed past it); its stdout, or a
/// failure with everything it said.
async fn run(mut cmd: Command, what: &str) -> String {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let out = match tokio::time::timeout(TURN, child.wait_with_output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("{what} did not finish within {TURN:?}"),
    };
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({}):\nstdout: {stdout}\nstderr: {stderr}", out.status);
    stdout.into_owned()
}

/// The gateway for both agents: `anth` (Anthropic), `up` (chat only) and
/// `native` (serves the Responses API), all the mock.
fn config(mock: std::net::SocketAddr) -> String {
    format!(
        r#"
[server]
max_body_bytes = 8388608

[[providers]]
name = "anth"
kind = "anthropic"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"

[[providers]]
name = "native"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"
responses = true

[[models]]
name = "claude-native"
deployments = [{{ provider = "anth", model = "claude-mock" }}]

[[models]]
name = "claude-translated"
deployments = [{{ provider = "up", model = "chat-mock" }}]

[[models]]
name = "codex-native"
deployments = [{{ provider = "native", model = "responses-mock" }}]

[[models]]
name = "codex-translated"
deployments = [{{ provider = "anth", model = "claude-mock" }}]

[[keys]]
name = "agent"
key = "${{CLIENT_KEY}}"
"#
    )
}

/// The upstream requests the mock saw since `from` (POSTs only), as `(path, model)`.
fn upstream_calls(mock: &sluice::mock::MockServer, from: usize) -> Vec<(String, String)> {
    let stats = mock.stats();
    let posts: Vec<_> = stats.recent.iter().filter(|r| r.method == "POST").collect();
    posts[from.min(posts.len())..]
        .iter()
        .map(|r| {
            // The mock keeps the first 64 KiB of a body, and an agent's
            // request is longer: read `model` from the text.
            let model = r
                .body
                .split_once("\"model\":\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(m, _)| m.to_owned())
                .unwrap_or_default();
            (r.path.clone(), model)
        })
        .collect()
}

fn posts(mock: &sluice::mock::MockServer) -> usize {
    mock.stats().recent.iter().filter(|r| r.method == "POST").count()
}

async fn claude(bin: &std::path::Path, gateway: &str, model: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("TERM", "dumb")
        // The gateway's root: Claude Code appends /v1/messages.
        .env("ANTHROPIC_BASE_URL", gateway)
        .env("ANTHROPIC_API_KEY", CLIENT_KEY)
        .env("ANTHROPIC_DEFAULT_HAIKU_MODEL", model)
        .env("ANTHROPIC_DEFAULT_SONNET_MODEL", model)
        .env("ANTHROPIC_DEFAULT_OPUS_MODEL", model)
        .env("ANTHROPIC_SMALL_FAST_MODEL", model)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .args(["-p", "Say hello", "--model", model]);
    run(cmd, &format!("claude -p on {model}")).await
}

async fn codex(bin: &std::path::Path, gateway: &str, model: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let (codex_home, work) = (home.path().join("codex"), home.path().join("work"));
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    // Sluice as Codex's model provider; retries off, so a failure shows at once.
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            r#"model = "{model}"
model_provider = "sluice"

[model_providers.sluice]
name = "Sluice"
base_url = "{gateway}/v1"
wire_api = "responses"
env_key = "SLUICE_KEY"
request_max_retries = 0
stream_max_retries = 0
"#
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .current_dir(&work)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CODEX_HOME", &codex_home)
        .env("TERM", "dumb")
        .env("SLUICE_KEY", CLIENT_KEY)
        .args(["exec", "--skip-git-repo-check", "Say hello"]);
    run(cmd, &format!("codex exec on {model}")).await
}

/// The answer the agent printed: some of the mock's words, nothing else.
fn printed_an_answer(stdout: &str, what: &str) {
    let text = stdout.trim();
    assert!(!text.is_empty(), "{what} printed nothing");
    assert!(!text.to_lowercase().contains("error"), "{what} printed an error: {text}");
}

#[tokio::test]
#[ignore = "needs node and Claude Code: ./scripts/test installs it (scripts/agents install) and runs this"]
async fn claude_code_completes_a_turn_on_anthropic_and_translated() {
    let bin = agent("SLUICE_AGENT_CLAUDE", "Claude Code");
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr()));
    let root = gw.url("");

    let from = posts(&mock);
    let out = claude(&bin, &root, "claude-native").await;
    printed_an_answer(&out, "claude on an Anthropic deployment");
    let calls = upstream_calls(&mock, from);
    assert!(
        calls.iter().any(|(p, m)| p == "/v1/messages?beta=true" && m == "claude-mock"),
        "Claude Code's request went to Anthropic as sent (query string included): {calls:?}"
    );

    let from = posts(&mock);
    let out = claude(&bin, &root, "claude-translated").await;
    printed_an_answer(&out, "claude on a chat deployment");
    let calls = upstream_calls(&mock, from);
    assert!(
        calls.iter().any(|(p, m)| p == "/v1/chat/completions" && m == "chat-mock"),
        "Claude Code's request was translated to chat: {calls:?}"
    );
    assert!(calls.iter().all(|(p, _)| p == "/v1/chat/completions"), "{calls:?}");
}

#[tokio::test]
#[ignore = "needs node and Codex CLI: ./scripts/test installs it (scripts/agents install) and runs this"]
async fn codex_completes_a_turn_on_a_responses_server_and_translated() {
    let bin = agent("SLUICE_AGENT_CODEX", "Codex CLI");
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr()));
    let root = gw.url("");

    let from = posts(&mock);
    let out = codex(&bin, &root, "codex-native").await;
    printed_an_answer(&out, "codex on a Responses server");
    let calls = upstream_calls(&mock, from);
    assert!(
        calls.iter().any(|(p, m)| p == "/v1/responses" && m == "responses-mock"),
        "Codex's request went to the Responses server as sent: {calls:?}"
    );

    let from = posts(&mock);
    let out = codex(&bin, &root, "codex-translated").await;
    printed_an_answer(&out, "codex on an Anthropic deployment");
    let calls = upstream_calls(&mock, from);
    assert!(
        calls.iter().any(|(p, m)| p == "/v1/messages" && m == "claude-mock"),
        "Codex's request was translated for Anthropic: {calls:?}"
    );
}
