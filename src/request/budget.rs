//! Budgets: a key whose daily or monthly spend is used up is refused (429
//! `insufficient_quota`) before its body is read. An admitted request's
//! cost is added to its key's spend when it ends (`record::Spending`).

use sluice_actors::rate_limiter::{BudgetHit, SpendKey};

use super::record::Spending;
use crate::auth::KeyPolicy;
use crate::error::GatewayError;
use crate::gateway::WorkerState;

/// Refuse a key (or its team) over budget; else where its request's cost goes.
pub fn check(state: &WorkerState, policy: &KeyPolicy) -> Result<Spending, GatewayError> {
    let spend = state.gateway.upstreams.limiter.spend();
    let spend_key = spend.slot(policy.spend.map_or(SpendKey::Anonymous, SpendKey::Configured));
    if let Some(hit) = spend.over_budget_now(spend_key) {
        return Err(quota_exceeded(&policy.name, hit));
    }
    if let (Some(team), Some(name)) = (policy.team_spend, &policy.team)
        && let Some(hit) = spend.over_budget_now(team)
    {
        return Err(quota_exceeded(&format!("team {name}"), hit));
    }
    Ok(Spending {
        table: spend.clone(),
        sink: state.upstream.outcomes.clone(),
        key: spend_key,
        team: policy.team_spend,
        models: state.gateway.upstreams.spend_models.clone(),
    })
}

fn quota_exceeded(key: &str, hit: BudgetHit) -> GatewayError {
    let (period, budget_usd, renews) = match hit {
        BudgetHit::Daily { budget_usd } => ("daily", budget_usd, "at 00:00 UTC"),
        BudgetHit::Monthly { budget_usd } => ("monthly", budget_usd, "on the 1st of the month, 00:00 UTC"),
    };
    GatewayError::QuotaExceeded { key: key.to_string(), period, budget_usd, renews }
}
