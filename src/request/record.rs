//! Record: what one request did, for metrics and the `server-timing` header.
//!
//! Time is split in two: *upstream* (every attempt, from sending it until its
//! answer — or first stream event — arrived) and *gateway* (everything else
//! until the response head went out). `server-timing` shows both, so anyone
//! can see the gateway's own overhead per request.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderMap;

use crate::config::Price;
use crate::endpoint::Endpoint;
use crate::endpoint::RequestId;
use crate::metrics::MetricsTable;
use crate::metrics::RequestOutcome;
use crate::observe::{End, Meeting, RequestObs, Telemetry};
use crate::upstream::charge::Charge;
pub use crate::upstream::charge::Spending;
use crate::usage::Usage;

pub struct Record {
    pub request_id: RequestId,
    /// What the request is charged for the upstream's tokens (its limits'
    /// admission, the deployment's caps, its key's spend): settled when it
    /// finishes, or handed on to the stream or shared call that outlives it.
    pub charge: Charge,
    pub endpoint: Endpoint,
    metrics: Arc<MetricsTable>,
    started: Instant,
    /// The requested model's index, once it is known to exist (unknown names
    /// are never used as labels: clients control them).
    model: Option<usize>,
    /// `(model, deployment)` that served.
    served: Option<(usize, usize)>,
    upstream: Duration,
    finished: bool,
    /// `x-sluice-cache` (`HIT` / `MISS` / `BYPASS`) for models with caching on.
    pub cache: Option<&'static str>,
    /// The answer's media type when it is not JSON (`/v1/audio/speech`).
    pub media_type: Option<&'static str>,
    /// Traces and the request log (`[telemetry]`); `None` when both are off.
    pub obs: Option<Rc<RequestObs>>,
    /// Where the end meets the charge's settling (with `obs` only).
    meeting: Option<Meeting>,
    /// Noted only while observing: the key's name, the error's code, the
    /// time the response head went out.
    key: Option<String>,
    team: Option<String>,
    pub error: Option<&'static str>,
    gateway: Option<Duration>,
    stream: bool,
}

impl Record {
    pub fn new(endpoint: Endpoint, request_id: RequestId, metrics: Arc<MetricsTable>) -> Record {
        Record {
            request_id,
            charge: Charge::new(metrics.clone()),
            endpoint,
            metrics,
            started: Instant::now(),
            model: None,
            served: None,
            upstream: Duration::ZERO,
            finished: false,
            cache: None,
            media_type: None,
            obs: None,
            meeting: None,
            key: None,
            team: None,
            error: None,
            gateway: None,
            stream: false,
        }
    }

    /// Observe this request (`[telemetry]` on): its trace context from the
    /// client's headers, its attempts, its end.
    pub fn observe(&mut self, telemetry: Option<&Telemetry>, headers: &HeaderMap) {
        if let Some(t) = telemetry {
            self.obs = Some(Rc::new(t.observer.begin(&t.names, headers, self.endpoint)));
            let m = Meeting::default();
            self.charge.meeting = Some(m.clone());
            self.meeting = Some(m);
        }
    }

    /// The key the request came with, and its team, for the request log
    /// and traces.
    pub fn set_key(&mut self, name: &str, team: Option<&str>) {
        if self.obs.is_some() {
            self.key = Some(name.to_string());
            self.team = team.map(str::to_string);
        }
    }

    /// What the request asked: a stream or not; its prompt, for a trace
    /// that records content.
    pub fn set_request(&mut self, peek: &crate::peek::Peek, body: &[u8]) {
        self.stream = peek.stream;
        if let Some(o) = &self.obs {
            o.note_request(body, self.endpoint);
        }
    }

    pub fn set_model(&mut self, model: usize) {
        self.model = Some(model);
    }

    pub fn set_served(&mut self, model: usize, deployment: usize) {
        self.served = Some((model, deployment));
    }

    /// `x-sluice-deployment` (`provider/model`) of the deployment that served, if any did.
    pub fn deployment_header(&self) -> Option<actix_web::http::header::HeaderValue> {
        let (m, d) = self.served?;
        self.metrics.deployment(m, d).and_then(|d| d.header.clone())
    }

    /// Add one attempt's upstream wait.
    pub fn add_upstream(&mut self, d: Duration) {
        self.upstream += d;
    }

