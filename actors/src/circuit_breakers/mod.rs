//! `CircuitBreakers`: closed / open / half-open per deployment, learning from
//! batched attempt outcomes and publishing a gate per deployment that the
//! request path reads without a round trip.

mod gates;
mod handle;
pub mod messages;
mod state;

use std::sync::Arc;

use actix::prelude::*;
use tokio::time::Instant;

pub use gates::{GateView, Gates};
pub use handle::BreakersHandle;
pub use state::{Admission, Breaker, BreakerConfig, CircuitState, Transition, Verdict};

use crate::status::GetStatus;
use crate::supervision::{ActorMeta, guarded};
use messages::{Admit, RecordOutcomes};

pub const NAME: &str = "circuit_breakers";

pub struct CircuitBreakers {
    cfg: BreakerConfig,
    breakers: Vec<Breaker>,
    labels: Arc<[String]>,
    gates: Arc<Gates>,
    meta: Arc<ActorMeta>,
    state_gauges: Vec<metrics::Gauge>,
    /// Several replicas: where news of opened circuits and 429 cool-downs goes.
    pub(crate) replicas: Option<crate::replicas::ReplicasHandle>,
    /// The cool-down end last announced per deployment (news is sent once
    /// per change, not once per 429).
    announced: Vec<Option<Instant>>,
    /// Holds taken from other replicas' news.
    remote_holds_total: u64,
}

impl CircuitBreakers {
    pub fn new(cfg: BreakerConfig, labels: Arc<[String]>, gates: Arc<Gates>, meta: Arc<ActorMeta>) -> Self {
        let now = Instant::now();
        let state_gauges =
            labels.iter().map(|l| metrics::gauge!("sluice_circuit_state", "deployment" => l.clone())).collect();
        CircuitBreakers {
            breakers: vec![Breaker::new(now); labels.len()],
            announced: vec![None; labels.len()],
            cfg,
            labels,
            gates,
            meta,
            state_gauges,
            replicas: None,
            remote_holds_total: 0,
        }
    }

    fn after(&mut self, deployment: usize, t: Option<Transition>, now: Instant) {
        let Some(b) = self.breakers.get(deployment) else { return };
        self.gates.publish(deployment, b, now);
        if let Some(t) = t {
            let label = self.labels.get(deployment).cloned().unwrap_or_default();
            tracing::info!(deployment = %label, from = t.from.as_str(), to = t.to.as_str(), "circuit changed");
            metrics::counter!("sluice_circuit_transitions_total", "deployment" => label.clone(), "to" => t.to.as_str())
                .increment(1);
            if let Some(g) = self.state_gauges.get(deployment) {
                g.set(f64::from(t.to.as_u8()));
            }
            if t.to == CircuitState::Open
                && let Some(replicas) = &self.replicas
            {
                let for_ms = b.open_until().saturating_duration_since(now).as_millis() as u64;
                replicas.publish(crate::replicas::News::CircuitOpen {
                    from: replicas.replica().to_string(),
                    deployment: label,
                    for_ms,
                });
            }
        }
    }

    /// Shared mode: tell the other replicas when a 429 set (or pushed back)
    /// a deployment's cool-down.
    fn announce_cooling(&mut self, deployment: usize, now: Instant) {
        let Some(replicas) = &self.replicas else { return };
        let Some(until) = self.breakers.get(deployment).and_then(|b| b.cooling_until(now)) else { return };
        let Some(last) = self.announced.get_mut(deployment) else { return };
        // Once per change worth telling (a burst of 429s is one message).
        if last.is_some_and(|l| until <= l + std::time::Duration::from_millis(250)) {
            return;
        }
        *last = Some(until);
        replicas.publish(crate::replicas::News::CoolDown {
            from: replicas.replica().to_string(),
            deployment: self.labels.get(deployment).cloned().unwrap_or_default(),
            for_ms: until.saturating_duration_since(now).as_millis() as u64,
        });
    }

    fn publish_all(&self) {
        let now = Instant::now();
        for (i, b) in self.breakers.iter().enumerate() {
            self.gates.publish(i, b, now);
            if let Some(g) = self.state_gauges.get(i) {
                g.set(f64::from(b.state().as_u8()));
            }
        }
    }

