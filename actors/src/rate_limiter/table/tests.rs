//! The in-process limiter table on a paused clock, and under threads.

use super::*;

fn spec(name: &str, rpm: Option<u64>, tpm: Option<u64>, conc: Option<u32>) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        requests: rpm.map(Rate::per_minute),
        tokens: tpm.map(Rate::per_minute),
        concurrency: conc,
    }
}

#[tokio::test(start_paused = true)]
async fn all_scopes_or_none() {
    let t = LimiterTable::new(vec![spec("key", Some(10), None, None), spec("model", Some(2), None, None)]);
    let g1 = t.admit(&[0, 1], 0).unwrap();
    let g2 = t.admit(&[0, 1], 0).unwrap();
    let r = t.admit(&[0, 1], 0).unwrap_err();
    assert_eq!((r.scope, r.what), (1, Exceeded::Requests));
    assert_eq!(r.retry_after, Some(Duration::from_secs(30)));
    // The key scope gave back what the refused request took.
    assert_eq!(t.headroom_of(&[0]).requests.map(|h| h.1), Some(8));
    drop((g1, g2));
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(t.admit(&[0, 1], 0).is_ok());
}

#[tokio::test(start_paused = true)]
async fn tokens_are_estimated_then_corrected() {
    let t = LimiterTable::new(vec![spec("k", None, Some(1000), None)]);
    let mut g = t.admit(&[0], 800).unwrap();
    assert_eq!(t.headroom_of(&[0]).tokens.map(|h| h.1), Some(200));
    assert!(t.admit(&[0], 300).is_err());
    g.settle(100);
    assert_eq!(t.headroom_of(&[0]).tokens.map(|h| h.1), Some(900));
    let r = t.admit(&[0], 5000).unwrap_err();
    assert!(r.never && r.retry_after.is_none());
}

#[tokio::test(start_paused = true)]
async fn concurrency_slots_are_held_until_the_grant_drops() {
    let t = LimiterTable::new(vec![spec("k", None, None, Some(2))]);
    let a = t.admit(&[0], 0).unwrap();
    let _b = t.admit(&[0], 0).unwrap();
    let r = t.admit(&[0], 0).unwrap_err();
    assert_eq!(r.what, Exceeded::Concurrency);
    drop(a);
    assert!(t.admit(&[0], 0).is_ok());
}

#[test]
fn concurrent_admissions_are_exact() {
    let t = LimiterTable::new(vec![spec("k", Some(1000), None, None)]);
    let admitted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..500 {
                    if let Ok(g) = t.admit(&[0], 0) {
                        std::mem::forget(g);
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    // 4,000 tries within far less than 60 ms: exactly the burst of 1,000
    // (a little more if the test was slow enough for refills).
    let n = admitted.load(Ordering::Relaxed);
    assert!((1000..1010).contains(&n), "{n}");
}

#[tokio::test(start_paused = true)]
async fn a_scope_defined_again_keeps_its_id_and_state_with_new_limits() {
    let t = LimiterTable::new(vec![]);
    let a = t.define(spec("key:a", Some(2), None, Some(1)));
    let g = t.admit(&[a], 0).unwrap();
    assert_eq!(t.admit(&[a], 0).unwrap_err().what, Exceeded::Concurrency);
    // A reload raises the cap: same id, the slot held before still counts.
    assert_eq!(t.define(spec("key:a", Some(2), None, Some(2))), a);
    let g2 = t.admit(&[a], 0).unwrap();
    // Both requests of the minute were taken: the rate state carried over.
    drop((g, g2));
    assert_eq!(t.admit(&[a], 0).unwrap_err().what, Exceeded::Requests);
    // Another name is another scope; a removed one is hidden, not reused.
    let b = t.define(spec("key:b", Some(1), None, None));
    assert_ne!(a, b);
    t.retain_live(&[b].into_iter().collect());
    assert!(t.detail(a).is_none());
    assert!(t.detail(b).is_some());
    assert_eq!(t.define(spec("key:a", Some(60), None, None)), a, "back under the same id");
    assert!(t.detail(a).is_some());
}

#[test]
fn a_grant_taken_before_a_cap_was_set_never_takes_the_count_below_zero() {
    let t = LimiterTable::new(vec![spec("k", None, None, None)]);
    let g = t.admit(&[0], 0).unwrap();
    t.define(spec("k", None, None, Some(1)));
    drop(g);
    // The cap of 1 still admits one.
    let _g = t.admit(&[0], 0).unwrap();
    assert_eq!(t.admit(&[0], 0).unwrap_err().what, Exceeded::Concurrency);
}

#[tokio::test(start_paused = true)]
async fn a_changed_rate_counts_what_was_used_at_the_new_rate() {
    let t = LimiterTable::new(vec![spec("k", Some(1), None, None)]);
    let _ = t.admit(&[0], 0).unwrap();
    assert!(t.admit(&[0], 0).is_err());
    // Raised to 1000 a minute: the one request used is one of 1000.
    t.define(spec("k", Some(1000), None, None));
    for _ in 0..999 {
        assert!(t.admit(&[0], 0).is_ok());
    }
    assert!(t.admit(&[0], 0).is_err());
    // Lowered to 10 a minute: a full minute's worth is used already.
    t.define(spec("k", Some(10), None, None));
    assert!(t.admit(&[0], 0).is_err());
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(t.admit(&[0], 0).is_ok(), "one more every 6 s");
}
