//! `vertex` deployments over real HTTP, the mock playing Vertex AI and
//! Google's token endpoint: a service-account key's signed JWT exchanged
//! for an access token (one exchange however many requests, one more after
//! the tokens are revoked while requests flow), Gemini and Claude models,
//! regional and global URLs, streams, tools, `/v1/messages` natively to
//! Claude, and missing credentials named in errors, `/health` and `check`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{Value, json};
use sluice::mock::cloud_api::{MOCK_SERVICE_ACCOUNT_EMAIL, MOCK_SERVICE_ACCOUNT_PEM};

/// A service-account key file the mock's token endpoint trusts.
fn key_file(dir: &std::path::Path, mock: SocketAddr) -> String {
    let key = json!({
        "type": "service_account",
        "project_id": "mock-project",
        "private_key_id": "kid-1",
        "private_key": MOCK_SERVICE_ACCOUNT_PEM,
        "client_email": MOCK_SERVICE_ACCOUNT_EMAIL,
        "client_id": "1",
        "token_uri": format!("http://{mock}/token"),
    });
    let path = dir.join("sa.json");
    std::fs::write(&path, key.to_string()).unwrap();
    path.display().to_string()
}

/// Providers `vx` (us-east5, project from the key file) and `vg` (global,
/// project `other-proj`); models `gemini` and `claude` on `vx`,
/// `gemini-global` on `vg`, `embed` (Google's text embeddings) on `vx`.
fn vertex_config(mock: SocketAddr, key_file: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_key = "${{ADMIN_KEY}}"

[[providers]]
name = "vx"
kind = "vertex"
base_url = "http://{mock}"
forward_headers = ["x-mock-*"]
warm_connections = 0
vertex = {{ location = "us-east5", credentials_file = "{key_file}" }}

[[providers]]
name = "vg"
kind = "vertex"
base_url = "http://{mock}"
warm_connections = 0
vertex = {{ location = "global", project = "other-proj", credentials_file = "{key_file}" }}

[[models]]
name = "gemini"
deployments = [{{ provider = "vx", model = "gemini-2.0-flash" }}]

[[models]]
name = "claude"
deployments = [{{ provider = "vx", model = "claude-sonnet-4@20250514" }}]

[[models]]
name = "embed"
deployments = [{{ provider = "vx", model = "text-embedding-005" }}]

[[models]]
name = "gemini-global"
deployments = [{{ provider = "vg", model = "gemini-2.5-pro" }}]

[[keys]]
name = "tester"
key = "${{CLIENT_KEY}}"
"#
    )
}

