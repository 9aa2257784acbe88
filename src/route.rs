//! Routing: the model a client names to the deployments that may serve it,
//! in the order they are tried: the model's own deployments ordered by its
//! strategy, then each fallback model's, depth-first, each model once —
//! skipping models whose context window the request does not fit.
//!
//! [`ModelTable`] is also the one place a deployment's id (its index in the
//! actors' tables) and label (`provider/model`) are derived from the config:
//! the actors' spec, the limiter's deployment scopes, the metrics and
//! `/status` all read them from [`ModelTable::deployments`].

use std::collections::HashMap;

use sluice_actors::availability::AvailTable;

use crate::auth::KeyPolicy;
use crate::config::{Config, HedgeConfig, Limits, ModelTimeouts, OnAllUnhealthy, Price, Strategy};
use crate::error::GatewayError;

#[derive(Debug)]
pub struct Deployment {
    /// Index in the flat list of every model's deployments (the actors' index).
    pub id: usize,
    pub provider: usize,
    /// The name the upstream knows.
    pub model: String,
    pub weight: u32,
    /// The deployment's price, else its model's.
    pub price: Option<Price>,
    /// `provider/model`, for `x-sluice-deployment` and metric labels.
    pub label: String,
    /// What the deployment's provider allows (its own rpm/tpm caps).
    pub limits: Limits,
    /// The model takes reasoning settings (`reasoning = true`).
    pub reasoning: bool,
}

#[derive(Debug)]
pub struct ModelEntry {
    pub name: String,
    pub deployments: Vec<Deployment>,
    /// Indices into [`ModelTable::models`].
    pub fallbacks: Vec<usize>,
    pub price: Option<Price>,
    pub strategy: Strategy,
    pub context_window: Option<u64>,
    pub timeouts: ModelTimeouts,
    pub hedge: Option<HedgeConfig>,
    pub max_attempts: Option<u32>,
    pub deadline_ms: Option<u64>,
    pub fallback_response: Option<String>,
    pub on_all_unhealthy: OnAllUnhealthy,
}

#[derive(Debug, Default)]
pub struct ModelTable {
    pub models: Vec<ModelEntry>,
    /// foldhash, not SipHash: looked up on every request (~170 instructions
    /// each with SipHash), never filled from what a client sends.
    by_name: HashMap<String, usize, foldhash::fast::RandomState>,
    /// `(model, deployment)` of each flat id.
    by_id: Vec<(usize, usize)>,
}

/// One place to try: a model and one of its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub model: usize,
    pub deployment: usize,
    /// The deployment's flat id.
    pub id: usize,
}

impl ModelTable {
    /// The table with ids in config order: provider ids are `[[providers]]`
    /// indices and deployment ids count up from 0 (a gateway that never
    /// reloads, and the tests).
    pub fn from_config(cfg: &Config) -> ModelTable {
        let providers: Vec<usize> = (0..cfg.providers.len()).collect();
        let mut next = 0;
        Self::with_ids(cfg, &providers, &mut |_, _, _| {
            next += 1;
            next - 1
        })
    }

