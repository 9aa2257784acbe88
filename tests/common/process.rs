//! Sluice as a separate process (the built binary), for what only a process
//! shows: a restart, a signal (SIGHUP), several replicas.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// One `sluice serve` process; killed when dropped.
pub struct SluiceProcess {
    pub addr: SocketAddr,
    child: Child,
}

impl SluiceProcess {
    /// Serve `config` (a file) on a free loopback port.
    pub fn spawn(config: &Path) -> SluiceProcess {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config", config.to_str().unwrap(), "--listen", &addr.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        SluiceProcess { addr, child }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The process id (to read its /proc entries).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until it answers `/health` (and, with `shared`, hears the news channel).
    pub async fn wait_ready(&self, shared: bool) {
        for _ in 0..1000 {
            if let Ok(r) = super::client().get(self.url("/status")).bearer_auth(super::ADMIN_KEY).send().await
                && let Ok(s) = r.json::<Value>().await
            {
                let subscribed = s["actors"]
                    .as_array()
                    .and_then(|a| a.iter().find(|a| a["name"] == "shared_state"))
                    .is_some_and(|a| a["detail"]["news_subscribed"] == true);
                if !shared || subscribed {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("sluice at {} never became ready", self.addr);
    }

    /// Send a signal to the process (`libc::SIGHUP`, `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        assert_eq!(unsafe_free_kill(pid, sig), 0);
    }

    /// SIGTERM, then wait for the process to exit (graceful drain).
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
    }
}

fn unsafe_free_kill(pid: i32, sig: i32) -> i32 {
    // `kill(1)` rather than `libc::kill`: the workspace denies unsafe code.
    let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    if status.success() { 0 } else { -1 }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
