//! Response bodies: whole, cut short, or a paced SSE stream.
//!
//! One enum instead of boxed trait objects keeps the common case (a whole
//! JSON body) free of allocation and dynamic dispatch. A body that returns an
//! error makes hyper abort the connection mid-response, which is exactly how
//! the `cut` fault is produced.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::faults::{GARBAGE_EVENT, Gate};
use super::generate::StreamEvents;
use super::stats::{Stats, add, bump};

/// The error a body returns to make hyper drop the connection.
#[derive(Debug)]
pub(crate) struct Abort;

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock fault: connection cut")
    }
}

impl std::error::Error for Abort {}

pub(crate) enum MockBody {
    /// A whole body; `None` once sent.
    Full(Option<Bytes>),
    /// `cut` on a non-stream answer: `part`, then an abort, while the size
    /// hint (and so Content-Length) announces `full_len`.
    Cut {
        part: Option<Bytes>,
        full_len: u64,
        flushed: bool,
    },
    Stream(Box<EventStream>),
    /// A hostile answer, written past hyper (see `hostile`).
    Raw(Box<super::hostile::Script>),
}

impl MockBody {
    pub fn full(b: impl Into<Bytes>) -> MockBody {
        MockBody::Full(Some(b.into()))
    }
}

/// Returns `Pending` once, waking at once, so that hyper flushes what it has
/// buffered before the next poll aborts. Without it, hyper can meet the
/// abort in the same write loop and drop the buffered bytes unsent.
fn flush_barrier(flushed: &mut bool, cx: &mut Context<'_>) -> bool {
    if *flushed {
        return false;
    }
    *flushed = true;
    cx.waker().wake_by_ref();
    true
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Abort;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Abort>>> {
        match self.get_mut() {
            MockBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Cut { part, flushed, .. } => {
                if let Some(p) = part.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                if flush_barrier(flushed, cx) {
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(Abort)))
            }
            MockBody::Stream(s) => s.poll_event(cx),
            MockBody::Raw(s) => s.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(b) => b.is_none(),
            MockBody::Cut { .. } | MockBody::Raw(_) => false,
            MockBody::Stream(s) => s.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            MockBody::Cut { full_len, .. } => SizeHint::with_exact(*full_len),
            MockBody::Stream(_) | MockBody::Raw(_) => SizeHint::default(),
        }
    }
}

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a stream's events come from: the OpenAI generator (lazily, the
/// benchmark path), or a list built up front (Anthropic, Gemini, tool calls).
pub(crate) enum Events {
    Gen(StreamEvents),
    List(std::vec::IntoIter<Bytes>),
}

impl Events {
    fn total(&self) -> u32 {
        match self {
            Events::Gen(g) => g.total(),
            Events::List(l) => u32::try_from(l.len()).unwrap_or(u32::MAX),
        }
    }

    fn len(&self) -> usize {
        match self {
            Events::Gen(g) => g.len(),
            Events::List(l) => l.len(),
        }
    }

    fn next(&mut self) -> Option<Bytes> {
        match self {
            Events::Gen(g) => g.next(),
            Events::List(l) => l.next(),
        }
    }

    /// Completion tokens in the events taken so far; a list was counted
    /// whole when it was made.
    fn tokens_produced(&self) -> u32 {
        match self {
            Events::Gen(g) => g.tokens_produced(),
            Events::List(_) => 0,
        }
    }
}

/// An SSE stream paced by `chunk_delay` and an optional gate.
pub(crate) struct EventStream {
    events: Events,
    stats: Arc<Stats>,
    chunk_delay: Duration,
    gate: Option<Arc<Gate>>,
    /// `cut`: abort after this many events.
    cut_after: Option<u32>,
    /// `garbage`: send a non-JSON event first.
    garbage: bool,
    sent: u32,
    /// Completion tokens counted in the stats so far.
    tokens: u32,
    /// The pause before the next event, while it runs.
    wait: Option<Wait>,
    /// The pause before event `sent` is over.
    waited: bool,
    flushed: bool,
    done: bool,
}

pub(crate) struct StreamPlan {
    pub chunk_delay: Duration,
    pub gate: Option<Arc<Gate>>,
    pub cut: Option<Option<u32>>,
    pub garbage: bool,
}

impl EventStream {
    pub fn start(events: Events, stats: Arc<Stats>, plan: StreamPlan) -> EventStream {
        bump(&stats.streams_started);
        let total = events.total() + u32::from(plan.garbage);
        // "About half" by default (at least one event, so the client sees a
        // started stream), and never the whole stream.
        let cut_after = plan.cut.map(|n| n.unwrap_or((total / 2).max(1)).min(total.saturating_sub(1)));
        EventStream {
            events,
            stats,
            chunk_delay: plan.chunk_delay,
            gate: plan.gate,
            cut_after,
            garbage: plan.garbage,
            sent: 0,
            tokens: 0,
            wait: None,
            waited: false,
            flushed: false,
            done: false,
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Abort>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if let Some(w) = &mut self.wait {
                ready!(w.as_mut().poll(cx));
                self.wait = None;
                self.waited = true;
            }
            if self.cut_after == Some(self.sent) {
                if flush_barrier(&mut self.flushed, cx) {
                    return Poll::Pending;
                }
                self.done = true;
                return Poll::Ready(Some(Err(Abort)));
            }
            let garbage_next = self.garbage && self.sent == 0;
            if self.events.len() == 0 && !garbage_next {
                // Ends right after the last event, without waiting for
                // another delay or release.
                self.done = true;
                bump(&self.stats.streams_completed);
                return Poll::Ready(None);
            }
            let paced = !self.chunk_delay.is_zero() || self.gate.is_some();
            if self.sent > 0 && paced && !self.waited {
                // Boxed only for paced streams; the benchmark path never gets here.
                let (delay, gate) = (self.chunk_delay, self.gate.clone());
                self.wait = Some(Box::pin(async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if let Some(g) = gate {
                        g.pass().await;
                    }
                }));
                continue;
            }
            self.waited = false;
            let ev = if garbage_next {
                Bytes::from_static(GARBAGE_EVENT)
            } else {
                match self.events.next() {
                    Some(ev) => ev,
                    None => continue, // not reached: len() said one remains
                }
            };
            self.sent += 1;
            let tokens = self.events.tokens_produced();
            if tokens > self.tokens {
                add(&self.stats.completion_tokens, u64::from(tokens - self.tokens));
                self.tokens = tokens;
            }
            if let Some(g) = &self.gate {
                g.sent_one();
            }
            if self.events.len() == 0 {
                // Done now, so is_end_stream() lets hyper write the final
                // chunk together with this event.
                self.done = true;
                bump(&self.stats.streams_completed);
            }
            return Poll::Ready(Some(Ok(Frame::data(ev))));
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // hyper drops the body early only when the connection failed, i.e.
        // the peer went away (a cut sets `done` first and is not counted).
        if !self.done {
            bump(&self.stats.streams_cancelled);
            bump(&self.stats.client_gone);
        }
    }
}