    /// Record one attempt's outcome against its deployment.
    pub fn attempt(&self, model: usize, deployment: usize, outcome: Result<(), &'static str>, took: Duration) {
        self.metrics.record_attempt(model, deployment, outcome, took);
    }

    /// Mark the response head as sent; returns the `server-timing` value.
    pub fn head_sent(&mut self) -> String {
        let total = self.started.elapsed();
        let gateway = total.saturating_sub(self.upstream);
        self.gateway = Some(gateway);
        self.metrics.record_overhead(self.endpoint, gateway);
        let mut s = String::with_capacity(48);
        s.push_str("gateway;dur=");
        push_ms(&mut s, gateway);
        s.push_str(", upstream;dur=");
        push_ms(&mut s, self.upstream);
        s
    }

    /// The model that served, if one did.
    pub fn served_model(&self) -> Option<usize> {
        self.served.map(|(m, _)| m)
    }

    /// Record the end of the request, once, and settle its charge (unless
    /// handed on): with `usage` when known, else the estimate stands.
    pub fn finish(&mut self, outcome: RequestOutcome, usage: Option<Usage>, price: Option<Price>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let took = self.started.elapsed();
        self.metrics.record_request(self.endpoint, self.model, outcome, took);
        // Settled now, so concurrency slots come back now, not when the record drops.
        let charge = self.charge.take();
        match usage {
            Some(u) => charge.settle(self.served_model(), u, price),
            None => charge.keep_estimate(),
        }
        self.report(outcome, usage, price, took);
    }

    /// Hand the request's end to the request log and the trace: once its
    /// charge settled too, wherever that happens (see `Meeting`).
    fn report(&mut self, outcome: RequestOutcome, usage: Option<Usage>, price: Option<Price>, took: Duration) {
        if let Some(obs) = self.obs.take() {
            let end = self.end(outcome, usage, price, took);
            match self.meeting.take() {
                Some(m) => m.ended(obs, end),
                None => obs.finish(end),
            }
        }
    }
}

impl Record {
    /// The request as the request log and the exporter see it.
    fn end(&mut self, outcome: RequestOutcome, usage: Option<Usage>, price: Option<Price>, total: Duration) -> End {
        let (status, outcome) = match outcome {
            RequestOutcome::Status(s) => (s, "ok"),
            RequestOutcome::StreamError => (200, "stream_error"),
            // Nothing was sent, or a stream was cut by its client.
            RequestOutcome::ClientGone => (if self.gateway.is_none() { 499 } else { 200 }, "client_gone"),
        };
        End {
            request_id: self.request_id.to_string(),
            endpoint: self.endpoint,
            key: self.key.take(),
            team: self.team.take(),
            model: self.model,
            served: self.served,
            status,
            outcome,
            error: self.error,
            usage,
            cost_usd: usage.zip(price).map(|(u, p)| crate::metrics::cost_usd(&u, &p)),
            cache: self.cache,
            stream: self.stream,
            total,
            gateway: self.gateway.unwrap_or_else(|| total.saturating_sub(self.upstream)),
            upstream: self.upstream,
        }
    }
}

/// Milliseconds with three decimals, by integer arithmetic (float
/// formatting costs more than the rest of the header; `write!` with
/// `{}.{:03}` was ~0.7k instructions a call, this ~0.1k).
fn push_ms(s: &mut String, d: Duration) {
    // In u64: `as_micros`'s u128 made each division a call to `__udivti3`.
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    s.push_str(itoa::Buffer::new().format(us / 1000));
    let frac = (us % 1000) as u32;
    s.push('.');
    for div in [100, 10, 1] {
        s.push(char::from(b'0' + ((frac / div) % 10) as u8));
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // Dropped unfinished: the client went away (actix dropped the handler
        // future or the response stream). The charge, if still here, settles
        // itself as a departure (see `Charge`'s drop).
        if !self.finished {
            self.finished = true;
            let took = self.started.elapsed();
            self.metrics.record_request(self.endpoint, self.model, RequestOutcome::ClientGone, took);
            self.report(RequestOutcome::ClientGone, None, None, took);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_formatting() {
        let mut s = String::new();
        push_ms(&mut s, Duration::from_micros(1234567));
        assert_eq!(s, "1234.567");
        s.clear();
        push_ms(&mut s, Duration::from_nanos(54_999));
        assert_eq!(s, "0.054");
        s.clear();
        push_ms(&mut s, Duration::from_micros(7_000_009));
        assert_eq!(s, "7000.009");
    }
}