async fn post(gw: &Gateway, path: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().post(gw.url(path)).bearer_auth(CLIENT_KEY).json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn header<'a>(r: &'a sluice::mock::RecordedRequest, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

const PREFIX: &str = "/v1/projects/mock-project/locations/us-east5/publishers";

#[tokio::test]
async fn embeddings_through_predict() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&vertex_config(mock.addr(), &key_file(dir.path(), mock.addr())));
    let body = json!({"model": "embed", "input": ["the first text", "a second"], "dimensions": 16});
    let resp = post(&gw, "/v1/embeddings", &body, &[]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let stats = mock.stats();
    let sent = last_request(&stats);
    assert_eq!(sent.path, format!("{PREFIX}/google/models/text-embedding-005:predict"));
    assert!(header(sent, "authorization").unwrap().starts_with("Bearer ya29.mock-"));
    let up: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(
        up,
        json!({"instances": [{"content": "the first text"}, {"content": "a second"}],
               "parameters": {"outputDimensionality": 16}})
    );
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-005");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    // The mock's vector for a text is the one its OpenAI route gives it: the
    // gateway carried each value through unchanged.
    let direct: Value = client()
        .post(format!("http://{}/v1/embeddings", mock.addr()))
        .json(&json!({"model": "m", "input": ["the first text", "a second"], "dimensions": 16}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for i in 0..2 {
        let got: Vec<f64> = serde_json::from_value(v["data"][i]["embedding"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(direct["data"][i]["embedding"].clone()).unwrap();
        assert_eq!(got.len(), 16);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }
    assert_eq!(v["usage"]["prompt_tokens"], direct["usage"]["prompt_tokens"]);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // base64 is OpenAI's encoding of the same little-endian f32s.
    let body = json!({"model": "embed", "input": "the first text", "dimensions": 16, "encoding_format": "base64"});
    let b64: Value = post(&gw, "/v1/embeddings", &body, &[]).await.json().await.unwrap();
    let raw = base64_decode(b64["data"][0]["embedding"].as_str().unwrap());
    let floats: Vec<f64> = raw.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect();
    let want: Vec<f64> = serde_json::from_value(direct["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(floats.len(), 16);
    for (g, w) in floats.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6);
    }

    // Token arrays cannot be embedded as text; Claude has no embeddings.
    let resp = post(&gw, "/v1/embeddings", &json!({"model": "embed", "input": [[1, 2, 3]]}), &[]).await;
    assert_eq!(resp.status(), 400);
    let resp = post(&gw, "/v1/embeddings", &json!({"model": "claude", "input": "x"}), &[]).await;
    assert_eq!(resp.status(), 400);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn gemini_on_vertex_regional_and_global() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&vertex_config(mock.addr(), &key_file(dir.path(), mock.addr())));
    let resp = post(&gw, "/v1/chat/completions", &chat_body("gemini", false), &[]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["completion_tokens"], 16);
    let stats = mock.stats();
    let sent = last_request(&stats);
    assert_eq!(sent.path, format!("{PREFIX}/google/models/gemini-2.0-flash:generateContent"));
    assert!(header(sent, "authorization").unwrap().starts_with("Bearer ya29.mock-"));
    let up: Value = serde_json::from_str(&sent.body).unwrap();
    assert!(up["contents"].is_array(), "{up}");

    let mut body = chat_body("gemini", true);
    body["stream_options"] = json!({"include_usage": true});
    let text = post(&gw, "/v1/chat/completions", &body, &[]).await.text().await.unwrap();
    assert_eq!(sse_text(&text), v["choices"][0]["message"]["content"].as_str().unwrap());
    assert!(text.contains("\"completion_tokens\":16"), "{text}");
    assert_eq!(
        last_request(&mock.stats()).path,
        format!("{PREFIX}/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse")
    );

    let resp = post(&gw, "/v1/chat/completions", &chat_body("gemini-global", false), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        last_request(&mock.stats()).path,
        "/v1/projects/other-proj/locations/global/publishers/google/models/gemini-2.5-pro:generateContent"
    );
    assert_eq!(mock.clouds().token_exchanges().google, 2, "one token per provider");

    // A chat model does not embed: Vertex's 400 reaches the client as one.
    let resp = post(&gw, "/v1/embeddings", &json!({"model": "gemini", "input": "x"}), &[]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("does not support the predict method"));
}

#[tokio::test]
async fn claude_on_vertex_chat_translated_messages_native() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&vertex_config(mock.addr(), &key_file(dir.path(), mock.addr())));
    let resp = post(&gw, "/v1/chat/completions", &chat_body("claude", false), &[]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-sonnet-4@20250514");
    let stats = mock.stats();
    let sent = last_request(&stats);
    assert_eq!(sent.path, format!("{PREFIX}/anthropic/models/claude-sonnet-4@20250514:rawPredict"));
    let up: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(up["anthropic_version"], "vertex-2023-10-16");
    assert!(up.get("model").is_none(), "{up}");
    assert_eq!(up["max_tokens"], 4096);

    let text = post(&gw, "/v1/chat/completions", &chat_body("claude", true), &[]).await.text().await.unwrap();
    assert_eq!(sse_text(&text), v["choices"][0]["message"]["content"].as_str().unwrap());
    assert_eq!(
        last_request(&mock.stats()).path,
        format!("{PREFIX}/anthropic/models/claude-sonnet-4@20250514:streamRawPredict")
    );

    // /v1/messages: the client's own body, only rewritten for Vertex.
    let m = json!({"model": "claude", "max_tokens": 50, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there", "cache_control": {"type": "ephemeral"}}]}]});
    let resp = post(&gw, "/v1/messages", &m, &[]).await;
    assert_eq!(resp.status(), 200);
    let a: Value = resp.json().await.unwrap();
    assert_eq!(a["type"], "message");
    assert_eq!(a["model"], "claude-sonnet-4@20250514");
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    let mut expected = m.clone();
    expected.as_object_mut().unwrap().remove("model");
    expected["anthropic_version"] = json!("vertex-2023-10-16");
    assert_eq!(up, expected);

    let mut ms = m.clone();
    ms["stream"] = json!(true);
    let text = post(&gw, "/v1/messages", &ms, &[]).await.text().await.unwrap();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");

    // /v1/messages to Gemini: translated through chat.
    let g = json!({"model": "gemini", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]});
    let a: Value = post(&gw, "/v1/messages", &g, &[]).await.json().await.unwrap();
    assert_eq!(a["type"], "message");
    assert!(last_request(&mock.stats()).path.ends_with("gemini-2.0-flash:generateContent"));
}

#[tokio::test]
async fn tools_on_both_publishers() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&vertex_config(mock.addr(), &key_file(dir.path(), mock.addr())));
    for model in ["gemini", "claude"] {
        let mut body = chat_body(model, false);
        body["tools"] = json!([{"type": "function", "function": {"name": "lookup",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]);
        let v: Value =
            post(&gw, "/v1/chat/completions", &body, &[("x-mock-tool-call", "lookup")]).await.json().await.unwrap();
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "lookup", "{model}: {v}");
        let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(args["query"].is_string(), "{model}: {args}");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }
}

#[tokio::test]
async fn one_token_exchange_under_load_and_one_after_revocation() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&vertex_config(mock.addr(), &key_file(dir.path(), mock.addr())));
    let body = chat_body("gemini", false);
    let calls = (0..40).map(|_| post(&gw, "/v1/chat/completions", &body, &[]));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status(), 200);
    }
    assert_eq!(mock.clouds().token_exchanges().google, 1);
    let codes = flow_while(&gw, "/v1/chat/completions", &body, 8, async { mock.clouds().revoke_tokens() }).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    assert_eq!(mock.clouds().token_exchanges().google, 2, "exactly one exchange after the revocation");
    let status: Value =
        client().get(gw.url("/status")).bearer_auth(ADMIN_KEY).send().await.unwrap().json().await.unwrap();
    let vx = status["credentials"].as_array().unwrap().iter().find(|c| c["provider"] == "vx").unwrap();
    assert!(vx["source"].as_str().unwrap().contains(MOCK_SERVICE_ACCOUNT_EMAIL), "{vx}");
    assert_eq!(vx["refreshes"], 2);
    assert!(vx["expires_in_s"].as_u64().unwrap() > 3000);
    assert!(!status.to_string().contains("PRIVATE KEY"));
}

