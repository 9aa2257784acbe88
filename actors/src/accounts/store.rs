//! Runtime keys and teams in redb: one table, name-and-kind → the record as
//! JSON, in the spend store's file (one database, so one file to back up
//! and one lock; redb serialises its write transactions). A write is
//! committed (`Immediate` durability, fsync'd) before the admin call that
//! made it answers. Writes are rare (an operator's calls), so each is its
//! own transaction, made off the actors' thread.

use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{AccountRecord, Accounts};

/// ("key" | "team", name) → the record, JSON.
const RECORDS: TableDefinition<(&str, &str), &str> = TableDefinition::new("admin_accounts");

#[derive(Debug, thiserror::Error)]
#[error("runtime keys store: {0}")]
pub struct AccountsStoreError(pub String);

fn err(e: impl std::fmt::Display) -> AccountsStoreError {
    AccountsStoreError(e.to_string())
}

#[derive(Clone)]
pub struct AccountsStore {
    db: Arc<Database>,
}

fn kind(r: &AccountRecord) -> &'static str {
    match r {
        AccountRecord::Key(_) => "key",
        AccountRecord::Team(_) => "team",
    }
}

impl AccountsStore {
    pub fn new(db: Arc<Database>) -> Result<AccountsStore, AccountsStoreError> {
        let w = db.begin_write().map_err(err)?;
        w.open_table(RECORDS).map_err(err)?;
        w.commit().map_err(err)?;
        Ok(AccountsStore { db })
    }

    /// Every stored record (tombstones included).
    pub fn load(&self) -> Result<Accounts, AccountsStoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(RECORDS).map_err(err)?;
        let mut out = Accounts::default();
        for row in t.iter().map_err(err)? {
            let (_, v) = row.map_err(err)?;
            match sonic_rs::from_str::<AccountRecord>(v.value()) {
                Ok(rec) => {
                    out.apply(rec);
                }
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable runtime key record"),
            }
        }
        Ok(out)
    }

    /// Store one record, committed before this returns (blocks on disk).
    pub fn put(&self, rec: &AccountRecord) -> Result<(), AccountsStoreError> {
        let json = sonic_rs::to_string(rec).map_err(err)?;
        let w = self.db.begin_write().map_err(err)?;
        {
            let mut t = w.open_table(RECORDS).map_err(err)?;
            t.insert((kind(rec), rec.name()), json.as_str()).map_err(err)?;
        }
        w.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Allowance, TeamRecord};
    use super::*;

    #[test]
    fn records_survive_reopening_the_file() {
        let dir = std::env::temp_dir().join(format!("sluice-accounts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spend.redb");
        let _ = std::fs::remove_file(&path);
        let team = AccountRecord::Team(TeamRecord {
            name: "search".into(),
            allowance: Allowance { rpm: Some(5), ..Allowance::default() },
            created_at: 1,
            updated_ms: 2,
            deleted: false,
        });
        {
            let s = AccountsStore::new(Arc::new(Database::create(&path).unwrap())).unwrap();
            s.put(&team).unwrap();
        }
        let s = AccountsStore::new(Arc::new(Database::create(&path).unwrap())).unwrap();
        let a = s.load().unwrap();
        assert_eq!(a.team("search").and_then(|t| t.allowance.rpm), Some(5));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
