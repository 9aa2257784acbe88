//! `POST /v1/messages`, the Anthropic-shaped ingress, over real HTTP:
//! byte-for-byte passthrough to an Anthropic deployment (both ways), and
//! translation to and from OpenAI-shaped deployments (the openai provider,
//! the built-in mock, and Gemini behind it), streams, tools, usage, and
//! errors in Anthropic's shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

fn messages_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream, "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello to the test suite"}]})
}

async fn post_raw(url: String, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client()
        .post(url)
        .header("x-api-key", CLIENT_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

async fn messages(gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    post_raw(gw.url("/v1/messages"), &body.to_string(), headers).await
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

#[tokio::test]
async fn anthropic_deployment_is_byte_for_byte_passthrough() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    // Odd spacing and key order: a re-serialising gateway would change it.
    let sent = r#"{ "max_tokens" : 64, "model":"claude-same",  "messages":[{"role":"user","content":[{"type":"text","text":"Hi \u00e9","cache_control":{"type":"ephemeral"}}]}], "top_k": 3 }"#;
    let via = post_raw(gw.url("/v1/messages"), sent, &[]).await;
    assert_eq!(via.status(), 200);
    assert_eq!(via.headers()["x-sluice-deployment"], "anth/claude-same");
    let via = via.bytes().await.unwrap();
    let stats = mock.stats();
    let up = last_request(&stats);
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(up.body, sent, "the upstream got other bytes than the client sent");
    let header = |n: &str| up.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(header("x-api-key"), Some(UPSTREAM_KEY), "the client's key must not reach the upstream");
    let direct = post_raw(format!("http://{}/v1/messages", mock.addr()), sent, &[]).await.bytes().await.unwrap();
    assert_eq!(via, direct, "the client got other bytes than the upstream sent");

    // Streams too.
    let sent = r#"{"model":"claude-same","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Stream please"}]}"#;
    let via = post_raw(gw.url("/v1/messages"), sent, &[]).await;
    assert_eq!(via.headers()["content-type"], "text/event-stream");
    let via = via.text().await.unwrap();
    assert_eq!(last_request(&mock.stats()).body, sent);
    let direct = post_raw(format!("http://{}/v1/messages", mock.addr()), sent, &[]).await.text().await.unwrap();
    assert_eq!(via, direct);
    assert!(via.starts_with("event: message_start\n"));
}

#[tokio::test]
async fn passthrough_renames_only_the_model_and_records_usage() {
    let mock = start_mock();
    let extra =
        "[[models]]\nname = \"claude-usage\"\ndeployments = [{ provider = \"anth\", model = \"claude-test\" }]\n";
    let gw = Gateway::start(&vendor_config(mock.addr(), extra));
    let sent = r#"{"model":"claude-usage","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"one two three"}]}"#;
    let resp = post_raw(gw.url("/v1/messages"), sent, &[("x-mock-cached-tokens", "1"), ("x-mock-tokens", "5")]).await;
    let evs = events(&resp.text().await.unwrap());
    assert_eq!(evs.last().unwrap().0, "message_stop");
    assert_eq!(last_request(&mock.stats()).body, sent.replace("claude-usage", "claude-test"));
    let sent = r#"{"model":"claude-usage","max_tokens":64,"messages":[{"role":"user","content":"one two three"}]}"#;
    let v: Value = post_raw(gw.url("/v1/messages"), sent, &[]).await.json().await.unwrap();
    assert_eq!(v["model"], "claude-test");
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(tokens_metric(&metrics, "claude-usage", "output"), Some(5 + 16), "{metrics}");
    // 3 prompt words each time; the cached one counts as input too.
    assert_eq!(tokens_metric(&metrics, "claude-usage", "input"), Some(6));
    assert!(metrics.contains("route=\"messages\",model=\"claude-usage\",status=\"200\"} 2"), "{metrics}");
}

#[tokio::test]
async fn openai_deployment_is_translated() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    let resp = messages(&gw, &messages_body("gpt-test", false), &[]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "mock-model");
    assert_eq!(v["content"][0]["type"], "text");
    let text = v["content"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 16);
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(last_request(&mock.stats()).path, "/v1/chat/completions");
    assert_eq!(up["model"], "mock-model");
    assert_eq!(up["max_tokens"], 64);
    assert_eq!(up["messages"][0], json!({"role": "system", "content": "Be brief."}));

    // Streamed: Anthropic's event sequence, the same text.
    let resp = messages(&gw, &messages_body("gpt-test", true), &[]).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let evs = events(&resp.text().await.unwrap());
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["message_start", "content_block_start"]);
    assert_eq!(names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    assert!(evs.iter().all(|(n, d)| d["type"] == n.as_str()));
    let streamed: String = evs.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
    assert_eq!(streamed, text);
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 16);
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(up["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn tools_are_translated_both_ways() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    let tools = json!([{"name": "get_weather", "description": "Weather", "input_schema":
        {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let body = json!({"model": "gpt-test", "max_tokens": 64, "tools": tools, "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let v: Value = messages(&gw, &body, &[("x-mock-tool-call", "get_weather")]).await.json().await.unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "get_weather");
    assert!(block["input"]["query"].is_string());
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(up["tool_choice"], "required");
    assert_eq!(up["tools"][0]["function"]["parameters"], tools[0]["input_schema"]);

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let evs = events(&messages(&gw, &sbody, &[("x-mock-tool-call", "get_weather")]).await.text().await.unwrap());
    let start = evs.iter().find(|(n, _)| n == "content_block_start").unwrap();
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    assert_eq!(start.1["content_block"]["id"], block["id"]);
    let json_text: String = evs.iter().filter_map(|(_, d)| d["delta"]["partial_json"].as_str()).collect();
    assert_eq!(serde_json::from_str::<Value>(&json_text).unwrap(), block["input"]);
    assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "tool_use");

    // The tool result comes back as an OpenAI tool message.
    let body = json!({"model": "gpt-test", "max_tokens": 64, "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "18C"},
            {"type": "text", "text": "Thanks"}]}]});
    assert_eq!(messages(&gw, &body, &[]).await.status(), 200);
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(up["messages"][1]["tool_calls"][0]["id"], block["id"]);
    assert_eq!(up["messages"][2], json!({"role": "tool", "content": "18C", "tool_call_id": block["id"]}));
    assert_eq!(up["messages"][3], json!({"role": "user", "content": "Thanks"}));
}

#[tokio::test]
async fn builtin_mock_and_gemini_deployments_answer_too() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    for model in ["local", "gemini"] {
        let v: Value = messages(&gw, &messages_body(model, false), &[]).await.json().await.unwrap();
        assert_eq!(v["type"], "message", "{model}: {v}");
        assert!(!v["content"][0]["text"].as_str().unwrap().is_empty());
        let evs = events(&messages(&gw, &messages_body(model, true), &[]).await.text().await.unwrap());
        assert_eq!(evs.last().unwrap().0, "message_stop", "{model}");
        assert_eq!(evs[evs.len() - 2].1["usage"]["output_tokens"], 16, "{model}");
    }
}

