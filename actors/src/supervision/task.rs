//! Long-running work an actor owns outside its context: the replicas'
//! Redis writer and news listener (spawned on the replicas' arbiter), the
//! spend store's writer thread. The shell cannot guard these — they are
//! not handlers, timers or futures of a `Context` — and an unguarded one
//! that panics just ends: tokio (or the thread) swallows the panic, and
//! spend stops reaching Redis or disk without a word.
//!
//! So each runs under [`keep_running`] (a future) or [`keep_running_sync`]
//! (a thread's loop): a panic is caught, logged, counted as a restart of
//! the owning actor (its `/status` entry and `sluice_actor_restarts_total`)
//! within that actor's restart budget, and the work starts again from the
//! state it kept. Past the budget the actor is marked failed, as a
//! panicking handler would make it, and the work stays stopped.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;

use super::{ActorMeta, AfterPanic};

/// How long a restarted task waits first (a task that panics at once
/// must not spin).
pub const RESTART_PAUSE: Duration = Duration::from_millis(100);

/// Run the future `make` builds until it ends; after a panic, build and run
/// a fresh one (see the module's doc). Returns when a run ends normally or
/// the owner is failed.
pub async fn keep_running<F, Fut>(owner: Arc<ActorMeta>, task: &'static str, mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        match AssertUnwindSafe(make()).catch_unwind().await {
            Ok(()) => return,
            Err(payload) => {
                if !restart_after(&owner, task, payload.as_ref()) {
                    return;
                }
                tokio::time::sleep(RESTART_PAUSE).await;
            }
        }
    }
}

/// [`keep_running`] for a thread's blocking loop.
pub fn keep_running_sync(owner: &ActorMeta, task: &'static str, mut run: impl FnMut()) {
    loop {
        match std::panic::catch_unwind(AssertUnwindSafe(&mut run)) {
            Ok(()) => return,
            Err(payload) => {
                if !restart_after(owner, task, payload.as_ref()) {
                    return;
                }
                #[allow(clippy::disallowed_methods)] // a dedicated thread, not an event loop
                std::thread::sleep(RESTART_PAUSE);
            }
        }
    }
}

/// A task of `owner` panicked: count it; may it run again?
fn restart_after(owner: &ActorMeta, task: &'static str, payload: &(dyn Any + Send)) -> bool {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    match owner.panicked(Instant::now()) {
        AfterPanic::Restart => {
            tracing::error!(actor = owner.name(), task, panic = what, "actor task panicked; restarting it");
            owner.restarting();
            owner.started();
            true
        }
        AfterPanic::Fail => {
            tracing::error!(
                actor = owner.name(),
                task,
                panic = what,
                "actor task panicked past its restart budget: the actor is marked failed"
            );
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::supervision::{ActorState, RestartBudget};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_runs_again_from_its_kept_state() {
        let owner = ActorMeta::new("t");
        owner.started();
        // The state outlives each run, as the writer's queue does.
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        keep_running(owner.clone(), "writer", move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("injected fault in a task");
                }
            }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "two panics, then a run that ended");
        assert_eq!(owner.restarts(), 2);
        assert_eq!(owner.state(), ActorState::Running);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_budget_the_owner_fails_and_the_task_stays_stopped() {
        let owner = ActorMeta::with_budget("t", RestartBudget::new(1, Duration::from_secs(60)));
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        keep_running(owner.clone(), "news", move || {
            r.fetch_add(1, Ordering::SeqCst);
            async { panic!("always") }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(owner.is_failed());
    }

    #[test]
    fn a_thread_loop_is_restarted_too() {
        let owner = ActorMeta::new("t");
        let mut runs = 0;
        keep_running_sync(&owner, "spend store", || {
            runs += 1;
            if runs == 1 {
                panic!("injected fault in a thread");
            }
        });
        assert_eq!(runs, 2);
        assert_eq!(owner.restarts(), 1);
    }
}
