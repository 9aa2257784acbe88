//! /status, /health, /ready and /metrics over real HTTP; no secret in any.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn status_needs_the_admin_key_and_shows_pool_stats() {
    let mock = start_mock();
    let cfg = config_for(mock.addr(), "")
        .replace("max_body_bytes = 65536", "max_body_bytes = 65536\nadmin_key = \"${ADMIN_KEY}\"");
    let gw = Gateway::start(&cfg);
    let r = client().get(gw.url("/status")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(gw.url("/status")).bearer_auth(CLIENT_KEY).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Warm-up opened a connection on each worker before any request.
    wait_until(Duration::from_secs(5), || mock.stats().connections_opened >= 2).await;
    // One request through, then look.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&chat_body("gpt-test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = client().get(gw.url("/status")).bearer_auth(ADMIN_KEY).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains(UPSTREAM_KEY) && !text.contains(CLIENT_KEY) && !text.contains(ADMIN_KEY), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["uptime_s"].is_u64());
    let actors = v["actors"].as_array().unwrap();
    // Only actors that exist are listed.
    let names: Vec<&str> = actors.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "upstream_sessions",
            "circuit_breakers",
            "model_availability",
            "rate_limiter",
            "response_cache",
            "conversations"
        ]
    );
    assert!(actors.iter().all(|a| a["state"] == "running"), "{v}");
    let s = &actors[0];
    assert_eq!(s["state"], "running");
    assert_eq!(s["restarts"], 0);
    let p = &s["detail"]["providers"][0];
    assert_eq!(p["provider"], "up");
    assert!(p["pool"]["connections_open"].as_u64().unwrap() >= 1, "{p}");
    assert!(p["pool"]["requests_total"].as_u64().unwrap() >= 1, "{p}");
    assert!(p["pool"]["warm_ok"].as_u64().unwrap() >= 2, "{p}");
}

#[tokio::test]
async fn status_lists_recent_upstream_errors() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), "[routing]\nmax_attempts = 1\n"));
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-mock-fault", "500")
        .json(&chat_body("gpt-test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    // The error report is fire-and-forget: poll until the actor has it.
    let mut seen = false;
    for _ in 0..200 {
        let v: serde_json::Value = client().get(gw.url("/status")).send().await.unwrap().json().await.unwrap();
        if v["actors"][0]["detail"]["providers"][0]["errors_total"] == 1 {
            assert_eq!(v["actors"][0]["name"], "upstream_sessions");
            assert_eq!(v["actors"][0]["detail"]["providers"][0]["recent_errors"][0]["kind"], "status_500");
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen);
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let mock = start_mock();
    let gw = Gateway::start(&config_for(mock.addr(), ""));
    let h: serde_json::Value = client().get(gw.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "healthy");
    let r = client().get(gw.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&chat_body("gpt-test", false))
        .send()
        .await
        .unwrap();
    let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for name in [
        "sluice_requests_total",
        "sluice_request_duration_seconds",
        "sluice_gateway_overhead_seconds",
        "sluice_upstream_ttft_seconds",
        "sluice_tokens_total",
        "sluice_cost_usd_total",
        "sluice_upstream_inflight",
        "sluice_actor_mailbox_depth",
    ] {
        assert!(m.contains(name), "missing {name} in\n{m}");
    }
    assert!(!m.contains(UPSTREAM_KEY) && !m.contains(CLIENT_KEY));
}

#[tokio::test]
async fn health_is_degraded_when_no_provider_is_reachable() {
    let dead = dead_addr();
    let gw = Gateway::start(&config_for(dead, ""));
    // Warm-up fails against the dead port.
    let mut status = String::new();
    for _ in 0..200 {
        let h: serde_json::Value = client().get(gw.url("/health")).send().await.unwrap().json().await.unwrap();
        status = h["status"].as_str().unwrap().to_string();
        if status == "degraded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, "degraded");
}

#[tokio::test]
async fn status_names_the_model_of_each_deployment() {
    // Two models share one upstream deployment: their entries carry the
    // same `provider/model` label, and only the model tells them apart.
    let mock = start_mock();
    let cfg = config_for(
        mock.addr(),
        "\n[[models]]\nname = \"alias\"\ndeployments = [{ provider = \"up\", model = \"mock-model\" }]\n",
    );
    let gw = Gateway::start(&cfg);
    let v: serde_json::Value = client().get(gw.url("/status")).send().await.unwrap().json().await.unwrap();
    for actor in ["circuit_breakers", "model_availability"] {
        let detail = &v["actors"].as_array().unwrap().iter().find(|a| a["name"] == actor).unwrap()["detail"];
        let entries: Vec<(&str, &str)> = detail["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["model"].as_str().unwrap(), d["deployment"].as_str().unwrap()))
            .collect();
        assert_eq!(
            entries,
            vec![("gpt-test", "up/mock-model"), ("same", "up/same"), ("alias", "up/mock-model")],
            "{actor}"
        );
    }
}

#[tokio::test]
async fn a_redis_password_in_a_unix_socket_url_never_shows() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    for (form, url) in [
        ("pass", format!("redis+unix://{}/none.sock?db=2&pass=hunter2-unix-secret", dir.path().display())),
        ("password", format!("unix://{}/none.sock?password=hunter2-unix-secret", dir.path().display())),
    ] {
        // Redis is not there: the link stays down, the gateway serves.
        let cfg = format!("{}\n[shared]\nredis_url = \"{url}\"\nprobe_interval_ms = 20\n", config_for(mock.addr(), ""));
        let gw = Gateway::start(&cfg);
        let text = client().get(gw.url("/status")).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains("hunter2-unix-secret"), "{form}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let shown = actor_detail(&v, "shared_state")["redis"].as_str().unwrap().to_string();
        assert!(shown.ends_with(&format!("{form}=***")), "{shown}");
        for path in ["/health", "/metrics"] {
            let t = client().get(gw.url(path)).send().await.unwrap().text().await.unwrap();
            assert!(!t.contains("hunter2-unix-secret"), "{path}: {t}");
        }
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .json(&chat_body("gpt-test", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
