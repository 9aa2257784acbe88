//! The inline HTTP/1.1 client against scripted servers on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::conn::{MAX_WINDOW, MIN_WINDOW};
use super::*;

/// A server that answers each request on a connection with the next
/// scripted reply (written in pieces of `piece` bytes), counting accepts.
async fn server(replies: Vec<&'static [u8]>, piece: usize) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let a = accepts.clone();
    tokio::spawn(async move {
        let mut next = 0;
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            a.fetch_add(1, Ordering::SeqCst);
            loop {
                // Read one request head (+ body by content-length).
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let cl: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + cl {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let Some(reply) = replies.get(next) else { return };
                next += 1;
                if reply.is_empty() {
                    // Scripted: close without answering.
                    break;
                }
                for p in reply.chunks(piece.max(1)) {
                    if s.write_all(p).await.is_err() {
                        return;
                    }
                    s.flush().await.ok();
                    tokio::task::yield_now().await;
                }
                if head.contains("x-close-after") {
                    break;
                }
            }
        }
    });
    (port, accepts)
}

fn pool(port: u16) -> H1Pool {
    let stats = Arc::new(PoolStats::new("t"));
    let target = H1Target { authority: format!("127.0.0.1:{port}"), host: "127.0.0.1".into(), port };
    H1Pool::new(target, stats, 8, Duration::from_secs(90), Duration::from_secs(1))
}

static TEST_HEADER: std::sync::LazyLock<Vec<(HeaderName, HeaderValue)>> =
    std::sync::LazyLock::new(|| vec![(HeaderName::from_static("x-test"), HeaderValue::from_static("1"))]);
static CLOSE_AFTER: std::sync::LazyLock<Vec<(HeaderName, HeaderValue)>> =
    std::sync::LazyLock::new(|| vec![(HeaderName::from_static("x-close-after"), HeaderValue::from_static("1"))]);

