//! Adaptive busy polling of a worker's event loop.
//!
//! On a VM, waking a sleeping thread costs tens of microseconds (an
//! inter-processor interrupt and a halt exit) of latency, and ~70 µs of the
//! woken thread's CPU on the 2-vCPU test VM (docs/performance.md,
//! "Wake-ups") — more than Sluice's own work per request. While requests
//! are flowing densely, a worker therefore keeps polling its sockets
//! instead of sleeping in `epoll_wait`: a spinner task yields in a loop, and
//! tokio polls the I/O driver (with a zero timeout) before re-running a
//! yielded task. After `window` without a request starting or finishing (or
//! a stream event), the spinner parks until the next one.
//!
//! Spinning pays only when the next event comes within the window: then it
//! replaces a wake-up (its latency and its CPU) by a shorter spin. When
//! events are further apart than the window, every spin is pure waste —
//! the worker spins the whole window, then sleeps and wakes anyway. That is
//! the common case of LLM traffic (moderate rates, slow upstreams, streams
//! whose events are tens of milliseconds apart), where spinning after every
//! event made Sluice spend ~1.6× nginx's CPU per request at
//! 200 req/s (docs/performance.md, "Busy polling at moderate rates"). So
//! the spinner spins after an event only when most recent gaps after
//! events of that kind were shorter than the window. There are two kinds,
//! because they predict different waits: after a request went upstream (or
//! a stream event was relayed) the worker waits for its upstream; after a
//! request finished, for the client's next one. A fast upstream at a
//! moderate rate is then spun for while the long wait for the next request
//! is slept through.
//!
//! Nor does spinning pay while a worker holds many requests waiting for
//! their upstreams (high concurrency). Its core is then nearly always busy,
//! each wake-up finds a batch of ready sockets, and the few idle moments
//! are short: a spin there trades the worker's own work for yields and
//! zero-timeout polls. Measured at c=256 on one core, spinning cost ~8%
//! more CPU per request (at c=32 the difference was within the VM's
//! noise; docs/performance.md, "Busy polling under concurrency"). So the worker
//! spins only while at most [`SPIN_UP_TO`] of its requests are waiting for
//! their upstream's answer: c=1, and moderate rates, where each wake-up's
//! latency lands on one request.
//!
//! Nor, at a moderate rate, does spinning for a fast upstream pay in CPU.
//! The worker sleeps through the long wait for the client's next request
//! anyway, so a spin for the upstream's answer saves one wake-up of two and
//! costs its whole wait: at 2,000 req/s evenly paced that spin and its
//! probes cost ~16 µs per request (17%) for ~25 µs of mean latency
//! (docs/performance.md, "Spinning only for back-to-back traffic"), and no
//! budget asks for that latency. So the worker spins for its upstream
//! only while the client's requests also come back to back (the client
//! kind's score says "spin"): c=1 keeps its latency, a paced client pays
//! no spin.
//!
//! The hazard is in the evidence. A gap is the wait from when the spinner
//! found the worker idle after an event (not from the event: the request's
//! own processing follows it) to the next event. A gap measured while the
//! worker slept includes its own wake-up (tens of µs here), so a sleeping
//! worker sees every gap as long and would never start spinning again — at
//! c=1 it stayed asleep between back-to-back requests. So a long gap counts
//! against spinning only when the worker spun through the window first;
//! a short one always counts for it; and while a kind's score says
//! "sleep", one event in [`PROBE_EVERY`] is spun for anyway, to look. Each
//! piece of evidence moves its kind's score (an exponential average,
//! weight 1/4); below one half the spinner stays parked and touches do not
//! wake it. Sustained back-to-back traffic turns spinning on within a few
//! probes; a probe that finds a long gap costs one window, so each one
//! that does doubles the distance to the kind's next probe, up to one
//! event in [`PROBE_MAX_EVERY`] (a short gap sets it back to
//! [`PROBE_EVERY`]). At 2,000 req/s evenly paced the probes then cost
//! ~0.25 rounds of the spin loop per request instead of ~1.9; after such
//! a spell, back-to-back traffic finds spinning again within a few hundred
//! requests.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Fixed-point scale of [`Activity`]'s score (1.0).
const ONE: u32 = 1024;
/// While a kind's score says "sleep", one event of that kind in this many
/// is spun for anyway: what keeps the score honest (see the module's
/// comment). At 200 req/s a probe that finds a long gap costs one window
/// per this many events.
const PROBE_EVERY: u32 = 16;
/// The farthest apart probes get while each finds a long gap.
const PROBE_MAX_EVERY: u32 = 128;
/// Spinning is considered only while at most this many of the worker's
/// requests are waiting for their upstream's answer (see the module's
/// comment).
const SPIN_UP_TO: u32 = 2;

