//! `ModelAvailability`: per-deployment latency and TTFT EWMAs, last error,
//! and each provider's health from an optional active probe; published as a
//! snapshot ([`AvailTable`]) the request path routes by.
//!
//! The logic is in `state.rs`; this actor applies outcomes and probe results
//! to it, sends the probes, and publishes the snapshot.

mod detail;
mod handle;
mod state;
mod table;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use http::Method;
use sluice_upstream::{Outgoing, WarmRequest, WorkerClients};
use tokio::time::Instant;

pub use detail::AvailabilityDetail;
pub use handle::{AvailabilityHandle, AvailabilitySpec};
pub use state::{Availability, Ewma, Health};
pub use table::{AvailTable, InflightGuard};

use crate::outcome::RecordOutcomes;
use crate::supervision::ActorMeta;
use crate::supervision::shell::{self, Shell, actor_shell};
use crate::topology::Topology;
use crate::upstream_sessions::SessionsHandle;

pub const NAME: &str = "model_availability";

/// An active health probe of one provider.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub provider: usize,
    pub interval: Duration,
    pub timeout: Duration,
    pub request: WarmRequest,
}

pub struct ModelAvailability {
    state: Availability,
    table: Arc<AvailTable>,
    /// By deployment id; `""` for ids no snapshot lists any more.
    labels: Vec<String>,
    /// By provider id; `""` for providers no snapshot lists any more.
    provider_names: Vec<String>,
    /// Armed probes; `None` once its provider left the config (its timer
    /// is cancelled, and a restart does not re-arm it).
    probes: Vec<Option<ProbeSpec>>,
    /// Probe `i` is waiting for its upstream: the next tick sends none.
    probing: Vec<bool>,
    timers: Vec<Option<SpawnHandle>>,
    sessions: SessionsHandle,
    /// This actor thread's own pooled clients, for probes.
    clients: Option<WorkerClients>,
    meta: Arc<ActorMeta>,
}

impl ModelAvailability {
    fn publish(&self, d: usize) {
        let Some(s) = self.state.deployments.get(d) else { return };
        self.table.publish(d, s.latency_ms.mean(), s.ttft_ms.mean(), s.ttft_ms.p95(), self.state.unhealthy(d));
    }

    fn publish_all(&self) {
        for d in 0..self.state.deployments.len() {
            self.publish(d);
        }
    }

    fn record(&mut self, msg: RecordOutcomes) {
        let now = Instant::now();
        for o in msg.outcomes.iter() {
            self.state.on_outcome(o, now);
            self.publish(o.deployment);
        }
    }

    /// Send probe `i` (I/O, off the actor: its result comes back through
    /// [`ModelAvailability::probed`]). One probe per provider at a time:
    /// while one hangs, the ticks that come due send no other (each would
    /// hold a connection of the upstream that is already struggling). The
    /// whole probe — response head and body, read to its end and thrown
    /// away — runs under the probe's timeout, so an upstream that answers
    /// its head and then drips its body is unhealthy, not forever probed.
    fn probe(&mut self, i: usize, ctx: &mut Context<Self>) {
        if self.probing.get(i).copied().unwrap_or(true) {
            return;
        }
        let Some(Some(spec)) = self.probes.get(i).cloned() else { return };
        let Some(client) = self.clients.as_ref().and_then(|c| c.get(spec.provider)) else { return };
        self.probing[i] = true;
        let fut = async move {
            let req = Outgoing {
                method: Method::GET,
                uri: &spec.request.uri,
                headers: &spec.request.headers,
                body: Bytes::new(),
            };
            let whole = async {
                let mut resp = client.send(req).await.map_err(|e| e.to_string())?;
                while let Some(chunk) = resp.body.chunk().await {
                    chunk.map_err(|e| format!("probe answer cut off: {e}"))?;
                }
                if (200..300).contains(&resp.status) {
                    Ok(())
                } else {
                    Err(format!("probe answered HTTP {}", resp.status))
                }
            };
            match tokio::time::timeout(spec.timeout, whole).await {
                Ok(r) => r,
                Err(_) => Err(format!("probe timed out after {:?}", spec.timeout)),
            }
        };
        let provider = spec.provider;
        shell::spawn(ctx, fut, move |result, act: &mut Self, _| {
            if let Some(p) = act.probing.get_mut(i) {
                *p = false;
            }
            act.probed(provider, result);
        });
    }

