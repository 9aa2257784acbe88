//! What the `UpstreamSessions` actor owns, as pure state: the session table
//! (crate `sluice-upstream`: each provider's pool spec, live counters and
//! concurrency cap), the registry of every worker's pools and their
//! warm-up, and the recent errors seen per provider. No actix here: the
//! actor in `mod.rs` is a thin shell over [`SessionState`].

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;
use sluice_upstream::{PoolDetail, SessionTable};
use tokio::time::Instant;

/// What kind of upstream failure a handler saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Protocol,
    Status(u16),
}

impl UpstreamErrorKind {
    pub fn label(self) -> String {
        match self {
            UpstreamErrorKind::Connect => "connect".into(),
            UpstreamErrorKind::Timeout => "timeout".into(),
            UpstreamErrorKind::Protocol => "protocol".into(),
            UpstreamErrorKind::Status(s) => format!("status_{s}"),
        }
    }
}

#[derive(Debug, Clone)]
struct RecordedError {
    kind: UpstreamErrorKind,
    message: String,
    at: Instant,
}

/// How many recent errors `/status` keeps per provider.
pub const RECENT_ERRORS: usize = 8;

/// Where one worker's pool of one provider stands with its warm-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warm {
    /// The provider opens no connections at start.
    Off,
    /// Ordered; the worker has not reported yet.
    Ordered,
    /// Reported: connections opened, and the first error if any failed.
    Done { opened: usize, error: Option<String> },
}

/// One worker's pools, as the actor knows them.
#[derive(Debug, Clone)]
pub struct WorkerPools {
    /// Per provider, indexed like the session table.
    pub warm: Vec<Warm>,
}

/// The actor's state: the table plus what only the actor mutates.
#[derive(Debug)]
pub struct SessionState {
    pub table: Arc<SessionTable>,
    workers: Vec<WorkerPools>,
    recent_errors: Vec<VecDeque<RecordedError>>,
    errors_total: Vec<u64>,
    /// By provider id: does a current snapshot use it? (Hidden from
    /// `/status` when not; its pools are dropped on every worker.)
    live: Vec<bool>,
}

/// The sessions as `/status` shows them (`upstream_sessions`).
#[derive(Debug, Serialize)]
pub struct SessionsDetail {
    /// One entry per networked provider.
    pub providers: Vec<ProviderDetail>,
    /// The registry: each HTTP worker's pools and where their warm-up stands.
    pub workers: Vec<WorkerDetail>,
}

#[derive(Debug, Serialize)]
pub struct WorkerDetail {
    pub worker: usize,
    /// Only the providers that warm connections at start.
    pub warm: Vec<WarmDetail>,
}

#[derive(Debug, Serialize)]
pub struct WarmDetail {
    pub provider: String,
    /// `ordered` (not reported yet) or `done`.
    pub state: &'static str,
    pub opened: Option<usize>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProviderDetail {
    pub provider: String,
    pub max_connections: usize,
    pub connect_timeout_ms: u64,
    pub pool: PoolDetail,
    pub errors_total: u64,
    /// Newest first.
    pub recent_errors: Vec<ErrorDetail>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    pub kind: String,
    pub message: String,
    pub age_s: f64,
}

impl SessionState {
    pub fn new(table: Arc<SessionTable>) -> SessionState {
        let n = table.len();
        SessionState {
            table,
            workers: Vec::new(),
            recent_errors: vec![VecDeque::new(); n],
            errors_total: vec![0; n],
            live: vec![true; n],
        }
    }

    /// A new snapshot uses the providers `live` (ids of the session table,
    /// which may have grown). Returns, per registered worker, the new
    /// providers whose pools it must warm, and the providers whose pools
    /// every worker must drop.
    pub fn providers(&mut self, live: &[usize]) -> (Vec<(usize, usize)>, Vec<usize>) {
        let n = self.table.len();
        let before = self.live.len();
        self.recent_errors.resize(n, VecDeque::new());
        self.errors_total.resize(n, 0);
        let was: Vec<bool> = std::mem::replace(&mut self.live, vec![false; n]);
        for &p in live {
            if let Some(l) = self.live.get_mut(p) {
                *l = true;
            }
        }
        let retired: Vec<usize> = was
            .iter()
            .enumerate()
            .filter(|(p, w)| **w && !self.live.get(*p).copied().unwrap_or(false))
            .map(|(p, _)| p)
            .collect();
        let mut orders = Vec::new();
        for (wi, w) in self.workers.iter_mut().enumerate() {
            for p in w.warm.len()..n {
                let warms = p >= before
                    && self.live.get(p).copied().unwrap_or(false)
                    && self.table.get(p).is_some_and(|s| s.spec.warms());
                w.warm.push(if warms { Warm::Ordered } else { Warm::Off });
                if warms {
                    orders.push((wi, p));
                }
            }
            for &p in &retired {
                if let Some(slot) = w.warm.get_mut(p) {
                    *slot = Warm::Off;
                }
            }
        }
        (orders, retired)
    }

