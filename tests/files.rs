//! OpenAI's Files and Batch APIs over real HTTP: no model in them, so a
//! request goes to the provider `x-sluice-provider` names, else to the
//! first that serves files (`files = true` on an `openai` provider; the
//! built-in mock always does). Uploads stream through, content streams
//! back, batches run on the mock and write their output file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

const BOUNDARY: &str = "files-test-boundary";

fn config(mock: std::net::SocketAddr) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[providers]]
name = "chat-only"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"
files = true

[[providers]]
name = "local"
kind = "mock"

[[models]]
name = "gpt-test"
deployments = [{{ provider = "up", model = "mock-model" }}]

[[keys]]
name = "tester"
key = "${{CLIENT_KEY}}"

[[keys]]
name = "slow"
key = "sk-slow-files-key"
rpm = 1
"#
    )
}

fn batch_input() -> String {
    let mut s = String::new();
    for i in 0..3 {
        let line = json!({"custom_id": format!("req-{i}"), "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-test", "messages": [{"role": "user", "content": format!("hello {i}")}]}});
        s.push_str(&line.to_string());
        s.push('\n');
    }
    s
}

fn form(purpose: &str, name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n--{BOUNDARY}\r\n\
         content-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\ncontent-type: application/jsonl\r\n\r\n"
    )
    .into_bytes();
    b.extend_from_slice(content);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

fn req(gw: &Gateway, method: reqwest::Method, path: &str, provider: Option<&str>) -> reqwest::RequestBuilder {
    let r = client().request(method, gw.url(path)).bearer_auth(CLIENT_KEY);
    match provider {
        Some(p) => r.header("x-sluice-provider", p),
        None => r,
    }
}

/// Upload, read back, batch until completed, read the output, delete:
/// all on one provider.
async fn round_trip(gw: &Gateway, provider: Option<&str>) -> String {
    use reqwest::Method;
    let input = batch_input();
    let r = req(gw, Method::POST, "/v1/files", provider)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(form("batch", "in.jsonl", input.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let served_by = r.headers()["x-sluice-provider"].to_str().unwrap().to_string();
    let f: Value = r.json().await.unwrap();
    let fid = f["id"].as_str().unwrap().to_string();
    assert_eq!(f["bytes"], input.len());
    assert_eq!(f["filename"], "in.jsonl");

    let r = req(gw, Method::GET, &format!("/v1/files/{fid}/content"), provider).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), input, "the content came back as uploaded");
    let listed: Value = req(gw, Method::GET, "/v1/files", provider).send().await.unwrap().json().await.unwrap();
    assert!(listed["data"].as_array().unwrap().iter().any(|f| f["id"] == fid.as_str()));

    let b: Value = req(gw, Method::POST, "/v1/batches", provider)
        .json(&json!({"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["status"], "validating", "{b}");
    let bid = b["id"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    let done = loop {
        let b: Value =
            req(gw, Method::GET, &format!("/v1/batches/{bid}"), provider).send().await.unwrap().json().await.unwrap();
        seen.push(b["status"].as_str().unwrap().to_string());
        if b["status"] == "completed" {
            break b;
        }
        assert!(seen.len() < 10, "the batch never completed: {seen:?}");
    };
    assert_eq!(done["request_counts"]["completed"], 3);
    let out =
        req(gw, Method::GET, &format!("/v1/files/{}/content", done["output_file_id"].as_str().unwrap()), provider)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["custom_id"], "req-1");
    assert_eq!(lines[1]["response"]["body"]["object"], "chat.completion");

    let d: Value =
        req(gw, Method::DELETE, &format!("/v1/files/{fid}"), provider).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["deleted"], true);
    let r = req(gw, Method::GET, &format!("/v1/files/{fid}"), provider).send().await.unwrap();
    assert_eq!(r.status(), 404, "deleted");
    served_by
}

#[tokio::test]
async fn files_and_batches_go_to_the_first_files_provider_or_the_one_named() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr()));
    assert_eq!(round_trip(&gw, None).await, "up", "the first provider with files = true");
    assert!(mock.stats().recent.iter().any(|r| r.path == "/v1/batches"), "the upstream served the batch");
    assert_eq!(round_trip(&gw, Some("local")).await, "local");

    // A file lives where it was made: the built-in mock's id is unknown upstream.
    let r = req(&gw, reqwest::Method::POST, "/v1/files", Some("local"))
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(form("batch", "x.jsonl", b"{}"))
        .send()
        .await
        .unwrap();
    let fid = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let r = req(&gw, reqwest::Method::GET, &format!("/v1/files/{fid}"), None).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains(&fid), "{v}");

    let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("route=\"files\""), "{m}");
    assert!(m.contains("route=\"batches\""), "{m}");
    gw.shutdown();
}

#[tokio::test]
async fn files_routes_refuse_unknown_providers_keys_and_excess() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr()));
    let r = req(&gw, reqwest::Method::GET, "/v1/files", Some("chat-only")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("`chat-only`") && msg.contains("up, local"), "{v}");

    let r = client().get(gw.url("/v1/batches")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let slow = |gw: &Gateway| client().get(gw.url("/v1/batches")).bearer_auth("sk-slow-files-key").send();
    assert_eq!(slow(&gw).await.unwrap().status(), 200);
    assert_eq!(slow(&gw).await.unwrap().status(), 429, "rpm applies");

    // An id that is not a plain name never goes upstream.
    for bad in ["/v1/files/%2e%2e", "/v1/files/a%2Fb/content", "/v1/batches/.."] {
        let r = client().get(gw.url(bad)).bearer_auth(CLIENT_KEY).send().await.unwrap();
        assert!(r.status() == 400 || r.status() == 404, "{bad}: {}", r.status());
    }
    assert!(!mock.stats().recent.iter().any(|r| r.path.contains("%2") || r.path.contains("..")));

    // Any other /v1 path: a 404 that lists what Sluice serves.
    let r = client().get(gw.url("/v1/fine_tuning/jobs")).bearer_auth(CLIENT_KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("POST /v1/audio/transcriptions") && msg.contains("/v1/batches/{id}/cancel"), "{v}");
    gw.shutdown();
}
