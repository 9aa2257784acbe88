//! `POST /v1/responses` over real HTTP: passed through to a deployment
//! that serves the Responses API (`responses = true`), translated for
//! chat-only ones (OpenAI-compatible, Anthropic, Gemini, the built-in
//! mock); conversations kept by Sluice (`store`, `previous_response_id`,
//! `GET`/`DELETE /v1/responses/{id}`), per key; the token counters; usage,
//! spend and the protocol's own failure event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

const OTHER_KEY: &str = "sk-other-client-key-2";

/// `vendor_config` plus `native` (an openai provider that serves the
/// Responses API), a reasoning deployment, and a second key.
fn config(mock: std::net::SocketAddr, extra: &str) -> String {
    vendor_config(
        mock,
        &format!(
            r#"
[[keys]]
name = "other"
key = "{OTHER_KEY}"

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
price = {{ input_per_mtok = 1.0, output_per_mtok = 2.0 }}

[[models]]
name = "thinker"
deployments = [{{ provider = "up", model = "o-mock", reasoning = true }}]

# One model per test that reads metrics (the recorder is the process's).
[[models]]
name = "gpt-cut"
deployments = [{{ provider = "up", model = "mock-model" }}]

[[models]]
name = "gpt-count"
deployments = [{{ provider = "up", model = "mock-model" }}]

[[models]]
name = "native-metrics"
deployments = [{{ provider = "native", model = "gpt-native" }}]
price = {{ input_per_mtok = 1.0, output_per_mtok = 2.0 }}
{extra}
"#
        ),
    )
}

async fn post(gw: &Gateway, path: &str, key: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().post(gw.url(path)).bearer_auth(key).json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

async fn create(gw: &Gateway, body: &Value) -> Value {
    let r = post(gw, "/v1/responses", CLIENT_KEY, body, &[]).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// `(event name, data)` of each SSE event.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("").to_string();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("null");
            (name, serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}")))
        })
        .collect()
}

/// `/metrics` once `line` is in it (a stream's record is written when its
/// tokens are counted, which may be just after its last byte).
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

fn output_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

#[tokio::test]
async fn every_chat_only_provider_answers_in_the_responses_shape() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr(), ""));
    for (model, path) in [
        ("gpt-test", "/v1/chat/completions"),
        ("claude", "/v1/messages"),
        ("gemini", "/v1beta/models/gemini-test:generateContent"),
        ("local", ""),
    ] {
        let before = posts_seen(&mock.stats());
        let r = create(&gw, &json!({"model": model, "instructions": "Be brief.", "input": "Say hello"})).await;
        assert_eq!(r["object"], "response", "{model}: {r}");
        assert_eq!(r["status"], "completed", "{model}");
        assert!(r["id"].as_str().unwrap().starts_with("resp_"), "{model}");
        assert!(!output_text(&r).is_empty(), "{model}: {r}");
        assert!(r["usage"]["output_tokens"].as_u64().unwrap() > 0, "{model}");
        if path.is_empty() {
            assert_eq!(posts_seen(&mock.stats()), before, "the built-in mock calls no one");
        } else {
            assert_eq!(last_request(&mock.stats()).path, path, "{model}");
        }
        // Streamed: the typed event sequence, numbered from 0, ending completed.
        let resp =
            post(&gw, "/v1/responses", CLIENT_KEY, &json!({"model": model, "input": "Say hello", "stream": true}), &[])
                .await;
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let evs = events(&resp.text().await.unwrap());
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..2], ["response.created", "response.in_progress"], "{model}");
        for n in [
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_item.done",
        ] {
            assert!(names.contains(&n), "{model}: no {n} in {names:?}");
        }
        assert_eq!(*names.last().unwrap(), "response.completed", "{model}");
        for (i, (_, d)) in evs.iter().enumerate() {
            assert_eq!(d["sequence_number"], i as u64, "{model}");
        }
    }
}

