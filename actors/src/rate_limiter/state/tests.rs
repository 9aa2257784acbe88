//! The wait queue on a paused clock, against a real limiter table.

use std::sync::Arc;

use super::*;
use crate::rate_limiter::gcra::Rate;
use crate::rate_limiter::table::{Exceeded, LimitSpec, LimiterTable};

fn table(rpm: Option<u64>, concurrency: Option<u32>) -> Arc<LimiterTable> {
    LimiterTable::new(vec![LimitSpec {
        name: "key:k".into(),
        requests: rpm.map(Rate::per_minute),
        tokens: None,
        concurrency,
    }])
}

fn enqueue(t: &Arc<LimiterTable>, priority: i32, wait: Duration) -> Enqueue {
    let refusal = t.admit(&[0], 0).expect_err("the limit is spent");
    Enqueue { scopes: vec![0], tokens: 0, priority, deadline: Instant::now() + wait, refusal }
}

fn pump(q: &mut WaitQueue, t: &Arc<LimiterTable>) -> Option<Instant> {
    q.pump(Instant::now(), |s, n| t.admit(s, n))
}

#[tokio::test(start_paused = true)]
async fn a_freed_slot_goes_to_the_highest_priority_then_the_first_come() {
    let t = table(None, Some(1));
    let held = t.admit(&[0], 0).unwrap();
    let mut q = WaitQueue::new(8);
    let mut low = q.push(enqueue(&t, 0, Duration::from_secs(5))).unwrap();
    let mut high_first = q.push(enqueue(&t, 9, Duration::from_secs(5))).unwrap();
    let mut high_second = q.push(enqueue(&t, 9, Duration::from_secs(5))).unwrap();
    // Nothing fits: a concurrency cap says nothing about when, so each
    // waiter wakes the queue at its deadline at the latest.
    assert_eq!(pump(&mut q, &t), Some(Instant::now() + Duration::from_secs(5)));
    assert_eq!(q.len(), 3);
    drop(held);
    pump(&mut q, &t);
    let grant = high_first.try_recv().unwrap().unwrap();
    assert!(high_second.try_recv().is_err() && low.try_recv().is_err(), "one slot, one admission");
    drop(grant);
    pump(&mut q, &t);
    assert!(high_second.try_recv().unwrap().is_ok());
    assert_eq!(q.detail().admitted_from_queue, 2);
    assert_eq!(q.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rate_refusal_wakes_the_queue_when_the_request_would_fit() {
    let t = table(Some(60), None);
    for _ in 0..60 {
        std::mem::forget(t.admit(&[0], 0).unwrap());
    }
    let mut q = WaitQueue::new(8);
    let mut rx = q.push(enqueue(&t, 0, Duration::from_secs(30))).unwrap();
    let wake = pump(&mut q, &t).unwrap();
    assert_eq!(wake, Instant::now() + Duration::from_secs(1), "one request a second refills");
    assert_eq!(sleep_until(wake, Instant::now()), Duration::from_secs(1));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(pump(&mut q, &t), None, "admitted: nobody waits");
    assert!(rx.try_recv().unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_waiter_past_its_deadline_gets_the_refusal_that_queued_it() {
    let t = table(None, Some(1));
    let _held = t.admit(&[0], 0).unwrap();
    let mut q = WaitQueue::new(8);
    let mut rx = q.push(enqueue(&t, 0, Duration::from_millis(200))).unwrap();
    pump(&mut q, &t);
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(pump(&mut q, &t), None);
    match rx.try_recv().unwrap() {
        Err(QueueRefusal::TimedOut(r)) => assert_eq!(r.what, Exceeded::Concurrency),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.detail().timed_out, 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_sheds_and_a_gone_client_leaves_it() {
    let t = table(None, Some(1));
    let held = t.admit(&[0], 0).unwrap();
    let mut q = WaitQueue::new(2);
    let gone = q.push(enqueue(&t, 0, Duration::from_secs(5))).unwrap();
    let mut stays = q.push(enqueue(&t, 0, Duration::from_secs(5))).unwrap();
    assert_eq!(q.push(enqueue(&t, 5, Duration::from_secs(5))).err(), Some(QueueRefusal::Full));
    assert_eq!(q.detail().shed_full, 1);
    // The first client leaves; the slot goes to the one still waiting.
    drop(gone);
    drop(held);
    assert_eq!(pump(&mut q, &t), None);
    assert!(stays.try_recv().unwrap().is_ok());
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_request_that_left_holds_no_place_in_a_full_queue_and_takes_nothing() {
    let t = table(Some(60), Some(1));
    let held = t.admit(&[0], 0).unwrap();
    let mut q = WaitQueue::new(1);
    let gone = q.push(enqueue(&t, 0, Duration::from_secs(5))).unwrap();
    drop(gone);
    // The queue is full of one request that left: a new one takes its place.
    let mut next = q.push(enqueue(&t, 0, Duration::from_secs(5))).unwrap();
    assert_eq!((q.len(), q.detail().shed_full), (1, 0));
    drop(held);
    pump(&mut q, &t);
    assert!(next.try_recv().unwrap().is_ok());
    // Two admissions of the 60 per minute so far (the holder's and the
    // one from the queue); the request that left took none.
    assert_eq!(t.detail(0).unwrap().requests.unwrap().remaining, 58);
}

#[tokio::test(start_paused = true)]
async fn a_grant_refunded_gives_back_its_request_tokens_and_slot() {
    let t = LimiterTable::new(vec![LimitSpec {
        name: "key:k".into(),
        requests: Some(Rate::per_minute(10)),
        tokens: Some(Rate::per_minute(1000)),
        concurrency: Some(1),
    }]);
    let g = t.admit(&[0], 400).unwrap();
    let d = t.detail(0).unwrap();
    assert_eq!((d.requests.unwrap().remaining, d.tokens.unwrap().remaining), (9, 600));
    g.refund();
    let d = t.detail(0).unwrap();
    assert_eq!((d.requests.unwrap().remaining, d.tokens.unwrap().remaining), (10, 1000));
    assert_eq!(d.concurrency.unwrap().inflight, 0);
}
