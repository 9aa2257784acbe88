//! Spend persistence in redb, an embedded, pure-Rust, crash-safe key-value
//! store (copy-on-write B-trees; a commit is atomic and, with `Immediate`
//! durability, on disk when `commit` returns). Chosen over SQLite (a C
//! library to build and link) and over a hand-written log (its recovery and
//! compaction are exactly what redb already does); see docs/decisions/spend-store.md.
//!
//! Writes happen on a thread of their own (an actor must never block on
//! disk): the request path adds spend to the store's [`SpendOutbox`]; the
//! writer takes everything pending and commits it in one transaction (group
//! commit), so the cost of the fsync is shared by everything that arrived
//! meanwhile. A failed commit is put back and retried. A crash loses only
//! records not yet committed: requests whose cost was still on its way from
//! the request path to the store (at most a few milliseconds).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::outbox::SpendOutbox;
use super::spend::{SpendRecord, SpendTable, month_of};

/// (key name, model name) → nano-dollars, all time.
const TOTALS: TableDefinition<(&str, &str), u64> = TableDefinition::new("spend_total");
/// (key name, day) → nano-dollars.
const DAYS: TableDefinition<(&str, u32), u64> = TableDefinition::new("spend_day");
/// (key name, month) → nano-dollars.
const MONTHS: TableDefinition<(&str, u32), u64> = TableDefinition::new("spend_month");
/// (key name, model name, day) → nano-dollars: the history `GET
/// /admin/spend` reads. Teams are not written here (a team's spend is the
/// sum of its keys'); their `team:NAME` rows are in the three tables above.
const KEY_MODEL_DAYS: TableDefinition<(&str, &str, u32), u64> = TableDefinition::new("spend_key_model_day");

#[derive(Debug, thiserror::Error)]
#[error("spend store {path}: {message}")]
pub struct StoreError {
    pub path: String,
    pub message: String,
}

/// How long the writer waits before it retries a failed commit.
const RETRY_AFTER: Duration = Duration::from_millis(200);

pub struct SpendStore {
    outbox: Arc<SpendOutbox>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
    /// Shared with the admin API's records (`accounts::store`), which live
    /// in the same file; redb serialises the write transactions.
    db: Arc<Database>,
    spend: Arc<SpendTable>,
}

/// One row of the spend history: a key's spend on a model on a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRow {
    pub key: String,
    pub model: String,
    pub day: u32,
    pub nanos: u64,
}

fn err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError { path: path.display().to_string(), message: e.to_string() }
}

impl SpendStore {
    /// Open (or create) the store, load what it holds into `spend` for
    /// `today`, and start the writer thread.
    pub fn open(
        path: &Path,
        spend: Arc<SpendTable>,
        today: u32,
        owner: Arc<crate::supervision::ActorMeta>,
    ) -> Result<SpendStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(path, e))?;
        }
        let db = Arc::new(Database::create(path).map_err(|e| err(path, e))?);
        {
            // Make sure the tables exist, so a fresh store reads as empty.
            let w = db.begin_write().map_err(|e| err(path, e))?;
            w.open_table(TOTALS).map_err(|e| err(path, e))?;
            w.open_table(DAYS).map_err(|e| err(path, e))?;
            w.open_table(MONTHS).map_err(|e| err(path, e))?;
            w.open_table(KEY_MODEL_DAYS).map_err(|e| err(path, e))?;
            w.commit().map_err(|e| err(path, e))?;
        }
        load(&db, &spend, today).map_err(|e| err(path, e))?;
        let outbox = Arc::new(SpendOutbox::default());
        let shown = path.display().to_string();
        let (d, t, pending) = (db.clone(), spend.clone(), outbox.clone());
        let writer = std::thread::Builder::new()
            .name("sluice-spend-store".into())
            .spawn(move || {
                // A panic here would end persistence silently: guarded and restarted.
                crate::supervision::task::keep_running_sync(&owner, "spend store writer", || {
                    write_loop(&d, &pending, &t, &shown)
                })
            })
            .map_err(|e| err(path, e))?;
        Ok(SpendStore { outbox, writer: Some(writer), path: path.to_path_buf(), db, spend })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where spend for this store is handed over (never blocks, never lost).
    pub fn outbox(&self) -> &Arc<SpendOutbox> {
        &self.outbox
    }

    /// The database, for the other records kept beside spend.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Load the stored totals of slots and models defined since the last
    /// load (keys and models added by a reload or the admin API). A read
    /// of a few rows; call it off the actors' thread.
    pub fn restore_new(&self, today: u32) -> Result<(), StoreError> {
        load(&self.db, &self.spend, today).map_err(|e| err(&self.path, e))
    }

    /// The spend history, days `from..=to`, of the keys `keys` (all when
    /// `None`) and the model `model` (all when `None`).
    pub fn days(
        &self,
        keys: Option<&[String]>,
        model: Option<&str>,
        from: u32,
        to: u32,
    ) -> Result<Vec<DayRow>, StoreError> {
        days(&self.db, keys, model, from, to).map_err(|e| err(&self.path, e))
    }

    /// Hand records to the writer (never blocks).
    pub fn write(&self, batch: Vec<SpendRecord>) {
        self.outbox.add(&batch);
    }
}

