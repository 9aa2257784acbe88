//! Spend persistence in redb, an embedded, pure-Rust, crash-safe key-value
//! store (copy-on-write B-trees; a commit is atomic and, with `Immediate`
//! durability, on disk when `commit` returns). Chosen over SQLite (a C
//! library to build and link) and over a hand-written log (its recovery and
//! compaction are exactly what redb already does); see docs/decisions/spend-store.md.
//!
//! Writes happen on a thread of their own (an actor must never block on
//! disk): the actor hands over batches; the writer drains every batch
//! waiting and commits them in one transaction (group commit), so the cost
//! of the fsync is shared by everything that arrived meanwhile. A crash
//! loses only records not yet committed: requests whose cost was still on
//! its way from the request path to the store (at most a few milliseconds).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::spend::{SpendRecord, SpendTable, month_of};

/// (key name, model name) → nano-dollars, all time.
const TOTALS: TableDefinition<(&str, &str), u64> = TableDefinition::new("spend_total");
/// (key name, day) → nano-dollars.
const DAYS: TableDefinition<(&str, u32), u64> = TableDefinition::new("spend_day");
/// (key name, month) → nano-dollars.
const MONTHS: TableDefinition<(&str, u32), u64> = TableDefinition::new("spend_month");

#[derive(Debug, thiserror::Error)]
#[error("spend store {path}: {message}")]
pub struct StoreError {
    pub path: String,
    pub message: String,
}

pub struct SpendStore {
    tx: Option<mpsc::Sender<Vec<SpendRecord>>>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
}

fn err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError { path: path.display().to_string(), message: e.to_string() }
}

impl SpendStore {
    /// Open (or create) the store, load what it holds into `spend` for
    /// `today`, and start the writer thread.
    pub fn open(
        path: &Path,
        spend: &SpendTable,
        today: u32,
        owner: std::sync::Arc<crate::supervision::ActorMeta>,
    ) -> Result<SpendStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(path, e))?;
        }
        let db = Database::create(path).map_err(|e| err(path, e))?;
        {
            // Make sure the tables exist, so a fresh store reads as empty.
            let w = db.begin_write().map_err(|e| err(path, e))?;
            w.open_table(TOTALS).map_err(|e| err(path, e))?;
            w.open_table(DAYS).map_err(|e| err(path, e))?;
            w.open_table(MONTHS).map_err(|e| err(path, e))?;
            w.commit().map_err(|e| err(path, e))?;
        }
        load(&db, spend, today).map_err(|e| err(path, e))?;
        let keys: Vec<String> = spend.key_names().map(str::to_string).collect();
        let models: Vec<String> = spend.model_names().to_vec();
        let (tx, rx) = mpsc::channel::<Vec<SpendRecord>>();
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("sluice-spend-store".into())
            .spawn(move || {
                // A panic here would end persistence silently: guarded and restarted.
                crate::supervision::task::keep_running_sync(&owner, "spend store writer", || {
                    write_loop(&db, &rx, &keys, &models, &shown)
                })
            })
            .map_err(|e| err(path, e))?;
        Ok(SpendStore { tx: Some(tx), writer: Some(writer), path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue records for the writer (never blocks).
    pub fn write(&self, batch: Vec<SpendRecord>) {
        if let Some(tx) = &self.tx
            && tx.send(batch).is_err()
        {
            tracing::error!(store = %self.path.display(), "spend store writer is gone; spend is not persisted");
        }
    }
}

impl Drop for SpendStore {
    /// Let the writer commit what is queued, then stop it.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn load(db: &Database, spend: &SpendTable, today: u32) -> Result<(), redb::Error> {
    let r = db.begin_read()?;
    let totals = r.open_table(TOTALS)?;
    let days = r.open_table(DAYS)?;
    let months = r.open_table(MONTHS)?;
    let this_month = month_of(today);
    for (ki, key) in spend.key_names().enumerate() {
        let today_nanos = days.get((key, today))?.map(|v| v.value()).unwrap_or(0);
        let month_nanos = months.get((key, this_month))?.map(|v| v.value()).unwrap_or(0);
        let mut restored_periods = false;
        for (mi, model) in spend.model_names().iter().enumerate() {
            let total = totals.get((key, model.as_str()))?.map(|v| v.value()).unwrap_or(0);
            // Day and month totals are per key; restore them once.
            let (d, m) = if restored_periods {
                ((today, 0), (this_month, 0))
            } else {
                ((today, today_nanos), (this_month, month_nanos))
            };
            restored_periods = true;
            spend.restore(ki, mi, total, d, m);
        }
    }
    Ok(())
}

fn write_loop(db: &Database, rx: &mpsc::Receiver<Vec<SpendRecord>>, keys: &[String], models: &[String], shown: &str) {
    while let Ok(first) = rx.recv() {
        let mut batch = first;
        // Group commit: take everything that queued up meanwhile.
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        if let Err(e) = commit(db, &batch, keys, models) {
            tracing::error!(store = %shown, error = %e, records = batch.len(), "cannot persist spend");
        }
    }
}

fn commit(db: &Database, batch: &[SpendRecord], keys: &[String], models: &[String]) -> Result<(), redb::Error> {
    let w = db.begin_write()?;
    {
        let mut totals = w.open_table(TOTALS)?;
        let mut days = w.open_table(DAYS)?;
        let mut months = w.open_table(MONTHS)?;
        for r in batch {
            let (Some(key), Some(model)) = (keys.get(r.key), models.get(r.model)) else { continue };
            let t = totals.get((key.as_str(), model.as_str()))?.map(|v| v.value()).unwrap_or(0);
            totals.insert((key.as_str(), model.as_str()), t.saturating_add(r.nanos))?;
            let d = days.get((key.as_str(), r.day))?.map(|v| v.value()).unwrap_or(0);
            days.insert((key.as_str(), r.day), d.saturating_add(r.nanos))?;
            let month = month_of(r.day);
            let m = months.get((key.as_str(), month))?.map(|v| v.value()).unwrap_or(0);
            months.insert((key.as_str(), month), m.saturating_add(r.nanos))?;
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
            let t = table();
            let store = SpendStore::open(&path, &t, day, crate::supervision::ActorMeta::new("t")).unwrap();
            let recs: Vec<SpendRecord> = [(0, 0, 0.5), (0, 1, 0.25), (1, 0, 1.0)]
                .iter()
                .filter_map(|&(k, m, usd)| t.add(k, m, usd, day))
                .collect();
            store.write(recs);
            // Yesterday's spend counts in totals and the month, not today.
            store.write(t.add(0, 0, 2.0, day - 1).into_iter().collect());
        }
        let t = table();
        let _store = SpendStore::open(&path, &t, day, crate::supervision::ActorMeta::new("t")).unwrap();
        assert!((t.key_total_usd(0) - 2.75).abs() < 1e-9);
        assert!((t.key_total_usd(1) - 1.0).abs() < 1e-9);
        let d = sonic_rs::to_string(&t.detail(day)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&d).unwrap();
        assert!((v[0]["today_usd"].as_f64().unwrap() - 0.75).abs() < 1e-9, "{v}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
