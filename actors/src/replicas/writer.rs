//! Writes no request waits for: token corrections, spend, cache entries and
//! news, written by one task on the `Replicas` thread. Corrections, cache
//! entries and news come through a bounded channel (`try_send`, drops
//! counted); spend through the lossless, bounded [`SpendOutbox`].
//!
//! Spend is the one write that must not be lost: while Redis is down it is
//! kept here, summed per key, model and day, and written when the link comes
//! back, before the totals are read again. The other writes are worth
//! nothing later (a correction of a limit that has long refilled, a cache
//! entry another replica will store, news of a cool-down that is over) and
//! are dropped while Redis is down.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redis::Script;
use tokio::sync::{Notify, mpsc};

use super::link::Link;
use super::news::News;
use crate::rate_limiter::SpendOutbox;
use crate::rate_limiter::spend::{SpendTable, month_of};

/// Raise hash fields to at least the given values (ARGV: field, value, ...).
/// Idempotent, so every replica may run it: restores what a Redis that lost
/// its data (restarted without persistence) had counted, as far as the
/// replicas know it.
const RAISE: &str = r#"
for i = 1, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') or 0
  if cur < tonumber(ARGV[i + 1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 0
"#;

/// Jobs waiting beyond this are dropped (and counted).
const CAPACITY: usize = 65_536;
/// Jobs written per round before new ones are taken.
const ROUND: usize = 1024;

/// Add a spend record to a key's totals, once: KEYS[2] marks the write
/// as done, so a retry after a lost reply (Redis applied it, then the
/// connection dropped) does not count it twice. Returns the `{day, month,
/// model}` totals. KEYS[1] = the key's hash; ARGV = day, month, model,
/// nano-USD.
const SPEND: &str = r#"
local fd, fm, ft = 'd:' .. ARGV[1], 'm:' .. ARGV[2], 't:' .. ARGV[3]
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 604800) then
  redis.call('HINCRBY', KEYS[1], fd, ARGV[4])
  redis.call('HINCRBY', KEYS[1], fm, ARGV[4])
  redis.call('HINCRBY', KEYS[1], ft, ARGV[4])
end
local v = redis.call('HMGET', KEYS[1], fd, fm, ft)
return {tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0}
"#;

/// A key's totals as Redis last confirmed them to this replica.
#[derive(Debug, Default, Clone)]
pub(super) struct Confirmed {
    day: u32,
    today: u64,
    month: u64,
    models: HashMap<usize, u64>,
}

/// A spend write with its id.
pub(super) struct SpendWrite {
    key: usize,
    model: usize,
    day: u32,
    nanos: u64,
    id: String,
}

pub enum Job {
    /// Token TAT corrections (µs) of limiter scopes.
    Correct {
        keys: Vec<String>,
        deltas_us: Vec<i64>,
    },
    CachePut {
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    },
    Publish(News),
}

/// The sending side, cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    pub(super) dropped: Arc<AtomicU64>,
}

