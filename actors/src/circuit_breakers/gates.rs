//! The breakers' read-only snapshot: one gate per deployment, read by the
//! request path without a message round trip (an actor ask costs ~3 µs, and
//! far more when it has to wake the actor's thread; an atomic load ~2 ns —
//! docs/benchmarks/micro.md). Only the `CircuitBreakers` actor writes it,
//! with one exception: [`Gates::cool_now`], by which the request that just
//! got a 429 makes its cool-down seen at once by every other request —
//! the actor learns of it ~1 ms later, in the next outcome batch, and a
//! request arriving in that millisecond must not hit the deployment again.
//! It can only lengthen a cool-down (a `fetch_max`), and the actor's own
//! publication keeps the longer of the two, so the actor's word is never
//! shortened by it and never shortens it.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::time::Instant;

use super::state::{Breaker, CircuitState};

/// What the request path may do with a deployment right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateView {
    /// Closed and not cooling: call it.
    Pass,
    /// Open, or cooling after a 429: skip it.
    Skip,
    /// Half-open, or open with its cool-down over: ask the actor for a probe slot.
    AskProbe,
}

/// Why the breakers turned a deployment away, in the words the request
/// path reports (`skipped` in errors and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The circuit is closed but the deployment answered 429: it waits out
    /// its Retry-After (here, or on another replica's word).
    Cooling,
    /// The circuit is open, or half-open with every probe slot taken.
    Open,
}

impl Denial {
    pub fn reason(self) -> &'static str {
        match self {
            Denial::Cooling => "cooling after a 429",
            Denial::Open => "circuit open",
        }
    }
}

#[derive(Debug, Default)]
struct Gate {
    state: AtomicU8,
    /// Open: until when (ms since `origin`).
    open_until_ms: AtomicU64,
    /// 429 cool-down end (ms since `origin`), 0 if none.
    cooling_until_ms: AtomicU64,
    /// When the circuit last opened (ms since `origin`).
    opened_at_ms: AtomicU64,
}

/// Every deployment's gate, by deployment id. Append-only: ids are given
/// once and never reused (docs/decisions/runtime-keys.md), so a gate grows
/// when a reload adds a deployment and is read by index without a lock.
#[derive(Debug)]
pub struct Gates {
    origin: Instant,
    gates: boxcar::Vec<Gate>,
}

impl Gates {
    pub fn new(deployments: usize, origin: Instant) -> Gates {
        let g = Gates { origin, gates: boxcar::Vec::new() };
        g.grow_to(deployments);
        g
    }

    /// Make sure ids `0..n` have a gate (new ones pass).
    pub fn grow_to(&self, n: usize) {
        while self.gates.count() < n {
            self.gates.push(Gate::default());
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Can a request go to `deployment` now?
    pub fn view(&self, deployment: usize) -> GateView {
        let Some(g) = self.gates.get(deployment) else { return GateView::Pass };
        // The clock is read only when a time decides: a deployment that
        // never cooled (0) and whose circuit is closed passes without it
        // (a clock read is ~25 ns here, and this runs twice per request).
        let cooling_until = g.cooling_until_ms.load(Ordering::Acquire);
        let state = g.state.load(Ordering::Acquire);
        if cooling_until == 0 && state == 0 {
            return GateView::Pass;
        }
        let now = self.ms(Instant::now());
        if cooling_until > now {
            return GateView::Skip;
        }
        match state {
            0 => GateView::Pass,
            2 if g.open_until_ms.load(Ordering::Acquire) > now => GateView::Skip,
            _ => GateView::AskProbe,
        }
    }

    /// How long until `deployment` may be called again, if it is open or
    /// cooling now (`None` when it can be called, or is half-open).
    pub fn blocked_for(&self, deployment: usize) -> Option<std::time::Duration> {
        let g = self.gates.get(deployment)?;
        let now = self.ms(Instant::now());
        let cooling = g.cooling_until_ms.load(Ordering::Acquire);
        let open = if g.state.load(Ordering::Acquire) == 2 { g.open_until_ms.load(Ordering::Acquire) } else { 0 };
        let until = cooling.max(open);
        (until > now).then(|| std::time::Duration::from_millis(until - now))
    }

    /// `deployment` answered 429 and asked for `for_` of quiet (already
    /// capped): cool it from now on, before the actor hears of it.
    pub fn cool_now(&self, deployment: usize, for_: std::time::Duration) {
        let Some(g) = self.gates.get(deployment) else { return };
        let until = self.ms(Instant::now() + for_) + 1;
        g.cooling_until_ms.fetch_max(until, Ordering::AcqRel);
    }

    /// How long `deployment` still cools after a 429 (its own or another
    /// replica's), whatever its circuit says.
    pub fn cooling_for(&self, deployment: usize) -> Option<std::time::Duration> {
        let g = self.gates.get(deployment)?;
        let now = self.ms(Instant::now());
        let until = g.cooling_until_ms.load(Ordering::Acquire);
        (until > now).then(|| std::time::Duration::from_millis(until - now))
    }

    /// When `deployment`'s circuit last opened (ms on the gates' clock), if
    /// it is open or half-open now: the earliest opened is the one a
    /// request tries when no deployment is admitted.
    pub fn opened_at(&self, deployment: usize) -> Option<u64> {
        let g = self.gates.get(deployment)?;
        (g.state.load(Ordering::Acquire) != 0).then(|| g.opened_at_ms.load(Ordering::Acquire))
    }

    /// Why `deployment` was just denied: a closed circuit that denies is
    /// cooling; any other state is the circuit itself.
    pub fn denial(&self, deployment: usize) -> Denial {
        if self.state(deployment) == CircuitState::Closed { Denial::Cooling } else { Denial::Open }
    }

    /// The circuit state as last published (for routing order and health).
    pub fn state(&self, deployment: usize) -> CircuitState {
        match self.gates.get(deployment).map(|g| g.state.load(Ordering::Acquire)) {
            Some(2) => CircuitState::Open,
            Some(1) => CircuitState::HalfOpen,
            _ => CircuitState::Closed,
        }
    }

    pub fn len(&self) -> usize {
        self.gates.count()
    }

    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }

    /// Copy one breaker's state into its gate (the actor's only write).
    pub(super) fn publish(&self, deployment: usize, b: &Breaker, now: Instant) {
        let Some(g) = self.gates.get(deployment) else { return };
        // Round up so a gate never reopens a millisecond early.
        let open_until = self.ms(b.open_until()) + 1;
        let cooling = b.cooling_until(now).map_or(0, |u| self.ms(u) + 1);
        g.open_until_ms.store(open_until, Ordering::Release);
        // The longer of the actor's cool-down and a request's `cool_now`
        // (a cool-down only ever grows until it ends).
        g.cooling_until_ms.fetch_max(cooling, Ordering::AcqRel);
        g.opened_at_ms.store(self.ms(b.opened_at()), Ordering::Release);
        g.state.store(b.state().as_u8(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_cool_down_skips_until_it_ends_and_a_gate_never_cooled_passes() {
        let gates = Gates::new(2, Instant::now());
        assert_eq!(gates.view(0), GateView::Pass, "never cooled, closed");
        gates.cool_now(0, Duration::from_millis(100));
        assert_eq!(gates.view(0), GateView::Skip, "cooling");
        assert_eq!(gates.view(1), GateView::Pass, "another deployment");
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(gates.view(0), GateView::Skip, "still cooling");
        tokio::time::advance(Duration::from_millis(3)).await;
        assert_eq!(gates.view(0), GateView::Pass, "the cool-down is over");
        assert_eq!(gates.cooling_for(0), None);
    }
}
