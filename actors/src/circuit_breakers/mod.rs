//! `CircuitBreakers`: closed / open / half-open per deployment, learning from
//! batched attempt outcomes and publishing a gate per deployment that the
//! request path reads without a round trip.
//!
//! The logic is in `state.rs` (one [`Breaker`] per deployment, and which
//! cool-downs are news for the other replicas); this actor applies messages
//! to it and publishes the result — gates, gauges, transition logs, news.

mod detail;
mod gates;
mod handle;
pub mod messages;
mod state;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

pub use detail::BreakersDetail;
pub use gates::{Denial, GateView, Gates};
pub use handle::BreakersHandle;
pub(crate) use handle::TOPOLOGY_TIMEOUT;
pub use state::{Admission, Breaker, BreakerConfig, CircuitState, CoolingNews, Transition, Verdict};

use crate::replicas::{News, ReplicasHandle};
use crate::supervision::ActorMeta;
use crate::supervision::shell::{self, Shell, actor_shell};
use crate::topology::Topology;
use messages::{Admit, RecordOutcomes, RemoteHold};

pub const NAME: &str = "circuit_breakers";

/// How often time alone moves the breakers: a tenth of the window (or
/// probe timeout), within these bounds.
const TICK_MIN: Duration = Duration::from_millis(10);
const TICK_MAX: Duration = Duration::from_secs(1);

pub struct CircuitBreakers {
    cfg: BreakerConfig,
    breakers: Vec<Breaker>,
    /// By deployment id; `""` for ids no snapshot lists any more (hidden
    /// from `/status`, their breakers kept for requests still holding them).
    labels: Vec<String>,
    gates: Arc<Gates>,
    meta: Arc<ActorMeta>,
    state_gauges: Vec<metrics::Gauge>,
    /// Several replicas: where news of opened circuits and 429 cool-downs goes.
    replicas: Option<ReplicasHandle>,
    cooling_news: CoolingNews,
    /// Holds taken from other replicas' news.
    remote_holds_total: u64,
}

impl CircuitBreakers {
    pub fn new(
        cfg: BreakerConfig,
        labels: Arc<[String]>,
        gates: Arc<Gates>,
        meta: Arc<ActorMeta>,
        replicas: Option<ReplicasHandle>,
    ) -> Self {
        let now = Instant::now();
        let state_gauges =
            labels.iter().map(|l| metrics::gauge!("sluice_circuit_state", "deployment" => l.clone())).collect();
        CircuitBreakers {
            breakers: vec![Breaker::new(now); labels.len()],
            cooling_news: CoolingNews::new(labels.len()),
            cfg,
            labels: labels.to_vec(),
            gates,
            meta,
            state_gauges,
            replicas,
            remote_holds_total: 0,
        }
    }

    fn label(&self, deployment: usize) -> String {
        self.labels.get(deployment).cloned().unwrap_or_default()
    }

