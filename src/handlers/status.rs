//! `GET /status`: every actor's state and live detail, as JSON. Needs the
//! admin key when `server.admin_key` is set. Holds no secret: actors never
//! see provider keys except in warm-up headers, which they never print.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use sonic_rs::JsonValueMutTrait;

use crate::auth;
use crate::error::GatewayError;
use crate::gateway::WorkerState;
use crate::route::ModelTable;

#[derive(Serialize)]
struct Status {
    version: &'static str,
    uptime_s: u64,
    /// The config running now: where from, the SHA-256 of its bytes, and
    /// when it was loaded (start, or the last reload).
    config: ConfigStatus,
    actors: sonic_rs::Value,
    /// What the request path did per model: retries, fallbacks, hedges.
    models: Vec<sonic_rs::Value>,
    /// Cloud providers' credentials: source, refreshes, expiry, last error; never a value.
    credentials: Vec<crate::providers::credentials::CredentialStatus>,
}

#[derive(Serialize)]
struct ConfigStatus {
    source: String,
    digest: Option<String>,
    loaded_at_unix: u64,
}

/// Test builds only: make an actor panic inside a handler (admin key required
/// when one is set), to prove its supervisor restarts it.
#[cfg(feature = "fault-injection")]
pub async fn inject_panic(state: WorkerState, req: HttpRequest) -> HttpResponse {
    let gw = &state.gateway;
    if let Some(d) = &gw.admin_digest
        && !auth::is_admin(d, req.headers())
    {
        return GatewayError::AdminKeyRequired.error_response();
    }
    let actor = req.query_string().strip_prefix("actor=").unwrap_or("");
    if !gw.registry.inject_panic(actor) {
        return GatewayError::invalid(format!("no such actor: {actor}"), Some("actor")).error_response();
    }
    HttpResponse::Accepted().content_type("application/json").body("{\"injected\":\"panic\"}")
}

/// Test builds only: block an actor's thread for `ms` and fill its mailbox
/// (`POST /admin/faults/stall?actor=NAME&ms=N`), to prove that nothing the
/// request path hands over (spend) is lost while an actor cannot keep up.
#[cfg(feature = "fault-injection")]
pub async fn inject_stall(state: WorkerState, req: HttpRequest) -> HttpResponse {
    let gw = &state.gateway;
    if let Some(d) = &gw.admin_digest
        && !auth::is_admin(d, req.headers())
    {
        return GatewayError::AdminKeyRequired.error_response();
    }
    let (mut actor, mut ms) = ("", 0u64);
    for pair in req.query_string().split('&') {
        match pair.split_once('=') {
            Some(("actor", v)) => actor = v,
            Some(("ms", v)) => ms = v.parse().unwrap_or(0).min(60_000),
            _ => {}
        }
    }
    match gw.registry.inject_stall(actor, ms) {
        Some(queued) => HttpResponse::Accepted()
            .content_type("application/json")
            .body(format!("{{\"injected\":\"stall\",\"queued\":{queued}}}")),
        None => GatewayError::invalid(format!("no such actor: {actor}"), Some("actor")).error_response(),
    }
}

/// How long `/status` waits for an actor before reporting it unresponsive.
const ACTOR_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn status(state: WorkerState, req: HttpRequest) -> HttpResponse {
    let gw = &state.gateway;
    if let Some(d) = &gw.admin_digest
        && !auth::is_admin(d, req.headers())
    {
        return GatewayError::AdminKeyRequired.error_response();
    }
    let actors = match sonic_rs::to_value(&gw.registry.status(ACTOR_TIMEOUT).await) {
        Ok(v) => name_models(v, &gw.upstreams.models),
        Err(e) => return GatewayError::Internal { detail: e.to_string() }.error_response(),
    };
    let body = Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: gw.started.elapsed().as_secs(),
        config: ConfigStatus {
            source: gw.config.source.clone(),
            digest: gw.loaded.digest.clone(),
            loaded_at_unix: gw.loaded.at_unix,
        },
        actors,
        models: gw.upstreams.metrics.routing_status(),
        credentials: gw.upstreams.providers.iter().filter_map(|(_, p)| p.credentials()).collect(),
    };
    match sonic_rs::to_string(&body) {
        Ok(s) => HttpResponse::Ok().content_type("application/json").body(s),
        Err(e) => GatewayError::Internal { detail: e.to_string() }.error_response(),
    }
}

/// Give each deployment entry of the actors' detail its model's name. The
/// actors know deployments by id and label (`provider/model`), and two
/// models may share a deployment (the default config's `mock` and `fast`
/// both use `mock/mock-1`): without the model the entries read the same.
/// The actors list the live deployments in id order.
fn name_models(mut actors: sonic_rs::Value, models: &ModelTable) -> sonic_rs::Value {
    let mut by_id: Vec<(usize, &str)> = models.deployments().map(|(m, d)| (d.id, m.name.as_str())).collect();
    by_id.sort_unstable();
    let names: Vec<&str> = by_id.into_iter().map(|(_, n)| n).collect();
    for actor in actors.as_array_mut().into_iter().flatten() {
        let Some(deployments) = actor.get_mut("detail").and_then(|d| d.get_mut("deployments")) else { continue };
        for (entry, name) in deployments.as_array_mut().into_iter().flatten().zip(&names) {
            if let Some(o) = entry.as_object_mut()
                && o.get(&"deployment").is_some()
            {
                o.insert("model", *name);
            }
        }
    }
    actors
}
