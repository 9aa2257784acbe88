//! What the `UpstreamSessions` actor knows beyond the session table it
//! owns (crate `sluice-upstream`: pool specs, counters, concurrency caps):
//! the recent errors seen per provider. No actix here: the actor in
//! `mod.rs` is a thin shell over [`SessionState`].

use std::collections::VecDeque;
use std::sync::Arc;

use sluice_upstream::SessionTable;
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

/// The actor's state: the table plus what only the actor mutates.
#[derive(Debug)]
pub struct SessionState {
    pub table: Arc<SessionTable>,
    recent_errors: Vec<VecDeque<RecordedError>>,
    errors_total: Vec<u64>,
}

impl SessionState {
    pub fn new(table: Arc<SessionTable>) -> SessionState {
        let n = table.providers.len();
        SessionState { table, recent_errors: vec![VecDeque::new(); n], errors_total: vec![0; n] }
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

    /// `/status` detail: one entry per networked provider.
    pub fn detail(&self, now: Instant) -> sonic_rs::Value {
        let mut providers = Vec::new();
        for (idx, session) in self.table.providers.iter().enumerate() {
            let Some(session) = session else { continue };
            let recent: Vec<sonic_rs::Value> = self.recent_errors[idx]
                .iter()
                .rev()
                .map(|e| {
                    sonic_rs::json!({
                        "kind": e.kind.label(),
                        "message": e.message.as_str(),
                        "age_s": now.saturating_duration_since(e.at).as_secs_f64(),
                    })
                })
                .collect();
            providers.push(sonic_rs::json!({
                "provider": session.spec.name.as_str(),
                "max_connections": session.spec.max_connections,
                "connect_timeout_ms": session.spec.connect_timeout.as_millis() as u64,
                "pool": sonic_rs::to_value(&session.stats.detail()).unwrap_or_default(),
                "errors_total": self.errors_total[idx],
                "recent_errors": recent,
            }));
        }
        sonic_rs::json!({ "providers": providers })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_upstream::SessionSpec;
    use sonic_rs::{JsonContainerTrait, JsonValueTrait};

    use super::*;

    fn spec(name: &str) -> SessionSpec {
        SessionSpec {
            name: name.into(),
            connect_timeout: Duration::from_millis(100),
            max_connections: 2,
            idle_timeout: Duration::from_secs(90),
            warm_connections: 0,
            warm_request: None,
            plain_http: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_only_recent_errors_newest_first() {
        let table = Arc::new(SessionTable::new(vec![Some(spec("a")), None]).unwrap());
        let mut st = SessionState::new(table);
        for i in 0..(RECENT_ERRORS + 3) {
            st.record_error(0, UpstreamErrorKind::Status(500), format!("e{i}"), Instant::now());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Out-of-range and session-less providers are ignored, not a panic.
        st.record_error(7, UpstreamErrorKind::Connect, "x".into(), Instant::now());
        assert_eq!(st.errors_total(0), (RECENT_ERRORS + 3) as u64);
        let d = st.detail(Instant::now());
        let s = sonic_rs::to_string(&d).unwrap();
        let last = format!("e{}", RECENT_ERRORS + 2);
        assert!(s.contains(&last));
        assert!(!s.contains("\"e0\""));
        let v: sonic_rs::Value = sonic_rs::from_str(&s).unwrap();
        let recent = v["providers"][0]["recent_errors"].as_array().unwrap();
        assert_eq!(recent.len(), RECENT_ERRORS);
        assert_eq!(recent[0]["message"].as_str(), Some(last.as_str()));
        assert_eq!(recent[0]["age_s"].as_f64(), Some(1.0));
        // Only the networked provider is listed.
        assert_eq!(v["providers"].as_array().unwrap().len(), 1);
    }
}
