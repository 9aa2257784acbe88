//! Redis as managed offerings run it: TLS (`rediss://`, rustls, the CA
//! from `ca_file`) against a real `redis-server` with a TLS port and a
//! certificate made at test time (rcgen), and Sentinel against real
//! `redis-server --sentinel` with a master and a replica, through a
//! failover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::Value;

const KEY_B: &str = "sk-ha-key-b";

/// A redis-server (or sentinel) process; killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn redis(args: &[String]) -> Proc {
    Proc(
        Command::new("redis-server").args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(
            |e| panic!("cannot run redis-server ({e}): apt-get install redis-server (scripts/test does)"),
        ),
    )
}

fn plain(port: u16, extra: &[&str]) -> Proc {
    let mut a: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        .map(String::from)
        .to_vec();
    a.extend(extra.iter().map(|s| s.to_string()));
    redis(&a)
}

/// A CA, and a certificate it signed for 127.0.0.1: (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path, ca_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (dir.join(format!("{ca_name}.pem")), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn config(shared: &str) -> String {
    format!(
        r#"
[server]
shutdown_timeout_ms = 2000

[[providers]]
name = "mock"
kind = "mock"

[[models]]
name = "m"
deployments = [{{ provider = "mock", model = "m" }}]

[[keys]]
name = "a"
key = "${{CLIENT_KEY}}"
rpm = 5

[[keys]]
name = "b"
key = "{KEY_B}"
rpm = 1000

[shared]
probe_interval_ms = 50
timeout_ms = 500
{shared}
"#
    )
}

fn shared_state(status: &Value) -> &Value {
    actor_detail(status, "shared_state")
}

async fn wait_link(gw: &Gateway, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = gateway_status(gw).await;
        if shared_state(&s)["link"]["state"] == state {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "the link never became {state}: {}", shared_state(&s));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn chat(gw: &Gateway, key: &str) -> u16 {
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(key).json(&chat_body("m", false));
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_is_used_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "test-ca");
    let (other_ca, _, _) = certificates(&dir.path().join(".."), "other-ca");
    let port = free_port();
    let _server = redis(
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            ca.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
        ]
        .map(String::from),
    );

    let gw =
        Gateway::start(&config(&format!("redis_url = \"rediss://127.0.0.1:{port}\"\nca_file = \"{}\"", ca.display())));
    let s = wait_link(&gw, "up").await;
    assert_eq!(actor_detail(&s, "rate_limiter")["backend"], "redis");
    // Key a's limit of 5 a minute holds through Redis over TLS.
    let mut codes = Vec::new();
    for _ in 0..7 {
        codes.push(chat(&gw, CLIENT_KEY).await);
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429]);
    let s = gateway_status(&gw).await;
    let link = &shared_state(&s)["link"];
    assert_eq!(link["state"], "up", "{link}");
    assert!(link["calls_total"].as_u64().unwrap() >= 5 && link["errors_total"] == 0, "{link}");
    drop(gw);

    // A CA that did not sign the server's certificate: never up, and saying why;
    // requests go on from in-process state.
    let gw = Gateway::start(&config(&format!(
        "redis_url = \"rediss://127.0.0.1:{port}\"\nca_file = \"{}\"",
        other_ca.display()
    )));
    // Wait for a probe's verdict (before the first, it says "not connected yet").
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = gateway_status(&gw).await;
        let e = shared_state(&s)["link"]["last_error"].as_str().unwrap_or_default().to_string();
        if !e.is_empty() && e != "not connected yet" {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "no probe failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let link = &shared_state(&s)["link"];
    assert_eq!(link["state"], "down", "{link}");
    let why = link["last_error"].as_str().unwrap_or_default().to_lowercase();
    assert!(why.contains("certificate") || why.contains("unknownissuer") || why.contains("tls"), "{why}");
    assert_eq!(chat(&gw, KEY_B).await, 200);
}

