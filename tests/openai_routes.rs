//! OpenAI's other routes over real HTTP: `POST /v1/images/generations`,
//! `/v1/moderations` and `/v1/audio/speech`, forwarded to `openai`-kind
//! deployments (and answered by the built-in mock) through the same
//! pipeline as chat: auth, model access, rate limits, fallbacks, tokens,
//! spend and metrics. Any other `/v1` URL is a 404 that lists the routes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

fn config(mock: std::net::SocketAddr) -> String {
    vendor_config(
        mock,
        &format!(
            r#"
[[providers]]
name = "dead"
kind = "openai"
base_url = "http://{dead}/v1"
api_key = "${{UPSTREAM_KEY}}"
connect_timeout_ms = 200

[[models]]
name = "gpt-image"
deployments = [{{ provider = "up", model = "gpt-image-1" }}]
price = {{ input_per_mtok = 5.0, output_per_mtok = 40.0 }}

[[models]]
name = "tts"
deployments = [{{ provider = "dead", model = "tts-1" }}, {{ provider = "up", model = "tts-1" }}]

[[models]]
name = "moderation"
deployments = [{{ provider = "up", model = "omni-moderation-latest" }}]

[[keys]]
name = "slow"
key = "sk-slow-client-key"
rpm = 1
"#,
            dead = dead_addr()
        ),
    )
}

async fn post(gw: &Gateway, path: &str, key: &str, body: &Value) -> reqwest::Response {
    client().post(gw.url(path)).bearer_auth(key).json(body).send().await.unwrap()
}

async fn metrics_with(gw: &Gateway, line: &str) -> String {
    for _ in 0..500 {
        let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if m.contains(line) {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no `{line}` in /metrics");
}

#[tokio::test]
async fn images_are_passed_through_with_tokens_and_spend_counted() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr()));
    let r =
        post(&gw, "/v1/images/generations", CLIENT_KEY, &json!({"model": "gpt-image", "prompt": "a red fox", "n": 2}))
            .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-deployment"], "up/gpt-image-1");
    let via = r.bytes().await.unwrap();
    let up = last_request(&mock.stats()).clone();
    assert_eq!(up.path, "/v1/images/generations");
    let sent: Value = serde_json::from_str(&up.body).unwrap();
    assert_eq!(sent["model"], "gpt-image-1", "the deployment's model name goes upstream");
    let direct = client()
        .post(format!("http://{}/v1/images/generations", mock.addr()))
        .header("content-type", "application/json")
        .body(up.body.clone())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(via, direct, "the client got other bytes than the upstream sent");
    let v: Value = serde_json::from_slice(&via).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let metrics = metrics_with(&gw, "route=\"images\",model=\"gpt-image\",status=\"200\"} 1").await;
    assert_eq!(tokens_metric(&metrics, "gpt-image", "input"), Some(3), "{metrics}");
    assert_eq!(tokens_metric(&metrics, "gpt-image", "output"), v["usage"]["output_tokens"].as_u64(), "{metrics}");
    assert!(
        metrics.contains("sluice_cost_usd_total{key=\"tester\",model=\"gpt-image\"}"),
        "spend is counted: {metrics}"
    );
    gw.shutdown();
}

#[tokio::test]
async fn speech_is_relayed_as_audio_after_a_fallback_to_the_next_deployment() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr()));
    let body = json!({"model": "tts", "input": "hello there", "voice": "alloy"});
    let r = post(&gw, "/v1/audio/speech", CLIENT_KEY, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    assert_eq!(r.headers()["x-sluice-deployment"], "up/tts-1", "the dead deployment was skipped");
    let audio = r.bytes().await.unwrap();
    assert_eq!(&audio[..2], &[0xFF, 0xFB], "an MP3 frame");
    assert_eq!(last_request(&mock.stats()).path, "/v1/audio/speech");

    let wav = json!({"model": "tts", "input": "hi", "voice": "alloy", "response_format": "wav"});
    let r = post(&gw, "/v1/audio/speech", CLIENT_KEY, &wav).await;
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(&r.bytes().await.unwrap()[..4], b"RIFF");

    // The built-in mock speaks it too.
    let local = json!({"model": "local", "input": "hi", "voice": "alloy", "response_format": "pcm"});
    let r = post(&gw, "/v1/audio/speech", CLIENT_KEY, &local).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/pcm");
    // Speech has no usage: the input is counted with the tokenizer.
    let metrics = metrics_with(&gw, "route=\"speech\",model=\"tts\",status=\"200\"} 2").await;
    assert!(tokens_metric(&metrics, "tts", "input").is_some_and(|n| n > 0), "{metrics}");
    gw.shutdown();
}

#[tokio::test]
async fn moderations_pass_the_verdict_through_on_openai_and_the_built_in_mock() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr()));
    for model in ["moderation", "local"] {
        let body = json!({"model": model, "input": ["fine", "this is mock-flagged"]});
        let r = post(&gw, "/v1/moderations", CLIENT_KEY, &body).await;
        assert_eq!(r.status(), 200, "{model}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["results"][0]["flagged"], false, "{model}");
        assert_eq!(v["results"][1]["flagged"], true, "{model}");
    }
    gw.shutdown();
}

#[tokio::test]
async fn the_routes_keep_auth_access_and_rate_limits_and_refuse_other_providers() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr()));
    let body = json!({"model": "moderation", "input": "x"});
    let r = client().post(gw.url("/v1/moderations")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(post(&gw, "/v1/moderations", "sk-slow-client-key", &body).await.status(), 200);
    let r = post(&gw, "/v1/moderations", "sk-slow-client-key", &body).await;
    assert_eq!(r.status(), 429, "the key's rpm applies");
    // An Anthropic deployment has no images: refused before any call.
    let before = mock.stats().requests_total;
    let r = post(&gw, "/v1/images/generations", CLIENT_KEY, &json!({"model": "claude", "prompt": "x"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(mock.stats().requests_total, before);
    // Malformed: a required member missing.
    let r = post(&gw, "/v1/audio/speech", CLIENT_KEY, &json!({"model": "tts", "input": "x"})).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["param"], "voice");
    let sse = json!({"model": "tts", "input": "x", "voice": "alloy", "stream_format": "sse"});
    let r = post(&gw, "/v1/audio/speech", CLIENT_KEY, &sse).await;
    assert_eq!(r.status(), 400, "speech is relayed as audio, never as events");
    gw.shutdown();
}

#[tokio::test]
async fn an_unknown_v1_url_lists_what_sluice_serves() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr()));
    let r = post(&gw, "/v1/images/edits", CLIENT_KEY, &json!({})).await;
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    let msg = e["error"]["message"].as_str().unwrap();
    for route in ["POST /v1/images/generations", "POST /v1/moderations", "POST /v1/audio/speech", "POST /v1/responses"]
    {
        assert!(msg.contains(route), "{msg}");
    }
    gw.shutdown();
}