#[tokio::test]
async fn errors_use_anthropics_shape() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    async fn expect(resp: reqwest::Response, status: u16, kind: &str) -> String {
        assert_eq!(resp.status(), status);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        let m = v["error"]["message"].as_str().unwrap().to_string();
        assert!(!m.is_empty() && !m.contains(UPSTREAM_KEY));
        m
    }
    let no_max = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    let m = expect(messages(&gw, &no_max, &[]).await, 400, "invalid_request_error").await;
    assert!(m.contains("max_tokens"), "{m}");
    let bad_max = json!({"model": "claude", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]});
    expect(messages(&gw, &bad_max, &[]).await, 400, "invalid_request_error").await;
    expect(post_raw(gw.url("/v1/messages"), "{not json", &[]).await, 400, "invalid_request_error").await;
    expect(messages(&gw, &messages_body("nope", false), &[]).await, 404, "not_found_error").await;
    let r = client().post(gw.url("/v1/messages")).header("x-api-key", "wrong").json(&messages_body("claude", false));
    expect(r.send().await.unwrap(), 401, "authentication_error").await;
    // Bearer works as on the OpenAI routes.
    let r = client().post(gw.url("/v1/messages")).bearer_auth(CLIENT_KEY).json(&messages_body("claude", false));
    assert_eq!(r.send().await.unwrap().status(), 200);

    // Upstream errors: the Anthropic deployment's own type, or the gateway's.
    let resp = messages(&gw, &messages_body("claude", false), &[("x-mock-fault", "429")]).await;
    assert!(resp.headers().contains_key("retry-after"));
    expect(resp, 429, "rate_limit_error").await;
    expect(messages(&gw, &messages_body("gpt-test", false), &[("x-mock-fault", "500")]).await, 502, "api_error").await;
    expect(messages(&gw, &messages_body("claude", true), &[("x-mock-fault", "500")]).await, 502, "api_error").await;
    // Server tools run only on Anthropic: another deployment answers without them.
    let mut body = messages_body("gpt-test", false);
    body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    assert_eq!(messages(&gw, &body, &[]).await.status(), 200);
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert!(up.get("tools").is_none(), "{up}");

    // A stream cut after it began ends with an Anthropic error event.
    let resp =
        messages(&gw, &messages_body("gpt-test", true), &[("x-mock-fault", "cut"), ("x-mock-tokens", "20")]).await;
    let evs = events(&resp.text().await.unwrap());
    let (name, data) = evs.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["type"], "error");
    assert_eq!(data["error"]["type"], "api_error");
}

#[tokio::test]
async fn template_answer_comes_in_anthropic_shape() {
    // `up` points at a port nobody listens on: every attempt fails.
    let dead = dead_addr();
    let extra = r#"
[[models]]
name = "kind"
deployments = [{ provider = "up", model = "m" }]
fallback_response = "Busy now; try again in a minute."
"#;
    let gw = Gateway::start(&vendor_config(dead, extra));
    let r = messages(&gw, &messages_body("kind", false), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-fallback"], "template");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "Busy now; try again in a minute.");

    let r = messages(&gw, &messages_body("kind", true), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-fallback"], "template");
    let evs = events(&r.text().await.unwrap());
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    let text: String = evs
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "Busy now; try again in a minute.");
}

#[tokio::test]
async fn messages_bypass_the_cache_of_a_cached_model() {
    let mock = start_mock();
    let extra = r#"
[[models]]
name = "cached-gpt"
deployments = [{ provider = "up", model = "mock-model" }]
cache = { ttl_ms = 60000, only_deterministic = false }
"#;
    let gw = Gateway::start(&vendor_config(mock.addr(), extra));
    // The chat route caches this model: the repeat is served from the cache.
    let chat = serde_json::json!({"model": "cached-gpt", "messages": [{"role": "user", "content": "same"}]});
    let post = || client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat).send();
    assert_eq!(post().await.unwrap().headers()["x-sluice-cache"], "MISS");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while post().await.unwrap().headers()["x-sluice-cache"] != "HIT" {
        assert!(std::time::Instant::now() < deadline, "the chat answer was never stored");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // /v1/messages on the same model: BYPASS, and each request reaches the upstream.
    let before = mock.stats().chat_total;
    for _ in 0..2 {
        let r = messages(&gw, &messages_body("cached-gpt", false), &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-sluice-cache"], "BYPASS");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "message");
    }
    assert_eq!(mock.stats().chat_total, before + 2);
}