/// What the worker waits for after an event: each kind keeps its own score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A request is going upstream, or a stream event was relayed: the
    /// upstream's answer or next event.
    Upstream = 0,
    /// A request finished: the client's next request.
    Client = 1,
}

/// Per-worker activity signal shared by the handlers and the spinner.
pub struct Activity {
    /// The spin window (`server.busy_poll_us`); zero turns polling off.
    window: Duration,
    ticks: Cell<u64>,
    last: Cell<Instant>,
    /// When the spinner, running after the last event, found the worker
    /// idle: the wait for the next event starts there, not at the event
    /// (the request's own processing follows its touch).
    idle_since: Cell<Instant>,
    /// The kind of the last event: whose score the next gap updates.
    last_kind: Cell<Next>,
    /// Per kind, an exponential average (weight 1/4) of "the gap after an
    /// event of this kind was within the window", in `ONE`ths. Starts at
    /// zero: no spinning until events show they come close together.
    score: [Cell<u32>; 2],
    /// Per kind, events since the last probe while its score said "sleep".
    since_probe: [Cell<u32>; 2],
    /// Per kind, how many events apart its probes are now: [`PROBE_EVERY`],
    /// doubled by each probe that found a long gap, up to
    /// [`PROBE_MAX_EVERY`].
    probe_every: [Cell<u32>; 2],
    /// The spin since the last event is a probe.
    probing: Cell<bool>,
    /// The gap since the last event is being spun through (so a long one
    /// is evidence), not slept through.
    spinning: Cell<bool>,
    /// The worker's requests waiting for their upstream's answer ([`Busy`]).
    waiting: Cell<u32>,
    parked: Cell<bool>,
    wake: Notify,
}

impl Activity {
    pub fn new(window: Duration) -> Activity {
        Activity {
            window,
            ticks: Cell::new(0),
            last: Cell::new(Instant::now()),
            idle_since: Cell::new(Instant::now()),
            last_kind: Cell::new(Next::Client),
            score: [Cell::new(0), Cell::new(0)],
            since_probe: [Cell::new(0), Cell::new(0)],
            probe_every: [Cell::new(PROBE_EVERY), Cell::new(PROBE_EVERY)],
            probing: Cell::new(false),
            spinning: Cell::new(false),
            waiting: Cell::new(0),
            parked: Cell::new(false),
            wake: Notify::new(),
        }
    }

    /// Called when a request starts or finishes and on each stream event,
    /// saying what the worker waits for next: a clock read and a few Cell
    /// writes, plus one notify when the spinner had parked and the wait
    /// that starts now is to be spun through.
    pub fn touch(&self, next: Next) {
        if self.window.is_zero() {
            return;
        }
        let now = Instant::now();
        // The idle time since the last event when the spinner saw it start;
        // otherwise (parked) the whole gap, processing and wake-up included.
        let from = self.last.replace(now).max(self.idle_since.get());
        let gap = now.saturating_duration_since(from);
        let kind = self.last_kind.replace(next) as usize;
        let score = &self.score[kind];
        let s = score.get();
        if gap <= self.window {
            score.set(s + (ONE - s) / 4);
            self.probe_every[kind].set(PROBE_EVERY);
        } else if self.spinning.get() {
            score.set(s - s / 4);
            if self.probing.get() {
                let every = &self.probe_every[kind];
                every.set((every.get() * 2).min(PROBE_MAX_EVERY));
            }
        }
        // The upstream's answer is spun for only while the client's
        // requests come back to back (see the module's comment).
        let back_to_back = next == Next::Client || self.score[Next::Client as usize].get() >= ONE / 2;
        let mut probing = false;
        let spin = self.waiting.get() <= SPIN_UP_TO
            && back_to_back
            && (self.score[next as usize].get() >= ONE / 2 || {
                let n = &self.since_probe[next as usize];
                n.set(n.get() + 1);
                n.get() >= self.probe_every[next as usize].get() && {
                    n.set(0);
                    probing = true;
                    true
                }
            });
        self.probing.set(probing);
        self.spinning.set(spin);
        self.ticks.set(self.ticks.get().wrapping_add(1));
        if spin && self.parked.get() {
            self.parked.set(false);
            self.wake.notify_one();
        }
    }

