//! `azure` deployments over real HTTP, the mock playing Azure OpenAI and
//! Entra ID: deployment and `/openai/v1/` URLs, the `api-key` header or an
//! Entra bearer token (one token exchange however many requests, one more
//! after the tokens are revoked while requests flow), streams, tools,
//! embeddings, `/v1/messages`, content-filter refusals and verdicts, and
//! credentials that never reach a client, `/status` or `/health`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use sluice::mock::cloud_api::{MOCK_AZURE_API_KEY, MOCK_ENTRA_CLIENT_ID, MOCK_ENTRA_CLIENT_SECRET, MOCK_ENTRA_TENANT};

/// A gateway config with Azure providers on the mock: `az` (deployment URLs,
/// api-key), `az1` (the v1 URLs) and `entra` (Entra ID credentials with
/// `secret`). Models `gpt-az` (deployment `gpt-4o-dep`), `gpt-v1`,
/// `gpt-entra`, `embed-az`.
fn azure_config(mock: std::net::SocketAddr, secret: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_key = "${{ADMIN_KEY}}"

[[providers]]
name = "az"
kind = "azure"
base_url = "http://{mock}"
api_key = "{MOCK_AZURE_API_KEY}"
forward_headers = ["x-mock-*"]
warm_connections = 0
azure = {{ api_version = "2024-10-21" }}

[[providers]]
name = "az1"
kind = "azure"
base_url = "http://{mock}"
api_key = "{MOCK_AZURE_API_KEY}"
forward_headers = ["x-mock-*"]
warm_connections = 0
azure = {{ api = "v1" }}

[[providers]]
name = "entra"
kind = "azure"
base_url = "http://{mock}"
forward_headers = ["x-mock-*"]
warm_connections = 0
[providers.azure]
api_version = "2024-10-21"
[providers.azure.entra]
tenant_id = "{MOCK_ENTRA_TENANT}"
client_id = "{MOCK_ENTRA_CLIENT_ID}"
client_secret = "{secret}"
authority = "http://{mock}"

[[models]]
name = "gpt-az"
deployments = [{{ provider = "az", model = "gpt-4o-dep" }}]

[[models]]
name = "gpt-v1"
deployments = [{{ provider = "az1", model = "gpt-4o-dep" }}]

[[models]]
name = "gpt-entra"
deployments = [{{ provider = "entra", model = "gpt-4o-dep" }}]

[[models]]
name = "embed-az"
deployments = [{{ provider = "az", model = "embed-dep" }}]

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

#[tokio::test]
async fn deployment_urls_api_key_and_filter_verdicts_pass_through() {
    let mock = start_mock();
    let gw = Gateway::start(&azure_config(mock.addr(), MOCK_ENTRA_CLIENT_SECRET));
    let resp = post(&gw, "/v1/chat/completions", &chat_body("gpt-az", false), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-deployment"], "az/gpt-4o-dep");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "gpt-4o-dep");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // Azure's verdicts reach the client as Azure sent them.
    assert_eq!(v["prompt_filter_results"][0]["content_filter_results"]["hate"]["severity"], "safe");
    assert_eq!(v["choices"][0]["content_filter_results"]["violence"]["filtered"], false);
    let stats = mock.stats();
    let sent = last_request(&stats);
    assert_eq!(sent.path, "/openai/deployments/gpt-4o-dep/chat/completions?api-version=2024-10-21");
    assert_eq!(header(sent, "api-key"), Some(MOCK_AZURE_API_KEY));
    assert_eq!(header(sent, "authorization"), None);
    assert_eq!(stats.azure_total, 1);

    // The v1 URLs carry the deployment in the body's `model`.
    let resp = post(&gw, "/v1/chat/completions", &chat_body("gpt-v1", false), &[]).await;
    assert_eq!(resp.status(), 200);
    let stats = mock.stats();
    let sent = last_request(&stats);
    assert_eq!(sent.path, "/openai/v1/chat/completions");
    assert_eq!(serde_json::from_str::<Value>(&sent.body).unwrap()["model"], "gpt-4o-dep");

    // Embeddings and legacy completions go to their deployment URLs.
    let resp = post(&gw, "/v1/embeddings", &json!({"model": "embed-az", "input": ["a", "b"]}), &[]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(last_request(&mock.stats()).path, "/openai/deployments/embed-dep/embeddings?api-version=2024-10-21");
    let resp = post(&gw, "/v1/completions", &json!({"model": "gpt-az", "prompt": "Say hi"}), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(last_request(&mock.stats()).path, "/openai/deployments/gpt-4o-dep/completions?api-version=2024-10-21");
}

#[tokio::test]
async fn streams_tools_and_messages() {
    let mock = start_mock();
    let gw = Gateway::start(&azure_config(mock.addr(), MOCK_ENTRA_CLIENT_SECRET));
    let mut body = chat_body("gpt-az", true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post(&gw, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    // Azure's first chunk holds only the prompt's verdict, and passes through.
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["choices"], json!([]));
    assert!(first["prompt_filter_results"].is_array());
    assert!(!sse_text(&text).is_empty());
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 16);

    // Without include_usage the gateway asks for it (to count tokens) and hides it.
    let resp = post(&gw, "/v1/chat/completions", &chat_body("gpt-az", true), &[]).await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains("\"usage\":{"), "{text}");
    let sent: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);

    // Tools: the call comes back as OpenAI's tool_calls.
    let mut tools = chat_body("gpt-az", false);
    tools["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let v: Value =
        post(&gw, "/v1/chat/completions", &tools, &[("x-mock-tool-call", "lookup")]).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "lookup");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    // /v1/messages: translated to chat for Azure and back.
    let m = json!({"model": "gpt-az", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello"}]});
    let resp = post(&gw, "/v1/messages", &m, &[]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "end_turn");
    let mut ms = m.clone();
    ms["stream"] = json!(true);
    let text = post(&gw, "/v1/messages", &ms, &[]).await.text().await.unwrap();
    assert!(text.contains("event: message_start") && text.contains("event: message_stop"), "{text}");
}

#[tokio::test]
async fn content_filter_refusals_are_clear_openai_errors() {
    let mock = start_mock();
    let gw = Gateway::start(&azure_config(mock.addr(), MOCK_ENTRA_CLIENT_SECRET));
    let resp =
        post(&gw, "/v1/chat/completions", &chat_body("gpt-az", false), &[("x-mock-content-filter", "prompt")]).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "content_filter");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], "prompt");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("content filter refused the prompt (hate (high))"), "{msg}");
    // Not retried: the prompt would be refused anywhere.
    assert_eq!(mock.stats().azure_total, 1);

    // On /v1/messages the same refusal is Anthropic-shaped.
    let m = json!({"model": "gpt-az", "max_tokens": 64, "messages": [{"role": "user", "content": "x"}]});
    let resp = post(&gw, "/v1/messages", &m, &[("x-mock-content-filter", "prompt")]).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("content filter"));

    // A cut answer passes through with finish_reason content_filter, and is counted.
    let resp =
        post(&gw, "/v1/chat/completions", &chat_body("gpt-az", false), &[("x-mock-content-filter", "completion")])
            .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(v["choices"][0]["content_filter_results"]["violence"]["severity"], "medium");
    let text =
        post(&gw, "/v1/chat/completions", &chat_body("gpt-az", true), &[("x-mock-content-filter", "completion")]).await;
    let text = text.text().await.unwrap();
    assert!(text.contains("\"finish_reason\":\"content_filter\""), "{text}");
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("sluice_content_filtered_total")
            && l.contains("provider=\"az\"")
            && l.contains("source=\"completion\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_wrong_api_key_is_a_502_that_never_shows_the_key() {
    let mock = start_mock();
    let text =
        azure_config(mock.addr(), MOCK_ENTRA_CLIENT_SECRET).replacen(MOCK_AZURE_API_KEY, "sk-wrong-azure-key-123", 1);
    let gw = Gateway::start(&text);
    let resp = post(&gw, "/v1/chat/completions", &chat_body("gpt-az", false), &[]).await;
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(body.contains("`az`") && body.contains("HTTP 401"), "{body}");
    assert!(!body.contains("sk-wrong-azure-key-123"), "{body}");
    assert_eq!(mock.stats().auth_refused_total, 3, "retried within max_attempts, each refused");
}

