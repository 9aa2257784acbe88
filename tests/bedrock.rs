//! `bedrock` deployments over real HTTP, the mock playing Bedrock's runtime
//! (verifying every SigV4 signature) and STS: Converse and ConverseStream
//! (binary event-stream framing) for chat, InvokeModel with Claude's own
//! body for `/v1/messages`, tools, throttling and model-not-ready answers
//! feeding the cool-down and retries, keys from the environment, a rotated
//! credentials file picked up while requests flow, web identity with one
//! STS exchange under load, missing credentials named everywhere, and
//! embeddings through InvokeModel (Titan, one signed call per input; Cohere,
//! 96 texts a call).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::mock::cloud_api::{MOCK_AWS_ACCESS_KEY_ID, MOCK_AWS_SECRET_ACCESS_KEY, MockCloudOptions};
use sluice::mock::{MockOptions, MockServer};

const CLAUDE: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const LLAMA: &str = "meta.llama3-1-70b-instruct-v1:0";

fn mock() -> MockServer {
    let clouds = MockCloudOptions { aws_region: Some("us-east-1".into()), ..MockCloudOptions::default() };
    start_mock_with(MockOptions { clouds, ..MockOptions::default() })
}

/// Provider `br` on `mock` (models `claude`, `llama`), and `extra` appended.
fn bedrock_config(mock: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_key = "${{ADMIN_KEY}}"

[[providers]]
name = "br"
kind = "bedrock"
base_url = "http://{mock}"
forward_headers = ["x-mock-*"]
warm_connections = 0
bedrock = {{ region = "us-east-1", sts_endpoint = "http://{mock}/" }}

[[models]]
name = "claude"
deployments = [{{ provider = "br", model = "{CLAUDE}" }}]

[[models]]
name = "llama"
deployments = [{{ provider = "br", model = "{LLAMA}" }}]

[[keys]]
name = "tester"
key = "${{CLIENT_KEY}}"
{extra}
"#
    )
}

/// The test environment plus `vars` (AWS's own variables).
fn config(text: &str, vars: &[(&str, &str)]) -> Config {
    let mut env = test_env().0;
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_str_with_env(text, "test.toml", &MapEnv(env)).unwrap_or_else(|e| panic!("{e}"))
}

