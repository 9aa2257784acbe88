//! The binary: `sluice check` exit codes and messages, and `sluice serve`
//! draining in-flight streams on SIGTERM before exiting 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

#[test]
fn check_accepts_the_default_and_every_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/config/sluice.toml")];
    for e in std::fs::read_dir(format!("{root}/config/examples")).unwrap() {
        files.push(e.unwrap().path().display().to_string());
    }
    // The cloud examples' credentials, found where the clouds' tools look:
    // AWS keys in the environment, a Google service-account key file.
    let creds = cloud_credentials();
    for f in files {
        let mut cmd = sluice();
        cmd.args(["check", "--config", &f]);
        for (k, v) in &creds.env {
            cmd.env(k, v);
        }
        // Give every `${VAR}` the file uses a distinct fake value.
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, part) in text.split("${").skip(1).enumerate() {
            if let Some(name) = part.split('}').next() {
                cmd.env(name, format!("sk-fake-value-{i}"));
            }
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{f}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    }
}

/// An environment in which cloud credentials can be found (and nothing
/// from the developer's own home directory is).
struct CloudCredentials {
    _dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

fn cloud_credentials() -> CloudCredentials {
    let dir = tempfile::tempdir().unwrap();
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "example-project",
        "private_key_id": "kid",
        "private_key": sluice::mock::cloud_api::MOCK_SERVICE_ACCOUNT_PEM,
        "client_email": sluice::mock::cloud_api::MOCK_SERVICE_ACCOUNT_EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    let key_file = dir.path().join("sa.json");
    std::fs::write(&key_file, key.to_string()).unwrap();
    let env = vec![
        ("HOME", dir.path().display().to_string()),
        ("GOOGLE_APPLICATION_CREDENTIALS", key_file.display().to_string()),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "example-secret-access-key".to_owned()),
    ];
    CloudCredentials { _dir: dir, env }
}

#[test]
fn check_names_cloud_credentials_it_cannot_find() {
    let root = env!("CARGO_MANIFEST_DIR");
    let home = tempfile::tempdir().unwrap();
    let out = sluice()
        .args(["check", "--config", &format!("{root}/config/examples/vertex.toml")])
        .env("SLUICE_APP_KEY", "k-1")
        .env("SLUICE_ADMIN_KEY", "k-2")
        .env("HOME", home.path())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("CLOUDSDK_CONFIG")
        .env_remove("GCE_METADATA_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("providers[0] (`vertex-us`): no Google credentials found"), "{err}");
    assert!(err.contains("GOOGLE_APPLICATION_CREDENTIALS is not set"), "{err}");
    assert!(err.contains("providers[1] (`vertex-global`)"), "{err}");

    let out = sluice()
        .args(["check", "--config", &format!("{root}/config/examples/bedrock.toml")])
        .env("SLUICE_APP_KEY", "k-1")
        .env("SLUICE_ADMIN_KEY", "k-2")
        .env("HOME", home.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("AWS_CONFIG_FILE")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("providers[0] (`bedrock-us`): no AWS credentials found"), "{err}");
    assert!(err.contains(".aws/credentials"), "{err}");
}

/// The `NAME`s of every `${NAME}` in `text`.
fn vars_in(text: &str) -> std::collections::BTreeSet<String> {
    text.split("${").skip(1).filter_map(|p| p.split_once('}')).map(|(name, _)| name.to_owned()).collect()
}

#[test]
fn every_example_says_which_variables_it_needs_and_check_lists_them_all() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let mut seen = 0;
    for e in std::fs::read_dir(format!("{root}/config/examples")).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        // What the file reads: `${VAR}`s outside comments.
        let settings: String = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
        let used = vars_in(&settings);
        // What its first lines tell you to export.
        let exported: std::collections::BTreeSet<String> = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.trim_start_matches('#').trim().strip_prefix("export "))
            .filter_map(|l| l.split_once('=').map(|(n, _)| n.to_owned()))
            .collect();
        assert_eq!(exported, used, "{name}: the `export` lines at the top vs the ${{VAR}}s it uses");
        // What the README's table of examples lists.
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| [`{name}`]")))
            .unwrap_or_else(|| panic!("README.md has no row for {name} in its table of examples"));
        let listed: std::collections::BTreeSet<String> =
            row.rsplit('|').nth(1).unwrap().split('`').skip(1).step_by(2).map(str::to_owned).collect();
        assert_eq!(listed, used, "{name}: README.md's row vs the ${{VAR}}s it uses");

        // With none of them set, `sluice check` names every one, at once.
        let mut cmd = sluice();
        cmd.args(["check", "--config", path.to_str().unwrap()]);
        for v in &used {
            cmd.env_remove(v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if !used.is_empty() {
            assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        }
        for v in &used {
            assert!(err.contains(&format!("environment variable `{v}` is not set")), "{name}: {v}\n{err}");
        }
        seen += 1;
    }
    assert!(seen >= 7, "{seen} examples");
}