    /// The table with the ids the gateway gave: `providers[i]` is the id of
    /// `[[providers]]` entry `i`, and `deployment(model, label, provider)`
    /// the id of a deployment (stable across reloads: see
    /// docs/decisions/runtime-keys.md).
    pub fn with_ids(
        cfg: &Config,
        providers: &[usize],
        deployment: &mut dyn FnMut(&str, &str, usize) -> usize,
    ) -> ModelTable {
        let by_name: HashMap<String, usize, _> =
            cfg.models.iter().enumerate().map(|(i, m)| (m.name.clone(), i)).collect();
        let mut by_id = Vec::new();
        let models = cfg
            .models
            .iter()
            .enumerate()
            .map(|(mi, m)| ModelEntry {
                name: m.name.clone(),
                deployments: m
                    .deployments
                    .iter()
                    .enumerate()
                    .map(|(di, d)| {
                        let label = format!(
                            "{}/{}",
                            cfg.providers.get(d.provider).map(|p| p.name.as_str()).unwrap_or("?"),
                            d.model
                        );
                        let provider = providers.get(d.provider).copied().unwrap_or(usize::MAX);
                        let id = deployment(&m.name, &label, provider);
                        by_id.push((mi, di));
                        Deployment {
                            id,
                            provider,
                            model: d.model.clone(),
                            weight: d.weight.max(1),
                            price: d.price.or(m.price).or_else(|| crate::pricing::builtin(&d.model)),
                            label,
                            limits: d.limits,
                            reasoning: d.reasoning,
                        }
                    })
                    .collect(),
                fallbacks: m.fallbacks.iter().filter_map(|f| by_name.get(f).copied()).collect(),
                price: m.price,
                strategy: m.strategy,
                context_window: m.context_window,
                timeouts: m.timeouts,
                hedge: m.hedge,
                max_attempts: m.max_attempts,
                deadline_ms: m.deadline_ms,
                fallback_response: m.fallback_response.clone(),
                on_all_unhealthy: m.on_all_unhealthy,
            })
            .collect();
        ModelTable { models, by_name, by_id }
    }

    pub fn get(&self, idx: usize) -> Option<&ModelEntry> {
        self.models.get(idx)
    }

    pub fn deployment(&self, c: Candidate) -> Option<&Deployment> {
        self.models.get(c.model)?.deployments.get(c.deployment)
    }

    /// The number of deployments across every model.
    pub fn deployment_count(&self) -> usize {
        self.by_id.len()
    }

    /// Every deployment of every model with its model, in config order
    /// (which is id order only for a table built by [`ModelTable::from_config`]).
    pub fn deployments(&self) -> impl Iterator<Item = (&ModelEntry, &Deployment)> {
        self.by_id.iter().filter_map(|&(m, d)| {
            let model = self.models.get(m)?;
            Some((model, model.deployments.get(d)?))
        })
    }

    /// The model a client asked for: 404 if unknown, 403 if its key may not use it.
    pub fn resolve(&self, name: &str, policy: &KeyPolicy) -> Result<usize, GatewayError> {
        let idx = *self.by_name.get(name).ok_or_else(|| GatewayError::ModelNotFound { model: name.to_string() })?;
        if !policy.allows(name) {
            return Err(GatewayError::ModelNotAllowed { model: name.to_string() });
        }
        Ok(idx)
    }

    /// Every deployment to try, in order, for a request needing about
    /// `tokens` tokens of context (prompt estimate plus requested output):
    /// the model's own (by its strategy), then each fallback model's,
    /// depth-first, each model once. Models too small for the request are
    /// passed over; if none fits, 400 `context_length_exceeded`.
    pub fn candidates(&self, model: usize, tokens: u64, live: &AvailTable) -> Result<Vec<Candidate>, GatewayError> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut too_small: Option<(&str, u64)> = None;
        self.push_candidates(model, tokens, live, &mut out, &mut seen, &mut too_small);
        if out.is_empty()
            && let Some((name, window)) = too_small
        {
            return Err(GatewayError::ContextLengthExceeded { model: name.to_string(), window, tokens });
        }
        Ok(out)
    }

    /// The price a request for `model` is most likely served at (its first
    /// deployment's, else the model's): what a call abandoned before any
    /// deployment answered is priced at.
    pub fn likely_price(&self, model: usize) -> Option<Price> {
        let m = self.models.get(model)?;
        m.deployments.first().and_then(|d| d.price).or(m.price)
    }

    fn push_candidates<'a>(
        &'a self,
        model: usize,
        tokens: u64,
        live: &AvailTable,
        out: &mut Vec<Candidate>,
        seen: &mut Vec<usize>,
        too_small: &mut Option<(&'a str, u64)>,
    ) {
        if seen.contains(&model) {
            return;
        }
        seen.push(model);
        let Some(entry) = self.models.get(model) else { return };
        match entry.context_window {
            Some(w) if tokens > w => {
                too_small.get_or_insert((entry.name.as_str(), w));
            }
            _ => {
                // Deployments whose provider fails its health probe go last:
                // tried only if the healthy ones fail.
                let mut ordered = order(entry, live);
                ordered.sort_by_key(|&d| live.unhealthy(entry.deployments[d].id));
                for d in ordered {
                    let id = entry.deployments[d].id;
                    out.push(Candidate { model, deployment: d, id });
                }
            }
        }
        for &f in &entry.fallbacks {
            self.push_candidates(f, tokens, live, out, seen, too_small);
        }
    }
}

