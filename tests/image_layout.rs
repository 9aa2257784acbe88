//! The container image without a container engine (none runs on these
//! machines, and no registry is reachable): lay out the Dockerfile's runtime
//! stage in a chroot — the binary, the config, the writable data directory,
//! and the shared libraries the binary links, nothing else (no shell, no
//! /tmp, no /proc, like distroless) — and run `sluice serve` and the image's
//! HEALTHCHECK there as the image's USER.
//!
//! Every path, the uid/gid, the port and both commands come from parsing the
//! Dockerfile, so they cannot drift from it; a COPY the test does not know
//! how to lay out fails the test rather than being skipped.
//!
//! Needs root (chroot, switching users). Without root the test prints that
//! it skipped and passes, unless `CI` is set (`.ci/run` sets it): then it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{chat_body, client, dead_addr};

/// What the distroless base (`gcr.io/distroless/cc-debian12`) ships of what
/// a Rust binary may link: glibc's libraries, libgcc, libstdc++, OpenSSL 3.
/// A binary needing anything else would not start in the image.
const BASE_IMAGE: &str = "gcr.io/distroless/cc-debian12";
const BASE_LIBS: &[&str] = &[
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libssl.so.3",
    "libcrypto.so.3",
];

/// The runtime stage of the Dockerfile, as far as running it goes.
#[derive(Debug)]
struct Image {
    base: String,
    /// Where `COPY --from=<build>` puts the binary (ENTRYPOINT's program).
    binary: String,
    /// `COPY <file in the repo> <path>` of the runtime stage.
    files: Vec<(PathBuf, String)>,
    /// Empty directories made in the build stage and copied over, with their owner.
    dirs: Vec<(String, (u32, u32))>,
    volumes: Vec<String>,
    user: (u32, u32),
    expose: u16,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
}

/// One instruction: (KEYWORD, the rest of it).
type Instr = (String, String);

/// A stage: its `AS` name, its base image, its instructions.
struct Stage {
    name: Option<String>,
    base: String,
    instrs: Vec<Instr>,
}

/// Instructions as (KEYWORD, rest): continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<Instr> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (op, rest) = cur.split_once(char::is_whitespace).unwrap_or((&cur, ""));
        out.push((op.to_uppercase(), rest.trim().to_string()));
        cur.clear();
    }
    out
}

fn exec_form(what: &str, json: &str) -> Vec<String> {
    serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("Dockerfile: {what} must be in exec (JSON array) form, got {json:?}: {e}"))
}

fn owner(spec: &str) -> (u32, u32) {
    let numeric = |s: &str| {
        s.parse::<u32>().unwrap_or_else(|_| {
            panic!("Dockerfile: user {spec:?} must be numeric uid:gid (Kubernetes' runAsNonRoot cannot verify a name)")
        })
    };
    let (u, g) = spec.split_once(':').unwrap_or_else(|| panic!("Dockerfile: user {spec:?} must be uid:gid"));
    (numeric(u), numeric(g))
}

