//! Routing: the model a client names to the deployments that may serve it,
//! in the order they are tried (weighted random among the model's own
//! deployments, then each fallback model's, in the configured order).

use std::collections::HashMap;

use crate::config::{Config, Price};
use crate::error::GatewayError;
use crate::request::auth::KeyPolicy;

#[derive(Debug)]
pub struct Deployment {
    pub provider: usize,
    /// The name the upstream knows.
    pub model: String,
    pub weight: u32,
    /// `provider/model`, for `x-sluice-deployment` and metric labels.
    pub label: String,
}

#[derive(Debug)]
pub struct ModelEntry {
    pub name: String,
    pub deployments: Vec<Deployment>,
    /// Indices into [`ModelTable::models`].
    pub fallbacks: Vec<usize>,
    pub price: Option<Price>,
}

#[derive(Debug, Default)]
pub struct ModelTable {
    pub models: Vec<ModelEntry>,
    by_name: HashMap<String, usize>,
}

/// One place to try: a model and one of its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub model: usize,
    pub deployment: usize,
}

impl ModelTable {
    pub fn from_config(cfg: &Config) -> ModelTable {
        let by_name: HashMap<String, usize> = cfg.models.iter().enumerate().map(|(i, m)| (m.name.clone(), i)).collect();
        let models = cfg
            .models
            .iter()
            .map(|m| ModelEntry {
                name: m.name.clone(),
                deployments: m
                    .deployments
                    .iter()
                    .map(|d| Deployment {
                        provider: d.provider,
                        model: d.model.clone(),
                        weight: d.weight.max(1),
                        label: format!(
                            "{}/{}",
                            cfg.providers.get(d.provider).map(|p| p.name.as_str()).unwrap_or("?"),
                            d.model
                        ),
                    })
                    .collect(),
                fallbacks: m.fallbacks.iter().filter_map(|f| by_name.get(f).copied()).collect(),
                price: m.price,
            })
            .collect();
        ModelTable { models, by_name }
    }

    pub fn get(&self, idx: usize) -> Option<&ModelEntry> {
        self.models.get(idx)
    }

    /// The model a client asked for: 404 if unknown, 403 if its key may not use it.
    pub fn resolve(&self, name: &str, policy: &KeyPolicy) -> Result<usize, GatewayError> {
        let idx = *self.by_name.get(name).ok_or_else(|| GatewayError::ModelNotFound { model: name.to_string() })?;
        if !policy.allows(name) {
            return Err(GatewayError::ModelNotAllowed { model: name.to_string() });
        }
        Ok(idx)
    }

    /// Every deployment to try, in order: the model's own (weighted random
    /// order), then each fallback model's, depth-first, each model once.
    pub fn candidates(&self, model: usize) -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        self.push_candidates(model, &mut out, &mut seen);
        out
    }

    fn push_candidates(&self, model: usize, out: &mut Vec<Candidate>, seen: &mut Vec<usize>) {
        if seen.contains(&model) {
            return;
        }
        seen.push(model);
        let Some(entry) = self.models.get(model) else { return };
        for d in weighted_order(&entry.deployments) {
            out.push(Candidate { model, deployment: d });
        }
        for &f in &entry.fallbacks {
            self.push_candidates(f, out, seen);
        }
    }
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

    fn dep(w: u32) -> Deployment {
        Deployment { provider: 0, model: "m".into(), weight: w, label: "p/m".into() }
    }

    #[test]
    fn weighted_order_follows_weights() {
        fastrand::seed(7);
        let deps = vec![dep(1), dep(3)];
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
        let t = ModelTable {
            models: vec![
                ModelEntry { name: "a".into(), deployments: vec![dep(1)], fallbacks: vec![1, 2], price: None },
                ModelEntry { name: "b".into(), deployments: vec![dep(1), dep(1)], fallbacks: vec![2], price: None },
                ModelEntry { name: "c".into(), deployments: vec![dep(1)], fallbacks: vec![0], price: None },
            ],
            by_name: HashMap::new(),
        };
        let c = t.candidates(0);
        let models: Vec<usize> = c.iter().map(|c| c.model).collect();
        assert_eq!(models, vec![0, 1, 1, 2]);
    }
}
