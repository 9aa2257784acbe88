//! Timeouts that read the clock only when the work has to wait.
//!
//! `tokio::time::timeout_at(d, fut)` builds its timer (a clone of the
//! runtime's handle) before `fut` is first polled, and `timeout(limit, fut)`
//! also reads the clock for it. On the request path most such futures are
//! ready at once: the request body came with its head, the answer's body
//! with the answer's head, a connection permit is free. [`within`] polls
//! the future first and reads the clock and arms the timer only when it is
//! pending, so a future that never waits costs neither
//! (docs/performance.md, "Timeouts armed only when the work waits").
//!
//! The time limit therefore runs from the first poll that found the future
//! pending, not from when the wrapper was made: on the request path the two
//! are the same poll, and a caller whose deadline is a fixed instant (the
//! request's total timeout) passes that instant unchanged.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::Unconstrained;
use tokio::time::{Instant, Sleep};

/// The deadline passed before the future was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// `fut`, or [`Elapsed`] once `deadline()` passes; `deadline` is called
/// (and the timer made) only if `fut` is not ready at its first poll.
pub fn within<F, D>(fut: F, deadline: D) -> Within<F, D>
where
    F: Future,
    D: FnOnce() -> Instant,
{
    Within { fut, deadline: Some(deadline), sleep: None }
}

pin_project_lite::pin_project! {
    /// The future [`within`] returns.
    #[must_use = "futures do nothing unless polled"]
    pub struct Within<F, D> {
        #[pin]
        fut: F,
        deadline: Option<D>,
        // Unconstrained, as tokio's own `Timeout` polls its timer: a future
        // that spends the task's cooperative budget must not keep its
        // timer from ever firing.
        #[pin]
        sleep: Option<Unconstrained<Sleep>>,
    }
}

impl<F, D> Future for Within<F, D>
where
    F: Future,
    D: FnOnce() -> Instant,
{
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if let Some(deadline) = this.deadline.take() {
            this.sleep.set(Some(tokio::task::unconstrained(tokio::time::sleep_until(deadline()))));
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx).map(|()| Err(Elapsed)),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_at_once_never_reads_the_deadline() {
        let asked = Cell::new(0);
        let got = within(std::future::ready(7), || {
            asked.set(asked.get() + 1);
            Instant::now()
        })
        .await;
        assert_eq!(got, Ok(7));
        assert_eq!(asked.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_future_times_out_at_its_deadline() {
        let start = Instant::now();
        let asked = Cell::new(0);
        let got = within(std::future::pending::<()>(), || {
            asked.set(asked.get() + 1);
            start + Duration::from_millis(250)
        })
        .await;
        assert_eq!(got, Err(Elapsed));
        assert_eq!(asked.get(), 1, "the deadline is asked once, at the first pending poll");
        assert_eq!(Instant::now() - start, Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_waits_less_than_its_limit_finishes() {
        let start = Instant::now();
        let got = within(
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                "done"
            },
            || Instant::now() + Duration::from_millis(150),
        )
        .await;
        assert_eq!(got, Ok("done"));
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn many_pending_polls_ask_for_the_deadline_once() {
        let start = Instant::now();
        let asked = Cell::new(0);
        let got = within(
            async {
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                }
                std::future::pending::<()>().await;
            },
            || {
                asked.set(asked.get() + 1);
                Instant::now() + Duration::from_millis(40)
            },
        )
        .await;
        assert_eq!(got, Err(Elapsed));
        assert_eq!(asked.get(), 1);
        assert_eq!(Instant::now() - start, Duration::from_millis(40));
    }
}
