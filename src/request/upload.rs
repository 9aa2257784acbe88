//! The ingress step of the multipart routes (`/v1/audio/transcriptions`,
//! `/v1/audio/translations`, and `POST /v1/files`): the client's body read
//! just far enough to route it, never whole into memory.
//!
//! The body is scanned as it arrives (`crate::multipart`). Where the
//! `model` field comes before any file part — as the OpenAI SDKs send it —
//! the bytes read so far are kept (a few hundred) and the rest is relayed
//! upstream as it arrives: the upload is *live*. Where the file comes
//! first, or the fields before `model` pass [`MAX_PREFIX`], the body is
//! written to a temporary file in `server.spool_dir` until it has all
//! arrived (at most `server.max_upload_bytes`), then sent from there: the
//! upload is *spooled*, and fallbacks can send it again. The temporary
//! file goes with the request, however it ends (a client that leaves
//! mid-upload drops the request's future, and the file with it).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::LocalBoxStream;
use tokio::io::AsyncWriteExt;

use crate::error::GatewayError;
use crate::multipart::{Part, Scanner};
use crate::upload::{Failure, Source, Upload};

/// The most bytes kept in memory while looking for `model`; past it, the
/// body is spooled to disk.
const MAX_PREFIX: usize = 256 * 1024;

/// The field read on the way (the rest pass through unread).
const FIELDS: &[&str] = &["model"];

/// Limits of one upload route.
#[derive(Clone)]
pub struct Limits {
    pub max_bytes: u64,
    /// The setting that sets `max_bytes`, for the 413's message.
    pub setting: &'static str,
    /// The longest wait for the body's next piece.
    pub idle: Duration,
    pub spool_dir: std::path::PathBuf,
}

/// The client's multipart body, read up to its `model` field when
/// `routed` (spooled if need be), else not at all: live from its start.
pub async fn receive(
    headers: &HeaderMap,
    payload: Payload,
    limits: &Limits,
    routed: bool,
) -> Result<Upload, GatewayError> {
    // actix speaks http 0.2, the upstream client http 1: same bytes.
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok())
        .unwrap_or_else(|| http::HeaderValue::from_static(""));
    let boundary = content_type.to_str().ok().and_then(Scanner::boundary).ok_or_else(|| {
        GatewayError::invalid("The request must be multipart/form-data with a boundary (an upload).", None)
    })?;
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<u64>().ok());
    if let Some(len) = declared.filter(|l| *l > limits.max_bytes) {
        return Err(too_large(len, limits));
    }
    let failure: Rc<Cell<Option<Failure>>> = Rc::default();
    let mut payload = payload;
    if !routed {
        let rest = live(payload, 0, limits.clone(), failure.clone());
        return Ok(Upload::new(content_type, Source::Live { prefix: Bytes::new(), rest }, declared, failure));
    }
    let mut scanner = Scanner::new(&boundary, FIELDS);
    let mut parts = Vec::new();
    let mut prefix = BytesMut::new();
    let mut model = None;
    // Did `model` come before any file part (then the rest can be relayed live)?
    let mut model_first = false;
    let mut file_seen = false;
    let mut spool: Option<(tokio::fs::File, tempfile::TempPath)> = None;
    let mut size = 0u64;
    loop {
        let chunk = match next(&mut payload, limits.idle, size).await? {
            Some(c) => c,
            None => break,
        };
        size += chunk.len() as u64;
        if size > limits.max_bytes {
            return Err(too_large(size, limits));
        }
        scanner.feed(&chunk, &mut parts).map_err(|e| malformed(&e.0))?;
        for p in parts.drain(..) {
            match p {
                Part::Field { name, value, span } if name == "model" => {
                    model_first = !file_seen;
                    model = Some((value, span));
                }
                Part::Field { .. } => {}
                Part::FileStart { .. } => file_seen = true,
                Part::FileEnd { .. } => {}
            }
        }
        match &mut spool {
            Some((f, _)) => f.write_all(&chunk).await.map_err(spool_error)?,
            None => {
                prefix.extend_from_slice(&chunk);
                if model.is_some() && model_first {
                    // Routable, and nothing large read yet: relay the rest as it comes.
                    metrics::counter!(crate::metrics::UPLOADS_TOTAL, "mode" => "live").increment(1);
                    let rest = live(payload, size, limits.clone(), failure.clone());
                    let mut u =
                        Upload::new(content_type, Source::Live { prefix: prefix.freeze(), rest }, declared, failure);
                    u.model = model;
                    return Ok(u);
                }
                if file_seen || prefix.len() > MAX_PREFIX {
                    let (f, path) = tempfile::Builder::new()
                        .prefix("sluice-upload-")
                        .tempfile_in(&limits.spool_dir)
                        .map_err(spool_error)?
                        .into_parts();
                    let mut f = tokio::fs::File::from_std(f);
                    f.write_all(&prefix).await.map_err(spool_error)?;
                    prefix = BytesMut::new();
                    spool = Some((f, path));
                }
            }
        }
    }
    scanner.finish().map_err(|e| malformed(&e.0))?;
    if model.is_none() {
        return Err(GatewayError::invalid("The upload has no `model` field: say which model to use.", Some("model")));
    }
    let source = match spool {
        Some((mut f, path)) => {
            f.flush().await.map_err(spool_error)?;
            metrics::counter!(crate::metrics::UPLOADS_TOTAL, "mode" => "spooled").increment(1);
            Source::Spool { path: Rc::new(path), len: size }
        }
        // The whole body was small and in memory (a field-only form).
        None => {
            metrics::counter!(crate::metrics::UPLOADS_TOTAL, "mode" => "live").increment(1);
            Source::Live { prefix: prefix.freeze(), rest: futures_util::stream::empty().boxed_local() }
        }
    };
    let mut u = Upload::new(content_type, source, Some(size), failure);
    u.model = model;
    Ok(u)
}