#[tokio::test]
async fn a_responses_server_gets_the_clients_bytes() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr(), ""));
    let sent = r#"{ "model":"native-metrics", "input" : "Say hello", "store": false, "include": ["reasoning.encrypted_content"] }"#;
    let via = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(CLIENT_KEY)
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(via.status(), 200);
    assert_eq!(via.headers()["x-sluice-deployment"], "native/gpt-native");
    let via = via.bytes().await.unwrap();
    let up = last_request(&mock.stats()).clone();
    assert_eq!(up.path, "/v1/responses");
    assert_eq!(up.body, sent.replace("\"native-metrics\"", "\"gpt-native\""));
    let direct = client()
        .post(format!("http://{}/v1/responses", mock.addr()))
        .header("content-type", "application/json")
        .body(up.body.clone())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(via, direct, "the client got other bytes than the upstream sent");
    let metrics = metrics_with(&gw, "route=\"responses\",model=\"native-metrics\",status=\"200\"} 1").await;
    assert!(tokens_metric(&metrics, "native-metrics", "output").is_some_and(|n| n > 0), "{metrics}");
    assert!(
        metrics.contains("sluice_cost_usd_total{key=\"tester\",model=\"native-metrics\"}"),
        "spend is counted: {metrics}"
    );
}

#[tokio::test]
async fn conversations_continue_on_any_provider_and_belong_to_their_key() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr(), ""));
    let first = create(&gw, &json!({"model": "gpt-test", "input": "My name is Ada."})).await;
    let id = first["id"].as_str().unwrap().to_owned();
    // Continued on another provider kind: the chat upstream gets the whole history.
    let second =
        create(&gw, &json!({"model": "claude", "input": "What is my name?", "previous_response_id": id})).await;
    assert_eq!(second["previous_response_id"], id.as_str());
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    let texts = up["messages"].to_string();
    assert!(texts.contains("My name is Ada.") && texts.contains(&output_text(&first)), "{up}");
    // And on a Responses server, which may never have seen the first turns: spliced into input.
    let third =
        create(&gw, &json!({"model": "native", "input": "And again?", "previous_response_id": second["id"]})).await;
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert!(up.get("previous_response_id").is_none(), "{up}");
    assert_eq!(up["input"].as_array().unwrap().len(), 5, "two turns of input and output, and this input: {up}");
    assert_eq!(up["model"], "gpt-native");
    assert_eq!(third["previous_response_id"], second["id"], "the answer still says what it continued");

    // GET returns the stored Response; another key sees nothing.
    let got: Value = client()
        .get(gw.url(&format!("/v1/responses/{}", third["id"].as_str().unwrap())))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, third);
    let other = client().get(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(OTHER_KEY).send().await.unwrap();
    assert_eq!(other.status(), 404);
    let r = post(
        &gw,
        "/v1/responses",
        OTHER_KEY,
        &json!({"model": "gpt-test", "input": "x", "previous_response_id": id}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "previous_response_id");
    assert_eq!(v["error"]["code"], "previous_response_not_found");

    // DELETE, then it is gone.
    let del = client().delete(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(CLIENT_KEY).send().await.unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(del.json::<Value>().await.unwrap(), json!({"id": id, "object": "response", "deleted": true}));
    let gone = client().get(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(CLIENT_KEY).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let del = client().delete(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(CLIENT_KEY).send().await.unwrap();
    assert_eq!(del.status(), 404);
}

#[tokio::test]
async fn streamed_turns_are_stored_before_their_last_event_and_store_false_is_not() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr(), ""));
    for model in ["gpt-test", "native"] {
        let resp =
            post(&gw, "/v1/responses", CLIENT_KEY, &json!({"model": model, "input": "Hi", "stream": true}), &[]).await;
        let evs = events(&resp.text().await.unwrap());
        let (name, done) = evs.last().unwrap();
        assert_eq!(name, "response.completed");
        let id = done["response"]["id"].as_str().unwrap();
        // Continued at once: found.
        let next = create(&gw, &json!({"model": "gpt-test", "input": "More", "previous_response_id": id})).await;
        assert_eq!(next["status"], "completed", "{model}");
        let got: Value = client()
            .get(gw.url(&format!("/v1/responses/{id}")))
            .bearer_auth(CLIENT_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got, done["response"], "{model}");
    }
    let r = create(&gw, &json!({"model": "gpt-test", "input": "Hi", "store": false})).await;
    let id = r["id"].as_str().unwrap();
    let got = client().get(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(CLIENT_KEY).send().await.unwrap();
    assert_eq!(got.status(), 404);
    let r = post(
        &gw,
        "/v1/responses",
        CLIENT_KEY,
        &json!({"model": "gpt-test", "input": "x", "previous_response_id": "resp_nope"}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_response_failed() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr(), ""));
    for model in ["gpt-cut", "native", "claude"] {
        let resp = post(
            &gw,
            "/v1/responses",
            CLIENT_KEY,
            &json!({"model": model, "input": "Tell me a long story", "stream": true}),
            &[("x-mock-fault", "cut"), ("x-mock-tokens", "30")],
        )
        .await;
        assert_eq!(resp.status(), 200, "{model}");
        let evs = events(&resp.text().await.unwrap());
        let (name, data) = evs.last().unwrap();
        assert_eq!(name, "response.failed", "{model}: {evs:?}");
        assert_eq!(data["response"]["status"], "failed");
        assert_eq!(data["response"]["error"]["code"], "server_error");
        assert_eq!(data["response"]["id"], evs[0].1["response"]["id"], "{model}");
        assert_eq!(data["sequence_number"], (evs.len() - 1) as u64, "{model}");
        assert_eq!(evs.iter().filter(|(n, _)| n == "response.failed").count(), 1, "{model}");
    }
    metrics_with(&gw, "route=\"responses\",model=\"gpt-cut\",status=\"stream_error\"} 1").await;
}

#[tokio::test]
async fn tool_calls_come_back_as_function_call_items() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr(), ""));
    let tools = json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
        {"type": "web_search"}]);
    for model in ["gpt-test", "native", "claude"] {
        let body = json!({"model": model, "input": "Weather in Paris?", "tools": tools});
        let r = post(&gw, "/v1/responses", CLIENT_KEY, &body, &[("x-mock-tool-call", "get_weather")]).await;
        let r: Value = r.json().await.unwrap();
        let call = r["output"].as_array().unwrap().iter().find(|i| i["type"] == "function_call").unwrap();
        assert_eq!(call["name"], "get_weather", "{model}: {r}");
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert!(args["query"].is_string(), "{model}");
        // The tool's output goes back with the conversation.
        let next = json!({"model": model, "previous_response_id": r["id"],
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny"}]});
        let done = create(&gw, &next).await;
        assert_eq!(done["status"], "completed", "{model}");
    }
}

#[tokio::test]
async fn reasoning_settings_reach_only_deployments_that_take_them() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr(), ""));
    let body = |model: &str| json!({"model": model, "input": "Think", "reasoning": {"effort": "high"}, "max_output_tokens": 50});
    create(&gw, &body("thinker")).await;
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!((&up["reasoning_effort"], &up["max_completion_tokens"]), (&json!("high"), &json!(50)), "{up}");
    create(&gw, &body("gpt-test")).await;
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert!(up.get("reasoning_effort").is_none() && up["max_tokens"] == 50, "{up}");
    // The same for Claude Code's thinking and effort on /v1/messages.
    let m = |model: &str| {
        json!({"model": model, "max_tokens": 64, "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"}, "messages": [{"role": "user", "content": "hi"}]})
    };
    let r = post(&gw, "/v1/messages", CLIENT_KEY, &m("thinker"), &[]).await;
    assert_eq!(r.status(), 200);
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(up["reasoning_effort"], "high");
    post(&gw, "/v1/messages", CLIENT_KEY, &m("gpt-test"), &[]).await;
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert!(up.get("reasoning_effort").is_none(), "{up}");
}