#[tokio::test]
async fn entra_tokens_one_exchange_under_load_and_one_after_revocation() {
    let mock = start_mock();
    let gw = Gateway::start(&azure_config(mock.addr(), MOCK_ENTRA_CLIENT_SECRET));
    let body = chat_body("gpt-entra", false);
    let burst = |n: usize| {
        let (gw, body) = (&gw, &body);
        async move {
            let calls = (0..n).map(|_| post(gw, "/v1/chat/completions", body, &[]));
            futures_util::future::join_all(calls).await
        }
    };
    for r in burst(40).await {
        assert_eq!(r.status(), 200);
    }
    assert_eq!(mock.clouds().token_exchanges().entra, 1, "one token for 40 concurrent first requests");
    let stats = mock.stats();
    let sent = last_request(&stats);
    assert!(header(sent, "authorization").unwrap().starts_with("Bearer eyJ0eXAiOiJKV1Qi.mock-"));
    assert_eq!(header(sent, "api-key"), None);

    // Every token is revoked while requests flow: the first refusal
    // invalidates it, one new token is fetched, and no client sees an error.
    let codes = flow_while(&gw, "/v1/chat/completions", &body, 8, async { mock.clouds().revoke_tokens() }).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    assert_eq!(mock.clouds().token_exchanges().entra, 2, "exactly one refresh after the revocation");

    let status = gateway_status_admin(&gw).await;
    let creds = status["credentials"].as_array().unwrap();
    assert_eq!(creds.len(), 1, "{status}");
    assert_eq!(creds[0]["provider"], "entra");
    assert!(creds[0]["source"].as_str().unwrap().contains(MOCK_ENTRA_CLIENT_ID));
    assert_eq!(creds[0]["refreshes"], 2);
    assert!(!status.to_string().contains(MOCK_ENTRA_CLIENT_SECRET));
    assert!(!status.to_string().contains(MOCK_AZURE_API_KEY));
}

