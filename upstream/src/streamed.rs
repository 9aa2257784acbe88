//! Request bodies sent as they are produced: an upload relayed from the
//! client (or read back from disk) is never held whole in memory.
//!
//! Both transports take the same [`StreamedBody`]: the inline HTTP/1.1
//! client writes each chunk to the socket as it comes (length-delimited
//! when the length is known, else chunked); hyper reads it through a
//! bounded channel that this task fills while hyper sends. Either way the
//! source is first read once the request's head is on its way: a request
//! whose connection failed has read none of it (the caller may still send
//! the body elsewhere).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::{Either as Raced, select};
use futures_util::stream::LocalBoxStream;
use http::{HeaderName, HeaderValue, Method, Uri};
use http_body_util::Either;
use hyper::body::{Frame, SizeHint};

use crate::client::{SendError, Transport, UpstreamClient, UpstreamResponse, classify, hyper_response};
use crate::h1::H1Error;

/// A request body read piece by piece. An `Err` item aborts the request:
/// the connection is closed mid-body, so the upstream never takes a cut
/// body for a whole one.
pub struct StreamedBody {
    pub chunks: LocalBoxStream<'static, Result<Bytes, String>>,
    /// The body's exact length when known: sent as `content-length`
    /// (a source that yields another length fails the request); `None`
    /// sends it chunked.
    pub len: Option<u64>,
}

/// One request with a streamed body.
pub struct StreamedRequest<'a> {
    pub method: Method,
    pub uri: &'a Uri,
    /// Besides `host` and the body's framing, which the transport sets.
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: StreamedBody,
}

/// Why a streamed body stopped: the error hyper's body carries.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyAbort(pub String);

/// hyper's side of a streamed body: chunks from the task that reads the
/// source, which waits for the first poll (`pulled`) before reading it.
pub(crate) struct PulledBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, BodyAbort>>,
    pulled: std::sync::Arc<tokio::sync::Notify>,
    len: Option<u64>,
}

