//! The conversations as `/status` shows it: a read of the store, and of
//! the request path's counters. Ids and contents never appear.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::handle::Counters;
use super::state::ConversationStore;

#[derive(Debug, Serialize)]
pub struct ConversationsDetail {
    /// Kept in this process (with `[shared]`, only while Redis was down).
    pub entries: usize,
    pub bytes: usize,
    pub max_bytes: usize,
    pub max_entry_bytes: usize,
    pub ttl_ms: u64,
    /// The redb file, when conversations are kept on disk too.
    pub file: Option<String>,
    pub stored: u64,
    pub stored_shared: u64,
    pub shared_fallbacks: u64,
    pub too_large: u64,
    pub evictions: u64,
    pub found: u64,
    pub not_found: u64,
    pub deleted: u64,
}

impl ConversationsDetail {
    pub fn read(store: &ConversationStore, file: Option<&Path>, c: &Counters) -> ConversationsDetail {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let limits = store.limits();
        ConversationsDetail {
            entries: store.len(),
            bytes: store.bytes(),
            max_bytes: limits.max_bytes,
            max_entry_bytes: limits.max_entry_bytes,
            ttl_ms: u64::try_from(limits.ttl.as_millis()).unwrap_or(u64::MAX),
            file: file.map(|p| p.display().to_string()),
            stored: get(&c.stored),
            stored_shared: get(&c.stored_shared),
            shared_fallbacks: get(&c.shared_fallbacks),
            too_large: get(&c.too_large),
            evictions: store.evictions(),
            found: get(&c.found),
            not_found: get(&c.not_found),
            deleted: get(&c.deleted),
        }
    }
}