/// Deployment indices of one model in the order its strategy gives.
fn order(m: &ModelEntry, live: &AvailTable) -> Vec<usize> {
    let deps = &m.deployments;
    match m.strategy {
        Strategy::Weighted => weighted_order(deps),
        Strategy::LeastInflight => {
            // Ties broken at random, so equal deployments share the load.
            let mut idx = shuffled(deps.len());
            idx.sort_by_key(|&i| live.inflight(deps[i].id));
            idx
        }
        Strategy::Latency => latency_order(deps, live),
        Strategy::Cost => {
            let cost = |d: &Deployment| d.price.map_or(f64::MAX, |p| p.input_per_mtok + p.output_per_mtok);
            let mut idx = shuffled(deps.len());
            idx.sort_by(|&a, &b| cost(&deps[a]).total_cmp(&cost(&deps[b])));
            idx
        }
    }
}

fn shuffled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    fastrand::shuffle(&mut v);
    v
}

/// Power of two choices over the latency EWMA for the first pick (cheap,
/// and it avoids herding every request onto the single fastest deployment
/// that a strict sort would), then the rest fastest first. Deployments with
/// no sample yet count as fastest, so each gets tried.
fn latency_order(deps: &[Deployment], live: &AvailTable) -> Vec<usize> {
    let lat = |i: usize| live.latency_us(deps[i].id).unwrap_or(0);
    let mut rest = shuffled(deps.len());
    if rest.len() >= 2 && lat(rest[1]) < lat(rest[0]) {
        rest.swap(0, 1);
    }
    let first = rest.first().copied();
    let mut tail: Vec<usize> = rest.into_iter().skip(1).collect();
    tail.sort_by_key(|&i| lat(i));
    first.into_iter().chain(tail).collect()
}

