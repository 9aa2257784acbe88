//! Ingress: the request id, and the body under its size limit. What the
//! gateway reads from the body is `crate::peek`.

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderName};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::endpoint::RequestId;
use crate::error::GatewayError;

/// Longest client-supplied `x-request-id` that is echoed; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// A constant name: `get("x-request-id")` would parse and copy it per request.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client's `x-request-id` if it is sane, else a fresh one.
pub fn request_id(headers: &HeaderMap) -> RequestId {
    if let Some(v) = headers.get(X_REQUEST_ID)
        && let Ok(s) = v.to_str()
        && !s.is_empty()
        && s.len() <= MAX_REQUEST_ID
        && s.bytes().all(|b| b.is_ascii_graphic())
    {
        return RequestId::from_bytes(Bytes::copy_from_slice(s.as_bytes()));
    }
    new_request_id()
}

/// `req_` and 32 random lowercase hex digits. Written two digits per
/// random byte: `format!` with two `{:016x}` cost ~1.4k instructions per
/// request, and a digit at a time from a u128 left `request_id` ~470 of
/// its own, ~270 as a `String` (callgrind, docs/performance.md, ninth
/// session); held as shared `Bytes` since the tenth.
pub fn new_request_id() -> RequestId {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = *b"req_00000000000000000000000000000000";
    let random = [fastrand::u64(..).to_le_bytes(), fastrand::u64(..).to_le_bytes()];
    for (pair, byte) in id[4..].chunks_exact_mut(2).zip(random.iter().flatten()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    // One allocation that holds the bytes and the count of their sharers.
    RequestId::from_bytes(Bytes::from_owner(id))
}

/// Read the whole body, refusing it with 413 as soon as it passes `limit`
/// (at once from `Content-Length` when the client sent one), and with 408
/// when it has not all arrived within `timeout`: a client that sends a
/// head and then trickles (or never finishes) its body must not hold a
/// worker's request slot, and its buffer, for ever.
pub async fn read_body(
    headers: &HeaderMap,
    payload: Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, GatewayError> {
    let received = std::cell::Cell::new(0u64);
    // The clock is read only when the body is not all here already (it
    // mostly comes with the head: src/deadline.rs).
    let by = || tokio::time::Instant::now() + timeout;
    match crate::deadline::within(read_within(headers, payload, limit, &received), by).await {
        Ok(r) => r,
        Err(_) => Err(GatewayError::BodyTimeout { ms: timeout.as_millis() as u64, received: received.get() }),
    }
}

async fn read_within(
    headers: &HeaderMap,
    mut payload: Payload,
    limit: usize,
    received: &std::cell::Cell<u64>,
) -> Result<Bytes, GatewayError> {
    let declared = headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        return Err(GatewayError::PayloadTooLarge { size: len, limit, setting: "server.max_body_bytes" });
    }
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut size: usize = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| GatewayError::invalid(format!("Could not read the request body: {e}"), None))?;
        size += chunk.len();
        received.set(size as u64);
        if size > limit {
            return Err(GatewayError::PayloadTooLarge { size: size as u64, limit, setting: "server.max_body_bytes" });
        }
        // Most bodies arrive in one chunk: keep it as is, copy only when a
        // second chunk shows up.
        match (&mut first, &mut buf) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(declared.map_or(f.len() + chunk.len(), |d| d as usize));
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                buf = Some(b);
                first = None;
            }
            (_, Some(b)) => b.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, buf) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn fresh_request_ids_are_req_and_32_hex_digits() {
        let a = super::new_request_id();
        let b = super::new_request_id();
        assert_ne!(a, b);
        for id in [a, b] {
            let hex = id.strip_prefix("req_").expect("prefix");
            assert_eq!(hex.len(), 32, "{id}");
            assert!(hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{id}");
        }
    }
}
