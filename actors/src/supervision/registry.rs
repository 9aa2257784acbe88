//! Every running actor, for `/status`, `/health` and the mailbox gauges.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::ActorMeta;
use super::shell::Shell;
use crate::status::{ActorStatus, GetStatus};

#[derive(Clone, Default)]
pub struct ActorRegistry {
    entries: Vec<RegistryEntry>,
}

#[derive(Clone)]
struct RegistryEntry {
    meta: Arc<ActorMeta>,
    status: Recipient<GetStatus>,
    #[cfg(feature = "fault-injection")]
    panic: Recipient<super::InjectPanic>,
    #[cfg(feature = "fault-injection")]
    stall: Recipient<super::InjectStall>,
}

impl ActorRegistry {
    /// Register an actor started in its shell (every actor is).
    pub fn register<A: Shell>(&mut self, meta: Arc<ActorMeta>, addr: &Addr<A>) {
        self.entries.push(RegistryEntry {
            meta,
            status: addr.clone().recipient(),
            #[cfg(feature = "fault-injection")]
            panic: addr.clone().recipient(),
            #[cfg(feature = "fault-injection")]
            stall: addr.clone().recipient(),
        });
    }

    pub fn metas(&self) -> impl Iterator<Item = &Arc<ActorMeta>> {
        self.entries.iter().map(|e| &e.meta)
    }

    /// Publish mailbox depth per actor as gauges (called before a scrape).
    pub fn publish_gauges(&self) {
        for e in &self.entries {
            metrics::gauge!("sluice_actor_mailbox_depth", "actor" => e.meta.name()).set(e.meta.mailbox() as f64);
        }
    }

    /// Test builds only: make the actor called `name` panic in a handler.
    /// False when no actor has that name.
    #[cfg(feature = "fault-injection")]
    pub fn inject_panic(&self, name: &str) -> bool {
        match self.entries.iter().find(|e| e.meta.name() == name) {
            Some(e) => {
                e.meta.tell_to(&e.panic, super::InjectPanic);
                true
            }
            None => false,
        }
    }

    /// Test builds only: block the actor called `name` for `ms`, then fill
    /// its mailbox with no-op messages until it refuses one. The number of
    /// messages queued, or `None` when no actor has that name.
    #[cfg(feature = "fault-injection")]
    pub fn inject_stall(&self, name: &str, ms: u64) -> Option<usize> {
        let e = self.entries.iter().find(|e| e.meta.name() == name)?;
        e.meta.tell_to(&e.stall, super::InjectStall { ms });
        let mut queued = 0;
        while queued <= 2 * super::MAILBOX_CAPACITY && e.meta.tell_to(&e.stall, super::InjectStall { ms: 0 }) {
            queued += 1;
        }
        Some(queued)
    }

    /// Ask every actor for its live detail. An actor that does not answer in
    /// `timeout` is reported as such rather than holding up `/status`.
    pub async fn status(&self, timeout: Duration) -> Vec<ActorStatus> {
        let asks = self.entries.iter().map(|e| {
            let meta = e.meta.clone();
            let status = e.status.clone();
            async move {
                meta.enqueued();
                let reply = status.send(GetStatus).timeout(timeout).await;
                let (detail, responsive) = match reply {
                    Ok(detail) => (detail, true),
                    Err(err) => {
                        if let MailboxError::Closed = err {
                            meta.dequeued();
                        }
                        (sonic_rs::json!({ "error": err.to_string() }), false)
                    }
                };
                ActorStatus {
                    name: meta.name(),
                    state: if responsive || meta.is_failed() { meta.state().as_str() } else { "unresponsive" },
                    restarts: meta.restarts(),
                    mailbox: meta.mailbox(),
                    dropped_messages: meta.dropped(),
                    detail,
                }
            }
        });
        futures_util::future::join_all(asks).await
    }
}
