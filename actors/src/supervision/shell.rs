//! The one shell every actor runs in.
//!
//! An actor implements [`Shell`] (its [`ActorMeta`], its typed `/status`
//! detail, what to arm at start) and invokes [`actor_shell!`] once, which
//! writes its `Actor`, `Supervised`, `GetStatus` and (test builds)
//! `InjectPanic` impls. Its own handlers are one call each:
//!
//! ```ignore
//! fn handle(&mut self, msg: Admit, ctx: &mut Self::Context) -> Self::Result {
//!     MessageResult(shell::handle(self, ctx, Admission::Denied, |act, _| act.admit(msg)))
//! }
//! ```
//!
//! Every way code runs inside an actor goes through [`guarded`]: message
//! handlers ([`handle`]), timers ([`run_later`]), intervals
//! ([`run_interval`]) and spawned futures ([`spawn`], whose future is itself
//! polled under `catch_unwind`). A panic there is caught; within the restart
//! budget the actor is stopped and its `Supervisor` restarts it from the
//! state the actor value holds (actix keeps the value: each concern keeps
//! its `state.rs` and rebuilds what derives from it — snapshots, gauges,
//! timers — in [`Shell::on_start`]). Past the budget the actor is marked
//! failed and parked: its handlers answer their fallback without running.
//! The caller of a handler that panicked gets the same fallback, which is
//! what it would get from an unresponsive actor.
//!
//! `clippy.toml` bans calling actix's `run_later`, `run_interval` and
//! `spawn` directly, so no timer can slip past the guard.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt;
use serde::Serialize;
use tokio::time::Instant;

use super::{ActorMeta, AfterPanic, MAILBOX_CAPACITY};
use crate::status::GetStatus;

/// What the shell needs from an actor.
pub trait Shell: Actor<Context = Context<Self>> + Supervised + ShellHandlers {
    /// `/status` detail of this concern, typed.
    type Detail: Serialize;

    /// The actor's restart-surviving facts.
    fn meta(&self) -> &Arc<ActorMeta>;

    /// `/status` detail. A read: it takes `&self`, so it cannot change state.
    fn detail(&self) -> Self::Detail;

    /// Arm timers and intervals and publish snapshots from the kept state.
    /// Runs at start and after each restart (actix drops spawned futures
    /// and timers on a restart), guarded like a handler.
    fn on_start(&mut self, _ctx: &mut Context<Self>) {}

    /// Forget what a restart invalidates (handles of the dropped timers,
    /// flags of dropped futures), before `on_start` runs again.
    fn on_restart(&mut self) {}
}

/// The handlers the shell writes for every actor ([`actor_shell!`]).
#[cfg(feature = "fault-injection")]
pub trait ShellHandlers: Handler<GetStatus> + Handler<super::InjectPanic> + Handler<super::InjectStall> {}
#[cfg(feature = "fault-injection")]
impl<A: Handler<GetStatus> + Handler<super::InjectPanic> + Handler<super::InjectStall>> ShellHandlers for A {}
/// The handlers the shell writes for every actor ([`actor_shell!`]).
#[cfg(not(feature = "fault-injection"))]
pub trait ShellHandlers: Handler<GetStatus> {}
#[cfg(not(feature = "fault-injection"))]
impl<A: Handler<GetStatus>> ShellHandlers for A {}

/// Run `body` inside the actor so that a panic cannot take the actor down
/// with it: caught, then the actor restarts (or, past its budget, fails) and
/// the caller gets `fallback`. A failed actor runs nothing and answers
/// `fallback` at once.
pub fn guarded<A: Shell, R>(
    act: &mut A,
    ctx: &mut Context<A>,
    fallback: R,
    body: impl FnOnce(&mut A, &mut Context<A>) -> R,
) -> R {
    if act.meta().is_failed() {
        return fallback;
    }
    match std::panic::catch_unwind(AssertUnwindSafe(|| body(&mut *act, &mut *ctx))) {
        Ok(r) => r,
        Err(payload) => {
            let meta = act.meta().clone();
            panicked(&meta, ctx, payload.as_ref());
            fallback
        }
    }
}

/// A message handler: uncount the message from the mailbox gauge, then run
/// `body` [`guarded`].
pub fn handle<A: Shell, R>(
    act: &mut A,
    ctx: &mut Context<A>,
    fallback: R,
    body: impl FnOnce(&mut A, &mut Context<A>) -> R,
) -> R {
    act.meta().dequeued();
    guarded(act, ctx, fallback, body)
}

/// `ctx.run_later`, guarded.
#[allow(clippy::disallowed_methods)]
pub fn run_later<A: Shell>(
    ctx: &mut Context<A>,
    after: Duration,
    f: impl FnOnce(&mut A, &mut Context<A>) + 'static,
) -> SpawnHandle {
    ctx.run_later(after, move |act, ctx| guarded(act, ctx, (), f))
}

/// `ctx.run_interval`, each tick guarded.
#[allow(clippy::disallowed_methods)]
pub fn run_interval<A: Shell>(
    ctx: &mut Context<A>,
    every: Duration,
    mut f: impl FnMut(&mut A, &mut Context<A>) + 'static,
) -> SpawnHandle {
    ctx.run_interval(every, move |act, ctx| guarded(act, ctx, (), |a, c| f(a, c)))
}

