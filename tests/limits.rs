//! Traffic control over real HTTP: exact limits, headers, concurrency caps,
//! the priority queue, deployment caps, budgets, spend and its persistence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sluice::mock::MockOptions;

const KEY_A: &str = "sk-limits-key-a";
const KEY_B: &str = "sk-limits-key-b";

/// One mock provider `up`; model `m` (and `n`); keys a and b with `keys`
/// settings appended to each; `extra` at the end.
fn cfg(mock: std::net::SocketAddr, key_a: &str, key_b: &str, extra: &str) -> String {
    format!(
        r#"
[server]
workers = 1

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
forward_headers = ["x-mock-*"]
warm_connections = 0

[[models]]
name = "m"
deployments = [{{ provider = "up", model = "mock-m" }}]
price = {{ input_per_mtok = 2.0, output_per_mtok = 8.0 }}

[[models]]
name = "n"
deployments = [{{ provider = "up", model = "mock-n" }}]

[[keys]]
name = "a"
key = "{KEY_A}"
{key_a}

[[keys]]
name = "b"
key = "{KEY_B}"
{key_b}
{extra}
"#
    )
}

async fn chat_as(
    gw: &Gateway,
    key: &str,
    model: &str,
    extra_body: Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut body = chat_body(model, false);
    for (k, v) in extra_body.as_object().unwrap() {
        body[k] = v.clone();
    }
    let mut r = client().post(gw.url("/v1/chat/completions")).bearer_auth(key).json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

async fn status(gw: &Gateway) -> Value {
    client().get(gw.url("/status")).send().await.unwrap().json().await.unwrap()
}

fn limiter(s: &Value) -> &Value {
    s["actors"].as_array().unwrap().iter().find(|a| a["name"] == "rate_limiter").map(|a| &a["detail"]).unwrap()
}

#[tokio::test]
async fn rpm_admits_exactly_n_with_headers_then_refuses_with_retry_after() {
    let mock = start_mock();
    let gw = Gateway::start(&cfg(mock.addr(), "rpm = 5", "", ""));
    for i in 0..5u64 {
        let r = chat_as(&gw, KEY_A, "m", json!({}), &[]).await;
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h["x-ratelimit-limit-requests"], "5");
        assert_eq!(h["x-ratelimit-remaining-requests"], (4 - i).to_string().as_str());
        assert!(h["x-ratelimit-reset-requests"].to_str().unwrap().ends_with('s'));
    }
    let r = chat_as(&gw, KEY_A, "m", json!({}), &[]).await;
    assert_eq!(r.status(), 429);
    let ra: f64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1.0..=12.0).contains(&ra), "one request refills every 12 s: {ra}");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    // Another key is not limited by a's limit.
    assert_eq!(chat_as(&gw, KEY_B, "m", json!({}), &[]).await.status(), 200);
    assert_eq!(mock.stats().chat_total, 6, "the refused request never went upstream");
}

#[tokio::test]
async fn tokens_are_estimated_before_and_corrected_after() {
    let mock = start_mock_with(MockOptions { delay_ms: 300, ..Default::default() });
    let gw = std::sync::Arc::new(Gateway::start(&cfg(mock.addr(), "tpm = 1000", "", "")));
    // ~600 tokens estimated each (max_tokens 600 + a short prompt); the mock
    // then answers with 16 completion tokens.
    let big = json!({"max_tokens": 600});
    let g = gw.clone();
    let first = tokio::spawn(async move { chat_as(&g, KEY_A, "m", json!({"max_tokens": 600}), &[]).await.status() });
    // While the first is in flight, its estimate holds the tokens.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = chat_as(&gw, KEY_A, "m", big.clone(), &[]).await;
    assert_eq!(r.status(), 429);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("tokens per minute"));
    assert_eq!(first.await.unwrap(), 200);
    // Corrected to the real count: the refund makes room again.
    let r = chat_as(&gw, KEY_A, "m", big, &[]).await;
    assert_eq!(r.status(), 200);
    let remaining: u64 = r.headers()["x-ratelimit-remaining-tokens"].to_str().unwrap().parse().unwrap();
    assert!(remaining < 1000 - 600 && remaining > 300, "{remaining}");
    // Larger than the whole limit: refused, with no retry-after.
    let r = chat_as(&gw, KEY_A, "m", json!({"max_tokens": 5000}), &[]).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn model_and_key_model_limits() {
    let mock = start_mock();
    let extra = "";
    let key_b = r#"
limits = [{ model = "n", rpm = 1 }]
"#;
    let cfg = cfg(mock.addr(), "", key_b, extra).replace(
        "deployments = [{ provider = \"up\", model = \"mock-m\" }]",
        "deployments = [{ provider = \"up\", model = \"mock-m\" }]\nrpm = 3",
    );
    let gw = Gateway::start(&cfg);
    // The model's rpm is shared by every key.
    assert_eq!(chat_as(&gw, KEY_A, "m", json!({}), &[]).await.status(), 200);
    assert_eq!(chat_as(&gw, KEY_B, "m", json!({}), &[]).await.status(), 200);
    assert_eq!(chat_as(&gw, KEY_A, "m", json!({}), &[]).await.status(), 200);
    let r = chat_as(&gw, KEY_B, "m", json!({}), &[]).await;
    assert_eq!(r.status(), 429);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("model:m"));
    // b's own limit on n; a is free on n.
    assert_eq!(chat_as(&gw, KEY_B, "n", json!({}), &[]).await.status(), 200);
    assert_eq!(chat_as(&gw, KEY_B, "n", json!({}), &[]).await.status(), 429);
    assert_eq!(chat_as(&gw, KEY_A, "n", json!({}), &[]).await.status(), 200);
}

