//! `[[models]]` (deployments, fallbacks, prices) and `[[keys]]` (key
//! material and model patterns): the checks that cross-reference names.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use super::super::locate::{join_index, join_key};
use super::super::raw::{RawKey, RawModel, Text, defaults};
use super::super::{DeploymentConfig, KeyConfig, ModelConfig, ProviderConfig};
use super::{Checker, Names};

pub(super) fn check_models(
    c: &mut Checker,
    raw: Vec<RawModel>,
    providers: &Names,
    configs: &[ProviderConfig],
    models: &Names,
) -> Vec<ModelConfig> {
    // Fallback edges: model -> (fallback model, index in its `fallbacks`).
    let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); raw.len()];
    let mut out = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let at = join_index("models", i);
        if m.name.value.contains('*') {
            c.err(join_key(&at, "name"), "a model name cannot contain `*`: it is the wildcard of [[keys]] `models`");
        }

        let deps_at = join_key(&at, "deployments");
        if m.deployments.is_empty() {
            c.err(
                &deps_at,
                "a model needs at least one deployment, e.g. \
                 deployments = [{ provider = \"...\", model = \"...\" }]",
            );
        }
        let mut deployments = Vec::with_capacity(m.deployments.len());
        for (j, d) in m.deployments.into_iter().enumerate() {
            let dat = join_index(&deps_at, j);
            let found = providers.find(&d.provider.value);
            if found.is_none() {
                c.err(join_key(&dat, "provider"), providers.unknown(&d.provider));
            }
            if let Some(cfg) = found.and_then(|i| configs.get(i)) {
                super::clouds::deployment_model(c, &join_key(&dat, "model"), cfg, &d.model);
            }
            let provider = found.unwrap_or(0);
            if d.model.value.is_empty() {
                c.err(
                    join_key(&dat, "model"),
                    "the upstream model name is empty; write the name the provider knows, \
                     e.g. model = \"gpt-4o-mini\"",
                );
            }
            let weight = c.u32(
                &join_key(&dat, "weight"),
                d.weight,
                defaults::WEIGHT,
                1,
                "(a deployment's share of traffic; remove the deployment to stop using it)",
            );
            let price = super::routing::price(c, &dat, d.price);
            let limits = super::routing::limits(c, &dat, d.rpm, d.tpm, None);
            let reasoning = d.reasoning.unwrap_or(false);
            deployments.push(DeploymentConfig { provider, model: d.model.value, weight, price, limits, reasoning });
        }

        let fb_at = join_key(&at, "fallbacks");
        let mut seen = HashSet::new();
        let mut fallbacks = Vec::new();
        for (k, f) in m.fallbacks.into_iter().flatten().enumerate() {
            let path = join_index(&fb_at, k);
            match models.find(&f.value) {
                None => c.err(path, models.unknown(&f)),
                Some(x) if x == i => c.err(
                    path,
                    "a model cannot fall back to itself; remove this entry (its deployments \
                     are already all tried before any fallback)",
                ),
                Some(x) if !seen.insert(x) => {
                    c.err(path, format!("{} is listed twice; remove one", f.shown()));
                }
                Some(x) => {
                    if let Some(e) = edges.get_mut(i) {
                        e.push((x, k));
                    }
                }
            }
            fallbacks.push(f.value);
        }

        let price = super::routing::price(c, &at, m.price);
        let strategy = super::routing::strategy(c, &join_key(&at, "strategy"), m.strategy.as_ref());
        let context_window = m.context_window.map(|v| {
            u64::try_from(c.int(&join_key(&at, "context_window"), Some(v), 1, 1, i64::MAX, "(tokens)")).unwrap_or(1)
        });
        let timeouts = super::routing::timeouts(c, &at, m.timeouts);
        let hedge = super::routing::hedge(c, &at, m.hedge);
        let max_attempts = super::routing::max_attempts(c, &join_key(&at, "max_attempts"), m.max_attempts);
        let deadline_ms = m
            .deadline_ms
            .map(|v| u64::try_from(c.int(&join_key(&at, "deadline_ms"), Some(v), 0, 0, 86_400_000, "")).unwrap_or(0));
        if hedge.is_some() && deployments.len() + fallbacks.len() < 2 {
            c.err(join_key(&at, "hedge"), "hedging needs a second deployment or a fallback to send the hedge to");
        }
        let fallback_response = m.fallback_response.map(|t| t.value);
        let limits = super::routing::limits(c, &at, m.rpm, m.tpm, m.max_concurrent);
        let cache = super::cache::model_cache(c, &at, m.cache);
        let embeddings_batch = super::cache::embeddings_batch(c, &at, m.embeddings_batch);
        let on_all_unhealthy =
            super::routing::on_all_unhealthy(c, &join_key(&at, "on_all_unhealthy"), m.on_all_unhealthy.as_ref());
        out.push(ModelConfig {
            name: m.name.value,
            deployments,
            fallbacks,
            price,
            strategy,
            context_window,
            timeouts,
            hedge,
            max_attempts,
            deadline_ms,
            fallback_response,
            limits,
            cache,
            embeddings_batch,
            on_all_unhealthy,
        });
    }

    for cycle in cycles(&edges) {
        report_cycle(c, &cycle, models);
    }
    out
}

