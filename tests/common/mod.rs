//! Test harness: Sluice and the mock upstream on ephemeral loopback ports,
//! in this process, each on its own runtime thread; a real Redis for the
//! shared-mode tests ([`redis_server`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod process;
pub mod redis_server;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use sluice::config::{Config, Env};
use sluice::mock::{MockOptions, MockServer, MockStatsSnapshot};

/// The key clients of the test gateway use.
pub const CLIENT_KEY: &str = "sk-client-test-key-1";
/// The key the gateway sends upstream: it must never reach a client.
pub const UPSTREAM_KEY: &str = "sk-upstream-secret-7f3a9c";
/// The admin key guarding /status in tests that set one.
pub const ADMIN_KEY: &str = "sk-admin-test-key";

pub struct MapEnv(pub HashMap<String, String>);

impl Env for MapEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

pub fn test_env() -> MapEnv {
    MapEnv(HashMap::from([
        ("CLIENT_KEY".to_string(), CLIENT_KEY.to_string()),
        ("UPSTREAM_KEY".to_string(), UPSTREAM_KEY.to_string()),
        ("ADMIN_KEY".to_string(), ADMIN_KEY.to_string()),
    ]))
}

pub fn parse_config(text: &str) -> Config {
    match Config::from_str_with_env(text, "test.toml", &test_env()) {
        Ok(c) => c,
        Err(e) => panic!("test config is invalid:\n{e}\n---\n{text}"),
    }
}

/// A running gateway; stops (gracefully) when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Gateway {
    pub fn start(config_text: &str) -> Gateway {
        Gateway::start_config(parse_config(config_text))
    }

    pub fn start_config(mut config: Config) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        config.server.listen = addr;
        if config.server.workers == 0 {
            config.server.workers = 2;
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let shutdown = async move {
                let _ = rx.await;
            };
            let r = actix_rt::System::new().block_on(sluice::server::run(listener, config, shutdown));
            if let Err(e) = r {
                eprintln!("gateway exited with error: {e}");
            }
        });
        Gateway { addr, stop: Some(tx), thread: Some(thread) }
    }

    /// A gateway serving the config file at `path` (`${VAR}`s from
    /// [`test_env`]), which `POST /admin/reload` re-reads.
    pub fn start_file(path: &std::path::Path) -> Gateway {
        let env = std::sync::Arc::new(test_env());
        let mut config = match Config::load_with_env(path, env.as_ref()) {
            Ok(c) => c,
            Err(e) => panic!("test config is invalid:\n{e}"),
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        config.server.listen = addr;
        if config.server.workers == 0 {
            config.server.workers = 2;
        }
        let opts = sluice::server::RunOptions {
            reload: Some(sluice::server::ReloadSource { path: path.to_path_buf(), env }),
            sighup: false,
            release_code_pages: false,
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let shutdown = async move {
                let _ = rx.await;
            };
            let r = actix_rt::System::new().block_on(sluice::server::run_with(listener, config, shutdown, opts));
            if let Err(e) = r {
                eprintln!("gateway exited with error: {e}");
            }
        });
        Gateway { addr, stop: Some(tx), thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Begin a graceful shutdown and wait for the server to finish.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Begin a graceful shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub fn join(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.begin_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

pub fn start_mock() -> MockServer {
    start_mock_with(MockOptions::default())
}

pub fn start_mock_with(opts: MockOptions) -> MockServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    MockServer::start(listener, MockOptions { workers: 1, ..opts }).unwrap()
}

/// A gateway config with one OpenAI-compatible provider (`up`, the mock at
/// `mock`) serving model `gpt-test` as upstream model `mock-model`, and the
/// model `same` under its own name. `extra` is appended verbatim.
pub fn config_for(mock: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536
shutdown_timeout_ms = 5000

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"
forward_headers = ["x-mock-*"]
connect_timeout_ms = 500
first_byte_timeout_ms = 3000
idle_timeout_ms = 3000

[[models]]
name = "gpt-test"
deployments = [{{ provider = "up", model = "mock-model" }}]
price = {{ input_per_mtok = 1.0, output_per_mtok = 2.0 }}

[[models]]
name = "same"
deployments = [{{ provider = "up", model = "same" }}]

[[keys]]
name = "tester"
key = "${{CLIENT_KEY}}"
{extra}
"#
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello to the test suite"}]
    })
}

/// Poll `f` until it returns true, or fail after `timeout`. For state that
/// changes on another thread (mock stats), instead of a fixed sleep.
pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        if tokio::time::Instant::now() > deadline {
            panic!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Parse an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data:")).map(|d| d.trim().to_string()))
        .collect()
}

/// The last POST the mock saw (warm-up GETs of /models may come in between).
pub fn last_request(stats: &MockStatsSnapshot) -> &sluice::mock::RecordedRequest {
    stats.recent.iter().rev().find(|r| r.method == "POST").expect("the mock saw no POST")
}

/// How many POSTs the mock has seen, for tests that assert the gateway
/// called no upstream: its warm-up GETs of `/models` arrive whenever its
/// connections open, so `requests_total` races with them.
pub fn posts_seen(stats: &MockStatsSnapshot) -> usize {
    assert_eq!(stats.recent.len() as u64, stats.requests_total, "the ring of recent requests has dropped some");
    stats.recent.iter().filter(|r| r.method == "POST").count()
}