/// The sentinel's view: which port is the master of `mymaster`.
fn master_port(sentinel: u16) -> Option<u16> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{sentinel}")).ok()?.get_connection().ok()?;
    let addr: Vec<String> = redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg("mymaster").query(&mut c).ok()?;
    addr.get(1)?.parse().ok()
}

/// Does the sentinel list the replica on `port`, healthy (flags just `slave`)?
fn replica_known(sentinel: u16, port: u16) -> bool {
    let Ok(mut c) = redis::Client::open(format!("redis://127.0.0.1:{sentinel}")).and_then(|c| c.get_connection())
    else {
        return false;
    };
    let replicas: Vec<Vec<String>> =
        redis::cmd("SENTINEL").arg("REPLICAS").arg("mymaster").query(&mut c).unwrap_or_default();
    replicas.iter().any(|fields| {
        let get = |k: &str| fields.chunks(2).find(|p| p[0] == k).and_then(|p| p.get(1)).map(String::as_str);
        get("port") == Some(port.to_string().as_str()) && get("flags") == Some("slave")
    })
}

fn role(port: u16) -> Option<String> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?.get_connection().ok()?;
    let v: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).ok()?;
    match v.first()? {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn exists(port: u16, key: &str) -> bool {
    let Ok(mut c) = redis::Client::open(format!("redis://127.0.0.1:{port}")).and_then(|c| c.get_connection()) else {
        return false;
    };
    redis::cmd("EXISTS").arg(key).query::<i64>(&mut c).unwrap_or(0) == 1
}

async fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_names_the_master_and_a_failover_moves_the_link() {
    let (a, b, s) = (free_port(), free_port(), free_port());
    let _master = plain(a, &[]);
    let _replica = plain(b, &["--replicaof", "127.0.0.1", &a.to_string()]);
    wait("the replica's sync", || role(b).as_deref() == Some("slave") && role(a).as_deref() == Some("master")).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {s}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {a} 1\n\
             sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let _sentinel = redis(&[conf.to_str().unwrap().to_string(), "--sentinel".to_string()]);
    wait("the sentinel", || master_port(s) == Some(a)).await;

    let gw = Gateway::start(&config(&format!("sentinels = [\"redis://127.0.0.1:{s}\"]\nmaster_name = \"mymaster\"")));
    wait_link(&gw, "up").await;
    assert_eq!(chat(&gw, CLIENT_KEY).await, 200);
    wait("key a's limit in the master", || exists(a, "sluice:rl:key:a")).await;

    // Fail over: the replica becomes the master, the old master its replica.
    // The sentinel learns of the replica from the master's INFO and must have
    // heard from it before it will promote it (else NOGOODSLAVE): wait for
    // that, and ask again while it still answers NOGOODSLAVE.
    wait("the sentinel's view of the replica", || replica_known(s, b)).await;
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{s}")).unwrap().get_connection().unwrap();
    wait("the sentinel's consent to fail over", || {
        match redis::cmd("SENTINEL").arg("FAILOVER").arg("mymaster").query::<String>(&mut c) {
            Ok(_) => true,
            Err(e) if e.code() == Some("NOGOODSLAVE") => false,
            Err(e) => panic!("SENTINEL FAILOVER: {e}"),
        }
    })
    .await;
    wait("the failover", || master_port(s) == Some(b) && role(b).as_deref() == Some("master")).await;
    wait("the old master's demotion", || role(a).as_deref() == Some("slave")).await;

    // Writes to the old master now fail (READONLY): the link drops it, and
    // the next probe asks the sentinel, which names the new master.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert_eq!(chat(&gw, KEY_B).await, 200, "requests never fail while Redis moves");
        if exists(b, "sluice:rl:key:b") && shared_state(&gateway_status(&gw).await)["link"]["state"] == "up" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "key b's limit never reached the new master");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = gateway_status(&gw).await;
    let detail = shared_state(&s);
    assert!(detail["redis"].as_str().unwrap().contains("master `mymaster` through 1 sentinels"), "{detail}");
    assert!(detail["link"]["downs_total"].as_u64().unwrap() >= 1, "it noticed the old master's demotion: {detail}");
}
