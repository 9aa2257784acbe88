//! The one driver of an upstream stream, after its first events arrived:
//! the relay forwards it to its client, the single-flight leader into its
//! flight. It enforces the idle and total timeouts, reads usage on the way
//! (in the client's protocol) and can hide the usage-only chunk, counts
//! every run of events as the worker's activity, holds the deployment's
//! in-flight count until it ends, and reports a failure after the first
//! byte against the deployment. Dropping it drops the upstream body, which
//! closes that connection: that is how a departed client (or the last
//! subscriber of a flight) cancels the upstream request.
//!
//! It also settles the request's [`Charge`] when one is attached
//! ([`UpstreamStream::bill`]): with the upstream's usage when the stream
//! ended with it, else with the prompt and the completion tokens that
//! arrived, counted from their text — when it ends, when it fails, and
//! when it is dropped (its client left): then whatever the upstream had
//! already sent and sits unread in the connection is read first, since it
//! was produced for that client too.

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use sluice_actors::availability::InflightGuard;
use tokio::time::{Instant, Sleep};

use super::WorkerUpstreams;
use super::charge::Charge;
use super::outcomes::{OutcomeSink, verdict};
use crate::busy_poll::{Activity, Next};
use crate::config::Price;
use crate::endpoint::Endpoint;
use crate::error::{GatewayError, TimeoutPhase};
use crate::providers::{EventStream, Timeouts};
use crate::tokens::Tally;
use crate::usage::{StreamUsage, Usage};

/// Most bytes read from the connection, when the stream is dropped, to
/// count what the upstream had already sent (one socket buffer's worth).
const DRAIN_MAX: usize = 4 << 20;

/// The charge a stream settles, and what settling it needs.
struct Bill {
    charge: Charge,
    served_model: Option<usize>,
    price: Option<Price>,
    /// The text that arrived, in case no usage does.
    tally: Tally,
}

/// Where a stream comes from: the winning attempt.
pub struct Source {
    /// The serving deployment's id, for the outcome of a failure mid-stream.
    pub deployment: usize,
    pub provider: String,
    pub timeouts: Timeouts,
    /// When the attempt was sent; the total timeout counts from here.
    pub started: Instant,
    /// Counts the deployment as busy until the stream ends.
    pub inflight: InflightGuard,
    /// The provider's "reports usage on streams" flag (see `Provider`).
    pub stream_usage: Arc<AtomicU8>,
}

/// A stream from the deployment that won, its first run of events already
/// in hand. Yields runs of whole SSE events (never an empty one); a failure
/// is yielded once, as `Err`, and ends it.
pub struct UpstreamStream {
    first: Option<Bytes>,
    rest: EventStream,
    source: Source,
    idle: Pin<Box<Sleep>>,
    deadline: Instant,
    /// Reads usage in the client's protocol (OpenAI chunks or Anthropic events).
    scan: StreamUsage,
    hide_usage_chunk: bool,
    usage: Option<Usage>,
    outcomes: Rc<OutcomeSink>,
    activity: Rc<Activity>,
    done: bool,
    bill: Option<Bill>,
}

/// `Provider::stream_usage` values (0: not known yet).
const USAGE_REPORTED: u8 = 1;
const USAGE_NOT_REPORTED: u8 = 2;

impl UpstreamStream {
    pub fn new(w: &WorkerUpstreams, endpoint: Endpoint, first: Bytes, rest: EventStream, source: Source) -> Self {
        let deadline = source.started + source.timeouts.total;
        UpstreamStream {
            first: Some(first),
            rest,
            idle: Box::pin(tokio::time::sleep_until((Instant::now() + source.timeouts.idle).min(deadline))),
            deadline,
            source,
            scan: StreamUsage::for_endpoint(endpoint),
            hide_usage_chunk: false,
            usage: None,
            outcomes: w.outcomes.clone(),
            activity: w.activity.clone(),
            done: false,
            bill: None,
        }
    }

