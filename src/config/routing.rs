//! How requests are routed, retried and cut off: the breaker's tuning,
//! `[routing]`, a model's strategy, timeouts, hedging and what it does when
//! no deployment is admitted.

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    pub window_ms: u64,
    pub min_requests: u32,
    pub failure_count: u32,
    pub failure_ratio: f64,
    pub cooldown_ms: u64,
    pub cooldown_max_ms: u64,
    pub half_open_probes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Attempts per request, first one included, across deployments and fallbacks.
    pub max_attempts: u32,
    /// Overall deadline for all attempts before the first byte; 0 = none
    /// beyond each attempt's own timeouts.
    pub deadline_ms: u64,
    /// Backoff before a retry after a network error / 5xx: full jitter in
    /// [0, min(max, base·2^n)].
    pub backoff_base_ms: u64,
    /// The same after a 429.
    pub backoff_429_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Longest Retry-After honoured (waited for a retry of the same
    /// deployment, and as its cool-down).
    pub retry_after_cap_ms: u64,
}

/// How a model orders its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Random, in proportion to `weight`.
    Weighted,
    /// Fewest requests in flight first.
    LeastInflight,
    /// Power of two choices over the latency EWMA.
    Latency,
    /// Cheapest first (deployment price, else the model's).
    Cost,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Weighted => "weighted",
            Strategy::LeastInflight => "least_inflight",
            Strategy::Latency => "latency",
            Strategy::Cost => "cost",
        }
    }
}

/// Per-model overrides of the provider timeouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelTimeouts {
    pub first_byte_ms: Option<u64>,
    pub idle_ms: Option<u64>,
    pub total_ms: Option<u64>,
}

/// Hedged requests: when the first event has not arrived after `after_ms`
/// (or, if unset, the deployment's observed p95 time to first token, at
/// least `min_ms`), the request also goes to the next deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HedgeConfig {
    pub after_ms: Option<u64>,
    pub min_ms: u64,
}

/// A model's `on_all_unhealthy`: what a request does when every deployment
/// of the model and its fallbacks is open or cooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnAllUnhealthy {
    /// Try the deployment whose circuit opened earliest, once (a 429's
    /// Retry-After is still honoured, never hammered).
    #[default]
    TryOne,
    /// Answer 503 `no_deployment_available` at once.
    FailFast,
}

impl OnAllUnhealthy {
    pub fn as_str(self) -> &'static str {
        match self {
            OnAllUnhealthy::TryOne => "try_one",
            OnAllUnhealthy::FailFast => "fail_fast",
        }
    }
}
