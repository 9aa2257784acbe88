//! Keys and teams created at runtime through the admin API: their records
//! (digests, never secrets), the rule that decides which of two versions of
//! a record wins, and their persistence ([`store`]: the spend store's redb
//! file). Replicas exchange the same records through Redis
//! (`replicas::ReplicasHandle::put_account`). How and why:
//! docs/decisions/runtime-keys.md.
//!
//! The gateway turns the records into its key table; nothing here knows
//! HTTP or the request path.

pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Limits and budgets a key or a team may carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_budget_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_budget_usd: Option<f64>,
}

/// The previous secret of a rotated key, valid until `valid_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// SHA-256 of the old secret, hex.
    pub sha256: String,
    /// Unix seconds.
    pub valid_until: u64,
}

/// A runtime key, as stored and exchanged. Holds no secret: `sha256` is the
/// digest of the key, as `key_sha256` in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub models: Vec<String>,
    #[serde(flatten)]
    pub allowance: Allowance,
    #[serde(default)]
    pub priority: i32,
    /// Unix seconds after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    pub created_at: u64,
    /// Unix milliseconds of the last change: the newest version wins.
    pub updated_ms: u64,
    /// A deleted key is kept as a tombstone, so that an older version
    /// replayed from a replica or Redis cannot bring it back.
    #[serde(default)]
    pub deleted: bool,
}

/// A team: limits and budgets that cap all its keys together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRecord {
    pub name: String,
    #[serde(flatten)]
    pub allowance: Allowance,
    pub created_at: u64,
    pub updated_ms: u64,
    #[serde(default)]
    pub deleted: bool,
}

/// A record of either kind, as it travels (store, Redis, news).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccountRecord {
    Key(KeyRecord),
    Team(TeamRecord),
}

impl AccountRecord {
    pub fn name(&self) -> &str {
        match self {
            AccountRecord::Key(k) => &k.name,
            AccountRecord::Team(t) => &t.name,
        }
    }

    pub fn updated_ms(&self) -> u64 {
        match self {
            AccountRecord::Key(k) => k.updated_ms,
            AccountRecord::Team(t) => t.updated_ms,
        }
    }
}

/// Every runtime key and team (tombstones included), by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accounts {
    pub keys: BTreeMap<String, KeyRecord>,
    pub teams: BTreeMap<String, TeamRecord>,
}

impl Accounts {
    /// Take `r` if it is newer than the version held (by `updated_ms`;
    /// equal times keep the held one, so a replayed copy changes nothing).
    /// Returns whether it changed anything.
    pub fn apply(&mut self, r: AccountRecord) -> bool {
        match r {
            AccountRecord::Key(k) => {
                if self.keys.get(&k.name).is_some_and(|cur| cur.updated_ms >= k.updated_ms) {
                    return false;
                }
                self.keys.insert(k.name.clone(), k);
            }
            AccountRecord::Team(t) => {
                if self.teams.get(&t.name).is_some_and(|cur| cur.updated_ms >= t.updated_ms) {
                    return false;
                }
                self.teams.insert(t.name.clone(), t);
            }
        }
        true
    }

    /// Live keys (not deleted).
    pub fn live_keys(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.values().filter(|k| !k.deleted)
    }

    pub fn live_teams(&self) -> impl Iterator<Item = &TeamRecord> {
        self.teams.values().filter(|t| !t.deleted)
    }

    pub fn key(&self, name: &str) -> Option<&KeyRecord> {
        self.keys.get(name).filter(|k| !k.deleted)
    }

    pub fn team(&self, name: &str) -> Option<&TeamRecord> {
        self.teams.get(name).filter(|t| !t.deleted)
    }

    /// A time for a new version of a record: now, or just after the held
    /// version when the clock is behind it (so an edit always wins over
    /// what it edits).
    pub fn next_ms(&self, held: Option<u64>, now_ms: u64) -> u64 {
        held.map_or(now_ms, |h| now_ms.max(h + 1))
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, updated_ms: u64, deleted: bool) -> AccountRecord {
        AccountRecord::Key(KeyRecord {
            name: name.into(),
            sha256: "00".repeat(32),
            previous: None,
            team: None,
            models: vec!["*".into()],
            allowance: Allowance::default(),
            priority: 0,
            expires_at: None,
            created_at: 1,
            updated_ms,
            deleted,
        })
    }

    #[test]
    fn the_newest_version_wins_and_a_tombstone_is_not_undone_by_a_replay() {
        let mut a = Accounts::default();
        assert!(a.apply(key("k", 10, false)));
        assert!(!a.apply(key("k", 10, false)), "the same version again changes nothing");
        assert!(a.apply(key("k", 20, true)));
        assert!(a.key("k").is_none());
        assert!(!a.apply(key("k", 15, false)), "an older copy cannot resurrect it");
        assert!(a.key("k").is_none());
        assert_eq!(a.next_ms(Some(20), 5), 21, "a clock behind the held version still moves forward");
        assert_eq!(a.next_ms(None, 5), 5);
    }

    #[test]
    fn records_round_trip_as_json_without_unknown_members() {
        let r = key("k", 10, false);
        let s = sonic_rs::to_string(&r).unwrap();
        assert!(s.contains("\"kind\":\"key\""), "{s}");
        assert_eq!(sonic_rs::from_str::<AccountRecord>(&s).unwrap(), r);
    }
}