    /// A worker built its pools: register them. Returns the worker's id and
    /// the providers whose pools it must warm now.
    pub fn join_worker(&mut self) -> (usize, Vec<usize>) {
        let warm: Vec<Warm> = self
            .table
            .providers
            .iter()
            .map(|(p, s)| {
                let live = self.live.get(p).copied().unwrap_or(true);
                if live && s.as_ref().is_some_and(|s| s.spec.warms()) { Warm::Ordered } else { Warm::Off }
            })
            .collect();
        let orders = warm.iter().enumerate().filter(|(_, w)| **w == Warm::Ordered).map(|(i, _)| i).collect();
        self.workers.push(WorkerPools { warm });
        (self.workers.len() - 1, orders)
    }

    /// A worker's warm-up of one provider finished; a failure is an
    /// upstream connection error like any other.
    pub fn warmed(&mut self, worker: usize, provider: usize, opened: usize, error: Option<String>, now: Instant) {
        if let Some(e) = &error {
            self.record_error(provider, UpstreamErrorKind::Connect, format!("warm-up: {e}"), now);
        }
        if let Some(w) = self.workers.get_mut(worker).and_then(|w| w.warm.get_mut(provider)) {
            *w = Warm::Done { opened, error };
        }
    }

    /// Every registered worker's pools.
    pub fn workers(&self) -> &[WorkerPools] {
        &self.workers
    }

    /// Remember an upstream failure; only the newest [`RECENT_ERRORS`] are kept.
    pub fn record_error(&mut self, provider: usize, kind: UpstreamErrorKind, message: String, now: Instant) {
        let (Some(log), Some(total)) = (self.recent_errors.get_mut(provider), self.errors_total.get_mut(provider))
        else {
            return;
        };
        *total += 1;
        if log.len() == RECENT_ERRORS {
            log.pop_front();
        }
        log.push_back(RecordedError { kind, message, at: now });
    }

    pub fn errors_total(&self, provider: usize) -> u64 {
        self.errors_total.get(provider).copied().unwrap_or(0)
    }

    /// `/status` detail: one entry per networked provider (a read).
    pub fn detail(&self, now: Instant) -> SessionsDetail {
        let providers = self
            .table
            .providers
            .iter()
            .filter(|(idx, _)| self.live.get(*idx).copied().unwrap_or(true))
            .filter_map(|(idx, s)| s.as_ref().map(|s| (idx, s)))
            .map(|(idx, session)| ProviderDetail {
                provider: session.spec.name.clone(),
                max_connections: session.spec.max_connections,
                connect_timeout_ms: session.spec.connect_timeout.as_millis() as u64,
                pool: session.stats.detail(),
                errors_total: self.errors_total(idx),
                recent_errors: self
                    .recent_errors
                    .get(idx)
                    .into_iter()
                    .flatten()
                    .rev()
                    .map(|e| ErrorDetail {
                        kind: e.kind.label(),
                        message: e.message.clone(),
                        age_s: now.saturating_duration_since(e.at).as_secs_f64(),
                    })
                    .collect(),
            })
            .collect();
        let name = |p: usize| self.table.get(p).map(|s| s.spec.name.clone()).unwrap_or_default();
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(worker, w)| WorkerDetail {
                worker,
                warm: w
                    .warm
                    .iter()
                    .enumerate()
                    .filter_map(|(p, warm)| match warm {
                        Warm::Off => None,
                        Warm::Ordered => {
                            Some(WarmDetail { provider: name(p), state: "ordered", opened: None, error: None })
                        }
                        Warm::Done { opened, error } => Some(WarmDetail {
                            provider: name(p),
                            state: "done",
                            opened: Some(*opened),
                            error: error.clone(),
                        }),
                    })
                    .collect(),
            })
            .collect();
        SessionsDetail { providers, workers }
    }
}

#[cfg(test)]
mod tests;
