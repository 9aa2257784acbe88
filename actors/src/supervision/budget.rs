//! How often an actor may be restarted before it is declared failed.
//!
//! A panic that a restart cures (a rare input, a transient invariant) should
//! cost nothing but a log line; one that comes back at once — a poisoned
//! state the restart keeps, a message that always panics — would otherwise
//! restart the actor forever, burning its thread and flooding the log while
//! the actor does no useful work. So restarts are counted in a sliding
//! window, and one past the budget fails the actor instead: `/status` shows
//! it `failed`, `/health` says `unhealthy`, and the process needs replacing.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Every actor's budget: at most 5 restarts within any 60 s. A genuine,
/// rare panic never gets near it; a panic on every message (or every timer
/// tick) uses it up within a second.
pub const RESTART_BUDGET: RestartBudget = RestartBudget::new(5, Duration::from_secs(60));

/// At most `max_restarts` restarts within any `window`.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    max_restarts: u32,
    window: Duration,
    /// When the restarts still inside the window happened, oldest first.
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub const fn new(max_restarts: u32, window: Duration) -> RestartBudget {
        RestartBudget { max_restarts, window, recent: VecDeque::new() }
    }

    pub fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// A panic at `now`: may the actor be restarted? A restart allowed is
    /// counted against the budget.
    pub fn allow(&mut self, now: Instant) -> bool {
        while self.recent.front().is_some_and(|t| now.saturating_duration_since(*t) >= self.window) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max_restarts as usize {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn restarts_are_counted_in_a_sliding_window() {
        let mut b = RestartBudget::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(b.allow(Instant::now()));
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        // Three within the last minute: a fourth is one too many.
        assert!(!b.allow(Instant::now()));
        // Once the first has left the window (60 s after it), one more fits.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.allow(Instant::now()));
        assert!(!b.allow(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn rare_panics_never_use_it_up() {
        let mut b = RESTART_BUDGET;
        for _ in 0..100 {
            assert!(b.allow(Instant::now()));
            tokio::time::advance(Duration::from_secs(13)).await;
        }
    }
}
