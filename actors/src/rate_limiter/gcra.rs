//! GCRA (the generic cell rate algorithm), exact: a limit of N per period
//! admits exactly N at once and then one more every period/N. One u64 —
//! the theoretical arrival time (TAT) — is the whole state, so a step is a
//! compare-and-swap. Times are nanoseconds since the limiter's origin.

use std::time::Duration;

/// `amount` units per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub amount: u64,
    pub period: Duration,
}

impl Rate {
    pub fn per_minute(amount: u64) -> Rate {
        Rate { amount, period: Duration::from_secs(60) }
    }

    pub fn period_ns(&self) -> u64 {
        self.period.as_nanos().min(u64::MAX as u128) as u64
    }

    /// Time one unit takes to refill. Rounded down, so N units at once
    /// always fit in the period (N·⌊P/N⌋ ≤ P) and N+1 never do.
    pub fn interval_ns(&self) -> u64 {
        (self.period_ns() / self.amount.max(1)).max(1)
    }
}

/// Admit `cost` units at `now` against `tat`: the new TAT, or how long until
/// it would fit. A cost larger than the whole rate never fits (`None`).
pub fn step(tat: u64, now: u64, cost: u64, rate: &Rate) -> Result<u64, Option<Duration>> {
    let inc = cost.saturating_mul(rate.interval_ns());
    let period = rate.period_ns();
    if inc > period {
        return Err(None);
    }
    let new_tat = tat.max(now).saturating_add(inc);
    let ahead = new_tat - now;
    if ahead <= period { Ok(new_tat) } else { Err(Some(Duration::from_nanos(ahead - period))) }
}

/// Units still available at `now`.
pub fn remaining(tat: u64, now: u64, rate: &Rate) -> u64 {
    let used = tat.saturating_sub(now);
    rate.period_ns().saturating_sub(used) / rate.interval_ns()
}

/// Until the limit is whole again.
pub fn reset(tat: u64, now: u64) -> Duration {
    Duration::from_nanos(tat.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn burst(rate: &Rate, now: u64, tat: &mut u64) -> u64 {
        let mut n = 0;
        while let Ok(t) = step(*tat, now, 1, rate) {
            *tat = t;
            n += 1;
        }
        n
    }

    #[test]
    fn admits_exactly_n_in_a_burst_then_refills_smoothly() {
        for n in [1u64, 2, 3, 7, 60, 599, 600, 1000] {
            let r = Rate::per_minute(n);
            let mut tat = 0;
            assert_eq!(burst(&r, 1000 * S, &mut tat), n, "limit {n}");
            // Well before one interval has passed: nothing (rounding the
            // interval down may open the next slot up to N ns early); at it: one.
            let t = 1000 * S + r.interval_ns();
            assert!(step(tat, t - 2 * n, 1, &r).is_err(), "limit {n}");
            assert_eq!(burst(&r, t, &mut tat), 1, "limit {n}");
        }
    }

    #[test]
    fn refusal_says_when_it_would_fit() {
        let r = Rate::per_minute(60);
        let mut tat = 0;
        burst(&r, 0, &mut tat);
        assert_eq!(step(tat, 0, 1, &r), Err(Some(Duration::from_secs(1))));
        assert_eq!(step(tat, 0, 61, &r), Err(None), "more than the whole limit");
    }

    #[test]
    fn token_costs_remaining_and_reset() {
        let r = Rate::per_minute(1000);
        let tat = step(0, 0, 400, &r).unwrap();
        assert_eq!(remaining(tat, 0, &r), 600);
        assert_eq!(reset(tat, 0), Duration::from_secs(24));
        let tat = step(tat, 0, 600, &r).unwrap();
        assert_eq!(remaining(tat, 0, &r), 0);
        assert!(step(tat, 0, 1, &r).is_err());
        // 6 s later, 100 tokens are back.
        assert_eq!(remaining(tat, 6 * S, &r), 100);
    }
}
