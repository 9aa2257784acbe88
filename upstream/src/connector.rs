//! A TCP connector that counts the connections it opens and closes, so the
//! pool stats in `/status` are measured, not guessed (hyper's pool exposes
//! none).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

use crate::session::PoolStats;

/// Wraps a connector; every connection it returns decrements the open count
/// when dropped.
#[derive(Clone)]
pub struct CountingConnector<C> {
    inner: C,
    stats: Arc<PoolStats>,
    timeout: Duration,
}

impl<C> CountingConnector<C> {
    pub fn new(inner: C, stats: Arc<PoolStats>, timeout: Duration) -> Self {
        CountingConnector { inner, stats, timeout }
    }
}

/// The connection (TCP, and TLS for https) was not up within the provider's
/// `connect_timeout_ms`. A type of its own so callers find it in the error's
/// source chain instead of matching message text.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out after {0:?}")]
pub struct ConnectTimeout(pub Duration);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<Uri> for CountingConnector<C>
where
    C: tower_service::Service<Uri> + Send + 'static,
    C::Response: Read + Write + Connection + Unpin + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = CountedIo<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let fut = self.inner.call(uri);
        let stats = self.stats.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(io)) => {
                    stats.connection_opened();
                    Ok(CountedIo { inner: io, stats })
                }
                Ok(Err(e)) => {
                    stats.connect_failed();
                    Err(e.into())
                }
                Err(_) => {
                    stats.connect_failed();
                    Err(Box::new(ConnectTimeout(timeout)) as BoxError)
                }
            }
        })
    }
}

/// A connection that tells its pool stats when it closes.
pub struct CountedIo<T> {
    inner: T,
    stats: Arc<PoolStats>,
}

impl<T> Drop for CountedIo<T> {
    fn drop(&mut self) {
        self.stats.connection_closed();
    }
}

impl<T: Connection> Connection for CountedIo<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

impl<T: Read + Unpin> Read for CountedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for CountedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}
