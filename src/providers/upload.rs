//! Audio uploads (`/v1/audio/transcriptions`, `/v1/audio/translations`) to
//! an OpenAI-compatible upstream: the client's multipart body relayed as
//! it arrives (or from its spool file), only the `model` field's value
//! renamed to the deployment's; the answer — JSON, or text for
//! `response_format` text, srt or vtt — read whole (it is small) with its
//! `usage` when it has one.

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Method, Uri};
use sluice_upstream::UpstreamClient;

use super::transport::{self, HttpUpstream, OutBody};
use super::{Call, Provider, Reply};
use crate::error::GatewayError;
use crate::upload::Upload;

pub async fn send(
    up: &HttpUpstream,
    p: &Provider,
    call: &Call<'_>,
    client: &UpstreamClient,
    uri: &Uri,
    u: &Upload,
) -> Result<Reply, GatewayError> {
    let body = u.body(Some(call.upstream_model)).ok_or_else(|| GatewayError::Internal {
        detail: "the upload was already relayed to another deployment".into(),
    })?;
    let mut headers = up.headers(call, false);
    headers.retain(|(n, _)| n != CONTENT_TYPE && n != ACCEPT);
    headers.push((CONTENT_TYPE, u.content_type.clone()));
    let sent = up.send_request(p, call.timeouts, client, Method::POST, uri, &headers, OutBody::Streamed(body)).await;
    // The client's side failing (too large, too slow, gone) cut the
    // upstream request: that, not the upstream, is what to answer.
    let resp = sent.map_err(|e| u.failure.take().map_or(e, crate::upload::Failure::error))?;
    let bytes = transport::read_body(p, &resp.timeouts, resp.body, p.max_response_bytes, false, resp.deadline).await?;
    drop(resp.permit);
    if !bytes.trim_ascii_start().starts_with(b"{") {
        // A transcript as text: no usage in it.
        return Ok(Reply::Complete { body: bytes, usage: None });
    }
    let usage_at = transport::check_answer(p, &bytes, up.secrets())?;
    let usage = crate::usage::from_checked(&bytes, usage_at).ok().flatten();
    Ok(Reply::Complete { body: bytes, usage })
}
