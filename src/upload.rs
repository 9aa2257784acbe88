//! An upload (a `multipart/form-data` request body: audio to transcribe,
//! a file) on its way upstream, never whole in memory. It is either
//! *live* — the bytes read so far, then the rest of the client's body as
//! it arrives, which can be sent once — or *spooled* to a temporary file
//! (when the file part came before the `model` field that routes it), which
//! can be read again for a fallback. The temporary file is removed when the
//! last reader of the upload is dropped, however the request ends.
//!
//! The pipeline builds an upload from the client's body
//! (`request::upload::receive`); the providers read it with [`Upload::body`].

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::LocalBoxStream;
use http::HeaderValue;
use sluice_upstream::StreamedBody;
use tempfile::TempPath;

/// Why an upload's body stopped while it was being sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It grew past the limit (`limit`, the setting's name).
    TooLarge { size: u64, limit: u64, setting: &'static str },
    /// The client sent nothing for the read timeout.
    Timeout { ms: u64, received: u64 },
    /// The client's body could not be read.
    Read(String),
}

impl Failure {
    /// The client's side of a failed upload, as the error to answer.
    pub fn error(self) -> crate::error::GatewayError {
        use crate::error::GatewayError;
        match self {
            Failure::TooLarge { size, limit, setting } => {
                GatewayError::PayloadTooLarge { size, limit: usize::try_from(limit).unwrap_or(usize::MAX), setting }
            }
            Failure::Timeout { ms, received } => GatewayError::BodyTimeout { ms, received },
            Failure::Read(e) => GatewayError::invalid(format!("Could not read the request body: {e}"), None),
        }
    }
}

/// Where the body's bytes come from.
pub enum Source {
    /// What was read before routing, then the rest of the client's body.
    Live { prefix: Bytes, rest: LocalBoxStream<'static, Result<Bytes, String>> },
    /// The whole body, on disk.
    Spool { path: Rc<TempPath>, len: u64 },
}

pub struct Upload {
    /// The client's `content-type` (with its boundary), sent on unchanged.
    pub content_type: HeaderValue,
    /// The `model` field's value and its byte range in the body.
    pub model: Option<(String, Range<u64>)>,
    /// The body's length, when known (declared by the client, or spooled).
    pub len: Option<u64>,
    /// Shared with a live body handed out: taken from here only when the
    /// body is first read, so an attempt that failed before sending any of
    /// it (a refused connection) leaves it for the next one.
    source: Rc<RefCell<Option<Source>>>,
    /// Set by a live body's reader when the client's side failed, so the
    /// failed upstream call is reported for what it was.
    pub failure: Rc<Cell<Option<Failure>>>,
}

impl Upload {
    pub fn new(
        content_type: HeaderValue,
        source: Source,
        len: Option<u64>,
        failure: Rc<Cell<Option<Failure>>>,
    ) -> Upload {
        let len = match &source {
            Source::Spool { len, .. } => Some(*len),
            Source::Live { .. } => len,
        };
        Upload { content_type, model: None, len, source: Rc::new(RefCell::new(Some(source))), failure }
    }

    /// Can the body (still) be sent: spooled, or live and not yet taken?
    pub fn can_send(&self) -> bool {
        self.source.borrow().is_some()
    }

    /// The body to send, with the `model` field's value replaced by
    /// `rename` when given. A live body is read once: `None` once a body
    /// handed out has begun to be read.
    pub fn body(&self, rename: Option<&str>) -> Option<StreamedBody> {
        let (chunks, len): (LocalBoxStream<'static, Result<Bytes, String>>, Option<u64>) = match &*self.source.borrow()
        {
            None => return None,
            Some(Source::Spool { path, len }) => (read_file(path.clone()), Some(*len)),
            Some(Source::Live { .. }) => {
                let slot = self.source.clone();
                // Lazy: the source leaves the slot at the first read, not here.
                let taken = futures_util::stream::once(async move { slot.borrow_mut().take() });
                let chunks = taken.flat_map(|source| match source {
                    Some(Source::Live { prefix, rest }) => {
                        futures_util::stream::once(async move { Ok(prefix) }).chain(rest).boxed_local()
                    }
                    _ => futures_util::stream::once(async { Err("the upload was already sent".to_string()) })
                        .boxed_local(),
                });
                (chunks.boxed_local(), self.len)
            }
        };
        let (chunks, len) = match (rename, &self.model) {
            (Some(name), Some((old, span))) if name != old => {
                let len = len.map(|l| l - (span.end - span.start) + name.len() as u64);
                (splice(chunks, span.clone(), Bytes::copy_from_slice(name.as_bytes())), len)
            }
            _ => (chunks, len),
        };
        Some(StreamedBody { chunks, len })
    }
}

/// Chunk size when reading a spooled upload back.
const READ_CHUNK: usize = 64 * 1024;

/// A spooled body, read back chunk by chunk; the file stays while this reads.
fn read_file(path: Rc<TempPath>) -> LocalBoxStream<'static, Result<Bytes, String>> {
    futures_util::stream::unfold((path, None::<tokio::fs::File>, false), |(path, file, done)| async move {
        use tokio::io::AsyncReadExt;
        if done {
            return None;
        }
        let mut file = match file {
            Some(f) => f,
            None => match tokio::fs::File::open(&**path).await {
                Ok(f) => f,
                Err(e) => return Some((Err(format!("the spooled upload cannot be read: {e}")), (path, None, true))),
            },
        };
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        match file.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), (path, Some(file), false))),
            Err(e) => Some((Err(format!("the spooled upload cannot be read: {e}")), (path, None, true))),
        }
    })
    .boxed_local()
}

/// `chunks` with the bytes at `span` (body offsets) replaced by `with`.
pub fn splice(
    chunks: LocalBoxStream<'static, Result<Bytes, String>>,
    span: Range<u64>,
    with: Bytes,
) -> LocalBoxStream<'static, Result<Bytes, String>> {
    let mut pos = 0u64;
    let mut with = Some(with);
    chunks
        .map(move |c| {
            let c = c?;
            let (start, end) = (pos, pos + c.len() as u64);
            pos = end;
            if end <= span.start || start >= span.end {
                // Untouched; an empty span is inserted at its offset.
                if span.is_empty()
                    && span.start == start
                    && let Some(w) = with.take()
                {
                    let mut out = BytesMut::with_capacity(w.len() + c.len());
                    out.extend_from_slice(&w);
                    out.extend_from_slice(&c);
                    return Ok(out.freeze());
                }
                return Ok(c);
            }
            let cut_from = span.start.saturating_sub(start) as usize;
            let cut_to = (span.end.min(end) - start) as usize;
            let mut out = BytesMut::with_capacity(c.len() + with.as_ref().map_or(0, Bytes::len));
            out.extend_from_slice(&c[..cut_from]);
            if let Some(w) = with.take() {
                out.extend_from_slice(&w);
            }
            out.extend_from_slice(&c[cut_to..]);
            Ok(out.freeze())
        })
        .boxed_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_span_is_replaced_whatever_the_chunking() {
        let body = b"0123model=whisper;rest of it".to_vec();
        let span = 10..17;
        for step in 1..body.len() {
            let chunks: Vec<Result<Bytes, String>> = body.chunks(step).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            let out = splice(
                futures_util::stream::iter(chunks).boxed_local(),
                span.clone(),
                Bytes::from_static(b"whisper-1"),
            );
            let got: Vec<u8> = out.map(|c| c.unwrap().to_vec()).concat().await;
            assert_eq!(got, b"0123model=whisper-1;rest of it", "step {step}");
        }
    }
}
