//! Audio uploads over real HTTP: `POST /v1/audio/transcriptions` and
//! `/v1/audio/translations`, multipart bodies routed by their `model`
//! field, relayed as they arrive (model first) or spooled to disk (file
//! first), with fallbacks, limits, usage, spend and metrics; the temporary
//! file gone however the request ends. Memory is checked on a separate
//! Sluice process (VmHWM) while a 40 MiB upload passes through it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::process::SluiceProcess;
use common::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const BOUNDARY: &str = "sluice-test-boundary-7d1";

/// `flaky`: a mock that answers every audio upload 500 once it has read it.
fn config(mock: std::net::SocketAddr, flaky: std::net::SocketAddr, spool: &std::path::Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_upload_bytes = 1048576
spool_dir = "{spool}"

[[providers]]
name = "dead"
kind = "openai"
base_url = "http://{dead}/v1"
api_key = "${{UPSTREAM_KEY}}"
connect_timeout_ms = 200

[[providers]]
name = "up"
kind = "openai"
base_url = "http://{mock}/v1"
api_key = "${{UPSTREAM_KEY}}"
warm_connections = 0

[[providers]]
name = "flaky"
kind = "openai"
base_url = "http://{flaky}/v1"
api_key = "${{UPSTREAM_KEY}}"

[[providers]]
name = "local"
kind = "mock"

[[models]]
name = "transcribe"
deployments = [{{ provider = "up", model = "gpt-4o-transcribe" }}]
price = {{ input_per_mtok = 6.0, output_per_mtok = 10.0 }}

# Fallbacks, not a second deployment: the failing one is always tried first.
[[models]]
name = "whisper"
deployments = [{{ provider = "dead", model = "whisper-1" }}]
fallbacks = ["whisper-up"]

[[models]]
name = "whisper-up"
deployments = [{{ provider = "up", model = "whisper-1" }}]

[[models]]
name = "flaky"
deployments = [{{ provider = "flaky", model = "gpt-4o-transcribe" }}]
fallbacks = ["transcribe-2"]

[[models]]
name = "transcribe-2"
deployments = [{{ provider = "up", model = "gpt-4o-transcribe" }}]

[[models]]
name = "local"
deployments = [{{ provider = "local", model = "gpt-4o-mini-transcribe" }}]

[[keys]]
name = "tester"
key = "${{CLIENT_KEY}}"
"#,
        spool = spool.display(),
        dead = dead_addr()
    )
}