impl Drop for SpendStore {
    /// Let the writer commit what is pending, then stop it.
    fn drop(&mut self) {
        self.outbox.close();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn days(
    db: &Database,
    keys: Option<&[String]>,
    model: Option<&str>,
    from: u32,
    to: u32,
) -> Result<Vec<DayRow>, redb::Error> {
    let r = db.begin_read()?;
    let t = r.open_table(KEY_MODEL_DAYS)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        let (key, m, day) = k.value();
        if day < from || day > to || model.is_some_and(|want| want != m) {
            continue;
        }
        if keys.is_some_and(|ks| !ks.iter().any(|k| k == key)) {
            continue;
        }
        out.push(DayRow { key: key.to_string(), model: m.to_string(), day, nanos: v.value() });
    }
    Ok(out)
}

/// Load into `spend` what the store holds for the slots and models not
/// loaded yet.
fn load(db: &Database, spend: &SpendTable, today: u32) -> Result<(), redb::Error> {
    let r = db.begin_read()?;
    let totals = r.open_table(TOTALS)?;
    let days = r.open_table(DAYS)?;
    let months = r.open_table(MONTHS)?;
    let this_month = month_of(today);
    for (ki, periods, models) in spend.take_unrestored() {
        let Some(key) = spend.key_name(ki) else { continue };
        let (d, m) = if periods {
            (
                (today, days.get((key, today))?.map(|v| v.value()).unwrap_or(0)),
                (this_month, months.get((key, this_month))?.map(|v| v.value()).unwrap_or(0)),
            )
        } else {
            ((today, 0), (this_month, 0))
        };
        // Day and month totals are per key: restored once, with the first model.
        spend.restore(ki, usize::MAX, 0, d, m);
        for mi in models {
            let Some(model) = spend.model_name(mi) else { continue };
            let total = totals.get((key, model))?.map(|v| v.value()).unwrap_or(0);
            if total > 0 {
                spend.restore(ki, mi, total, (today, 0), (this_month, 0));
            }
        }
    }
    Ok(())
}

fn write_loop(db: &Database, outbox: &SpendOutbox, spend: &SpendTable, shown: &str) {
    // Group commit: each batch is everything that was pending.
    while let Some(batch) = outbox.wait_blocking() {
        if let Err(e) = commit(db, &batch, spend) {
            let nanos: u64 = batch.iter().map(|r| r.nanos).sum();
            if outbox.is_closed() {
                // Shutting down with the store failing: nothing is left to retry with.
                tracing::error!(store = %shown, error = %e, usd = nanos as f64 / 1e9, "cannot persist spend; lost at shutdown");
                return;
            }
            tracing::error!(store = %shown, error = %e, rows = batch.len(), "cannot persist spend; retrying");
            outbox.put_back(&batch);
            outbox.pause_blocking(RETRY_AFTER);
        }
    }
}

fn commit(db: &Database, batch: &[SpendRecord], spend: &SpendTable) -> Result<(), redb::Error> {
    let w = db.begin_write()?;
    {
        let mut totals = w.open_table(TOTALS)?;
        let mut days = w.open_table(DAYS)?;
        let mut months = w.open_table(MONTHS)?;
        let mut history = w.open_table(KEY_MODEL_DAYS)?;
        for r in batch {
            let (Some(key), Some(model)) = (spend.key_name(r.key), spend.model_name(r.model)) else { continue };
            let t = totals.get((key, model))?.map(|v| v.value()).unwrap_or(0);
            totals.insert((key, model), t.saturating_add(r.nanos))?;
            let d = days.get((key, r.day))?.map(|v| v.value()).unwrap_or(0);
            days.insert((key, r.day), d.saturating_add(r.nanos))?;
            let month = month_of(r.day);
            let m = months.get((key, month))?.map(|v| v.value()).unwrap_or(0);
            months.insert((key, month), m.saturating_add(r.nanos))?;
            if !key.starts_with(super::spend::TEAM_PREFIX) {
                let h = history.get((key, model, r.day))?.map(|v| v.value()).unwrap_or(0);
                history.insert((key, model, r.day), h.saturating_add(r.nanos))?;
            }
        }
    }
    w.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::spend::Budgets;
    use super::*;

    #[test]
    fn spend_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("sluice-spend-test-{}", std::process::id()));
        let path = dir.join("spend.redb");
        let _ = std::fs::remove_file(&path);
        let table = || {
            SpendTable::new(
                vec![("a".into(), Budgets::default()), ("b".into(), Budgets::default())],
                vec!["m1".into(), "m2".into()],
            )
        };
        let day = 20_000;
        {
            let t = Arc::new(table());
            let store = SpendStore::open(&path, t.clone(), day, crate::supervision::ActorMeta::new("t")).unwrap();
            let recs: Vec<SpendRecord> = [(0, 0, 0.5), (0, 1, 0.25), (1, 0, 1.0)]
                .iter()
                .filter_map(|&(k, m, usd)| t.add(k, m, usd, day))
                .collect();
            store.write(recs);
            // Yesterday's spend counts in totals and the month, not today.
            store.write(t.add(0, 0, 2.0, day - 1).into_iter().collect());
        }
        let t = Arc::new(table());
        let store = SpendStore::open(&path, t.clone(), day, crate::supervision::ActorMeta::new("t")).unwrap();
        assert!((t.key_total_usd(0) - 2.75).abs() < 1e-9);
        assert!((t.key_total_usd(1) - 1.0).abs() < 1e-9);
        let d = sonic_rs::to_string(&t.detail(day)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&d).unwrap();
        assert!((v[0]["today_usd"].as_f64().unwrap() - 0.75).abs() < 1e-9, "{v}");
        // The history has one row per key, model and day.
        let rows = store.days(None, None, day - 1, day).unwrap();
        assert_eq!(rows.len(), 4, "{rows:?}");
        let a_m1: u64 = rows.iter().filter(|r| r.key == "a" && r.model == "m1").map(|r| r.nanos).sum();
        assert_eq!(a_m1, 2_500_000_000);
        assert_eq!(store.days(Some(&["b".to_string()]), Some("m1"), day, day).unwrap().len(), 1);
        // A key defined later (a runtime key, or one a reload added back)
        // gets its stored totals once, when defined.
        let c = t.define_key("c", &Budgets::default());
        store.restore_new(day).unwrap();
        store.restore_new(day).unwrap();
        assert_eq!(t.key_total_usd(c), 0.0);
        let m3 = t.define_model("m3");
        store.restore_new(day).unwrap();
        assert!((t.key_total_usd(0) - 2.75).abs() < 1e-9, "nothing loaded twice");
        assert_eq!(m3, 2);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
