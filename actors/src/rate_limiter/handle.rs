//! The typed API in front of the `RateLimiter` actor and its table.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

use super::backend::{Grant, LimiterBackend};
use super::messages::{Enqueue, Left, QueueRefusal, Released};
use super::outbox::SpendOutbox;
use super::spend::{SpendRecord, SpendTable};
use super::state::WaitQueue;
use super::store::{SpendStore, StoreError};
use super::table::{LimitSpec, LimiterTable, Refusal};
use super::{NAME, RateLimiter};
use crate::supervision::{ActorMeta, ActorRegistry};

/// What the limiter starts with.
pub struct LimiterSpec {
    /// Every scope's limits, indexed as the request path refers to them.
    pub scopes: Vec<LimitSpec>,
    pub spend: SpendTable,
    /// Where spend is persisted; `None` keeps it in memory only.
    pub store: Option<PathBuf>,
    pub max_queue: usize,
}

#[derive(Clone)]
pub struct LimiterHandle {
    addr: Addr<RateLimiter>,
    meta: Arc<ActorMeta>,
    table: Arc<LimiterTable>,
    backend: Arc<dyn LimiterBackend>,
    spend: Arc<SpendTable>,
    /// Where spend goes to be persisted: the store's outbox, and Redis's in
    /// shared mode (lossless and bounded; see `outbox.rs`).
    spend_outboxes: Vec<Arc<SpendOutbox>>,
    /// Several replicas: limits wait on it.
    replicas: Option<crate::replicas::ReplicasHandle>,
    /// `[spend] store`, also read by the admin API (history, its records).
    store: Option<Arc<SpendStore>>,
    /// Several replicas: requests waiting for a limit the replicas share
    /// (they wait on their own, not in the actor's queue), bounded by `max_queue`.
    replicated_waiting: Arc<std::sync::atomic::AtomicUsize>,
    max_queue: usize,
}