fn parse_dockerfile(text: &str) -> Image {
    // Stages: (name, base, instructions).
    let mut stages: Vec<Stage> = Vec::new();
    for (op, rest) in instructions(text) {
        if op == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, kw, name] if kw.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage { name, base: words[0].to_string(), instrs: Vec::new() });
        } else {
            stages.last_mut().expect("Dockerfile: instruction before FROM").instrs.push((op, rest));
        }
    }
    let Stage { base, instrs: runtime, .. } = stages.last().expect("Dockerfile: no FROM");
    let get = |op: &str| runtime.iter().filter(|(o, _)| o == op).map(|(_, r)| r.as_str()).next_back();
    let entrypoint = exec_form("ENTRYPOINT", get("ENTRYPOINT").expect("Dockerfile: no ENTRYPOINT"));
    let cmd = exec_form("CMD", get("CMD").expect("Dockerfile: no CMD"));
    let hc = get("HEALTHCHECK").expect("Dockerfile: no HEALTHCHECK");
    let hc_cmd = hc.split_once("CMD ").expect("Dockerfile: HEALTHCHECK without CMD").1;
    let user = owner(get("USER").expect("Dockerfile: no USER (the image would run as root)"));
    assert_ne!(user.0, 0, "Dockerfile: USER must not be root");
    let expose = get("EXPOSE").expect("Dockerfile: no EXPOSE").parse().expect("Dockerfile: EXPOSE one port");
    let volumes = runtime.iter().filter(|(o, _)| o == "VOLUME").flat_map(|(_, r)| exec_form("VOLUME", r)).collect();

    let mut image = Image {
        base: base.clone(),
        binary: entrypoint[0].clone(),
        files: Vec::new(),
        dirs: Vec::new(),
        volumes,
        user,
        expose,
        entrypoint,
        cmd,
        healthcheck: exec_form("HEALTHCHECK CMD", hc_cmd),
    };
    let mut binary_copied = false;
    for (_, rest) in runtime.iter().filter(|(o, _)| o == "COPY") {
        let words: Vec<&str> = rest.split_whitespace().collect();
        let flag = |name: &str| words.iter().find_map(|w| w.strip_prefix(name));
        let paths: Vec<&str> = words.iter().copied().filter(|w| !w.starts_with("--")).collect();
        let [src, dest] = paths[..] else { panic!("Dockerfile: COPY {rest}: expected one source and one destination") };
        let chown = flag("--chown=").map(owner);
        match flag("--from=") {
            Some(stage) => {
                let build = stages
                    .iter()
                    .find(|s| s.name.as_deref() == Some(stage))
                    .unwrap_or_else(|| panic!("Dockerfile: COPY --from={stage}: no such stage"));
                let made_dir = build.instrs.iter().any(|(o, r)| {
                    o == "RUN"
                        && r.split("&&").any(|c| {
                            c.trim().strip_prefix("mkdir -p ").is_some_and(|a| a.split_whitespace().any(|d| d == src))
                        })
                });
                if dest == image.binary {
                    binary_copied = true;
                } else if made_dir {
                    image.dirs.push((dest.to_string(), chown.unwrap_or((0, 0))));
                } else {
                    panic!("tests/image_layout.rs does not know how to lay out `COPY {rest}`: teach it");
                }
            }
            None => {
                assert!(chown.is_none(), "tests/image_layout.rs: COPY --chown of a repo file: teach the test");
                image.files.push((Path::new(env!("CARGO_MANIFEST_DIR")).join(src), dest.to_string()));
            }
        }
    }
    assert!(binary_copied, "Dockerfile: no COPY puts the binary at ENTRYPOINT's {}", image.binary);
    image
}

/// `root` + an absolute path of the image.
fn inside(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Create the directories leading to `path` inside `root`, root-owned 0755
/// as in an image (the process's umask must not matter).
fn make_parents(root: &Path, path: &Path) {
    let parent = path.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    let mut d = parent;
    while d.starts_with(root) {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
}

/// The shared libraries `binary` needs, from `ldd`: absolute paths.
fn linked_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd (libc-bin) is needed to lay out the image");
    assert!(out.status.success(), "ldd failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Build the runtime stage's files under `root`.
fn lay_out(image: &Image, root: &Path) {
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_sluice"));
    // The Dockerfile copies a release build; this test runs the test build of
    // the same source. A hard link avoids copying a large debug binary.
    let dest = inside(root, &image.binary);
    make_parents(root, &dest);
    if std::fs::hard_link(bin, &dest).is_err() {
        std::fs::copy(bin, &dest).unwrap();
    }
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o755), "the binary must be root-owned 0755, as COPY makes it");

    for (src, path) in &image.files {
        let dest = inside(root, path);
        make_parents(root, &dest);
        std::fs::copy(src, &dest).unwrap_or_else(|e| panic!("COPY {}: {e}", src.display()));
    }
    for (path, (uid, gid)) in &image.dirs {
        let dir = inside(root, path);
        make_parents(root, &dir.join("x"));
        std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid)).unwrap();
    }

    assert!(image.base.starts_with(BASE_IMAGE), "the runtime base is {}; tell the test what it ships", image.base);
    for lib in linked_libraries(bin) {
        let name = lib.file_name().unwrap().to_string_lossy().into_owned();
        assert!(BASE_LIBS.contains(&name.as_str()), "sluice links {name}, which {BASE_IMAGE} does not ship");
        let dest = inside(root, lib.to_str().unwrap());
        make_parents(root, &dest);
        std::fs::copy(&lib, &dest).unwrap();
    }
}

/// `argv` with the address after `flag` moved to `127.0.0.1:port`; the
/// address given must use the EXPOSEd port.
fn on_port(argv: &[String], flag: &str, port: u16, expose: u16) -> Vec<String> {
    let i = argv.iter().position(|a| a == flag).unwrap_or_else(|| panic!("Dockerfile: {argv:?} has no {flag}"));
    let addr: SocketAddr = argv[i + 1].parse().unwrap();
    assert_eq!(addr.port(), expose, "Dockerfile: {flag} {addr} is not on the EXPOSEd port {expose}");
    let mut out = argv.to_vec();
    out[i + 1] = format!("127.0.0.1:{port}");
    out
}