impl hyper::body::Body for PulledBody {
    type Data = Bytes;
    type Error = BodyAbort;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BodyAbort>>> {
        self.pulled.notify_one();
        self.rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        self.len.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl UpstreamClient {
    /// Send a request whose body is streamed from its source (an upload),
    /// and wait for the response head. The body is sent once: it is not
    /// kept, so a request that failed after its head left is not re-sent.
    pub async fn send_streamed(&self, req: StreamedRequest<'_>) -> Result<UpstreamResponse, SendError> {
        match &*self.transport {
            Transport::H1(pool) => {
                let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
                let r = pool.send_streamed(req.method.as_str(), path, req.headers, req.body).await.map_err(
                    |e| match e {
                        H1Error::ConnectTimeout(d) => SendError::ConnectTimeout(d),
                        H1Error::Connect(e) => SendError::Connect(e.to_string()),
                        other => SendError::Failed(other.to_string()),
                    },
                )?;
                Ok(UpstreamResponse {
                    status: r.status,
                    event_stream: r.event_stream,
                    retry_after: r.retry_after,
                    body: crate::ResponseBody::H1(r.body),
                    resends: r.resends,
                })
            }
            Transport::Hyper(client) => {
                // Two chunks in flight: the channel is the only buffer.
                let (tx, rx) = tokio::sync::mpsc::channel(2);
                let pulled = Arc::new(tokio::sync::Notify::new());
                let body = PulledBody { rx, pulled: pulled.clone(), len: req.body.len };
                let mut r = http::Request::new(Either::Right(body));
                *r.method_mut() = req.method.clone();
                *r.uri_mut() = req.uri.clone();
                let h = r.headers_mut();
                for (n, v) in req.headers {
                    h.append(n.clone(), v.clone());
                }
                if let Some(len) = req.body.len {
                    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
                }
                let mut chunks = req.body.chunks;
                // This task feeds the channel while hyper sends: the source
                // may be `!Send` (the client's own upload).
                let pump = Box::pin(async move {
                    // Not before hyper asks for the body: its connection is made.
                    pulled.notified().await;
                    while let Some(c) = chunks.next().await {
                        let failed = c.is_err();
                        if tx.send(c.map_err(BodyAbort)).await.is_err() || failed {
                            return;
                        }
                    }
                });
                let sent = Box::pin(client.request(r));
                // An upstream may answer before reading the whole body (an
                // early error): then the rest of the body is not sent.
                let resp = match select(sent, pump).await {
                    Raced::Left((resp, _)) => resp,
                    Raced::Right(((), sent)) => sent.await,
                };
                Ok(hyper_response(resp.map_err(|e| classify(&e))?, 0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::WorkerClients;
    use crate::h1::plain_http_target;
    use crate::session::{SessionSpec, SessionTable};

    /// A server that reads one request per connection to its end (by
    /// content-length or chunked framing) and answers with the raw body
    /// bytes it got, framing included.
    async fn echo_server() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 8192];
                    loop {
                        let n = s.read(&mut tmp).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let body = &buf[end + 4..];
                        let done = match head.lines().find_map(|l| l.strip_prefix("content-length: ")) {
                            Some(n) => body.len() >= n.trim().parse::<usize>().unwrap(),
                            None => body.ends_with(b"0\r\n\r\n"),
                        };
                        if done {
                            let mut out =
                                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
                            out.extend_from_slice(body);
                            let _ = s.write_all(&out).await;
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    fn client(port: u16, inline_h1: bool) -> (UpstreamClient, Uri) {
        let uri: Uri = format!("http://127.0.0.1:{port}/v1/audio/transcriptions").parse().unwrap();
        let spec = SessionSpec {
            name: "p".into(),
            connect_timeout: Duration::from_secs(1),
            max_connections: 4,
            idle_timeout: Duration::from_secs(90),
            warm_connections: 0,
            warm_request: None,
            plain_http: if inline_h1 { plain_http_target(&uri) } else { None },
        };
        let table = Arc::new(SessionTable::new(vec![Some(spec)]).unwrap());
        (WorkerClients::build(&table).get(0).unwrap(), uri)
    }

    fn body(len: Option<u64>, fail: bool) -> StreamedBody {
        // A failing source fails before its end (the client left mid-body).
        let parts: Vec<Result<Bytes, String>> = match fail {
            false => vec![Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))],
            true => vec![Ok(Bytes::from_static(b"hello ")), Err("the client left".into())],
        };
        StreamedBody { chunks: futures_util::stream::iter(parts).boxed_local(), len }
    }

    async fn read(mut r: UpstreamResponse) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = r.body.chunk().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn streamed_bodies_go_out_framed_on_both_transports() {
        for inline_h1 in [true, false] {
            let (c, uri) = client(echo_server().await, inline_h1);
            let req = StreamedRequest { method: Method::POST, uri: &uri, headers: &[], body: body(Some(11), false) };
            let got = read(c.send_streamed(req).await.unwrap()).await;
            assert_eq!(got, b"hello world", "inline_h1={inline_h1}");
            let req = StreamedRequest { method: Method::POST, uri: &uri, headers: &[], body: body(None, false) };
            let got = read(c.send_streamed(req).await.unwrap()).await;
            assert_eq!(got, b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n", "inline_h1={inline_h1}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_reads_none_of_the_source() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        for inline_h1 in [true, false] {
            let (c, uri) = client(port, inline_h1);
            let touched = std::rc::Rc::new(std::cell::Cell::new(false));
            let t = touched.clone();
            let chunks = futures_util::stream::once(async move {
                t.set(true);
                Ok(Bytes::from_static(b"x"))
            })
            .boxed_local();
            let req = StreamedRequest {
                method: Method::POST,
                uri: &uri,
                headers: &[],
                body: StreamedBody { chunks, len: Some(1) },
            };
            assert!(matches!(c.send_streamed(req).await, Err(SendError::Connect(_))), "inline_h1={inline_h1}");
            assert!(!touched.get(), "inline_h1={inline_h1}: the source was read for a request that never connected");
        }
    }

    #[tokio::test]
    async fn a_failing_or_short_source_fails_the_request() {
        for inline_h1 in [true, false] {
            let (c, uri) = client(echo_server().await, inline_h1);
            let req = StreamedRequest { method: Method::POST, uri: &uri, headers: &[], body: body(Some(11), true) };
            assert!(c.send_streamed(req).await.is_err(), "inline_h1={inline_h1}");
            let req = StreamedRequest { method: Method::POST, uri: &uri, headers: &[], body: body(None, true) };
            assert!(c.send_streamed(req).await.is_err(), "inline_h1={inline_h1}");
        }
        // A declared length the source does not keep (inline client: refused before the answer).
        let (c, uri) = client(echo_server().await, true);
        let req = StreamedRequest { method: Method::POST, uri: &uri, headers: &[], body: body(Some(40), false) };
        assert!(c.send_streamed(req).await.is_err());
    }
}
