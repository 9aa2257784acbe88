//! `[breaker]`, `[routing]` and each model's resilience settings
//! (strategy, context window, timeouts, hedging, attempts, template answer).

use super::super::locate::join_key;
use super::super::raw::{RawBreaker, RawHedge, RawModelTimeouts, RawPrice, RawQueue, RawRouting, Text, defaults};
use super::super::{
    BreakerSettings, HedgeConfig, Limits, ModelTimeouts, OnAllUnhealthy, Price, QueueConfig, RoutingConfig, Strategy,
};
use super::Checker;

/// Longest any configurable wait may be: a day is a typo, not a timeout.
const MAX_MS: i64 = 86_400_000;

pub(super) fn breaker(c: &mut Checker, b: Option<RawBreaker>) -> BreakerSettings {
    let b = b.unwrap_or_default();
    let ms = |c: &mut Checker, key: &str, v, d, min| {
        u64::try_from(c.int(&join_key("breaker", key), v, d, min, MAX_MS, "")).unwrap_or(0)
    };
    let window_ms = ms(c, "window_ms", b.window_ms, defaults::BREAKER_WINDOW_MS, 100);
    let cooldown_ms = ms(c, "cooldown_ms", b.cooldown_ms, defaults::BREAKER_COOLDOWN_MS, 1);
    let cooldown_max_ms = ms(c, "cooldown_max_ms", b.cooldown_max_ms, defaults::BREAKER_COOLDOWN_MAX_MS, 1);
    if cooldown_max_ms < cooldown_ms {
        c.err(
            "breaker.cooldown_max_ms",
            format!("must be at least breaker.cooldown_ms ({cooldown_ms}): the cool-down grows from one to the other"),
        );
    }
    let failure_ratio = b.failure_ratio.unwrap_or(defaults::BREAKER_FAILURE_RATIO);
    if !(failure_ratio > 0.0 && failure_ratio <= 1.0) {
        c.err(
            "breaker.failure_ratio",
            format!("must be a number above 0 and at most 1 (the share of failed calls that opens the circuit), found {failure_ratio}"),
        );
    }
    BreakerSettings {
        window_ms,
        min_requests: c.u32("breaker.min_requests", b.min_requests, defaults::BREAKER_MIN_REQUESTS, 1, ""),
        failure_count: c.u32("breaker.failure_count", b.failure_count, defaults::BREAKER_FAILURE_COUNT, 1, ""),
        failure_ratio,
        cooldown_ms,
        cooldown_max_ms,
        half_open_probes: c.u32(
            "breaker.half_open_probes",
            b.half_open_probes,
            defaults::BREAKER_HALF_OPEN_PROBES,
            1,
            "(requests let through to test a half-open circuit)",
        ),
    }
}

pub(super) fn routing(c: &mut Checker, r: Option<RawRouting>) -> RoutingConfig {
    let r = r.unwrap_or_default();
    let ms = |c: &mut Checker, key: &str, v, d, min| {
        u64::try_from(c.int(&join_key("routing", key), v, d, min, MAX_MS, "")).unwrap_or(0)
    };
    let backoff_base_ms = ms(c, "backoff_base_ms", r.backoff_base_ms, defaults::BACKOFF_BASE_MS, 0);
    let backoff_429_base_ms = ms(c, "backoff_429_base_ms", r.backoff_429_base_ms, defaults::BACKOFF_429_BASE_MS, 0);
    let backoff_max_ms = ms(c, "backoff_max_ms", r.backoff_max_ms, defaults::BACKOFF_MAX_MS, 0);
    RoutingConfig {
        max_attempts: max_attempts(c, "routing.max_attempts", r.max_attempts).unwrap_or(defaults::MAX_ATTEMPTS as u32),
        deadline_ms: ms(c, "deadline_ms", r.deadline_ms, defaults::DEADLINE_MS, 0),
        backoff_base_ms,
        backoff_429_base_ms,
        backoff_max_ms,
        retry_after_cap_ms: ms(c, "retry_after_cap_ms", r.retry_after_cap_ms, defaults::RETRY_AFTER_CAP_MS, 0),
    }
}

pub(super) fn max_attempts(c: &mut Checker, path: &str, v: Option<i64>) -> Option<u32> {
    v.map(|v| {
        u32::try_from(c.int(path, Some(v), defaults::MAX_ATTEMPTS, 1, 100, "(the first attempt counts)")).unwrap_or(1)
    })
}

pub(super) fn strategy(c: &mut Checker, path: &str, s: Option<&Text>) -> Strategy {
    match s.map(|t| t.value.as_str()) {
        None | Some("weighted") => Strategy::Weighted,
        Some("least_inflight") => Strategy::LeastInflight,
        Some("latency") => Strategy::Latency,
        Some("cost") => Strategy::Cost,
        Some(_) => {
            let shown = s.map(Text::shown).unwrap_or_default();
            c.err(path, format!("unknown strategy {shown}; expected one of: weighted, least_inflight, latency, cost"));
            Strategy::Weighted
        }
    }
}

