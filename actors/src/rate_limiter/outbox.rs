//! Spend on its way to a store (the redb file, Redis): lossless and
//! bounded, and the request path never waits for it.
//!
//! Spend used to travel as messages — a `tell` to the `RateLimiter`, which
//! drops the message when the mailbox is full, then an unbounded channel to
//! the store's writer thread. Under pressure that loses money, or grows
//! without bound. A bounded channel with backpressure would not lose it,
//! but the request path would then wait on an fsync-bound consumer, and a
//! channel's bound counts messages, not money.
//!
//! An outbox instead *sums* what is pending per key, model and day: adding
//! is a short mutex-guarded map update that never fails, and the map holds
//! at most one row per (key, model, day) with unwritten spend — its size is
//! bounded by the config (days: the one or two a writer can fall behind
//! on), not by the number of requests or by how slow the store is. The
//! consumer takes the whole map when it wakes, and puts back what it could
//! not write. In-memory budgets never depend on it: the request path adds
//! to the lock-free [`super::SpendTable`] directly (atomics), the outbox
//! only feeds persistence. The actor is not on this path at all.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::spend::SpendRecord;

#[derive(Default)]
struct Pending {
    /// (key, model, day) → nano-USD not yet written.
    rows: HashMap<(usize, usize, u32), u64>,
    /// No more spend will come: the consumer drains and stops.
    closed: bool,
}

/// Spend waiting for one consumer, summed.
#[derive(Default)]
pub struct SpendOutbox {
    pending: Mutex<Pending>,
    /// Wakes a consumer thread ([`SpendOutbox::wait_blocking`]).
    ready: Condvar,
    /// Wakes a consumer task ([`SpendOutbox::notified`]).
    notify: Notify,
}

impl SpendOutbox {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Only plain sums live behind the lock: a panic elsewhere while it
        // was held leaves them usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add records without waking the consumer (the request path: waking a
    /// sleeping thread costs microseconds; see [`SpendOutbox::wake`]).
    pub fn add_quietly(&self, records: &[SpendRecord]) {
        if records.is_empty() {
            return;
        }
        let mut p = self.lock();
        for r in records {
            let row = p.rows.entry((r.key, r.model, r.day)).or_insert(0);
            *row = row.saturating_add(r.nanos);
        }
    }

    /// Add records and wake the consumer.
    pub fn add(&self, records: &[SpendRecord]) {
        self.add_quietly(records);
        self.wake();
    }

    /// Wake the consumer to write what is pending.
    pub fn wake(&self) {
        self.ready.notify_one();
        self.notify.notify_one();
    }

    /// Everything pending, in a stable order; the outbox is left empty.
    pub fn take(&self) -> Vec<SpendRecord> {
        let rows = std::mem::take(&mut self.lock().rows);
        to_records(rows)
    }

    /// Put back records that could not be written (summed with what came
    /// meanwhile).
    pub fn put_back(&self, records: &[SpendRecord]) {
        self.add_quietly(records);
    }

    /// Rows pending (for gauges and tests).
    pub fn len(&self) -> usize {
        self.lock().rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A consumer thread: wait until spend is pending (take it all), or
    /// `None` once the outbox is closed and empty.
    pub fn wait_blocking(&self) -> Option<Vec<SpendRecord>> {
        let mut p = self.lock();
        while p.rows.is_empty() && !p.closed {
            p = self.ready.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        if p.rows.is_empty() {
            return None;
        }
        let rows = std::mem::take(&mut p.rows);
        drop(p);
        Some(to_records(rows))
    }

    /// A consumer thread's pause before it retries a failed write; cut
    /// short when the outbox closes.
    pub fn pause_blocking(&self, d: Duration) {
        let p = self.lock();
        if !p.closed {
            let _ = self.ready.wait_timeout(p, d);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// No more spend: the consumer writes what is pending and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake();
    }

    /// A consumer task: resolves once spend was added since the last call
    /// (a wake-up that came while nobody waited is kept, so none is missed).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

fn to_records(rows: HashMap<(usize, usize, u32), u64>) -> Vec<SpendRecord> {
    let mut v: Vec<SpendRecord> =
        rows.into_iter().map(|((key, model, day), nanos)| SpendRecord { key, model, day, nanos }).collect();
    v.sort_unstable_by_key(|r| (r.key, r.model, r.day));
    v
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn rec(key: usize, model: usize, day: u32, nanos: u64) -> SpendRecord {
        SpendRecord { key, model, day, nanos }
    }

    #[test]
    fn a_million_requests_take_one_row_per_key_model_and_day() {
        let o = SpendOutbox::default();
        for i in 0..1_000_000u64 {
            o.add_quietly(&[rec((i % 2) as usize, 0, 20_000, 3)]);
        }
        assert_eq!(o.len(), 2, "bounded by the rows, not the requests");
        assert_eq!(o.take(), vec![rec(0, 0, 20_000, 1_500_000), rec(1, 0, 20_000, 1_500_000)]);
        assert!(o.is_empty());
    }

    #[test]
    fn what_could_not_be_written_is_put_back_and_summed_with_what_came_meanwhile() {
        let o = SpendOutbox::default();
        o.add(&[rec(0, 1, 5, 10)]);
        let failed = o.take();
        o.add(&[rec(0, 1, 5, 7), rec(0, 1, 6, 1)]);
        o.put_back(&failed);
        assert_eq!(o.take(), vec![rec(0, 1, 5, 17), rec(0, 1, 6, 1)]);
    }

    #[test]
    fn a_consumer_thread_gets_everything_then_stops_when_closed() {
        let o = Arc::new(SpendOutbox::default());
        let consumer = {
            let o = o.clone();
            std::thread::spawn(move || {
                let mut total = 0;
                while let Some(batch) = o.wait_blocking() {
                    total += batch.iter().map(|r| r.nanos).sum::<u64>();
                }
                total
            })
        };
        for _ in 0..10_000 {
            o.add(&[rec(0, 0, 1, 1)]);
        }
        o.close();
        assert_eq!(consumer.join().unwrap(), 10_000, "nothing lost, even at close");
    }

    #[tokio::test]
    async fn a_consumer_task_is_woken_even_if_the_spend_came_first() {
        let o = SpendOutbox::default();
        o.add(&[rec(0, 0, 1, 1)]);
        tokio::time::timeout(Duration::from_secs(5), o.notified()).await.unwrap();
        assert_eq!(o.take().len(), 1);
    }
}
