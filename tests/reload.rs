//! Reload without restart (`POST /admin/reload`, SIGHUP) over real HTTP:
//! models and keys added and removed take effect on the next request, a
//! changed limit applies at once, an invalid file is refused with file:line
//! errors while the old config keeps serving, a stream started before a
//! reload finishes on the old config, and an open circuit of an unchanged
//! deployment stays open; a stored Responses conversation continues.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::process::SluiceProcess;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use sha2::Digest;

const SECOND_KEY: &str = "sk-second-key-added-by-reload";

fn file(mock: SocketAddr, dead: SocketAddr, models: &str, keys: &str) -> String {
    format!(
        r#"
[server]
admin_key = "${{ADMIN_KEY}}"
shutdown_timeout_ms = 5000

[breaker]
min_requests = 1
failure_count = 1
cooldown_ms = 600000
cooldown_max_ms = 600000

[routing]
max_attempts = 1

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
forward_headers = ["x-mock-*"]
warm_connections = 0

[[providers]]
name = "dead"
kind = "openai"
base_url = "http://{dead}/v1"
connect_timeout_ms = 200
warm_connections = 0

[[models]]
name = "broken"
deployments = [{{ provider = "dead", model = "nothing" }}]
# An open circuit answers at once instead of trying the earliest-opened
# deployment (the default, `try_one`), so a test can see it is skipped.
on_all_unhealthy = "fail_fast"
{models}
{keys}
"#
    )
}

const MODEL_A: &str = r#"
[[models]]
name = "a"
deployments = [{ provider = "up", model = "mock-a" }]
"#;

const MODEL_B: &str = r#"
[[models]]
name = "b"
deployments = [{ provider = "up", model = "mock-b" }]
"#;

fn tester(extra: &str) -> String {
    format!("[[keys]]\nname = \"tester\"\nkey = \"${{CLIENT_KEY}}\"\n{extra}\n")
}

fn second() -> String {
    format!("[[keys]]\nname = \"second\"\nkey = \"{SECOND_KEY}\"\n")
}

async fn chat(gw: &Gateway, key: &str, model: &str) -> reqwest::Response {
    client().post(gw.url("/v1/chat/completions")).bearer_auth(key).json(&chat_body(model, false)).send().await.unwrap()
}

async fn reload(gw: &Gateway) -> reqwest::Response {
    client().post(gw.url("/admin/reload")).bearer_auth(ADMIN_KEY).send().await.unwrap()
}

