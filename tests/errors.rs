//! Every bad input and every upstream failure gets the right OpenAI-shaped
//! error, over real HTTP; nothing panics, hangs, or leaks a secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

/// Assert an OpenAI-shaped error with this status and code (`""` for a
/// null code); returns the error object.
async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    let got = resp.status();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    assert!(ct.starts_with("application/json"));
    assert!(!text.contains(UPSTREAM_KEY), "secret leaked: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let err = v["error"].clone();
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(err["type"].is_string(), "{v}");
    assert!(err.get("param").is_some(), "{v}");
    if code.is_empty() {
        assert!(err["code"].is_null(), "{v}");
    } else {
        assert_eq!(err["code"], code, "{v}");
    }
    err
}

async fn post(gw: &Gateway, key: Option<&str>, body: &str) -> reqwest::Response {
    let mut r =
        client().post(gw.url("/v1/chat/completions")).header("content-type", "application/json").body(body.to_string());
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

/// The body is checked whole before anything reads it: bytes after the
/// JSON object are refused, and a second `model` written with escapes is
/// the duplicate every upstream's parser would see.
#[tokio::test]
async fn a_body_is_one_json_document_and_escaped_names_count() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let ok_body = chat_body("gpt-test", false).to_string();
    let e =
        expect_error(post(&gw, Some(CLIENT_KEY), &format!("{ok_body} trailing")).await, 400, "invalid_request").await;
    assert!(e["message"].as_str().unwrap().contains("could not parse the JSON"), "{e}");
    let e = expect_error(
        post(
            &gw,
            Some(CLIENT_KEY),
            r#"{"model":"gpt-test","mod\u0065l":"other","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("Duplicate key 'model'"), "{e}");
    // The same body without the trailing bytes is served.
    let r = post(&gw, Some(CLIENT_KEY), &ok_body).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn client_errors() {
    let mock = start_mock();
    let extra = r#"
[[keys]]
name = "narrow"
key = "sk-narrow-key-123"
models = ["same"]
"#;
    let gw = Gateway::start(&config_for(mock.addr(), extra));
    let ok_body = chat_body("gpt-test", false).to_string();

    expect_error(post(&gw, None, &ok_body).await, 401, "invalid_api_key").await;
    expect_error(post(&gw, Some("sk-wrong"), &ok_body).await, 401, "invalid_api_key").await;
    let e =
        expect_error(post(&gw, Some(CLIENT_KEY), &chat_body("nope", false).to_string()).await, 404, "model_not_found")
            .await;
    assert_eq!(e["param"], "model");
    expect_error(post(&gw, Some("sk-narrow-key-123"), &ok_body).await, 403, "model_not_allowed").await;

    let e = expect_error(
        post(&gw, Some(CLIENT_KEY), "{\"model\": \"gpt-test\", \"messages\": [").await,
        400,
        "invalid_request",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("could not parse the JSON"), "{e}");
    let e = expect_error(post(&gw, Some(CLIENT_KEY), r#"{"model": 42, "messages": []}"#).await, 400, "invalid_request")
        .await;
    assert_eq!(e["param"], "model");
    let e = expect_error(
        post(&gw, Some(CLIENT_KEY), r#"{"model": "gpt-test", "messages": [{}], "stream": "yes"}"#).await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "stream");
    let e = expect_error(post(&gw, Some(CLIENT_KEY), r#"{"model": "gpt-test"}"#).await, 400, "invalid_request").await;
    assert_eq!(e["param"], "messages");
    expect_error(post(&gw, Some(CLIENT_KEY), "").await, 400, "invalid_request").await;
    expect_error(post(&gw, Some(CLIENT_KEY), "[1,2]").await, 400, "invalid_request").await;
    expect_error(post(&gw, Some(CLIENT_KEY), "\u{1F600}").await, 400, "invalid_request").await;

    // Unknown route and wrong method: JSON, not HTML.
    let r = client().get(gw.url("/v1/nothing")).bearer_auth(CLIENT_KEY).send().await.unwrap();
    expect_error(r, 404, "unknown_url").await;
    let r = client().get(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).send().await.unwrap();
    expect_error(r, 404, "unknown_url").await;
    // The mock never saw any of these.
    assert_eq!(mock.stats().chat_total, 0);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let big = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "x".repeat(70_000)}]}).to_string();
    // Declared length.
    expect_error(post(&gw, Some(CLIENT_KEY), &big).await, 413, "request_too_large").await;
    // Chunked, no Content-Length: refused once the limit is passed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.as_bytes().chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "request_too_large").await;
}

#[tokio::test]
async fn upstream_failures() {
    let mock = start_mock();
    // One attempt per request and a breaker that never opens: each fault's
    // own error is what this test looks at (retries and circuits have theirs).
    let lenient = "[routing]\nmax_attempts = 1\n[breaker]\nfailure_count = 1000\n";
    let cfg = config_for(mock.addr(), lenient).replace("first_byte_timeout_ms = 3000", "first_byte_timeout_ms = 300");
    let gw = Gateway::start(&cfg);
    let with_fault = |fault: &'static str| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .header("x-mock-fault", fault)
            .json(&chat_body("gpt-test", false))
            .send()
    };
    // 5xx → 502, the upstream's message quoted.
    let e = expect_error(with_fault("500").await.unwrap(), 502, "upstream_error").await;
    assert!(e["message"].as_str().unwrap().contains("HTTP 500: The server had an error"), "{e}");
    // 429 passes on with its Retry-After.
    let r = with_fault("429").await.unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    expect_error(r, 429, "rate_limit_exceeded").await;
    // Hang → 504 after the first-byte timeout.
    let e = expect_error(with_fault("hang").await.unwrap(), 504, "upstream_timeout").await;
    assert!(e["message"].as_str().unwrap().contains("first byte"), "{e}");
    // Not JSON → 502.
    let e = expect_error(with_fault("garbage").await.unwrap(), 502, "upstream_error").await;
    assert!(e["message"].as_str().unwrap().contains("not valid JSON"), "{e}");
    // Connection closed with no answer → 502.
    expect_error(with_fault("reset").await.unwrap(), 502, "upstream_error").await;
    // Body cut short → 502.
    expect_error(with_fault("cut").await.unwrap(), 502, "upstream_error").await;
}

#[tokio::test]
async fn upstream_client_errors_pass_through() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    // The mock refuses max_tokens = 0 itself (the gateway only checks it is
    // a number); its 400 reaches the client as it was, and is not retried.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}))
        .send()
        .await
        .unwrap();
    // The mock's own error object, param and code included.
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], "max_tokens");
    assert_eq!(mock.stats().chat_total, 1, "a client error is not retried");
    // The gateway checks the type of what it reads.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "max_tokens": "lots"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_request").await;
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    let dead = dead_addr();
    let gw = Gateway::start(&config_for(dead, "").replace("forward_headers", "warm_connections = 0\nforward_headers"));
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&chat_body("gpt-test", false))
        .send()
        .await
        .unwrap();
    let e = expect_error(r, 502, "upstream_error").await;
    assert!(e["message"].as_str().unwrap().contains("Could not connect"), "{e}");
}

