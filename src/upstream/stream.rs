//! The one driver of an upstream stream, after its first events arrived:
//! the relay forwards it to its client, the single-flight leader into its
//! flight. It enforces the idle and total timeouts, reads usage on the way
//! (in the client's protocol) and can hide the usage-only chunk, counts
//! every run of events as the worker's activity, holds the deployment's
//! in-flight count until it ends, and reports a failure after the first
//! byte against the deployment. Dropping it drops the upstream body, which
//! closes that connection: that is how a departed client (or the last
//! subscriber of a flight) cancels the upstream request.

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use sluice_actors::availability::InflightGuard;
use tokio::time::{Instant, Sleep};

use super::WorkerUpstreams;
use super::outcomes::{OutcomeSink, verdict};
use crate::busy_poll::{Activity, Next};
use crate::endpoint::Endpoint;
use crate::error::{GatewayError, TimeoutPhase};
use crate::providers::{EventStream, Timeouts};
use crate::usage::{StreamUsage, Usage};

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
        }
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

    /// Has this stream's provider been seen to report usage on streams? If
    /// not (or not yet), a caller that needs the count keeps the text.
    pub fn provider_reports_usage(&self) -> bool {
        self.source.stream_usage.load(Ordering::Relaxed) == USAGE_REPORTED
    }

    /// Read usage off a run and hide the usage chunk if asked.
    fn pass(&mut self, events: Bytes) -> Bytes {
        let (u, out) = self.scan.scan(events, self.hide_usage_chunk);
        if u.is_some() {
            self.usage = u;
            self.source.stream_usage.store(USAGE_REPORTED, Ordering::Relaxed);
        }
        out
    }

    /// The stream cut or stalled after its first byte: that counts against
    /// the deployment.
    fn fail(&mut self, e: GatewayError) -> GatewayError {
        self.done = true;
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
