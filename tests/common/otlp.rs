//! A real OTLP/HTTP receiver for the telemetry tests: a hyper server on a
//! loopback port that decodes what it is sent (protobuf, with the
//! `opentelemetry-proto` types) and keeps it for the test to look at.
//! Answers 200 with an empty export response, as a collector does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[derive(Default)]
struct Seen {
    spans: Vec<Span>,
    logs: Vec<LogRecord>,
    /// `service.name` of every resource seen.
    services: Vec<String>,
    /// Header values of each export request, as (name, value).
    headers: Vec<Vec<(String, String)>>,
}

pub struct OtlpReceiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<tokio::sync::Notify>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OtlpReceiver {
    /// Start on a free loopback port, on its own thread and runtime.
    pub fn start() -> OtlpReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (s, c) = (seen.clone(), changed.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let stream = tokio::select! {
                        r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                        _ = &mut stop_rx => break,
                    };
                    let (s, c) = (s.clone(), c.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| handle(req, s.clone(), c.clone()));
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                    });
                }
            });
        });
        OtlpReceiver { addr, seen, changed, stop: Some(stop_tx) }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Wait (at most `within`) until `pick` finds what the test waits for in
    /// the spans received so far; woken by each export request.
    pub async fn wait_spans<T>(&self, within: Duration, mut pick: impl FnMut(&[Span]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if let Some(t) = pick(&self.seen.lock().unwrap().spans) {
                return t;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let n = self.seen.lock().unwrap().spans.len();
                panic!("the spans awaited did not arrive within {within:?} ({n} spans received)");
            }
        }
    }

    pub async fn wait_logs<T>(&self, within: Duration, mut pick: impl FnMut(&[LogRecord]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if let Some(t) = pick(&self.seen.lock().unwrap().logs) {
                return t;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the log records awaited did not arrive within {within:?}");
            }
        }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.seen.lock().unwrap().spans.clone()
    }

    pub fn services(&self) -> Vec<String> {
        self.seen.lock().unwrap().services.clone()
    }

    pub fn request_headers(&self) -> Vec<Vec<(String, String)>> {
        self.seen.lock().unwrap().headers.clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<tokio::sync::Notify>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let headers: Vec<(String, String)> =
        req.headers().iter().map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let ok = {
        let mut s = seen.lock().unwrap();
        s.headers.push(headers);
        match path.as_str() {
            "/v1/traces" => match ExportTraceServiceRequest::decode(body) {
                Ok(r) => {
                    for rs in r.resource_spans {
                        if let Some(name) = rs.resource.as_ref().and_then(|r| str_attr(&r.attributes, "service.name")) {
                            s.services.push(name);
                        }
                        for ss in rs.scope_spans {
                            s.spans.extend(ss.spans);
                        }
                    }
                    true
                }
                Err(_) => false,
            },
            "/v1/logs" => match ExportLogsServiceRequest::decode(body) {
                Ok(r) => {
                    for rl in r.resource_logs {
                        for sl in rl.scope_logs {
                            s.logs.extend(sl.log_records);
                        }
                    }
                    true
                }
                Err(_) => false,
            },
            _ => false,
        }
    };
    changed.notify_waiters();
    let status = if ok { 200 } else { 400 };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::new()))
        .unwrap())
}

/// A string attribute's value.
pub fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match &kv.value {
        Some(AnyValue { value: Some(any_value::Value::StringValue(s)) }) => Some(s.clone()),
        _ => None,
    })
}

pub fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match &kv.value {
        Some(AnyValue { value: Some(any_value::Value::IntValue(i)) }) => Some(*i),
        _ => None,
    })
}

pub fn f64_attr(attrs: &[KeyValue], key: &str) -> Option<f64> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match &kv.value {
        Some(AnyValue { value: Some(any_value::Value::DoubleValue(d)) }) => Some(*d),
        _ => None,
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
