//! `/admin/keys`: runtime keys — create (the secret shown once), list
//! (never a secret), change, rotate (the old secret valid for a grace
//! period), delete. Config keys are listed read-only.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Path};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_actors::accounts::{AccountRecord, Accounts, Allowance, KeyRecord, Previous, unix_ms};

use super::{AllowanceChange, W, admin, answer, body, check_name, commit, json, needs_storage, nullable};
use crate::config::Config;
use crate::error::GatewayError;

/// How long a rotated key's old secret keeps working, unless the call says.
pub const DEFAULT_GRACE_S: u64 = 86_400;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    priority: Option<i32>,
    /// Unix seconds.
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(flatten)]
    allowance: AllowanceChange,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    #[serde(default, deserialize_with = "nullable")]
    team: Option<Option<String>>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<u64>>,
    #[serde(flatten)]
    allowance: AllowanceChange,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// How long the old secret keeps working, in seconds (0: not at all).
    #[serde(default)]
    grace_s: Option<u64>,
}

/// A key as the admin API shows it: never its secret, nor its digest.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub name: String,
    /// `config` (read-only: change the file) or `runtime`.
    pub source: &'static str,
    pub team: Option<String>,
    pub models: Vec<String>,
    #[serde(flatten)]
    pub allowance: Allowance,
    pub priority: i32,
    pub expires_at: Option<u64>,
    pub created_at: Option<u64>,
    /// Until when the previous secret of a rotated key still works.
    pub previous_valid_until: Option<u64>,
}

#[derive(Debug, Serialize)]
struct WithSecret {
    #[serde(flatten)]
    view: KeyView,
    /// The secret: shown in this answer only, never again.
    key: String,
}

fn view(k: &KeyRecord) -> KeyView {
    KeyView {
        name: k.name.clone(),
        source: "runtime",
        team: k.team.clone(),
        models: k.models.clone(),
        allowance: k.allowance.clone(),
        priority: k.priority,
        expires_at: k.expires_at,
        created_at: Some(k.created_at),
        previous_valid_until: k.previous.as_ref().map(|p| p.valid_until),
    }
}

fn config_views(cfg: &Config) -> impl Iterator<Item = KeyView> + '_ {
    cfg.keys.iter().map(|k| KeyView {
        name: k.name.clone(),
        source: "config",
        team: None,
        models: k.models.clone(),
        allowance: Allowance {
            rpm: k.limits.rpm,
            tpm: k.limits.tpm,
            max_concurrent: k.limits.max_concurrent,
            daily_budget_usd: k.daily_budget_usd,
            monthly_budget_usd: k.monthly_budget_usd,
        },
        priority: k.priority,
        expires_at: None,
        created_at: None,
        previous_valid_until: None,
    })
}

/// A new secret: 32 bytes from the operating system's CSPRNG, base64url.
fn new_secret() -> Result<(String, String), GatewayError> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| GatewayError::Internal { detail: "the system's random source failed".into() })?;
    let secret = format!("sk-sluice-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let digest = hex::encode(Sha256::digest(secret.as_bytes()));
    Ok((secret, digest))
}

fn now_s() -> u64 {
    unix_ms() / 1000
}

/// Model patterns: `*`, `prefix*`, or a model of the running config.
fn check_models(cfg: &Config, models: &[String]) -> Result<(), GatewayError> {
    if models.is_empty() {
        return Err(GatewayError::invalid("`models` must list at least one model (or `*`).", Some("models")));
    }
    for m in models {
        let pattern = m == "*" || (m.ends_with('*') && !m[..m.len() - 1].contains('*') && m.len() > 1);
        if !pattern && (m.contains('*') || !cfg.models.iter().any(|c| &c.name == m)) {
            return Err(GatewayError::invalid(
                format!("`models`: `{m}` is not a model of this gateway (use an exact name, `prefix*` or `*`)."),
                Some("models"),
            ));
        }
    }
    Ok(())
}

fn check_team(accounts: &Accounts, team: Option<&str>) -> Result<(), GatewayError> {
    match team {
        Some(t) if accounts.team(t).is_none() => Err(GatewayError::invalid(
            format!("No team named `{t}`: create it first (POST /admin/teams)."),
            Some("team"),
        )),
        _ => Ok(()),
    }
}

fn check_expiry(at: Option<u64>) -> Result<(), GatewayError> {
    match at {
        Some(t) if t <= now_s() => Err(GatewayError::invalid("`expires_at` is in the past.", Some("expires_at"))),
        _ => Ok(()),
    }
}

fn read_only(cfg: &Config, name: &str) -> Result<(), GatewayError> {
    if cfg.keys.iter().any(|k| k.name == name) {
        return Err(GatewayError::AdminConflict {
            message: format!(
                "The key `{name}` comes from the config file ({}): it is read-only here; change the file and reload.",
                cfg.source
            ),
        });
    }
    Ok(())
}