#[tokio::test]
async fn a_refused_entra_secret_is_named_in_health_and_errors_without_the_secret() {
    let mock = start_mock();
    let gw = Gateway::start(&azure_config(mock.addr(), "wrong-entra-secret-xyz"));
    let resp = post(&gw, "/v1/chat/completions", &chat_body("gpt-entra", false), &[]).await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_credentials");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("`entra`") && msg.contains("AADSTS7000215"), "{msg}");
    assert!(!msg.contains("wrong-entra-secret-xyz"));
    let health: Value = client().get(gw.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "degraded");
    let reasons = health["reasons"].to_string();
    assert!(reasons.contains("provider `entra`: credentials failing"), "{reasons}");
    assert!(!reasons.contains("wrong-entra-secret-xyz"));
    // The other Azure providers are fine.
    assert_eq!(post(&gw, "/v1/chat/completions", &chat_body("gpt-az", false), &[]).await.status(), 200);
}

async fn gateway_status_admin(gw: &Gateway) -> Value {
    client().get(gw.url("/status")).bearer_auth(ADMIN_KEY).send().await.unwrap().json().await.unwrap()
}

/// Azure's own rotation: both of a resource's keys are valid; the gateway's
/// config is switched to KEY2 and reloaded while requests flow, then KEY1 is
/// regenerated (refused from then on). No client sees an error.
#[tokio::test]
async fn an_api_key_rotated_through_a_reload_while_requests_flow() {
    let mock = start_mock();
    mock.clouds().set_azure_keys(&["azure-key-one"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let text = azure_config(mock.addr(), MOCK_ENTRA_CLIENT_SECRET);
    std::fs::write(&path, text.replace(MOCK_AZURE_API_KEY, "azure-key-one")).unwrap();
    let gw = Gateway::start_file(&path);
    let body = chat_body("gpt-az", false);
    let both_valid_then_reload = async {
        mock.clouds().set_azure_keys(&["azure-key-one", "azure-key-two"]);
        std::fs::write(&path, text.replace(MOCK_AZURE_API_KEY, "azure-key-two")).unwrap();
        let r = client().post(gw.url("/admin/reload")).bearer_auth(ADMIN_KEY).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    };
    let regenerate_key_one = async { mock.clouds().set_azure_keys(&["azure-key-two"]) };
    let codes = flow_through(
        &gw,
        "/v1/chat/completions",
        &body,
        6,
        vec![Box::pin(both_valid_then_reload), Box::pin(regenerate_key_one)],
    )
    .await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let stats = mock.stats();
    assert_eq!(header(last_request(&stats), "api-key"), Some("azure-key-two"));
    assert_eq!(stats.auth_refused_total, 0);
}
