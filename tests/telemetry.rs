//! Traces and the request log over real HTTP: Sluice in front of the mock
//! upstream, exporting to a real OTLP/HTTP receiver (protobuf decoded with
//! `opentelemetry-proto`), and writing its request log to a file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/otlp.rs"]
mod otlp;

use std::time::Duration;

use common::*;
use otlp::{OtlpReceiver, f64_attr, hex, int_attr, str_attr};
use serde_json::Value;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// Model `primary` has one deployment on a dead address and falls back to
/// `backup` on the mock: a request makes two attempts, the second a fallback.
fn config(mock: std::net::SocketAddr, telemetry: &str) -> String {
    let dead = dead_addr();
    format!(
        r#"
[server]
shutdown_timeout_ms = 5000

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"
forward_headers = ["x-mock-*"]

[[providers]]
name = "dead"
kind = "openai"
base_url = "http://{dead}/v1"
connect_timeout_ms = 300
warm_connections = 0

[[models]]
name = "primary"
deployments = [{{ provider = "dead", model = "gone" }}]
fallbacks = ["backup"]

[[models]]
name = "backup"
deployments = [{{ provider = "up", model = "mock-model" }}]
price = {{ input_per_mtok = 1.0, output_per_mtok = 2.0 }}

[routing]
backoff_base_ms = 0

[[keys]]
name = "tester"
key = "${{CLIENT_KEY}}"

{telemetry}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_with_parent_child_structure_and_genai_attributes() {
    let mock = start_mock();
    let rx = OtlpReceiver::start();
    let gw = Gateway::start(&config(
        mock.addr(),
        &format!(
            "[telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"sluice-test\"\nexport_interval_ms = 20\n\
             otlp_headers = {{ \"x-collector-token\" = \"${{ADMIN_KEY}}\" }}\n[telemetry.traces]\nsample_ratio = 0.0\n",
            rx.endpoint()
        ),
    ));
    // The client's trace is sampled (flag 01): a ratio of 0 does not override it.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=opaque")
        .json(&chat_body("primary", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("[DONE]"));

    // The upstream got the trace: the same trace id, the attempt's span as parent.
    let seen = last_request(&mock.stats()).headers.clone();
    let tp = seen.iter().find(|(n, _)| n == "traceparent").map(|(_, v)| v.clone()).expect("traceparent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", CLIENT_TRACE, "01"), "{tp}");
    assert_ne!(parts[2], CLIENT_SPAN, "the upstream's parent is Sluice's attempt span, not the client's");
    assert!(seen.iter().any(|(n, v)| n == "tracestate" && v == "vendor=opaque"), "tracestate passed on");

    let spans = rx
        .wait_spans(Duration::from_secs(10), |s| {
            let mine: Vec<_> = s.iter().filter(|s| hex(&s.trace_id) == CLIENT_TRACE).cloned().collect();
            (mine.len() >= 3).then_some(mine)
        })
        .await;
    assert_eq!(spans.len(), 3, "one request span, two attempt spans: {spans:#?}");
    let root = spans.iter().find(|s| hex(&s.parent_span_id) == CLIENT_SPAN).expect("the request span");
    assert_eq!(root.kind, 2, "SERVER");
    assert_eq!(root.name, "chat primary");
    let a = &root.attributes;
    assert_eq!(str_attr(a, "gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(str_attr(a, "gen_ai.request.model").as_deref(), Some("primary"));
    assert_eq!(str_attr(a, "gen_ai.response.model").as_deref(), Some("mock-model"));
    assert_eq!(str_attr(a, "gen_ai.provider.name").as_deref(), Some("openai"));
    assert_eq!(str_attr(a, "sluice.deployment").as_deref(), Some("up/mock-model"));
    assert_eq!(str_attr(a, "sluice.served_model").as_deref(), Some("backup"));
    assert_eq!(str_attr(a, "sluice.key").as_deref(), Some("tester"));
    assert_eq!(int_attr(a, "sluice.attempts"), Some(2));
    assert_eq!(int_attr(a, "http.response.status_code"), Some(200));
    assert!(int_attr(a, "gen_ai.usage.input_tokens").unwrap() > 0);
    assert_eq!(int_attr(a, "gen_ai.usage.output_tokens"), Some(16));
    assert!(f64_attr(a, "gen_ai.server.time_to_first_token").unwrap() > 0.0);
    assert!(str_attr(a, "gen_ai.input.messages").is_none(), "no content unless record_content");
    assert!(str_attr(a, "gen_ai.output.messages").is_none());

    let mut children: Vec<_> = spans.iter().filter(|s| s.parent_span_id == root.span_id).collect();
    children.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(children.len(), 2);
    let (first, second) = (children[0], children[1]);
    assert!(children.iter().all(|c| c.kind == 3), "CLIENT spans");
    assert_eq!(str_attr(&first.attributes, "sluice.deployment").as_deref(), Some("dead/gone"));
    assert_eq!(str_attr(&first.attributes, "sluice.attempt.kind").as_deref(), Some("attempt"));
    assert!(str_attr(&first.attributes, "error.type").is_some());
    assert_eq!(first.status.as_ref().unwrap().code, 2, "ERROR");
    assert_eq!(str_attr(&second.attributes, "sluice.attempt.kind").as_deref(), Some("fallback"));
    assert_eq!(
        str_attr(&second.attributes, "sluice.retry.reason"),
        str_attr(&first.attributes, "error.type"),
        "the retry names the failure before it"
    );
    assert_eq!(str_attr(&second.attributes, "gen_ai.request.model").as_deref(), Some("mock-model"));
    assert_eq!(second.status.as_ref().unwrap().code, 1, "OK");
    assert_eq!(hex(&second.span_id), parts[2], "the upstream's parent is the attempt that reached it");
    assert!(second.start_time_unix_nano >= first.end_time_unix_nano);
    assert!(root.start_time_unix_nano <= first.start_time_unix_nano);
    assert!(root.end_time_unix_nano >= second.end_time_unix_nano);

    assert!(rx.services().iter().all(|s| s == "sluice-test"), "{:?}", rx.services());
    assert!(
        rx.request_headers().iter().all(|h| h.iter().any(|(n, v)| n == "x-collector-token" && v == ADMIN_KEY)),
        "otlp_headers sent with every export: {:?}",
        rx.request_headers()
    );

    // A new trace (no traceparent) at ratio 0 is not sampled: nothing is
    // exported, but the upstream still gets ids, flagged unsampled.
    let before = rx.spans().len();
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&chat_body("backup", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tp = last_request(&mock.stats()).headers.iter().find(|(n, _)| n == "traceparent").unwrap().1.clone();
    assert!(tp.ends_with("-00") && !tp.contains(CLIENT_TRACE), "{tp}");
    gw.shutdown(); // flushes the exporter
    assert_eq!(rx.spans().len(), before, "an unsampled trace exports nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_is_recorded_only_when_enabled() {
    let mock = start_mock();
    let rx = OtlpReceiver::start();
    let gw = Gateway::start(&config(
        mock.addr(),
        &format!(
            "[telemetry]\notlp_endpoint = \"{}\"\nexport_interval_ms = 20\n[telemetry.traces]\nrecord_content = true\nmax_content_bytes = 20\n",
            rx.endpoint()
        ),
    ));
    for stream in [false, true] {
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .json(&chat_body("backup", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.text().await.unwrap();
    }
    let roots = rx
        .wait_spans(Duration::from_secs(10), |s| {
            let roots: Vec<_> = s.iter().filter(|s| s.kind == 2).cloned().collect();
            (roots.len() >= 2).then_some(roots)
        })
        .await;
    for root in &roots {
        let input = str_attr(&root.attributes, "gen_ai.input.messages").expect("the prompt");
        assert!(input.starts_with("[{") && input.contains("Say hel") && input.len() <= 20, "{input}");
        let output = str_attr(&root.attributes, "gen_ai.output.messages").expect("the answer");
        assert!(!output.is_empty() && output.len() <= 20, "{output}");
    }
}

fn read_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_has_one_line_per_request_and_rotates() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    let gw = Gateway::start(&config(
        mock.addr(),
        &format!("[telemetry.request_log]\npath = \"{}\"\nmax_bytes = 4096\nmax_files = 2\n", path.display()),
    ));
    let c = client();
    // A fallback, a stream, an error and an unknown key.
    let r = c.post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("primary", false));
    let r = r.header("x-request-id", "req-fallback").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("backup", true));
    let r = r.header("x-request-id", "req-stream").send().await.unwrap();
    let _ = r.text().await.unwrap();
    let r = c.post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("backup", false));
    let r = r.header("x-request-id", "req-500").header("x-mock-fault", "500").send().await.unwrap();
    assert_eq!(r.status(), 502);
    let r = c.post(gw.url("/v1/chat/completions")).bearer_auth("sk-nobody").json(&chat_body("backup", false));
    let r = r.header("x-request-id", "req-401").send().await.unwrap();
    assert_eq!(r.status(), 401);

    // The writer flushes whenever its queue runs empty.
    wait_until(Duration::from_secs(10), || read_lines(&path).len() >= 4).await;
    let lines = read_lines(&path);
    let by_id = |id: &str| lines.iter().find(|l| l["request_id"] == id).unwrap_or_else(|| panic!("{id}: {lines:#?}"));
    let l = by_id("req-fallback");
    assert_eq!(l["key"], "tester");
    assert_eq!((l["model"].as_str(), l["served_model"].as_str()), (Some("primary"), Some("backup")));
    assert_eq!(l["deployment"], "up/mock-model");
    assert_eq!((l["status"].as_u64(), l["outcome"].as_str()), (Some(200), Some("ok")));
    assert_eq!(l["attempts"], 2);
    assert_eq!(l["attempt_errors"].as_array().unwrap().len(), 1);
    assert!(l["attempt_errors"][0].as_str().unwrap().starts_with("dead/gone: "));
    assert_eq!(l["output_tokens"], 16);
    assert!(l["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(l["latency_ms"]["total"].as_f64().unwrap() >= l["latency_ms"]["upstream"].as_f64().unwrap());
    assert!(l["latency_ms"]["gateway"].as_f64().unwrap() > 0.0);
    assert!(l["ts"].as_str().unwrap().ends_with('Z'));
    assert!(l["trace_id"].is_null(), "no traces configured");
    let l = by_id("req-stream");
    assert_eq!((l["stream"].as_bool(), l["route"].as_str()), (Some(true), Some("chat")));
    assert!(l["latency_ms"]["ttft"].as_f64().unwrap() > 0.0);
    // Settled by the stream itself, after the relay's end: the line waits for it.
    assert_eq!(l["output_tokens"], 16, "{l}");
    assert!(l["cost_usd"].as_f64().unwrap() > 0.0, "{l}");
    let l = by_id("req-500");
    assert_eq!((l["status"].as_u64(), l["error"].as_str()), (Some(502), Some("upstream_error")));
    let l = by_id("req-401");
    assert_eq!(
        (l["status"].as_u64(), l["error"].as_str(), l["key"].as_str()),
        (Some(401), Some("invalid_api_key"), None)
    );

    // Rotation: 4 KiB files, 2 kept. Enough requests for several rotations.
    for _ in 0..30 {
        let r = c.post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("backup", false));
        assert_eq!(r.send().await.unwrap().status(), 200);
    }
    gw.shutdown(); // the writer flushes and stops
    let rotated = |n: u32| dir.path().join(format!("requests.jsonl.{n}"));
    assert!(rotated(1).exists() && rotated(2).exists(), "rotated files");
    assert!(!rotated(3).exists(), "only max_files kept");
    for p in [path.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len <= 4096, "{} is {len} bytes", p.display());
        assert!(!read_lines(&p).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_records_also_go_over_otlp_logs() {
    let mock = start_mock();
    let rx = OtlpReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let gw = Gateway::start(&config(
        mock.addr(),
        &format!(
            "[telemetry]\notlp_endpoint = \"{}\"\nexport_interval_ms = 20\n[telemetry.request_log]\npath = \"{}\"\notlp = true\n",
            rx.endpoint(),
            path.display()
        ),
    ));
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("x-request-id", "req-otlp-log")
        .json(&chat_body("backup", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rec = rx
        .wait_logs(Duration::from_secs(10), |l| {
            l.iter().find(|r| str_attr(&r.attributes, "sluice.request_id").as_deref() == Some("req-otlp-log")).cloned()
        })
        .await;
    assert_eq!(rec.event_name, "sluice.request");
    let body = match rec.body.and_then(|b| b.value) {
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => s,
        other => panic!("body: {other:?}"),
    };
    let line: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (line["request_id"].as_str(), line["deployment"].as_str()),
        (Some("req-otlp-log"), Some("up/mock-model"))
    );
    drop(gw);
    assert!(read_lines(&path).iter().any(|l| l["request_id"] == "req-otlp-log"), "the file has it too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_is_a_child_span_of_its_own_and_the_loser_is_marked_cancelled() {
    let slow = start_mock_with(sluice::mock::MockOptions { delay_ms: 3000, ..Default::default() });
    let fast = start_mock();
    let rx = OtlpReceiver::start();
    let gw = Gateway::start(&format!(
        r#"
[server]
shutdown_timeout_ms = 1000

[[providers]]
name = "slow"
kind = "openai"
base_url = "http://{slow}/v1"

[[providers]]
name = "fast"
kind = "openai"
base_url = "http://{fast}/v1"

[[models]]
name = "raced"
strategy = "cost"
hedge = {{ after_ms = 50 }}
deployments = [
  {{ provider = "slow", model = "s", price = {{ input_per_mtok = 1.0, output_per_mtok = 1.0 }} }},
  {{ provider = "fast", model = "f", price = {{ input_per_mtok = 2.0, output_per_mtok = 2.0 }} }},
]

[[keys]]
name = "tester"
key = "${{CLIENT_KEY}}"

[telemetry]
otlp_endpoint = "{otlp}"
export_interval_ms = 20
[telemetry.traces]
"#,
        slow = slow.addr(),
        fast = fast.addr(),
        otlp = rx.endpoint()
    ));
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("raced", false));
    let r = r.send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["x-sluice-deployment"].to_str().unwrap()), (200, "fast/f"));
    let spans = rx.wait_spans(Duration::from_secs(10), |s| (s.len() >= 3).then(|| s.to_vec())).await;
    let root = spans.iter().find(|s| s.kind == 2).unwrap();
    let kind = |dep: &str| {
        let s = spans
            .iter()
            .find(|s| str_attr(&s.attributes, "sluice.deployment").as_deref() == Some(dep) && s.kind == 3)
            .unwrap_or_else(|| panic!("no span for {dep}: {spans:#?}"));
        assert_eq!(s.parent_span_id, root.span_id);
        s.clone()
    };
    let (first, hedge) = (kind("slow/s"), kind("fast/f"));
    assert_eq!(str_attr(&first.attributes, "sluice.attempt.kind").as_deref(), Some("attempt"));
    assert_eq!(str_attr(&hedge.attributes, "sluice.attempt.kind").as_deref(), Some("hedge"));
    assert!(str_attr(&hedge.attributes, "sluice.retry.reason").is_none(), "a hedge races, it does not retry");
    assert!(first.attributes.iter().any(|kv| kv.key == "sluice.attempt.cancelled"), "the loser was dropped");
    assert_eq!(hedge.status.as_ref().unwrap().code, 1);
    assert!(
        hedge.start_time_unix_nano > first.start_time_unix_nano
            && hedge.start_time_unix_nano < first.end_time_unix_nano
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_collector_drops_telemetry_never_requests() {
    // A collector that accepts and never answers: the exporter waits on it
    // (export_timeout_ms) while its queue of one fills.
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = stuck.local_addr().unwrap();
    let mock = start_mock();
    let gw = Gateway::start(&config(
        mock.addr(),
        &format!(
            "[telemetry]\notlp_endpoint = \"http://{addr}\"\nqueue_size = 1\nbatch_size = 1\nexport_interval_ms = 10\n\
             export_timeout_ms = 2000\n[telemetry.traces]\n"
        ),
    ));
    for _ in 0..20 {
        let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(CLIENT_KEY).json(&chat_body("backup", false));
        assert_eq!(r.send().await.unwrap().status(), 200, "requests never wait for telemetry");
    }
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let dropped: f64 = metrics
        .lines()
        .find(|l| l.starts_with("sluice_telemetry_dropped_total{queue=\"export\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no drop counter:\n{metrics}"));
    // 20 requests, at most one being exported and one queued.
    assert!(dropped >= 18.0, "{dropped} dropped");
    drop(stuck);
}

/// A reload builds a new snapshot with its own model indices; the log
/// writer and the dashboard's ring live as long as the process. A request
/// is written with the names of the snapshot it ran on, and the traffic
/// counted before the reload stays on the dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_and_the_dashboard_outlive_a_reload() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let file = dir.path().join("sluice.toml");
    let text = || {
        config(mock.addr(), &format!("[telemetry.request_log]\npath = \"{}\"\n", log.display()))
            .replace("[server]\n", "[server]\nadmin_key = \"${ADMIN_KEY}\"\n")
    };
    std::fs::write(&file, text()).unwrap();
    let gw = Gateway::start_file(&file);
    let chat = |model: &'static str, id: &'static str| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .header("x-request-id", id)
            .json(&chat_body(model, false))
            .send()
    };
    assert_eq!(chat("backup", "before").await.unwrap().status(), 200);

    // A model listed first: every model index moves by one.
    let zeta = "[[models]]\nname = \"zeta\"\ndeployments = [{ provider = \"up\", model = \"mock-zeta\" }]\n";
    let first = "[[models]]\nname = \"primary\"";
    std::fs::write(&file, text().replacen(first, &format!("{zeta}\n{first}"), 1)).unwrap();
    let r = client().post(gw.url("/admin/reload")).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(chat("backup", "after").await.unwrap().status(), 200);
    assert_eq!(chat("zeta", "new-model").await.unwrap().status(), 200);

    wait_until(Duration::from_secs(10), || read_lines(&log).len() >= 3).await;
    let lines = read_lines(&log);
    let by_id = |id: &str| lines.iter().find(|l| l["request_id"] == id).unwrap_or_else(|| panic!("{id}: {lines:#?}"));
    for (id, model, deployment) in [
        ("before", "backup", "up/mock-model"),
        ("after", "backup", "up/mock-model"),
        ("new-model", "zeta", "up/mock-zeta"),
    ] {
        let l = by_id(id);
        assert_eq!((l["model"].as_str(), l["deployment"].as_str()), (Some(model), Some(deployment)), "{id}: {l}");
    }

    // The ring closes a second at a time: all three requests show up in it,
    // the one from before the reload included.
    let data_url = gw.url("/dashboard/data");
    let mut counted = 0;
    for _ in 0..50 {
        let d: Value = client().get(&data_url).bearer_auth(ADMIN_KEY).send().await.unwrap().json().await.unwrap();
        counted = d["last_minute"]["requests"].as_u64().unwrap();
        if counted >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted, 3, "the dashboard lost the traffic from before the reload");
}

/// A runtime key of a team: the request log names both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_names_a_runtime_keys_team() {
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let text = config(
        mock.addr(),
        &format!(
            "[spend]\nstore = \"{}\"\n[telemetry.request_log]\npath = \"{}\"\n",
            dir.path().join("spend.redb").display(),
            log.display()
        ),
    )
    .replace("[server]\n", "[server]\nadmin_key = \"${ADMIN_KEY}\"\n");
    let gw = Gateway::start(&text);
    let admin = |path: &str, body: Value| client().post(gw.url(path)).bearer_auth(ADMIN_KEY).json(&body).send();
    assert_eq!(admin("/admin/teams", serde_json::json!({"name": "search"})).await.unwrap().status(), 201);
    let r = admin("/admin/keys", serde_json::json!({"name": "indexer", "team": "search"})).await.unwrap();
    assert_eq!(r.status(), 201);
    let secret = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(&secret).json(&chat_body("backup", false));
    assert_eq!(r.send().await.unwrap().status(), 200);
    wait_until(Duration::from_secs(10), || !read_lines(&log).is_empty()).await;
    let l = &read_lines(&log)[0];
    assert_eq!((l["key"].as_str(), l["team"].as_str()), (Some("indexer"), Some("search")), "{l}");
    assert!(!l.to_string().contains(&secret), "no key material in the log");
}
