//! The in-process limiter: every scope's GCRA state and concurrency count
//! as atomics, admitted by compare-and-swap on the request path.
//!
//! A GCRA step is a read-modify-write of one u64, so it cannot be a
//! read-only snapshot. Asking the `RateLimiter` actor instead would cost
//! every request a message round trip (~3 µs, tens when the actor's thread
//! sleeps: docs/benchmarks/micro.md) and serialise all admissions on one
//! thread. The actor keeps what is not per-request: the queue of waiting
//! requests, idle-state housekeeping, `/status`, spend persistence. The
//! table is behind [`super::backend::LimiterBackend`], so a shared backend
//! (Redis) can replace it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::time::Instant;

use super::gcra::{self, Rate};

/// The limits of one scope (a key, a key and model, a model, a deployment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSpec {
    pub name: String,
    pub requests: Option<Rate>,
    pub tokens: Option<Rate>,
    pub concurrency: Option<u32>,
}

#[derive(Debug)]
struct Scope {
    /// Replaced in place when a reload or the admin API changes the limits
    /// (the state below is kept); read once per admission.
    spec: ArcSwap<LimitSpec>,
    req_tat: AtomicU64,
    tok_tat: AtomicU64,
    inflight: AtomicU32,
    refused: AtomicU64,
    /// No current snapshot refers to it (its key, model or deployment was
    /// removed): hidden from `/status`, still valid for requests holding it.
    retired: AtomicBool,
}

impl Scope {
    fn new(spec: LimitSpec) -> Scope {
        Scope {
            spec: ArcSwap::from_pointee(spec),
            req_tat: AtomicU64::new(0),
            tok_tat: AtomicU64::new(0),
            inflight: AtomicU32::new(0),
            refused: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        }
    }
}

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Requests,
    Tokens,
    Concurrency,
}

impl Exceeded {
    pub fn as_str(self) -> &'static str {
        match self {
            Exceeded::Requests => "requests",
            Exceeded::Tokens => "tokens",
            Exceeded::Concurrency => "concurrency",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub scope: usize,
    pub scope_name: String,
    pub what: Exceeded,
    /// When it would fit; `None` for a concurrency cap (when a slot frees)
    /// or a request larger than the whole token limit (never).
    pub retry_after: Option<Duration>,
    /// The request can never fit this limit (tokens over the whole rate).
    pub never: bool,
}

/// What is left of the tightest limits, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headroom {
    pub requests: Option<(u64, u64, Duration)>,
    pub tokens: Option<(u64, u64, Duration)>,
}

use super::backend::{Grant, LimiterBackend};

/// Every scope's state. Append-only: a scope's id is its index, given once
/// by name ([`LimiterTable::define`]) and never reused, so a request's
/// `Grant` stays valid across reloads and admin changes
/// (docs/decisions/runtime-keys.md).
pub struct LimiterTable {
    origin: Instant,
    scopes: boxcar::Vec<Scope>,
    /// Scope name → id; only [`LimiterTable::define`] takes it.
    by_name: Mutex<HashMap<String, usize>>,
    /// Requests waiting in the actor's queue; when above 0, a freed slot
    /// is announced through `on_release`.
    pub(super) waiting: AtomicUsize,
    pub(super) on_release: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for LimiterTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimiterTable").field("scopes", &self.scopes).finish_non_exhaustive()
    }
}

impl LimiterTable {
    /// A table holding `specs` as scopes `0..specs.len()`, in order.
    pub fn new(specs: Vec<LimitSpec>) -> Arc<LimiterTable> {
        let t = LimiterTable {
            origin: Instant::now(),
            scopes: boxcar::Vec::new(),
            by_name: Mutex::default(),
            waiting: AtomicUsize::new(0),
            on_release: std::sync::OnceLock::new(),
        };
        for s in specs {
            t.define(s);
        }
        Arc::new(t)
    }

