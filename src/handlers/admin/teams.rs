//! `/admin/teams`: a team's limits (rpm, tpm, concurrency) and budgets
//! (daily, monthly) cap all its keys together — one limiter scope and one
//! spend account that every key of the team counts against too.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Path};
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use sluice_actors::accounts::{AccountRecord, Allowance, TeamRecord, unix_ms};

use super::{AllowanceChange, W, admin, answer, body, check_name, commit, json, needs_storage};
use crate::error::GatewayError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    #[serde(flatten)]
    allowance: AllowanceChange,
}

#[derive(Debug, Serialize)]
struct TeamView {
    name: String,
    #[serde(flatten)]
    allowance: Allowance,
    created_at: u64,
    /// Its keys' names.
    keys: Vec<String>,
    /// Spend of the team as a whole, today and this month (UTC), in USD.
    today_usd: f64,
    month_usd: f64,
}

fn view(w: &W, t: &TeamRecord) -> TeamView {
    let gw = w.live.load();
    let spend = gw.upstreams.limiter.spend();
    let (today_usd, month_usd) = spend
        .find_key(&format!("{}{}", sluice_actors::rate_limiter::spend::TEAM_PREFIX, t.name))
        .map_or((0.0, 0.0), |slot| spend.periods_usd(slot, sluice_actors::rate_limiter::spend::today()));
    let keys = w
        .live
        .accounts
        .lock()
        .live_keys()
        .filter(|k| k.team.as_deref() == Some(&t.name))
        .map(|k| k.name.clone())
        .collect();
    TeamView {
        name: t.name.clone(),
        allowance: t.allowance.clone(),
        created_at: t.created_at,
        keys,
        today_usd,
        month_usd,
    }
}

fn not_found(name: &str) -> GatewayError {
    GatewayError::AdminNotFound { what: "team", name: name.to_string() }
}

pub async fn create(w: W, req: HttpRequest, raw: Bytes) -> HttpResponse {
    answer(
        async {
            let gw = admin(&w, &req)?;
            needs_storage(&w, &gw)?;
            let c: Create = body(&raw)?;
            check_name("team", &c.name)?;
            let mut allowance = Allowance::default();
            c.allowance.apply(&mut allowance)?;
            let record = {
                let a = w.live.accounts.lock();
                if a.team(&c.name).is_some() {
                    return Err(GatewayError::AdminConflict { message: format!("A team named `{}` exists.", c.name) });
                }
                TeamRecord {
                    updated_ms: a.next_ms(a.teams.get(&c.name).map(|t| t.updated_ms), unix_ms()),
                    name: c.name,
                    allowance,
                    created_at: unix_ms() / 1000,
                    deleted: false,
                }
            };
            commit(&w.live, &gw, AccountRecord::Team(record.clone())).await?;
            Ok(json(StatusCode::CREATED, &view(&w, &record)))
        }
        .await,
    )
}

#[derive(Serialize)]
struct List {
    data: Vec<TeamView>,
}

pub async fn list(w: W, req: HttpRequest) -> HttpResponse {
    answer((|| {
        admin(&w, &req)?;
        let teams: Vec<TeamRecord> = w.live.accounts.lock().live_teams().cloned().collect();
        Ok(json(StatusCode::OK, &List { data: teams.iter().map(|t| view(&w, t)).collect() }))
    })())
}

pub async fn get(w: W, req: HttpRequest, name: Path<String>) -> HttpResponse {
    answer((|| {
        admin(&w, &req)?;
        let t = w.live.accounts.lock().team(&name).cloned().ok_or_else(|| not_found(&name))?;
        Ok(json(StatusCode::OK, &view(&w, &t)))
    })())
}

pub async fn patch(w: W, req: HttpRequest, name: Path<String>, raw: Bytes) -> HttpResponse {
    answer(
        async {
            let gw = admin(&w, &req)?;
            let p: AllowanceChange = body(&raw)?;
            let record = {
                let a = w.live.accounts.lock();
                let mut t = a.team(&name).ok_or_else(|| not_found(&name))?.clone();
                p.apply(&mut t.allowance)?;
                t.updated_ms = a.next_ms(Some(t.updated_ms), unix_ms());
                t
            };
            commit(&w.live, &gw, AccountRecord::Team(record.clone())).await?;
            Ok(json(StatusCode::OK, &view(&w, &record)))
        }
        .await,
    )
}

pub async fn delete(w: W, req: HttpRequest, name: Path<String>) -> HttpResponse {
    answer(
        async {
            let gw = admin(&w, &req)?;
            let record = {
                let a = w.live.accounts.lock();
                let mut t = a.team(&name).ok_or_else(|| not_found(&name))?.clone();
                let members: Vec<&str> =
                    a.live_keys().filter(|k| k.team.as_deref() == Some(&name)).map(|k| k.name.as_str()).collect();
                if !members.is_empty() {
                    return Err(GatewayError::AdminConflict {
                        message: format!(
                            "The team `{name}` still has keys ({}): delete them or move them to another team first.",
                            members.join(", ")
                        ),
                    });
                }
                t.deleted = true;
                t.updated_ms = a.next_ms(Some(t.updated_ms), unix_ms());
                t
            };
            commit(&w.live, &gw, AccountRecord::Team(record)).await?;
            Ok(json(StatusCode::OK, &sonic_rs::json!({"name": name.as_str(), "deleted": true})))
        }
        .await,
    )
}