/// Spawn `fut` on the actor's context, then hand its output to `then` with
/// the actor. The future itself is polled under `catch_unwind` (it runs on
/// the actor's task, so its panic would end the actor too), and `then` runs
/// [`guarded`].
#[allow(clippy::disallowed_methods)]
pub fn spawn<A, F>(
    ctx: &mut Context<A>,
    fut: F,
    then: impl FnOnce(F::Output, &mut A, &mut Context<A>) + 'static,
) -> SpawnHandle
where
    A: Shell,
    F: Future + 'static,
{
    let fut = AssertUnwindSafe(fut).catch_unwind();
    ctx.spawn(actix::fut::wrap_future::<_, A>(fut).map(move |out, act, ctx| match out {
        Ok(v) => guarded(act, ctx, (), |a, c| then(v, a, c)),
        Err(payload) => {
            let meta = act.meta().clone();
            if !meta.is_failed() {
                panicked(&meta, ctx, payload.as_ref());
            }
        }
    }))
}

/// After a caught panic: restart within the budget, fail past it.
fn panicked<A: Actor<Context = Context<A>>>(meta: &ActorMeta, ctx: &mut Context<A>, payload: &(dyn Any + Send)) {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    match meta.panicked(Instant::now()) {
        AfterPanic::Restart => {
            tracing::error!(actor = meta.name(), panic = what, "actor panicked; restarting it");
            ctx.stop();
        }
        AfterPanic::Fail => {
            let (n, window) = meta.budget();
            tracing::error!(
                actor = meta.name(),
                panic = what,
                "actor panicked again after {n} restarts within {window:?}: marked failed, not restarted; \
                 /health is unhealthy until the process is replaced"
            );
        }
    }
}

/// `Actor::started`, for [`actor_shell!`].
pub fn started<A: Shell>(act: &mut A, ctx: &mut Context<A>) {
    ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    act.meta().started();
    guarded(act, ctx, (), |a, c| a.on_start(c));
}

/// `Actor::stopped`, for [`actor_shell!`].
pub fn stopped<A: Shell>(act: &mut A) {
    act.meta().stopped();
}

/// `Supervised::restarting`, for [`actor_shell!`].
pub fn restarting<A: Shell>(act: &mut A) {
    act.meta().restarting();
    act.on_restart();
}

/// The `GetStatus` handler, for [`actor_shell!`]: the typed detail as JSON.
pub fn status<A: Shell>(act: &mut A, ctx: &mut Context<A>) -> sonic_rs::Value {
    let fallback = if act.meta().is_failed() {
        let (n, window) = act.meta().budget();
        sonic_rs::json!({
            "error": format!("the actor failed: it panicked more than {n} times within {} s and is not restarted", window.as_secs())
        })
    } else {
        sonic_rs::json!({ "error": "status handler failed; the actor is restarting" })
    };
    handle(act, ctx, fallback, |a, _| {
        sonic_rs::to_value(&a.detail())
            .unwrap_or_else(|e| sonic_rs::json!({ "error": format!("cannot serialise the status: {e}") }))
    })
}

/// The `InjectPanic` handler, for [`actor_shell!`] (test builds only).
#[cfg(feature = "fault-injection")]
#[allow(clippy::panic)]
pub fn inject_panic<A: Shell>(act: &mut A, ctx: &mut Context<A>) {
    handle(act, ctx, (), |a, _| panic!("injected fault: {} panics on purpose", a.meta().name()))
}

/// The `InjectStall` handler, for [`actor_shell!`] (test builds only).
#[cfg(feature = "fault-injection")]
#[allow(clippy::disallowed_methods, reason = "test builds only: blocking the actor's thread is the fault")]
pub fn inject_stall<A: Shell>(act: &mut A, ctx: &mut Context<A>, ms: u64) {
    handle(act, ctx, (), |_, _| {
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms));
        }
    })
}

/// Write an actor's `Actor`, `Supervised`, `GetStatus` and (test builds)
/// `InjectPanic` impls over its [`Shell`] impl.
macro_rules! actor_shell {
    ($actor:ty) => {
        impl ::actix::Actor for $actor {
            type Context = ::actix::Context<Self>;

            fn started(&mut self, ctx: &mut Self::Context) {
                $crate::supervision::shell::started(self, ctx)
            }

            fn stopped(&mut self, _ctx: &mut Self::Context) {
                $crate::supervision::shell::stopped(self)
            }
        }

        impl ::actix::Supervised for $actor {
            fn restarting(&mut self, _ctx: &mut Self::Context) {
                $crate::supervision::shell::restarting(self)
            }
        }

        impl ::actix::Handler<$crate::status::GetStatus> for $actor {
            type Result = ::actix::MessageResult<$crate::status::GetStatus>;

            fn handle(&mut self, _msg: $crate::status::GetStatus, ctx: &mut Self::Context) -> Self::Result {
                ::actix::MessageResult($crate::supervision::shell::status(self, ctx))
            }
        }

        #[cfg(feature = "fault-injection")]
        impl ::actix::Handler<$crate::supervision::InjectPanic> for $actor {
            type Result = ();

            fn handle(&mut self, _msg: $crate::supervision::InjectPanic, ctx: &mut Self::Context) {
                $crate::supervision::shell::inject_panic(self, ctx)
            }
        }

        #[cfg(feature = "fault-injection")]
        impl ::actix::Handler<$crate::supervision::InjectStall> for $actor {
            type Result = ();

            fn handle(&mut self, msg: $crate::supervision::InjectStall, ctx: &mut Self::Context) {
                $crate::supervision::shell::inject_stall(self, ctx, msg.ms)
            }
        }
    };
}
pub(crate) use actor_shell;

#[cfg(test)]
mod tests;
