//! Chat completions over real HTTP: gateway in front of the mock upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[tokio::test]
async fn non_stream_chat_round_trip_with_headers() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-request-id", "my-trace-42")
        .json(&chat_body("gpt-test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["x-request-id"], "my-trace-42");
    assert_eq!(h["x-sluice-deployment"], "up/mock-model");
    let timing = h["server-timing"].to_str().unwrap();
    assert!(timing.starts_with("gateway;dur=") && timing.contains(", upstream;dur="), "{timing}");
    assert_eq!(h["content-type"], "application/json");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().len() > 1);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // The upstream saw the deployment's model name and the provider's key,
    // never the client's.
    let stats = mock.stats();
    let req = last_request(&stats);
    let sent: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(sent["model"], "mock-model");
    let auth = req.headers.iter().find(|(k, _)| k == "authorization").unwrap();
    assert_eq!(auth.1, format!("Bearer {UPSTREAM_KEY}"));
    assert!(!req.headers.iter().any(|(_, v)| v.contains(CLIENT_KEY)));
    // The gateway's request id is passed on for correlation.
    assert!(req.headers.iter().any(|(k, v)| k == "x-request-id" && v == "my-trace-42"));
}

#[tokio::test]
async fn body_forwarded_byte_for_byte_when_nothing_changes() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    // Odd spacing and key order must survive untouched.
    let body =
        "{ \"messages\" : [ {\"content\":\"hi\",\"role\":\"user\"} ],\n  \"temperature\": 0.25, \"model\":\"same\" }";
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", CLIENT_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    let stats = mock.stats();
    assert_eq!(last_request(&stats).body, body);
}

#[tokio::test]
async fn builtin_mock_provider_answers_with_embedded_default() {
    let config = sluice::config::Config::embedded_default().unwrap();
    let key = "sk-sluice-dev";
    let gw = Gateway::start_config(config);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body("mock", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["x-sluice-deployment"].to_str().unwrap().starts_with("mock/"));
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "mock-1");
    // Deterministic: the same request gives the same text.
    let again: serde_json::Value = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body("mock", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], again["choices"][0]["message"]["content"]);

    // Embeddings too, under the deployment's model name.
    let e: serde_json::Value = client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(key)
        .json(&serde_json::json!({"model": "mock", "input": "hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(e["model"], "mock-1");
    assert_eq!(e["data"][0]["object"], "embedding");

    // Streaming works offline too.
    let body = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body("fast", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data = sse_data(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(data.len() > 3);
}

#[tokio::test]
async fn fallback_to_the_next_model_when_a_deployment_is_unreachable() {
    let mock = start_mock();
    let dead = dead_addr();
    let extra = format!(
        r#"
[[providers]]
name = "down"
kind = "openai"
base_url = "http://{dead}/v1"
connect_timeout_ms = 300
warm_connections = 0

[[models]]
name = "primary"
deployments = [{{ provider = "down", model = "x" }}]
fallbacks = ["gpt-test"]
"#
    );
    let gw = Gateway::start(&config_for(mock.addr(), &extra));
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&chat_body("primary", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-deployment"], "up/mock-model");
}
