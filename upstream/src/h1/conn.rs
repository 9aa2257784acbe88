//! One connection of the inline HTTP/1.1 client: its socket, its read
//! buffer and the read window that sizes it.
//!
//! Read buffers (docs/performance.md, "Memory"): a connection holds no read
//! buffer while it waits for its upstream — a stream between two events, a
//! request before its first byte, a connection idle in the pool. A read
//! into an empty buffer goes through the worker's scratch while the
//! connection's read window is at its least (4 KiB), and only what came is
//! copied out; a larger window (doubling up to 64 KiB while reads fill it,
//! halving when they stay small) reads straight into a buffer of its size.
//! Data leaves as `Bytes` that share the buffer, so with 10,000 open
//! streams only the few being relayed at that moment hold one.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;

use crate::session::PoolStats;

/// Read window of a new connection, and the least it shrinks to: a typical
/// response head and small JSON body in one read.
pub(super) const MIN_WINDOW: usize = 4 * 1024;
/// Largest read window, reached by reads that keep filling it (large bodies).
pub(super) const MAX_WINDOW: usize = 64 * 1024;

thread_local! {
    /// The worker's buffer for reads while the window is at its least:
    /// one read of [`MIN_WINDOW`] here, then only what came is copied into
    /// the connection's buffer (docs/performance.md, "Fewer allocations,
    /// timers and checks per request").
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; MIN_WINDOW].into_boxed_slice());
}

/// Counts a connection as open until dropped.
pub(super) struct Counted(pub(super) Arc<PoolStats>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

pub(super) struct Conn {
    pub(super) io: TcpStream,
    /// Bytes read and not yet consumed. Empty, it owns no allocation across
    /// a wait (see [`Conn::fill`]).
    pub(super) buf: BytesMut,
    /// How much room the next read gets (`MIN_WINDOW..=MAX_WINDOW`).
    pub(super) window: usize,
    _counted: Counted,
}

impl Conn {
    pub(super) fn new(io: TcpStream, counted: Counted) -> Conn {
        Conn { io, buf: BytesMut::new(), window: MIN_WINDOW, _counted: counted }
    }

    /// Shut the writing half of the socket (the peer reads EOF); reading
    /// goes on. Immediate: a TCP shutdown does not wait.
    pub(super) fn shutdown_write(&mut self) {
        use tokio::io::AsyncWrite;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = std::pin::Pin::new(&mut self.io).poll_shutdown(&mut cx);
    }

    /// Read once more into `buf`; `Ok(0)` at EOF. With nothing pending, a
    /// read is tried at once (the answer is often there already); a
    /// connection waiting on a slow upstream owns no read buffer. While the
    /// window is at its least, a read into an empty `buf` goes through the
    /// worker's [`SCRATCH`] and only the bytes that came are copied out;
    /// otherwise the buffer is taken, sized by the window, once the socket
    /// is readable. A partial head, chunk line or frame stays in `buf`.
    /// `drain`: the read is likely an answer's last (a head, or a body of
    /// known length), so a short read should leave tokio knowing that the
    /// socket is empty.
    pub(super) async fn fill(&mut self, drain: bool) -> io::Result<usize> {
        if !self.buf.is_empty() {
            self.buf.reserve(self.window);
            let room = self.buf.capacity() - self.buf.len();
            let n = self.io.read_buf(&mut self.buf).await?;
            self.adapt(n, room);
            return Ok(n);
        }
        if drain {
            return self.fill_draining().await;
        }
        loop {
            // A stream's next event is often there already; with the
            // readiness kept (`try_read` does not clear it after a short
            // read), this read finds it without a round through the reactor.
            match self.try_read_empty() {
                Ok((n, _)) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io.readable().await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// One read into the empty `buf`, without waiting: through the scratch
    /// while the window is at its least (an answer's head and small body,
    /// a stream's event: a new block of the window's size for each, and
    /// another let go while waiting, took mimalloc's slow path on most
    /// answers), straight into a buffer of the window's size otherwise
    /// (let go again when the socket had nothing: no buffer is held over a
    /// wait). `(bytes read, room the read had)`.
    fn try_read_empty(&mut self) -> io::Result<(usize, usize)> {
        if self.window > MIN_WINDOW {
            self.buf.reserve(self.window);
            let room = self.buf.capacity() - self.buf.len();
            let n = match self.io.try_read_buf(&mut self.buf) {
                Ok(n) => n,
                Err(e) => {
                    self.buf = BytesMut::new();
                    return Err(e);
                }
            };
            self.adapt(n, room);
            return Ok((n, room));
        }
        let (io, buf) = (&self.io, &mut self.buf);
        let n = SCRATCH.with_borrow_mut(|scratch| {
            let n = io.try_read(&mut scratch[..])?;
            buf.extend_from_slice(&scratch[..n]);
            Ok::<_, io::Error>(n)
        })?;
        self.adapt(n, MIN_WINDOW);
        Ok((n, MIN_WINDOW))
    }

    /// [`Conn::fill`] through the socket's readiness: after a read that
    /// leaves room unused, it marks the socket drained (edge-triggered
    /// readiness comes back with new data), so the pool's check of this
    /// connection before its next request costs no system call. (A read
    /// that leaves the readiness set made that check read the socket to
    /// learn it was empty: one `recvfrom` per request under load.) Polled
    /// with the task's own waker, and `Pending` goes back to the executor:
    /// tokio's cooperative budget may answer `Pending` with data waiting,
    /// and only a yield renews it (a loop on `readable()`, which is ready
    /// at once then, would spin).
    async fn fill_draining(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| {
            loop {
                std::task::ready!(self.io.poll_read_ready(cx))?;
                match self.try_read_empty() {
                    Ok((n, room)) => {
                        if n > 0 && n < room {
                            // Short: the socket is empty now. Forget its
                            // readiness, as tokio's own `poll_read` does.
                            let _ =
                                self.io.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
                        }
                        return Poll::Ready(Ok(n));
                    }
                    // The readiness was stale; tokio cleared it: ask again.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        })
        .await
    }

    /// Grow the window while reads fill it; shrink it when they use little.
    fn adapt(&mut self, read: usize, room: usize) {
        if read >= room {
            self.window = (self.window * 2).min(MAX_WINDOW);
        } else if read < self.window / 4 {
            self.window = (self.window / 2).max(MIN_WINDOW);
        }
    }
}
