//! The admin API over real HTTP: runtime keys (created with a secret shown
//! once, listed without it, changed, rotated with a grace period, deleted),
//! config keys read-only, teams capping their keys together, spend per day,
//! records that survive a restart of the process, and keys that reach
//! every replica through Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::process::SluiceProcess;
use common::redis_server::RedisServer;
use common::*;
use serde_json::{Value, json};

fn config(mock: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
admin_key = "{ADMIN_KEY}"
workers = 2

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
warm_connections = 0

[[models]]
name = "m"
deployments = [{{ provider = "up", model = "mock-m" }}]
price = {{ input_per_mtok = 2.0, output_per_mtok = 8.0 }}

[[models]]
name = "other"
deployments = [{{ provider = "up", model = "mock-o" }}]

[[keys]]
name = "from-config"
key = "{CLIENT_KEY}"
{extra}
"#
    )
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut r = client().request(method, url).bearer_auth(ADMIN_KEY);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn chat(base: &str, key: &str, model: &str) -> u16 {
    client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body(model, false))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn base(gw: &Gateway) -> String {
    gw.url("")
}

fn start(dir: &tempfile::TempDir, mock: SocketAddr) -> Gateway {
    let store = dir.path().join("spend.redb");
    Gateway::start(&config(mock, &format!("[spend]\nstore = \"{}\"\n", store.display())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_key_is_created_listed_changed_rotated_and_deleted() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&dir, mock.addr());
    let b = base(&gw);

    let (s, created) =
        call(reqwest::Method::POST, gw.url("/admin/keys"), Some(json!({"name": "k1", "models": ["m"]}))).await;
    assert_eq!(s, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("sk-sluice-") && secret.len() > 40, "{secret}");
    assert_eq!(chat(&b, &secret, "m").await, 200, "a new key works at once");
    assert_eq!(chat(&b, &secret, "other").await, 403, "only its models");

    // Listed without its secret or digest; the config key read-only.
    let (s, list) = call(reqwest::Method::GET, gw.url("/admin/keys"), None).await;
    assert_eq!(s, 200);
    let text = list.to_string();
    assert!(!text.contains(&secret) && !text.contains("sha256"), "{text}");
    let names: Vec<(&str, &str)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("from-config", "config"), ("k1", "runtime")]);
    let (s, v) = call(reqwest::Method::PATCH, gw.url("/admin/keys/from-config"), Some(json!({"rpm": 1}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("conflict")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("config file"), "{v}");
    assert_eq!(call(reqwest::Method::DELETE, gw.url("/admin/keys/from-config"), None).await.0, 409);

    // A changed limit applies to the next request.
    let (s, v) = call(reqwest::Method::PATCH, gw.url("/admin/keys/k1"), Some(json!({"rpm": 1}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rpm"], 1);
    assert_eq!(chat(&b, &secret, "m").await, 200);
    assert_eq!(chat(&b, &secret, "m").await, 429);
    let (s, _) = call(reqwest::Method::PATCH, gw.url("/admin/keys/k1"), Some(json!({"rpm": null}))).await;
    assert_eq!(s, 200);
    assert_eq!(chat(&b, &secret, "m").await, 200, "null lifts the limit");

    // Rotation: both secrets work during the grace period.
    let (s, rotated) = call(reqwest::Method::POST, gw.url("/admin/keys/k1/rotate"), Some(json!({}))).await;
    assert_eq!(s, 200, "{rotated}");
    let new_secret = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_valid_until"].as_u64().unwrap() > 86_000, "{rotated}");
    assert_eq!(chat(&b, &new_secret, "m").await, 200);
    assert_eq!(chat(&b, &secret, "m").await, 200, "the old secret works during the grace period");
    // Rotated again without grace: the one before stops at once.
    let (_, again) = call(reqwest::Method::POST, gw.url("/admin/keys/k1/rotate"), Some(json!({"grace_s": 0}))).await;
    let newest = again["key"].as_str().unwrap().to_string();
    assert_eq!(chat(&b, &new_secret, "m").await, 401);
    assert_eq!(chat(&b, &newest, "m").await, 200);

    // An expiry in the past is refused; deletion is at once.
    let (s, _) = call(reqwest::Method::PATCH, gw.url("/admin/keys/k1"), Some(json!({"expires_at": 1}))).await;
    assert_eq!(s, 400);
    assert_eq!(call(reqwest::Method::DELETE, gw.url("/admin/keys/k1"), None).await.0, 200);
    assert_eq!(chat(&b, &newest, "m").await, 401, "a deleted key is refused on its next request");
    assert_eq!(call(reqwest::Method::GET, gw.url("/admin/keys/k1"), None).await.0, 404);

    // Every admin route needs the admin key.
    for (m, path) in [
        (reqwest::Method::GET, "/admin/keys"),
        (reqwest::Method::POST, "/admin/keys"),
        (reqwest::Method::GET, "/admin/teams"),
        (reqwest::Method::GET, "/admin/spend"),
        (reqwest::Method::POST, "/admin/reload"),
    ] {
        let r = client().request(m, gw.url(path)).bearer_auth(CLIENT_KEY).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "admin_key_required");
    }
    // Bad input is a 400 that says what is wrong.
    let (s, v) = call(reqwest::Method::POST, gw.url("/admin/keys"), Some(json!({"name": "a b"}))).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) =
        call(reqwest::Method::POST, gw.url("/admin/keys"), Some(json!({"name": "x", "models": ["nope"]}))).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = call(reqwest::Method::POST, gw.url("/admin/keys"), Some(json!({"name": "x", "rpn": 1}))).await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_caps_its_keys_together_and_spend_is_kept_per_day() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let gw = start(&dir, mock.addr());
    let b = base(&gw);
    let (s, _) = call(reqwest::Method::POST, gw.url("/admin/keys"), Some(json!({"name": "x", "team": "search"}))).await;
    assert_eq!(s, 400, "the team must exist first");
    let (s, t) = call(reqwest::Method::POST, gw.url("/admin/teams"), Some(json!({"name": "search", "rpm": 3}))).await;
    assert_eq!(s, 201, "{t}");
    let mut secrets = vec![];
    for name in ["s1", "s2"] {
        let (s, k) =
            call(reqwest::Method::POST, gw.url("/admin/keys"), Some(json!({"name": name, "team": "search"}))).await;
        assert_eq!(s, 201, "{k}");
        secrets.push(k["key"].as_str().unwrap().to_string());
    }
    // Three requests across the two keys fill the team's minute.
    assert_eq!(chat(&b, &secrets[0], "m").await, 200);
    assert_eq!(chat(&b, &secrets[1], "m").await, 200);
    assert_eq!(chat(&b, &secrets[0], "m").await, 200);
    assert_eq!(chat(&b, &secrets[1], "m").await, 429, "the team's limit caps both keys");
    assert_eq!(chat(&b, CLIENT_KEY, "m").await, 200, "other keys are not in the team");
    let (s, v) = call(reqwest::Method::DELETE, gw.url("/admin/teams/search"), None).await;
    assert_eq!(s, 409, "a team with keys is not deleted: {v}");

    // Spend per day, key and model, from the store. Each request's spend
    // is recorded on its own, so wait for all three: s1 made two requests
    // the same as s2's one (two rows alone may still miss s1's second).
    let mut rows = Value::Null;
    for _ in 0..300 {
        let (s, v) = call(reqwest::Method::GET, gw.url("/admin/spend?team=search"), None).await;
        assert_eq!(s, 200, "{v}");
        let days = v["days"].as_array().unwrap();
        let usd = |key: &str| days.iter().find(|d| d["key"] == key).and_then(|d| d["usd"].as_f64()).unwrap_or(0.0);
        if days.len() == 2 && usd("s2") > 0.0 && (usd("s1") - 2.0 * usd("s2")).abs() < 1e-9 {
            rows = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let days = rows["days"].as_array().unwrap_or_else(|| panic!("no spend rows: {rows}"));
    let keys: Vec<&str> = days.iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["s1", "s2"], "{rows}");
    assert!(days.iter().all(|d| d["model"] == "m" && d["usd"].as_f64().unwrap() > 0.0), "{rows}");
    let today = &days[0]["date"];
    assert_eq!(rows["to"], *today);
    let total = rows["total_usd"].as_f64().unwrap();
    let (_, one) = call(reqwest::Method::GET, gw.url("/admin/spend?key=s1&model=m"), None).await;
    assert!(one["total_usd"].as_f64().unwrap() < total && one["total_usd"].as_f64().unwrap() > 0.0, "{one}");
    let (_, none) = call(reqwest::Method::GET, gw.url("/admin/spend?key=s1&model=other"), None).await;
    assert_eq!(none["days"].as_array().unwrap().len(), 0);
    let (s, _) = call(reqwest::Method::GET, gw.url("/admin/spend?from=2026-02-30"), None).await;
    assert_eq!(s, 400);
    // The team's own spend, as a whole.
    let (_, team) = call(reqwest::Method::GET, gw.url("/admin/teams/search"), None).await;
    assert!((team["today_usd"].as_f64().unwrap() - total).abs() < 1e-9, "{team} vs {total}");
    assert_eq!(team["keys"], json!(["s1", "s2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_keys_survive_a_restart_of_the_process() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let store = dir.path().join("spend.redb");
    std::fs::write(&path, config(mock.addr(), &format!("[spend]\nstore = \"{}\"\n", store.display()))).unwrap();
    let secret;
    {
        let p = SluiceProcess::spawn(&path);
        p.wait_ready(false).await;
        let (s, _) = call(reqwest::Method::POST, p.url("/admin/teams"), Some(json!({"name": "t", "rpm": 100}))).await;
        assert_eq!(s, 201);
        let (s, k) =
            call(reqwest::Method::POST, p.url("/admin/keys"), Some(json!({"name": "kept", "team": "t"}))).await;
        assert_eq!(s, 201, "{k}");
        secret = k["key"].as_str().unwrap().to_string();
        let (s, _) = call(reqwest::Method::POST, p.url("/admin/keys"), Some(json!({"name": "gone"}))).await;
        assert_eq!(s, 201);
        assert_eq!(call(reqwest::Method::DELETE, p.url("/admin/keys/gone"), None).await.0, 200);
        assert_eq!(chat(&p.url(""), &secret, "m").await, 200);
        p.stop();
    }
    let p = SluiceProcess::spawn(&path);
    p.wait_ready(false).await;
    assert_eq!(chat(&p.url(""), &secret, "m").await, 200, "the key works after a restart");
    let (_, list) = call(reqwest::Method::GET, p.url("/admin/keys"), None).await;
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["from-config", "kept"], "deleted keys stay deleted");
    let (_, t) = call(reqwest::Method::GET, p.url("/admin/teams/t"), None).await;
    assert_eq!(t["rpm"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_or_redis_runtime_keys_are_refused_with_the_reason() {
    let mock = start_mock();
    let gw = Gateway::start(&config(mock.addr(), ""));
    let (s, v) = call(reqwest::Method::POST, gw.url("/admin/keys"), Some(json!({"name": "k"}))).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("[spend] store"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_on_one_replica_works_on_the_other_through_redis() {
    let redis = RedisServer::start().await;
    let mock = start_mock();
    let shared = format!("[shared]\nredis_url = \"{}\"\nprobe_interval_ms = 50\n", redis.url());
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let replicas: Vec<SluiceProcess> = dirs
        .iter()
        .map(|d| {
            let path = d.path().join("sluice.toml");
            std::fs::write(&path, config(mock.addr(), &shared)).unwrap();
            SluiceProcess::spawn(&path)
        })
        .collect();
    for r in &replicas {
        r.wait_ready(true).await;
    }
    let (a, b) = (&replicas[0], &replicas[1]);
    let (s, k) = call(reqwest::Method::POST, a.url("/admin/keys"), Some(json!({"name": "everywhere"}))).await;
    assert_eq!(s, 201, "{k}");
    let secret = k["key"].as_str().unwrap().to_string();
    let until = |want: u16| {
        let url = b.url("");
        let secret = secret.clone();
        async move {
            for _ in 0..500 {
                if chat(&url, &secret, "m").await == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("replica b never answered {want}");
        }
    };
    until(200).await;
    let (s, _) =
        call(reqwest::Method::PATCH, a.url("/admin/keys/everywhere"), Some(json!({"models": ["other"]}))).await;
    assert_eq!(s, 200);
    until(403).await;
    assert_eq!(call(reqwest::Method::DELETE, a.url("/admin/keys/everywhere"), None).await.0, 200);
    until(401).await;

    // A replica that starts later replays what Redis holds.
    let (s, k2) = call(reqwest::Method::POST, b.url("/admin/keys"), Some(json!({"name": "late"}))).await;
    assert_eq!(s, 201);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config(mock.addr(), &shared)).unwrap();
    let c = SluiceProcess::spawn(&path);
    c.wait_ready(true).await;
    let late = k2["key"].as_str().unwrap().to_string();
    let mut ok = false;
    for _ in 0..500 {
        if chat(&c.url(""), &late, "m").await == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok, "a replica started later never learned the key");
    assert_eq!(chat(&c.url(""), &secret, "m").await, 401, "nor a deleted one");
}
