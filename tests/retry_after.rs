//! Retry-After and unhealthy deployments over real HTTP (issue 13, points
//! 2, 4, 9 and 12): absurd Retry-After values never take a worker down, a
//! 429's wait is honoured by the very next attempt, a wait past the cap is
//! answered at once, a model with every circuit open still tries one, and
//! a half-open circuit does not stay so once traffic stops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sluice::mock::{Fault, MockOptions};

async fn chat(gw: &Gateway, model: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body(model, false));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

async fn metrics(gw: &Gateway) -> String {
    client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn breaker(s: &Value, deployment: &str) -> Value {
    actor_detail(s, "circuit_breakers")["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == deployment)
        .cloned()
        .unwrap()
}

/// One provider `up` at `mock`, model `solo` on it alone, and `extra`.
fn solo(mock: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
workers = 1

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
forward_headers = ["x-mock-*"]
first_byte_timeout_ms = 2000
warm_connections = 0

[[keys]]
name = "tester"
key = "${{CLIENT_KEY}}"
{extra}
"#
    )
}

#[tokio::test]
async fn absurd_retry_after_values_never_take_the_gateway_down() {
    let mock = start_mock();
    let extra = r#"
[routing]
retry_after_cap_ms = 300

[[models]]
name = "solo"
deployments = [{ provider = "up", model = "m" }]
max_attempts = 1
"#;
    let gw = Gateway::start(&solo(mock.addr(), extra));
    // (value sent upstream, retry-after the client gets: the upstream's,
    // saturated at a day, or the default second for what is no delay)
    let cases = [
        ("1e300", "86400"),
        ("99999999999999999999", "86400"),
        ("inf", "86400"),
        ("-5", "1"),
        ("-inf", "1"),
        ("NaN", "1"),
        ("soon", "1"),
        ("Fri, 31 Dec 9999 23:59:59 GMT", "86400"),
        ("Thu, 01 Jan 1970 00:00:00 GMT", "0"),
        ("2.5", "3"),
    ];
    for (sent, told) in cases {
        let r = chat(&gw, "solo", &[("x-mock-fault", "429"), ("x-mock-retry-after", sent)]).await;
        assert_eq!(r.status(), 429, "Retry-After {sent:?}");
        assert_eq!(r.headers()["retry-after"], told, "Retry-After {sent:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        // Each value cools the deployment: let it pass before the next.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if told != "0" {
            let s = gateway_status(&gw).await;
            assert!(breaker(&s, "up/m")["cooling_remaining_s"].as_f64().unwrap() > 0.0, "{sent:?}: {s}");
        }
        let reset = client().post(format!("http://{}/mock/reset", mock.addr())).send().await.unwrap();
        assert!(reset.status().is_success());
        wait_cooling_over(&gw).await;
    }
    // Values that are no delay are counted, by reason.
    let m = metrics(&gw).await;
    for reason in ["negative", "nan", "unreadable"] {
        assert!(
            metric(
                &m,
                "sluice_upstream_retry_after_invalid_total",
                &["provider=\"up\"", &format!("reason=\"{reason}\"")]
            ) >= 1.0,
            "{reason}: {m}"
        );
    }
    // Still serving.
    assert_eq!(chat(&gw, "solo", &[]).await.status(), 200);
}

/// Tell the breakers the cool-down is over, the way a client would wait.
async fn wait_cooling_over(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = gateway_status(gw).await;
        if breaker(&s, "up/m")["cooling_remaining_s"].as_f64().unwrap() == 0.0 {
            return;
        }
        assert!(Instant::now() < deadline, "still cooling: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_429_is_not_hit_again_before_its_retry_after_and_a_long_wait_is_answered_at_once() {
    let mock = start_mock();
    let extra = r#"
[routing]
retry_after_cap_ms = 1000

[[models]]
name = "solo"
deployments = [{ provider = "up", model = "m" }]
max_attempts = 3
"#;
    let gw = Gateway::start(&solo(mock.addr(), extra));
    let t = Instant::now();
    let r = chat(&gw, "solo", &[("x-mock-fault", "429"), ("x-mock-retry-after", "5")]).await;
    // 5 s is past the 1 s cap: the 429 at once, with the wait left, and no
    // second call to a deployment that asked for quiet.
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "5", "the upstream's wait, left");
    assert!(t.elapsed() < Duration::from_millis(900), "answered at once, took {:?}", t.elapsed());
    assert_eq!(mock.stats().chat_total, 1, "the deployment was not hit again");
}

#[tokio::test]
async fn a_429_is_waited_out_once_then_tried_again() {
    let mock = start_mock_with(MockOptions {
        fail_rate: 1.0,
        faults: vec![Fault::RateLimit],
        retry_after_s: 1,
        ..Default::default()
    });
    let extra = r#"
[[models]]
name = "solo"
deployments = [{ provider = "up", model = "m" }]
max_attempts = 3
"#;
    let gw = Gateway::start(&solo(mock.addr(), extra));
    let call = tokio::spawn({
        let url = gw.url("/v1/chat/completions");
        async move {
            let t = Instant::now();
            let r = client().post(url).bearer_auth(CLIENT_KEY).json(&chat_body("solo", false)).send().await.unwrap();
            (r.status(), t.elapsed())
        }
    });
    // The first attempt got its 429; the upstream recovers at once.
    wait_until(Duration::from_secs(5), || mock.stats().faults_injected["429"] == 1).await;
    mock.set_faults(0.0, vec![]);
    let (status, took) = call.await.unwrap();
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(950), "the Retry-After was waited out: {took:?}");
    assert_eq!(mock.stats().chat_total, 2, "one 429, then one call after its Retry-After, nothing between");
}