#[test]
fn check_reports_file_line_and_key_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:8080\"\nlisen = 1\n\n[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\napi_key = \"${MISSING_SECRET_VAR}\"\n",
    )
    .unwrap();
    let out =
        sluice().args(["check", "--config", path.to_str().unwrap()]).env_remove("MISSING_SECRET_VAR").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:3"), "{err}");
    assert!(err.contains("lisen"), "{err}");

    // Missing file: exit 1 too.
    let out = sluice().args(["check", "--config", "/nonexistent/x.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_reports_every_error_of_a_file_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.toml");
    std::fs::write(
        &path,
        r#"[server]
lisen = "127.0.0.1:8080"
workerz = 4
workers = "four"
admin_key = "${SLUICE_TEST_UNSET_ADMIN}"

[[providers]]
name = "openai"
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key = "${SLUICE_TEST_UNSET_OPENAI}"
max_conections = 10

[[models]]
name = "gpt"
deployments = [{ provider = "opneai", model = "gpt-4o" }]
fallbacks = ["nope"]
context_window = "big"

[[keys]]
name = "app"
key = "${SLUICE_TEST_UNSET_APP}"
"#,
    )
    .unwrap();
    let out = sluice()
        .args(["check", "--config", path.to_str().unwrap()])
        .env_remove("SLUICE_TEST_UNSET_ADMIN")
        .env_remove("SLUICE_TEST_UNSET_OPENAI")
        .env_remove("SLUICE_TEST_UNSET_APP")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = [
        "many.toml:2: server.lisen: unknown key `lisen`",
        "many.toml:3: server.workerz: unknown key `workerz`",
        "many.toml:4: server.workers: expected an integer, found a string",
        "many.toml:5: server.admin_key: environment variable `SLUICE_TEST_UNSET_ADMIN` is not set",
        "many.toml:11: providers[0].api_key: environment variable `SLUICE_TEST_UNSET_OPENAI` is not set",
        "many.toml:12: providers[0].max_conections: unknown key `max_conections`",
        "many.toml:16: models[0].deployments[0].provider: no provider named `opneai` (did you mean `openai`?)",
        "many.toml:17: models[0].fallbacks[0]: no model named `nope`",
        "many.toml:18: models[0].context_window: expected an integer, found a string",
        "many.toml:22: keys[0].key: environment variable `SLUICE_TEST_UNSET_APP` is not set",
    ];
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    for (line, want) in lines.iter().zip(want) {
        assert!(line.contains(want), "{line:?} is not {want:?}\n{err}");
    }
    assert_eq!(lines.len(), want.len(), "{err}");
    assert!(err.contains(&format!("many.toml: {} error(s)", want.len())), "{err}");
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    // Exit 2 means a runtime failure (README, "Command line"); clap's own
    // default for usage errors is 2, so it must have been overridden.
    for args in [
        &["check"][..],
        &["chek", "--config", "x.toml"],
        &["serve", "--bogus"],
        &["--listen", "not-an-address"],
        &["mock", "--tokens", "many"],
    ] {
        let out = sluice().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error:") && err.contains("--help"), "{args:?}: {err}");
    }
    let out = sluice().args(["chek"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("check"), "a suggestion");
    for args in [&["--help"][..], &["check", "--help"], &["--version"]] {
        let out = sluice().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn serve_with_a_bad_config_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nnope = true\n").unwrap();
    let out = sluice().args(["serve", "--config", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn sigterm_drains_in_flight_streams_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let cfg = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sluice.toml")).unwrap();
    std::fs::write(&path, cfg).unwrap();
    let port = dead_addr().port();
    let mut child = sluice()
        .args(["serve", "--config", path.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    // Wait until it serves.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client().get(format!("{base}/ready")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "gateway did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A stream of 10 events, 100 ms apart: about a second of work in flight.
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-sluice-dev")
        .header("x-mock-tokens", "10")
        .header("x-mock-chunk-delay-ms", "100")
        .json(&chat_body("mock", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    use futures_util::StreamExt;
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());

    // The stream still completes.
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(rest).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    // Then the process exits 0.
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(code.code(), Some(0));
}

#[test]
fn serve_with_a_taken_port_exits_2() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut child = sluice()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(std::env::temp_dir())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(code.code(), Some(2), "{err}");
    assert!(err.contains("cannot listen"));
    drop(l);
}
