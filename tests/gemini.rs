//! OpenAI-shaped chat through a `gemini` deployment, over real HTTP (the
//! mock speaking Gemini): the generateContent request the upstream got, the
//! answer and stream the client got, function calls, usage and errors.
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

fn chunks(body: &str) -> Vec<Value> {
    let data = sse_data(body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect()
}

#[tokio::test]
async fn chat_is_translated_both_ways() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    let body = json!({"model": "gemini", "max_tokens": 50, "temperature": 0.2, "stop": ["END"], "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Say hello to the test suite"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
    let resp = chat(&gw, &body, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-deployment"], "gem/gemini-test");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gemini-test");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(!v["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert_eq!(v["usage"]["prompt_tokens"], 8);

    let stats = mock.stats();
    let sent = last_request(&stats);
    assert_eq!(sent.path, "/v1beta/models/gemini-test:generateContent");
    let header = |n: &str| sent.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(header("x-goog-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(header("authorization"), None);
    let up: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(up["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
    assert_eq!(up["contents"][0]["role"], "user");
    assert_eq!(up["contents"][0]["parts"][1], json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}));
    assert_eq!(up["generationConfig"], json!({"temperature": 0.2, "maxOutputTokens": 50, "stopSequences": ["END"]}));
    assert_eq!(mock.stats().gemini_total, 1);
}

#[tokio::test]
async fn stream_is_translated_with_usage() {
    let mock = start_mock();
    let extra =
        "[[models]]\nname = \"gemini-usage\"\ndeployments = [{ provider = \"gem\", model = \"gemini-test\" }]\n";
    let gw = Gateway::start(&vendor_config(mock.addr(), extra));
    let whole: Value = chat(&gw, &chat_body("gemini-usage", false), &[]).await.json().await.unwrap();
    let mut body = chat_body("gemini-usage", true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = chat(&gw, &body, &[("x-mock-cached-tokens", "4")]).await;
    assert_eq!(resp.status(), 200);
    let cs = chunks(&resp.text().await.unwrap());
    assert_eq!(last_request(&mock.stats()).path, "/v1beta/models/gemini-test:streamGenerateContent?alt=sse");
    assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String =
        cs.iter().filter_map(|c| c["choices"].get(0)).filter_map(|c| c["delta"]["content"].as_str()).collect();
    assert_eq!(text, whole["choices"][0]["message"]["content"].as_str().unwrap());
    let usage = &cs.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 16);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 4);
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(tokens_metric(&metrics, "gemini-usage", "output"), Some(32), "{metrics}");
}

#[tokio::test]
async fn function_calls_round_trip() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}}}]);
    let body = json!({"model": "gemini", "tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let v: Value = chat(&gw, &body, &[("x-mock-tool-call", "get_weather")]).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = v["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["query"].is_string());
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(up["tools"][0]["functionDeclarations"][0]["name"], "get_weather");
    // The JSON Schema goes as written, additionalProperties included.
    assert_eq!(up["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"], false);
    assert_eq!(
        up["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );

    // Streamed: the call arrives whole, with an id and a tool_calls finish.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let cs = chunks(&chat(&gw, &sbody, &[("x-mock-tool-call", "get_weather")]).await.text().await.unwrap());
    let tc: Vec<&Value> =
        cs.iter().filter_map(|c| c["choices"].get(0)).filter_map(|c| c["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(tc.len(), 1);
    assert_eq!(tc[0]["function"]["arguments"], call["function"]["arguments"]);
    assert!(cs.iter().filter_map(|c| c["choices"].get(0)).any(|c| c["finish_reason"] == "tool_calls"));

    // The answer goes back as a functionResponse named after the call.
    let body = json!({"model": "gemini", "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18C"}]});
    assert_eq!(chat(&gw, &body, &[]).await.status(), 200);
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(up["contents"][1]["role"], "model");
    assert_eq!(up["contents"][1]["parts"][0]["functionCall"]["args"], args);
    assert_eq!(
        up["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}}]})
    );
}

#[tokio::test]
async fn gemini_errors_map_to_openai_errors() {
    let mock = start_mock();
    let gw = Gateway::start(&vendor_config(mock.addr(), ""));
    let resp = chat(&gw, &chat_body("gemini", false), &[("x-mock-fault", "429")]).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let resp = chat(&gw, &chat_body("gemini", false), &[("x-mock-fault", "500")]).await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(UPSTREAM_KEY) && text.contains("upstream_error"), "{text}");
    // A tool result answering no known call is refused before any upstream call.
    let body = json!({"model": "gemini", "messages": [{"role": "tool", "tool_call_id": "x", "content": "1"}]});
    let resp = chat(&gw, &body, &[]).await;
    assert_eq!(resp.status(), 400);
    let resp = client()
        .post(gw.url("/v1/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "gemini", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