/// The client's next piece of body, within the idle wait.
async fn next(
    payload: &mut actix_web::dev::Payload,
    idle: Duration,
    received: u64,
) -> Result<Option<Bytes>, GatewayError> {
    match tokio::time::timeout(idle, payload.next()).await {
        Err(_) => Err(GatewayError::BodyTimeout { ms: idle.as_millis() as u64, received }),
        Ok(None) => Ok(None),
        Ok(Some(Ok(c))) => Ok(Some(c)),
        Ok(Some(Err(e))) => Err(GatewayError::invalid(format!("Could not read the request body: {e}"), None)),
    }
}

/// The rest of the client's body as it arrives, within the limit and the
/// idle wait; a failure is noted in `failure` (the upstream call fails with it).
fn live(
    payload: actix_web::dev::Payload,
    read: u64,
    limits: Limits,
    failure: Rc<Cell<Option<Failure>>>,
) -> LocalBoxStream<'static, Result<Bytes, String>> {
    futures_util::stream::unfold(Some((payload, read)), move |state| {
        let (limits, failure) = (limits.clone(), failure.clone());
        async move {
            let (mut payload, read) = state?;
            let fail = |f: Failure| {
                let text = format!("{f:?}");
                failure.set(Some(f));
                Some((Err(text), None))
            };
            match tokio::time::timeout(limits.idle, payload.next()).await {
                Err(_) => fail(Failure::Timeout { ms: limits.idle.as_millis() as u64, received: read }),
                Ok(None) => None,
                Ok(Some(Err(e))) => fail(Failure::Read(e.to_string())),
                Ok(Some(Ok(c))) => {
                    let read = read + c.len() as u64;
                    if read > limits.max_bytes {
                        return fail(Failure::TooLarge {
                            size: read,
                            limit: limits.max_bytes,
                            setting: limits.setting,
                        });
                    }
                    Some((Ok(c), Some((payload, read))))
                }
            }
        }
    })
    .boxed_local()
}

fn too_large(size: u64, limits: &Limits) -> GatewayError {
    GatewayError::PayloadTooLarge { size, limit: limits.max_bytes as usize, setting: limits.setting }
}

fn malformed(why: &str) -> GatewayError {
    GatewayError::invalid(format!("The multipart/form-data body is malformed: {why}."), None)
}

fn spool_error(e: std::io::Error) -> GatewayError {
    GatewayError::Internal { detail: format!("the upload could not be spooled to disk (`server.spool_dir`): {e}") }
}
