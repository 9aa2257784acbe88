//! Record: what one request did, for metrics and the `server-timing` header.
//!
//! Time is split in two: *upstream* (every attempt, from sending it until its
//! answer — or first stream event — arrived) and *gateway* (everything else
//! until the response head went out). `server-timing` shows both, so anyone
//! can see the gateway's own overhead per request.

use std::time::{Duration, Instant};

use crate::config::Price;
use crate::metrics as m;
use crate::providers::{Endpoint, Usage};

pub struct Record {
    pub request_id: String,
    pub endpoint: Endpoint,
    started: Instant,
    /// The requested model, once it is known to exist (unknown names are
    /// never used as labels: clients control them).
    model: Option<String>,
    /// `provider/model` of the deployment that served.
    deployment: Option<String>,
    upstream: Duration,
    /// Set when the response head was sent.
    head_sent: Option<Instant>,
    finished: bool,
}

/// How a request ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with this HTTP status (streams: 200 and the stream completed).
    Status(u16),
    /// A stream ended early with an error event.
    StreamError,
    /// The client went away before the end.
    ClientGone,
}

impl Record {
    pub fn new(endpoint: Endpoint, request_id: String) -> Record {
        Record {
            request_id,
            endpoint,
            started: Instant::now(),
            model: None,
            deployment: None,
            upstream: Duration::ZERO,
            head_sent: None,
            finished: false,
        }
    }

    pub fn set_model(&mut self, model: &str) {
        self.model = Some(model.to_string());
    }

    pub fn set_deployment(&mut self, label: &str) {
        self.deployment = Some(label.to_string());
    }

    pub fn deployment(&self) -> Option<&str> {
        self.deployment.as_deref()
    }

    /// Add one attempt's upstream wait.
    pub fn add_upstream(&mut self, d: Duration) {
        self.upstream += d;
    }

    /// Mark the response head as sent; returns the `server-timing` value.
    pub fn head_sent(&mut self) -> String {
        let now = Instant::now();
        self.head_sent = Some(now);
        let total = now.saturating_duration_since(self.started);
        let gateway = total.saturating_sub(self.upstream);
        m::record_overhead(self.endpoint, gateway);
        format!(
            "gateway;dur={:.3}, upstream;dur={:.3}",
            gateway.as_secs_f64() * 1000.0,
            self.upstream.as_secs_f64() * 1000.0
        )
    }

    /// Record the end of the request, once.
    pub fn finish(&mut self, outcome: Outcome, usage: Option<Usage>, price: Option<Price>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let model = self.model.as_deref().unwrap_or("unknown");
        m::record_request(self.endpoint, model, outcome, self.started.elapsed());
        if let Some(u) = usage {
            m::record_usage(model, &u, price);
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // A stream dropped without finishing means the client disconnected.
        if !self.finished {
            self.finish(Outcome::ClientGone, None, None);
        }
    }
}

/// Cost in USD of `usage` at `price`.
pub fn cost_usd(u: &Usage, p: &Price) -> f64 {
    (u.prompt_tokens as f64 * p.input_per_mtok + u.completion_tokens as f64 * p.output_per_mtok) / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost() {
        let u = Usage { prompt_tokens: 1_000_000, completion_tokens: 500_000, cached_tokens: 0 };
        let p = Price { input_per_mtok: 0.15, output_per_mtok: 0.60 };
        assert!((cost_usd(&u, &p) - 0.45).abs() < 1e-12);
    }
}