/// An address nothing listens on.
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The gateway's `/status` (no admin key).
pub async fn gateway_status(gw: &Gateway) -> serde_json::Value {
    client().get(gw.url("/status")).send().await.unwrap().json().await.unwrap()
}

/// The `detail` of one actor in a `/status` answer.
pub fn actor_detail<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["actors"].as_array().unwrap().iter().find(|a| a["name"] == name).map(|a| &a["detail"]).unwrap()
}

/// Let a gated mock stream send one more event.
pub async fn mock_gate_release(mock: SocketAddr, gate: &str) {
    let r = client().post(format!("http://{mock}/mock/gates/{gate}/release")).send().await.unwrap();
    assert!(r.status().is_success());
}

/// The text of a chat stream: every `delta.content` (or legacy `text`) in order.
pub fn sse_text(body: &str) -> String {
    sse_data(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            let c = &v["choices"][0];
            c["delta"]["content"].as_str().or(c["text"].as_str()).map(str::to_string)
        })
        .collect()
}

/// A gateway config with one provider per protocol, all pointing at the
/// mock: `anth` (kind anthropic), `gem` (kind gemini), `up` (openai) and the
/// built-in `local` mock. Models: `claude` (anth, upstream `claude-test`),
/// `claude-same` (anth, same name upstream), `gemini` (gem,
/// `gemini-test`), `gpt-test` (up, `mock-model`), `local` (built-in).
/// `extra` is appended verbatim.
pub fn vendor_config(mock: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 1048576
shutdown_timeout_ms = 5000

[[providers]]
name = "anth"
kind = "anthropic"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"
forward_headers = ["x-mock-*"]
connect_timeout_ms = 500
first_byte_timeout_ms = 3000
idle_timeout_ms = 3000

[[providers]]
name = "gem"
kind = "gemini"
base_url = "http://{mock}/v1beta"
api_key = "${{UPSTREAM_KEY}}"
forward_headers = ["x-mock-*"]
connect_timeout_ms = 500
first_byte_timeout_ms = 3000

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"
forward_headers = ["x-mock-*"]
connect_timeout_ms = 500
first_byte_timeout_ms = 3000

[[providers]]
name = "local"
kind = "mock"
forward_headers = ["x-mock-*"]

[[models]]
name = "claude"
deployments = [{{ provider = "anth", model = "claude-test" }}]
price = {{ input_per_mtok = 3.0, output_per_mtok = 15.0 }}

[[models]]
name = "claude-same"
deployments = [{{ provider = "anth", model = "claude-same" }}]

[[models]]
name = "gemini"
deployments = [{{ provider = "gem", model = "gemini-test" }}]

[[models]]
name = "gpt-test"
deployments = [{{ provider = "up", model = "mock-model" }}]

[[models]]
name = "local"
deployments = [{{ provider = "local", model = "mock-1" }}]

[[keys]]
name = "tester"
key = "${{CLIENT_KEY}}"
{extra}
"#
    )
}

/// The value of `sluice_tokens_total{model, direction}` in a metrics page.
pub fn tokens_metric(metrics: &str, model: &str, direction: &str) -> Option<u64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("sluice_tokens_total"))
        .find(|l| l.contains(&format!("model=\"{model}\"")) && l.contains(&format!("direction=\"{direction}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Requests from `lanes` concurrent clients, one after another on each; once
/// every lane has had an answer, `change` runs (a rotation), and the lanes
/// go on until each has had four more. Returns every status seen.
pub async fn flow_while(
    gw: &Gateway,
    path: &str,
    body: &serde_json::Value,
    lanes: usize,
    change: impl std::future::Future<Output = ()>,
) -> Vec<u16> {
    flow_through(gw, path, body, lanes, vec![Box::pin(change)]).await
}

/// As [`flow_while`], with several changes in turn: each runs once every
/// lane has had an answer to a request it started after the previous one.
pub async fn flow_through(
    gw: &Gateway,
    path: &str,
    body: &serde_json::Value,
    lanes: usize,
    changes: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>>,
) -> Vec<u16> {
    use std::cell::{Cell, RefCell};
    let last = changes.len();
    let phase = Cell::new(0usize);
    // Per phase: the lanes that had an answer to a request started in it.
    let answered = RefCell::new(vec![0usize; last + 1]);
    let codes = RefCell::new(Vec::new());
    let lane = |_| async {
        let mut after = 0;
        let mut counted = usize::MAX;
        while after < 4 {
            let started = phase.get();
            let r = client().post(gw.url(path)).bearer_auth(CLIENT_KEY).json(body).send().await.unwrap();
            codes.borrow_mut().push(r.status().as_u16());
            if counted != started {
                counted = started;
                answered.borrow_mut()[started] += 1;
            }
            if started == last {
                after += 1;
            }
            tokio::task::yield_now().await;
        }
    };
    let control = async {
        for (i, change) in changes.into_iter().enumerate() {
            while answered.borrow()[i] < lanes {
                tokio::task::yield_now().await;
            }
            change.await;
            phase.set(i + 1);
        }
    };
    futures_util::future::join(futures_util::future::join_all((0..lanes).map(lane)), control).await;
    codes.into_inner()
}
