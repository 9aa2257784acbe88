//! The typed API in front of the `RateLimiter` actor and its table.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

use super::backend::{Grant, LimiterBackend};
use super::messages::{Enqueue, QueueRefusal, RecordSpend, Released};
use super::spend::{SpendRecord, SpendTable};
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
}

impl LimiterHandle {
    pub fn start(
        spec: LimiterSpec,
        arbiter: &ArbiterHandle,
        registry: &mut ActorRegistry,
    ) -> Result<LimiterHandle, StoreError> {
        let table = LimiterTable::new(spec.scopes);
        let spend = Arc::new(spec.spend);
        let store = match &spec.store {
            Some(p) => Some(SpendStore::open(p, &spend, super::spend::day_of(super::spend::unix_now()))?),
            None => None,
        };
        let meta = ActorMeta::new(NAME);
        let (t, s, m) = (table.clone(), spend.clone(), meta.clone());
        let max_queue = spec.max_queue;
        let mut store = Some(store);
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| RateLimiter {
            table: t,
            spend: s,
            store: store.take().flatten(),
            queue: Default::default(),
            max_queue,
            seq: 0,
            timer: None,
            shed: 0,
            timed_out: 0,
            admitted_from_queue: 0,
            meta: m,
        });
        registry.register(meta.clone(), addr.clone().recipient());
        // A freed concurrency slot wakes the queue (only while someone waits).
        let (a, m2) = (addr.clone(), meta.clone());
        let _ = table.on_release.set(Box::new(move || {
            m2.tell(&a, Released);
        }));
        let backend: Arc<dyn LimiterBackend> = table.clone();
        Ok(LimiterHandle { addr, meta, table, backend, spend })
    }

    pub fn backend(&self) -> &Arc<dyn LimiterBackend> {
        &self.backend
    }

    pub fn table(&self) -> &Arc<LimiterTable> {
        &self.table
    }

    pub fn spend(&self) -> &Arc<SpendTable> {
        &self.spend
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
        match self.meta.ask(&self.addr, msg, max_wait + Duration::from_secs(1)).await {
            Ok(r) => r,
            Err(_) => Err(QueueRefusal::TimedOut(refusal)),
        }
    }

    /// Persist finished requests' costs (fire-and-forget).
    pub fn record_spend(&self, records: Vec<SpendRecord>) {
        if !records.is_empty() {
            self.meta.tell(&self.addr, RecordSpend { records });
        }
    }
}
