//! The session state on a paused clock: the error log and the registry of
//! workers' pools.

use std::time::Duration;

use sluice_upstream::{SessionSpec, WarmRequest};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

use super::*;

fn spec(name: &str) -> SessionSpec {
    SessionSpec {
        name: name.into(),
        connect_timeout: Duration::from_millis(100),
        max_connections: 2,
        idle_timeout: Duration::from_secs(90),
        warm_connections: 0,
        warm_request: None,
        plain_http: None,
    }
}

fn warming(name: &str) -> SessionSpec {
    SessionSpec {
        warm_connections: 2,
        warm_request: Some(WarmRequest { uri: "http://127.0.0.1:1/v1/models".parse().unwrap(), headers: vec![] }),
        ..spec(name)
    }
}

#[tokio::test(start_paused = true)]
async fn keeps_only_recent_errors_newest_first() {
    let table = Arc::new(SessionTable::new(vec![Some(spec("a")), None]).unwrap());
    let mut st = SessionState::new(table);
    for i in 0..(RECENT_ERRORS + 3) {
        st.record_error(0, UpstreamErrorKind::Status(500), format!("e{i}"), Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    // Out-of-range and session-less providers are ignored, not a panic.
    st.record_error(7, UpstreamErrorKind::Connect, "x".into(), Instant::now());
    assert_eq!(st.errors_total(0), (RECENT_ERRORS + 3) as u64);
    let d = st.detail(Instant::now());
    let s = sonic_rs::to_string(&d).unwrap();
    let last = format!("e{}", RECENT_ERRORS + 2);
    assert!(s.contains(&last));
    assert!(!s.contains("\"e0\""));
    let v: sonic_rs::Value = sonic_rs::from_str(&s).unwrap();
    let recent = v["providers"][0]["recent_errors"].as_array().unwrap();
    assert_eq!(recent.len(), RECENT_ERRORS);
    assert_eq!(recent[0]["message"].as_str(), Some(last.as_str()));
    assert_eq!(recent[0]["age_s"].as_f64(), Some(1.0));
    // Only the networked provider is listed.
    assert_eq!(v["providers"].as_array().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_worker_that_joins_is_ordered_to_warm_the_pools_that_warm() {
    let table =
        Arc::new(SessionTable::new(vec![Some(warming("a")), None, Some(spec("b")), Some(warming("c"))]).unwrap());
    let mut st = SessionState::new(table);
    let (w0, orders) = st.join_worker();
    assert_eq!((w0, orders), (0, vec![0, 3]));
    let (w1, orders) = st.join_worker();
    assert_eq!((w1, orders), (1, vec![0, 3]));
    assert_eq!(st.workers()[1].warm, [Warm::Ordered, Warm::Off, Warm::Off, Warm::Ordered]);

    st.warmed(w0, 0, 2, None, Instant::now());
    st.warmed(w1, 3, 0, Some("connection refused".into()), Instant::now());
    assert_eq!(st.workers()[0].warm[0], Warm::Done { opened: 2, error: None });
    assert_eq!(st.workers()[1].warm[3], Warm::Done { opened: 0, error: Some("connection refused".into()) });
    // A failed warm-up is a connection error of its provider.
    assert_eq!((st.errors_total(0), st.errors_total(3)), (0, 1));
    let s = sonic_rs::to_string(&st.detail(Instant::now())).unwrap();
    assert!(s.contains(r#""kind":"connect","message":"warm-up: connection refused""#), "{s}");
    assert!(s.contains(r#""workers":[{"worker":0,"warm":[{"provider":"a","state":"done","opened":2,"error":null},{"provider":"c","state":"ordered","opened":null,"error":null}]}"#), "{s}");
    // Reports about unknown workers or providers change nothing.
    st.warmed(9, 0, 1, None, Instant::now());
    st.warmed(0, 9, 1, Some("x".into()), Instant::now());
    assert_eq!(st.workers().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn providers_added_later_are_warmed_on_every_worker_and_removed_ones_dropped() {
    let table = Arc::new(SessionTable::new(vec![Some(spec("a"))]).unwrap());
    let mut st = SessionState::new(table.clone());
    st.join_worker();
    st.join_worker();
    let b = table.add(Some(warming("b")));
    let (orders, retired) = st.providers(&[b]);
    assert_eq!(orders, [(0, b), (1, b)]);
    assert_eq!(retired, [0]);
    let d = sonic_rs::to_string(&st.detail(Instant::now())).unwrap();
    assert!(d.contains("\"b\"") && !d.contains("\"a\""), "{d}");
    // Asked again with the same providers: nothing to do.
    assert_eq!(st.providers(&[b]), (vec![], vec![]));
}