/// One cycle per back edge of a depth-first search (deduplicated), each as
/// `(model, index in its fallbacks)` steps starting at its lowest model.
/// Iterative, so that a long fallback chain cannot overflow the stack.
fn cycles(edges: &[Vec<(usize, usize)>]) -> Vec<Vec<(usize, usize)>> {
    const NEW: u8 = 0;
    const ON_STACK: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; edges.len()];
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for start in 0..edges.len() {
        if state[start] != NEW {
            continue;
        }
        state[start] = ON_STACK;
        // (model, next edge to follow, index in fallbacks of the edge taken)
        let mut stack: Vec<(usize, usize, usize)> = vec![(start, 0, 0)];
        while let Some(top) = stack.last_mut() {
            let (node, next) = (top.0, top.1);
            let Some(&(to, k)) = edges[node].get(next) else {
                state[node] = DONE;
                stack.pop();
                continue;
            };
            top.1 += 1;
            top.2 = k;
            match state[to] {
                NEW => {
                    state[to] = ON_STACK;
                    stack.push((to, 0, 0));
                }
                ON_STACK => {
                    let from = stack.iter().position(|s| s.0 == to).unwrap_or(0);
                    let mut cycle: Vec<(usize, usize)> = stack[from..].iter().map(|s| (s.0, s.2)).collect();
                    let lowest = (0..cycle.len()).min_by_key(|&p| cycle[p].0).unwrap_or(0);
                    cycle.rotate_left(lowest);
                    if seen.insert(cycle.iter().map(|s| s.0).collect::<Vec<_>>()) {
                        found.push(cycle);
                    }
                }
                _ => {}
            }
        }
    }
    found
}

fn report_cycle(c: &mut Checker, cycle: &[(usize, usize)], models: &Names) {
    let Some(&(first, k)) = cycle.first() else {
        return;
    };
    let name = |i: usize| models.get(i).map_or_else(|| "?".to_owned(), Text::shown);
    let mut chain: Vec<String> = cycle.iter().map(|&(m, _)| name(m)).collect();
    chain.push(name(first));
    c.err(
        join_index(&join_key(&join_index("models", first), "fallbacks"), k),
        format!(
            "fallback cycle: {}; fallbacks are tried when a model fails, so this would \
             go round in circles; remove one of these fallbacks",
            chain.join(" -> ")
        ),
    );
}

