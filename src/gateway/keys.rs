//! The key table requests authenticate against: the config's `[[keys]]`
//! and the runtime keys of the admin API, each with its limiter scopes
//! (its own, per model, its team's) and spend slots (its own, its team's),
//! defined by name in the limiter's and the spend table — so a key whose
//! limits did not change keeps its state across a rebuild.

use std::collections::HashSet;
use std::sync::Arc;

use sluice_actors::accounts::{Accounts, Allowance, KeyRecord};
use sluice_actors::rate_limiter::{Budgets, LimiterHandle, SpendKey};

use crate::auth::{ANONYMOUS, KeyPolicy, KeyTable, config_policy};
use crate::config::{Config, Limits};
use crate::limits::{define, key_model_scope_name, key_scope_name, team_scope_name};

/// A built key table and the limiter scopes and spend slots it uses.
pub struct BuiltKeys {
    pub table: KeyTable,
    pub scopes: HashSet<usize>,
    pub spend: HashSet<usize>,
}

fn limits(a: &Allowance) -> Limits {
    Limits { rpm: a.rpm, tpm: a.tpm, max_concurrent: a.max_concurrent }
}

fn budgets(a: &Allowance) -> Budgets {
    Budgets { daily_usd: a.daily_budget_usd, monthly_usd: a.monthly_budget_usd }
}

/// Parse a digest written as 64 hex characters.
pub fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

pub fn build(cfg: &Config, accounts: &Accounts, limiter: &LimiterHandle) -> BuiltKeys {
    let (table, spend) = (limiter.table(), limiter.spend());
    let mut out = BuiltKeys { table: KeyTable::default(), scopes: HashSet::new(), spend: HashSet::new() };
    for k in &cfg.keys {
        let mut p = config_policy(k);
        p.scopes.extend(define(table, key_scope_name(&k.name), &k.limits));
        for (mi, l) in &k.model_limits {
            let model = cfg.models.get(*mi).map(|m| m.name.as_str()).unwrap_or("?");
            if let Some(s) = define(table, key_model_scope_name(&k.name, model), l) {
                p.model_scopes.insert(*mi, s);
            }
        }
        let slot =
            spend.define_key(&k.name, &Budgets { daily_usd: k.daily_budget_usd, monthly_usd: k.monthly_budget_usd });
        p.spend = Some(slot);
        out.note(&p);
        out.table.insert(k.key_sha256, Arc::new(p), None);
    }
    for k in accounts.live_keys() {
        if cfg.keys.iter().any(|c| c.name == k.name) {
            tracing::warn!(key = %k.name, "a runtime key has the name of a config key; the config key wins");
            continue;
        }
        let Some(digest) = parse_digest(&k.sha256) else { continue };
        if out.table.contains(&digest) {
            tracing::warn!(key = %k.name, "a runtime key has the secret of another key; it is not accepted");
            continue;
        }
        let p = Arc::new(runtime_policy(k, accounts, limiter));
        out.note(&p);
        out.table.insert(digest, p.clone(), k.expires_at);
        if let Some(prev) = &k.previous
            && let Some(old) = parse_digest(&prev.sha256)
            && !out.table.contains(&old)
        {
            let until = k.expires_at.map_or(prev.valid_until, |e| e.min(prev.valid_until));
            out.table.insert(old, p, Some(until));
        }
    }
    if cfg.keys.is_empty() && accounts.live_keys().next().is_none() && cfg.server.allow_anonymous {
        let mut p = KeyPolicy::new(ANONYMOUS.into(), &["*".to_string()]);
        p.spend = Some(spend.slot(SpendKey::Anonymous));
        out.table.set_anonymous(Arc::new(p));
    }
    out
}

fn runtime_policy(k: &KeyRecord, accounts: &Accounts, limiter: &LimiterHandle) -> KeyPolicy {
    let (table, spend) = (limiter.table(), limiter.spend());
    let mut p = KeyPolicy::new(k.name.clone(), &k.models);
    p.priority = k.priority;
    p.scopes.extend(define(table, key_scope_name(&k.name), &limits(&k.allowance)));
    p.spend = Some(spend.define_key(&k.name, &budgets(&k.allowance)));
    if let Some(team) = k.team.as_deref().and_then(|t| accounts.team(t)) {
        p.team = Some(team.name.clone());
        p.scopes.extend(define(table, team_scope_name(&team.name), &limits(&team.allowance)));
        p.team_spend = Some(spend.define_team(&team.name, &budgets(&team.allowance)));
    }
    p
}

impl BuiltKeys {
    fn note(&mut self, p: &KeyPolicy) {
        self.scopes.extend(p.scopes.iter().copied());
        self.scopes.extend(p.model_scopes.values().copied());
        self.spend.extend(p.spend);
        self.spend.extend(p.team_spend);
    }
}
