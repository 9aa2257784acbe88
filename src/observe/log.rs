//! The request log: one JSON line per request, written by a thread of its
//! own to a file (rotated by size) or to standard output.
//!
//! The request path `try_send`s into a bounded channel; a full channel
//! drops the line and counts it (`sluice_telemetry_dropped_total{queue=
//! "request_log"}`), so a slow disk never slows a request and memory stays
//! bounded by `queue_size` records. The writer buffers lines and flushes
//! whenever the channel runs empty, so a quiet gateway's log is current.
//!
//! Rotation: before a line would take the file past `max_bytes`, the file
//! is renamed `NAME.1` (`NAME.1` → `NAME.2`, …, the oldest beyond
//! `max_files` deleted) and a new one is opened.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::Serialize;

use super::{DROPPED_TOTAL, Finished, Names};
use crate::config::{LogTarget, RequestLogConfig};

enum Msg {
    Line(Arc<Finished>),
    /// Write what is queued, flush, and stop.
    Close,
}

pub(super) struct Queue {
    tx: SyncSender<Msg>,
    dropped: metrics::Counter,
    done: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Queue {
    pub(super) fn start(cfg: &RequestLogConfig) -> Result<Queue, String> {
        let out = Output::open(cfg)?;
        let (tx, rx) = sync_channel(cfg.queue_size);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sluice-request-log".into())
            .spawn(move || {
                write_loop(rx, out);
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start the request log writer: {e}"))?;
        Ok(Queue {
            tx,
            dropped: metrics::counter!(DROPPED_TOTAL, "queue" => "request_log"),
            done: std::sync::Mutex::new(Some(done_rx)),
        })
    }

    pub(super) fn push(&self, f: Arc<Finished>) {
        match self.tx.try_send(Msg::Line(f)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.increment(1),
        }
    }

    pub(super) fn close(&self, deadline: Instant) {
        // A blocking send: the writer is draining, so room comes soon.
        if self.tx.send(Msg::Close).is_err() {
            return;
        }
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        if let Some(done) = done {
            let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

fn write_loop(rx: Receiver<Msg>, mut out: Output) {
    let mut line = Vec::with_capacity(1024);
    loop {
        // Flush whenever nothing more is waiting: the file is current
        // within one write of the last request.
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(_) => {
                out.flush();
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        match msg {
            Msg::Line(f) => {
                line.clear();
                if sonic_rs::to_writer(&mut line, &Line::of(&f, &f.names)).is_ok() {
                    line.push(b'\n');
                    out.write(&line);
                }
            }
            Msg::Close => break,
        }
    }
    out.flush();
}

/// The line as written: every field a request has, names not indices.
#[derive(Serialize)]
pub struct Line<'a> {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    pub ts: String,
    pub request_id: &'a str,
    /// `chat`, `completions`, `embeddings` or `messages`.
    pub route: &'static str,
    pub key: Option<&'a str>,
    pub team: Option<&'a str>,
    pub model: Option<&'a str>,
    /// The model that served (another one after a fallback).
    pub served_model: Option<&'a str>,
    pub deployment: Option<&'a str>,
    pub status: u16,
    /// `ok`, `stream_error` (failed after its first byte) or `client_gone`.
    pub outcome: &'static str,
    pub error: Option<&'static str>,
    pub stream: bool,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub cache: Option<&'static str>,
    pub attempts: usize,
    /// Each failed attempt as `deployment: error`.
    pub attempt_errors: Vec<String>,
    pub latency_ms: Latency,
    pub trace_id: Option<String>,
}

#[derive(Serialize)]
pub struct Latency {
    pub total: f64,
    /// Sluice's own time until the response head went out.
    pub gateway: f64,
    /// Waiting for upstreams (every attempt).
    pub upstream: f64,
    /// Time to the first stream event from the serving deployment.
    pub ttft: Option<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

impl<'a> Line<'a> {
    pub fn of(f: &'a Finished, names: &'a Names) -> Line<'a> {
        let e = &f.end;
        let served = e.served.and_then(|(m, d)| names.deployment(m, d).map(|n| (m, n)));
        let attempt_errors = f
            .attempts
            .iter()
            .filter_map(|a| match a.outcome {
                Some(Err(err)) => {
                    Some(format!("{}: {err}", names.deployment(a.model, a.deployment).map_or("?", |d| &d.label)))
                }
                _ => None,
            })
            .collect();
        let ttft = f.attempts.iter().rev().find(|a| a.outcome == Some(Ok(()))).and_then(|a| a.ttft);
        Line {
            ts: rfc3339(f.wall_start),
            request_id: &e.request_id,
            route: e.endpoint.label(),
            key: e.key.as_deref(),
            team: e.team.as_deref(),
            model: e.model.map(|m| names.model(m)),
            served_model: served.map(|(m, _)| names.model(m)),
            deployment: served.map(|(_, d)| d.label.as_str()),
            status: e.status,
            outcome: e.outcome,
            error: e.error,
            stream: e.stream,
            input_tokens: e.usage.map(|u| u.prompt_tokens),
            output_tokens: e.usage.map(|u| u.completion_tokens),
            cached_tokens: e.usage.map(|u| u.cached_tokens),
            cost_usd: e.cost_usd,
            cache: e.cache,
            attempts: f.attempts.len(),
            attempt_errors,
            latency_ms: Latency {
                total: ms(e.total),
                gateway: ms(e.gateway),
                upstream: ms(e.upstream),
                ttft: ttft.map(ms),
            },
            trace_id: f.trace.as_ref().map(|t| t.trace_id_hex()),
        }
    }
}

pub fn rfc3339(t: std::time::SystemTime) -> String {
    let nanos = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let Ok(d) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128) else { return String::new() };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.millisecond()
    )
}

/// Where lines go.
enum Output {
    Stdout(io::Stdout),
    File(RotatingFile),
}

impl Output {
    fn open(cfg: &RequestLogConfig) -> Result<Output, String> {
        match &cfg.target {
            LogTarget::Stdout => Ok(Output::Stdout(io::stdout())),
            LogTarget::File(path) => RotatingFile::open(path.clone(), cfg.max_bytes, cfg.max_files).map(Output::File),
        }
    }

    fn write(&mut self, line: &[u8]) {
        let r = match self {
            Output::Stdout(s) => s.lock().write_all(line),
            Output::File(f) => f.write(line),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot write the request log");
        }
    }

    fn flush(&mut self) {
        let _ = match self {
            Output::Stdout(s) => s.lock().flush(),
            Output::File(f) => f.file.flush(),
        };
    }
}

struct RotatingFile {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    max_files: u32,
}

impl RotatingFile {
    fn open(path: PathBuf, max_bytes: u64, max_files: u32) -> Result<RotatingFile, String> {
        let file = open_append(&path).map_err(|e| format!("cannot open the request log {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile { path, file: BufWriter::with_capacity(64 * 1024, file), size, max_bytes, max_files })
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        let n = line.len() as u64;
        if self.size > 0 && self.size + n > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += n;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let numbered = |i: u32| -> PathBuf {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        let _ = std::fs::remove_file(numbered(self.max_files));
        for i in (1..self.max_files).rev() {
            let from = numbered(i);
            if from.exists() {
                std::fs::rename(&from, numbered(i + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = BufWriter::with_capacity(64 * 1024, open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut f = RotatingFile::open(path.clone(), 100, 2).unwrap();
        let line = [b'x'; 39];
        let mut line = line.to_vec();
        line.push(b'\n');
        for _ in 0..9 {
            f.write(&line).unwrap();
        }
        f.file.flush().unwrap();
        let len = |p: &str| std::fs::metadata(dir.path().join(p)).map(|m| m.len()).ok();
        // 40-byte lines, 100 bytes a file: two per file; 9 lines = 4 full files + 1 line.
        assert_eq!(len("r.jsonl"), Some(40));
        assert_eq!(len("r.jsonl.1"), Some(80));
        assert_eq!(len("r.jsonl.2"), Some(80));
        assert_eq!(len("r.jsonl.3"), None, "only max_files rotated files are kept");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }
}
