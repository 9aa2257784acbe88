//! `SharedState`: the state several replicas share through Redis when
//! `[shared] redis_url` is set — rate limits, spend, a second cache tier,
//! and news of failing deployments (docs/decisions/shared-state.md).
//!
//! - [`link`]: the connection, its timeout, and whether it is up;
//! - [`limiter`]: the limiter backend (an atomic Lua GCRA step per check);
//! - [`writer`]: writes no request waits for (spend, corrections, cache
//!   entries, news), on this concern's own thread;
//! - [`news`]: pub/sub between replicas;
//! - [`cache`]: the entry format of the second cache tier.
//!
//! The actor itself owns the link's lifecycle: it probes Redis every
//! `probe_interval_ms`, brings it back in when it answers (and has the
//! writer resync), and reports the link in `/status`. Nothing here ever
//! makes a request fail: when Redis cannot be used, every caller has an
//! in-process answer.

pub mod cache;
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
use crate::response_cache::{Answer, CacheKey};
use crate::status::GetStatus;
use crate::supervision::{ActorMeta, ActorRegistry, guarded};
pub use limiter::SharedLimiter;
pub use link::{Link, LinkError, check_url, redact_url};
pub use news::{News, Sinks};
pub use writer::{Job, Writer};

pub const NAME: &str = "shared_state";

/// `[shared]`, as the actors need it.
#[derive(Clone)]
pub struct SharedSpec {
    /// The URL to connect with (may hold a password: never printed).
    pub url: String,
    /// Bound of every call a request waits for.
    pub timeout: Duration,
    /// How often Redis is checked (and, when down, reconnected).
    pub probe_interval: Duration,
    /// Prefix of every Redis key and channel (several clusters, one Redis).
    pub prefix: String,
}

impl std::fmt::Debug for SharedSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSpec")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("shared.redis_url {shown}: {message}")]
pub struct SharedError {
    pub shown: String,
    pub message: String,
}

/// What every user of shared state holds.
#[derive(Clone)]
pub struct SharedHandle {
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
    /// The writer's receiving end until [`SharedHandle::run`] starts it.
    rx: Mutex<Option<mpsc::Receiver<Job>>>,
    probe_interval: Duration,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    /// The cache-key seed every replica shares (0 until read from Redis).
    cache_seed: AtomicU64,
    /// Listening to the other replicas' news right now.
    subscribed: Arc<AtomicBool>,
}

impl SharedHandle {
    /// Start the `SharedState` actor on its own thread (`arbiter`). Redis is
    /// not needed yet: the link starts down and comes up at the first probe.
    pub fn start(
        spec: &SharedSpec,
        arbiter: &ArbiterHandle,
        registry: &mut ActorRegistry,
    ) -> Result<SharedHandle, SharedError> {
        let shown = redact_url(&spec.url);
        // redis-rs's parse errors do not repeat the URL, so none can leak here.
        let client = redis::Client::open(spec.url.as_str())
            .map_err(|e| SharedError { shown: shown.clone(), message: e.to_string() })?;
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
        let handle = SharedHandle { inner };
        let meta = ActorMeta::new(NAME);
        let (h, m) = (handle.clone(), meta.clone());
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| SharedState {
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
    pub fn limiter(&self, table: Arc<crate::rate_limiter::LimiterTable>) -> SharedLimiter {
        SharedLimiter::new(table, self.inner.link.clone(), self.inner.writer.clone(), &self.inner.prefix)
    }

    /// Tell the other replicas (fire-and-forget).
    pub fn publish(&self, news: News) {
        if self.is_up() {
            self.inner.writer.send(Job::Publish(news));
        }
    }

    /// The second cache tier: the entry under `key`, if Redis has it and
    /// answers within the timeout. `None` at once while Redis is down.
    pub async fn cache_get(&self, key: CacheKey) -> Option<cache::Found> {
        let k = cache::redis_key(&self.inner.prefix, key);
        let r: Result<(Option<Vec<u8>>, i64), _> =
            self.inner.link.call(|mut c| async move { redis::pipe().get(&k).pttl(&k).query_async(&mut c).await }).await;
        let found = match r {
            Ok((Some(raw), pttl)) if pttl > 0 => cache::decode(&raw).map(|(answer, stored)| cache::Found {
                answer,
                age: Duration::from_millis(cache::unix_ms().saturating_sub(stored)),
                ttl_left: Duration::from_millis(pttl as u64),
            }),
            _ => None,
        };
        let c = if found.is_some() { &self.inner.cache_hits } else { &self.inner.cache_misses };
        c.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The seed second-tier cache keys are hashed with: one random value
    /// kept in Redis, the same for every replica and unknown to clients
    /// (see `cache::key`). `None` until Redis has been reached once.
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
    pub fn cache_put(&self, key: CacheKey, answer: &Answer, ttl: Duration) {
        if !self.is_up() {
            return;
        }
        let value = cache::encode(answer, cache::unix_ms());
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.inner.writer.send(Job::CachePut { key: cache::redis_key(&self.inner.prefix, key), value, ttl_ms });
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
pub struct SharedState {
    handle: SharedHandle,
    shown: String,
    meta: Arc<ActorMeta>,
    probing: Arc<AtomicBool>,
}

impl SharedState {
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

impl Actor for SharedState {
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

impl Supervised for SharedState {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.meta.restarting();
    }
}

impl Handler<GetStatus> for SharedState {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, ctx: &mut Self::Context) -> Self::Result {
        self.meta.dequeued();
        let meta = self.meta.clone();
        let fallback = sonic_rs::json!({ "error": "status handler failed; the actor is restarting" });
        MessageResult(guarded(&meta, ctx, fallback, || self.detail()))
    }
}