#[tokio::test]
async fn missing_credentials_are_named_at_check_request_and_health() {
    let mock = start_mock();
    let text = vertex_config(mock.addr(), "/nonexistent/sluice-test/sa.json");
    let config = parse_config(&text);
    let problems = sluice::providers::credentials::preflight(&config);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].1.contains("/nonexistent/sluice-test/sa.json"), "{problems:?}");
    let gw = Gateway::start_config(config);
    let resp = post(&gw, "/v1/chat/completions", &chat_body("gemini", false), &[]).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_credentials");
    assert!(v["error"]["message"].as_str().unwrap().contains("`vx`"), "{v}");
    let health: Value = client().get(gw.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "degraded");
    assert!(health["reasons"].to_string().contains("provider `vx`: credentials failing"), "{health}");
    assert_eq!(mock.stats().vertex_total, 0, "nothing was sent without a token");
}

#[tokio::test]
async fn vertex_errors_keep_their_meaning() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&vertex_config(mock.addr(), &key_file(dir.path(), mock.addr())));
    let resp = post(&gw, "/v1/chat/completions", &chat_body("gemini", false), &[("x-mock-fault", "429")]).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"].as_str().unwrap().contains("Quota exceeded"), "{v}");
    // A platform 500 (Google-shaped) is the gateway's 502, quoting it.
    let resp = post(&gw, "/v1/chat/completions", &chat_body("claude", false), &[("x-mock-fault", "500")]).await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("Internal error encountered"), "{v}");
}
