//! The typed API in front of the `Conversations` actor: reads from its
//! published snapshot (no message), stores through it, and Redis first
//! when replicas share state.
//!
//! With `[shared]`, an entry goes to Redis while Redis is up, so any
//! replica can continue the conversation; while it is down the entry is
//! kept in process instead (nothing here makes a request fail), and reads
//! look in both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use dashmap::DashMap;
use tokio::time::Instant;

use super::disk::Disk;
use super::shared::SharedConversations;
use super::state::{Conversation, ConversationStore, Entry, Limits, Refused};
use super::{Conversations, ConversationsSpec, Delete, NAME, Put, codec};
use crate::replicas::ReplicasHandle;
use crate::supervision::{ActorMeta, ActorRegistry};

/// How long a store may wait for the actor.
const PUT_TIMEOUT: Duration = Duration::from_secs(2);

/// The published entries: the actor inserts and removes, handlers read.
pub type Snapshot = DashMap<String, Arc<Entry>>;

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The Response object.
    pub response: Bytes,
    /// The conversation up to and including it (a JSON array of items).
    pub items: Bytes,
}

/// Why a conversation was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    #[error("the conversation is {size} bytes, more than responses.max_entry_bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("the conversation store did not answer")]
    Unavailable,
}

impl From<Refused> for PutError {
    fn from(r: Refused) -> PutError {
        match r {
            Refused::TooLarge { size, max } => PutError::TooLarge { size, max },
        }
    }
}

/// Counters the request path bumps, read for `/status`; kept outside the
/// actor so they survive a restart.
#[derive(Debug, Default)]
pub struct Counters {
    pub stored: AtomicU64,
    pub stored_shared: AtomicU64,
    pub too_large: AtomicU64,
    pub found: AtomicU64,
    pub not_found: AtomicU64,
    pub deleted: AtomicU64,
    /// Redis was configured but could not be used: kept in process instead.
    pub shared_fallbacks: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone)]
pub struct ConversationsHandle {
    addr: Addr<Conversations>,
    meta: Arc<ActorMeta>,
    snapshot: Arc<Snapshot>,
    limits: Limits,
    shared: Option<SharedConversations>,
    counters: Arc<Counters>,
}

impl ConversationsHandle {
    /// Start the actor: open the redb file when one is configured (and
    /// load what it keeps that is still fresh).
    pub fn start(
        spec: ConversationsSpec,
        replicas: Option<&ReplicasHandle>,
        arbiter: &ArbiterHandle,
        registry: &mut ActorRegistry,
    ) -> Result<ConversationsHandle, super::disk::DiskError> {
        let mut store = ConversationStore::new(spec.limits);
        let snapshot = Arc::new(Snapshot::new());
        let disk = match &spec.path {
            Some(path) => {
                let (disk, loaded) = Disk::open(path, spec.limits.ttl)?;
                let now = Instant::now();
                for (id, c, age) in loaded {
                    if let Ok(ins) = store.insert(id.clone(), c, age, now) {
                        for gone in &ins.evicted {
                            snapshot.remove(gone);
                        }
                        if let Some(e) = ins.entry {
                            snapshot.insert(id, e);
                        }
                    }
                }
                Some(disk)
            }
            None => None,
        };
        let meta = ActorMeta::new(NAME);
        let counters = Arc::new(Counters::default());
        let (m, s, c) = (meta.clone(), snapshot.clone(), counters.clone());
        let mut disk = Some(disk);
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| Conversations {
            store,
            snapshot: s,
            disk: disk.take().flatten(),
            counters: c,
            meta: m,
            entries_gauge: metrics::gauge!("sluice_responses_stored"),
            bytes_gauge: metrics::gauge!("sluice_responses_stored_bytes"),
        });
        registry.register(meta.clone(), &addr);
        let shared = replicas.map(|r| SharedConversations::new(r.link().clone(), r.prefix()));
        Ok(ConversationsHandle { addr, meta, snapshot, limits: spec.limits, shared, counters })
    }

    /// The conversation stored under `id` by `owner`, if it is still fresh.
    /// Another key's entry reads as absent: ids are not secrets, keys are.
    pub async fn get(&self, id: &str, owner: &str) -> Option<Stored> {
        let found = self.find(id).await.filter(|c| c.owner == owner);
        bump(if found.is_some() { &self.counters.found } else { &self.counters.not_found });
        found.map(|c| Stored { response: c.response, items: c.items })
    }

    async fn find(&self, id: &str) -> Option<Conversation> {
        if let Some(s) = self.shared.as_ref().filter(|s| s.is_up())
            && let Ok(Some(c)) = s.get(id).await
        {
            return Some(c);
        }
        let e = self.snapshot.get(id)?.value().clone();
        e.is_fresh(Instant::now()).then(|| e.conversation.clone())
    }

    /// Store `response` and the conversation up to it (`items`) under `id`
    /// for `owner`; done once a read anywhere would find it.
    pub async fn put(&self, id: String, owner: String, response: Bytes, items: Bytes) -> Result<(), PutError> {
        let conversation = Conversation { owner, response, items, stored_unix_ms: codec::unix_ms() };
        let size = conversation.size(&id);
        if size > self.limits.max_entry_bytes {
            bump(&self.counters.too_large);
            return Err(PutError::TooLarge { size, max: self.limits.max_entry_bytes });
        }
        if let Some(s) = &self.shared {
            match s.put(&id, &conversation, self.limits).await {
                Ok(_) => {
                    bump(&self.counters.stored_shared);
                    return Ok(());
                }
                Err(_) => bump(&self.counters.shared_fallbacks),
            }
        }
        let put = Put { id, conversation };
        match self.meta.ask(&self.addr, put, PUT_TIMEOUT).await {
            Ok(Ok(())) => {
                bump(&self.counters.stored);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PutError::Unavailable),
        }
    }

    /// Delete `owner`'s entry `id` wherever it is kept; whether there was one.
    pub async fn delete(&self, id: &str, owner: &str) -> bool {
        if self.find(id).await.is_none_or(|c| c.owner != owner) {
            return false;
        }
        if let Some(s) = self.shared.as_ref().filter(|s| s.is_up()) {
            let _ = s.delete(id).await;
        }
        if self.snapshot.contains_key(id) {
            let _ = self.meta.ask(&self.addr, Delete { id: id.to_owned() }, PUT_TIMEOUT).await;
        }
        bump(&self.counters.deleted);
        true
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}