#[tokio::test]
async fn token_counters_pass_through_or_estimate() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr(), ""));
    let count = json!({"model": "claude", "system": "Be brief.",
        "messages": [{"role": "user", "content": "one two three four"}], "tools": []});
    // Anthropic: passed through with the client's query and headers.
    let r = client()
        .post(gw.url("/v1/messages/count_tokens?beta=true"))
        .header("x-api-key", CLIENT_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "token-counting-2024-11-01")
        .json(&count)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"input_tokens": 6}));
    let up = last_request(&mock.stats()).clone();
    assert_eq!(up.path, "/v1/messages/count_tokens?beta=true");
    let header = |n: &str| up.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(header("anthropic-beta").as_deref(), Some("token-counting-2024-11-01"));
    assert_eq!(header("x-api-key").as_deref(), Some(UPSTREAM_KEY));
    assert_eq!(mock.stats().count_tokens_total, 1);
    // Others: the tokenizer's estimate, no upstream call, never 0.
    let before = posts_seen(&mock.stats());
    for model in ["gpt-count", "gemini", "local"] {
        let mut c = count.clone();
        c["model"] = json!(model);
        let r = post(&gw, "/v1/messages/count_tokens", CLIENT_KEY, &c, &[]).await;
        assert_eq!(r.status(), 200);
        let n = r.json::<Value>().await.unwrap()["input_tokens"].as_u64().unwrap();
        assert!((5..40).contains(&n), "{model}: {n}");
    }
    let after = mock.stats();
    let paths: Vec<&str> = after.recent.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(posts_seen(&after), before, "estimates call no upstream; the mock saw {paths:?}");
    // The Responses API's counter: the Responses server's, or an estimate.
    let body = json!({"model": "native", "input": "one two three"});
    let r: Value = post(&gw, "/v1/responses/input_tokens", CLIENT_KEY, &body, &[]).await.json().await.unwrap();
    assert_eq!(r, json!({"object": "response.input_tokens", "input_tokens": 3}));
    let r: Value = post(
        &gw,
        "/v1/responses/input_tokens",
        CLIENT_KEY,
        &json!({"model": "gpt-count", "input": "one two three"}),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(r["object"], "response.input_tokens");
    assert!(r["input_tokens"].as_u64().unwrap() >= 3, "{r}");
    // Counting is free: no tokens, no spend.
    let metrics = metrics_with(&gw, "route=\"input_tokens\",model=\"gpt-count\",status=\"200\"} 1").await;
    assert!(metrics.contains("route=\"count_tokens\",model=\"gpt-count\",status=\"200\"} 1"), "{metrics}");
    assert_eq!(tokens_metric(&metrics, "gpt-count", "input").unwrap_or(0), 0, "{metrics}");
}

