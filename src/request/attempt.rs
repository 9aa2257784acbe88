//! Attempts: try the model's deployments, then its fallbacks, until one
//! answers. A failure may be retried elsewhere only while nothing has reached
//! the client, so for streams an attempt succeeds only once its first event
//! has arrived.

use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use sluice_actors::upstream_sessions::UpstreamErrorKind;

use super::record::Record;
use super::route::Candidate;
use crate::error::{GatewayError, TimeoutPhase};
use crate::providers::{Call, EventStream, Reply, Timeouts, Usage};
use crate::server::state::WorkerState;

/// What the winning attempt produced.
pub enum Served {
    Complete {
        body: Bytes,
        usage: Option<Usage>,
    },
    /// A stream whose first run of events has already arrived.
    Stream {
        first: Bytes,
        rest: EventStream,
    },
}

/// The deployment that served.
pub struct Winner {
    pub candidate: Candidate,
    pub served: Served,
    /// `provider/model`.
    pub label: String,
    pub provider: String,
    pub timeouts: Timeouts,
    /// When the winning attempt was sent (the stream's total timeout counts from here).
    pub started: tokio::time::Instant,
}

/// Try each candidate in order. Returns the first success, or the error that
/// best explains why none worked.
pub async fn run(
    state: &WorkerState,
    call: &Call<'_>,
    candidates: &[Candidate],
    rec: &mut Record,
) -> Result<Winner, GatewayError> {
    let shared = &state.shared;
    let mut errors: Vec<(String, GatewayError)> = Vec::new();
    for &c in candidates {
        let Some(model) = shared.models.get(c.model) else { continue };
        let Some(dep) = model.deployments.get(c.deployment) else { continue };
        let Some(provider) = shared.providers.get(dep.provider) else { continue };
        let call = Call { upstream_model: &dep.model, ..*call };
        let started = Instant::now();
        let started_tokio = tokio::time::Instant::now();
        let result = match provider.send(&call, state.clients.get(dep.provider)).await {
            Ok(Reply::Complete { body, usage }) => Ok(Served::Complete { body, usage }),
            Ok(Reply::Stream(mut rest)) => {
                let left = provider.timeouts.first_byte.saturating_sub(started.elapsed());
                match tokio::time::timeout(left, rest.next()).await {
                    Ok(Some(Ok(first))) => Ok(Served::Stream { first, rest }),
                    Ok(Some(Err(e))) => Err(e),
                    Ok(None) => Err(GatewayError::UpstreamProtocol {
                        provider: provider.name.clone(),
                        detail: "the stream ended before its first event".into(),
                    }),
                    Err(_) => Err(GatewayError::UpstreamTimeout {
                        provider: provider.name.clone(),
                        phase: TimeoutPhase::FirstByte,
                        ms: provider.timeouts.first_byte.as_millis() as u64,
                    }),
                }
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        rec.add_upstream(took);
        match result {
            Ok(served) => {
                rec.attempt(c.model, c.deployment, Ok(()), took);
                return Ok(Winner {
                    candidate: c,
                    served,
                    label: dep.label.clone(),
                    provider: provider.name.clone(),
                    timeouts: provider.timeouts,
                    started: started_tokio,
                });
            }
            Err(e) => {
                rec.attempt(c.model, c.deployment, Err(e.label()), took);
                report(state, dep.provider, &e);
                if !e.retryable() {
                    return Err(e);
                }
                tracing::debug!(request_id = %rec.request_id, deployment = %dep.label, error = %e, "attempt failed; trying the next deployment");
                errors.push((dep.label.clone(), e));
            }
        }
    }
    let model = candidates.first().and_then(|c| shared.models.get(c.model)).map(|m| m.name.as_str());
    Err(give_up(model.unwrap_or_default(), errors))
}

/// Tell `UpstreamSessions` about an upstream failure (fire-and-forget).
fn report(state: &WorkerState, provider: usize, e: &GatewayError) {
    let kind = match e {
        GatewayError::UpstreamConnect { .. } => UpstreamErrorKind::Connect,
        GatewayError::UpstreamTimeout { .. } => UpstreamErrorKind::Timeout,
        GatewayError::UpstreamStatus { upstream_status, .. } => UpstreamErrorKind::Status(*upstream_status),
        GatewayError::UpstreamProtocol { .. } => UpstreamErrorKind::Protocol,
        // Not the upstream's doing: nothing to log against it.
        _ => return,
    };
    state.shared.sessions.record_error(provider, kind, e.to_string());
}

/// Every candidate failed. One attempt: its own error says most. Several:
/// if they were all rate limits, a 429 (so SDKs back off); otherwise 503
/// `no_deployment_available` naming what each one did.
fn give_up(model: &str, mut errors: Vec<(String, GatewayError)>) -> GatewayError {
    if errors.len() == 1
        && let Some((_, e)) = errors.pop()
    {
        return e;
    }
    if errors.is_empty() {
        return GatewayError::NoDeployment { model: model.to_string(), reason: "it has no deployments".into() };
    }
    let all_429 = errors.iter().all(|(_, e)| matches!(e, GatewayError::UpstreamStatus { upstream_status: 429, .. }));
    if all_429 && let Some((_, e)) = errors.pop() {
        return e;
    }
    let reason = errors.iter().map(|(label, e)| format!("{label}: {}", e.label())).collect::<Vec<_>>().join("; ");
    GatewayError::NoDeployment { model: model.to_string(), reason: format!("every deployment failed ({reason})") }
}
