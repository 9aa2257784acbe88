//! `ModelAvailability`: per-deployment latency and TTFT EWMAs, last error,
//! and each provider's health from an optional active probe; published as a
//! snapshot ([`AvailTable`]) the request path routes by.

mod handle;
mod state;
mod table;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use http::Method;
use tokio::time::Instant;

pub use handle::{AvailabilityHandle, AvailabilitySpec};
pub use state::{Availability, Ewma, Health};
pub use table::{AvailTable, InflightGuard};

use crate::outcome::RecordOutcomes;
use crate::status::GetStatus;
use crate::supervision::{ActorMeta, guarded};
use sluice_upstream::{Outgoing, WarmRequest, WorkerClients};

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
    labels: Arc<[String]>,
    provider_names: Arc<[String]>,
    probes: Vec<ProbeSpec>,
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

    fn probe(&mut self, i: usize, ctx: &mut Context<Self>) {
        let Some(spec) = self.probes.get(i).cloned() else { return };
        let Some(client) = self.clients.as_ref().and_then(|c| c.get(spec.provider)).cloned() else { return };
        let fut = async move {
            let req = Outgoing {
                method: Method::GET,
                uri: &spec.request.uri,
                headers: &spec.request.headers,
                body: Bytes::new(),
            };
            match tokio::time::timeout(spec.timeout, client.send(req)).await {
                Ok(Ok(mut resp)) => {
                    while let Some(Ok(_)) = resp.body.chunk().await {}
                    if (200..300).contains(&resp.status) {
                        Ok(())
                    } else {
                        Err(format!("probe answered HTTP {}", resp.status))
                    }
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("probe timed out after {:?}", spec.timeout)),
            }
        };
        let provider = spec.provider;
        ctx.spawn(actix::fut::wrap_future::<_, Self>(fut).map(move |result, act, ctx| {
            let meta = act.meta.clone();
            guarded(&meta, ctx, (), || {
                if let Err(e) = &result {
                    tracing::warn!(provider = %act.provider_names.get(provider).map(String::as_str).unwrap_or(""), error = %e, "health probe failed");
                }
                act.state.on_probe(provider, result, Instant::now());
                for d in 0..act.state.deployments.len() {
                    if act.state.provider_of.get(d) == Some(&provider) {
                        act.publish(d);
                    }
                }
            })
        }));
    }

    fn detail(&self) -> sonic_rs::Value {
        let now = Instant::now();
        let deployments: Vec<sonic_rs::Value> = self
            .state
            .deployments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let last_error = s.last_error.as_ref().map(|(m, at)| {
                    sonic_rs::json!({ "message": m.as_str(), "age_s": now.saturating_duration_since(*at).as_secs_f64() })
                });
                sonic_rs::json!({
                    "deployment": self.labels.get(i).map(String::as_str).unwrap_or(""),
                    "inflight": self.table.inflight(i),
                    "latency_ewma_ms": s.latency_ms.mean(),
                    "ttft_ewma_ms": s.ttft_ms.mean(),
                    "ttft_p95_ms": s.ttft_ms.p95(),
                    "successes": s.successes,
                    "failures": s.failures,
                    "rate_limited": s.rate_limited,
                    "healthy": !self.state.unhealthy(i),
                    "last_error": last_error,
                })
            })
            .collect();
        let providers: Vec<sonic_rs::Value> = self
            .state
            .providers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let name = self.provider_names.get(i).map(String::as_str).unwrap_or("");
                match h {
                    Health::Unknown => sonic_rs::json!({ "provider": name, "health": "unknown" }),
                    Health::Healthy { at } => sonic_rs::json!({
                        "provider": name, "health": "healthy",
                        "checked_s_ago": now.saturating_duration_since(*at).as_secs_f64(),
                    }),
                    Health::Unhealthy { since, error } => sonic_rs::json!({
                        "provider": name, "health": "unhealthy", "error": error.as_str(),
                        "unhealthy_for_s": now.saturating_duration_since(*since).as_secs_f64(),
                    }),
                }
            })
            .collect();
        sonic_rs::json!({ "deployments": deployments, "providers": providers })
    }
}

impl Actor for ModelAvailability {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::supervision::MAILBOX_CAPACITY);
        if !self.probes.is_empty() && self.clients.is_none() {
            self.clients = Some(self.sessions.worker_clients());
        }
        // Intervals are dropped on restart with the other spawned futures:
        // re-arm them here.
        for i in 0..self.probes.len() {
            let interval = self.probes[i].interval;
            self.probe(i, ctx);
            ctx.run_interval(interval, move |act, ctx| act.probe(i, ctx));
        }
        self.publish_all();
        self.meta.started();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.meta.stopped();
    }
}

impl Supervised for ModelAvailability {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.meta.restarting();
    }
}

impl Handler<RecordOutcomes> for ModelAvailability {
    type Result = ();

    fn handle(&mut self, msg: RecordOutcomes, ctx: &mut Self::Context) {
        self.meta.dequeued();
        let meta = self.meta.clone();
        guarded(&meta, ctx, (), || {
            let now = Instant::now();
            for o in msg.outcomes.iter() {
                self.state.on_outcome(o, now);
                self.publish(o.deployment);
            }
        })
    }
}

impl Handler<GetStatus> for ModelAvailability {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, ctx: &mut Self::Context) -> Self::Result {
        self.meta.dequeued();
        let meta = self.meta.clone();
        let fallback = sonic_rs::json!({ "error": "status handler failed; the actor is restarting" });
        MessageResult(guarded(&meta, ctx, fallback, || self.detail()))
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::circuit_breakers::messages::InjectPanic> for ModelAvailability {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _msg: crate::circuit_breakers::messages::InjectPanic, ctx: &mut Self::Context) {
        self.meta.dequeued();
        let meta = self.meta.clone();
        guarded(&meta, ctx, (), || panic!("injected fault: model_availability panics on purpose"))
    }
}
