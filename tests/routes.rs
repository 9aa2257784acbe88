//! Legacy completions, embeddings and models over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn legacy_completions_stream_and_non_stream() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let v: serde_json::Value = client()
        .post(gw.url("/v1/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "gpt-test", "prompt": "Once upon a time", "max_tokens": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    let body = client()
        .post(gw.url("/v1/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "gpt-test", "prompt": "Once", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data = sse_data(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let first: serde_json::Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
}

#[tokio::test]
async fn embeddings_round_trip() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let resp = client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "gpt-test", "input": ["alpha", "beta"], "dimensions": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-deployment"], "up/mock-model");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn models_lists_only_what_the_key_may_use() {
    let mock = start_mock();
    let extra = r#"
[[keys]]
name = "narrow"
key = "sk-narrow-key-123"
models = ["gpt-*"]
"#;
    let gw = Gateway::start(&config_for(mock.addr(), extra));
    let ids = |v: serde_json::Value| -> Vec<String> {
        v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
    };
    let all: serde_json::Value =
        client().get(gw.url("/v1/models")).bearer_auth(CLIENT_KEY).send().await.unwrap().json().await.unwrap();
    assert_eq!(all["object"], "list");
    assert_eq!(ids(all), vec!["gpt-test", "same"]);
    let narrow: serde_json::Value =
        client().get(gw.url("/v1/models")).bearer_auth("sk-narrow-key-123").send().await.unwrap().json().await.unwrap();
    assert_eq!(ids(narrow), vec!["gpt-test"]);
    // One model.
    let one = client().get(gw.url("/v1/models/gpt-test")).bearer_auth(CLIENT_KEY).send().await.unwrap();
    assert_eq!(one.status(), 200);
    let denied = client().get(gw.url("/v1/models/same")).bearer_auth("sk-narrow-key-123").send().await.unwrap();
    assert_eq!(denied.status(), 403);
    let missing = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
}
