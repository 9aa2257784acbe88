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

pub mod limiter;
pub mod link;
pub mod news;
pub mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{Notify, mpsc};

use crate::rate_limiter::SpendTable;
use crate::response_cache::replica_tier;
use crate::response_cache::{CacheKey, StoredAnswer};
use crate::status::GetStatus;
use crate::supervision::{ActorMeta, ActorRegistry, guarded};
pub use limiter::RedisLimiter;
pub use link::{Link, LinkError, check_url, redact_url};
pub use news::{News, Sinks};
pub use writer::{Job, Writer};

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
}

impl std::fmt::Debug for ReplicasSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicasSpec")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("shared.redis_url {shown}: {message}")]
pub struct ReplicasError {
    pub shown: String,
    pub message: String,
}

/// What every user of shared state holds.
#[derive(Clone)]
pub struct ReplicasHandle {
    inner: Arc<Inner>,
}

struct Inner {
    link: Arc<Link>,
    writer: Writer,
    prefix: String,
    replica: String,
    resync: Arc<Notify>,
    pending: Arc<AtomicUsize>,
    arbiter: ArbiterHandle,
    /// The writer's receiving end until [`ReplicasHandle::run`] starts it.
    rx: Mutex<Option<mpsc::Receiver<Job>>>,
    probe_interval: Duration,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    /// The cache-key seed every replica shares (0 until read from Redis).
    cache_seed: AtomicU64,
    /// Listening to the other replicas' news right now.
    subscribed: Arc<AtomicBool>,
}

impl ReplicasHandle {
    /// Start the `Replicas` actor on its own thread (`arbiter`). Redis is
    /// not needed yet: the link starts down and comes up at the first probe.
    pub fn start(
        spec: &ReplicasSpec,
        arbiter: &ArbiterHandle,
        registry: &mut ActorRegistry,
    ) -> Result<ReplicasHandle, ReplicasError> {
        let shown = redact_url(&spec.url);
        // redis-rs's parse errors do not repeat the URL, so none can leak here.
        let client = redis::Client::open(spec.url.as_str())
            .map_err(|e| ReplicasError { shown: shown.clone(), message: e.to_string() })?;
        let link = Link::new(client, spec.timeout);
        let (writer, rx) = Writer::channel();
        let replica = format!("{:08x}-{}", fastrand_u32(), std::process::id());
        let inner = Arc::new(Inner {
            link: link.clone(),
            writer,
            prefix: spec.prefix.clone(),
            replica,
            resync: Arc::new(Notify::new()),
            pending: Arc::default(),
            arbiter: arbiter.clone(),
            rx: Mutex::new(Some(rx)),
            probe_interval: spec.probe_interval,
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            cache_seed: AtomicU64::new(0),
            subscribed: Arc::default(),
        });
        let handle = ReplicasHandle { inner };
        let meta = ActorMeta::new(NAME);
        let (h, m) = (handle.clone(), meta.clone());
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| Replicas {
            handle: h,
            shown,
            meta: m,
            probing: Arc::new(AtomicBool::new(false)),
        });
        registry.register(meta, addr.recipient());
        Ok(handle)
    }

    /// Start writing and listening, once the limiter's spend table and the
    /// breakers exist.
    pub fn run(&self, spend: Arc<SpendTable>, sinks: Sinks) {
        let Some(rx) = self.inner.rx.lock().ok().and_then(|mut r| r.take()) else { return };
        let i = &self.inner;
        let mut w = writer::WriteLoop::new(i.link.clone(), i.prefix.clone(), i.replica.clone(), spend, &i.writer);
        w.pending_gauge = i.pending.clone();
        i.arbiter.spawn(w.run(rx, i.resync.clone()));
        let channel = format!("{}:news", i.prefix);
        i.arbiter.spawn(news::listen(
            i.link.clone(),
            channel,
            sinks,
            i.probe_interval,
            i.resync.clone(),
            i.subscribed.clone(),
        ));
    }

    pub fn link(&self) -> &Arc<Link> {
        &self.inner.link
    }

    pub fn is_up(&self) -> bool {
        self.inner.link.is_up()
    }

    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// This process's id in news (its own messages are ignored).
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// The shared limiter backend over `table`.
    pub fn limiter(&self, table: Arc<crate::rate_limiter::LimiterTable>) -> RedisLimiter {
        RedisLimiter::new(table, self.inner.link.clone(), self.inner.writer.clone(), &self.inner.prefix)
    }

    /// Tell the other replicas (fire-and-forget).
    pub fn publish(&self, news: News) {
        if self.is_up() {
            self.inner.writer.send(Job::Publish(news));
        }
    }

    /// The second cache tier: the entry under `key`, if Redis has it and
    /// answers within the timeout. `None` at once while Redis is down.
    pub async fn cache_get(&self, key: CacheKey) -> Option<replica_tier::Found> {
        let k = replica_tier::redis_key(&self.inner.prefix, key);
        let r: Result<(Option<Vec<u8>>, i64), _> =
            self.inner.link.call(|mut c| async move { redis::pipe().get(&k).pttl(&k).query_async(&mut c).await }).await;
        let found = match r {
            Ok((Some(raw), pttl)) if pttl > 0 => {
                replica_tier::decode(&raw).map(|(answer, stored)| replica_tier::Found {
                    answer,
                    age: Duration::from_millis(replica_tier::unix_ms().saturating_sub(stored)),
                    ttl_left: Duration::from_millis(pttl as u64),
                })
            }
            _ => None,
        };
        let c = if found.is_some() { &self.inner.cache_hits } else { &self.inner.cache_misses };
        c.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The seed second-tier cache keys are hashed with: one random value
    /// kept in Redis, the same for every replica and unknown to clients
    /// (see `replica_tier::key`). `None` until Redis has been reached once.
    pub fn cache_seed(&self) -> Option<u64> {
        Some(self.inner.cache_seed.load(Ordering::Acquire)).filter(|s| *s != 0)
    }

    /// Read the shared seed, creating it if this is the first replica.
    async fn establish_cache_seed(&self) {
        let key = format!("{}:cache-seed", self.inner.prefix);
        let mine = u64::from(fastrand_u32()) << 32 | u64::from(fastrand_u32()) | 1;
        let r: Result<String, _> = self
            .inner
            .link
            .call(|mut c| async move {
                let _: Option<String> =
                    redis::cmd("SET").arg(&key).arg(mine.to_string()).arg("NX").query_async(&mut c).await?;
                redis::cmd("GET").arg(&key).query_async(&mut c).await
            })
            .await;
        if let Some(seed) = r.ok().and_then(|s| s.parse::<u64>().ok()).filter(|s| *s != 0) {
            self.inner.cache_seed.store(seed, Ordering::Release);
        }
    }

    /// Store an answer in the second tier for `ttl` (fire-and-forget).
    pub fn cache_put(&self, key: CacheKey, answer: &StoredAnswer, ttl: Duration) {
        if !self.is_up() {
            return;
        }
        let value = replica_tier::encode(answer, replica_tier::unix_ms());
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.inner.writer.send(Job::CachePut { key: replica_tier::redis_key(&self.inner.prefix, key), value, ttl_ms });
    }
}

