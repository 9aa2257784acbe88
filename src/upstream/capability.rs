//! Which candidates can serve this route at all. Anthropic and Gemini
//! deployments have no legacy completions or embeddings, so for those
//! routes they are skipped rather than tried: an attempt that cannot work
//! would only count as a failure against a healthy deployment (and trip its
//! circuit). If none of the requested model's own deployments can serve the
//! route, the request is refused with 400 naming the first of them.

use super::Upstreams;
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::route::Candidate;

/// Can any of `model`'s own deployments serve `endpoint`? (The token
/// counters are estimated when none can.)
pub fn any_serves(up: &Upstreams, model: usize, endpoint: Endpoint) -> bool {
    up.models
        .get(model)
        .is_some_and(|m| m.deployments.iter().any(|d| up.providers.get(d.provider).is_some_and(|p| p.serves(endpoint))))
}

pub fn serving(
    up: &Upstreams,
    model: usize,
    endpoint: Endpoint,
    mut candidates: Vec<Candidate>,
) -> Result<Vec<Candidate>, GatewayError> {
    let serves = |c: &Candidate| {
        up.models
            .get(c.model)
            .and_then(|m| m.deployments.get(c.deployment))
            .and_then(|d| up.providers.get(d.provider))
            .is_none_or(|p| p.serves(endpoint))
    };
    if candidates.iter().all(serves) {
        return Ok(candidates);
    }
    if !candidates.iter().any(|c| c.model == model && serves(c)) {
        let entry = up.models.get(model);
        let name = entry.map_or("", |m| m.name.as_str());
        let dep = entry.and_then(|m| m.deployments.first()).map_or("", |d| d.label.as_str());
        return Err(GatewayError::invalid(
            format!("The model `{name}`'s deployment `{dep}` does not support /v1{}.", endpoint.path()),
            Some("model"),
        ));
    }
    candidates.retain(serves);
    Ok(candidates)
}
