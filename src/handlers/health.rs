//! `GET /health`: is the gateway able to serve? Read from the actors' shared
//! state, with no message round trip, so it answers even when an actor is
//! stuck.
//!
//! - `unhealthy` (503): shutting down, or an actor has stopped for good or
//!   failed (panicked past its restart budget, see below);
//! - `degraded` (200): an actor is restarting, or every networked provider
//!   failed its last warm-up and has served nothing since, or a cloud
//!   provider's credentials fail (named), or (replicas mode) Redis cannot be
//!   reached;
//! - `healthy` (200) otherwise.

use actix_web::HttpResponse;
use sluice_actors::ActorState;

use crate::gateway::WorkerState;

pub async fn health(state: WorkerState) -> HttpResponse {
    let gw = &state.gateway;
    let mut reasons: Vec<String> = Vec::new();
    let mut unhealthy = gw.is_shutting_down();
    if unhealthy {
        reasons.push("shutting down".into());
    }
    let mut degraded = false;
    for meta in gw.registry.metas() {
        match meta.state() {
            ActorState::Stopped => {
                unhealthy = true;
                reasons.push(format!("actor {} stopped", meta.name()));
            }
            // Unhealthy, not degraded: a failed actor is never restarted,
            // so its concern (breakers learning, the limiter's queue, cache
            // stores...) stays broken until the process is replaced. A 503
            // is what makes a load balancer take this replica out and an
            // orchestrator's liveness probe (deploy/k8s) restart it;
            // `degraded` (200) would leave it serving, broken, forever.
            ActorState::Failed => {
                unhealthy = true;
                let (n, window) = meta.budget();
                reasons.push(format!(
                    "actor {} failed: it panicked more than {n} times within {} s and is not restarted",
                    meta.name(),
                    window.as_secs()
                ));
            }
            ActorState::Restarting | ActorState::Starting => {
                degraded = true;
                reasons.push(format!("actor {} is {}", meta.name(), meta.state().as_str()));
            }
            ActorState::Running => {}
        }
    }
    let table = gw.upstreams.sessions.table();
    let sessions: Vec<_> = gw.upstreams.providers.iter().filter_map(|(id, _)| table.get(id)).collect();
    if !sessions.is_empty()
        && sessions.iter().all(|s| s.stats.opened_total() == 0 && s.stats.connect_errors_total() > 0)
    {
        degraded = true;
        reasons.push("no upstream provider is reachable".into());
    }
    // A cloud provider whose credentials cannot be had fails every request
    // it gets; name it (the problem says where it looked, never a secret).
    for (_, p) in gw.upstreams.providers.iter() {
        if let Some(problem) = p.credential_problem() {
            degraded = true;
            reasons.push(format!("provider `{}`: credentials failing: {problem}", p.name));
        }
    }
    if let Some(s) = gw.replicas.as_ref().filter(|s| !s.is_up()) {
        degraded = true;
        reasons.push(format!(
            "redis is unreachable: limits, spend and cache are per replica until it is back ({})",
            s.link().last_error().unwrap_or_default()
        ));
    }
    let status = if unhealthy {
        "unhealthy"
    } else if degraded {
        "degraded"
    } else {
        "healthy"
    };
    let body = sonic_rs::json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": gw.started.elapsed().as_secs(),
        "reasons": reasons,
    });
    let mut resp = if unhealthy { HttpResponse::ServiceUnavailable() } else { HttpResponse::Ok() };
    resp.content_type("application/json").body(body.to_string())
}