fn fastrand_u32() -> u32 {
    // No extra dependency for one random id: hash the time and the pid.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() as u32
}

/// The actor: probes the link and reports it.
pub struct Replicas {
    handle: ReplicasHandle,
    shown: String,
    meta: Arc<ActorMeta>,
    probing: Arc<AtomicBool>,
}

impl Replicas {
    fn probe(&mut self, ctx: &mut Context<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return; // the last probe is still waiting for Redis
        }
        let (handle, resync, probing) = (self.handle.clone(), self.handle.inner.resync.clone(), self.probing.clone());
        ctx.spawn(
            async move {
                if handle.inner.link.probe().await {
                    handle.establish_cache_seed().await;
                    resync.notify_one();
                }
                probing.store(false, Ordering::Release);
            }
            .into_actor(self),
        );
    }

    fn detail(&self) -> sonic_rs::Value {
        let i = &self.handle.inner;
        sonic_rs::json!({
            "redis": self.shown.as_str(),
            "replica": i.replica.as_str(),
            "prefix": i.prefix.as_str(),
            "probe_interval_ms": i.probe_interval.as_millis() as u64,
            "link": i.link.detail(),
            "news_subscribed": i.subscribed.load(Ordering::Relaxed),
            "pending_spend_rows": i.pending.load(Ordering::Relaxed),
            "dropped_writes": i.writer.dropped.load(Ordering::Relaxed),
            "cache": {
                "hits": i.cache_hits.load(Ordering::Relaxed),
                "misses": i.cache_misses.load(Ordering::Relaxed),
            },
        })
    }
}

impl Actor for Replicas {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::supervision::MAILBOX_CAPACITY);
        self.meta.started();
        // After a restart the spawned probe is gone: let the next one run.
        self.probing.store(false, Ordering::Release);
        self.probe(ctx);
        ctx.run_interval(self.handle.inner.probe_interval, |act, ctx| act.probe(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.meta.stopped();
    }
}

impl Supervised for Replicas {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.meta.restarting();
    }
}

impl Handler<GetStatus> for Replicas {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, ctx: &mut Self::Context) -> Self::Result {
        self.meta.dequeued();
        let meta = self.meta.clone();
        let fallback = sonic_rs::json!({ "error": "status handler failed; the actor is restarting" });
        MessageResult(guarded(&meta, ctx, fallback, || self.detail()))
    }
}