/// A process in the image's chroot, as the image's user, killed if the test fails.
struct InImage {
    child: Child,
    log: PathBuf,
}

impl InImage {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for InImage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chroot_bin() -> &'static str {
    if Path::new("/usr/sbin/chroot").exists() { "/usr/sbin/chroot" } else { "chroot" }
}

/// `argv` in the chroot as the image's user, with the image's (empty) environment.
fn as_image_user(image: &Image, root: &Path, argv: &[String]) -> Command {
    let (uid, gid) = image.user;
    let mut c = Command::new(chroot_bin());
    c.arg(format!("--userspec={uid}:{gid}")).arg(format!("--groups={gid}")).arg(root).args(argv);
    c.env_clear();
    c
}

fn spawn_serve(image: &Image, root: &Path, argv: &[String], log: PathBuf) -> InImage {
    let file = std::fs::File::create(&log).unwrap();
    let child = as_image_user(image, root, argv).stdout(Stdio::null()).stderr(file).spawn().unwrap();
    InImage { child, log }
}

async fn wait_healthy(proc: &mut InImage, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            panic!("sluice exited ({status}) in the image layout:\n{}", proc.log());
        }
        if let Ok(r) = client().get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "no 200 on /health within 20 s:\n{}", proc.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_exit(proc: &mut InImage) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "sluice did not exit within 20 s:\n{}", proc.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sigterm_and_wait(mut proc: InImage) -> ExitStatus {
    let pid = proc.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    wait_exit(&mut proc).await
}

/// `Uid:`/`Gid:`/`Groups:` of a process, from /proc (outside the chroot).
fn credentials(pid: u32) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    (field("Uid:").unwrap(), field("Gid:").unwrap(), field("Groups:").unwrap_or_default())
}

/// Root, or a visible skip (outside CI). libtest captures `eprintln!` of a
/// passing test, so the message goes straight to the stderr handle.
fn running_as_root(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().nth(1));
    if euid == Some("0") {
        return true;
    }
    let why = format!("{test}: needs root (chroot and switching to the image's user)");
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI must run it as root");
    }
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {why}; run the suite as root to include it\n");
    false
}

fn image() -> Image {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile");
    parse_dockerfile(&std::fs::read_to_string(path).unwrap())
}

