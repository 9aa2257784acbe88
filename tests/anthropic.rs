//! OpenAI-shaped chat through an `anthropic` deployment, over real HTTP
//! (gateway and the mock speaking Anthropic on ephemeral ports): the request
//! the upstream received, the answer and stream the client got, tool calls,
//! usage and cached tokens, and error mapping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

async fn chat(gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

/// Concatenated `delta.content` of a chat stream, and its parsed chunks.
fn stream_text(body: &str) -> (String, Vec<Value>) {
    let data = sse_data(body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let text = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0).and_then(|ch| ch["delta"]["content"].as_str()).map(str::to_owned))
        .collect();
    (text, chunks)
}

#[tokio::test]
async fn chat_is_translated_both_ways() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    let body = json!({"model": "claude", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello to the test suite"}],
        "temperature": 0.5, "stop": "END", "user": "u-1"});
    let resp = chat(&gw, &body, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-deployment"], "anth/claude-test");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-test");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(!v["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert!(v["id"].as_str().unwrap().starts_with("msg_mock"));

    // What the upstream got: an Anthropic Messages request with its headers.
    let stats = mock.stats();
    let sent = last_request(&stats);
    assert_eq!(sent.path, "/v1/messages");
    let header = |n: &str| sent.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(header("authorization"), None);
    let up: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(up["model"], "claude-test");
    assert_eq!(up["max_tokens"], 4096);
    assert_eq!(up["system"], "Be brief.");
    assert_eq!(
        up["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Say hello to the test suite"}]}])
    );
    assert_eq!(up["stop_sequences"], json!(["END"]));
    assert_eq!(up["temperature"], 0.5);
    assert_eq!(up["metadata"]["user_id"], "u-1");
    assert_eq!(mock.stats().messages_total, 1);
}

#[tokio::test]
async fn stream_is_translated_and_matches_the_whole_answer() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    let whole: Value = chat(&gw, &chat_body("claude", false), &[]).await.json().await.unwrap();
    let resp = chat(&gw, &chat_body("claude", true), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (text, chunks) = stream_text(&resp.text().await.unwrap());
    assert_eq!(text, whole["choices"][0]["message"]["content"].as_str().unwrap());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "claude-test"));
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")]);
    // Usage not asked for: captured, hidden.
    assert!(chunks.iter().all(|c| c.get("usage").is_none_or(Value::is_null)));
    let sent: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(sent["stream"], true);
}

#[tokio::test]
async fn usage_and_cached_tokens_are_reported_and_recorded() {
    let mock = start_mock();
    // Metrics are process-wide: a model of its own keeps this test's counts apart.
    let extra =
        "[[models]]\nname = \"claude-usage\"\ndeployments = [{ provider = \"anth\", model = \"claude-test\" }]\n";
    let gw = Gateway::start(&vendor_config(mock.addr(), extra));
    let mut body = chat_body("claude-usage", true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = chat(&gw, &body, &[("x-mock-cached-tokens", "3"), ("x-mock-tokens", "7")]).await;
    let (_, chunks) = stream_text(&resp.text().await.unwrap());
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 7);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 3);
    // "Say hello to the test suite": 6 words, 3 of them "cached"; all count as prompt.
    assert_eq!(usage["prompt_tokens"], 6);
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));

    let v: Value =
        chat(&gw, &chat_body("claude-usage", false), &[("x-mock-cached-tokens", "2")]).await.json().await.unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(tokens_metric(&metrics, "claude-usage", "output"), Some(7 + 16), "{metrics}");
    assert_eq!(tokens_metric(&metrics, "claude-usage", "input"), Some(12));
}

#[tokio::test]
async fn tool_calls_come_back_as_openai_tool_calls() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    let body = json!({"model": "claude", "tools": weather_tools(), "tool_choice": "required", "parallel_tool_calls": false,
        "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let v: Value = chat(&gw, &body, &[("x-mock-tool-call", "get_weather")]).await.json().await.unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert!(v["choices"][0]["message"]["content"].is_null());
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["query"].is_string());
    let sent: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["tools"][0]["input_schema"]["required"], json!(["city"]));
    assert_eq!(sent["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));

    // Streamed: one tool call, its arguments in pieces that join into the same JSON.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let resp = chat(&gw, &sbody, &[("x-mock-tool-call", "get_weather")]).await;
    let (_, chunks) = stream_text(&resp.text().await.unwrap());
    let deltas: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"].get(0)).filter_map(|c| c["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(deltas[0]["id"], call["id"]);
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert!(deltas.iter().all(|d| d["index"] == 0));
    let joined: String = deltas.iter().filter_map(|d| d["function"]["arguments"].as_str()).collect();
    assert_eq!(joined, call["function"]["arguments"].as_str().unwrap());

    // The conversation continues: the tool result goes back as a tool_result block.
    let body = json!({"model": "claude", "tools": weather_tools(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"}]});
    assert_eq!(chat(&gw, &body, &[]).await.status(), 200);
    let sent: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent["messages"][1]["content"][0]["input"], args);
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18C and sunny"}]})
    );
}

#[tokio::test]
async fn anthropic_errors_map_to_openai_errors() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    let resp = chat(&gw, &chat_body("claude", false), &[("x-mock-fault", "429"), ("x-mock-retry-after", "7")]).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"].as_str().unwrap().contains("Rate limit reached"));

    let resp = chat(&gw, &chat_body("claude", true), &[("x-mock-fault", "500")]).await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(UPSTREAM_KEY));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "upstream_error");

    // Something Anthropic cannot do, refused before any upstream call.
    let before = mock.stats().messages_total;
    let mut body = chat_body("claude", false);
    body["n"] = json!(2);
    let resp = chat(&gw, &body, &[]).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "n");
    // So is a route Anthropic has no equivalent of.
    let resp = client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "claude", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("does not support /v1/embeddings"), "{v}");
    assert_eq!(mock.stats().messages_total, before);

    // A cut stream ends with an error event.
    let resp = chat(&gw, &chat_body("claude", true), &[("x-mock-fault", "cut"), ("x-mock-tokens", "20")]).await;
    let data = sse_data(&resp.text().await.unwrap());
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "upstream_error");
}

#[tokio::test]
async fn routes_anthropic_lacks_skip_its_deployments() {
    let mock = start_mock();
    // Weight makes the Anthropic deployment the usual first pick; for
    // embeddings it is skipped, not tried and failed.
    let extra = "[[models]]\nname = \"mixed\"\ndeployments = [{ provider = \"anth\", model = \"claude-test\", weight = 100 }, { provider = \"up\", model = \"mock-model\" }]\n";
    let gw = Gateway::start(&vendor_config(mock.addr(), extra));
    for _ in 0..3 {
        let resp = client()
            .post(gw.url("/v1/embeddings"))
            .bearer_auth(CLIENT_KEY)
            .json(&json!({"model": "mixed", "input": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-sluice-deployment"], "up/mock-model");
    }
    assert_eq!(mock.stats().messages_total, 0);
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        !metrics.lines().any(|l| l.contains("anth/claude-test") && l.contains("outcome=\"invalid_request\"")),
        "{metrics}"
    );
}