#[tokio::test]
async fn the_concurrency_cap_with_a_slow_upstream() {
    let mock = start_mock_with(MockOptions { delay_ms: 400, ..Default::default() });
    let gw = std::sync::Arc::new(Gateway::start(&cfg(mock.addr(), "max_concurrent = 2", "", "")));
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let g = gw.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 50)).await;
                chat_as(&g, KEY_A, "m", json!({}), &[]).await.status().as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes, vec![200, 200, 429]);
    // Slots come back when requests end.
    assert_eq!(chat_as(&gw, KEY_A, "m", json!({}), &[]).await.status(), 200);
}

#[tokio::test]
async fn the_queue_serves_by_priority_and_sheds_when_full() {
    let mock = start_mock_with(MockOptions { delay_ms: 300, ..Default::default() });
    let extra = "[queue]\nmax_wait_ms = 5000\nmax_size = 2\n";
    let cfg = cfg(mock.addr(), "priority = 10", "priority = 1", extra).replace(
        "deployments = [{ provider = \"up\", model = \"mock-m\" }]",
        "deployments = [{ provider = \"up\", model = \"mock-m\" }]\nmax_concurrent = 1",
    );
    let gw = std::sync::Arc::new(Gateway::start(&cfg));
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let run = |key: &'static str, name: &'static str, delay: u64| {
        let (g, o) = (gw.clone(), order.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let s = chat_as(&g, key, "m", json!({}), &[]).await.status().as_u16();
            o.lock().unwrap().push(name);
            s
        })
    };
    let holder = run(KEY_B, "holder", 0);
    let low = run(KEY_B, "low", 80);
    let high = run(KEY_A, "high", 160);
    // Two are waiting now: the queue is full, the next is shed at once.
    tokio::time::sleep(Duration::from_millis(240)).await;
    let t = std::time::Instant::now();
    let r = chat_as(&gw, KEY_A, "m", json!({}), &[]).await;
    assert_eq!(r.status(), 503);
    assert!(t.elapsed() < Duration::from_millis(200), "shed at once");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "overloaded");
    assert_eq!((holder.await.unwrap(), low.await.unwrap(), high.await.unwrap()), (200, 200, 200));
    assert_eq!(*order.lock().unwrap(), vec!["holder", "high", "low"], "higher priority first");
    let s = status(&gw).await;
    assert_eq!(limiter(&s)["queue"]["shed_full"], 1);
    assert_eq!(limiter(&s)["queue"]["admitted_from_queue"], 2);
}

#[tokio::test]
async fn deployment_caps_reroute_instead_of_overloading_a_provider() {
    let a = start_mock();
    let b = start_mock();
    let cfg = format!(
        r#"
[server]
workers = 1
[[providers]]
name = "a"
kind = "openai"
base_url = "http://{}/v1"
warm_connections = 0
[[providers]]
name = "b"
kind = "openai"
base_url = "http://{}/v1"
warm_connections = 0
[[models]]
name = "m"
deployments = [{{ provider = "a", model = "x", weight = 1000, rpm = 2 }}, {{ provider = "b", model = "x", weight = 1 }}]
[[keys]]
name = "k"
key = "{KEY_A}"
"#,
        a.addr(),
        b.addr()
    );
    let gw = Gateway::start(&cfg);
    for _ in 0..6 {
        assert_eq!(chat_as(&gw, KEY_A, "m", json!({}), &[]).await.status(), 200);
    }
    assert_eq!(a.stats().chat_total, 2, "a got exactly its cap");
    assert_eq!(b.stats().chat_total, 4);
}

/// Cost of one answer at m's price: 2 $/M input, 8 $/M output.
fn cost(v: &Value) -> f64 {
    let u = &v["usage"];
    (u["prompt_tokens"].as_f64().unwrap() * 2.0 + u["completion_tokens"].as_f64().unwrap() * 8.0) / 1e6
}