/// A multipart body: `model` before or after a `file` part of `size` bytes.
fn form(model: Option<&str>, size: usize, model_first: bool, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = Vec::new();
    if let Some(m) = model {
        fields.extend_from_slice(
            format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\n{m}\r\n").as_bytes(),
        );
    }
    for (k, v) in extra {
        fields.extend_from_slice(
            format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    let mut file = format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"talk.wav\"\r\ncontent-type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    file.extend((0..size).map(|i| (i % 251) as u8));
    file.extend_from_slice(b"\r\n");
    let mut b = if model_first { [fields, file].concat() } else { [file, fields].concat() };
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

fn flaky_mock() -> sluice::mock::MockServer {
    start_mock_with(sluice::mock::MockOptions {
        fail_rate: 1.0,
        faults: vec![sluice::mock::Fault::ServerError],
        ..Default::default()
    })
}

/// Audio uploads a mock has received (its warm-up requests left out).
fn audio_requests(m: &sluice::mock::MockServer) -> usize {
    m.stats().recent.iter().filter(|r| r.path == "/v1/audio/transcriptions").count()
}

/// `sluice_uploads_total{mode}` in a metrics page.
fn uploads_metric(m: &str, mode: &str) -> u64 {
    m.lines()
        .find(|l| l.starts_with("sluice_uploads_total") && l.contains(&format!("mode=\"{mode}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

async fn upload(url: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(CLIENT_KEY)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .unwrap()
}

fn spool_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn heard(mock: &sluice::mock::MockServer) -> Value {
    let r = last_request(&mock.stats()).clone();
    assert_eq!(r.path, "/v1/audio/transcriptions");
    serde_json::from_str(&r.body).unwrap()
}

#[tokio::test]
async fn model_first_uploads_are_relayed_with_the_model_renamed_and_usage_priced() {
    let spool = tempfile::tempdir().unwrap();
    let (mock, flaky) = (start_mock(), flaky_mock());
    let gw = Gateway::start(&config(mock.addr(), flaky.addr(), spool.path()));
    let r = upload(&gw.url("/v1/audio/transcriptions"), form(Some("transcribe"), 300_000, true, &[])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-deployment"], "up/gpt-4o-transcribe");
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["text"], "Mock transcription of talk.wav: 300000 bytes of audio.");
    assert_eq!(v["usage"]["input_tokens"], 300);
    let up = heard(&mock);
    assert_eq!(up["model"], "gpt-4o-transcribe", "the deployment's model name goes upstream");
    assert_eq!(up["size"], 300_000, "the file arrived whole");
    let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("route=\"transcriptions\",model=\"transcribe\",status=\"200\"} 1"), "{m}");
    assert_eq!(tokens_metric(&m, "transcribe", "input"), Some(300), "{m}");
    assert!(m.contains("sluice_cost_usd_total{key=\"tester\",model=\"transcribe\"}"), "spend: {m}");

    // Text formats come back as text.
    let r =
        upload(&gw.url("/v1/audio/translations"), form(Some("local"), 10, true, &[("response_format", "text")])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.text().await.unwrap(), "Mock translation of talk.wav: 10 bytes of audio.\n");
    gw.shutdown();
}

#[tokio::test]
async fn uploads_fall_back_past_a_dead_deployment_live_and_spooled() {
    let spool = tempfile::tempdir().unwrap();
    let (mock, flaky) = (start_mock(), flaky_mock());
    let gw = Gateway::start(&config(mock.addr(), flaky.addr(), spool.path()));
    for model_first in [true, false] {
        let r = upload(&gw.url("/v1/audio/transcriptions"), form(Some("whisper"), 70_000, model_first, &[])).await;
        assert_eq!(r.status(), 200, "model_first={model_first}");
        assert_eq!(r.headers()["x-sluice-deployment"], "up/whisper-1", "the dead deployment was skipped");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["usage"]["type"], "duration");
        assert_eq!(heard(&mock)["size"], 70_000);
    }
    let m = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("sluice_fallbacks_total{from=\"whisper\",to=\"whisper-up\"} 2"), "{m}");
    assert_eq!(spool_files(spool.path()), 0, "the spooled upload's file is gone");
    gw.shutdown();
}

#[tokio::test]
async fn only_a_spooled_upload_is_sent_again_after_an_upstream_read_it() {
    let spool = tempfile::tempdir().unwrap();
    let (mock, flaky) = (start_mock(), flaky_mock());
    let gw = Gateway::start(&config(mock.addr(), flaky.addr(), spool.path()));
    let url = gw.url("/v1/audio/transcriptions");
    // File first: spooled, so after the 500 the fallback gets it from disk.
    let r = upload(&url, form(Some("flaky"), 50_000, false, &[])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-sluice-deployment"], "up/gpt-4o-transcribe");
    assert_eq!(heard(&flaky)["size"], 50_000, "the failing upstream read it all");
    assert_eq!(heard(&mock)["size"], 50_000, "and the fallback got it whole again");
    // Model first: relayed live and consumed by the failing upstream; no second try.
    let r = upload(&url, form(Some("flaky"), 50_000, true, &[])).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("mock fault"), "{v}");
    assert_eq!(audio_requests(&flaky), 2, "each upload reached the failing upstream");
    assert_eq!(audio_requests(&mock), 1, "the live upload was not sent twice");
    assert_eq!(spool_files(spool.path()), 0);
    gw.shutdown();
}

#[tokio::test]
async fn bad_uploads_get_clear_errors_and_leave_no_file() {
    let spool = tempfile::tempdir().unwrap();
    let (mock, flaky) = (start_mock(), flaky_mock());
    let gw = Gateway::start(&config(mock.addr(), flaky.addr(), spool.path()));
    let url = gw.url("/v1/audio/transcriptions");
    let err = |v: &Value| v["error"]["message"].as_str().unwrap_or_default().to_string();

    let r = upload(&url, form(None, 100, true, &[])).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(err(&v).contains("no `model` field"), "{v}");
    assert_eq!(v["error"]["param"], "model");

    let mut cut = form(Some("transcribe"), 100, false, &[]);
    cut.truncate(cut.len() - 12);
    let r = upload(&url, cut).await;
    assert_eq!(r.status(), 400);
    assert!(err(&r.json().await.unwrap()).contains("malformed"));

    let r = client().post(&url).bearer_auth(CLIENT_KEY).json(&serde_json::json!({"model": "transcribe"})).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 400);
    assert!(err(&r.json().await.unwrap()).contains("multipart/form-data"));

    let r = upload(&url, form(Some("nope"), 10, true, &[])).await;
    assert_eq!(r.status(), 404);

    // Over `max_upload_bytes` (1 MiB): refused from the declared length,
    // and, sent chunked (no length), file first (spooling) or model first (live).
    let r = upload(&url, form(Some("transcribe"), 2 << 20, true, &[])).await;
    assert_eq!(r.status(), 413);
    assert!(err(&r.json().await.unwrap()).contains("server.max_upload_bytes"));
    for model_first in [false, true] {
        let body = form(Some("transcribe"), 2 << 20, model_first, &[]);
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        let r = client()
            .post(&url)
            .bearer_auth(CLIENT_KEY)
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "model_first={model_first}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "request_too_large", "{v}");
    }
    assert_eq!(spool_files(spool.path()), 0);
    gw.shutdown();
}

/// A client that sends a transcription's head (for the whole `body`) and
/// only its first `sent` bytes, over a raw connection it can drop.
async fn upload_part(gw: &Gateway, body: &[u8], sent: usize) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\n\
         content-type: multipart/form-data; boundary={BOUNDARY}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..sent]).await.unwrap();
    s
}

