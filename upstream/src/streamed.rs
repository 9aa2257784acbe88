//! Request bodies sent as they are produced: an upload relayed from the
//! client (or read back from disk) is never held whole in memory.
//!
//! Both transports take the same [`StreamedBody`]: the inline HTTP/1.1
//! client writes each chunk to the socket as it comes (length-delimited
//! when the length is known, else chunked); hyper reads it through a
//! bounded channel that this task fills while hyper sends.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::{Either as Raced, select};
use futures_util::stream::LocalBoxStream;
use http::{HeaderName, HeaderValue, Method, Uri};
use http_body_util::Either;
use http_body_util::channel::Channel;

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

/// Why a streamed body stopped: the error hyper's channel body carries.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyAbort(pub String);

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
                let (mut tx, channel) = Channel::new(2);
                let mut r = http::Request::new(Either::Right(channel));
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
                    while let Some(c) = chunks.next().await {
                        match c {
                            Ok(b) => {
                                if tx.send_data(b).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tx.abort(BodyAbort(e));
                                return;
                            }
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
