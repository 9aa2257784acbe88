//! The limiter as `/status` shows it: a read of every scope, the queue and
//! the spend, taking nothing.

use serde::Serialize;

use super::spend::KeySpendDetail;
use super::state::QueueDetail;
use super::table::ScopeDetail;

#[derive(Debug, Serialize)]
pub struct LimiterDetail {
    /// `in-process`, or `redis` when the replicas share limits.
    pub backend: &'static str,
    pub scopes: Vec<ScopeDetail>,
    pub queue: QueueDetail,
    pub spend: Vec<KeySpendDetail>,
    /// Where spend is persisted, if anywhere.
    pub spend_store: Option<String>,
}