    /// Publish a breaker's gate, and its transition if it moved.
    fn after(&mut self, deployment: usize, t: Option<Transition>, now: Instant) {
        let Some(b) = self.breakers.get(deployment) else { return };
        self.gates.publish(deployment, b, now);
        let Some(t) = t else { return };
        let label = self.label(deployment);
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
            replicas.publish(News::CircuitOpen { from: replicas.replica().to_string(), deployment: label, for_ms });
        }
    }

    /// Several replicas: tell the others when a 429 set (or pushed back) a
    /// deployment's cool-down, once per change.
    fn announce_cooling(&mut self, deployment: usize, now: Instant) {
        let Some(replicas) = &self.replicas else { return };
        let Some(until) = self.breakers.get(deployment).and_then(|b| b.cooling_until(now)) else { return };
        if !self.cooling_news.due(deployment, until) {
            return;
        }
        replicas.publish(News::CoolDown {
            from: replicas.replica().to_string(),
            deployment: self.label(deployment),
            for_ms: until.saturating_duration_since(now).as_millis() as u64,
        });
    }

    fn record(&mut self, msg: RecordOutcomes) {
        let now = Instant::now();
        for o in msg.outcomes.iter() {
            let Some(b) = self.breakers.get_mut(o.deployment) else { continue };
            let t = b.on_outcome(&self.cfg, now, o.verdict);
            self.after(o.deployment, t, now);
            if matches!(o.verdict, Verdict::RateLimited { .. }) {
                self.announce_cooling(o.deployment, now);
            }
        }
    }

    fn remote_hold(&mut self, msg: RemoteHold) {
        let now = Instant::now();
        let ids: Vec<usize> =
            self.labels.iter().enumerate().filter(|(_, l)| **l == msg.label).map(|(i, _)| i).collect();
        for id in ids {
            let Some(b) = self.breakers.get_mut(id) else { continue };
            b.hold_off(now + msg.hold);
            self.remote_holds_total += 1;
            // Heard, not seen: not announced again.
            self.cooling_news.heard(id, b.cooling_until(now));
            self.gates.publish(id, b, now);
        }
    }

    /// A new snapshot's deployments: grow to cover every id (new ones start
    /// closed), take the labels; untouched breakers keep their state.
    fn topology(&mut self, msg: &Topology) {
        let now = Instant::now();
        self.labels = msg.labels(self.labels.len());
        let n = self.labels.len();
        self.gates.grow_to(n);
        while self.breakers.len() < n {
            self.breakers.push(Breaker::new(now));
        }
        self.cooling_news.grow_to(n);
        while self.state_gauges.len() < n {
            let label = self.labels.get(self.state_gauges.len()).cloned().unwrap_or_default();
            let g = metrics::gauge!("sluice_circuit_state", "deployment" => label);
            g.set(0.0);
            self.state_gauges.push(g);
        }
    }

    /// Let time alone move every breaker (cool-downs over, probes lost,
    /// half-open circuits idle), so the gates, gauges and `/status` follow
    /// without traffic.
    fn tick_all(&mut self) {
        let now = Instant::now();
        for d in 0..self.breakers.len() {
            let Some(b) = self.breakers.get_mut(d) else { continue };
            let t = b.tick(&self.cfg, now);
            if t.is_some() {
                self.after(d, t, now);
            }
        }
    }

    fn admit(&mut self, msg: Admit) -> Admission {
        let now = Instant::now();
        let Some(b) = self.breakers.get_mut(msg.deployment) else { return Admission::Allowed };
        let (a, t) = b.admit(&self.cfg, now);
        self.after(msg.deployment, t, now);
        a
    }
}

impl Shell for CircuitBreakers {
    type Detail = BreakersDetail;

    fn meta(&self) -> &Arc<ActorMeta> {
        &self.meta
    }

    fn detail(&self) -> BreakersDetail {
        BreakersDetail::read(&self.cfg, &self.breakers, &self.labels, self.remote_holds_total, Instant::now())
    }

    /// The breakers are kept across a restart (a restart must not forget
    /// which deployments are failing); the gates and gauges are re-synced
    /// from them.
    fn on_start(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for (i, b) in self.breakers.iter().enumerate() {
            self.gates.publish(i, b, now);
            if let Some(g) = self.state_gauges.get(i) {
                g.set(f64::from(b.state().as_u8()));
            }
        }
        let every = (self.cfg.window.min(self.cfg.probe_timeout) / 10).clamp(TICK_MIN, TICK_MAX);
        shell::run_interval(ctx, every, |act, _| act.tick_all());
    }
}

actor_shell!(CircuitBreakers);

impl Handler<RecordOutcomes> for CircuitBreakers {
    type Result = ();

    fn handle(&mut self, msg: RecordOutcomes, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, _| act.record(msg))
    }
}

impl Handler<RemoteHold> for CircuitBreakers {
    type Result = ();

    fn handle(&mut self, msg: RemoteHold, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, _| act.remote_hold(msg))
    }
}

impl Handler<Topology> for CircuitBreakers {
    type Result = ();

    fn handle(&mut self, msg: Topology, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, _| act.topology(&msg))
    }
}

impl Handler<Admit> for CircuitBreakers {
    type Result = MessageResult<Admit>;

    fn handle(&mut self, msg: Admit, ctx: &mut Self::Context) -> Self::Result {
        MessageResult(shell::handle(self, ctx, Admission::Denied, |act, _| act.admit(msg)))
    }
}
