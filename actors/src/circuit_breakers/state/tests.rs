//! The breaker on a paused clock.

use super::*;

fn cfg() -> BreakerConfig {
    BreakerConfig {
        window: Duration::from_secs(10),
        min_requests: 4,
        failure_count: 3,
        failure_ratio: 0.5,
        cooldown: Duration::from_secs(2),
        cooldown_max: Duration::from_secs(5),
        half_open_probes: 1,
        retry_after_cap: Duration::from_secs(30),
        probe_timeout: Duration::from_secs(60),
    }
}

async fn step(d: Duration) -> Instant {
    tokio::time::advance(d).await;
    Instant::now()
}

#[tokio::test(start_paused = true)]
async fn opens_on_count_and_ratio_then_probes_and_closes() {
    let c = cfg();
    let mut b = Breaker::new(Instant::now());
    let now = Instant::now();
    // Two failures among many successes: below the ratio.
    for _ in 0..6 {
        assert_eq!(b.on_outcome(&c, now, Verdict::Success), None);
    }
    b.on_outcome(&c, now, Verdict::Failure);
    b.on_outcome(&c, now, Verdict::Failure);
    b.on_outcome(&c, now, Verdict::Failure);
    assert_eq!(b.state(), CircuitState::Closed, "3 of 9 is under 50%");
    for _ in 0..3 {
        b.on_outcome(&c, now, Verdict::Failure);
    }
    assert_eq!(b.state(), CircuitState::Open, "6 of 12 opens it");
    assert_eq!(b.admit(&c, now).0, Admission::Denied);
    // After the cool-down: one probe; a second caller waits.
    let now = step(Duration::from_secs(2)).await;
    let (a, t) = b.admit(&c, now);
    assert_eq!(a, Admission::Probe);
    assert_eq!(t, Some(Transition { from: CircuitState::Open, to: CircuitState::HalfOpen }));
    assert_eq!(b.admit(&c, now).0, Admission::Denied);
    // The probe succeeds: closed, window cleared.
    let t = b.on_outcome(&c, now, Verdict::Success);
    assert_eq!(t, Some(Transition { from: CircuitState::HalfOpen, to: CircuitState::Closed }));
    assert_eq!(b.window_counts(&c, now), (0, 0));
    assert_eq!(b.admit(&c, now).0, Admission::Allowed);
}

#[tokio::test(start_paused = true)]
async fn cooldown_grows_on_repeated_opens_up_to_the_cap() {
    let c = cfg();
    let mut b = Breaker::new(Instant::now());
    let mut now = Instant::now();
    for _ in 0..4 {
        b.on_outcome(&c, now, Verdict::Failure);
    }
    assert_eq!(b.state(), CircuitState::Open);
    let mut expected = [2u64, 4, 5, 5].into_iter();
    let mut last = b.open_until().saturating_duration_since(now);
    assert_eq!(last, Duration::from_secs(expected.next().unwrap()));
    for want in expected {
        now = step(last).await;
        assert_eq!(b.admit(&c, now).0, Admission::Probe);
        b.on_outcome(&c, now, Verdict::Failure);
        assert_eq!(b.state(), CircuitState::Open);
        last = b.open_until().saturating_duration_since(now);
        assert_eq!(last, Duration::from_secs(want));
    }
}

#[tokio::test(start_paused = true)]
async fn old_failures_leave_the_window() {
    let c = cfg();
    let mut b = Breaker::new(Instant::now());
    let now = Instant::now();
    b.on_outcome(&c, now, Verdict::Failure);
    b.on_outcome(&c, now, Verdict::Failure);
    let now = step(Duration::from_secs(11)).await;
    assert_eq!(b.window_counts(&c, now), (0, 0));
    b.on_outcome(&c, now, Verdict::Failure);
    b.on_outcome(&c, now, Verdict::Failure);
    assert_eq!(b.state(), CircuitState::Closed, "only 2 failures in the window");
}

#[tokio::test(start_paused = true)]
async fn rate_limit_cools_without_opening_and_neutral_counts_nothing() {
    let c = cfg();
    let mut b = Breaker::new(Instant::now());
    let now = Instant::now();
    for _ in 0..10 {
        b.on_outcome(&c, now, Verdict::RateLimited { retry_after: Some(Duration::from_secs(3)) });
        b.on_outcome(&c, now, Verdict::Neutral);
    }
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.window_counts(&c, now), (0, 0));
    assert_eq!(b.admit(&c, now).0, Admission::Denied, "cooling for its Retry-After");
    let now = step(Duration::from_secs(3)).await;
    assert_eq!(b.admit(&c, now).0, Admission::Allowed);
    // Retry-After is capped.
    b.on_outcome(&c, now, Verdict::RateLimited { retry_after: Some(Duration::from_secs(3600)) });
    assert_eq!(b.cooling_until(now), Some(now + Duration::from_secs(30)));
}