    fn detail(&mut self) -> sonic_rs::Value {
        let now = Instant::now();
        let mut out = Vec::with_capacity(self.breakers.len());
        for (i, b) in self.breakers.iter_mut().enumerate() {
            let t = b.tick(&self.cfg, now);
            self.gates.publish(i, b, now);
            let (ok, failed) = b.window_counts(&self.cfg, now);
            let open_for = if b.state() == state::CircuitState::Open {
                b.open_until().saturating_duration_since(now).as_secs_f64()
            } else {
                0.0
            };
            let cooling = b.cooling_until(now).map_or(0.0, |u| u.saturating_duration_since(now).as_secs_f64());
            out.push(sonic_rs::json!({
                "deployment": self.labels.get(i).map(String::as_str).unwrap_or(""),
                "state": b.state().as_str(),
                "window": { "ok": ok, "failed": failed },
                "open_remaining_s": open_for,
                "cooling_remaining_s": cooling,
                "since_change_s": now.saturating_duration_since(b.last_change()).as_secs_f64(),
                "opens_total": b.opens_total,
                "failures_total": b.failures_total,
                "successes_total": b.successes_total,
                "rate_limited_total": b.rate_limited_total,
            }));
            let _ = t;
        }
        sonic_rs::json!({
            "config": {
                "window_s": self.cfg.window.as_secs_f64(),
                "min_requests": self.cfg.min_requests,
                "failure_count": self.cfg.failure_count,
                "failure_ratio": self.cfg.failure_ratio,
                "cooldown_s": self.cfg.cooldown.as_secs_f64(),
                "cooldown_max_s": self.cfg.cooldown_max.as_secs_f64(),
                "half_open_probes": self.cfg.half_open_probes,
            },
            "deployments": out,
            "remote_holds_total": self.remote_holds_total,
        })
    }
}

impl Actor for CircuitBreakers {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::supervision::MAILBOX_CAPACITY);
        // After a restart, the gates are re-synced from the kept state.
        self.publish_all();
        self.meta.started();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.meta.stopped();
    }
}

impl Supervised for CircuitBreakers {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The breakers themselves are kept: a restart must not forget which
        // deployments are failing.
        self.meta.restarting();
    }
}

impl Handler<RecordOutcomes> for CircuitBreakers {
    type Result = ();

    fn handle(&mut self, msg: RecordOutcomes, ctx: &mut Self::Context) {
        self.meta.dequeued();
        let meta = self.meta.clone();
        guarded(&meta, ctx, (), || {
            let now = Instant::now();
            for o in msg.outcomes.iter() {
                let Some(b) = self.breakers.get_mut(o.deployment) else { continue };
                let t = b.on_outcome(&self.cfg, now, o.verdict);
                self.after(o.deployment, t, now);
                if matches!(o.verdict, Verdict::RateLimited { .. }) {
                    self.announce_cooling(o.deployment, now);
                }
            }
        })
    }
}

impl Handler<messages::RemoteHold> for CircuitBreakers {
    type Result = ();

    fn handle(&mut self, msg: messages::RemoteHold, ctx: &mut Self::Context) {
        self.meta.dequeued();
        let meta = self.meta.clone();
        guarded(&meta, ctx, (), || {
            let now = Instant::now();
            let Some(b) = self.breakers.get_mut(msg.deployment) else { return };
            b.hold_off(now + msg.hold);
            self.remote_holds_total += 1;
            // Heard, not seen: not announced again.
            if let Some(a) = self.announced.get_mut(msg.deployment) {
                *a = b.cooling_until(now);
            }
            self.gates.publish(msg.deployment, b, now);
        })
    }
}

impl Handler<Admit> for CircuitBreakers {
    type Result = MessageResult<Admit>;

    fn handle(&mut self, msg: Admit, ctx: &mut Self::Context) -> Self::Result {
        self.meta.dequeued();
        let meta = self.meta.clone();
        MessageResult(guarded(&meta, ctx, Admission::Denied, || {
            let now = Instant::now();
            let Some(b) = self.breakers.get_mut(msg.deployment) else { return Admission::Allowed };
            let (a, t) = b.admit(&self.cfg, now);
            self.after(msg.deployment, t, now);
            a
        }))
    }
}

impl Handler<GetStatus> for CircuitBreakers {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, ctx: &mut Self::Context) -> Self::Result {
        self.meta.dequeued();
        let meta = self.meta.clone();
        let fallback = sonic_rs::json!({ "error": "status handler failed; the actor is restarting" });
        MessageResult(guarded(&meta, ctx, fallback, || self.detail()))
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<messages::InjectPanic> for CircuitBreakers {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _msg: messages::InjectPanic, ctx: &mut Self::Context) {
        self.meta.dequeued();
        let meta = self.meta.clone();
        guarded(&meta, ctx, (), || panic!("injected fault: circuit_breakers panics on purpose"))
    }
}
