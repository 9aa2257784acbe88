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