#[tokio::test(start_paused = true)]
async fn a_neutral_probe_frees_its_slot() {
    let c = cfg();
    let mut b = Breaker::new(Instant::now());
    let now = Instant::now();
    for _ in 0..4 {
        b.on_outcome(&c, now, Verdict::Failure);
    }
    let now = step(Duration::from_secs(2)).await;
    assert_eq!(b.admit(&c, now).0, Admission::Probe);
    assert_eq!(b.admit(&c, now).0, Admission::Denied);
    b.on_outcome(&c, now, Verdict::Neutral);
    assert_eq!(b.admit(&c, now).0, Admission::Probe);
}

#[tokio::test(start_paused = true)]
async fn a_read_of_the_state_never_moves_it() {
    let c = cfg();
    let mut b = Breaker::new(Instant::now());
    for _ in 0..4 {
        b.on_outcome(&c, Instant::now(), Verdict::Failure);
    }
    let opened = Instant::now();
    assert_eq!(b.state_at(opened), CircuitState::Open);
    let now = step(Duration::from_secs(3)).await;
    // The cool-down is over: it reads as half-open since it ended...
    assert_eq!(b.state_at(now), CircuitState::HalfOpen);
    assert_eq!(b.changed_at(now), opened + Duration::from_secs(2));
    // ...but is still open, so the next admission records the transition.
    assert_eq!(b.state(), CircuitState::Open);
    let (a, t) = b.admit(&c, now);
    assert_eq!(a, Admission::Probe);
    assert_eq!(t, Some(Transition { from: CircuitState::Open, to: CircuitState::HalfOpen }));
}

#[tokio::test(start_paused = true)]
async fn cooling_news_is_sent_once_per_change() {
    let mut n = CoolingNews::new(2);
    let now = Instant::now();
    assert!(n.due(0, now + Duration::from_secs(5)));
    // The same cool-down, or one barely longer: not news.
    assert!(!n.due(0, now + Duration::from_secs(5)));
    assert!(!n.due(0, now + Duration::from_millis(5200)));
    assert!(n.due(0, now + Duration::from_secs(6)));
    // Heard from another replica: not sent back.
    n.heard(1, Some(now + Duration::from_secs(9)));
    assert!(!n.due(1, now + Duration::from_secs(9)));
    assert!(!n.due(7, now), "an unknown deployment is never news");
}

/// Open the breaker with failures and wait out its cool-down: half-open.
async fn half_open(c: &BreakerConfig) -> Breaker {
    let mut b = Breaker::new(Instant::now());
    for _ in 0..4 {
        b.on_outcome(c, Instant::now(), Verdict::Failure);
    }
    assert_eq!(b.state(), CircuitState::Open);
    let now = step(c.cooldown).await;
    assert_eq!(b.tick(c, now), Some(Transition { from: CircuitState::Open, to: CircuitState::HalfOpen }));
    b
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_reports_reopens_the_circuit() {
    let c = cfg();
    let mut b = half_open(&c).await;
    assert_eq!(b.admit(&c, Instant::now()).0, Admission::Probe);
    // Its outcome is lost: every other caller is turned away meanwhile...
    let now = step(c.probe_timeout - Duration::from_millis(1)).await;
    assert_eq!(b.tick(&c, now), None);
    assert_eq!(b.admit(&c, now).0, Admission::Denied);
    // ...until the probe timeout: lost, a failure, the circuit re-opens
    // with a doubled cool-down, then probes again.
    let now = step(Duration::from_millis(1)).await;
    assert_eq!(b.tick(&c, now), Some(Transition { from: CircuitState::HalfOpen, to: CircuitState::Open }));
    assert_eq!(b.probes_lost_total, 1);
    assert_eq!(b.open_until(), now + Duration::from_secs(4));
    let now = step(Duration::from_secs(4)).await;
    assert_eq!(b.admit(&c, now).0, Admission::Probe);
}

#[tokio::test(start_paused = true)]
async fn a_half_open_circuit_without_traffic_closes_after_a_window() {
    let c = cfg();
    let mut b = half_open(&c).await;
    let now = step(c.window - Duration::from_millis(1)).await;
    assert_eq!(b.tick(&c, now), None);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    let now = step(Duration::from_millis(1)).await;
    assert_eq!(b.tick(&c, now), Some(Transition { from: CircuitState::HalfOpen, to: CircuitState::Closed }));
    assert_eq!(b.admit(&c, now).0, Admission::Allowed);
    // A probe given back (neutral) counts as traffic: the window restarts.
    let mut b = half_open(&c).await;
    assert_eq!(b.admit(&c, Instant::now()).0, Admission::Probe);
    let now = step(Duration::from_secs(5)).await;
    b.on_outcome(&c, now, Verdict::Neutral);
    let now = step(c.window - Duration::from_millis(1)).await;
    assert_eq!(b.tick(&c, now), None, "5 s + window - 1 ms since it began, window - 1 ms since its last probe");
    let now = step(Duration::from_millis(1)).await;
    assert_eq!(b.tick(&c, now), Some(Transition { from: CircuitState::HalfOpen, to: CircuitState::Closed }));
}
