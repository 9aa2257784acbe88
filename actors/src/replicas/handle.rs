//! The typed API in front of the `Replicas` actor: what every user of
//! state shared across replicas holds.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{Notify, mpsc};

use super::connect::Connector;
use super::limiter::RedisLimiter;
use super::link::{Link, redact_url};
use super::news::{self, AccountsEvent, News, Sinks};
use super::writer::{self, Job, Writer};
use super::{NAME, Replicas, ReplicasError, ReplicasSpec};
use crate::accounts::AccountRecord;
use crate::rate_limiter::SpendTable;
use crate::response_cache::replica_tier;
use crate::response_cache::{CacheKey, StoredAnswer};
use crate::supervision::{ActorMeta, ActorRegistry, task};
use redis::Script;

#[derive(Clone)]
pub struct ReplicasHandle {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) link: Arc<Link>,
    pub(super) writer: Writer,
    pub(super) prefix: String,
    pub(super) replica: String,
    pub(super) resync: Arc<Notify>,
    pub(super) pending: Arc<AtomicUsize>,
    pub(super) arbiter: ArbiterHandle,
    /// The writer's receiving end until [`ReplicasHandle::run`] starts it.
    pub(super) rx: Mutex<Option<mpsc::Receiver<Job>>>,
    pub(super) probe_interval: Duration,
    pub(super) cache_hits: AtomicU64,
    pub(super) cache_misses: AtomicU64,
    /// The cache-key seed every replica shares (0 until read from Redis).
    pub(super) cache_seed: AtomicU64,
    /// Listening to the other replicas' news right now.
    pub(super) subscribed: Arc<AtomicBool>,
    /// The actor's own facts: its tasks' restarts count as its restarts.
    pub(super) meta: Arc<ActorMeta>,
    /// Spend to write to Redis (lossless and bounded, never a dropped job).
    pub(super) spend: Arc<crate::rate_limiter::SpendOutbox>,
    /// Runtime keys and teams heard of, for the gateway ([`ReplicasHandle::accounts_feed`]).
    pub(super) accounts_tx: mpsc::UnboundedSender<AccountsEvent>,
    pub(super) accounts_rx: Mutex<Option<mpsc::UnboundedReceiver<AccountsEvent>>>,
}

/// Store a runtime key or team record if it is newer than the one Redis
/// holds (KEYS[1] = records hash, KEYS[2] = versions hash; ARGV = field,
/// record JSON, updated_ms). Returns 1 when stored.
const PUT_ACCOUNT: &str = r#"
local cur = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') or 0
if cur >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"#;