    /// A request of this worker starts waiting for its upstream's answer,
    /// until the guard is dropped (its answer came, or it was cancelled).
    pub fn waiting(&self) -> Busy<'_> {
        self.waiting.set(self.waiting.get() + 1);
        Busy(self)
    }

    /// Is the wait that started with the last event to be spun through?
    pub fn worth_spinning(&self) -> bool {
        self.spinning.get()
    }

    /// Is the spinner asleep, waiting for events to come close together?
    pub fn is_parked(&self) -> bool {
        self.parked.get()
    }
}

/// A request waiting for its upstream's answer ([`Activity::waiting`]).
pub struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let w = &self.0.waiting;
        w.set(w.get().saturating_sub(1));
    }
}

/// Spin while there was activity within the window and spinning pays;
/// park otherwise.
pub async fn spin(activity: Rc<Activity>) {
    let window = activity.window;
    let mut seen = activity.ticks.get();
    let mut last = Instant::now();
    loop {
        let now = activity.ticks.get();
        if now != seen {
            seen = now;
            last = Instant::now();
            activity.idle_since.set(last);
        }
        if !activity.worth_spinning() || last.elapsed() > window {
            activity.parked.set(true);
            activity.wake.notified().await;
            seen = activity.ticks.get();
            last = Instant::now();
            activity.idle_since.set(last);
            continue;
        }
        // Let other threads that share this core (actors, timers) run now
        // rather than wait for the spinner's time slice to end: without this,
        // any wake-up of another thread on the core stalled a request for up
        // to a scheduler tick (p99 at c=1 rose from 0.4 ms to 0.7 ms).
        std::thread::yield_now();
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_micros(100);

    async fn settle() {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }

    async fn after(us: u64, a: &Activity, next: Next) {
        tokio::time::advance(Duration::from_micros(us)).await;
        a.touch(next);
        settle().await;
    }

    #[tokio::test(start_paused = true)]
    async fn spins_while_events_come_close_together_parks_when_they_spread() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let a = Rc::new(Activity::new(WINDOW));
                tokio::task::spawn_local(spin(a.clone()));
                settle().await;
                assert!(a.is_parked(), "no spinning before events show it pays");
                // Back-to-back requests (c=1): start and end 60 µs apart,
                // the next request 40 µs later. Spinning starts within a
                // few requests.
                for _ in 0..3 {
                    after(40, &a, Next::Upstream).await;
                    after(60, &a, Next::Client).await;
                }
                assert!(!a.is_parked(), "spinning once events come close together");
                after(40, &a, Next::Upstream).await;
                assert!(!a.is_parked());
                // A quiet window: it parks.
                tokio::time::advance(Duration::from_micros(150)).await;
                settle().await;
                assert!(a.is_parked());
                // That upstream took 200 µs, but the request's end wakes
                // it: lately, the next request has come quickly.
                after(50, &a, Next::Client).await;
                assert!(!a.is_parked());
            })
            .await;
    }

    /// c=1 back to back for `requests`: the upstream answers 60 µs after
    /// the request, the next request comes 60 µs after the answer, and a
    /// sleeping worker sees each gap 80 µs late (its own wake-up). By then
    /// it spins through both waits.
    async fn back_to_back_finds_spinning(a: &Activity, requests: u32) {
        let seen = |a: &Activity| if a.is_parked() { 140 } else { 60 };
        for _ in 0..requests {
            after(seen(a), a, Next::Upstream).await;
            after(seen(a), a, Next::Client).await;
        }
        for i in 0..10 {
            after(60, a, Next::Upstream).await;
            assert!(!a.is_parked(), "request {i}: spinning for the upstream");
            after(60, a, Next::Client).await;
            assert!(!a.is_parked(), "request {i}: spinning for the next request");
        }
    }

    /// The distances between the probes in `spun` (event indices): each
    /// probe that found a long gap doubles the next distance, from 16 up
    /// to 128 events.
    fn assert_backs_off(spun: &[usize]) {
        let mut expect = 16;
        for pair in spun.windows(2) {
            expect = (expect * 2).min(128);
            assert_eq!(pair[1] - pair[0], expect as usize, "probes at {spun:?}");
        }
        assert!(spun.len() >= 8, "probes at {spun:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_moderate_rate_spins_only_to_probe_and_probes_back_off() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let a = Rc::new(Activity::new(WINDOW));
                tokio::task::spawn_local(spin(a.clone()));
                // 200 req/s: a request every 5 ms, its upstream answering
                // within 80 µs (inside the window). The worker sleeps
                // through the wait for the next request anyway, so the
                // upstream's answer is not spun for either.
                let mut client_spins = Vec::new();
                for i in 0..1024 {
                    after(5000, &a, Next::Upstream).await;
                    assert!(a.is_parked(), "request {i}: no spin for the upstream at a moderate rate");
                    after(80, &a, Next::Client).await;
                    if !a.is_parked() {
                        client_spins.push(i);
                    }
                }
                // The wait for the next request is spun for only by probes,
                // farther apart as each finds a long gap.
                assert_backs_off(&client_spins);
                // Back-to-back requests (a sleeping worker sees each gap
                // 80 µs late) find spinning again within one probe's
                // distance and a few probes of each kind.
                back_to_back_finds_spinning(&a, PROBE_MAX_EVERY + 6 * PROBE_EVERY).await;
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleeping_worker_finds_back_to_back_requests_by_probing() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let a = Rc::new(Activity::new(WINDOW));
                tokio::task::spawn_local(spin(a.clone()));
                settle().await;
                // c=1 back to back: the upstream answers 60 µs after the
                // request, the next request comes 60 µs after the answer.
                // A sleeping worker sees each gap 80 µs later (its own
                // wake-up), outside the window: only spinning shows them
                // as they are. The client's kind is probed first; the
                // upstream's, once clients come back to back.
                back_to_back_finds_spinning(&a, 6 * PROBE_EVERY).await;
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_upstream_behind_back_to_back_requests_is_probed_ever_more_rarely() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let a = Rc::new(Activity::new(WINDOW));
                tokio::task::spawn_local(spin(a.clone()));
                // c=1, the next request 60 µs after each answer, the
                // upstream answering after 20 ms.
                let mut upstream_spins = Vec::new();
                let mut client_spins = 0;
                for i in 0..1024 {
                    after(60, &a, Next::Upstream).await;
                    if !a.is_parked() {
                        upstream_spins.push(i);
                    }
                    after(20_000, &a, Next::Client).await;
                    if !a.is_parked() {
                        client_spins += 1;
                    }
                }
                assert_backs_off(&upstream_spins);
                assert!(client_spins >= 1020, "the next request is spun for: {client_spins}");
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn spread_stream_events_of_one_client_do_not_spin() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let a = Rc::new(Activity::new(WINDOW));
                tokio::task::spawn_local(spin(a.clone()));
                for i in 0..64 {
                    // Stream events 20 ms apart.
                    after(20_000, &a, Next::Upstream).await;
                    assert!(a.is_parked(), "event {i}");
                }
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_holding_many_waiting_requests_does_not_spin() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let a = Rc::new(Activity::new(WINDOW));
                tokio::task::spawn_local(spin(a.clone()));
                // Back to back, one request at a time: spinning starts.
                for _ in 0..3 {
                    let busy = a.waiting();
                    after(40, &a, Next::Upstream).await;
                    drop(busy);
                    after(60, &a, Next::Client).await;
                }
                assert!(!a.is_parked(), "spinning for one request at a time");
                // As dense, but more requests waiting than SPIN_UP_TO: it parks
                // and stays parked, probes included.
                let held: Vec<_> = (0..SPIN_UP_TO).map(|_| a.waiting()).collect();
                for i in 0..2 * PROBE_EVERY {
                    let busy = a.waiting();
                    after(40, &a, Next::Upstream).await;
                    assert!(a.is_parked(), "event {i}: {} requests waiting", SPIN_UP_TO + 1);
                    drop(busy);
                    after(20, &a, Next::Client).await;
                }
                // Back down to one: the evidence kept, it spins again at once.
                drop(held);
                let busy = a.waiting();
                after(40, &a, Next::Upstream).await;
                assert!(!a.is_parked(), "one request waiting again");
                drop(busy);
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_window_turns_polling_off() {
        let a = Activity::new(Duration::ZERO);
        for _ in 0..10 {
            a.touch(Next::Upstream);
        }
        assert!(!a.worth_spinning());
    }
}