fn env_keys() -> Vec<(&'static str, &'static str)> {
    vec![("AWS_ACCESS_KEY_ID", MOCK_AWS_ACCESS_KEY_ID), ("AWS_SECRET_ACCESS_KEY", MOCK_AWS_SECRET_ACCESS_KEY)]
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
async fn converse_for_every_model_signed_with_sigv4() {
    let mock = mock();
    let gw = Gateway::start_config(config(&bedrock_config(mock.addr(), ""), &env_keys()));
    for (model, id) in
        [("claude", "anthropic.claude-3-5-sonnet-20240620-v1%3A0"), ("llama", "meta.llama3-1-70b-instruct-v1%3A0")]
    {
        let resp = post(&gw, "/v1/chat/completions", &chat_body(model, false), &[]).await;
        assert_eq!(resp.status(), 200, "{model}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 16);
        let stats = mock.stats();
        let sent = last_request(&stats);
        assert_eq!(sent.path, format!("/model/{id}/converse"));
        let auth = header(sent, "authorization").unwrap();
        assert!(auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={MOCK_AWS_ACCESS_KEY_ID}/")), "{auth}");
        assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
        let up: Value = serde_json::from_str(&sent.body).unwrap();
        assert_eq!(up["messages"][0]["content"][0]["text"], "Say hello to the test suite");
        assert!(up.get("model").is_none());
    }
    assert_eq!(mock.stats().auth_refused_total, 0);

    // ConverseStream: event-stream frames in, OpenAI chunks out, same text.
    let whole: Value = post(&gw, "/v1/chat/completions", &chat_body("llama", false), &[]).await.json().await.unwrap();
    let mut body = chat_body("llama", true);
    body["stream_options"] = json!({"include_usage": true});
    let text = post(&gw, "/v1/chat/completions", &body, &[]).await.text().await.unwrap();
    assert_eq!(sse_text(&text), whole["choices"][0]["message"]["content"].as_str().unwrap());
    assert!(text.contains("\"completion_tokens\":16") && text.ends_with("data: [DONE]\n\n"), "{text}");
    let stats = mock.stats();
    let sent = last_request(&stats);
    assert!(sent.path.ends_with("/converse-stream"));
    assert_eq!(header(sent, "accept"), Some("application/vnd.amazon.eventstream"));

    // A chat model does not embed: refused before any call.
    let before = mock.stats().bedrock_total;
    let resp = post(&gw, "/v1/embeddings", &json!({"model": "llama", "input": "x"}), &[]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("does not support /v1/embeddings"));
    assert_eq!(mock.stats().bedrock_total, before);
}

const TITAN: &str = "amazon.titan-embed-text-v2:0";
const COHERE: &str = "cohere.embed-english-v3";

fn embed_models() -> String {
    format!(
        r#"
[[models]]
name = "titan"
deployments = [{{ provider = "br", model = "{TITAN}" }}]

[[models]]
name = "cohere"
deployments = [{{ provider = "br", model = "{COHERE}" }}]
"#
    )
}

/// The mock's own `/v1/embeddings` answer for `input` at `dimensions`.
async fn direct_embeddings(mock: &MockServer, input: &Value, dimensions: u32) -> Value {
    client()
        .post(format!("http://{}/v1/embeddings", mock.addr()))
        .json(&json!({"model": "m", "input": input, "dimensions": dimensions}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
}

#[tokio::test]
async fn titan_embeddings_one_signed_call_per_input() {
    let mock = mock();
    let gw = Gateway::start_config(config(&bedrock_config(mock.addr(), &embed_models()), &env_keys()));
    let inputs = json!(["the first text", "a second", "and a third one"]);
    let body = json!({"model": "titan", "input": inputs, "dimensions": 256});
    let resp = post(&gw, "/v1/embeddings", &body, &[]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let stats = mock.stats();
    // Three InvokeModel calls, each signed, each Titan's body for one text
    // (sent concurrently, so in any order).
    let calls: Vec<_> = stats.recent.iter().filter(|r| r.path.ends_with("/invoke")).collect();
    assert_eq!(calls.len(), 3);
    let mut texts = Vec::new();
    for c in &calls {
        assert_eq!(c.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
        assert!(header(c, "authorization").unwrap().starts_with("AWS4-HMAC-SHA256 Credential="));
        let up: Value = serde_json::from_str(&c.body).unwrap();
        assert_eq!(up["dimensions"], 256);
        assert_eq!(up["normalize"], true);
        assert_eq!(up.as_object().unwrap().len(), 3, "{up}");
        texts.push(up["inputText"].as_str().unwrap().to_owned());
    }
    texts.sort();
    assert_eq!(texts, ["a second", "and a third one", "the first text"]);
    assert_eq!(stats.auth_refused_total, 0);

    // The vectors are the mock's for each text, in input order, unchanged;
    // usage is the sum of Titan's per-call token counts.
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], TITAN);
    let direct = direct_embeddings(&mock, &inputs, 256).await;
    for i in 0..3 {
        assert_eq!(v["data"][i]["index"], i);
        assert_close(&floats(&v["data"][i]["embedding"]), &floats(&direct["data"][i]["embedding"]));
    }
    assert_eq!(v["usage"]["prompt_tokens"], direct["usage"]["prompt_tokens"]);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // base64: OpenAI's encoding of the same little-endian f32s.
    let body = json!({"model": "titan", "input": "the first text", "encoding_format": "base64"});
    let b64: Value = post(&gw, "/v1/embeddings", &body, &[]).await.json().await.unwrap();
    let raw = base64_decode(b64["data"][0]["embedding"].as_str().unwrap());
    let got: Vec<f64> = raw.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect();
    // No `dimensions`: Titan's default size, 1024.
    let direct = direct_embeddings(&mock, &json!("the first text"), 1024).await;
    assert_close(&got, &floats(&direct["data"][0]["embedding"]));

    // One call refused (Titan takes no empty text) fails the whole request
    // with Bedrock's reason; no partial list.
    let body = json!({"model": "titan", "input": ["fine", "", "also fine"]});
    let resp = post(&gw, "/v1/embeddings", &body, &[]).await;
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.contains("minLength") && !text.contains("\"data\""), "{text}");
    // A size Titan does not offer: Bedrock's refusal passes through.
    let body = json!({"model": "titan", "input": "x", "dimensions": 16});
    assert_eq!(post(&gw, "/v1/embeddings", &body, &[]).await.status(), 400);
    // A 500 on every call: an upstream error, not a partial answer.
    let body = json!({"model": "titan", "input": ["a", "b"]});
    let resp = post(&gw, "/v1/embeddings", &body, &[("x-mock-fault", "500")]).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    // Token arrays cannot be embedded as text.
    let resp = post(&gw, "/v1/embeddings", &json!({"model": "titan", "input": [[1, 2, 3]]}), &[]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("array of strings"));
}

#[tokio::test]
async fn cohere_embeddings_96_texts_a_call() {
    let mock = mock();
    let gw = Gateway::start_config(config(&bedrock_config(mock.addr(), &embed_models()), &env_keys()));
    let inputs: Vec<String> = (0..100).map(|i| format!("document number {i}")).collect();
    let resp = post(&gw, "/v1/embeddings", &json!({"model": "cohere", "input": inputs}), &[]).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let stats = mock.stats();
    let calls: Vec<_> = stats.recent.iter().filter(|r| r.path.ends_with("/invoke")).collect();
    assert_eq!(calls.len(), 2);
    let mut sizes = Vec::new();
    for c in &calls {
        assert_eq!(c.path, "/model/cohere.embed-english-v3/invoke");
        let up: Value = serde_json::from_str(&c.body).unwrap();
        assert_eq!(up["input_type"], "search_document");
        sizes.push(up["texts"].as_array().unwrap().len());
    }
    sizes.sort();
    assert_eq!(sizes, [4, 96]);
    assert_eq!(v["data"].as_array().unwrap().len(), 100);
    assert_eq!(v["model"], COHERE);
    let direct = direct_embeddings(&mock, &json!(inputs), 1024).await;
    for i in [0, 95, 96, 99] {
        assert_eq!(v["data"][i]["index"], i);
        assert_close(&floats(&v["data"][i]["embedding"]), &floats(&direct["data"][i]["embedding"]));
    }
    // Bedrock's Cohere answers carry no token count: Sluice counts them.
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 100, "{}", v["usage"]);

    // `input_type` chooses Cohere's; `dimensions` cannot apply.
    let body = json!({"model": "cohere", "input": "a query", "input_type": "search_query"});
    assert_eq!(post(&gw, "/v1/embeddings", &body, &[]).await.status(), 200);
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(up, json!({"texts": ["a query"], "input_type": "search_query"}));
    let body = json!({"model": "cohere", "input": "x", "dimensions": 256});
    assert_eq!(post(&gw, "/v1/embeddings", &body, &[]).await.status(), 400);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn tools_stream_and_not() {
    let mock = mock();
    let gw = Gateway::start_config(config(&bedrock_config(mock.addr(), ""), &env_keys()));
    let mut body = chat_body("claude", false);
    body["tools"] = json!([{"type": "function", "function": {"name": "lookup",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]);
    let v: Value =
        post(&gw, "/v1/chat/completions", &body, &[("x-mock-tool-call", "lookup")]).await.json().await.unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "lookup");
    assert!(call["id"].as_str().unwrap().starts_with("tooluse_"));
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["query"].is_string());
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert_eq!(up["toolConfig"]["tools"][0]["toolSpec"]["name"], "lookup");

    body["stream"] = json!(true);
    let text = post(&gw, "/v1/chat/completions", &body, &[("x-mock-tool-call", "lookup")]).await.text().await.unwrap();
    let args: String = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(args, call["function"]["arguments"].as_str().unwrap());
    assert!(text.contains("\"finish_reason\":\"tool_calls\""), "{text}");
}

#[tokio::test]
async fn messages_to_claude_go_through_invoke_model_untouched() {
    let mock = mock();
    // Metrics are process-wide: a model of its own keeps this test's counts apart.
    let extra = format!(
        "[[models]]\nname = \"claude-metered\"\ndeployments = [{{ provider = \"br\", model = \"{CLAUDE}\" }}]\n"
    );
    let gw = Gateway::start_config(config(&bedrock_config(mock.addr(), &extra), &env_keys()));
    let m = json!({"model": "claude-metered", "max_tokens": 50, "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello there"}], "metadata": {"user_id": "u1"}});
    let resp = post(&gw, "/v1/messages", &m, &[]).await;
    assert_eq!(resp.status(), 200);
    let a: Value = resp.json().await.unwrap();
    assert_eq!(a["type"], "message");
    assert_eq!(a["model"], CLAUDE);
    let stats = mock.stats();
    let sent = last_request(&stats);
    assert_eq!(sent.path, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke");
    let up: Value = serde_json::from_str(&sent.body).unwrap();
    let mut expected = m.clone();
    expected.as_object_mut().unwrap().remove("model");
    expected["anthropic_version"] = json!("bedrock-2023-05-31");
    assert_eq!(up, expected);

    let mut ms = m.clone();
    ms["stream"] = json!(true);
    let resp = post(&gw, "/v1/messages", &ms, &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("event: message_start\ndata: {"), "{text}");
    assert!(text.contains("event: content_block_delta"), "{text}");
    assert!(text.contains("\"amazon-bedrock-invocationMetrics\""), "Bedrock's own metrics pass through: {text}");
    let up: Value = serde_json::from_str(&last_request(&mock.stats()).body).unwrap();
    assert!(up.get("stream").is_none(), "the URL says it: {up}");
    assert!(last_request(&mock.stats()).path.ends_with("/invoke-with-response-stream"));
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(tokens_metric(&metrics, "claude-metered", "output"), Some(32), "both answers' usage counted");

    // To a model that is not Claude: through chat and Converse.
    let l = json!({"model": "llama", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]});
    let a: Value = post(&gw, "/v1/messages", &l, &[]).await.json().await.unwrap();
    assert_eq!(a["type"], "message");
    assert!(last_request(&mock.stats()).path.ends_with("/converse"));
}

#[tokio::test]
async fn throttling_and_not_ready_cool_the_deployment_down() {
    let throttled = mock();
    let fine = mock();
    let extra = format!(
        r#"
[[providers]]
name = "br2"
kind = "bedrock"
base_url = "http://{}"
forward_headers = ["x-mock-*"]
warm_connections = 0
bedrock = {{ region = "us-east-1" }}

[[models]]
name = "both"
deployments = [{{ provider = "br", model = "{LLAMA}" }}]
fallbacks = ["spare"]

[[models]]
name = "spare"
deployments = [{{ provider = "br2", model = "{LLAMA}" }}]

[routing]
max_attempts = 3
"#,
        fine.addr()
    );
    let gw = Gateway::start_config(config(&bedrock_config(throttled.addr(), &extra), &env_keys()));
    throttled.set_faults(1.0, vec![sluice::mock::Fault::RateLimit]);
    for _ in 0..2 {
        let resp = post(&gw, "/v1/chat/completions", &chat_body("both", false), &[]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-sluice-deployment"], format!("br2/{LLAMA}"));
    }
    assert_eq!(throttled.stats().bedrock_total, 1, "cooling after ThrottlingException: the second request skipped it");
    throttled.set_faults(0.0, vec![]);

    // ModelNotReadyException is a 429 too: retried (after the cool-down), then answered 429.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat_body("llama", false),
        &[("x-mock-aws-error", "ModelNotReadyException")],
    )
    .await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"].as_str().unwrap().contains("not ready"), "{v}");
}

#[tokio::test]
async fn a_stream_throttled_before_its_first_event_falls_back_after_it_ends_in_an_error_event() {
    let a = mock();
    let b = mock();
    let extra = format!(
        r#"
[[providers]]
name = "br2"
kind = "bedrock"
base_url = "http://{}"
warm_connections = 0
bedrock = {{ region = "us-east-1" }}

[[models]]
name = "both"
deployments = [{{ provider = "br", model = "{LLAMA}" }}]
fallbacks = ["spare"]

[[models]]
name = "spare"
deployments = [{{ provider = "br2", model = "{LLAMA}" }}]
"#,
        b.addr()
    );
    let gw = Gateway::start_config(config(&bedrock_config(a.addr(), &extra), &env_keys()));
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat_body("both", true),
        &[("x-mock-stream-exception", "throttlingException")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-deployment"], format!("br2/{LLAMA}"));
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!((a.stats().bedrock_total, b.stats().bedrock_total), (1, 1));

    // After the first event there is no going back: the stream ends with an error event.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat_body("llama", true),
        &[("x-mock-stream-exception", "throttlingException"), ("x-mock-cut-after", "3")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let last: Value = serde_json::from_str(sse_data(&text).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "rate_limit_exceeded", "{text}");
    assert!(!sse_text(&text).is_empty());
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_signature_check_and_never_shown() {
    let mock = mock();
    let gw = Gateway::start_config(config(
        &bedrock_config(mock.addr(), ""),
        &[("AWS_ACCESS_KEY_ID", MOCK_AWS_ACCESS_KEY_ID), ("AWS_SECRET_ACCESS_KEY", "wrong-secret-key-xyz")],
    ));
    let resp = post(&gw, "/v1/chat/completions", &chat_body("llama", false), &[]).await;
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(body.contains("`br`") && body.contains("signature we calculated does not match"), "{body}");
    assert!(!body.contains("wrong-secret-key-xyz"));
    let stats = mock.stats();
    assert!(stats.auth_refused_total >= 1);
    assert_eq!(stats.auth_refused_total, stats.bedrock_total, "the same key is not resent after a refusal");
}

#[tokio::test]
async fn a_credentials_file_rotated_while_requests_flow() {
    let mock = mock();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    // Written whole and renamed into place, as credential tools do, so a
    // reader never sees half a file.
    let write = |id: &str, secret: &str| {
        let tmp = dir.path().join("credentials.tmp");
        std::fs::write(&tmp, format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"))
            .unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    write("AKIDOLDKEY", "old-secret");
    mock.clouds().add_aws_key("AKIDOLDKEY", "old-secret");
    let home = dir.path().display().to_string();
    let path = file.display().to_string();
    let gw = Gateway::start_config(config(
        &bedrock_config(mock.addr(), ""),
        &[("HOME", &home), ("AWS_SHARED_CREDENTIALS_FILE", &path)],
    ));
    let body = chat_body("llama", false);
    let codes = flow_while(&gw, "/v1/chat/completions", &body, 6, async {
        // As an operator rotates an IAM key: the new key is active, the file
        // is rewritten, then the old key is deactivated.
        mock.clouds().add_aws_key("AKIDNEWKEY", "new-secret");
        write("AKIDNEWKEY", "new-secret");
        mock.clouds().remove_aws_key("AKIDOLDKEY");
    })
    .await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let stats = mock.stats();
    assert!(header(last_request(&stats), "authorization").unwrap().contains("Credential=AKIDNEWKEY/"));
    assert!(stats.auth_refused_total >= 1, "the old key was refused at least once, and retried with the new one");
    let status: Value =
        client().get(gw.url("/status")).bearer_auth(ADMIN_KEY).send().await.unwrap().json().await.unwrap();
    let br = &status["credentials"][0];
    assert!(br["source"].as_str().unwrap().contains("profile \"default\""), "{br}");
    assert!(!status.to_string().contains("new-secret"));
}

#[tokio::test]
async fn web_identity_one_sts_exchange_under_load() {
    let mock = mock();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.k8s-service-account.sig").unwrap();
    let home = dir.path().display().to_string();
    let token = token.display().to_string();
    let gw = Gateway::start_config(config(
        &bedrock_config(mock.addr(), ""),
        &[
            ("HOME", &home),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bedrock"),
        ],
    ));
    let body = chat_body("llama", false);
    let calls = (0..40).map(|_| post(&gw, "/v1/chat/completions", &body, &[]));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status(), 200);
    }
    assert_eq!(mock.clouds().token_exchanges().sts, 1, "one AssumeRoleWithWebIdentity for 40 requests");
    let stats = mock.stats();
    let sent = last_request(&stats);
    assert!(header(sent, "authorization").unwrap().contains("Credential=ASIAMOCK"));
    assert!(header(sent, "x-amz-security-token").unwrap().starts_with("mock-sts-session-"));
    let status: Value =
        client().get(gw.url("/status")).bearer_auth(ADMIN_KEY).send().await.unwrap().json().await.unwrap();
    assert!(status["credentials"][0]["source"].as_str().unwrap().contains("arn:aws:iam::123456789012:role/bedrock"));
    assert!(status["credentials"][0]["expires_in_s"].as_u64().unwrap() > 3000);
}

#[tokio::test]
async fn missing_credentials_are_named_at_check_request_and_health() {
    let mock = mock();
    let home = tempfile::tempdir().unwrap();
    let home = home.path().display().to_string();
    let config = config(&bedrock_config(mock.addr(), ""), &[("HOME", &home)]);
    let problems = sluice::providers::credentials::preflight(&config);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].1.contains("no AWS credentials found") && problems[0].1.contains("AWS_ACCESS_KEY_ID"));
    let gw = Gateway::start_config(config);
    let resp = post(&gw, "/v1/chat/completions", &chat_body("llama", false), &[]).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_credentials");
    assert!(v["error"]["message"].as_str().unwrap().contains("`br`"));
    let health: Value = client().get(gw.url("/health")).send().await.unwrap().json().await.unwrap();
    assert!(health["reasons"].to_string().contains("provider `br`: credentials failing"), "{health}");
    assert_eq!(mock.stats().bedrock_total, 0);
}

/// Claude's own answer through InvokeModel (`/v1/messages`) reaches the
/// client only as JSON it can read: a body that is not JSON is a 502 naming
/// it, as every other provider's answer is.
#[tokio::test]
async fn a_native_claude_answer_that_is_not_json_is_a_502() {
    let mock = mock();
    let gw = Gateway::start_config(config(&bedrock_config(mock.addr(), ""), &env_keys()));
    let m = json!({"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let good = post(&gw, "/v1/messages", &m, &[]).await;
    assert_eq!(good.status(), 200);
    let bad = post(&gw, "/v1/messages", &m, &[("x-mock-hostile", sluice::mock::Hostile::BadJson.as_str())]).await;
    assert_eq!(bad.status(), 502);
    let body = bad.text().await.unwrap();
    assert!(body.contains("not valid JSON"), "{body}");
}

#[tokio::test]
async fn a_spoiled_stream_frame_ends_the_stream_in_an_error_event_and_the_gateway_goes_on() {
    let mock = mock();
    let gw = Gateway::start_config(config(&bedrock_config(mock.addr(), ""), &env_keys()));
    for (model, path, body) in [
        ("llama", "/v1/chat/completions", chat_body("llama", true)),
        (
            "claude",
            "/v1/messages",
            serde_json::json!({
                "model": "claude", "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "Say hello to the test suite"}]
            }),
        ),
    ] {
        for (bad, why) in
            [("crc", "message checksum"), ("huge", "over the 16777216-byte limit"), ("cut", "ended inside a frame")]
        {
            let resp = post(&gw, path, &body, &[("x-mock-bad-frame", bad), ("x-mock-cut-after", "3")]).await;
            assert_eq!(resp.status(), 200, "{model} {bad}");
            let text = resp.text().await.unwrap();
            let data = sse_data(&text);
            assert!(data.len() >= 2, "{model} {bad}: {text}");
            assert_ne!(data.last().map(String::as_str), Some("[DONE]"), "{model} {bad}: {text}");
            let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
            let message = last["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("`br`") && message.contains(why), "{model} {bad}: {text}");
        }
    }
    // Nothing is left hanging: the same connection pool answers whole streams.
    let resp = post(&gw, "/v1/chat/completions", &chat_body("llama", true), &[]).await;
    let text = resp.text().await.unwrap();
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"), "{text}");
}