pub(super) fn check_keys(c: &mut Checker, raw: Vec<RawKey>, models: &Names) -> Vec<KeyConfig> {
    let mut by_hash: HashMap<[u8; 32], usize> = HashMap::new();
    let mut names: Vec<Text> = Vec::with_capacity(raw.len());
    let mut out = Vec::with_capacity(raw.len());
    for (i, k) in raw.into_iter().enumerate() {
        let at = join_index("keys", i);
        let hashed = match (&k.key, &k.key_sha256) {
            (None, None) => {
                c.err(
                    &at,
                    "a key needs `key` (the secret itself, usually \"${SOME_ENV_VAR}\") or \
                     `key_sha256` (its SHA-256 digest in hex)",
                );
                None
            }
            (Some(_), Some(_)) => {
                c.err(join_key(&at, "key_sha256"), "set either `key` or `key_sha256`, not both");
                None
            }
            (Some(t), None) => plaintext(c, &join_key(&at, "key"), t).map(|h| (h, "key")),
            (None, Some(t)) => digest(c, &join_key(&at, "key_sha256"), t).map(|h| (h, "key_sha256")),
        };
        if let Some((h, field)) = hashed {
            if let Some(&first) = by_hash.get(&h) {
                let first_name = names.get(first).map_or_else(|| "?".to_owned(), Text::shown);
                c.err(
                    join_key(&at, field),
                    format!(
                        "keys {} and {first_name} (keys[{first}]) have the same key, so a \
                         request could not tell them apart; give each its own key",
                        k.name.shown()
                    ),
                );
            } else {
                by_hash.insert(h, i);
            }
        }

        let patterns = patterns(c, &join_key(&at, "models"), k.models, models);
        let limits = super::routing::limits(c, &at, k.rpm, k.tpm, k.max_concurrent);
        let mut model_limits = Vec::new();
        let lat = join_key(&at, "limits");
        for (j, l) in k.limits.into_iter().flatten().enumerate() {
            let la = join_index(&lat, j);
            match models.find(&l.model.value) {
                None => c.err(join_key(&la, "model"), models.unknown(&l.model)),
                Some(mi) if model_limits.iter().any(|(m, _)| *m == mi) => {
                    c.err(
                        join_key(&la, "model"),
                        format!("{} has limits twice for this key; merge them", l.model.shown()),
                    );
                }
                Some(mi) => {
                    let lim = super::routing::limits(c, &la, l.rpm, l.tpm, l.max_concurrent);
                    if lim.is_none() {
                        c.err(&la, "an entry of `limits` needs at least one of rpm, tpm, max_concurrent");
                    }
                    model_limits.push((mi, lim));
                }
            }
        }
        let priority = i32::try_from(c.int(
            &join_key(&at, "priority"),
            k.priority,
            defaults::PRIORITY,
            -1000,
            1000,
            "(higher waits less in the queue)",
        ))
        .unwrap_or(0);
        let daily_budget_usd = super::routing::budget(c, &join_key(&at, "daily_budget_usd"), k.daily_budget_usd);
        let monthly_budget_usd = super::routing::budget(c, &join_key(&at, "monthly_budget_usd"), k.monthly_budget_usd);
        names.push(k.name.clone());
        out.push(KeyConfig {
            name: k.name.value,
            key_sha256: hashed.map_or([0; 32], |(h, _)| h),
            models: patterns,
            limits,
            model_limits,
            priority,
            daily_budget_usd,
            monthly_budget_usd,
        });
    }
    out
}

/// Hash a plaintext key; the plaintext goes no further than this.
fn plaintext(c: &mut Checker, path: &str, t: &Text) -> Option<[u8; 32]> {
    // Still `${...}` text: hashing it could only produce a false duplicate.
    if t.unresolved {
        return None;
    }
    if t.value.is_empty() {
        let why = if t.template.is_some() { " (the environment variable is set but empty)" } else { "" };
        c.err(path, format!("the key is empty{why}; set a long random value"));
        return None;
    }
    c.secret_chars(path, t);
    Some(Sha256::digest(t.value.as_bytes()).into())
}

fn digest(c: &mut Checker, path: &str, t: &Text) -> Option<[u8; 32]> {
    if t.unresolved {
        return None;
    }
    let mut out = [0u8; 32];
    let n = t.value.chars().count();
    if n != 64 {
        c.err(
            path,
            format!(
                "key_sha256 must be 64 hex characters (a SHA-256 digest), found {n}; \
                 compute it with: printf %s \"$KEY\" | sha256sum"
            ),
        );
        return None;
    }
    if hex::decode_to_slice(&t.value, &mut out).is_err() {
        c.err(path, "key_sha256 must contain only hex characters (0-9, a-f)");
        return None;
    }
    Some(out)
}

fn patterns(c: &mut Checker, at: &str, raw: Option<Vec<Text>>, models: &Names) -> Vec<String> {
    let Some(list) = raw else {
        return vec![defaults::KEY_MODELS.to_owned()];
    };
    if list.is_empty() {
        c.err(
            at,
            "the list is empty, so this key could use no model; list model names, \
             \"prefix*\" patterns, or \"*\" for all (the default)",
        );
    }
    let mut out = Vec::with_capacity(list.len());
    for (j, p) in list.into_iter().enumerate() {
        let path = join_index(at, j);
        let v = p.value.as_str();
        let stem = v.strip_suffix('*').unwrap_or(v);
        if v.is_empty() {
            c.err(path, "empty model pattern; write a model name, \"prefix*\" or \"*\"");
        } else if stem.contains('*') {
            c.err(path, format!("{}: `*` is only allowed at the end (\"prefix*\") or alone (\"*\")", p.shown()));
        } else if stem.len() == v.len() && models.find(v).is_none() {
            c.err(path, models.unknown(&p));
        }
        out.push(p.value);
    }
    out
}