#[tokio::test]
async fn a_daily_budget_stops_the_key_after_the_crossing_request_and_spend_survives_a_restart() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("spend.redb");
    // One answer costs 1 prompt token + 16 completion tokens = 0.000130 $;
    // a budget of 0.0003 $ lets the third request cross it.
    let extra = format!("[spend]\nstore = \"{}\"\n", store.display());
    let config = cfg(mock.addr(), "daily_budget_usd = 0.0003", "", &extra);
    let mut spent = 0.0;
    {
        let gw = Gateway::start(&config);
        for i in 0..3 {
            let r = chat_as(&gw, KEY_A, "m", json!({}), &[]).await;
            assert_eq!(r.status(), 200, "request {i}");
            spent += cost(&r.json().await.unwrap());
        }
        let r = chat_as(&gw, KEY_A, "m", json!({}), &[]).await;
        assert_eq!(r.status(), 429);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "insufficient_quota");
        // Spend equals the sum of what the mock reported.
        let s = status(&gw).await;
        let a = &limiter(&s)["spend"][0];
        assert_eq!(a["key"], "a");
        assert!((a["today_usd"].as_f64().unwrap() - spent).abs() < 1e-12, "{a} vs {spent}");
        let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(m.lines().any(|l| l.starts_with("sluice_cost_usd_total{key=\"a\",model=\"m\"}")), "{m}");
        gw.shutdown();
    }
    // A new process on the same store: the spend and the budget hold.
    let gw = Gateway::start(&config);
    let s = status(&gw).await;
    let a = &limiter(&s)["spend"][0];
    assert!((a["today_usd"].as_f64().unwrap() - spent).abs() < 1e-12, "{a}");
    assert_eq!(chat_as(&gw, KEY_A, "m", json!({}), &[]).await.status(), 429);
    assert_eq!(chat_as(&gw, KEY_B, "m", json!({}), &[]).await.status(), 200);
}

#[tokio::test]
async fn total_spend_equals_the_sum_of_the_usages_the_mock_reported() {
    let mock = start_mock();
    let gw = Gateway::start(&cfg(mock.addr(), "", "", ""));
    let mut expected = 0.0;
    for i in 0..20 {
        let tokens = (i % 7 + 1).to_string();
        let r = chat_as(&gw, KEY_A, "m", json!({}), &[("x-mock-tokens", tokens.as_str())]).await;
        expected += cost(&r.json().await.unwrap());
    }
    // Streams count too.
    let mut body = chat_body("m", true);
    body["stream_options"] = json!({"include_usage": true});
    let text = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY_A)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    expected += cost(&usage_chunk);
    // The stream's record lands when it ends; poll briefly.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let s = status(&gw).await;
        let got = limiter(&s)["spend"][0]["today_usd"].as_f64().unwrap();
        if (got - expected).abs() < 1e-12 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{got} vs {expected}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn without_upstream_usage_the_answer_is_counted_with_a_tokenizer() {
    let mock = start_mock();
    let gw = Gateway::start(&cfg(mock.addr(), "tpm = 100000", "", ""));
    let r = chat_as(&gw, KEY_A, "m", json!({}), &[("x-mock-usage", "none"), ("x-mock-tokens", "20")]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v.get("usage").is_none(), "{v}");
    // Counted: spend is non-zero, with 20 words of output (o200k: about a token each).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let s = status(&gw).await;
        let usd = limiter(&s)["spend"][0]["today_usd"].as_f64().unwrap();
        if usd > 0.0 {
            let output_usd = usd - 2.0 * 1e-6 * 1.0; // minus the ~prompt estimate share
            assert!(output_usd > 15.0 * 8.0 / 1e6 && output_usd < 30.0 * 8.0 / 1e6, "{usd}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no spend recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_huge_max_tokens_is_refused_by_a_token_limit_and_never_wraps_the_estimate() {
    let mock = start_mock();
    let gw = Gateway::start(&cfg(mock.addr(), "tpm = 1000", "", ""));
    // 5000 is more than the whole limit: refused at once, never retried.
    let refused = |r: &reqwest::Response| r.status() == 429 && r.headers().get("retry-after").is_none();
    assert!(refused(&chat_as(&gw, KEY_A, "m", json!({"max_tokens": 5000}), &[]).await));
    // So is every larger count, up to u64::MAX (the estimate saturates
    // instead of wrapping round to a small number that would fit).
    for n in [u64::MAX, u64::MAX - 1, 1 << 63] {
        for field in ["max_tokens", "max_completion_tokens"] {
            let r = chat_as(&gw, KEY_A, "m", json!({ field: n }), &[]).await;
            assert!(refused(&r), "{field} = {n}: {}", r.status());
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
        }
    }
    // Not a count of tokens at all: a 400 that says so, never a wrap.
    for raw in ["-1", "1e30", "5000.5", "99999999999999999999999", "-18446744073709551615"] {
        let body = format!(r#"{{"model":"m","max_tokens":{raw},"messages":[{{"role":"user","content":"hi"}}]}}"#);
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY_A)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "max_tokens = {raw}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
    assert_eq!(mock.stats().chat_total, 0, "nothing went upstream");
    // The limit is untouched by all of it: a normal request still fits.
    assert_eq!(chat_as(&gw, KEY_A, "m", json!({"max_tokens": 600}), &[]).await.status(), 200);
}
