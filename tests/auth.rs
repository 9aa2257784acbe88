//! Client auth over HTTP: a key sent the wrong way gets a 401 that says what
//! is wrong with it, never a bare "missing key", and never echoes it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::header::HeaderValue;

/// POST a chat request with these headers; the status and the error message
/// (empty on success).
async fn ask(gw: &Gateway, path: &str, headers: &[(&str, HeaderValue)]) -> (u16, String) {
    let mut r = client().post(gw.url(path)).header("content-type", "application/json");
    for (name, value) in headers {
        r = r.header(*name, value.clone());
    }
    let body = if path == "/v1/messages" {
        serde_json::json!({"model": "gpt-test", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
    } else {
        chat_body("gpt-test", false)
    };
    let resp = r.body(body.to_string()).send().await.unwrap();
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await.unwrap();
    if status == 200 {
        return (status, String::new());
    }
    let message = v["error"]["message"].as_str().unwrap_or_else(|| panic!("no message in {v}")).to_owned();
    assert!(!message.contains(CLIENT_KEY), "the key is echoed: {message}");
    if path == "/v1/messages" {
        assert_eq!(v["error"]["type"], "authentication_error", "{v}");
    } else {
        assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
    }
    (status, message)
}

fn v(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}

#[tokio::test]
async fn malformed_keys_say_what_is_wrong() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let auth = "authorization";
    let cases: Vec<(Vec<(&str, HeaderValue)>, &str)> = vec![
        (vec![(auth, v(CLIENT_KEY))], "must be `Bearer <key>`: it holds one word with no `Bearer ` before it"),
        (vec![(auth, v(&format!("Basic {CLIENT_KEY}")))], "must be `Bearer <key>`: it uses another scheme"),
        (vec![(auth, v(&format!("Token {CLIENT_KEY}")))], "it uses another scheme"),
        (vec![(auth, v("Bearer"))], "says `Bearer` but holds no key after it"),
        (vec![(auth, v("Bearer   "))], "says `Bearer` but holds no key after it"),
        (vec![(auth, v(""))], "The Authorization header is empty"),
        (vec![(auth, HeaderValue::from_bytes(b"Bearer \xfe\xff").unwrap())], "other than visible ASCII"),
        (vec![("x-api-key", v(""))], "The `x-api-key` header is empty"),
        (vec![("x-api-key", HeaderValue::from_bytes(b"\xfe\xff").unwrap())], "other than visible ASCII"),
        (vec![], "Missing API key"),
        (vec![(auth, v("Bearer sk-not-a-key"))], "Incorrect API key provided"),
    ];
    for path in ["/v1/chat/completions", "/v1/messages"] {
        for (headers, want) in &cases {
            let (status, message) = ask(&gw, path, headers).await;
            assert_eq!(status, 401, "{path} {headers:?}: {message}");
            assert!(message.contains(want), "{path} {headers:?}: {message:?} lacks {want:?}");
        }
    }
}

#[tokio::test]
async fn any_readable_key_is_used() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let ok: Vec<Vec<(&str, HeaderValue)>> = vec![
        vec![("authorization", v(&format!("Bearer {CLIENT_KEY}")))],
        vec![("authorization", v(&format!("bearer\t {CLIENT_KEY} ")))],
        vec![("x-api-key", v(CLIENT_KEY))],
        // A malformed Authorization does not hide a good x-api-key.
        vec![("authorization", v(CLIENT_KEY)), ("x-api-key", v(CLIENT_KEY))],
        vec![("authorization", v(&format!("Bearer {CLIENT_KEY}"))), ("x-api-key", v(""))],
    ];
    for headers in &ok {
        let (status, message) = ask(&gw, "/v1/chat/completions", headers).await;
        assert_eq!(status, 200, "{headers:?}: {message}");
    }
}
