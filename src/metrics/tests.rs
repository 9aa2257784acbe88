use super::*;

#[test]
fn cost() {
    let u = Usage { prompt_tokens: 1_000_000, completion_tokens: 500_000, cached_tokens: 0 };
    let p = Price { input_per_mtok: 0.15, output_per_mtok: 0.60, cached_input_per_mtok: None };
    assert!((cost_usd(&u, &p) - 0.45).abs() < 1e-12);
    let cached = Usage { cached_tokens: 400_000, ..u };
    let p2 = Price { cached_input_per_mtok: Some(0.075), ..p };
    assert!((cost_usd(&cached, &p2) - (0.6 * 0.15 + 0.4 * 0.075 + 0.5 * 0.6)).abs() < 1e-12);
}

#[test]
fn every_status_has_a_slot() {
    for s in [200u16, 201, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504, 599] {
        assert!(status_slot(RequestOutcome::Status(s)) < STATUS_LABELS.len());
    }
    assert_eq!(STATUS_LABELS[status_slot(RequestOutcome::Status(418))], "4xx");
    assert_eq!(STATUS_LABELS[status_slot(RequestOutcome::ClientGone)], "client_gone");
}

#[test]
fn escapes_labels() {
    assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

#[test]
fn a_fold_is_asked_for_every_nth_request() {
    let n = std::cell::Cell::new(0);
    let asked: Vec<u32> = (1..=10).filter(|_| fold_due(&n, 4)).collect::<Vec<_>>();
    // `filter` sees the requests in order, so the asks are the 4th and 8th.
    assert_eq!(asked, vec![4, 8]);
    assert_eq!(n.get(), 2);
}

#[test]
fn enough_requests_on_a_thread_wake_the_upkeep() {
    use futures_util::FutureExt;
    std::thread::spawn(|| (0..FOLD_EVERY).for_each(|_| count_for_fold())).join().ok();
    // The ask is kept as a permit until the upkeep waits, so it is ready now.
    assert!(fold_wanted().now_or_never().is_some(), "no fold asked for");
}