fn post(body: &'static [u8]) -> H1Request<'static> {
    H1Request { method: "POST", path: "/v1/chat/completions", headers: &TEST_HEADER, body }
}

async fn read_all(b: &mut H1Body) -> Result<Vec<u8>, H1Error> {
    let mut out = Vec::new();
    while let Some(c) = b.chunk().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

const LEN_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
const CHUNKED_REPLY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n7\r\ndata: 1\r\n9;ext=x\r\n\n\ndata: 2\r\n2\r\n\n\n\r\n0\r\nx-trailer: t\r\n\r\n";

#[tokio::test]
async fn length_body_and_keep_alive_reuse() {
    let (port, accepts) = server(vec![LEN_REPLY, LEN_REPLY, LEN_REPLY], 1 << 20).await;
    let p = pool(port);
    for _ in 0..3 {
        let mut r = p.send(&post(b"{}")).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(!r.event_stream);
        assert_eq!(read_all(&mut r.body).await.unwrap(), b"{\"ok\":true}");
    }
    assert_eq!(accepts.load(Ordering::SeqCst), 1, "one connection, reused");
    assert_eq!(p.idle_connections(), 1);
}

#[tokio::test]
async fn chunked_body_at_every_split() {
    for piece in [1, 2, 3, 5, 7, 64, 1 << 20] {
        let (port, _) = server(vec![CHUNKED_REPLY], piece).await;
        let mut r = pool(port).send(&post(b"{}")).await.unwrap();
        assert!(r.event_stream);
        assert_eq!(read_all(&mut r.body).await.unwrap(), b"data: 1\n\ndata: 2\n\n", "piece {piece}");
    }
}

/// Chunks that one read brought come out as one piece (one pass through
/// the relay, one chunk to the client), not one piece each; a bad chunk
/// after good ones is still reported, after their data.
#[tokio::test]
async fn chunks_already_read_come_out_joined() {
    let (port, _) = server(vec![CHUNKED_REPLY], 1 << 20).await;
    let mut r = pool(port).send(&post(b"{}")).await.unwrap();
    let mut pieces = Vec::new();
    while let Some(c) = r.body.chunk().await {
        pieces.push(c.unwrap());
    }
    assert_eq!(pieces, vec![bytes::Bytes::from_static(b"data: 1\n\ndata: 2\n\n")]);

    const BAD_AFTER_GOOD: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\nzz\r\n";
    let (port, _) = server(vec![BAD_AFTER_GOOD], 1 << 20).await;
    let mut r = pool(port).send(&post(b"{}")).await.unwrap();
    assert_eq!(&r.body.chunk().await.unwrap().unwrap()[..], b"abcde");
    assert!(matches!(r.body.chunk().await, Some(Err(H1Error::Invalid(_)))));
}

#[tokio::test]
async fn close_delimited_body_is_not_reused() {
    let (port, accepts) =
        server(vec![b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it", LEN_REPLY], 1 << 20).await;
    let p = pool(port);
    // The server keeps the socket open after a close-delimited reply only
    // until it has written it; read to EOF.
    let mut r = p.send(&H1Request { headers: &CLOSE_AFTER, ..post(b"{}") }).await.unwrap();
    assert_eq!(read_all(&mut r.body).await.unwrap(), b"all of it");
    assert_eq!(p.idle_connections(), 0);
    let mut r = p.send(&post(b"{}")).await.unwrap();
    assert_eq!(read_all(&mut r.body).await.unwrap(), b"{\"ok\":true}");
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_the_server_may_have_read_is_never_sent_twice() {
    // The first connection answers once, then reads the second request and
    // closes without answering. That request was written, so the upstream
    // may have received it (and be billing for it): an error for the
    // attempt loop to judge, not a silent second call.
    let (port, accepts) = server(vec![LEN_REPLY, b"", LEN_REPLY], 1 << 20).await;
    let p = pool(port);
    let mut r = p.send(&post(b"{}")).await.unwrap();
    read_all(&mut r.body).await.unwrap();
    let e = p.send(&post(b"{}")).await.err().unwrap();
    assert!(matches!(e, H1Error::Closed), "{e}");
    assert_eq!(accepts.load(Ordering::SeqCst), 1, "no second connection, no second request");
    assert_eq!(p.inner.stats.resends_total(), 0);
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_or_wrote_on_is_not_reused() {
    // The server answers and closes (FIN) while the connection idles in
    // the pool: the next request goes out on a fresh connection, no re-send.
    let (port, accepts) = server(vec![LEN_REPLY, LEN_REPLY], 1 << 20).await;
    let p = pool(port);
    let mut r = p.send(&H1Request { headers: &CLOSE_AFTER, ..post(b"{}") }).await.unwrap();
    read_all(&mut r.body).await.unwrap();
    assert_eq!(p.idle_connections(), 1, "the reply did not say close: pooled");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut r = p.send(&post(b"{}")).await.unwrap();
    assert_eq!(read_all(&mut r.body).await.unwrap(), b"{\"ok\":true}");
    assert_eq!(r.resends, 0);
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
    // A body longer than its content-length: the excess (here a whole
    // second response) arrives a moment after the body ended. Read as the
    // next request's answer, it would give one client another's response.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let a = accepts.clone();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let first = a.fetch_add(1, Ordering::SeqCst) == 0;
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(LEN_REPLY).await.unwrap();
            if first {
                tokio::time::sleep(Duration::from_millis(20)).await;
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nSMUGGLE").await.unwrap();
            }
            kept.push(s);
        }
    });
    let p = pool(port);
    let mut r = p.send(&post(b"{}")).await.unwrap();
    assert_eq!(read_all(&mut r.body).await.unwrap(), b"{\"ok\":true}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut r = p.send(&post(b"{}")).await.unwrap();
    assert_eq!(read_all(&mut r.body).await.unwrap(), b"{\"ok\":true}", "not the smuggled answer");
    assert_eq!(accepts.load(Ordering::SeqCst), 2, "the connection with unread bytes was dropped");
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_not_pooled() {
    let (port, _) =
        server(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nx-close-after: 1\r\n\r\nonly this"], 1 << 20).await;
    let p = pool(port);
    let mut r = p.send(&H1Request { headers: &CLOSE_AFTER, ..post(b"{}") }).await.unwrap();
    assert!(matches!(read_all(&mut r.body).await, Err(H1Error::Closed)));
    assert_eq!(p.idle_connections(), 0);
}

#[tokio::test]
async fn no_body_statuses_interim_responses_and_garbage() {
    let (port, _) = server(vec![b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"], 1 << 20).await;
    let mut r = pool(port).send(&post(b"{}")).await.unwrap();
    assert_eq!(r.status, 204);
    assert!(r.body.chunk().await.is_none());

    let (port, _) = server(vec![b"NOT HTTP AT ALL\r\n\r\n"], 1 << 20).await;
    assert!(matches!(pool(port).send(&post(b"{}")).await, Err(H1Error::Invalid(_))));

    let (port, _) = server(vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"], 1 << 20).await;
    let mut r = pool(port).send(&post(b"{}")).await.unwrap();
    assert!(matches!(r.body.chunk().await, Some(Err(H1Error::Invalid(_)))));

    let (port, _) = server(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"], 1 << 20).await;
    assert!(matches!(pool(port).send(&post(b"{}")).await, Err(H1Error::Invalid(_))));
}

#[tokio::test]
async fn retry_after_and_large_bodies() {
    let (port, _) =
        server(vec![b"HTTP/1.1 429 Too Many\r\nretry-after: 7\r\ncontent-length: 2\r\n\r\n{}"], 1 << 20).await;
    let r = pool(port).send(&post(b"{}")).await.unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.retry_after, Some(Ok(std::time::Duration::from_secs(7))));

    // A body larger than one write goes out whole.
    static BIG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| vec![b'x'; 200_000]);
    let (port, _) = server(vec![LEN_REPLY], 1 << 20).await;
    let mut r = pool(port).send(&H1Request { body: &BIG, ..post(b"") }).await.unwrap();
    assert_eq!(read_all(&mut r.body).await.unwrap(), b"{\"ok\":true}");
}

#[tokio::test]
async fn dropping_a_body_closes_its_connection() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut tmp = [0u8; 4096];
        let _ = s.read(&mut tmp).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n").await.unwrap();
        // Wait for the client to go away: read returns 0 (EOF).
        let n = s.read(&mut tmp).await.unwrap_or(0);
        let _ = tx.send(n);
    });
    let p = pool(port);
    let mut r = p.send(&post(b"{}")).await.unwrap();
    assert_eq!(&r.body.chunk().await.unwrap().unwrap()[..], b"hello");
    drop(r);
    assert_eq!(rx.await.unwrap(), 0, "the server saw the connection close");
    assert_eq!(p.idle_connections(), 0);
}

#[tokio::test]
async fn a_stopped_body_tells_the_server_and_still_reads_what_it_sent() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut tmp = [0u8; 4096];
        let _ = s.read(&mut tmp).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n").await.unwrap();
        // Told to stop (EOF on our reading half): write what was in hand,
        // then close, as a server does for a client that left.
        let n = s.read(&mut tmp).await.unwrap_or(1);
        assert_eq!(n, 0, "the client half-closed");
        s.write_all(b"5\r\nworld\r\n").await.unwrap();
    });
    let p = pool(port);
    let mut r = p.send(&post(b"{}")).await.unwrap();
    assert_eq!(&r.body.chunk().await.unwrap().unwrap()[..], b"hello");
    r.body.stopper().stop();
    // What the server sent after hearing is still read, then its close.
    assert_eq!(&r.body.chunk().await.unwrap().unwrap()[..], b"world");
    assert!(r.body.chunk().await.unwrap().is_err(), "cut off: the body never ended");
    drop(r);
    assert_eq!(p.idle_connections(), 0, "a half-closed connection is not reused");
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = pool(port).send(&post(b"{}")).await.err().unwrap();
    assert!(matches!(e, H1Error::Connect(_)), "{e}");
}

/// `len` bytes of body in one length-delimited reply.
fn big_reply(len: usize, chunked: bool) -> &'static [u8] {
    let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut r = Vec::new();
    if chunked {
        r.extend_from_slice(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        for c in body.chunks(10_000) {
            r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            r.extend_from_slice(c);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
    } else {
        r.extend_from_slice(format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").as_bytes());
        r.extend_from_slice(&body);
    }
    Vec::leak(r)
}

#[tokio::test]
async fn bodies_larger_than_the_read_window_grow_it_and_pooled_connections_keep_no_buffer() {
    for chunked in [false, true] {
        let len = 300_000;
        let (port, accepts) = server(vec![big_reply(len, chunked), LEN_REPLY], 1 << 20).await;
        let p = pool(port);
        let mut r = p.send(&post(b"{}")).await.unwrap();
        let mut out = Vec::new();
        let mut widest = 0;
        while let Some(c) = r.body.chunk().await {
            out.extend_from_slice(&c.unwrap());
            if let Some(conn) = &r.body.conn {
                widest = widest.max(conn.window);
            }
        }
        assert_eq!(out.len(), len, "chunked {chunked}");
        assert!(out.iter().enumerate().all(|(i, &b)| b == b'a' + (i % 26) as u8));
        assert!(widest > MIN_WINDOW && widest <= MAX_WINDOW, "the window grew: {widest}");
        drop(r);
        // Back in the pool with no buffer: a pooled connection costs no read memory.
        assert_eq!(p.idle_connections(), 1);
        assert_eq!(p.inner.idle.borrow()[0].conn.buf.capacity(), 0);
        // Reused for a small answer, whose reads shrink the window again.
        let mut r = p.send(&post(b"{}")).await.unwrap();
        assert_eq!(read_all(&mut r.body).await.unwrap(), b"{\"ok\":true}");
        assert_eq!(accepts.load(Ordering::SeqCst), 1);
        assert!(p.inner.idle.borrow()[0].conn.window < widest);
    }
}

#[tokio::test]
async fn a_stream_waiting_for_its_next_event_holds_no_read_buffer() {
    // At the least window (reads through the worker's scratch) and at a
    // grown one (reads straight into a buffer of the window's size).
    for window in [MIN_WINDOW, 4 * MIN_WINDOW] {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut tmp = [0u8; 4096];
            let _ = s.read(&mut tmp).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            s.write_all(b"9\r\ndata: 1\n\n\r\n").await.unwrap();
            let _ = go_rx.await;
            s.write_all(b"9\r\ndata: 2\n\n\r\n0\r\n\r\n").await.unwrap();
            let _ = s.read(&mut tmp).await;
        });
        let p = pool(port);
        let mut r = p.send(&post(b"{}")).await.unwrap();
        let first = r.body.chunk().await.unwrap().unwrap();
        assert_eq!(&first[..], b"data: 1\n\n");
        r.body.conn.as_mut().unwrap().window = window;
        // Waiting for the next event: the buffer the first one was read into is
        // let go (the `Bytes` handed out keeps its own share).
        assert!(tokio::time::timeout(Duration::from_millis(50), r.body.chunk()).await.is_err());
        assert_eq!(r.body.conn.as_ref().unwrap().buf.capacity(), 0, "window {window}");
        assert_eq!(&first[..], b"data: 1\n\n");
        go_tx.send(()).unwrap();
        assert_eq!(read_all(&mut r.body).await.unwrap(), b"data: 2\n\n");
        assert_eq!(p.idle_connections(), 1);
    }
}

/// A connected pair: our side as a pool's [`Conn`], the server's as a
/// blocking std socket the test writes on.
async fn conn_pair() -> (Conn, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let io = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().unwrap();
    (Conn::new(io, conn::Counted(Arc::new(PoolStats::new("t")))), server)
}

/// Each case below runs without an `.await` between the server's write and
/// the check, so the runtime's reactor cannot have seen the new bytes: what
/// tokio knows is only what the last read told it.
#[tokio::test]
async fn a_drained_read_leaves_tokio_knowing_the_socket_is_empty() {
    use std::io::Write;
    for drain in [true, false] {
        let (mut conn, mut server) = conn_pair().await;
        server.write_all(LEN_REPLY).unwrap();
        assert_eq!(conn.fill(drain).await.unwrap(), LEN_REPLY.len());
        server.write_all(b"x").unwrap();
        let mut probe = [0u8; 1];
        let seen = conn.io.try_read(&mut probe);
        if drain {
            // The short read marked the socket drained: no read is tried.
            assert_eq!(seen.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        } else {
            // Readiness kept: the read goes to the socket and finds the byte.
            assert_eq!(seen.unwrap(), 1);
        }
    }
}

#[tokio::test]
async fn an_idle_check_that_asks_the_kernel_sees_what_the_reactor_has_not() {
    use std::io::Write;
    let (mut conn, mut server) = conn_pair().await;
    server.write_all(LEN_REPLY).unwrap();
    conn.fill(true).await.unwrap();
    assert!(quiet(&conn.io, true), "nothing was sent after the answer");
    // Stray bytes, then a close: both seen by the kernel's peek at once.
    server.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
    assert!(!quiet(&conn.io, true));
    let (conn, server) = conn_pair().await;
    drop(server);
    let mut closed = false;
    for _ in 0..1000 {
        if !quiet(&conn.io, true) {
            closed = true;
            break;
        }
        std::thread::yield_now();
    }
    assert!(closed, "the server's close was not seen");
}

/// A long body read in one task, with data always waiting: tokio's
/// cooperative budget runs out mid-body and answers `Pending` with data
/// there. The read must then yield to the executor (an earlier version
/// looped on `readable()`, ready at once, and spun forever). Run on its own
/// thread, so a spin fails the test instead of hanging it.
#[test]
fn a_long_body_read_in_one_task_yields_when_the_budget_runs_out() {
    use std::io::Write;
    let len = 16 << 20;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = [0u8; 1024];
        let _ = std::io::Read::read(&mut s, &mut head);
        let _ = s.write_all(big_reply(len, false));
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = rt.block_on(async {
            let p = pool(port);
            let mut r = p.send(&post(b"{}")).await.unwrap();
            read_all(&mut r.body).await.map(|b| b.len())
        });
        let _ = done_tx.send(got);
    });
    let got = done_rx.recv_timeout(Duration::from_secs(60)).expect("the body read spun or hung");
    assert_eq!(got.unwrap(), len);
}
