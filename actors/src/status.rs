//! The `/status` view of an actor.

use actix::Message;
use serde::Serialize;

/// Ask an actor for the live state of its concern, as JSON. Each actor
/// builds a typed detail with a read of its state (`Shell::detail` takes
/// `&self`); the shell serialises it, so the registry can hold every actor's
/// answer alike.
#[derive(Debug, Message)]
#[rtype(result = "sonic_rs::Value")]
pub struct GetStatus;

/// One entry of `/status`'s `actors` list.
#[derive(Debug, Serialize)]
pub struct ActorStatus {
    pub name: &'static str,
    pub state: &'static str,
    pub restarts: u64,
    pub mailbox: u64,
    pub dropped_messages: u64,
    pub detail: sonic_rs::Value,
}