#[tokio::test]
async fn claude_codes_first_request_no_longer_fails_and_others_get_a_route_list() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr(), ""));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/agents/claude_code_request.json");
    let mut body: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for model in ["gpt-test", "local", "claude"] {
        body["model"] = json!(model);
        let r = client()
            .post(gw.url("/v1/messages?beta=true"))
            .header("x-api-key", CLIENT_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{model}");
        let evs = events(&r.text().await.unwrap());
        assert_eq!(evs.last().unwrap().0, "message_stop", "{model}");
    }
    assert_eq!(last_request(&mock.stats()).path, "/v1/messages?beta=true");
    let r = client().get(gw.url("/v1/assistants")).bearer_auth(CLIENT_KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("GET /v1/assistants") && m.contains("POST /v1/responses") && m.contains("POST /v1/messages"),
        "{m}"
    );
}

#[tokio::test]
async fn conversations_in_a_file_survive_a_restart() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("responses.redb");
    let cfg = config(mock.addr(), &format!("[responses]\nstore = \"{}\"\n", store.display()));
    let gw = Gateway::start(&cfg);
    let first = create(&gw, &json!({"model": "gpt-test", "input": "Remember: 42."})).await;
    let status = gateway_status(&gw).await;
    let detail = actor_detail(&status, "conversations");
    assert_eq!((detail["entries"].as_u64(), detail["stored"].as_u64()), (Some(1), Some(1)), "{detail}");
    assert!(detail["file"].as_str().unwrap().ends_with("responses.redb"));
    gw.shutdown();
    let gw = Gateway::start(&cfg);
    let id = first["id"].as_str().unwrap();
    let got: Value = client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, first);
    create(&gw, &json!({"model": "gpt-test", "input": "What was it?", "previous_response_id": id})).await;
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert!(up["messages"].to_string().contains("Remember: 42."), "{up}");
}