/// Deployment indices in a random order where each next pick is
/// proportional to weight among those left (sampling without replacement).
fn weighted_order(deps: &[Deployment]) -> Vec<usize> {
    let mut left: Vec<usize> = (0..deps.len()).collect();
    let mut out = Vec::with_capacity(deps.len());
    while !left.is_empty() {
        if left.len() == 1 {
            out.push(left[0]);
            break;
        }
        let total: u64 = left.iter().map(|&i| deps[i].weight as u64).sum();
        let mut r = fastrand::u64(0..total.max(1));
        let mut pick = 0;
        for (pos, &i) in left.iter().enumerate() {
            let w = deps[i].weight as u64;
            if r < w {
                pick = pos;
                break;
            }
            r -= w;
        }
        out.push(left.remove(pick));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(id: usize, w: u32, price: Option<f64>) -> Deployment {
        Deployment {
            id,
            provider: 0,
            model: "m".into(),
            weight: w,
            price: price.map(|p| Price { input_per_mtok: p, output_per_mtok: p, cached_input_per_mtok: None }),
            label: format!("p/{id}"),
            limits: Limits::default(),
            reasoning: false,
        }
    }

    fn model(name: &str, deployments: Vec<Deployment>, fallbacks: Vec<usize>) -> ModelEntry {
        ModelEntry {
            name: name.into(),
            deployments,
            fallbacks,
            price: None,
            strategy: Strategy::Weighted,
            context_window: None,
            timeouts: ModelTimeouts::default(),
            hedge: None,
            max_attempts: None,
            deadline_ms: None,
            fallback_response: None,
            on_all_unhealthy: OnAllUnhealthy::TryOne,
        }
    }

    fn table(models: Vec<ModelEntry>) -> ModelTable {
        ModelTable { models, by_name: HashMap::default(), by_id: Vec::new() }
    }

    #[test]
    fn weighted_order_follows_weights() {
        fastrand::seed(7);
        let deps = vec![dep(0, 1, None), dep(1, 3, None)];
        let mut first_is_heavy = 0;
        for _ in 0..4000 {
            let o = weighted_order(&deps);
            assert_eq!(o.len(), 2);
            if o[0] == 1 {
                first_is_heavy += 1;
            }
        }
        // Expect 3/4 of 4000 = 3000; allow generous noise.
        assert!((2800..3200).contains(&first_is_heavy), "{first_is_heavy}");
    }

    #[test]
    fn candidates_walk_fallbacks_once() {
        let t = table(vec![
            model("a", vec![dep(0, 1, None)], vec![1, 2]),
            model("b", vec![dep(1, 1, None), dep(2, 1, None)], vec![2]),
            model("c", vec![dep(3, 1, None)], vec![0]),
        ]);
        let live = AvailTable::new(4);
        let c = t.candidates(0, 0, &live).unwrap();
        let models: Vec<usize> = c.iter().map(|c| c.model).collect();
        assert_eq!(models, vec![0, 1, 1, 2]);
    }

    #[test]
    fn context_window_skips_small_models_or_refuses() {
        let mut small = model("small", vec![dep(0, 1, None)], vec![1, 2]);
        small.context_window = Some(1000);
        let mut medium = model("medium", vec![dep(1, 1, None)], vec![]);
        medium.context_window = Some(4000);
        let big = model("big", vec![dep(2, 1, None)], vec![]);
        let t = table(vec![small, medium, big]);
        let live = AvailTable::new(3);
        let ids = |tokens| t.candidates(0, tokens, &live).map(|c| c.iter().map(|c| c.id).collect::<Vec<_>>());
        assert_eq!(ids(500).unwrap(), vec![0, 1, 2]);
        assert_eq!(ids(2000).unwrap(), vec![1, 2], "too big for `small`: its fallbacks that fit");
        assert_eq!(ids(9000).unwrap(), vec![2]);
        let mut only_small = model("tiny", vec![dep(0, 1, None)], vec![]);
        only_small.context_window = Some(10);
        let t2 = table(vec![only_small]);
        let e = t2.candidates(0, 11, &live).unwrap_err();
        assert_eq!(e.code(), "context_length_exceeded");
    }

    #[test]
    fn strategies_order_by_live_data_and_price() {
        let live = std::sync::Arc::new(AvailTable::new(3));
        let _g1 = live.start(0);
        let _g2 = live.start(0);
        let _g3 = live.start(2);
        let mut m = model("m", vec![dep(0, 1, Some(3.0)), dep(1, 1, Some(1.0)), dep(2, 1, None)], vec![]);
        m.strategy = Strategy::LeastInflight;
        assert_eq!(order(&m, &live), vec![1, 2, 0]);
        m.strategy = Strategy::Cost;
        assert_eq!(order(&m, &live), vec![1, 0, 2], "unpriced last");
    }

    #[test]
    fn deployment_ids_are_dense_and_in_config_order() {
        let cfg = Config::from_str_with_env(
            r#"
            [server]
            allow_anonymous = true
            [[providers]]
            name = "p"
            kind = "mock"
            [[providers]]
            name = "q"
            kind = "mock"
            [[models]]
            name = "a"
            deployments = [{ provider = "p", model = "x" }, { provider = "q", model = "y" }]
            [[models]]
            name = "b"
            deployments = [{ provider = "p", model = "x" }]
            "#,
            "t.toml",
            &crate::config::ProcessEnv,
        )
        .unwrap();
        let t = ModelTable::from_config(&cfg);
        let seen: Vec<(usize, &str, &str)> =
            t.deployments().map(|(m, d)| (d.id, m.name.as_str(), d.label.as_str())).collect();
        assert_eq!(seen, vec![(0, "a", "p/x"), (1, "a", "q/y"), (2, "b", "p/x")]);
        assert_eq!(t.deployment_count(), 3);
    }
}
