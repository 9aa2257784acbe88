//! Single-flight: identical cacheable requests in flight at the same time
//! share one upstream call.
//!
//! The first request for a key (the leader) inserts a [`Flight`] and spawns
//! the task that makes the upstream call on its own worker; every request
//! for the key, the leader's own included, is a [`Subscriber`] of that
//! flight. The task appends the stream's event runs to a replay buffer as
//! they arrive, so a subscriber that joins late first gets every event from
//! the start, then the live ones. Subscribers leaving only unsubscribe; when
//! the last one leaves before the end, the task is aborted, which drops (and
//! so cancels) the upstream request.
//!
//! Requests for one key may land on different workers, so the table is a
//! `DashMap` and a flight is a `Mutex` (never held across an await) with the
//! wakers of the subscribers waiting on it. The upstream stream itself is
//! `!Send` and stays in its task on the leader's worker; only `Bytes` cross.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use sluice_actors::response_cache::{CacheKey, StoredAnswer};
use tokio::task::AbortHandle;

use crate::config::Price;
use crate::error::GatewayError;
use crate::usage::Usage;

/// What the upstream call answered with, once it did (for a stream: its
/// first event has arrived).
#[derive(Debug, Clone)]
pub struct Head {
    /// `(model, deployment)` that served.
    pub served: Option<(usize, usize)>,
    pub price: Option<Price>,
    /// Upstream time until the answer (first event) arrived.
    pub upstream: Duration,
    /// A whole answer (`Some`), or a stream (`None`: events follow).
    pub body: Option<Bytes>,
    pub usage: Option<Usage>,
}

/// How a flight ended.
#[derive(Debug, Clone)]
pub enum End {
    /// The whole answer is there (body or every event).
    Done,
    /// Failed before any byte: every subscriber gets this error.
    Failed(GatewayError),
    /// A stream failed after its first event; its error event is the last one buffered.
    StreamFailed(GatewayError),
    /// Every subscriber left and the call was dropped.
    Cancelled,
}

/// Where one subscriber stands in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    /// The index (from the stream's start) of the next event it reads.
    At(usize),
    /// It fell too far behind and was cut.
    Cut,
    /// It left.
    Gone,
}

struct Inner {
    head: Option<Head>,
    /// Event runs not yet read by every subscriber (all of them, until the
    /// flight overflows).
    events: VecDeque<Bytes>,
    /// The index (from the stream's start) of `events[0]`.
    base: usize,
    /// Bytes in `events`.
    buffered: usize,
    /// The most `events` may hold (`[cache] max_entry_bytes`).
    max_bytes: usize,
    /// The stream outgrew `max_bytes`: not stored, not joined any more.
    overflowed: bool,
    /// Each subscriber's place, by its slot.
    positions: Vec<Pos>,
    end: Option<End>,
    /// Both shapes of a complete answer, for subscribers that want the
    /// other shape than the upstream gave.
    answer: Option<StoredAnswer>,
    subscribers: usize,
    abort: Option<AbortHandle>,
    wakers: Vec<Waker>,
}

pub struct Flight {
    inner: Mutex<Inner>,
}

impl Inner {
    fn new(max_bytes: usize) -> Inner {
        Inner {
            head: None,
            events: VecDeque::new(),
            base: 0,
            buffered: 0,
            max_bytes,
            overflowed: false,
            positions: Vec::new(),
            end: None,
            answer: None,
            subscribers: 0,
            abort: None,
            wakers: Vec::new(),
        }
    }

    /// A new subscriber, reading from the stream's start; its slot.
    fn subscribe(&mut self) -> usize {
        self.subscribers += 1;
        self.positions.push(Pos::At(0));
        self.positions.len() - 1
    }

    /// Once overflowed: drop what every subscriber has read, and cut the
    /// slowest while the rest still exceeds the bound.
    fn trim(&mut self) {
        if !self.overflowed {
            return;
        }
        loop {
            let end = self.base + self.events.len();
            let slowest = self.positions.iter().filter_map(|p| if let Pos::At(i) = p { Some(*i) } else { None }).min();
            let keep_from = slowest.unwrap_or(end);
            while self.base < keep_from {
                let Some(e) = self.events.pop_front() else { break };
                self.buffered -= e.len();
                self.base += 1;
            }
            let Some(slowest) = slowest.filter(|_| self.buffered > self.max_bytes.saturating_mul(2)) else { return };
            for p in &mut self.positions {
                if *p == Pos::At(slowest) {
                    *p = Pos::Cut;
                }
            }
        }
    }