pub(super) fn on_all_unhealthy(c: &mut Checker, path: &str, s: Option<&Text>) -> OnAllUnhealthy {
    match s.map(|t| t.value.as_str()) {
        None | Some("try_one") => OnAllUnhealthy::TryOne,
        Some("fail_fast") => OnAllUnhealthy::FailFast,
        Some(_) => {
            let shown = s.map(Text::shown).unwrap_or_default();
            c.err(path, format!("unknown on_all_unhealthy {shown}; expected one of: try_one, fail_fast"));
            OnAllUnhealthy::TryOne
        }
    }
}

pub(super) fn timeouts(c: &mut Checker, at: &str, t: Option<RawModelTimeouts>) -> ModelTimeouts {
    let Some(t) = t else { return ModelTimeouts::default() };
    let at = join_key(at, "timeouts");
    let mut one = |key: &str, v: Option<i64>| {
        v.map(|v| u64::try_from(c.int(&join_key(&at, key), Some(v), 1, 1, MAX_MS, "")).unwrap_or(1))
    };
    let out = ModelTimeouts {
        first_byte_ms: one("first_byte_ms", t.first_byte_ms),
        idle_ms: one("idle_ms", t.idle_ms),
        total_ms: one("total_ms", t.total_ms),
    };
    if let (Some(fb), Some(total)) = (out.first_byte_ms, out.total_ms)
        && total < fb
    {
        c.err(join_key(&at, "total_ms"), format!("must be at least first_byte_ms ({fb})"));
    }
    out
}

pub(super) fn hedge(c: &mut Checker, at: &str, h: Option<RawHedge>) -> Option<HedgeConfig> {
    let h = h?;
    let at = join_key(at, "hedge");
    let after_ms =
        h.after_ms.map(|v| u64::try_from(c.int(&join_key(&at, "after_ms"), Some(v), 1, 1, MAX_MS, "")).unwrap_or(1));
    let min_ms =
        u64::try_from(c.int(&join_key(&at, "min_ms"), h.min_ms, defaults::HEDGE_MIN_MS, 1, MAX_MS, "")).unwrap_or(1);
    Some(HedgeConfig { after_ms, min_ms })
}

pub(super) fn price(c: &mut Checker, at: &str, p: Option<RawPrice>) -> Option<Price> {
    let p = p?;
    let cached = p.cached_input_per_mtok.unwrap_or(0.0);
    for (key, v) in [
        ("input_per_mtok", p.input_per_mtok),
        ("output_per_mtok", p.output_per_mtok),
        ("cached_input_per_mtok", cached),
    ] {
        if !v.is_finite() || v < 0.0 {
            c.err(
                join_key(&join_key(at, "price"), key),
                format!("must be a finite number >= 0 (USD per million tokens), found {v}"),
            );
        }
    }
    Some(Price {
        input_per_mtok: p.input_per_mtok,
        output_per_mtok: p.output_per_mtok,
        cached_input_per_mtok: p.cached_input_per_mtok,
    })
}

/// rpm, tpm and max_concurrent at `at`.
pub(super) fn limits(c: &mut Checker, at: &str, rpm: Option<i64>, tpm: Option<i64>, conc: Option<i64>) -> Limits {
    let mut one = |key: &str, v: Option<i64>, what: &str| {
        v.map(|v| u64::try_from(c.int(&join_key(at, key), Some(v), 1, 1, 1_000_000_000_000, what)).unwrap_or(1))
    };
    Limits {
        rpm: one("rpm", rpm, "(requests per minute)"),
        tpm: one("tpm", tpm, "(tokens per minute)"),
        max_concurrent: conc.map(|v| {
            u32::try_from(c.int(&join_key(at, "max_concurrent"), Some(v), 1, 1, 1_000_000, "(requests at once)"))
                .unwrap_or(1)
        }),
    }
}

pub(super) fn queue(c: &mut Checker, q: Option<RawQueue>) -> QueueConfig {
    let q = q.unwrap_or_default();
    QueueConfig {
        max_wait_ms: u64::try_from(c.int(
            "queue.max_wait_ms",
            q.max_wait_ms,
            defaults::QUEUE_MAX_WAIT_MS,
            0,
            MAX_MS,
            "(0 refuses at once)",
        ))
        .unwrap_or(0),
        max_size: usize::try_from(c.int("queue.max_size", q.max_size, defaults::QUEUE_MAX_SIZE, 1, 10_000_000, ""))
            .unwrap_or(1),
    }
}

pub(super) fn budget(c: &mut Checker, path: &str, v: Option<f64>) -> Option<f64> {
    let v = v?;
    if !v.is_finite() || v <= 0.0 {
        c.err(path, format!("must be a finite number above 0 (USD), found {v}"));
    }
    Some(v)
}
