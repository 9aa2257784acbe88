//! The shell on a paused clock: panics in a handler, a timer, an interval
//! and a spawned future are caught, the actor restarts with its state, and
//! past its budget it is failed instead.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;

use super::*;
use crate::supervision::{ActorState, RestartBudget};

struct Counter {
    value: u64,
    meta: Arc<ActorMeta>,
    /// Arm a panicking interval at every start (a fault a restart cannot cure).
    panic_every_tick: bool,
}

#[derive(Serialize)]
struct CounterDetail {
    value: u64,
}

impl Shell for Counter {
    type Detail = CounterDetail;

    fn meta(&self) -> &Arc<ActorMeta> {
        &self.meta
    }

    fn detail(&self) -> CounterDetail {
        CounterDetail { value: self.value }
    }

    #[allow(clippy::panic)]
    fn on_start(&mut self, ctx: &mut Context<Self>) {
        if self.panic_every_tick {
            run_interval(ctx, Duration::from_millis(10), |_, _| panic!("tick"));
        }
    }
}

actor_shell!(Counter);

#[derive(Message)]
#[rtype(result = "Option<u64>")]
struct Get;

/// Add `n`, then panic if `then_panic`: the state a panic leaves is kept.
#[derive(Message)]
#[rtype(result = "Option<u64>")]
struct Add {
    n: u64,
    then_panic: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
enum ArmPanicking {
    Timer,
    Interval,
    Future,
}

impl Handler<Get> for Counter {
    type Result = Option<u64>;

    fn handle(&mut self, _msg: Get, ctx: &mut Self::Context) -> Option<u64> {
        handle(self, ctx, None, |a, _| Some(a.value))
    }
}

impl Handler<Add> for Counter {
    type Result = Option<u64>;

    #[allow(clippy::panic)]
    fn handle(&mut self, msg: Add, ctx: &mut Self::Context) -> Option<u64> {
        handle(self, ctx, None, |a, _| {
            a.value += msg.n;
            if msg.then_panic {
                panic!("handler");
            }
            Some(a.value)
        })
    }
}

impl Handler<ArmPanicking> for Counter {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, msg: ArmPanicking, ctx: &mut Self::Context) {
        handle(self, ctx, (), |_, ctx| match msg {
            ArmPanicking::Timer => {
                run_later(ctx, Duration::from_millis(5), |a: &mut Counter, _| {
                    a.value += 100;
                    panic!("timer");
                });
            }
            ArmPanicking::Interval => {
                run_interval(ctx, Duration::from_millis(5), |_, _| panic!("interval"));
            }
            ArmPanicking::Future => {
                spawn(ctx, async { panic!("future") }, |(), _: &mut Counter, _| {});
            }
        })
    }
}

fn start(budget: RestartBudget, panic_every_tick: bool) -> (Addr<Counter>, Arc<ActorMeta>) {
    let meta = ActorMeta::with_budget("counter", budget);
    let m = meta.clone();
    let addr = Supervisor::start(move |_| Counter { value: 0, meta: m, panic_every_tick });
    (addr, meta)
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[actix_rt::test]
async fn a_panicking_handler_restarts_the_actor_with_its_state() {
    tokio::time::pause();
    let (addr, meta) = start(RestartBudget::new(5, Duration::from_secs(60)), false);
    assert_eq!(addr.send(Add { n: 2, then_panic: false }).await.unwrap(), Some(2));
    // The caller of the panicking handler gets the fallback...
    assert_eq!(addr.send(Add { n: 3, then_panic: true }).await.unwrap(), None);
    // ...and the actor is back, with the state the panic left.
    assert_eq!(addr.send(Get).await.unwrap(), Some(5));
    assert_eq!((meta.restarts(), meta.state()), (1, ActorState::Running));
    assert_eq!(meta.mailbox(), 0, "every handled message was uncounted");
    let status = addr.send(GetStatus).await.unwrap();
    assert_eq!(sonic_rs::to_string(&status).unwrap(), r#"{"value":5}"#);
}

#[actix_rt::test]
async fn panics_in_timers_intervals_and_spawned_futures_are_caught() {
    tokio::time::pause();
    let (addr, meta) = start(RestartBudget::new(5, Duration::from_secs(60)), false);
    let mut restarts = 0;
    for arm in [ArmPanicking::Timer, ArmPanicking::Interval, ArmPanicking::Future] {
        addr.send(arm).await.unwrap();
        settle().await;
        restarts += 1;
        // Caught and restarted once: the interval died with the restart
        // (actix drops spawned work), so it did not panic again.
        assert_eq!((meta.restarts(), meta.state()), (restarts, ActorState::Running));
        assert!(addr.send(Get).await.unwrap().is_some());
    }
    assert_eq!(addr.send(Get).await.unwrap(), Some(100), "the timer's change before its panic is kept");
}

#[actix_rt::test]
async fn an_actor_that_keeps_panicking_is_failed_not_restarted_forever() {
    tokio::time::pause();
    let (addr, meta) = start(RestartBudget::new(3, Duration::from_secs(60)), true);
    // Every start arms an interval that panics at its first tick.
    settle().await;
    assert_eq!((meta.restarts(), meta.state()), (3, ActorState::Failed));
    // Failed: handlers answer their fallback without running...
    assert_eq!(addr.send(Get).await.unwrap(), None);
    assert_eq!(addr.send(Add { n: 1, then_panic: false }).await.unwrap(), None);
    // ...the status says why...
    let status = sonic_rs::to_string(&addr.send(GetStatus).await.unwrap()).unwrap();
    assert!(status.contains("the actor failed"), "{status}");
    // ...and nothing restarts it again, however long it waits.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!((meta.restarts(), meta.state()), (3, ActorState::Failed));
    assert_eq!(meta.mailbox(), 0);
}