#[tokio::test]
async fn a_client_leaving_mid_upload_leaves_no_spool_file() {
    let spool = tempfile::tempdir().unwrap();
    let (mock, flaky) = (start_mock(), flaky_mock());
    let gw = Gateway::start(&config(mock.addr(), flaky.addr(), spool.path()));
    let body = form(Some("transcribe"), 900_000, false, &[]);
    let s = upload_part(&gw, &body, 400_000).await;
    let dir = spool.path().to_path_buf();
    wait_until(Duration::from_secs(10), || spool_files(&dir) == 1).await;
    drop(s);
    wait_until(Duration::from_secs(10), || spool_files(&dir) == 0).await;
    gw.shutdown();
}

#[tokio::test]
async fn a_client_leaving_a_live_upload_ends_the_upstream_request() {
    let spool = tempfile::tempdir().unwrap();
    let (mock, flaky) = (start_mock(), flaky_mock());
    let gw = Gateway::start(&config(mock.addr(), flaky.addr(), spool.path()));
    let body = form(Some("transcribe"), 900_000, true, &[]);
    let s = upload_part(&gw, &body, 300_000).await;
    // The upstream request is under way (`up` opens no warm-up connection,
    // so this is the upload, its body arriving at the mock)...
    wait_until(Duration::from_secs(10), || mock.stats().requests_total == 1).await;
    drop(s);
    // ...and ends with the client: the mock sees the upload cut off, nothing hangs.
    wait_until(Duration::from_secs(10), || {
        mock.stats().recent.iter().any(|r| r.path == "/v1/audio/transcriptions" && r.body.is_empty())
    })
    .await;
    assert_eq!(spool_files(spool.path()), 0, "a live upload is never spooled");
    gw.shutdown();
}

