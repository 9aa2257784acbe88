use super::*;

fn noop_cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

#[test]
fn followers_join_and_replay_from_the_start() {
    let t = Arc::new(Flights::default());
    let Role::Lead(lead) = t.join(7) else { panic!("first is the leader") };
    let f = lead.flight().clone();
    f.push(Bytes::from_static(b"data: 1\n\n"));
    let Role::Follow(mut late) = t.join(7) else { panic!("second follows") };
    assert_eq!(f.subscribers(), 2);
    f.push(Bytes::from_static(b"data: 2\n\n"));
    let mut cx = noop_cx();
    let mut got = Vec::new();
    while let Poll::Ready(Next::Events(e)) = late.poll_next(&mut cx) {
        got.push(e);
    }
    assert_eq!(got, vec![Bytes::from_static(b"data: 1\n\n"), Bytes::from_static(b"data: 2\n\n")]);
    f.finish(End::Done, None);
    assert!(matches!(late.poll_next(&mut cx), Poll::Ready(Next::End(Ok(())))));
    drop(late);
    drop(lead);
    assert_eq!(t.len(), 1, "a finished flight is removed by its task, not its subscribers");
    t.remove(7, &f);
    assert!(t.is_empty());
}

#[test]
fn the_last_subscriber_leaving_cancels_the_flight() {
    let t = Arc::new(Flights::default());
    let Role::Lead(lead) = t.join(1) else { panic!() };
    let Role::Follow(follow) = t.join(1) else { panic!() };
    let f = lead.flight().clone();
    drop(lead);
    assert!(!f.is_finished(), "one subscriber is still there");
    drop(follow);
    assert!(matches!(f.lock().end, Some(End::Cancelled)));
    assert!(t.is_empty());
    // The next request for the key starts afresh.
    assert!(matches!(t.join(1), Role::Lead(_)));
}

#[test]
fn past_its_bound_a_flight_keeps_only_unread_events_and_cuts_a_laggard() {
    let t = Arc::new(Flights::new(100));
    let Role::Lead(mut fast) = t.join(9) else { panic!() };
    let Role::Follow(mut slow) = t.join(9) else { panic!() };
    let f = fast.flight().clone();
    let mut cx = noop_cx();
    let mut read = 0;
    for i in 0..20 {
        f.push(Bytes::from(vec![b'x'; 30]));
        while let Poll::Ready(Next::Events(_)) = fast.poll_next(&mut cx) {
            read += 1;
        }
        // Never more than twice the bound (plus the run just pushed).
        assert!(f.buffered() <= 230, "{} after {i} runs", f.buffered());
    }
    assert_eq!(read, 20, "the subscriber that keeps up gets every event");
    assert!(f.all_events().is_none(), "past the bound: no copy to store");
    // The one that read nothing fell behind and was cut, with an error.
    assert!(matches!(slow.poll_next(&mut cx), Poll::Ready(Next::End(Err(_)))));
    // A new identical request does not join a flight it could not replay.
    assert!(matches!(t.join(9), Role::Lead(_)));
    f.finish(End::Done, None);
    assert!(matches!(fast.poll_next(&mut cx), Poll::Ready(Next::End(Ok(())))));
}

#[test]
fn a_failed_flight_is_replaced_and_its_error_shared() {
    let t = Arc::new(Flights::default());
    let Role::Lead(lead) = t.join(3) else { panic!() };
    let Role::Follow(follow) = t.join(3) else { panic!() };
    lead.flight().finish(End::Failed(GatewayError::ShuttingDown), None);
    let mut cx = noop_cx();
    assert!(matches!(follow.poll_ready(&mut cx), Poll::Ready(Ready::Failed(GatewayError::ShuttingDown))));
    assert!(matches!(t.join(3), Role::Lead(_)), "a failed flight still listed is not joined");
}

#[test]
fn only_a_done_flight_offers_its_answer() {
    let answer = StoredAnswer { body: Bytes::from_static(b"{}"), events: Bytes::new(), usage_event: Bytes::new() };
    let f = Flight::new(1 << 20);
    assert!(f.done_answer().is_none(), "in progress");
    f.finish(End::Done, Some(answer.clone()));
    assert_eq!(f.done_answer().map(|a| a.body), Some(answer.body.clone()));
    let failed = Flight::new(1 << 20);
    failed.finish(End::Failed(GatewayError::ShuttingDown), Some(answer));
    assert!(failed.done_answer().is_none());
}
