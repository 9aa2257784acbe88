//! `GET /dashboard` in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `scripts/test` installs), driven over the
//! WebDriver protocol by plain HTTP requests: no browser download, no
//! WebDriver crate. The page refuses to show anything without the admin
//! key, shows the live state with it, and shows a circuit opening when the
//! mock fails a deployment. The screenshot is kept in
//! `target/dashboard.png`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use sluice::mock::{Fault, MockOptions};

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run chromedriver ({e}): apt-get install chromium chromium-driver (scripts/test does)")
            });
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let mut d = Driver { child, url, http, session: None, _profile: tempfile::tempdir().unwrap() };
        // Ready when its /status says so.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = d.http.get(format!("{}/status", d.url)).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let binary = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromium is not installed: apt-get install chromium (scripts/test does)");
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": binary,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     "--window-size=1400,1100", format!("--user-data-dir={}", d._profile.path().display())]
        }}}});
        let v = d.call("POST", "/session", caps).await;
        d.session = Some(v["sessionId"].as_str().expect("a session").to_string());
        d
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = match &self.session {
            Some(s) if path != "/session" => format!("{}/session/{s}{path}", self.url),
            _ => format!("{}{path}", self.url),
        };
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(v["value"]["error"].is_null(), "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    /// Run a script in the page and return its value.
    async fn js(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": script, "args": [] })).await
    }

    /// Wait until `script` returns true (the page's own state, polled).
    async fn wait_for(&self, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.js(script).await != json!(true) {
            if tokio::time::Instant::now() > deadline {
                let text = self.js("return document.body.innerText").await;
                panic!("the page did not show {what} within 20 s; it shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.call("POST", "/element", json!({"using": "css selector", "value": css})).await;
        let id = e.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string();
        self.call("POST", &format!("/element/{id}/value"), json!({ "text": text })).await;
    }

    async fn click(&self, css: &str) {
        let e = self.call("POST", "/element", json!({"using": "css selector", "value": css})).await;
        let id = e.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string();
        self.call("POST", &format!("/element/{id}/click"), json!({})).await;
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.call("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            // Best effort: the browser dies with chromedriver anyway.
            let url = format!("{}/session/{s}", self.url);
            let _ = std::thread::spawn(move || {
                let _ = std::process::Command::new("curl").args(["-s", "-X", "DELETE", &url]).output();
            })
            .join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (Debian packages); scripts/test installs them and runs it"]
async fn the_dashboard_refuses_without_the_key_and_shows_a_circuit_opening() {
    let good = start_mock();
    let bad = start_mock_with(MockOptions { fail_rate: 1.0, faults: vec![Fault::ServerError], ..Default::default() });
    let gw = Gateway::start(&format!(
        r#"
[server]
admin_key = "${{ADMIN_KEY}}"
shutdown_timeout_ms = 2000

[[providers]]
name = "good"
kind = "openai"
base_url = "http://{good}/v1"

[[providers]]
name = "flaky"
kind = "openai"
base_url = "http://{bad}/v1"

[[models]]
name = "steady"
deployments = [{{ provider = "good", model = "steady-1" }}]
price = {{ input_per_mtok = 1.0, output_per_mtok = 2.0 }}

[[models]]
name = "wobbly"
deployments = [{{ provider = "flaky", model = "wobbly-1" }}]

[breaker]
min_requests = 2
failure_count = 2
cooldown_ms = 60000

[routing]
max_attempts = 1

[[keys]]
name = "team-a"
key = "${{CLIENT_KEY}}"
rpm = 1000
daily_budget_usd = 10.0

[spend]
store = "{store}"
"#,
        good = good.addr(),
        bad = bad.addr(),
        store = tempfile::tempdir().unwrap().keep().join("spend.redb").display(),
    ));
    let c = client();
    // Some traffic for the charts and the spend table.
    for _ in 0..5 {
        let r = c.post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("steady", false));
        assert_eq!(r.send().await.unwrap().status(), 200);
    }
    // A runtime key of a team: the team's spend gets a table of its own.
    let admin = |path: &str, body: Value| c.post(gw.url(path)).bearer_auth(ADMIN_KEY).json(&body).send();
    assert_eq!(admin("/admin/teams", json!({"name": "search", "daily_budget_usd": 5.0})).await.unwrap().status(), 201);
    let r = admin("/admin/keys", json!({"name": "indexer", "team": "search"})).await.unwrap();
    assert_eq!(r.status(), 201);
    let secret = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let r = c.post(gw.url("/v1/chat/completions")).bearer_auth(&secret).json(&chat_body("steady", false));
    assert_eq!(r.send().await.unwrap().status(), 200);
    // The data routes refuse without the key (what the page calls).
    for path in ["/dashboard/data", "/status"] {
        assert_eq!(c.get(gw.url(path)).send().await.unwrap().status(), 401, "{path}");
    }
    let page = c.get(gw.url("/dashboard")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");

    let d = Driver::start().await;
    d.goto(&gw.url("/dashboard")).await;
    d.wait_for("the login form", "return document.body.dataset.state === 'login'").await;
    assert_eq!(d.js("return document.getElementById('board').classList.contains('hidden')").await, json!(true));
    assert_eq!(d.js("return document.getElementById('circuits').rows.length").await, json!(0), "no data shown");

    // A wrong key is refused, and forgotten.
    d.type_into("#key", "sk-not-the-admin-key").await;
    d.click("#login button").await;
    d.wait_for(
        "the refusal",
        "return document.getElementById('message').textContent.includes('refused') && document.body.dataset.state === 'login'",
    )
    .await;
    assert_eq!(d.js("return sessionStorage.getItem('sluice.admin_key')").await, Value::Null);

    // The right key: the board, with the actors and a closed circuit.
    d.type_into("#key", ADMIN_KEY).await;
    d.click("#login button").await;
    d.wait_for("the board", "return document.body.dataset.state === 'board'").await;
    d.wait_for(
        "the closed circuit",
        "return !!document.querySelector('tr[data-deployment=\"flaky/wobbly-1\"][data-circuit=\"closed\"]')",
    )
    .await;
    d.wait_for("the actors", "return !!document.querySelector('tr[data-actor=\"circuit_breakers\"]')").await;
    assert_eq!(d.js("return location.href").await, json!(gw.url("/dashboard")), "the key is in no URL");
    assert_eq!(d.js("return document.cookie").await, json!(""), "nor in a cookie");
    assert_eq!(d.js("return sessionStorage.getItem('sluice.admin_key')").await, json!(ADMIN_KEY));

    // The mock fails the deployment: its circuit opens, and the page shows it.
    for _ in 0..3 {
        let r = c.post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("wobbly", false));
        assert!(r.send().await.unwrap().status().is_server_error());
    }
    d.wait_for(
        "the open circuit",
        "return !!document.querySelector('tr[data-deployment=\"flaky/wobbly-1\"][data-circuit=\"open\"]')",
    )
    .await;
    d.wait_for(
        "the traffic of the last minute",
        "return Number(document.body.dataset.refreshes) > 1 && document.getElementById('traffic-stats').textContent.includes('requests')",
    )
    .await;
    let text = d.js("return document.body.innerText").await.as_str().unwrap().to_string();
    let teams = d.js("return document.getElementById('team-spend').innerText").await.as_str().unwrap().to_string();
    assert!(teams.contains("search") && teams.contains("of $5.00"), "the team's spend and budget:\n{teams}");
    let keys = d.js("return document.getElementById('spend').innerText").await.as_str().unwrap().to_string();
    assert!(keys.contains("indexer") && !keys.contains("team:"), "keys only:\n{keys}");
    for shown in ["team-a", "circuit_breakers", "good/steady-1", "key:team-a", "$0.0"] {
        assert!(text.contains(shown), "{shown} not shown:\n{text}");
    }

    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("dashboard.png");
    d.screenshot(&shot).await;
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot in {}", shot.display());

    // Forgetting the key brings the form back.
    d.click("#forget").await;
    d.wait_for("the login form again", "return document.body.dataset.state === 'login'").await;
}