/// The peak resident memory of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_40_mib_upload_passes_without_sluice_holding_it() {
    const SIZE: usize = 40 << 20;
    let spool = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    // The built-in mock, in Sluice's own process, scans the upload too.
    let cfg = format!(
        "[server]\nmax_upload_bytes = 67108864\nspool_dir = \"{}\"\nworkers = 1\n\n\
         [[providers]]\nname = \"local\"\nkind = \"mock\"\n\n\
         [[models]]\nname = \"local\"\ndeployments = [{{ provider = \"local\", model = \"whisper-1\" }}]\n\n\
         [[keys]]\nname = \"t\"\nkey = \"{CLIENT_KEY}\"\n",
        spool.path().display()
    );
    std::fs::write(&path, cfg).unwrap();
    let p = SluiceProcess::spawn(&path);
    p.wait_ready(false).await;
    // Warm: one small upload each way, so the baseline holds the buffers a request uses.
    for model_first in [true, false] {
        let r = upload(&p.url("/v1/audio/transcriptions"), form(Some("local"), 1000, model_first, &[])).await;
        assert_eq!(r.status(), 200);
    }
    let before = vm_hwm_kib(p.pid());
    for model_first in [false, true] {
        let r = upload(&p.url("/v1/audio/transcriptions"), form(Some("local"), SIZE, model_first, &[])).await;
        assert_eq!(r.status(), 200, "model_first={model_first}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["text"], format!("Mock transcription of talk.wav: {SIZE} bytes of audio."));
    }
    let grew_mib = (vm_hwm_kib(p.pid()) - before) / 1024;
    // This process's own counters: two uploads each way.
    let m = client().get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!((uploads_metric(&m, "live"), uploads_metric(&m, "spooled")), (2, 2), "{m}");
    eprintln!("VmHWM before the 40 MiB uploads: {before} KiB; grew by {grew_mib} MiB");
    assert!(grew_mib < 16, "Sluice's peak memory grew by {grew_mib} MiB for a 40 MiB upload");
    assert_eq!(spool_files(spool.path()), 0);
    p.stop();
}

#[tokio::test]
async fn a_40_mib_file_goes_up_and_comes_back_without_sluice_holding_it() {
    const SIZE: usize = 40 << 20;
    let mock = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let cfg = format!(
        "[server]\nworkers = 1\n\n\
         [[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\napi_key = \"k-upstream-1\"\nfiles = true\n\n\
         [[models]]\nname = \"m\"\ndeployments = [{{ provider = \"up\", model = \"m\" }}]\n\n\
         [[keys]]\nname = \"t\"\nkey = \"{CLIENT_KEY}\"\n",
        mock.addr()
    );
    std::fs::write(&path, cfg).unwrap();
    let p = SluiceProcess::spawn(&path);
    p.wait_ready(false).await;
    let file = |size: usize| {
        let mut b = format!(
            "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{BOUNDARY}\r\n\
             content-disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\n\r\n"
        )
        .into_bytes();
        b.extend((0..size).map(|i| b'a' + (i % 26) as u8));
        b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        b
    };
    let round_trip = |size: usize| {
        let url = p.url("/v1/files");
        let body = file(size);
        async move {
            let r = upload(&url, body).await;
            assert_eq!(r.status(), 200);
            let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
            let r = client().get(format!("{url}/{id}/content")).bearer_auth(CLIENT_KEY).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let got = r.bytes().await.unwrap();
            assert_eq!(got.len(), size);
            assert!(got.iter().enumerate().all(|(i, b)| *b == b'a' + (i % 26) as u8), "the content came back intact");
        }
    };
    round_trip(1000).await;
    let before = vm_hwm_kib(p.pid());
    round_trip(SIZE).await;
    let grew_mib = (vm_hwm_kib(p.pid()) - before) / 1024;
    eprintln!("VmHWM before the 40 MiB file: {before} KiB; grew by {grew_mib} MiB");
    assert!(grew_mib < 16, "Sluice's peak memory grew by {grew_mib} MiB for a 40 MiB file up and down");
    p.stop();
}
