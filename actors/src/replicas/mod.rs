//! `Replicas`: what several gateway replicas behind one load balancer share
//! through Redis when `[shared] redis_url` is set — rate limits, spend, a
//! second cache tier, and news of failing deployments
//! (docs/decisions/shared-state.md). The config section keeps its name,
//! `[shared]` (a public contract); in code, "shared" alone meant too many
//! things, so this concern is named for what it is: state across replicas.
//!
//! - [`link`]: the connection, its timeout, and whether it is up;
//! - [`limiter`]: the limiter backend (an atomic Lua GCRA step per check);
//! - [`writer`]: writes no request waits for (spend, corrections, cache
//!   entries, news), on this concern's own thread;
//! - [`news`]: pub/sub between replicas.
//!
//! The entry format of the second cache tier lives beside the cache it
//! extends (`response_cache::replica_tier`); this module only moves the
//! bytes.
//!
//! The actor itself owns the link's lifecycle: it probes Redis every
//! `probe_interval_ms`, brings it back in when it answers (and has the
//! writer resync), and reports the link in `/status`. Nothing here ever
//! makes a request fail: when Redis cannot be used, every caller has an
//! in-process answer.

pub mod connect;
mod handle;
pub mod limiter;
pub mod link;
pub mod news;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;

pub use connect::{Connector, SentinelSpec};
pub use handle::ReplicasHandle;
pub use limiter::RedisLimiter;
pub use link::{Link, LinkDetail, LinkError, check_url, redact_url, url_host};
pub use news::{AccountsEvent, News, Sinks};
pub use writer::{Job, Writer};

use crate::supervision::ActorMeta;
use crate::supervision::shell::{self, Shell, actor_shell};

/// Its name in `/status` predates the module's: kept, as a public contract.
pub const NAME: &str = "shared_state";

/// `[shared]`, as the actors need it.
#[derive(Clone)]
pub struct ReplicasSpec {
    /// The URL to connect with (may hold a password: never printed).
    pub url: String,
    /// Bound of every call a request waits for.
    pub timeout: Duration,
    /// How often Redis is checked (and, when down, reconnected).
    pub probe_interval: Duration,
    /// Prefix of every Redis key and channel (several clusters, one Redis).
    pub prefix: String,
    /// PEM certificates to verify a TLS server with (`ca_file`); `None`:
    /// the Mozilla and system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Find the master through these sentinels (`url` then gives only the
    /// master's scheme, credentials and database).
    pub sentinel: Option<SentinelSpec>,
}

impl std::fmt::Debug for ReplicasSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicasSpec")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .field("sentinel", &self.sentinel.as_ref().map(|s| &s.master_name))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("shared.redis_url {shown}: {message}")]
pub struct ReplicasError {
    pub shown: String,
    pub message: String,
}

/// The actor: probes the link and reports it.
pub struct Replicas {
    handle: ReplicasHandle,
    /// The Redis URL with any password masked.
    shown: String,
    meta: Arc<ActorMeta>,
    /// A probe is waiting for Redis: the next tick does not send another.
    probing: bool,
}

/// The link as `/status` shows it (`shared_state`).
#[derive(Debug, Serialize)]
pub struct ReplicasDetail {
    pub redis: String,
    pub replica: String,
    pub prefix: String,
    pub probe_interval_ms: u64,
    pub link: LinkDetail,
    pub news_subscribed: bool,
    pub pending_spend_rows: usize,
    pub dropped_writes: u64,
    pub cache: TierCounts,
}

/// Lookups of the second cache tier.
#[derive(Debug, Serialize)]
pub struct TierCounts {
    pub hits: u64,
    pub misses: u64,
}

impl Replicas {
    fn probe(&mut self, ctx: &mut Context<Self>) {
        if self.probing {
            return; // the last probe is still waiting for Redis
        }
        self.probing = true;
        let handle = self.handle.clone();
        let probe = async move {
            if handle.inner.link.probe().await {
                handle.establish_cache_seed().await;
                handle.inner.resync.notify_one();
            }
        };
        shell::spawn(ctx, probe, |(), act: &mut Self, _| act.probing = false);
    }
}

impl Shell for Replicas {
    type Detail = ReplicasDetail;

    fn meta(&self) -> &Arc<ActorMeta> {
        &self.meta
    }

    fn detail(&self) -> ReplicasDetail {
        let i = &self.handle.inner;
        ReplicasDetail {
            redis: self.shown.clone(),
            replica: i.replica.clone(),
            prefix: i.prefix.clone(),
            probe_interval_ms: i.probe_interval.as_millis() as u64,
            link: i.link.detail(),
            news_subscribed: i.subscribed.load(Ordering::Relaxed),
            pending_spend_rows: i.pending.load(Ordering::Relaxed),
            dropped_writes: i.writer.dropped.load(Ordering::Relaxed),
            cache: TierCounts {
                hits: i.cache_hits.load(Ordering::Relaxed),
                misses: i.cache_misses.load(Ordering::Relaxed),
            },
        }
    }

    fn on_start(&mut self, ctx: &mut Context<Self>) {
        self.probe(ctx);
        let every = self.handle.inner.probe_interval;
        shell::run_interval(ctx, every, |act, ctx| act.probe(ctx));
    }

    /// The probe in flight was dropped with the other spawned work.
    fn on_restart(&mut self) {
        self.probing = false;
    }
}

actor_shell!(Replicas);
