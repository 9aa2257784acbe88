//! `GET /admin/spend?key=&team=&model=&from=&to=`: spend per day, key and
//! model, from the spend store's history (`from`/`to` are UTC dates,
//! `YYYY-MM-DD`, both included; the last 30 days by default). `team`
//! means its keys.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use sluice_actors::rate_limiter::spend::{NANOS_PER_USD, today};

use super::{W, admin, answer, json};
use crate::error::GatewayError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    key: Option<String>,
    team: Option<String>,
    model: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Serialize)]
struct Row {
    date: String,
    key: String,
    model: String,
    usd: f64,
}

#[derive(Debug, Serialize)]
struct Answer {
    from: String,
    to: String,
    days: Vec<Row>,
    total_usd: f64,
}

fn parse_day(s: &str, param: &'static str) -> Result<u32, GatewayError> {
    let bad = || GatewayError::invalid(format!("`{param}` must be a date, YYYY-MM-DD."), Some(param));
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (y, m, d) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>());
    let (Ok(y), Ok(m), Ok(d)) = (y, m, d) else { return Err(bad()) };
    let month = time::Month::try_from(m).map_err(|_| bad())?;
    let d = time::Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
    let days = (d - time::Date::from_calendar_date(1970, time::Month::January, 1).unwrap_or(d)).whole_days();
    u32::try_from(days).map_err(|_| GatewayError::invalid(format!("`{param}` is before 1970."), Some(param)))
}

fn date(day: u32) -> String {
    time::OffsetDateTime::from_unix_timestamp(i64::from(day) * 86_400).map(|t| t.date().to_string()).unwrap_or_default()
}

pub async fn spend(w: W, req: HttpRequest) -> HttpResponse {
    answer(
        async {
            let gw = admin(&w, &req)?;
            let q: Query = serde_urlencoded_like(req.query_string())?;
            let to = q.to.as_deref().map(|s| parse_day(s, "to")).transpose()?.unwrap_or_else(today);
            let from = q.from.as_deref().map(|s| parse_day(s, "from")).transpose()?.unwrap_or(to.saturating_sub(29));
            if from > to {
                return Err(GatewayError::invalid("`from` is after `to`.", Some("from")));
            }
            let mut keys: Option<Vec<String>> = q.key.map(|k| vec![k]);
            if let Some(team) = &q.team {
                let a = w.live.accounts.lock();
                if a.team(team).is_none() {
                    return Err(GatewayError::AdminNotFound { what: "team", name: team.clone() });
                }
                let members: Vec<String> =
                    a.live_keys().filter(|k| k.team.as_deref() == Some(team)).map(|k| k.name.clone()).collect();
                keys = Some(match keys {
                    Some(k) => k.into_iter().filter(|k| members.contains(k)).collect(),
                    None => members,
                });
            }
            let Some(store) = gw.upstreams.limiter.store().cloned() else {
                return Err(GatewayError::AdminConflict {
                    message: "Spend history is kept in the spend store: set `[spend] store` in the config.".into(),
                });
            };
            let model = q.model;
            let rows = actix_web::web::block(move || store.days(keys.as_deref(), model.as_deref(), from, to))
                .await
                .map_err(|e| GatewayError::Internal { detail: e.to_string() })?
                .map_err(|e| GatewayError::Internal { detail: e.to_string() })?;
            let mut days: Vec<Row> = rows
                .into_iter()
                .map(|r| Row { date: date(r.day), key: r.key, model: r.model, usd: r.nanos as f64 / NANOS_PER_USD })
                .collect();
            days.sort_by(|a, b| (&a.date, &a.key, &a.model).cmp(&(&b.date, &b.key, &b.model)));
            let total_usd = days.iter().map(|r| r.usd).sum();
            Ok(json(StatusCode::OK, &Answer { from: date(from), to: date(to), days, total_usd }))
        }
        .await,
    )
}

/// The query string's parameters (percent-decoded); unknown ones are 400.
fn serde_urlencoded_like(q: &str) -> Result<Query, GatewayError> {
    let mut out = Query::default();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        let v = Some(v.into_owned()).filter(|v| !v.is_empty());
        match k.as_ref() {
            "key" => out.key = v,
            "team" => out.team = v,
            "model" => out.model = v,
            "from" => out.from = v,
            "to" => out.to = v,
            other => {
                return Err(GatewayError::invalid(
                    format!("Unknown parameter `{other}`; expected key, team, model, from, to."),
                    None,
                ));
            }
        }
    }
    Ok(out)
}