    /// The id of the scope named `spec.name`, with `spec`'s limits: the
    /// existing scope (its state kept, its limits replaced) or a new one.
    pub fn define(&self, spec: LimitSpec) -> usize {
        let mut names = self.by_name.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&i) = names.get(&spec.name)
            && let Some(s) = self.scopes.get(i)
        {
            let old = s.spec.load_full();
            if *old != spec {
                // What was used of the old limit is used of the new one in
                // proportion: a TAT's lead over now is requests (tokens)
                // times the interval, so it is rescaled to the new interval.
                let now = self.now();
                rescale(&s.req_tat, now, old.requests, spec.requests);
                rescale(&s.tok_tat, now, old.tokens, spec.tokens);
                s.spec.store(Arc::new(spec));
            }
            s.retired.store(false, Ordering::Release);
            return i;
        }
        let name = spec.name.clone();
        let i = self.scopes.push(Scope::new(spec));
        names.insert(name, i);
        i
    }

    /// Mark every scope not in `live` retired (and those in it not).
    pub fn retain_live(&self, live: &std::collections::HashSet<usize>) {
        for (i, s) in self.scopes.iter() {
            s.retired.store(!live.contains(&i), Ordering::Release);
        }
    }

    fn now(&self) -> u64 {
        // +1 s so "idle" TATs (0) are always in the past.
        Instant::now().saturating_duration_since(self.origin).as_nanos() as u64 + 1_000_000_000
    }

    /// Scopes ever defined, retired ones included.
    pub fn len(&self) -> usize {
        self.scopes.count()
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    pub fn spec(&self, scope: usize) -> Option<Arc<LimitSpec>> {
        self.scopes.get(scope).map(|s| s.spec.load_full())
    }

    /// Admit one request needing about `tokens` tokens in every scope, or
    /// refuse it — all scopes or none (a refusal rolls back what it took).
    pub fn admit(self: &Arc<Self>, scopes: &[usize], tokens: u64) -> Result<Grant, Refusal> {
        let backend: Arc<dyn LimiterBackend> = self.clone();
        self.admit_scopes(scopes, tokens).map(|holds_slots| Grant::new(backend, scopes.to_vec(), tokens, holds_slots))
    }

    /// The admission itself; `Ok(true)` when it holds concurrency slots.
    pub fn admit_scopes(&self, scopes: &[usize], tokens: u64) -> Result<bool, Refusal> {
        let now = self.now();
        let mut taken: Vec<(usize, u64, u64, bool)> = Vec::with_capacity(scopes.len());
        let mut refusal = None;
        for &i in scopes {
            let Some(s) = self.scopes.get(i) else { continue };
            let spec = s.spec.load();
            let mut took = (i, 0u64, 0u64, false);
            let r = (|| {
                if let Some(rate) = &spec.requests {
                    took.1 = take(&s.req_tat, now, 1, rate).map_err(|e| (Exceeded::Requests, e))?;
                }
                if let Some(rate) = &spec.tokens {
                    took.2 = take(&s.tok_tat, now, tokens, rate).map_err(|e| (Exceeded::Tokens, e))?;
                }
                if let Some(max) = spec.concurrency {
                    if s.inflight.fetch_add(1, Ordering::AcqRel) >= max {
                        s.inflight.fetch_sub(1, Ordering::AcqRel);
                        return Err((Exceeded::Concurrency, None));
                    }
                    took.3 = true;
                }
                Ok(())
            })();
            match r {
                Ok(()) => taken.push(took),
                Err((what, retry)) => {
                    taken.push(took);
                    s.refused.fetch_add(1, Ordering::Relaxed);
                    refusal = Some(Refusal {
                        scope: i,
                        scope_name: spec.name.clone(),
                        what,
                        never: what == Exceeded::Tokens && retry.is_none(),
                        retry_after: retry,
                    });
                    break;
                }
            }
        }
        if let Some(r) = refusal {
            for (i, req, tok, slot) in taken {
                let Some(s) = self.scopes.get(i) else { continue };
                if req > 0 {
                    s.req_tat.fetch_sub(req, Ordering::AcqRel);
                }
                if tok > 0 {
                    s.tok_tat.fetch_sub(tok, Ordering::AcqRel);
                }
                if slot {
                    s.inflight.fetch_sub(1, Ordering::AcqRel);
                }
            }
            return Err(r);
        }
        Ok(taken.iter().any(|t| t.3))
    }

    pub fn release_scopes(&self, scopes: &[usize]) {
        for &i in scopes {
            // A cap set since this slot was taken (a reload) must not take
            // the count below zero; a cap lifted meanwhile leaves the slot
            // counted, which no admission reads until a cap is set again.
            if let Some(s) = self.scopes.get(i)
                && s.spec.load().concurrency.is_some()
            {
                let _ = s.inflight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
        }
        if self.waiting.load(Ordering::Acquire) > 0
            && let Some(f) = self.on_release.get()
        {
            f();
        }
    }

    /// The tightest remaining requests and tokens among `scopes`.
    pub fn headroom_of(&self, scopes: &[usize]) -> Headroom {
        let now = self.now();
        let mut h = Headroom::default();
        for &i in scopes {
            let Some(s) = self.scopes.get(i) else { continue };
            let spec = s.spec.load();
            if let Some(rate) = &spec.requests {
                let tat = s.req_tat.load(Ordering::Acquire);
                let v = (rate.amount, gcra::remaining(tat, now, rate), gcra::reset(tat, now));
                if h.requests.is_none_or(|cur| v.1 < cur.1) {
                    h.requests = Some(v);
                }
            }
            if let Some(rate) = &spec.tokens {
                let tat = s.tok_tat.load(Ordering::Acquire);
                let v = (rate.amount, gcra::remaining(tat, now, rate), gcra::reset(tat, now));
                if h.tokens.is_none_or(|cur| v.1 < cur.1) {
                    h.tokens = Some(v);
                }
            }
        }
        h
    }

    /// The limiter's clock (ns), as TATs are kept.
    pub fn now_ns(&self) -> u64 {
        self.now()
    }

    /// Would `scopes` refuse this request, judged on the TATs as they are
    /// (read-only; the shared backend's fast refusal, see
    /// `shared::limiter`)? Concurrency is not looked at.
    pub fn precheck(&self, scopes: &[usize], tokens: u64) -> Result<(), Refusal> {
        let now = self.now();
        for &i in scopes {
            let Some(s) = self.scopes.get(i) else { continue };
            let spec = s.spec.load();
            if let Some(rate) = &spec.requests
                && let Err(retry) = gcra::step(s.req_tat.load(Ordering::Acquire), now, 1, rate)
            {
                return Err(self.refusal(i, Exceeded::Requests, retry));
            }
            if let Some(rate) = &spec.tokens
                && let Err(retry) = gcra::step(s.tok_tat.load(Ordering::Acquire), now, tokens, rate)
            {
                return Err(self.refusal(i, Exceeded::Tokens, retry));
            }
        }
        Ok(())
    }

    /// Does any of `scopes` have a request or token rate?
    pub fn has_rates(&self, scopes: &[usize]) -> bool {
        scopes.iter().filter_map(|&i| self.scopes.get(i)).any(|s| {
            let spec = s.spec.load();
            spec.requests.is_some() || spec.tokens.is_some()
        })
    }

    /// Take a concurrency slot in every capped scope, or none; `Ok(true)`
    /// when slots are held.
    pub fn take_slots(&self, scopes: &[usize]) -> Result<bool, Refusal> {
        let mut taken: Vec<usize> = Vec::new();
        for &i in scopes {
            let Some(s) = self.scopes.get(i) else { continue };
            let Some(max) = s.spec.load().concurrency else { continue };
            if s.inflight.fetch_add(1, Ordering::AcqRel) >= max {
                s.inflight.fetch_sub(1, Ordering::AcqRel);
                for j in taken {
                    if let Some(s) = self.scopes.get(j) {
                        s.inflight.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                return Err(self.refusal(i, Exceeded::Concurrency, None));
            }
            taken.push(i);
        }
        Ok(!taken.is_empty())
    }

    /// A refusal by scope `i`, counted.
    pub fn refusal(&self, i: usize, what: Exceeded, retry_after: Option<Duration>) -> Refusal {
        let name = match self.scopes.get(i) {
            Some(s) => {
                s.refused.fetch_add(1, Ordering::Relaxed);
                s.spec.load().name.clone()
            }
            None => String::new(),
        };
        Refusal {
            scope: i,
            scope_name: name,
            what,
            never: what == Exceeded::Tokens && retry_after.is_none(),
            retry_after,
        }
    }

    /// Overwrite a scope's TATs with the shared state's (already in this
    /// table's clock). `None` leaves one as it is.
    pub fn mirror(&self, i: usize, req_tat: Option<u64>, tok_tat: Option<u64>) {
        let Some(s) = self.scopes.get(i) else { return };
        if let Some(t) = req_tat {
            s.req_tat.store(t, Ordering::Release);
        }
        if let Some(t) = tok_tat {
            s.tok_tat.store(t, Ordering::Release);
        }
    }

    /// One scope's live state, for `/status` (a read: nothing is taken).
    pub fn detail(&self, i: usize) -> Option<ScopeDetail> {
        let s = self.scopes.get(i).filter(|s| !s.retired.load(Ordering::Acquire))?;
        let spec = s.spec.load();
        let now = self.now();
        let rate = |r: &Option<Rate>, tat: &AtomicU64| {
            r.map(|r| {
                let t = tat.load(Ordering::Acquire);
                RateDetail {
                    limit: r.amount,
                    period_s: r.period.as_secs_f64(),
                    remaining: gcra::remaining(t, now, &r),
                    reset_s: gcra::reset(t, now).as_secs_f64(),
                }
            })
        };
        Some(ScopeDetail {
            scope: spec.name.clone(),
            requests: rate(&spec.requests, &s.req_tat),
            tokens: rate(&spec.tokens, &s.tok_tat),
            concurrency: spec
                .concurrency
                .map(|limit| ConcurrencyDetail { limit, inflight: s.inflight.load(Ordering::Relaxed) }),
            refused_total: s.refused.load(Ordering::Relaxed),
        })
    }
}

/// One scope as `/status` shows it (`rate_limiter` → `scopes[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopeDetail {
    pub scope: String,
    pub requests: Option<RateDetail>,
    pub tokens: Option<RateDetail>,
    pub concurrency: Option<ConcurrencyDetail>,
    pub refused_total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateDetail {
    pub limit: u64,
    pub period_s: f64,
    pub remaining: u64,
    pub reset_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConcurrencyDetail {
    pub limit: u32,
    pub inflight: u32,
}

impl LimiterBackend for LimiterTable {
    fn admit_now(&self, scopes: &[usize], tokens: u64) -> Option<Result<bool, Refusal>> {
        Some(self.admit_scopes(scopes, tokens))
    }

    fn release(&self, scopes: &[usize]) {
        self.release_scopes(scopes);
    }

    fn correct(&self, scopes: &[usize], estimated: u64, actual: u64) {
        self.correct_scopes(scopes, estimated, actual);
    }

    fn refund_request(&self, scopes: &[usize]) {
        self.refund_request_scopes(scopes);
    }

    fn headroom(&self, scopes: &[usize]) -> Headroom {
        self.headroom_of(scopes)
    }

    fn name(&self) -> &'static str {
        "in-process"
    }
}

/// Move a TAT so that its lead over `now` counts the same requests (or
/// tokens) at the new rate as it did at the old one, up to a full period.
fn rescale(cell: &AtomicU64, now: u64, old: Option<Rate>, new: Option<Rate>) {
    let (Some(old), Some(new)) = (old, new) else { return };
    let (from, to) = (old.interval_ns().max(1), new.interval_ns());
    let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
        let lead = u128::from(tat.saturating_sub(now));
        // At most a whole period is used (a lower limit cannot owe more).
        let scaled = u64::try_from(lead * u128::from(to) / u128::from(from)).unwrap_or(u64::MAX).min(new.period_ns());
        Some(if tat > now { now.saturating_add(scaled) } else { tat })
    });
}

/// One GCRA step by compare-and-swap; returns the TAT increment taken.
fn take(cell: &AtomicU64, now: u64, cost: u64, rate: &Rate) -> Result<u64, Option<Duration>> {
    let mut cur = cell.load(Ordering::Acquire);
    loop {
        let new = gcra::step(cur, now, cost, rate)?;
        match cell.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(new - cur.max(now)),
            Err(actual) => cur = actual,
        }
    }
}

mod settle;
#[cfg(test)]
mod tests;
