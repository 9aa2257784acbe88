//! The conversations' copy on disk (`[responses] store`), in redb, so a
//! restart does not break the conversations clients are in the middle of.
//! Built like the spend store (docs/decisions/spend-store.md): the actor
//! never touches the file; it queues puts and deletes for a thread of
//! their own, which commits whatever has queued in one transaction (group
//! commit). Reads never come here: every live entry is in memory (the
//! store is bounded by `max_bytes` either way), so the file is only read
//! once, at start.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition};

use super::codec;
use super::state::Conversation;

/// Response id → encoded conversation ([`codec`]).
const CONVERSATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("conversations");

#[derive(Debug, thiserror::Error)]
#[error("responses store {path}: {message}")]
pub struct DiskError {
    pub path: String,
    pub message: String,
}

fn err(path: &Path, e: impl std::fmt::Display) -> DiskError {
    DiskError { path: path.display().to_string(), message: e.to_string() }
}

/// One change for the writer.
pub enum Job {
    Put(String, Vec<u8>),
    Delete(String),
}

pub struct Disk {
    tx: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
}

/// What the file held at start and is still fresh: `(id, conversation,
/// age)`, oldest first.
pub type Loaded = Vec<(String, Conversation, Duration)>;

impl Disk {
    /// Open (or create) the file, read what it holds that is younger than
    /// `ttl`, drop the rest, and start the writer thread.
    pub fn open(path: &Path, ttl: Duration) -> Result<(Disk, Loaded), DiskError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(path, e))?;
        }
        let db = Database::create(path).map_err(|e| err(path, e))?;
        let loaded = load(&db, ttl).map_err(|e| err(path, e))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("sluice-responses-store".into())
            .spawn(move || write_loop(db, rx, &shown))
            .map_err(|e| err(path, e))?;
        Ok((Disk { tx: Some(tx), writer: Some(writer), path: path.to_path_buf() }, loaded))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue a change for the writer (never blocks).
    pub fn send(&self, job: Job) {
        if let Some(tx) = &self.tx
            && tx.send(job).is_err()
        {
            tracing::error!(store = %self.path.display(), "responses store writer is gone; conversations are not persisted");
        }
    }
}

impl Drop for Disk {
    /// Let the writer commit what is queued, then stop it.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Read every entry; delete the expired and unreadable ones.
fn load(db: &Database, ttl: Duration) -> Result<Loaded, redb::Error> {
    let w = db.begin_write()?;
    let now = codec::unix_ms();
    let mut fresh = Vec::new();
    let mut stale = Vec::new();
    {
        let mut table = w.open_table(CONVERSATIONS)?;
        for row in table.iter()? {
            let (k, v) = row?;
            let id = k.value().to_string();
            match codec::decode(v.value()) {
                Some(c) => {
                    let age = Duration::from_millis(now.saturating_sub(c.stored_unix_ms));
                    if age < ttl {
                        fresh.push((id, c, age));
                    } else {
                        stale.push(id);
                    }
                }
                None => stale.push(id),
            }
        }
        for id in &stale {
            table.remove(id.as_str())?;
        }
    }
    w.commit()?;
    // Oldest first: the store's eviction and expiry order.
    fresh.sort_by_key(|(_, c, _)| c.stored_unix_ms);
    Ok(fresh)
}

fn write_loop(db: Database, rx: mpsc::Receiver<Job>, shown: &str) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // Group commit: take everything that queued up meanwhile.
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        if let Err(e) = commit(&db, &batch) {
            tracing::error!(store = %shown, error = %e, changes = batch.len(), "cannot persist conversations");
        }
    }
}

fn commit(db: &Database, batch: &[Job]) -> Result<(), redb::Error> {
    let w = db.begin_write()?;
    {
        let mut table = w.open_table(CONVERSATIONS)?;
        for job in batch {
            match job {
                Job::Put(id, value) => {
                    table.insert(id.as_str(), value.as_slice())?;
                }
                Job::Delete(id) => {
                    table.remove(id.as_str())?;
                }
            }
        }
    }
    w.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn conv(stored_unix_ms: u64) -> Conversation {
        Conversation {
            owner: "k".into(),
            response: Bytes::from_static(b"{}"),
            items: Bytes::from_static(b"[]"),
            stored_unix_ms,
        }
    }

    #[test]
    fn conversations_survive_reopening_and_expired_ones_are_dropped() {
        let dir = std::env::temp_dir().join(format!("sluice-responses-test-{}", std::process::id()));
        let path = dir.join("responses.redb");
        let _ = std::fs::remove_file(&path);
        let ttl = Duration::from_secs(3600);
        let now = codec::unix_ms();
        {
            let (disk, loaded) = Disk::open(&path, ttl).unwrap();
            assert!(loaded.is_empty());
            disk.send(Job::Put("new".into(), codec::encode(&conv(now))));
            disk.send(Job::Put("older".into(), codec::encode(&conv(now - 1000))));
            disk.send(Job::Put("expired".into(), codec::encode(&conv(now - 7_200_000))));
            disk.send(Job::Put("gone".into(), codec::encode(&conv(now))));
            disk.send(Job::Delete("gone".into()));
        }
        let (_disk, loaded) = Disk::open(&path, ttl).unwrap();
        let ids: Vec<&str> = loaded.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(ids, ["older", "new"]);
        assert!(loaded[0].2 >= Duration::from_secs(1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