    fn arm(&mut self, i: usize, ctx: &mut Context<Self>) {
        let Some(Some(interval)) = self.probes.get(i).map(|p| p.as_ref().map(|p| p.interval)) else { return };
        self.probe(i, ctx);
        let h = shell::run_interval(ctx, interval, move |act, ctx| act.probe(i, ctx));
        if let Some(t) = self.timers.get_mut(i) {
            *t = Some(h);
        }
    }

    /// A new snapshot's deployments and providers: grow every table to
    /// cover their ids, take the names, arm the probes of new providers and
    /// stop those of providers gone. Stats of unchanged ids carry over.
    fn topology(&mut self, msg: &Topology, ctx: &mut Context<Self>) {
        self.labels = msg.labels(self.labels.len());
        let n = self.labels.len();
        self.table.grow_to(n);
        let mut names = vec![String::new(); self.provider_names.len().max(msg.provider_span())];
        for p in msg.providers.iter() {
            if let Some(slot) = names.get_mut(p.id) {
                slot.clone_from(&p.name);
            }
        }
        self.provider_names = names;
        let mut provider_of = self.state.provider_of.clone();
        provider_of.resize(n, usize::MAX);
        for d in msg.deployments.iter() {
            if let Some(slot) = provider_of.get_mut(d.id) {
                *slot = d.provider;
            }
        }
        self.state.grow(provider_of, self.provider_names.len());
        let wanted: std::collections::HashMap<usize, &ProbeSpec> =
            msg.providers.iter().filter_map(|p| p.probe.as_ref().map(|s| (p.id, s))).collect();
        for i in 0..self.probes.len() {
            let keep = self.probes[i].as_ref().is_some_and(|p| wanted.contains_key(&p.provider));
            if !keep {
                self.probes[i] = None;
                if let Some(h) = self.timers.get_mut(i).and_then(Option::take) {
                    ctx.cancel_future(h);
                }
            }
        }
        let armed: std::collections::HashSet<usize> = self.probes.iter().flatten().map(|p| p.provider).collect();
        for (provider, spec) in wanted {
            if !armed.contains(&provider) {
                self.probes.push(Some(spec.clone()));
                self.probing.push(false);
                self.timers.push(None);
                self.arm(self.probes.len() - 1, ctx);
            }
        }
        self.publish_all();
    }

    fn probed(&mut self, provider: usize, result: Result<(), String>) {
        if let Err(e) = &result {
            let name = self.provider_names.get(provider).map(String::as_str).unwrap_or("");
            tracing::warn!(provider = %name, error = %e, "health probe failed");
        }
        self.state.on_probe(provider, result, Instant::now());
        for d in 0..self.state.deployments.len() {
            if self.state.provider_of.get(d) == Some(&provider) {
                self.publish(d);
            }
        }
    }
}

impl Shell for ModelAvailability {
    type Detail = AvailabilityDetail;

    fn meta(&self) -> &Arc<ActorMeta> {
        &self.meta
    }

    fn detail(&self) -> AvailabilityDetail {
        AvailabilityDetail::read(&self.state, &self.table, &self.labels, &self.provider_names, Instant::now())
    }

    /// The stats are kept across a restart; probes (dropped with the other
    /// spawned work) are re-armed and the snapshot re-published.
    fn on_start(&mut self, ctx: &mut Context<Self>) {
        if self.clients.is_none() {
            // Pools are built per provider on first use (providers may be
            // added by a reload).
            self.clients = Some(self.sessions.worker_clients());
        }
        self.timers = vec![None; self.probes.len()];
        for i in 0..self.probes.len() {
            self.arm(i, ctx);
        }
        self.publish_all();
    }

    /// The probes in flight were dropped with the other spawned work.
    fn on_restart(&mut self) {
        self.probing.iter_mut().for_each(|p| *p = false);
    }
}

actor_shell!(ModelAvailability);

impl Handler<Topology> for ModelAvailability {
    type Result = ();

    fn handle(&mut self, msg: Topology, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, ctx| act.topology(&msg, ctx))
    }
}

impl Handler<RecordOutcomes> for ModelAvailability {
    type Result = ();

    fn handle(&mut self, msg: RecordOutcomes, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, _| act.record(msg))
    }
}
