//! A request whose body is streamed (an upload): the head goes out, then
//! each chunk as its source yields it. Nothing of the body is kept, so it
//! cannot be sent twice: only a head that never left (a stale pooled
//! connection refusing the very first write) is sent again, on a fresh
//! connection, before the body's source is touched.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue};

use super::head::{BodyFraming, encode_framed_head};
use super::{H1Error, H1Pool, H1Request, H1Response, MAX_RESENDS, read_head, write_counted};
use crate::StreamedBody;

impl H1Pool {
    /// Send `body` after a head with `method`, `path` and `headers`, then
    /// read the response head. A failing source (an `Err` chunk) or one
    /// whose length differs from the declared one drops the connection
    /// mid-body: the upstream sees a cut request, never a short whole one.
    pub async fn send_streamed(
        &self,
        method: &str,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        mut body: StreamedBody,
    ) -> Result<H1Response, H1Error> {
        let framing = body.len.map_or(BodyFraming::Chunked, BodyFraming::Length);
        let req = H1Request { method, path, headers, body: &[] };
        let head = encode_framed_head(&self.inner.target, &req, framing);
        let mut resends = 0;
        let mut conn = loop {
            let (mut conn, reused) = match self.checkout() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            let mut written = 0usize;
            match write_counted(&mut conn, &head, &mut written).await {
                Ok(()) => break conn,
                Err(_) if written == 0 && reused && resends < MAX_RESENDS => {
                    resends += 1;
                    self.inner.stats.resent();
                }
                Err(e) => return Err(H1Error::Io(e)),
            }
        };
        let mut sent = 0u64;
        let mut written = 0usize;
        while let Some(chunk) = body.chunks.next().await {
            let chunk = chunk.map_err(H1Error::Body)?;
            if chunk.is_empty() {
                continue;
            }
            sent += chunk.len() as u64;
            if let Some(l) = body.len.filter(|l| sent > *l) {
                return Err(H1Error::Body(format!("the body is longer than its declared {l} bytes")));
            }
            match framing {
                BodyFraming::Chunked => {
                    let line = Bytes::from(format!("{:x}\r\n", chunk.len()));
                    write_counted(&mut conn, &line, &mut written).await.map_err(H1Error::Io)?;
                    write_counted(&mut conn, &chunk, &mut written).await.map_err(H1Error::Io)?;
                    write_counted(&mut conn, b"\r\n", &mut written).await.map_err(H1Error::Io)?;
                }
                BodyFraming::Length(_) | BodyFraming::None => {
                    write_counted(&mut conn, &chunk, &mut written).await.map_err(H1Error::Io)?;
                }
            }
        }
        match (framing, body.len) {
            (BodyFraming::Chunked, _) => {
                write_counted(&mut conn, b"0\r\n\r\n", &mut written).await.map_err(H1Error::Io)?
            }
            (_, Some(l)) if sent != l => {
                return Err(H1Error::Body(format!("the body ended after {sent} of its declared {l} bytes")));
            }
            _ => {}
        }
        let mut r = read_head(conn, self.inner.clone(), true).await?;
        r.resends = resends;
        Ok(r)
    }
}