    /// Settle `charge` with what this stream produces (see the module doc),
    /// priced at `price` under `served_model`.
    pub fn bill(&mut self, charge: Charge, served_model: Option<usize>, price: Option<Price>) {
        self.bill = Some(Bill { charge, served_model, price, tally: Tally::default() });
    }

    /// Drop the usage-only chunk (`"choices": []`) from what is yielded: the
    /// client did not ask for it. Usage is read either way.
    pub fn hide_usage_chunk(&mut self) {
        self.hide_usage_chunk = true;
    }

    /// The usage read so far (the last report wins).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// A Responses stream as followed so far (`None` on other routes).
    pub fn responses(&self) -> Option<&crate::usage::ResponsesWatch> {
        self.scan.responses()
    }

    /// Has this stream's provider been seen to report usage on streams? If
    /// not (or not yet), a caller that needs the count keeps the text.
    pub fn provider_reports_usage(&self) -> bool {
        self.source.stream_usage.load(Ordering::Relaxed) == USAGE_REPORTED
    }

    /// Read usage off a run and hide the usage chunk if asked.
    fn pass(&mut self, events: Bytes) -> Bytes {
        if let Some(b) = &mut self.bill {
            b.tally.push(&events);
        }
        let (u, out) = self.scan.scan(events, self.hide_usage_chunk);
        if u.is_some() {
            self.usage = u;
            self.source.stream_usage.store(USAGE_REPORTED, Ordering::Relaxed);
        }
        out
    }

    /// Settle the bill, if any: a stream that `ended` with usage is charged
    /// that; otherwise the prompt (reported, else estimated) and the larger
    /// of the reported and the counted completion tokens (counting runs on
    /// a blocking thread, the charge settles when it is done).
    fn settle(&mut self, ended: bool) {
        if let Some(b) = self.bill.take() {
            b.settle(self.usage, ended);
        }
    }

    /// The stream cut or stalled after its first byte: that counts against
    /// the deployment.
    fn fail(&mut self, e: GatewayError) -> GatewayError {
        self.done = true;
        self.settle(false);
        self.outcomes.push(sluice_actors::outcome::AttemptOutcome {
            deployment: self.source.deployment,
            verdict: verdict(&e),
            latency: self.source.started.elapsed(),
            ttft: None,
            error: Some((e.label(), e.to_string())),
        });
        e
    }

    fn end(&mut self) {
        self.done = true;
        self.activity.touch(Next::Client);
        if self.usage.is_none() {
            // A stream that ended well without usage: this provider does not
            // report it (until it does again).
            self.source.stream_usage.store(USAGE_NOT_REPORTED, Ordering::Relaxed);
        }
    }

    fn timed_out(&mut self) -> GatewayError {
        let total = Instant::now() >= self.deadline;
        let (phase, d) = if total {
            (TimeoutPhase::Total, self.source.timeouts.total)
        } else {
            (TimeoutPhase::Idle, self.source.timeouts.idle)
        };
        self.fail(GatewayError::UpstreamTimeout {
            provider: self.source.provider.clone(),
            phase,
            ms: d.as_millis() as u64,
        })
    }
}

impl Stream for UpstreamStream {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            let out = this.pass(first);
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(out)));
            }
        }
        loop {
            match this.rest.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(events))) => {
                    this.activity.touch(Next::Upstream);
                    let next_idle = (Instant::now() + this.source.timeouts.idle).min(this.deadline);
                    this.idle.as_mut().reset(next_idle);
                    let out = this.pass(events);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(this.fail(e)))),
                Poll::Ready(None) => {
                    this.end();
                    this.settle(true);
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        if this.idle.poll_unpin(cx).is_ready() {
            return Poll::Ready(Some(Err(this.timed_out())));
        }
        Poll::Pending
    }
}

