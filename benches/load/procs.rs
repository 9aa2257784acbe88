//! Child processes (the mock, Sluice, wrk, the stream clients), pinning,
//! readiness probes, and what /proc says about a process.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

pub type Res<T> = Result<T, String>;

/// A long-running child: killed when dropped (normal exit, error, panic),
/// and by the kernel when the benchmark itself dies (PR_SET_PDEATHSIG,
/// which covers Ctrl-C and kill).
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub pid: u32,
    pub log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Proc {
    /// An error if the process has exited, with the end of its log.
    pub fn check_alive(&mut self) -> Res<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited ({status}); its log ends:\n{}", self.name, log_tail(&self.log))),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `program args`, under `taskset -c core` when a core is given; the child
/// dies with the benchmark.
pub fn command(program: &Path, args: &[String], core: Option<usize>) -> Command {
    let mut cmd = match core {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    };
    cmd.args(args).kill_on_drop(true);
    die_with_parent(&mut cmd);
    cmd
}

#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl, which is async-signal-safe. The signal survives the exec
    // of taskset and taskset's exec of the real program.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Spawns a long-running child with stdout and stderr going to `dir/name.log`.
pub fn spawn(name: &str, program: &Path, args: &[String], core: Option<usize>, dir: &Path) -> Res<Proc> {
    let log = dir.join(format!("{name}.log"));
    let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = command(program, args, core)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
    let pid = child.id().ok_or_else(|| format!("{name} exited at once"))?;
    Ok(Proc { name: name.to_string(), child, pid, log })
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`);
/// returns the status and the body. For probes and warm-up, not for load.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Res<(u16, String)> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("{method} {path}: no answer in 10 s"))?
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let status =
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad response: {text:.80}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((status, body))
}

/// Waits until `GET path` answers 200 (or the process dies, or 15 s pass).
pub async fn wait_ready(p: &mut Proc, addr: SocketAddr, path: &str) -> Res<()> {
    let start = Instant::now();
    loop {
        p.check_alive()?;
        if let Ok((200, _)) = http(addr, "GET", path, &[], "").await {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(15) {
            return Err(format!(
                "{} did not answer GET {path} with 200 within 15 s; log:\n{}",
                p.name,
                log_tail(&p.log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Raises the soft open-file limit to the hard one (children inherit it);
/// returns the new soft limit.
#[allow(unsafe_code)]
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}

#[allow(unsafe_code)]
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// A `Vm*` line of /proc/PID/status, in bytes.
pub fn vm_bytes(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
    let kb: u64 = line[key.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// The CPUs a process may run on ("0", "0-1"), as /proc/PID/status says.
pub fn cpus_allowed(pid: u32) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map_or("?".into(), |v| v.trim().to_string())
}

/// User + system CPU seconds of a process (all its threads).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck())
}

/// Busy and total ticks of each CPU (/proc/stat; busy counts user, nice,
/// system, irq, softirq and steal: network processing in softirq is CPU a
/// process's own utime+stime does not show).
pub fn cpu_ticks() -> Vec<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    s.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let f: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let get = |i: usize| f.get(i).copied().unwrap_or(0);
            let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
            (busy, busy + get(3) + get(4))
        })
        .collect()
}

/// Per-CPU busy fraction between two [`cpu_ticks`] samples.
pub fn busy_between(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| (b.0 - a.0) as f64 / ((b.1 - a.1).max(1)) as f64).collect()
}

/// "97/100%": per-CPU busy percentages.
pub fn busy_str(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{:.0}", x * 100.0)).collect();
    format!("{}%", parts.join("/"))
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// First line of a command's output, if it runs.
pub fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program).args(args).output().ok()?;
    let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
    String::from_utf8_lossy(&text).lines().next().map(|l| l.trim().to_string())
}

/// Bytes to MiB.
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