#[tokio::test]
async fn a_model_with_every_circuit_open_still_tries_the_earliest_opened() {
    let mock = start_mock();
    let extra = r#"
[breaker]
min_requests = 2
failure_count = 2
cooldown_ms = 60000

[[models]]
name = "solo"
deployments = [{ provider = "up", model = "m" }]
max_attempts = 1

[[models]]
name = "strict"
deployments = [{ provider = "up", model = "s" }]
max_attempts = 1
on_all_unhealthy = "fail_fast"
"#;
    let gw = Gateway::start(&solo(mock.addr(), extra));
    for model in ["solo", "strict"] {
        for _ in 0..2 {
            assert_eq!(chat(&gw, model, &[("x-mock-fault", "500")]).await.status(), 502);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = gateway_status(&gw).await;
        if breaker(&s, "up/m")["state"] == "open" && breaker(&s, "up/s")["state"] == "open" {
            break;
        }
        assert!(Instant::now() < deadline, "the circuits never opened: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The upstream has recovered; its circuit is open for a minute.
    let before = mock.stats().chat_total;
    let r = chat(&gw, "solo", &[]).await;
    assert_eq!(r.status(), 200, "one attempt at the only deployment, not 503");
    assert_eq!(r.headers()["x-sluice-deployment"], "up/m");
    assert_eq!(mock.stats().chat_total, before + 1);
    // A model that asked to fail fast does.
    let r = chat(&gw, "strict", &[]).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_deployment_available");
    assert_eq!(mock.stats().chat_total, before + 1, "fail_fast sent nothing upstream");
    let m = metrics(&gw).await;
    assert_eq!(metric(&m, "sluice_all_unhealthy_total", &["model=\"solo\"", "action=\"tried_one\""]), 1.0, "{m}");
    assert_eq!(metric(&m, "sluice_all_unhealthy_total", &["model=\"strict\"", "action=\"fail_fast\""]), 1.0, "{m}");
}

#[tokio::test]
async fn a_cooling_deployment_is_never_tried_anyway() {
    let mock = start_mock();
    let extra = r#"
[[models]]
name = "solo"
deployments = [{ provider = "up", model = "m" }]
deadline_ms = 300
"#;
    let gw = Gateway::start(&solo(mock.addr(), extra));
    // 5 s of quiet asked, 300 ms of deadline: no wait, no second call.
    let r = chat(&gw, "solo", &[("x-mock-fault", "429"), ("x-mock-retry-after", "5")]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(mock.stats().chat_total, 1);
    // Nothing else is admitted, yet a cooling deployment is not "tried
    // anyway" like an open circuit: the next request gets a 429 with the
    // time left at once, and nothing goes upstream.
    let r = chat(&gw, "solo", &[]).await;
    assert_eq!(r.status(), 429);
    let left: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&left), "{left}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(mock.stats().chat_total, 1, "never hammered");
    let m = metrics(&gw).await;
    assert!(metric(&m, "sluice_all_unhealthy_total", &["model=\"solo\"", "action=\"rate_limited\""]) >= 1.0, "{m}");
}

#[tokio::test]
async fn a_half_open_circuit_without_traffic_closes() {
    let mock = start_mock();
    let extra = r#"
[breaker]
window_ms = 300
min_requests = 2
failure_count = 2
cooldown_ms = 200

[[models]]
name = "solo"
deployments = [{ provider = "up", model = "m" }]
max_attempts = 1
"#;
    let gw = Gateway::start(&solo(mock.addr(), extra));
    for _ in 0..2 {
        assert_eq!(chat(&gw, "solo", &[("x-mock-fault", "500")]).await.status(), 502);
    }
    // No traffic from here: open, then half-open after the cool-down, then
    // closed once a window passed without a probe.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let s = gateway_status(&gw).await;
        let state = breaker(&s, "up/m")["state"].as_str().unwrap().to_string();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "closed" && seen.len() > 1 {
            break;
        }
        assert!(Instant::now() < deadline, "stuck: states seen {seen:?}: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.contains(&"open".to_string()), "{seen:?}");
    let m = metrics(&gw).await;
    assert!(metric(&m, "sluice_circuit_transitions_total", &["up/m", "to=\"closed\""]) >= 1.0, "{m}");
}