async fn status(url: &str) -> Value {
    client().get(url).bearer_auth(ADMIN_KEY).send().await.unwrap().json().await.unwrap()
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn circuit<'a>(s: &'a Value, label: &str) -> Option<&'a Value> {
    s["actors"].as_array()?.iter().find(|a| a["name"] == "circuit_breakers")?["detail"]["deployments"]
        .as_array()?
        .iter()
        .find(|d| d["deployment"] == label)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_models_and_keys_and_changes_limits_at_once() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let dead = dead_addr();
    std::fs::write(&path, file(mock.addr(), dead, MODEL_A, &tester("rpm = 1"))).unwrap();
    let gw = Gateway::start_file(&path);
    let first = status(&gw.url("/status")).await;
    assert_eq!(first["config"]["digest"], sha256_hex(&path));

    assert_eq!(chat(&gw, CLIENT_KEY, "a").await.status(), 200);
    assert_eq!(chat(&gw, CLIENT_KEY, "a").await.status(), 429, "rpm 1");
    assert_eq!(chat(&gw, CLIENT_KEY, "b").await.status(), 404);
    assert_eq!(chat(&gw, SECOND_KEY, "a").await.status(), 401);

    // Model b and key `second` added, model a removed, tester's limit raised.
    std::fs::write(&path, file(mock.addr(), dead, MODEL_B, &(tester("rpm = 3") + &second()))).unwrap();
    let r = reload(&gw).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "reloaded");
    assert_eq!(body["digest"], sha256_hex(&path));

    assert_eq!(chat(&gw, SECOND_KEY, "b").await.status(), 200, "a key and a model added work at once");
    assert_eq!(chat(&gw, CLIENT_KEY, "a").await.status(), 404, "a model removed is gone at once");
    // rpm 3, one used this minute: two more pass (under the old limit of
    // 1 none would have), then the third is refused.
    assert_eq!(chat(&gw, CLIENT_KEY, "b").await.status(), 200, "a raised limit applies to the next request");
    assert_eq!(chat(&gw, CLIENT_KEY, "b").await.status(), 200);
    assert_eq!(chat(&gw, CLIENT_KEY, "b").await.status(), 429, "and the state of the old one carried over");

    // Key `second` removed again: 401 on its next request.
    std::fs::write(&path, file(mock.addr(), dead, MODEL_B, &tester(""))).unwrap();
    assert_eq!(reload(&gw).await.status(), 200);
    assert_eq!(chat(&gw, SECOND_KEY, "b").await.status(), 401);
    let s = status(&gw.url("/status")).await;
    assert_eq!(s["config"]["digest"], sha256_hex(&path));
    assert!(s["config"]["loaded_at_unix"].as_u64().unwrap() >= first["config"]["loaded_at_unix"].as_u64().unwrap());
    let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("sluice_config_reloads_total{result=\"ok\"}"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_with_file_line_errors_and_the_old_config_keeps_serving() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let dead = dead_addr();
    let good = file(mock.addr(), dead, MODEL_A, &tester(""));
    std::fs::write(&path, &good).unwrap();
    let gw = Gateway::start_file(&path);
    let digest = sha256_hex(&path);

    // An unknown key and a deployment naming no provider.
    let bad =
        good.replace("[routing]\n", "[routing]\nmax_atempts = 2\n").replace("provider = \"up\"", "provider = \"upp\"");
    std::fs::write(&path, &bad).unwrap();
    let r = reload(&gw).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_config");
    let errors: Vec<String> =
        v["error"]["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().into()).collect();
    let shown = path.display().to_string();
    assert!(errors.iter().any(|e| e.starts_with(&format!("{shown}:13: routing.max_atempts"))), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("models[1].deployments[0].provider") && e.contains("upp")), "{errors:?}");
    // The same errors `sluice check` prints for the file.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--config", path.to_str().unwrap()])
        .env("CLIENT_KEY", CLIENT_KEY)
        .env("ADMIN_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&check.stderr);
    for e in &errors {
        assert!(printed.contains(e.as_str()), "{e} not in sluice check's output:\n{printed}");
    }

    assert_eq!(chat(&gw, CLIENT_KEY, "a").await.status(), 200, "the running config stays");
    assert_eq!(status(&gw.url("/status")).await["config"]["digest"], digest);
    let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("sluice_config_reloads_total{result=\"invalid\"}"), "{m}");
    // Without the admin key: refused.
    let r = client().post(gw.url("/admin/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_started_before_a_reload_finishes_on_the_old_config() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let dead = dead_addr();
    std::fs::write(&path, file(mock.addr(), dead, MODEL_A, &tester(""))).unwrap();
    let gw = Gateway::start_file(&path);

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-mock-chunk-delay-ms", "40")
        .header("x-mock-tokens", "12")
        .json(&chat_body("a", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();

    // Mid-stream, the model and the key that started it are removed.
    std::fs::write(&path, file(mock.addr(), dead, MODEL_B, &second())).unwrap();
    assert_eq!(reload(&gw).await.status(), 200);
    assert_eq!(chat(&gw, CLIENT_KEY, "a").await.status(), 401, "new requests see the new config");

    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");
    let content: usize = data.iter().filter(|d| d.contains("\"content\"")).count();
    assert!(content >= 12, "every token arrived: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_of_an_unchanged_deployment_stays_open_across_a_reload() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let dead = dead_addr();
    std::fs::write(&path, file(mock.addr(), dead, MODEL_A, &tester(""))).unwrap();
    let gw = Gateway::start_file(&path);

    // One refused connection opens `dead/nothing` (failure_count = 1).
    let r = chat(&gw, CLIENT_KEY, "broken").await;
    assert!(r.status().is_server_error(), "{}", r.status());
    let mut opened = false;
    for _ in 0..300 {
        if circuit(&status(&gw.url("/status")).await, "dead/nothing").is_some_and(|c| c["state"] == "open") {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(opened, "the circuit never opened");

    // Reload with another model added; `broken` and its provider unchanged.
    std::fs::write(&path, file(mock.addr(), dead, &format!("{MODEL_A}{MODEL_B}"), &tester(""))).unwrap();
    assert_eq!(reload(&gw).await.status(), 200);
    let s = status(&gw.url("/status")).await;
    let c = circuit(&s, "dead/nothing").unwrap();
    assert_eq!(c["state"], "open", "{c}");
    assert_eq!(c["opens_total"], 1);
    // And the request path still skips it: no deployment available.
    let r = chat(&gw, CLIENT_KEY, "broken").await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_deployment_available", "{v}");
    assert_eq!(chat(&gw, CLIENT_KEY, "b").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_and_a_bad_file_is_logged_not_taken() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let dead = dead_addr();
    let text = |models: &str, keys: &str| {
        file(mock.addr(), dead, models, keys).replace("${ADMIN_KEY}", ADMIN_KEY).replace("${CLIENT_KEY}", CLIENT_KEY)
    };
    std::fs::write(&path, text(MODEL_A, &tester(""))).unwrap();
    let p = SluiceProcess::spawn(&path);
    p.wait_ready(false).await;
    let chat_p = |model: &'static str| {
        let url = p.url("/v1/chat/completions");
        async move {
            client().post(url).bearer_auth(CLIENT_KEY).json(&chat_body(model, false)).send().await.unwrap().status()
        }
    };
    assert_eq!(chat_p("b").await, 404);

    std::fs::write(&path, text(MODEL_B, &tester(""))).unwrap();
    let want = sha256_hex(&path);
    p.signal(libc::SIGHUP);
    let mut reloaded = false;
    for _ in 0..500 {
        if status(&p.url("/status")).await["config"]["digest"] == want {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(reloaded, "SIGHUP did not reload");
    assert_eq!(chat_p("b").await, 200);
    assert_eq!(chat_p("a").await, 404);

    // A broken file on SIGHUP: refused, counted, the running config stays.
    std::fs::write(&path, "[server\n").unwrap();
    p.signal(libc::SIGHUP);
    let mut counted = false;
    for _ in 0..500 {
        let m = client().get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if m.contains("sluice_config_reloads_total{result=\"invalid\"} 1") {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(counted, "the refused reload was not counted");
    assert_eq!(status(&p.url("/status")).await["config"]["digest"], want);
    assert_eq!(chat_p("b").await, 200);
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_conversation_continues_after_a_reload() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let dead = dead_addr();
    std::fs::write(&path, file(mock.addr(), dead, MODEL_A, &tester(""))).unwrap();
    let gw = Gateway::start_file(&path);
    let create = |body: Value| {
        let url = gw.url("/v1/responses");
        async move { client().post(url).bearer_auth(CLIENT_KEY).json(&body).send().await.unwrap() }
    };
    let first: Value =
        create(serde_json::json!({"model": "a", "input": "My name is Ada."})).await.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();

    // A changed [responses] cannot apply without a restart, and says so;
    // the rest of the file is applied.
    let models = format!("{MODEL_A}{MODEL_B}\n[responses]\nttl_ms = 60000\n");
    std::fs::write(&path, file(mock.addr(), dead, &models, &tester(""))).unwrap();
    let r = reload(&gw).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    // (`server.workers` too: the test harness sets it apart from the file.)
    let later = body["restart_required"].as_array().unwrap();
    assert!(later.contains(&Value::from("responses")), "{body}");

    // The conversation kept before the reload continues on a model added by it.
    let r = create(serde_json::json!({"model": "b", "input": "What is my name?", "previous_response_id": id})).await;
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    assert_eq!(second["previous_response_id"], id.as_str());
    let sent = last_request(&mock.stats()).body.clone();
    assert!(sent.contains("My name is Ada."), "the earlier turn was sent: {sent}");
    assert_eq!(
        client().get(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(CLIENT_KEY).send().await.unwrap().status(),
        200
    );
    gw.shutdown();
}
