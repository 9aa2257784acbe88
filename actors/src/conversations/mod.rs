//! `Conversations`: the Responses API's stored conversations
//! (`store`, `previous_response_id`, `GET`/`DELETE /v1/responses/{id}`),
//! with a TTL and a byte bound, owned by one actor. Why an actor and not a
//! module over a locked map: docs/decisions/responses-store.md.
//!
//! - [`state`]: the pure store (TTL, byte bound, oldest out first);
//! - [`disk`]: its copy in a redb file (`[responses] store`), written by a
//!   thread of its own, read once at start;
//! - [`shared`]: the same in Redis when replicas share state (`[shared]`);
//! - the actor does every insert, eviction, expiry and delete and
//!   publishes the live entries in a read-only snapshot the request path
//!   reads without a message, like the response cache
//!   (docs/decisions/cache.md); its handle ([`ConversationsHandle`]) puts
//!   Redis first when it is up.

pub mod codec;
mod detail;
pub mod disk;
mod handle;
pub mod shared;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

pub use detail::ConversationsDetail;
pub use handle::{ConversationsHandle, Counters, PutError, Snapshot, Stored};
pub use state::{Conversation, ConversationStore, Entry, Limits, Refused};

use crate::supervision::ActorMeta;
use crate::supervision::shell::{self, Shell, actor_shell};
use disk::{Disk, Job};

pub const NAME: &str = "conversations";

/// How often expired entries are swept out (never served once stale:
/// readers check the expiry themselves).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// What the actor starts with (`[responses]`).
#[derive(Debug, Clone, Default)]
pub struct ConversationsSpec {
    pub limits: Limits,
    /// The redb file; `None`: memory only.
    pub path: Option<std::path::PathBuf>,
}

/// Store an entry; answered once it is published.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), PutError>")]
pub struct Put {
    pub id: String,
    pub conversation: Conversation,
}

/// Remove an entry; whether it was there.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct Delete {
    pub id: String,
}

pub struct Conversations {
    store: ConversationStore,
    snapshot: Arc<Snapshot>,
    disk: Option<Disk>,
    counters: Arc<Counters>,
    meta: Arc<ActorMeta>,
    entries_gauge: metrics::Gauge,
    bytes_gauge: metrics::Gauge,
}

impl Conversations {
    fn publish_gauges(&self) {
        self.entries_gauge.set(self.store.len() as f64);
        self.bytes_gauge.set(self.store.bytes() as f64);
    }

    /// Withdraw `ids` from the snapshot and the file.
    fn forget(&self, ids: &[String]) {
        for id in ids {
            self.snapshot.remove(id);
            if let Some(d) = &self.disk {
                d.send(Job::Delete(id.clone()));
            }
        }
    }

    fn put(&mut self, msg: Put) -> Result<(), PutError> {
        let age = Duration::from_millis(codec::unix_ms().saturating_sub(msg.conversation.stored_unix_ms));
        let raw = self.disk.as_ref().map(|_| codec::encode(&msg.conversation));
        let ins = self.store.insert(msg.id.clone(), msg.conversation, age, Instant::now())?;
        self.forget(&ins.evicted);
        if let Some(entry) = ins.entry {
            self.snapshot.insert(msg.id.clone(), entry);
        }
        if let (Some(d), Some(raw)) = (&self.disk, raw) {
            d.send(Job::Put(msg.id, raw));
        }
        self.publish_gauges();
        Ok(())
    }

    fn delete(&mut self, id: String) -> bool {
        let was = self.store.remove(&id);
        self.forget(&[id]);
        self.publish_gauges();
        was
    }

    fn sweep(&mut self) {
        let gone = self.store.expire(Instant::now());
        if !gone.is_empty() {
            self.forget(&gone);
            self.publish_gauges();
        }
    }
}

impl Shell for Conversations {
    type Detail = ConversationsDetail;

    fn meta(&self) -> &Arc<ActorMeta> {
        &self.meta
    }

    fn detail(&self) -> ConversationsDetail {
        ConversationsDetail::read(&self.store, self.disk.as_ref().map(|d| d.path()), &self.counters)
    }

    /// The store, its snapshot and the file are kept across a restart; the
    /// sweep, dropped with the other spawned work, is re-armed.
    fn on_start(&mut self, ctx: &mut Context<Self>) {
        shell::run_interval(ctx, SWEEP_EVERY, |act, _| act.sweep());
        self.publish_gauges();
    }
}

actor_shell!(Conversations);

impl Handler<Put> for Conversations {
    type Result = Result<(), PutError>;

    fn handle(&mut self, msg: Put, ctx: &mut Self::Context) -> Self::Result {
        shell::handle(self, ctx, Err(PutError::Unavailable), |act, _| act.put(msg))
    }
}

impl Handler<Delete> for Conversations {
    type Result = bool;

    fn handle(&mut self, msg: Delete, ctx: &mut Self::Context) -> bool {
        shell::handle(self, ctx, false, |act, _| act.delete(msg.id))
    }
}
