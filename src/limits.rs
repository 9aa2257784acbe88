//! Rate limits: which limiter scopes a request counts against (its key, its
//! key and model, its model; and, per attempt, the deployment), admission,
//! and waiting in the queue instead of a refusal. How a refusal reads
//! (`x-ratelimit-*`, the message) is `crate::error::rate_limit`.

use std::collections::HashMap;
use std::time::Duration;

use sluice_actors::rate_limiter::{self, Grant, LimitSpec, LimiterHandle, QueueRefusal, gcra::Rate};

use crate::auth::KeyPolicy;
use crate::config::{Config, Limits, QueueConfig};
use crate::error::GatewayError;
use crate::route::ModelTable;

/// Scope indices of every configured limit.
#[derive(Debug, Default)]
pub struct LimitScopes {
    pub specs: Vec<LimitSpec>,
    key: Vec<Option<usize>>,
    key_model: HashMap<(usize, usize), usize>,
    model: Vec<Option<usize>>,
    deployment: Vec<Option<usize>>,
}

fn spec(name: String, l: &Limits) -> LimitSpec {
    LimitSpec {
        name,
        requests: l.rpm.map(Rate::per_minute),
        tokens: l.tpm.map(Rate::per_minute),
        concurrency: l.max_concurrent,
    }
}

impl LimitScopes {
    /// Scope names are the limiter's keys (in Redis too, in replicas mode):
    /// `key:NAME`, `key:NAME/model:MODEL`, `model:MODEL`, `deployment:LABEL`.
    pub fn from_config(cfg: &Config, models: &ModelTable) -> LimitScopes {
        let mut s = LimitScopes::default();
        let add = |specs: &mut Vec<LimitSpec>, name: String, l: &Limits| -> Option<usize> {
            (!l.is_none()).then(|| {
                specs.push(spec(name, l));
                specs.len() - 1
            })
        };
        for k in &cfg.keys {
            let i = add(&mut s.specs, format!("key:{}", k.name), &k.limits);
            s.key.push(i);
        }
        for (ki, k) in cfg.keys.iter().enumerate() {
            for (mi, l) in &k.model_limits {
                let model = cfg.models.get(*mi).map(|m| m.name.as_str()).unwrap_or("?");
                if let Some(i) = add(&mut s.specs, format!("key:{}/model:{model}", k.name), l) {
                    s.key_model.insert((ki, *mi), i);
                }
            }
        }
        for m in &cfg.models {
            let i = add(&mut s.specs, format!("model:{}", m.name), &m.limits);
            s.model.push(i);
        }
        // In id order, so `deployment[id]` is the deployment's scope.
        for (_, d) in models.deployments() {
            let i = add(&mut s.specs, format!("deployment:{}", d.label), &d.limits);
            s.deployment.push(i);
        }
        s
    }

    /// The scopes a request of `policy` for `model` counts against.
    pub fn for_request(&self, policy: &KeyPolicy, model: usize) -> Vec<usize> {
        let mut v = Vec::new();
        if let Some(k) = policy.index {
            if let Some(Some(i)) = self.key.get(k) {
                v.push(*i);
            }
            if let Some(i) = self.key_model.get(&(k, model)) {
                v.push(*i);
            }
        }
        if let Some(Some(i)) = self.model.get(model) {
            v.push(*i);
        }
        v
    }

    /// The scope of a deployment's own caps (upstream protection).
    pub fn for_deployment(&self, id: usize) -> Option<usize> {
        self.deployment.get(id).copied().flatten()
    }
}

/// The rate-limit step of a request: the limits of its key, its key and
/// model, and its model, charged with its token estimate `tokens` ([`admit`]).
pub async fn admit_request(
    limiter: &LimiterHandle,
    scopes: &LimitScopes,
    policy: &KeyPolicy,
    model: usize,
    tokens: u64,
    queue: &QueueConfig,
) -> Result<Option<Grant>, GatewayError> {
    let scopes = scopes.for_request(policy, model);
    let max_wait = Duration::from_millis(queue.max_wait_ms);
    admit(limiter, &scopes, tokens, policy.priority, max_wait).await
}

/// Admit a request, or wait for its limits in the queue when `[queue]`
/// allows it, or refuse it.
pub async fn admit(
    limiter: &LimiterHandle,
    scopes: &[usize],
    tokens: u64,
    priority: i32,
    max_wait: Duration,
) -> Result<Option<Grant>, GatewayError> {
    if scopes.is_empty() {
        return Ok(None);
    }
    match rate_limiter::admit(limiter.backend(), scopes, tokens).await {
        Ok(g) => Ok(Some(g)),
        Err(r) if r.never || max_wait.is_zero() => Err(refused(limiter, scopes, r)),
        // Shared limits refill for every replica at once: wait here and ask
        // the shared backend again (the actor's queue only sees this replica).
        Err(r) if limiter.is_replicated() => match limiter.replicated_wait(scopes, tokens, max_wait, r).await {
            Ok(g) => Ok(Some(g)),
            Err(QueueRefusal::Full) => Err(GatewayError::Overloaded),
            Err(QueueRefusal::TimedOut(r)) => Err(refused(limiter, scopes, r)),
        },
        Err(r) => match limiter.enqueue(scopes.to_vec(), tokens, priority, max_wait, r.clone()).await {
            Ok(g) => Ok(Some(g)),
            Err(QueueRefusal::Full) => Err(GatewayError::Overloaded),
            Err(QueueRefusal::TimedOut(r)) => Err(refused(limiter, scopes, r)),
        },
    }
}

fn refused(limiter: &LimiterHandle, scopes: &[usize], r: rate_limiter::Refusal) -> GatewayError {
    metrics::counter!(crate::metrics::RATE_LIMITED_TOTAL, "scope" => r.scope_name.clone(), "limit" => r.what.as_str())
        .increment(1);
    GatewayError::RateLimited {
        scope: r.scope_name,
        limit: r.what.as_str(),
        retry_after: r.retry_after,
        never: r.never,
        headroom: Box::new(limiter.backend().headroom(scopes)),
    }
}
