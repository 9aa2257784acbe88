use super::*;

#[test]
fn error_body_is_openai_shaped_and_escaped() {
    let b = error_body("bad \"quote\"\n", "invalid_request_error", Some("model"), None);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"]["message"], "bad \"quote\"\n");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], "model");
    assert!(v["error"]["code"].is_null());
}

#[test]
fn upstream_status_mapping() {
    let e = |s| GatewayError::UpstreamStatus {
        provider: "p".into(),
        upstream_status: s,
        body: Bytes::new(),
        retry_after: None,
    };
    assert_eq!(e(400).status(), StatusCode::BAD_REQUEST);
    assert!(!e(400).retryable());
    assert_eq!(e(401).status(), StatusCode::BAD_GATEWAY);
    assert_eq!(e(429).status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(e(429).code(), "rate_limit_exceeded");
    assert!(e(429).retryable());
    assert_eq!(e(500).status(), StatusCode::BAD_GATEWAY);
    assert!(e(503).retryable());
}

#[test]
fn sse_event_wraps_body() {
    let e = GatewayError::Internal { detail: "x".into() };
    let ev = e.sse_event();
    assert!(ev.starts_with(b"data: {\"error\""));
    assert!(ev.ends_with(b"\n\n"));
}