impl Writer {
    pub(super) fn channel() -> (Writer, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Writer { tx, dropped: Arc::default() }, rx)
    }

    /// Queue a job; never waits.
    pub fn send(&self, job: Job) {
        if self.tx.try_send(job).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the writing task owns.
pub(super) struct WriteLoop {
    pub link: Arc<Link>,
    pub prefix: String,
    pub channel: String,
    pub replica: String,
    pub spend: Arc<SpendTable>,
    pub pending_gauge: Arc<AtomicUsize>,
    pub dropped: Arc<AtomicU64>,
    /// Spend handed over by the request path.
    pub outbox: Arc<SpendOutbox>,
    /// Spend not yet in Redis: (key, model, day) → nano-USD, summed
    /// until a write of it is first tried.
    pub pending: HashMap<(usize, usize, u32), u64>,
    /// Writes tried and not confirmed, each with its id: retried as they
    /// are (never merged with newer spend), so Redis can tell a retry.
    pub retrying: Vec<SpendWrite>,
    /// Ids of this process's spend writes.
    pub seq: u64,
    /// Per key, the totals Redis last confirmed (its replies, its reads):
    /// what is put back if Redis loses its data.
    pub confirmed: HashMap<usize, Confirmed>,
    pub spend_script: Script,
    /// Bound of one background write (longer than a request's: nobody waits).
    pub limit: Duration,
}

impl WriteLoop {
    pub fn new(link: Arc<Link>, prefix: String, replica: String, spend: Arc<SpendTable>, writer: &Writer) -> Self {
        let limit = (link.timeout() * 10).max(Duration::from_millis(500));
        WriteLoop {
            channel: format!("{prefix}:news"),
            link,
            prefix,
            replica,
            spend,
            pending_gauge: Arc::default(),
            dropped: writer.dropped.clone(),
            outbox: Arc::default(),
            pending: HashMap::new(),
            retrying: Vec::new(),
            seq: 0,
            confirmed: HashMap::new(),
            spend_script: Script::new(SPEND),
            limit,
        }
    }

    pub async fn run(&mut self, rx: &mut mpsc::Receiver<Job>, resync: &Notify) {
        loop {
            tokio::select! {
                job = rx.recv() => {
                    let Some(job) = job else { return };
                    let mut round = vec![job];
                    while round.len() < ROUND {
                        match rx.try_recv() {
                            Ok(j) => round.push(j),
                            Err(_) => break,
                        }
                    }
                    self.round(round).await;
                }
                _ = self.outbox.notified() => self.flush_spend().await,
                _ = resync.notified() => self.resync().await,
            }
        }
    }

    async fn round(&mut self, jobs: Vec<Job>) {
        for job in jobs {
            if self.link.is_up() {
                self.write(job).await;
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn write(&self, job: Job) {
        let limit = self.limit;
        let r = match job {
            Job::Correct { keys, deltas_us } => {
                let script = Script::new(super::limiter::CORRECT);
                let mut inv = script.prepare_invoke();
                for (k, d) in keys.iter().zip(&deltas_us) {
                    inv.key(k).arg(*d);
                }
                self.link
                    .call_within(limit, |mut c| async move { inv.invoke_async::<i64>(&mut c).await })
                    .await
                    .map(drop)
            }
            Job::CachePut { key, value, ttl_ms } => {
                self.link
                    .call_within(limit, |mut c| async move {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(value)
                            .arg("PX")
                            .arg(ttl_ms.max(1))
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await
            }
            Job::Publish(news) => self.publish(&news).await,
        };
        if r.is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn publish(&self, news: &News) -> Result<(), super::link::LinkError> {
        let Ok(payload) = sonic_rs::to_string(news) else { return Ok(()) };
        let channel = self.channel.clone();
        self.link
            .call_within(self.limit, |mut c| async move {
                redis::cmd("PUBLISH").arg(&channel).arg(payload).query_async::<i64>(&mut c).await
            })
            .await
            .map(drop)
    }

    fn spend_key(&self, key: usize) -> Option<String> {
        self.spend.key_name(key).map(|k| format!("{}:spend:{k}", self.prefix))
    }

    /// Write every pending spend record; what fails is retried later,
    /// under the same id.
    async fn flush_spend(&mut self) {
        for r in self.outbox.take() {
            let row = self.pending.entry((r.key, r.model, r.day)).or_insert(0);
            *row = row.saturating_add(r.nanos);
        }
        if !self.link.is_up() {
            // Kept summed (one row per key, model and day however long
            // Redis stays away) until it is back.
            self.pending_gauge.store(self.pending.len() + self.retrying.len(), Ordering::Relaxed);
            return;
        }
        let mut writes = std::mem::take(&mut self.retrying);
        let mut fresh: Vec<((usize, usize, u32), u64)> = self.pending.drain().collect();
        fresh.sort_unstable();
        for ((key, model, day), nanos) in fresh {
            self.seq += 1;
            writes.push(SpendWrite { key, model, day, nanos, id: format!("{}:{}", self.replica, self.seq) });
        }
        for w in writes {
            if !self.link.is_up() || !self.write_spend(&w).await {
                self.retrying.push(w);
            }
        }
        self.pending_gauge.store(self.retrying.len(), Ordering::Relaxed);
    }

    /// One spend write; true once Redis has it (now or before).
    async fn write_spend(&mut self, w: &SpendWrite) -> bool {
        let (Some(hash), Some(model_name)) =
            (self.spend_key(w.key), self.spend.model_name(w.model).map(str::to_string))
        else {
            return true; // not a key or model of this config: nothing to write
        };
        let op = format!("{}:spend-op:{}", self.prefix, w.id);
        let mut inv = self.spend_script.prepare_invoke();
        inv.key(&hash).key(&op).arg(w.day).arg(month_of(w.day)).arg(&model_name).arg(w.nanos);
        let r: Result<Vec<i64>, _> =
            self.link.call_within(self.limit, |mut c| async move { inv.invoke_async(&mut c).await }).await;
        let Ok(v) = r else { return false };
        let [d, m, t] = v.as_slice() else { return true };
        let (d, m, t) = (nonneg(*d), nonneg(*m), nonneg(*t));
        self.spend.observe(w.key, Some(w.model), w.day, d, m, t);
        self.confirm(w.key, w.day, d, m, Some((w.model, t)));
        let news = News::Spend {
            from: self.replica.clone(),
            key: self.spend.key_name(w.key).unwrap_or_default().to_string(),
            model: model_name,
            day: w.day,
            today: d,
            month: m,
            total: t,
        };
        let _ = self.publish(&news).await;
        true
    }

    /// The link came back (or the news subscription began): make sure
    /// Redis holds at least what this replica saw counted before, write
    /// what waited, then read every key's totals (other replicas spent
    /// meanwhile, and news sent before the subscription was missed).
    async fn resync(&mut self) {
        self.restore_counts().await;
        self.flush_spend().await;
        let today = crate::rate_limiter::spend::day_of(crate::rate_limiter::spend::unix_now());
        for key in 0..self.spend.key_count() {
            let Some(hash) = self.spend_key(key) else { continue };
            let r: Result<HashMap<String, i64>, _> =
                self.link
                    .call_within(self.limit, |mut c| async move {
                        redis::cmd("HGETALL").arg(&hash).query_async(&mut c).await
                    })
                    .await;
            let Ok(fields) = r else { return };
            let day = fields.get(&format!("d:{today}")).copied().map_or(0, nonneg);
            let month = fields.get(&format!("m:{}", month_of(today))).copied().map_or(0, nonneg);
            self.spend.observe(key, None, today, day, month, 0);
            self.confirm(key, today, day, month, None);
            for (name, total) in &fields {
                if let Some(m) = name.strip_prefix("t:").and_then(|m| self.spend.find_model(m)) {
                    self.spend.observe(key, Some(m), today, day, month, nonneg(*total));
                    self.confirm(key, today, day, month, Some((m, nonneg(*total))));
                }
            }
        }
        tracing::info!("shared spend re-read from redis");
    }
}

impl WriteLoop {
    /// Remember totals Redis confirmed (they only rise; a new day starts over).
    fn confirm(&mut self, key: usize, day: u32, today: u64, month: u64, model: Option<(usize, u64)>) {
        let c = self.confirmed.entry(key).or_default();
        if day > c.day {
            if month_of(day) != month_of(c.day) {
                c.month = 0;
            }
            c.day = day;
            c.today = 0;
        }
        if day == c.day {
            c.today = c.today.max(today);
            c.month = c.month.max(month);
        }
        if let Some((m, t)) = model {
            let e = c.models.entry(m).or_insert(0);
            *e = (*e).max(t);
        }
    }

    /// Raise each key's totals in Redis to the last ones Redis confirmed to
    /// this replica: after Redis lost its data (restarted without
    /// persistence), the replicas put back the largest totals any of them
    /// was told, a lower bound of what was counted (never more: spend not
    /// yet confirmed is written by `flush_spend`, after this). A no-op when
    /// Redis kept its data.
    async fn restore_counts(&mut self) {
        let raise = Script::new(RAISE);
        let confirmed: Vec<(usize, Confirmed)> = self.confirmed.iter().map(|(k, c)| (*k, c.clone())).collect();
        for (key, c) in confirmed {
            let mut fields: Vec<(String, u64)> =
                vec![(format!("d:{}", c.day), c.today), (format!("m:{}", month_of(c.day)), c.month)];
            for (&m, &t) in &c.models {
                if let Some(name) = self.spend.model_name(m) {
                    fields.push((format!("t:{name}"), t));
                }
            }
            fields.retain(|(_, v)| *v > 0);
            let Some(hash) = self.spend_key(key).filter(|_| !fields.is_empty()) else { continue };
            let mut inv = raise.prepare_invoke();
            inv.key(&hash);
            for (f, v) in &fields {
                inv.arg(f).arg(*v);
            }
            let r =
                self.link.call_within(self.limit, |mut c| async move { inv.invoke_async::<i64>(&mut c).await }).await;
            if r.is_err() {
                return;
            }
        }
    }
}

fn nonneg(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
