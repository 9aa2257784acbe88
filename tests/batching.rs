//! Embeddings micro-batching over real HTTP: concurrent requests merged into
//! one upstream call and split back in order, within the window and the cap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// `emb` batches (window and cap as given); `emb-direct` does not.
fn batch_config(mock: std::net::SocketAddr, window_ms: u64, max_inputs: usize) -> String {
    let models = format!(
        r#"
[[models]]
name = "emb"
deployments = [{{ provider = "up", model = "text-embedding-3-small" }}]
embeddings_batch = {{ window_ms = {window_ms}, max_inputs = {max_inputs} }}

[[models]]
name = "emb-direct"
deployments = [{{ provider = "up", model = "text-embedding-3-small" }}]
"#
    );
    config_for(mock, &models)
}

async fn embed(gw: &Gateway, model: &str, input: Value) -> Value {
    let r = client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": model, "input": input, "dimensions": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn concurrently(gw: &Gateway, inputs: Vec<Value>) -> Vec<Value> {
    let tasks: Vec<_> = inputs
        .into_iter()
        .map(|input| {
            let req = client()
                .post(gw.url("/v1/embeddings"))
                .bearer_auth(CLIENT_KEY)
                .json(&json!({"model": "emb", "input": input, "dimensions": 4}));
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn concurrent_requests_are_merged_and_split_back_in_order() {
    let mock = start_mock();
    let gw = Gateway::start(&batch_config(mock.addr(), 100, 64));
    let inputs = vec![json!("alpha"), json!(["beta", "gamma"]), json!(["delta", "epsilon", "zeta"]), json!("eta")];
    let got = concurrently(&gw, inputs.clone()).await;
    assert_eq!(mock.stats().embeddings_total, 1, "one merged upstream call");
    let merged: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(merged["input"].as_array().unwrap().len(), 7);
    assert_eq!(merged["dimensions"], 4);
    let mut tokens = 0;
    for (input, answer) in inputs.iter().zip(&got) {
        let texts: Vec<Value> = match input {
            Value::Array(a) => a.clone(),
            one => vec![one.clone()],
        };
        let data = answer["data"].as_array().unwrap();
        assert_eq!(data.len(), texts.len());
        for (i, (text, item)) in texts.iter().zip(data).enumerate() {
            assert_eq!(item["index"], i, "each caller's data is indexed from 0");
            // The same vector the input gets alone, so the split kept the order.
            let alone = embed(&gw, "emb-direct", text.clone()).await;
            assert_eq!(item["embedding"], alone["data"][0]["embedding"], "{text}");
        }
        tokens += answer["usage"]["prompt_tokens"].as_u64().unwrap();
        assert_eq!(answer["object"], "list");
    }
    let whole = embed(&gw, "emb-direct", merged["input"].clone()).await;
    assert_eq!(tokens, whole["usage"]["prompt_tokens"].as_u64().unwrap(), "the shares add up to the merged usage");
    let s = gateway_status(&gw).await;
    let d = actor_detail(&s, "response_cache");
    assert_eq!((d["batches"].as_u64(), d["batched"].as_u64()), (Some(1), Some(4)));
}

#[tokio::test]
async fn requests_further_apart_than_the_window_are_not_merged() {
    let mock = start_mock();
    let gw = Gateway::start(&batch_config(mock.addr(), 20, 64));
    let started = std::time::Instant::now();
    let a = embed(&gw, "emb", json!("first")).await;
    assert!(started.elapsed() >= Duration::from_millis(20), "a lone request waits out the window");
    let b = embed(&gw, "emb", json!("second")).await;
    assert_eq!(mock.stats().embeddings_total, 2);
    assert_eq!(a["data"].as_array().unwrap().len(), 1);
    assert_eq!(b["data"][0]["index"], 0);
}

#[tokio::test]
async fn a_full_batch_goes_at_once_and_the_cap_is_kept() {
    let mock = start_mock();
    // A long window: only the cap can send the first batch early.
    let gw = Gateway::start(&batch_config(mock.addr(), 1000, 4));
    let started = std::time::Instant::now();
    let got = concurrently(&gw, vec![json!(["a", "b"]), json!(["c", "d"])]).await;
    assert!(started.elapsed() < Duration::from_millis(900), "a full batch does not wait for the window");
    assert_eq!(mock.stats().embeddings_total, 1);
    assert!(got.iter().all(|g| g["data"].as_array().unwrap().len() == 2));
    // More inputs than the cap: sent alone, at once.
    let big = embed(&gw, "emb", json!(["1", "2", "3", "4", "5"])).await;
    assert_eq!(big["data"].as_array().unwrap().len(), 5);
    assert_eq!(mock.stats().embeddings_total, 2);
    let merged: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(merged["input"].as_array().unwrap().len(), 5);
    // Three requests of 3 with a cap of 4: no two fit together.
    let got = concurrently(&gw, vec![json!(["x", "y", "z"]), json!(["x", "y", "z"]), json!(["x", "y", "z"])]).await;
    assert!(got.iter().all(|g| g["data"].as_array().unwrap().len() == 3));
    for r in mock.stats().recent.iter().filter(|r| r.path.ends_with("/embeddings")) {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let n = v["input"].as_array().map_or(1, |a| a.len());
        assert!(n <= 5, "{n}");
    }
    assert_eq!(mock.stats().embeddings_total, 5);
}