impl ReplicasHandle {
    /// Start the `Replicas` actor on its own thread (`arbiter`). Redis is
    /// not needed yet: the link starts down and comes up at the first probe.
    pub fn start(
        spec: &ReplicasSpec,
        arbiter: &ArbiterHandle,
        registry: &mut ActorRegistry,
    ) -> Result<ReplicasHandle, ReplicasError> {
        let shown = match &spec.sentinel {
            Some(s) => format!(
                "{} (master `{}` through {} sentinels)",
                redact_url(&spec.url),
                s.master_name,
                s.sentinels.len()
            ),
            None => redact_url(&spec.url),
        };
        // redis-rs's parse errors do not repeat the URL, so none can leak here.
        let connector = Connector::new(&spec.url, spec.ca_pem.as_deref(), spec.sentinel.as_ref())
            .map_err(|message| ReplicasError { shown: shown.clone(), message })?;
        let link = Link::new(connector, spec.timeout);
        let (writer, rx) = Writer::channel();
        let replica = format!("{:08x}-{}", fastrand_u32(), std::process::id());
        let meta = ActorMeta::new(NAME);
        let (accounts_tx, accounts_rx) = mpsc::unbounded_channel();
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
            meta: meta.clone(),
            spend: Arc::default(),
            accounts_tx,
            accounts_rx: Mutex::new(Some(accounts_rx)),
        });
        let handle = ReplicasHandle { inner };
        let (h, m) = (handle.clone(), meta.clone());
        let addr =
            Supervisor::start_in_arbiter(arbiter, move |_| Replicas { handle: h, shown, meta: m, probing: false });
        registry.register(meta, &addr);
        Ok(handle)
    }

    /// Start writing and listening, once the limiter's spend table and the
    /// breakers exist.
    pub fn run(&self, spend: Arc<SpendTable>, sinks: Sinks) {
        let Some(rx) = self.inner.rx.lock().ok().and_then(|mut r| r.take()) else { return };
        let i = &self.inner;
        let mut w = writer::WriteLoop::new(i.link.clone(), i.prefix.clone(), i.replica.clone(), spend, &i.writer);
        w.pending_gauge = i.pending.clone();
        w.outbox = i.spend.clone();
        // Both run outside the actor's context, on its arbiter: guarded and
        // restarted on a panic (`supervision::task`), the writer with its
        // queue and pending rows kept.
        let writer = Arc::new(tokio::sync::Mutex::new((w, rx)));
        let resync = i.resync.clone();
        i.arbiter.spawn(task::keep_running(i.meta.clone(), "redis writer", move || {
            let (writer, resync) = (writer.clone(), resync.clone());
            async move {
                let mut g = writer.lock().await;
                let (w, rx) = &mut *g;
                w.run(rx, &resync).await;
            }
        }));
        let (link, sinks, retry) = (i.link.clone(), Arc::new(sinks), i.probe_interval);
        let (channel, resync, subscribed) = (format!("{}:news", i.prefix), i.resync.clone(), i.subscribed.clone());
        i.arbiter.spawn(task::keep_running(i.meta.clone(), "news listener", move || {
            news::listen(link.clone(), channel.clone(), sinks.clone(), retry, resync.clone(), subscribed.clone())
        }));
    }

    /// Where the news listener sends runtime keys and teams it hears of.
    pub fn accounts_sender(&self) -> mpsc::UnboundedSender<AccountsEvent> {
        self.inner.accounts_tx.clone()
    }

    /// What other replicas did to runtime keys and teams (taken once, by
    /// the gateway; later calls get a feed that never yields).
    pub fn accounts_feed(&self) -> mpsc::UnboundedReceiver<AccountsEvent> {
        match self.inner.accounts_rx.lock().ok().and_then(|mut r| r.take()) {
            Some(rx) => rx,
            None => mpsc::unbounded_channel().1,
        }
    }

    /// Store a runtime key or team record in Redis (the replicas' source of
    /// truth) unless Redis holds a newer one, and tell the other replicas.
    pub async fn put_account(&self, record: &AccountRecord) -> Result<(), super::LinkError> {
        let json = sonic_rs::to_string(record).map_err(|e| super::LinkError::Redis(e.to_string()))?;
        let field = account_field(record);
        let (data, versions) = (self.accounts_key(), format!("{}:accounts-v", self.inner.prefix));
        let updated = record.updated_ms();
        let stored: i64 = self
            .inner
            .link
            .call_within(self.inner.link.timeout() * 10, |mut c| async move {
                Script::new(PUT_ACCOUNT)
                    .key(&data)
                    .key(&versions)
                    .arg(&field)
                    .arg(&json)
                    .arg(updated)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if stored == 1 {
            self.publish(News::Account { from: self.inner.replica.clone(), record: Box::new(record.clone()) });
        }
        Ok(())
    }

    /// Every runtime key and team record Redis holds (tombstones included).
    pub async fn fetch_accounts(&self) -> Result<Vec<AccountRecord>, super::LinkError> {
        let key = self.accounts_key();
        let raw: Vec<String> = self
            .inner
            .link
            .call_within(self.inner.link.timeout() * 10, |mut c| async move {
                redis::cmd("HVALS").arg(&key).query_async(&mut c).await
            })
            .await?;
        Ok(raw.iter().filter_map(|r| sonic_rs::from_str(r).ok()).collect())
    }

    fn accounts_key(&self) -> String {
        format!("{}:accounts", self.inner.prefix)
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

    /// Where spend for Redis is handed over.
    pub fn spend_outbox(&self) -> &Arc<crate::rate_limiter::SpendOutbox> {
        &self.inner.spend
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
    pub(super) async fn establish_cache_seed(&self) {
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

fn account_field(r: &AccountRecord) -> String {
    match r {
        AccountRecord::Key(k) => format!("key:{}", k.name),
        AccountRecord::Team(t) => format!("team:{}", t.name),
    }
}

fn fastrand_u32() -> u32 {
    // No extra dependency for one random id: hash the time and the pid.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() as u32
}