impl LimiterHandle {
    pub fn start(
        spec: LimiterSpec,
        arbiter: &ArbiterHandle,
        registry: &mut ActorRegistry,
        replicas: Option<&crate::replicas::ReplicasHandle>,
    ) -> Result<LimiterHandle, StoreError> {
        let table = LimiterTable::new(spec.scopes);
        let spend = Arc::new(spec.spend);
        let meta = ActorMeta::new(NAME);
        let store = match &spec.store {
            Some(p) => Some(Arc::new(SpendStore::open(p, spend.clone(), super::spend::today(), meta.clone())?)),
            None => None,
        };
        let kept_store = store.clone();
        let (t, s, m) = (table.clone(), spend.clone(), meta.clone());
        let max_queue = spec.max_queue;
        let spend_outboxes: Vec<Arc<SpendOutbox>> = store
            .as_ref()
            .map(|s| s.outbox().clone())
            .into_iter()
            .chain(replicas.map(|r| r.spend_outbox().clone()))
            .collect();
        let mut store = Some(store);
        let backend: Arc<dyn LimiterBackend> = match replicas {
            Some(s) => Arc::new(s.limiter(table.clone())),
            None => table.clone(),
        };
        let backend_name = backend.name();
        let replicated_waiting: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let shared_waiting = replicated_waiting.clone();
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| RateLimiter {
            backend_name,
            shared_waiting: shared_waiting.clone(),
            table: t,
            spend: s,
            store: store.take().flatten(),
            queue: WaitQueue::new(max_queue),
            timer: None,
            meta: m,
        });
        registry.register(meta.clone(), &addr);
        // A freed concurrency slot wakes the queue (only while someone waits).
        let (a, m2) = (addr.clone(), meta.clone());
        let _ = table.on_release.set(Box::new(move || {
            m2.tell(&a, Released);
        }));
        Ok(LimiterHandle {
            addr,
            meta,
            table,
            backend,
            spend,
            spend_outboxes,
            replicas: replicas.cloned(),
            store: kept_store,
            replicated_waiting,
            max_queue,
        })
    }

    pub fn backend(&self) -> &Arc<dyn LimiterBackend> {
        &self.backend
    }

    /// Admit one attempt at a deployment against that deployment's own caps
    /// (`scope`): the same limiter, and the same rules, as every other scope.
    pub async fn admit_deployment(&self, scope: usize, tokens: u64) -> Result<Grant, Refusal> {
        super::backend::admit(&self.backend, &[scope], tokens).await
    }

    /// Are limits shared through Redis? Then a refused request waits on
    /// its own ([`LimiterHandle::replicated_wait`]) instead of in the queue.
    pub fn is_replicated(&self) -> bool {
        self.replicas.is_some()
    }

    /// Shared mode's wait for a limit: retry through the shared backend
    /// when the refusal says it would fit, until `max_wait` is over.
    /// Priorities are not compared (the queue that orders them is per
    /// replica, the limit is not); at most `[queue] max_size` wait at once.
    pub async fn replicated_wait(
        &self,
        scopes: &[usize],
        tokens: u64,
        max_wait: Duration,
        first: Refusal,
    ) -> Result<Grant, QueueRefusal> {
        use std::sync::atomic::Ordering;
        if self.replicated_waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.replicated_waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(QueueRefusal::Full);
        }
        // Counted until this future ends, however it ends: a request whose
        // client leaves mid-wait is dropped here, and must not keep a place.
        let _waiting = Uncount(&self.replicated_waiting);
        let deadline = Instant::now() + max_wait;
        let mut refusal = first;
        loop {
            // A concurrency cap says nothing about when: look again soon.
            let retry = refusal.retry_after.unwrap_or(Duration::from_millis(10)).max(Duration::from_millis(1));
            let at = Instant::now() + retry;
            if at > deadline {
                return Err(QueueRefusal::TimedOut(refusal));
            }
            tokio::time::sleep_until(at).await;
            match super::backend::admit(&self.backend, scopes, tokens).await {
                Ok(g) => return Ok(g),
                Err(r) => refusal = r,
            }
        }
    }

    pub fn table(&self) -> &Arc<LimiterTable> {
        &self.table
    }

    pub fn spend(&self) -> &Arc<SpendTable> {
        &self.spend
    }

    /// The spend store, when `[spend] store` is set.
    pub fn store(&self) -> Option<&Arc<SpendStore>> {
        self.store.as_ref()
    }

    /// Wait in the priority queue, at most until `max_wait` passes.
    pub async fn enqueue(
        &self,
        scopes: Vec<usize>,
        tokens: u64,
        priority: i32,
        max_wait: Duration,
        refusal: Refusal,
    ) -> Result<Grant, QueueRefusal> {
        let deadline = Instant::now() + max_wait;
        let msg = Enqueue { scopes, tokens, priority, deadline, refusal: refusal.clone() };
        let rx = match self.meta.ask(&self.addr, msg, max_wait + Duration::from_secs(1)).await {
            Ok(Ok(rx)) => rx,
            Ok(Err(shed)) => return Err(shed),
            Err(_) => return Err(QueueRefusal::TimedOut(refusal)),
        };
        // This future is dropped when the client leaves: the receiver goes
        // with it (the queue will never admit it) and the actor is told, so
        // that its place is free now rather than at the next wake-up.
        let leaving = TellOnDrop { limiter: Some(self) };
        let answer = tokio::time::timeout_at(deadline + Duration::from_secs(1), rx).await;
        leaving.defuse();
        match answer {
            Ok(Ok(reply)) => reply,
            _ => Err(QueueRefusal::TimedOut(refusal)),
        }
    }

    /// Hand a finished request's cost over to be persisted, without waking
    /// the writers (the request path batches the wake-up: [`LimiterHandle::wake_spend_writers`]).
    /// Never fails and never waits: see `outbox.rs`.
    pub fn persist_spend(&self, record: &SpendRecord) {
        for o in &self.spend_outboxes {
            o.add_quietly(std::slice::from_ref(record));
        }
    }

    /// Wake the writers of the spend handed over.
    pub fn wake_spend_writers(&self) {
        for o in &self.spend_outboxes {
            o.wake();
        }
    }
}

/// Tells the queue a waiting request left, unless defused first.
struct TellOnDrop<'a> {
    limiter: Option<&'a LimiterHandle>,
}

impl TellOnDrop<'_> {
    fn defuse(mut self) {
        self.limiter = None;
    }
}

impl Drop for TellOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.limiter {
            l.meta.tell(&l.addr, Left);
        }
    }
}

/// Takes one off a waiter count when dropped.
struct Uncount<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}