impl Drop for UpstreamStream {
    /// Dropped before its end (the client left, or the last subscriber of
    /// its flight): the upstream is told to stop, and what it produced so
    /// far — including what it sent before it heard — is charged.
    fn drop(&mut self) {
        // A stream that ended or failed has settled already.
        let Some(mut bill) = self.bill.take() else { return };
        // The request is over: its slots must not wait for the count.
        bill.charge.upstream_called();
        bill.charge.release_slots();
        let stoppable = self.rest.stop_sending();
        let mut tail = Tail {
            rest: std::mem::replace(&mut self.rest, EventStream::empty()),
            scan: std::mem::replace(&mut self.scan, StreamUsage::OpenAi),
            usage: self.usage,
            bill,
        };
        if let Some(first) = self.first.take() {
            tail.pass(first);
        }
        // What is already here is read now (which sends the half-close at
        // once); the rest, until the upstream closes, in a task.
        tail.read_available();
        if stoppable {
            actix_web::rt::spawn(tail.finish());
        } else {
            tail.bill.settle(tail.usage, false);
        }
    }
}

/// How long a departed client's stream is read after the upstream was told
/// to stop: an upstream that heard closes at once (the usual case, well
/// under a millisecond here); one that ignores it (a silent upstream that
/// is not reading its socket) is cut off after this. Half the 100 ms a
/// departed client's call must end within, so the promise holds whatever
/// the upstream does, with room for a busy worker.
const TAIL_MAX_WAIT: Duration = Duration::from_millis(50);

/// What is left of a stream whose client went away: its upstream was told
/// to stop (its connection half-closed); what it had already sent is read
/// until it closes, and the bill settled with it. Without this, tokens the
/// upstream wrote just before it heard would be lost with the socket
/// buffers, charged to nobody.
struct Tail {
    rest: EventStream,
    scan: StreamUsage,
    usage: Option<Usage>,
    bill: Bill,
}

impl Tail {
    fn pass(&mut self, events: Bytes) {
        self.bill.tally.push(&events);
        let (u, _) = self.scan.scan(events, false);
        if u.is_some() {
            self.usage = u;
        }
    }

    /// Read what has arrived, without waiting.
    fn read_available(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut left = DRAIN_MAX;
        while left > 0 {
            match self.rest.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(Ok(events))) => {
                    left = left.saturating_sub(events.len());
                    self.pass(events);
                }
                _ => break,
            }
        }
    }

    /// Read on until the upstream closes (at most [`TAIL_MAX_WAIT`] and
    /// [`DRAIN_MAX`] bytes), then settle.
    async fn finish(mut self) {
        let deadline = Instant::now() + TAIL_MAX_WAIT;
        let mut left = DRAIN_MAX;
        let ended = loop {
            match tokio::time::timeout_at(deadline, self.rest.next()).await {
                Ok(Some(Ok(events))) => {
                    left = left.saturating_sub(events.len());
                    self.pass(events);
                    if left == 0 {
                        break false;
                    }
                }
                // The stream reached its own end: its usage, if it came, is whole.
                Ok(None) => break true,
                Ok(Some(Err(_))) | Err(_) => break false,
            }
        };
        let Tail { rest, usage, bill, .. } = self;
        // Closed before the count: the upstream is not kept waiting on it.
        drop(rest);
        bill.settle(usage, ended);
    }
}

impl Bill {
    /// Settle: a stream that `ended` with usage is charged that; otherwise
    /// the prompt (reported, else estimated) and the larger of the reported
    /// and the counted completion tokens (counting runs on a blocking
    /// thread; the charge settles when it is done).
    fn settle(self, usage: Option<Usage>, ended: bool) {
        let Bill { mut charge, served_model, price, tally } = self;
        if ended && let Some(u) = usage {
            charge.settle(served_model, u, price);
            return;
        }
        let prompt = usage.map_or(charge.prompt_estimate(), |u| u.prompt_tokens);
        // The upstream had the prompt: a departure from now on is charged it.
        charge.upstream_called();
        // The stream is over: its slots must not wait for the count.
        charge.release_slots();
        actix_web::rt::spawn(async move {
            let counted = tally.count().await;
            let completion = usage.map_or(counted, |u| u.completion_tokens.max(counted));
            let cached_tokens = usage.map_or(0, |u| u.cached_tokens);
            charge.settle(
                served_model,
                Usage { prompt_tokens: prompt, completion_tokens: completion, cached_tokens },
                price,
            );
        });
    }
}
