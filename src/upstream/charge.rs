//! What a request is charged for the tokens an upstream produced for it.
//!
//! The rule (docs/decisions/spend-store.md, "The accounting rule"): every
//! token an upstream produced for a client is charged to that client's
//! key — its TPM limits and its spend — whether the client read the whole
//! answer, left mid-stream, or left before the first byte: prompt tokens
//! plus the completion tokens produced so far (the upstream's usage, or
//! the text that arrived, counted with the tokenizer). A cache hit and a
//! request that shared another's upstream call (single-flight) produced
//! nothing upstream: they are charged no tokens, and their estimate is
//! given back.
//!
//! A [`Charge`] is settled exactly once. It starts with the request (its
//! admission to the limits holds the token estimate), and it can be handed
//! on to whatever outlives the request's own future and still sees the
//! upstream's tokens: an [`super::UpstreamStream`] settles it when the
//! stream ends, fails or is dropped (its client left), and a single-flight
//! leader's call settles it when the shared call ends.

use std::rc::Rc;
use std::sync::Arc;

use sluice_actors::rate_limiter::{Grant, SpendTable};

use super::outcomes::OutcomeSink;
use crate::config::Price;
use crate::metrics::MetricsTable;
use crate::observe::Meeting;
use crate::usage::Usage;

/// Where a finished request's cost goes.
pub struct Spending {
    pub table: Arc<SpendTable>,
    pub sink: Rc<OutcomeSink>,
    /// Spend-table index of the key (or of the anonymous policy).
    pub key: usize,
    /// Spend-table index of the key's team, which is charged too.
    pub team: Option<usize>,
    /// Spend-table slot of each model, by model index.
    pub models: Arc<[usize]>,
}

/// A request's token charge, until it is settled.
pub struct Charge {
    /// The request's rate-limit admission: settled with the real token
    /// count, and released (concurrency) when the charge is settled.
    pub limits: Option<Grant>,
    /// The serving deployment's own caps (upstream protection).
    pub deployment_grant: Option<Grant>,
    pub spending: Option<Spending>,
    metrics: Arc<MetricsTable>,
    /// The model asked for, and its likely price: what a call left before
    /// its first byte is counted and priced under (no deployment served).
    requested: Option<(usize, Option<Price>)>,
    /// The prompt's estimated tokens.
    prompt_estimate: u64,
    /// An upstream call was made for it: a departure from here on is
    /// charged the prompt the upstream received.
    upstream_called: bool,
    settled: bool,
    /// Told what was charged, for the request log and the trace (with
    /// `[telemetry]` on); goes wherever the charge goes.
    pub meeting: Option<Meeting>,
}

impl Charge {
    pub fn new(metrics: Arc<MetricsTable>) -> Charge {
        Charge {
            limits: None,
            deployment_grant: None,
            spending: None,
            metrics,
            requested: None,
            prompt_estimate: 0,
            upstream_called: false,
            settled: false,
            meeting: None,
        }
    }

    /// The model asked for, its price, and the prompt's estimate.
    pub fn set_request(&mut self, model: usize, price: Option<Price>, prompt_estimate: u64) {
        self.requested = Some((model, price));
        self.prompt_estimate = prompt_estimate;
    }

    pub fn prompt_estimate(&self) -> u64 {
        self.prompt_estimate
    }

    /// The request is over but its tokens are still being counted: give
    /// its concurrency slots back now.
    pub fn release_slots(&mut self) {
        for g in [self.limits.as_mut(), self.deployment_grant.as_mut()].into_iter().flatten() {
            g.release_slots();
        }
    }

    /// The upstream call is being made.
    pub fn upstream_called(&mut self) {
        self.upstream_called = true;
    }

    /// Move the charge out (to whatever outlives the request and settles
    /// it); what is left behind is settled already and charges nothing.
    pub fn take(&mut self) -> Charge {
        let mut left = Charge::new(self.metrics.clone());
        left.settled = true;
        std::mem::replace(self, left)
    }

    /// Charge `usage`, produced by the deployment of `served_model` at
    /// `price`: the limits' estimates are replaced by its total, and its
    /// cost is added to the key's spend.
    pub fn settle(mut self, served_model: Option<usize>, usage: Usage, price: Option<Price>) {
        self.settle_with(served_model, usage, price);
    }

    /// No upstream produced anything for this request (a cache hit, a
    /// share of another's call): its estimate is given back now, and it is
    /// charged nothing more. Its concurrency slots are held until it ends.
    pub fn release_estimate(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        for g in [self.limits.as_mut(), self.deployment_grant.as_mut()].into_iter().flatten() {
            g.settle(0);
        }
        self.tell(None);
    }

    /// The request failed with no usage known: the estimate stands (what
    /// the upstream did with a failed call is not known).
    pub fn keep_estimate(mut self) {
        self.settled = true;
        self.tell(None);
    }

    fn tell(&mut self, settled: crate::observe::meeting::Settled) {
        if let Some(m) = self.meeting.take() {
            m.settled(settled);
        }
    }

    fn settle_with(&mut self, served_model: Option<usize>, u: Usage, price: Option<Price>) {
        if self.settled {
            return;
        }
        self.settled = true;
        // Replace the estimates the limits were charged with by the real count.
        for g in [self.limits.as_mut(), self.deployment_grant.as_mut()].into_iter().flatten() {
            g.settle(u.total());
        }
        self.tell(Some((u, price.map(|p| crate::metrics::cost_usd(&u, &p)))));
        let Some(m) = served_model else { return };
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

impl Drop for Charge {
    /// Dropped unsettled: the request went away before its answer began
    /// (its client left). If the upstream was called, it received the
    /// prompt: that is charged, at the requested model's price; otherwise
    /// nothing was produced and the estimate is given back.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if self.upstream_called {
            let (model, price) = self.requested.map_or((None, None), |(m, p)| (Some(m), p));
            let u = Usage { prompt_tokens: self.prompt_estimate, ..Default::default() };
            self.settle_with(model, u, price);
        } else {
            self.release_estimate();
        }
    }
}
