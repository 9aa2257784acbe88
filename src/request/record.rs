//! Record: what one request did, for metrics and the `server-timing` header.
//!
//! Time is split in two: *upstream* (every attempt, from sending it until its
//! answer — or first stream event — arrived) and *gateway* (everything else
//! until the response head went out). `server-timing` shows both, so anyone
//! can see the gateway's own overhead per request.

use std::fmt::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderMap;

use crate::config::Price;
use crate::endpoint::Endpoint;
use crate::metrics::MetricsTable;
use crate::metrics::RequestOutcome;
use crate::observe::{End, RequestObs, Telemetry};
use crate::usage::Usage;

/// Where a finished request's cost goes.
pub struct Spending {
    pub table: std::sync::Arc<sluice_actors::rate_limiter::SpendTable>,
    pub sink: std::rc::Rc<crate::upstream::outcomes::OutcomeSink>,
    /// Spend-table index of the key (or of the anonymous policy).
    pub key: usize,
    /// Spend-table index of the key's team, which is charged too.
    pub team: Option<usize>,
    /// Spend-table slot of each model, by model index.
    pub models: Arc<[usize]>,
}

pub struct Record {
    pub request_id: String,
    /// The request's rate-limit admission: settled with the real token
    /// count and released (concurrency) when the request finishes.
    pub limits: Option<sluice_actors::rate_limiter::Grant>,
    /// The serving deployment's own caps (upstream protection).
    pub deployment_grant: Option<sluice_actors::rate_limiter::Grant>,
    pub spending: Option<Spending>,
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
    /// Traces and the request log (`[telemetry]`); `None` when both are off.
    pub obs: Option<Rc<RequestObs>>,
    /// Noted only while observing: the key's name, the error's code, the
    /// time the response head went out.
    key: Option<String>,
    team: Option<String>,
    pub error: Option<&'static str>,
    gateway: Option<Duration>,
    stream: bool,
}

impl Record {
    pub fn new(endpoint: Endpoint, request_id: String, metrics: Arc<MetricsTable>) -> Record {
        Record {
            request_id,
            limits: None,
            deployment_grant: None,
            spending: None,
            endpoint,
            metrics,
            started: Instant::now(),
            model: None,
            served: None,
            upstream: Duration::ZERO,
            finished: false,
            cache: None,
            obs: None,
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

    /// Record the end of the request, once.
    pub fn finish(&mut self, outcome: RequestOutcome, usage: Option<Usage>, price: Option<Price>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let took = self.started.elapsed();
        self.metrics.record_request(self.endpoint, self.model, outcome, took);
        if let Some(obs) = self.obs.take() {
            obs.finish(self.end(outcome, usage, price, took));
        }
        if let Some(u) = usage {
            // Replace the estimates the limits were charged with by the real count.
            for g in [self.limits.as_mut(), self.deployment_grant.as_mut()].into_iter().flatten() {
                g.settle(u.total());
            }
            if let Some((m, _)) = self.served {
                self.metrics.record_usage(m, &u, price);
                if let (Some(p), Some(sp)) = (price, &self.spending) {
                    let day = sluice_actors::rate_limiter::spend::today();
                    let usd = crate::metrics::cost_usd(&u, &p);
                    let model = sp.models.get(m).copied().unwrap_or(usize::MAX);
                    for slot in std::iter::once(sp.key).chain(sp.team) {
                        if let Some(rec) = sp.table.add(slot, model, usd, day) {
                            sp.sink.push_spend(rec);
                        }
                    }
                }
            }
        }
        // Give back concurrency slots now, not when the record drops.
        self.limits = None;
        self.deployment_grant = None;
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
            request_id: self.request_id.clone(),
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
/// formatting costs more than the rest of the header).
fn push_ms(s: &mut String, d: Duration) {
    let us = d.as_micros();
    let _ = write!(s, "{}.{:03}", us / 1000, us % 1000);
}

impl Drop for Record {
    fn drop(&mut self) {
        // Dropped unfinished: the client went away (actix dropped the handler
        // future or the response stream).
        if !self.finished {
            self.finish(RequestOutcome::ClientGone, None, None);
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
    }
}
