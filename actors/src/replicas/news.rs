//! News between replicas over Redis pub/sub: a circuit opened, a deployment
//! answered 429 with Retry-After, a key's spend went up.
//!
//! News is advice, not state: a replica that hears a deployment is failing
//! skips it for the announced time (as a cool-down of its own breaker's
//! gate), but its breaker keeps deciding from its own outcomes. A replica
//! that was not subscribed when news went out simply misses it; spend is
//! also re-read from Redis whenever the link comes back.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::link::Link;
use crate::accounts::AccountRecord;
use crate::circuit_breakers::BreakersHandle;
use crate::rate_limiter::SpendTable;

/// One message on the news channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum News {
    /// A replica's breaker opened this deployment for `for_ms`.
    CircuitOpen { from: String, deployment: String, for_ms: u64 },
    /// A deployment answered 429; it asked for `for_ms` of quiet.
    CoolDown { from: String, deployment: String, for_ms: u64 },
    /// A key's totals after a replica added spend (nano-USD).
    Spend { from: String, key: String, model: String, day: u32, today: u64, month: u64, total: u64 },
    /// A runtime key or team was created, changed or deleted (its record,
    /// also stored in Redis: see `ReplicasHandle::put_account`).
    Account { from: String, record: Box<AccountRecord> },
}

impl News {
    fn from(&self) -> &str {
        match self {
            News::CircuitOpen { from, .. }
            | News::CoolDown { from, .. }
            | News::Spend { from, .. }
            | News::Account { from, .. } => from,
        }
    }
}

/// Where news is applied in this replica.
pub struct Sinks {
    pub replica: String,
    pub breakers: BreakersHandle,
    /// Keys and models are looked up by name here (their slots are given
    /// at runtime: reloads, the admin API).
    pub spend: Arc<SpendTable>,
    /// Longest cool-down taken from news (the breaker's own cap).
    pub max_cooldown: Duration,
    /// Where runtime keys and teams heard of go (the gateway applies them).
    pub accounts: tokio::sync::mpsc::UnboundedSender<AccountsEvent>,
}

/// What the gateway learns of runtime keys and teams from the replicas.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountsEvent {
    /// A record another replica stored.
    Record(Box<AccountRecord>),
    /// The news subscription (re)started: news was missed meanwhile. Push
    /// what this replica holds, then replay what Redis holds.
    Resync,
}

impl Sinks {
    /// Apply one message (ours, echoed back, is ignored).
    pub fn apply(&self, news: &News) {
        if news.from() == self.replica {
            return;
        }
        match news {
            News::CircuitOpen { deployment, for_ms, .. } | News::CoolDown { deployment, for_ms, .. } => {
                let d = Duration::from_millis(*for_ms).min(self.max_cooldown);
                self.breakers.remote_hold(deployment.clone(), d);
                metrics::counter!("sluice_shared_news_total", "kind" => kind(news)).increment(1);
            }
            News::Spend { key, model, day, today, month, total, .. } => {
                if let Some(k) = self.spend.find_key(key) {
                    self.spend.observe(k, self.spend.find_model(model), *day, *today, *month, *total);
                }
            }
            News::Account { record, .. } => {
                let _ = self.accounts.send(AccountsEvent::Record(record.clone()));
            }
        }
    }
}

fn kind(n: &News) -> &'static str {
    match n {
        News::CircuitOpen { .. } => "circuit_open",
        News::CoolDown { .. } => "cool_down",
        News::Spend { .. } => "spend",
        News::Account { .. } => "account",
    }
}

/// Listen to the news channel for as long as the process runs: subscribe
/// whenever the link is up, and again after the connection drops.
pub async fn listen(
    link: Arc<Link>,
    channel: String,
    sinks: Arc<Sinks>,
    retry: Duration,
    resync: Arc<tokio::sync::Notify>,
    subscribed: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    loop {
        if !link.is_up() {
            tokio::time::sleep(retry).await;
            continue;
        }
        let mut pubsub = match link.pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "cannot open the news subscription yet");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(&channel).await {
            tracing::debug!(error = %e, "cannot subscribe to the news channel yet");
            tokio::time::sleep(retry).await;
            continue;
        }
        // News sent before this moment was missed: re-read the totals,
        // and the runtime keys.
        resync.notify_one();
        let _ = sinks.accounts.send(AccountsEvent::Resync);
        subscribed.store(true, Ordering::Release);
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            match sonic_rs::from_slice::<News>(msg.get_payload_bytes()) {
                Ok(news) => sinks.apply(&news),
                Err(e) => tracing::debug!(error = %e, "ignoring a news message that is not ours"),
            }
        }
        // The connection dropped (Redis went away): try again later.
        subscribed.store(false, Ordering::Release);
        tokio::time::sleep(retry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn news_round_trips_as_json() {
        let n = News::CoolDown { from: "r1".into(), deployment: "openai/gpt-4o".into(), for_ms: 2000 };
        let s = sonic_rs::to_string(&n).unwrap();
        assert_eq!(s, r#"{"kind":"cool_down","from":"r1","deployment":"openai/gpt-4o","for_ms":2000}"#);
        assert_eq!(sonic_rs::from_str::<News>(&s).unwrap(), n);
        let big = News::Spend {
            from: "r".into(),
            key: "k\"q".into(),
            model: "m".into(),
            day: 20_000,
            today: u64::MAX,
            month: 1,
            total: 2,
        };
        let s = sonic_rs::to_string(&big).unwrap();
        assert_eq!(sonic_rs::from_str::<News>(&s).unwrap(), big, "exact u64 and escaped names");
    }
}