fn layout() -> (Image, tempfile::TempDir) {
    let image = image();
    // Under the target dir, on the binary's file system, so it can be hard-linked.
    let dir = tempfile::Builder::new().prefix("image-layout-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    lay_out(&image, &root);
    (image, dir)
}

#[tokio::test]
async fn the_image_serves_and_passes_its_healthcheck_as_its_non_root_user() {
    if !running_as_root("the_image_serves_and_passes_its_healthcheck_as_its_non_root_user") {
        return;
    }
    let (image, dir) = layout();
    let root = dir.path().join("root");
    let port = dead_addr().port();
    let base = format!("http://127.0.0.1:{port}");

    // ENTRYPOINT + CMD, exactly, but on a free loopback port.
    let argv: Vec<String> = image.entrypoint.iter().chain(&image.cmd).cloned().collect();
    let argv = on_port(&argv, "--listen", port, image.expose);
    let mut serve = spawn_serve(&image, &root, &argv, dir.path().join("serve.log"));
    wait_healthy(&mut serve, &base).await;

    let (uid, gid) = image.user;
    assert_eq!(
        credentials(serve.child.id()),
        (format!("{uid} {uid} {uid} {uid}"), format!("{gid} {gid} {gid} {gid}"), gid.to_string()),
        "sluice must run as the image's user and group only"
    );
    // The shipped config's documented key and model (README, "Set up").
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-sluice-dev")
        .json(&chat_body("mock", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // The HEALTHCHECK, as the engine would run it: in the image, as its user.
    let hc = on_port(&image.healthcheck, "--addr", port, image.expose);
    let out = as_image_user(&image, &root, &hc).output().unwrap();
    assert!(out.status.success(), "HEALTHCHECK failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"status\""));

    let status = sigterm_and_wait(serve).await;
    assert_eq!(status.code(), Some(0), "SIGTERM must drain and exit 0");
    // And it notices a gateway that is gone.
    let out = as_image_user(&image, &root, &hc).output().unwrap();
    assert!(!out.status.success(), "HEALTHCHECK passed with nothing listening");
}

#[tokio::test]
async fn the_spend_store_is_writable_in_the_data_dir_and_nowhere_else() {
    if !running_as_root("the_spend_store_is_writable_in_the_data_dir_and_nowhere_else") {
        return;
    }
    let (image, dir) = layout();
    let root = dir.path().join("root");
    let (uid, gid) = image.user;
    let data: Vec<&str> = image.dirs.iter().filter(|(_, o)| *o == image.user).map(|(p, _)| p.as_str()).collect();
    let [data] = data[..] else { panic!("Dockerfile: expected one directory owned by USER, got {data:?}") };
    assert!(
        image.volumes.iter().any(|v| v == data),
        "Dockerfile: {data} should be a VOLUME, so spend outlives a container"
    );

    // The config: where CMD reads it, root-owned, readable but not writable by the user.
    let argv: Vec<String> = image.entrypoint.iter().chain(&image.cmd).cloned().collect();
    let config = argv.iter().position(|a| a == "--config").map(|i| argv[i + 1].clone()).expect("CMD has --config");
    let shipped = image.files.iter().find(|(_, dest)| *dest == config).expect("the Dockerfile ships CMD's --config");
    let meta = std::fs::metadata(inside(&root, &config)).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o022), (0, 0), "the config must be root-owned, not group/world-writable");
    assert_ne!(meta.mode() & 0o004, 0, "the image's user must be able to read the config");
    let shipped = std::fs::read_to_string(&shipped.0).unwrap();

    // A config mounted over it (as Kubernetes' ConfigMap or `docker run -v`
    // does) that keeps spend in the data dir.
    let store = format!("{data}/spend.redb");
    std::fs::write(inside(&root, &config), format!("{shipped}\n[spend]\nstore = \"{store}\"\n")).unwrap();
    let port = dead_addr().port();
    let argv_on_port = on_port(&argv, "--listen", port, image.expose);
    let mut serve = spawn_serve(&image, &root, &argv_on_port, dir.path().join("serve-store.log"));
    wait_healthy(&mut serve, &format!("http://127.0.0.1:{port}")).await;
    let meta = std::fs::metadata(inside(&root, &store)).unwrap_or_else(|e| panic!("{store} not created: {e}"));
    assert_eq!((meta.uid(), meta.gid()), (uid, gid), "the spend store belongs to the image's user");
    assert_eq!(sigterm_and_wait(serve).await.code(), Some(0));

    // The same store next to the config: the user may not write there, and
    // Sluice refuses to start (exit 2) rather than run without its store.
    let elsewhere = format!("{}/spend.redb", Path::new(&config).parent().unwrap().display());
    std::fs::write(inside(&root, &config), format!("{shipped}\n[spend]\nstore = \"{elsewhere}\"\n")).unwrap();
    let port = dead_addr().port();
    let argv_on_port = on_port(&argv, "--listen", port, image.expose);
    let mut refused = spawn_serve(&image, &root, &argv_on_port, dir.path().join("serve-elsewhere.log"));
    let status = wait_exit(&mut refused).await;
    let err = refused.log();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("spend store") && err.contains("ermission denied"), "{err}");
}

#[test]
fn the_dockerfile_parser_reads_what_the_layout_needs() {
    // Runs without root: the parse alone, against the real Dockerfile.
    let image = image();
    assert!(image.binary.starts_with('/') && image.entrypoint[0] == image.binary);
    assert!(image.cmd.iter().any(|a| a == "--config") && image.cmd.iter().any(|a| a == "--listen"));
    assert!(image.healthcheck.iter().any(|a| a == "health"));
    assert!(!image.files.is_empty() && !image.dirs.is_empty());
    assert!(image.files.iter().all(|(src, _)| src.is_file()), "{:?}", image.files);

    let bad = "FROM x AS build\nRUN true\nFROM y\nCOPY --from=build /a /b\nUSER 1:1\nEXPOSE 1\n\
               ENTRYPOINT [\"/b\"]\nCMD [\"serve\"]\nHEALTHCHECK CMD [\"/b\"]\n";
    let named = bad.replace("USER 1:1", "USER nonroot:nonroot");
    assert!(std::panic::catch_unwind(|| parse_dockerfile(&named)).is_err(), "a named USER must be refused");
    let shell = bad.replace("CMD [\"serve\"]", "CMD serve");
    assert!(std::panic::catch_unwind(|| parse_dockerfile(&shell)).is_err(), "shell-form CMD must be refused");
    let unknown = bad.replace("COPY --from=build /a /b", "COPY --from=build /a /b\nCOPY --from=build /c /d");
    assert!(std::panic::catch_unwind(|| parse_dockerfile(&unknown)).is_err(), "an unknown COPY must be refused");
    assert_eq!(parse_dockerfile(bad).binary, "/b");
}