pub async fn create(w: W, req: HttpRequest, raw: Bytes) -> HttpResponse {
    answer(
        async {
            let gw = admin(&w, &req)?;
            needs_storage(&w, &gw)?;
            let c: Create = body(&raw)?;
            check_name("key", &c.name)?;
            read_only(&gw.config, &c.name)?;
            let models = c.models.unwrap_or_else(|| vec!["*".to_string()]);
            check_models(&gw.config, &models)?;
            check_expiry(c.expires_at)?;
            let mut allowance = Allowance::default();
            c.allowance.apply(&mut allowance)?;
            let (secret, sha256) = new_secret()?;
            let record = {
                let a = w.live.accounts.lock();
                check_team(&a, c.team.as_deref())?;
                if a.key(&c.name).is_some() {
                    return Err(GatewayError::AdminConflict { message: format!("A key named `{}` exists.", c.name) });
                }
                KeyRecord {
                    updated_ms: a.next_ms(a.keys.get(&c.name).map(|k| k.updated_ms), unix_ms()),
                    name: c.name,
                    sha256,
                    previous: None,
                    team: c.team,
                    models,
                    allowance,
                    priority: c.priority.unwrap_or(0),
                    expires_at: c.expires_at,
                    created_at: now_s(),
                    deleted: false,
                }
            };
            let shown = WithSecret { view: view(&record), key: secret };
            commit(&w.live, &gw, AccountRecord::Key(record)).await?;
            Ok(json(StatusCode::CREATED, &shown))
        }
        .await,
    )
}

#[derive(Serialize)]
struct List {
    data: Vec<KeyView>,
}

pub async fn list(w: W, req: HttpRequest) -> HttpResponse {
    answer((|| {
        let gw = admin(&w, &req)?;
        let mut data: Vec<KeyView> = config_views(&gw.config).collect();
        data.extend(w.live.accounts.lock().live_keys().map(view));
        Ok(json(StatusCode::OK, &List { data }))
    })())
}

pub async fn get(w: W, req: HttpRequest, name: Path<String>) -> HttpResponse {
    answer((|| {
        let gw = admin(&w, &req)?;
        if let Some(v) = config_views(&gw.config).find(|v| v.name == *name) {
            return Ok(json(StatusCode::OK, &v));
        }
        let a = w.live.accounts.lock();
        let k = a.key(&name).ok_or_else(|| not_found(&name))?;
        Ok(json(StatusCode::OK, &view(k)))
    })())
}

fn not_found(name: &str) -> GatewayError {
    GatewayError::AdminNotFound { what: "key", name: name.to_string() }
}

pub async fn patch(w: W, req: HttpRequest, name: Path<String>, raw: Bytes) -> HttpResponse {
    answer(
        async {
            let gw = admin(&w, &req)?;
            read_only(&gw.config, &name)?;
            let p: Patch = body(&raw)?;
            if let Some(m) = &p.models {
                check_models(&gw.config, m)?;
            }
            if let Some(e) = p.expires_at {
                check_expiry(e)?;
            }
            let record = {
                let a = w.live.accounts.lock();
                let mut k = a.key(&name).ok_or_else(|| not_found(&name))?.clone();
                if let Some(t) = &p.team {
                    check_team(&a, t.as_deref())?;
                    k.team.clone_from(t);
                }
                if let Some(m) = p.models {
                    k.models = m;
                }
                if let Some(pr) = p.priority {
                    k.priority = pr;
                }
                if let Some(e) = p.expires_at {
                    k.expires_at = e;
                }
                p.allowance.apply(&mut k.allowance)?;
                k.updated_ms = a.next_ms(Some(k.updated_ms), unix_ms());
                k
            };
            let shown = view(&record);
            commit(&w.live, &gw, AccountRecord::Key(record)).await?;
            Ok(json(StatusCode::OK, &shown))
        }
        .await,
    )
}

pub async fn rotate(w: W, req: HttpRequest, name: Path<String>, raw: Bytes) -> HttpResponse {
    answer(
        async {
            let gw = admin(&w, &req)?;
            read_only(&gw.config, &name)?;
            let r: Rotate = body(&raw)?;
            let grace = r.grace_s.unwrap_or(DEFAULT_GRACE_S);
            let (secret, sha256) = new_secret()?;
            let record = {
                let a = w.live.accounts.lock();
                let mut k = a.key(&name).ok_or_else(|| not_found(&name))?.clone();
                let old = std::mem::replace(&mut k.sha256, sha256);
                k.previous = (grace > 0).then(|| Previous { sha256: old, valid_until: now_s() + grace });
                k.updated_ms = a.next_ms(Some(k.updated_ms), unix_ms());
                k
            };
            let shown = WithSecret { view: view(&record), key: secret };
            commit(&w.live, &gw, AccountRecord::Key(record)).await?;
            Ok(json(StatusCode::OK, &shown))
        }
        .await,
    )
}

pub async fn delete(w: W, req: HttpRequest, name: Path<String>) -> HttpResponse {
    answer(
        async {
            let gw = admin(&w, &req)?;
            read_only(&gw.config, &name)?;
            let record = {
                let a = w.live.accounts.lock();
                let mut k = a.key(&name).ok_or_else(|| not_found(&name))?.clone();
                k.deleted = true;
                k.previous = None;
                k.updated_ms = a.next_ms(Some(k.updated_ms), unix_ms());
                k
            };
            commit(&w.live, &gw, AccountRecord::Key(record)).await?;
            Ok(json(StatusCode::OK, &serde_json_deleted(&name)))
        }
        .await,
    )
}

#[derive(Serialize)]
struct Deleted<'a> {
    name: &'a str,
    deleted: bool,
}

fn serde_json_deleted(name: &str) -> Deleted<'_> {
    Deleted { name, deleted: true }
}