#[tokio::test]
async fn garbage_bodies_never_panic() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let cases = [
        "{",
        "}",
        "null",
        "true",
        "\"str\"",
        "{\"model\":}",
        "{\"model\":\"gpt-test\",}",
        "{\"model\":\"gpt-test\",\"messages\":[]}",
        "{\"model\":\"gpt-test\",\"messages\":{}}",
        "{\"model\":[\"gpt-test\"]}",
        "{\"model\":\"\\ud800\"}",
        "\0\0\0",
        "{\"model\":\"gpt-test\",\"stream\":true,\"stream_options\":5,\"messages\":[{}]}",
        "{\"model\":\"gpt-test\",\"model\":\"same\",\"messages\":[{}]}",
    ];
    for body in cases {
        let r = post(&gw, Some(CLIENT_KEY), body).await;
        assert_eq!(r.status(), 400, "body {body:?}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"]["message"].is_string());
    }
    // Nesting deep enough to overflow a recursive parser's stack.
    let deep = format!("{{\"model\":\"gpt-test\",\"messages\":[{}{}]}}", "[".repeat(50_000), "]".repeat(50_000));
    let r = post(&gw, Some(CLIENT_KEY), &deep).await;
    assert_eq!(r.status(), 413, "a 50k-level body is over this test's 64 KiB limit");
    let deep = format!("{{\"model\":\"gpt-test\",\"messages\":[{}{}]}}", "[".repeat(30_000), "]".repeat(30_000));
    let r = post(&gw, Some(CLIENT_KEY), &deep).await;
    assert_eq!(r.status(), 400);
    // Random bytes.
    fastrand::seed(1);
    for _ in 0..200 {
        let len = fastrand::usize(0..64);
        let bytes: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
        let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).body(bytes).send().await.unwrap();
        assert_eq!(r.status(), 400);
    }
    // Still alive.
    let r = post(&gw, Some(CLIENT_KEY), &chat_body("gpt-test", false).to_string()).await;
    assert_eq!(r.status(), 200);
}