    /// What a subscriber reads next: an event, the end, or (`None`) wait.
    fn next_for(&mut self, slot: usize) -> Option<Next> {
        match self.positions.get(slot).copied() {
            Some(Pos::At(i)) => {
                if let Some(e) = i.checked_sub(self.base).and_then(|k| self.events.get(k)).cloned() {
                    self.positions[slot] = Pos::At(i + 1);
                    self.trim();
                    return Some(Next::Events(e));
                }
            }
            Some(Pos::Cut) => {
                return Some(Next::End(Err(GatewayError::Internal {
                    detail: format!(
                        "this client read the shared stream too slowly: it fell more than {} bytes behind",
                        self.max_bytes.saturating_mul(2)
                    ),
                })));
            }
            Some(Pos::Gone) | None => {}
        }
        match &self.end {
            Some(End::Done) => Some(Next::End(Ok(()))),
            Some(End::Failed(e) | End::StreamFailed(e)) => Some(Next::End(Err(e.clone()))),
            Some(End::Cancelled) => {
                Some(Next::End(Err(GatewayError::Internal { detail: "the shared upstream call was cancelled".into() })))
            }
            None => None,
        }
    }
}

impl Flight {
    fn new(max_bytes: usize) -> Flight {
        Flight { inner: Mutex::new(Inner::new(max_bytes)) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; go on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        let wakers = {
            let mut g = self.lock();
            f(&mut g);
            std::mem::take(&mut g.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// The task that makes the call; aborted when the last subscriber leaves.
    pub fn set_task(&self, h: AbortHandle) {
        let mut g = self.lock();
        if matches!(g.end, Some(End::Cancelled)) {
            h.abort();
        } else {
            g.abort = Some(h);
        }
    }

    pub fn head(&self, head: Head) {
        self.update(|g| g.head = Some(head));
    }

    /// One run of whole SSE events.
    pub fn push(&self, events: Bytes) {
        self.update(|g| {
            g.buffered += events.len();
            g.events.push_back(events);
            if g.buffered > g.max_bytes {
                g.overflowed = true;
            }
            g.trim();
        });
    }

    pub fn finish(&self, end: End, answer: Option<StoredAnswer>) {
        self.update(|g| {
            if g.end.is_none() {
                g.end = Some(end);
                g.answer = answer;
                g.abort = None;
            }
        });
    }

    pub fn is_finished(&self) -> bool {
        self.lock().end.is_some()
    }

    /// The whole answer of a flight that is done, which its leader is
    /// about to publish to the store (the flight stays listed until then).
    pub fn done_answer(&self) -> Option<StoredAnswer> {
        let g = self.lock();
        matches!(g.end, Some(End::Done)).then(|| g.answer.clone()).flatten()
    }

    /// Every event of the stream, in one buffer (to assemble the stored
    /// answer); `None` once it outgrew the bound (it is not stored).
    pub fn all_events(&self) -> Option<Vec<u8>> {
        let g = self.lock();
        if g.overflowed {
            return None;
        }
        let mut out = Vec::with_capacity(g.buffered);
        for e in &g.events {
            out.extend_from_slice(e);
        }
        Some(out)
    }

    /// Bytes of stream held for subscribers and storage.
    pub fn buffered(&self) -> usize {
        self.lock().buffered
    }

    pub fn subscribers(&self) -> usize {
        self.lock().subscribers
    }
}

/// Every flight in progress, by key. Shared by all workers.
pub struct Flights {
    map: DashMap<CacheKey, Arc<Flight>>,
    /// Each new flight's bound (`[cache] max_entry_bytes`). The table
    /// outlives config snapshots, so a reload sets it; flights under way
    /// keep the bound they started with.
    max_bytes: AtomicUsize,
}

impl Default for Flights {
    fn default() -> Self {
        Flights::new(1024 * 1024)
    }
}

/// Which part a request plays in its key's flight.
pub enum Role {
    /// It started the flight: it must make the call (and may find, on a
    /// second look, that the answer was stored meanwhile).
    Lead(Subscriber),
    /// It joined a flight already under way.
    Follow(Subscriber),
}

impl Flights {
    pub fn new(max_bytes: usize) -> Flights {
        Flights { map: DashMap::new(), max_bytes: AtomicUsize::new(max_bytes) }
    }

    /// The bound of flights started from now on.
    pub fn set_max_bytes(&self, max_bytes: usize) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    pub fn join(self: &Arc<Self>, key: CacheKey) -> Role {
        let sub = |flight: Arc<Flight>, slot| Subscriber { flights: self.clone(), key, flight, slot };
        match self.map.entry(key) {
            Entry::Occupied(mut o) => {
                let f = o.get().clone();
                {
                    let mut g = f.lock();
                    // A flight past its bound can no longer replay from the start.
                    if !g.overflowed && !matches!(g.end, Some(End::Cancelled | End::Failed(_) | End::StreamFailed(_))) {
                        let slot = g.subscribe();
                        drop(g);
                        return Role::Follow(sub(f, slot));
                    }
                }
                // A dead (or overflowed) flight still listed: start a new one in its place.
                let fresh = Arc::new(Flight::new(self.max_bytes.load(Ordering::Relaxed)));
                let slot = fresh.lock().subscribe();
                o.insert(fresh.clone());
                Role::Lead(sub(fresh, slot))
            }
            Entry::Vacant(v) => {
                let fresh = Arc::new(Flight::new(self.max_bytes.load(Ordering::Relaxed)));
                let slot = fresh.lock().subscribe();
                v.insert(fresh.clone());
                Role::Lead(sub(fresh, slot))
            }
        }
    }

    /// Take `flight` out of the table (if it is still the one listed).
    pub fn remove(&self, key: CacheKey, flight: &Arc<Flight>) {
        self.map.remove_if(&key, |_, f| Arc::ptr_eq(f, flight));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What a subscriber waits for first.
pub enum Ready {
    /// The upstream answered; for a stream, events can be read.
    Head(Head),
    /// The answer was found stored after the flight began.
    Answer(StoredAnswer),
    Failed(GatewayError),
}

/// What a subscriber reads next from a stream flight.
pub enum Next {
    Events(Bytes),
    /// The stream is over: `Ok` after its last event, `Err` after an error event.
    End(Result<(), GatewayError>),
}

/// One request's share of a flight. Dropping it unsubscribes; the last
/// subscriber to leave an unfinished flight cancels its upstream call.
pub struct Subscriber {
    flights: Arc<Flights>,
    key: CacheKey,
    flight: Arc<Flight>,
    /// Its place in the flight's `positions`.
    slot: usize,
}

impl Subscriber {
    pub fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    pub fn key(&self) -> CacheKey {
        self.key
    }

    pub fn table(&self) -> &Arc<Flights> {
        &self.flights
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Ready> {
        let mut g = self.flight.lock();
        if let Some(h) = &g.head {
            return Poll::Ready(Ready::Head(h.clone()));
        }
        match &g.end {
            Some(End::Failed(e) | End::StreamFailed(e)) => Poll::Ready(Ready::Failed(e.clone())),
            Some(End::Done) if g.answer.is_some() => {
                Poll::Ready(g.answer.clone().map_or_else(
                    || Ready::Failed(GatewayError::Internal { detail: "no answer".into() }),
                    Ready::Answer,
                ))
            }
            Some(End::Cancelled | End::Done) => Poll::Ready(Ready::Failed(GatewayError::Internal {
                detail: "the shared upstream call ended without an answer".into(),
            })),
            None => {
                g.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Wait until the upstream answered (first event of a stream) or failed.
    pub async fn ready(&self) -> Ready {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    fn poll_end(&self, cx: &mut Context<'_>) -> Poll<Result<Option<StoredAnswer>, GatewayError>> {
        let mut g = self.flight.lock();
        match &g.end {
            Some(End::Done) => Poll::Ready(Ok(g.answer.clone())),
            Some(End::Failed(e) | End::StreamFailed(e)) => Poll::Ready(Err(e.clone())),
            Some(End::Cancelled) => {
                Poll::Ready(Err(GatewayError::Internal { detail: "the shared upstream call was cancelled".into() }))
            }
            None => {
                g.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Wait for the end: the assembled answer (`None` if it could not be
    /// assembled), or the error the call ended with.
    pub async fn finished(&self) -> Result<Option<StoredAnswer>, GatewayError> {
        std::future::poll_fn(|cx| self.poll_end(cx)).await
    }

    /// The next event run: buffered ones first (a late joiner replays from
    /// the start), then live ones as the task appends them.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        let mut g = self.flight.lock();
        match g.next_for(self.slot) {
            Some(next) => Poll::Ready(next),
            None => {
                g.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let abort = {
            let mut g = self.flight.lock();
            g.subscribers = g.subscribers.saturating_sub(1);
            if let Some(p) = g.positions.get_mut(self.slot) {
                *p = Pos::Gone;
            }
            g.trim();
            if g.subscribers > 0 || g.end.is_some() {
                return;
            }
            g.end = Some(End::Cancelled);
            g.abort.take()
        };
        if let Some(h) = abort {
            h.abort();
        }
        self.flights.remove(self.key, &self.flight);
    }
}

#[cfg(test)]
mod tests;
