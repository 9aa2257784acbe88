//! The admin API (admin key only): runtime keys ([`keys`]), teams
//! ([`teams`]), spend history ([`spend`]) and config reload ([`reload`]).
//!
//! A change to keys or teams goes: validated here → a new record (digests,
//! never secrets) → committed to the redb store → applied to the runtime
//! accounts → stored in Redis and announced to the other replicas (with
//! `[shared]`) → a new key table published, which the next request uses.
//! docs/decisions/runtime-keys.md says why it is built this way.

pub mod keys;
pub mod reload;
pub mod spend;
pub mod teams;

use std::sync::Arc;

use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Deserializer, Serialize};
use sluice_actors::accounts::{AccountRecord, Allowance};
use sluice_actors::replicas::AccountsEvent;

use crate::error::GatewayError;
use crate::gateway::{Gateway, Live, Worker};

/// The current snapshot, if the request carries the admin key. Unlike
/// `/status`, the admin API is closed when no admin key is configured: it
/// issues credentials.
fn admin(worker: &Worker, req: &HttpRequest) -> Result<Arc<Gateway>, GatewayError> {
    let gw = worker.live.load();
    if gw.admin_digest.is_none() {
        return Err(GatewayError::AdminKeyRequired);
    }
    gw.admin(req)?;
    Ok(gw)
}

/// A JSON answer.
fn json(status: actix_web::http::StatusCode, body: &impl Serialize) -> HttpResponse {
    match sonic_rs::to_string(body) {
        Ok(s) => HttpResponse::build(status).content_type("application/json").body(s),
        Err(e) => GatewayError::Internal { detail: e.to_string() }.error_response(),
    }
}

fn answer(r: Result<HttpResponse, GatewayError>) -> HttpResponse {
    r.unwrap_or_else(|e| e.error_response())
}

/// A request body, or 400 saying what is wrong with it.
fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, GatewayError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { bytes };
    serde_json_like(bytes)
}

fn serde_json_like<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, GatewayError> {
    if crate::json::nesting_exceeds(bytes, crate::json::MAX_DEPTH) {
        return Err(GatewayError::invalid("The request body nests too deeply.", None));
    }
    sonic_rs::from_slice(bytes).map_err(|e| GatewayError::invalid(format!("The request body is not valid: {e}"), None))
}

/// Names of runtime keys and teams: what a URL path, a metric label and a
/// Redis key can all hold without escaping.
fn check_name(what: &str, name: &str) -> Result<(), GatewayError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(GatewayError::invalid(
            format!("A {what} name is 1 to 64 characters: letters, digits, `-`, `_` and `.`."),
            Some("name"),
        ))
    }
}

/// `null` in a PATCH body clears a setting; a missing member keeps it.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The limits and budgets of a create or a PATCH body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowanceChange {
    #[serde(default, deserialize_with = "nullable")]
    rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_concurrent: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    daily_budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    monthly_budget_usd: Option<Option<f64>>,
}

impl AllowanceChange {
    fn apply(&self, a: &mut Allowance) -> Result<(), GatewayError> {
        let positive = |v: Option<Option<u64>>, name: &'static str| -> Result<(), GatewayError> {
            match v {
                Some(Some(0)) => Err(GatewayError::invalid(format!("`{name}` must be at least 1."), Some(name))),
                _ => Ok(()),
            }
        };
        positive(self.rpm, "rpm")?;
        positive(self.tpm, "tpm")?;
        positive(self.max_concurrent.map(|v| v.map(u64::from)), "max_concurrent")?;
        for (v, name) in [(self.daily_budget_usd, "daily_budget_usd"), (self.monthly_budget_usd, "monthly_budget_usd")]
        {
            if let Some(Some(usd)) = v
                && !(usd.is_finite() && usd > 0.0)
            {
                return Err(GatewayError::invalid(format!("`{name}` must be a number above 0."), Some(name)));
            }
        }
        if let Some(v) = self.rpm {
            a.rpm = v;
        }
        if let Some(v) = self.tpm {
            a.tpm = v;
        }
        if let Some(v) = self.max_concurrent {
            a.max_concurrent = v;
        }
        if let Some(v) = self.daily_budget_usd {
            a.daily_budget_usd = v;
        }
        if let Some(v) = self.monthly_budget_usd {
            a.monthly_budget_usd = v;
        }
        Ok(())
    }
}

/// Runtime keys need somewhere to outlive the process.
fn needs_storage(worker: &Worker, gw: &Gateway) -> Result<(), GatewayError> {
    if worker.live.accounts.store.is_none() && gw.replicas.is_none() {
        return Err(GatewayError::AdminConflict {
            message: "Runtime keys and teams need somewhere to be kept: set `[spend] store` (a redb file) or \
                      `[shared]` (Redis) in the config; without either they would vanish at the next restart."
                .into(),
        });
    }
    Ok(())
}

/// Commit one change: the store (before answering), the runtime accounts,
/// Redis and the other replicas, then the key table the next request uses.
async fn commit(live: &Live, gw: &Gateway, record: AccountRecord) -> Result<(), GatewayError> {
    if let Some(store) = live.accounts.store.clone() {
        let r = record.clone();
        actix_web::web::block(move || store.put(&r))
            .await
            .map_err(|e| GatewayError::Internal { detail: e.to_string() })?
            .map_err(|e| GatewayError::Internal { detail: e.to_string() })?;
    }
    live.accounts.lock().apply(record.clone());
    if let Some(r) = &gw.replicas
        && let Err(e) = r.put_account(&record).await
    {
        // Kept here and in the store; pushed to Redis when the link is back
        // (every replica pushes what it holds when its subscription restarts).
        tracing::warn!(error = %e, name = record.name(), "runtime key change not in redis yet");
    }
    live.rebuild_keys().await.map_err(|detail| GatewayError::Internal { detail })
}

/// Apply what other replicas did to runtime keys and teams, for as long as
/// the gateway runs (replicas mode).
pub async fn follow_replicas(live: Arc<Live>, mut feed: tokio::sync::mpsc::UnboundedReceiver<AccountsEvent>) {
    while let Some(ev) = feed.recv().await {
        let Some(replicas) = live.load().replicas.clone() else { return };
        let heard: Vec<AccountRecord> = match ev {
            AccountsEvent::Record(r) => vec![*r],
            AccountsEvent::Resync => {
                // Push what this replica holds (changes made while Redis was
                // away), then take what the others did meanwhile.
                let mine: Vec<AccountRecord> = {
                    let a = live.accounts.lock();
                    a.keys
                        .values()
                        .cloned()
                        .map(AccountRecord::Key)
                        .chain(a.teams.values().cloned().map(AccountRecord::Team))
                        .collect()
                };
                for r in &mine {
                    let _ = replicas.put_account(r).await;
                }
                replicas.fetch_accounts().await.unwrap_or_default()
            }
        };
        let mut changed = Vec::new();
        {
            let mut a = live.accounts.lock();
            for r in heard {
                if a.apply(r.clone()) {
                    changed.push(r);
                }
            }
        }
        if changed.is_empty() {
            continue;
        }
        if let Some(store) = live.accounts.store.clone() {
            let _ = actix_web::web::block(move || {
                for r in &changed {
                    if let Err(e) = store.put(r) {
                        tracing::warn!(error = %e, "cannot store a runtime key heard from another replica");
                    }
                }
            })
            .await;
        }
        if let Err(e) = live.rebuild_keys().await {
            tracing::error!(error = %e, "cannot apply runtime keys heard from another replica");
        }
    }
}

/// Handlers take the worker (they need the live cell, not one snapshot).
pub type W = Data<Worker>;
