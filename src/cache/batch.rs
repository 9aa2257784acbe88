//! Embeddings micro-batching (opt-in per model, `embeddings_batch`):
//! embedding requests for one model that arrive within `window_ms` of each
//! other are merged into one upstream `/embeddings` call of up to
//! `max_inputs` inputs, and the answer is split back, in order, per caller.
//!
//! Requests merge only when they agree on everything but `input` and `user`
//! (`encoding_format`, `dimensions`, and the headers the model's providers
//! forward); a request with any other member, or more inputs than
//! `max_inputs`, goes alone. Each caller gets its own `data` (indexed from 0)
//! and a share of the upstream's `prompt_tokens` proportional to the bytes of
//! its inputs (largest remainder, so the shares add up to the upstream's
//! count). An upstream error goes to every caller.
//!
//! The first request of a window spawns the task that waits the window (or
//! until the batch is full) and makes the call (`upstream::fetch`), on its
//! own worker; the others wait on a oneshot, so a caller that goes away
//! leaves the rest be.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use metrics::{Counter, counter};
use sluice_actors::response_cache::{CacheCounters, CacheHandle};
use sonic_rs::JsonValueTrait;
use tokio::sync::{Notify, oneshot};

use crate::config::{EmbeddingsBatch, Price};
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::peek::Peek;
use crate::providers::{Call, HeaderForward, Timeouts};
use crate::route::Candidate;
use crate::upstream::{self, Fetched, FetchedBody, WorkerUpstreams};
use crate::usage::Usage;

/// The upstream call of one request: merged into its model's embeddings
/// batch when `batcher` can take it, else alone (`upstream::fetch`).
#[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
pub fn fetch(
    batcher: Option<&Arc<Batcher>>,
    w: &WorkerUpstreams,
    call: &Call<'_>,
    model: usize,
) -> impl Future<Output = Result<Fetched, GatewayError>> {
    async move {
        if call.endpoint == Endpoint::Embeddings
            && let Some(b) = batcher
            && let Some(got) = b.submit(w, call, model).await
        {
            return got.map(Fetched::from);
        }
        upstream::fetch(w, call, model).await
    }
}

/// One caller's part of a batched answer. (Sent across workers, so it holds
/// only what is `Send`; it becomes a [`Fetched`] at the caller.)
#[derive(Debug, Clone)]
pub struct Batched {
    pub body: Bytes,
    /// The caller's share of the usage the upstream reported.
    pub usage: Option<Usage>,
    pub served: Candidate,
    pub price: Option<Price>,
}

impl From<Batched> for Fetched {
    fn from(b: Batched) -> Fetched {
        // The batch's deployment caps were charged by its own call.
        Fetched {
            served: b.served,
            price: b.price,
            deployment_grant: None,
            body: FetchedBody::Complete { body: b.body, usage: b.usage },
        }
    }
}

/// The embeddings batching of one model.
pub struct Batcher {
    /// The response cache's handle, for its batching counters (`/status`).
    cache: CacheHandle,
    cfg: EmbeddingsBatch,
    forward: Vec<HeaderForward>,
    open: Mutex<HashMap<String, Arc<Pending>>>,
    batched: Counter,
    batches: Counter,
}

struct Member {
    /// Raw JSON of each input.
    inputs: Vec<String>,
    weight: usize,
    tx: oneshot::Sender<Result<Batched, GatewayError>>,
}

#[derive(Default)]
struct Pending {
    members: Mutex<Vec<Member>>,
    full: Notify,
}

/// A request's body, read for merging.
struct Parsed {
    inputs: Vec<String>,
    /// `encoding_format` and `dimensions` as written: every member of a
    /// batch has the same, so they are part of the group.
    params: Vec<(String, String)>,
}

impl Batcher {
    pub fn new(model: &str, cfg: EmbeddingsBatch, forward: Vec<HeaderForward>, cache: CacheHandle) -> Arc<Batcher> {
        Arc::new(Batcher {
            cache,
            cfg,
            forward,
            open: Mutex::default(),
            batched: counter!("sluice_embeddings_batched_total", "model" => model.to_string()),
            batches: counter!("sluice_embeddings_batches_total", "model" => model.to_string()),
        })
    }

    /// Merge this request with others for `model`. `None` when it cannot be
    /// merged (the caller sends it alone).
    pub async fn submit(
        self: &Arc<Self>,
        w: &WorkerUpstreams,
        call: &Call<'_>,
        model: usize,
    ) -> Option<Result<Batched, GatewayError>> {
        let parsed = parse(call.body)?;
        if parsed.inputs.len() > self.cfg.max_inputs {
            return None;
        }
        let mut group = String::new();
        for (k, v) in &parsed.params {
            group.push_str(k);
            group.push('=');
            group.push_str(v);
            group.push('\n');
        }
        for (n, v) in call.client_headers.iter().filter(|(n, _)| self.forward.iter().any(|f| f.allows(n.as_str()))) {
            group.push_str(n.as_str());
            group.push(':');
            group.push_str(&String::from_utf8_lossy(v.as_bytes()));
            group.push('\n');
        }
        let (tx, rx) = oneshot::channel();
        let weight = parsed.inputs.iter().map(String::len).sum::<usize>().max(1);
        let member = Member { inputs: parsed.inputs, weight, tx };
        let start = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            match open.get(&group).cloned() {
                Some(p) => {
                    let mut ms = p.members.lock().unwrap_or_else(|p| p.into_inner());
                    let have: usize = ms.iter().map(|m| m.inputs.len()).sum();
                    if have + member.inputs.len() <= self.cfg.max_inputs {
                        ms.push(member);
                        if have + ms.last().map_or(0, |m| m.inputs.len()) >= self.cfg.max_inputs {
                            open.remove(&group);
                            p.full.notify_one();
                        }
                        None
                    } else {
                        // Full for this one: send that batch now, start another.
                        drop(ms);
                        p.full.notify_one();
                        let fresh = Arc::new(Pending { members: Mutex::new(vec![member]), full: Notify::new() });
                        open.insert(group.clone(), fresh.clone());
                        Some(fresh)
                    }
                }
                None => {
                    let fresh = Arc::new(Pending { members: Mutex::new(vec![member]), full: Notify::new() });
                    open.insert(group.clone(), fresh.clone());
                    Some(fresh)
                }
            }
        };
        if let Some(pending) = start {
            let job = Job {
                batcher: self.clone(),
                upstream: w.clone(),
                pending,
                group,
                model,
                headers: call.client_headers.clone(),
                request_id: call.request_id.clone(),
                params: parsed.params,
                model_name: call.peek.model.clone(),
            };
            actix_web::rt::spawn(job.run());
        }
        Some(rx.await.unwrap_or_else(|_| Err(GatewayError::ShuttingDown)))
    }
}

/// The task that sends one batch.
struct Job {
    batcher: Arc<Batcher>,
    upstream: WorkerUpstreams,
    pending: Arc<Pending>,
    group: String,
    model: usize,
    headers: HeaderMap,
    request_id: crate::endpoint::RequestId,
    /// `encoding_format` and `dimensions`, as every member wrote them.
    params: Vec<(String, String)>,
    model_name: String,
}

impl Job {
    async fn run(self) {
        let window = Duration::from_millis(self.batcher.cfg.window_ms);
        let _ = tokio::time::timeout(window, self.pending.full.notified()).await;
        {
            let mut open = self.batcher.open.lock().unwrap_or_else(|p| p.into_inner());
            if open.get(&self.group).is_some_and(|p| Arc::ptr_eq(p, &self.pending)) {
                open.remove(&self.group);
            }
        }
        let members = std::mem::take(&mut *self.pending.members.lock().unwrap_or_else(|p| p.into_inner()));
        if members.is_empty() {
            return;
        }
        let n = members.len() as u64;
        if n > 1 {
            let c = self.batcher.cache.counters();
            self.batcher.batches.increment(1);
            self.batcher.batched.increment(n);
            CacheCounters::bump(&c.batches);
            c.batched.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        match self.call(&members).await {
            Ok((body, served, price)) => {
                // The members' usage is their share of what the upstream
                // reported (in the merged body), none if it reported none.
                let usage = crate::usage::from_body(&body).ok().flatten();
                let parts = split(&body, &members, usage);
                for (m, part) in members.into_iter().zip(parts) {
                    let r = part.map(|(body, usage)| Batched { body, usage, served, price });
                    let _ = m.tx.send(r);
                }
            }
            Err(e) => {
                for m in members {
                    let _ = m.tx.send(Err(e.clone()));
                }
            }
        }
    }

    /// The merged request, sent: the merged answer, who served it, its price.
    async fn call(&self, members: &[Member]) -> Result<(Bytes, Candidate, Option<Price>), GatewayError> {
        let mut body = String::from("{\"model\":");
        body.push_str(&sonic_rs::to_string(&self.model_name).unwrap_or_else(|_| "\"\"".into()));
        body.push_str(",\"input\":[");
        for (i, input) in members.iter().flat_map(|m| m.inputs.iter()).enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(input);
        }
        body.push(']');
        for (k, v) in &self.params {
            body.push_str(&format!(",\"{k}\":{v}"));
        }
        body.push('}');
        let body = Bytes::from(body);
        let peek = Peek::read(&body, Endpoint::Embeddings)?;
        let call = Call {
            endpoint: Endpoint::Embeddings,
            body: &body,
            peek: &peek,
            upstream_model: "",
            client_headers: &self.headers,
            client_query: "",
            request_id: &self.request_id,
            timeouts: Timeouts::default(),
            reasoning: false,
            turn: None,
            upload: None,
            // Several requests share this call: it belongs to no one trace.
            obs: None,
            trace_headers: None,
        };
        let fetched = upstream::fetch(&self.upstream, &call, self.model).await?;
        match fetched.body {
            FetchedBody::Complete { body, .. } => Ok((body, fetched.served, fetched.price)),
            FetchedBody::Stream(_) => {
                Err(GatewayError::Internal { detail: "an embeddings call answered a stream".into() })
            }
        }
    }
}

/// Read an embeddings body for merging; `None` if it has anything a merged
/// request could not carry for it.
fn parse(body: &[u8]) -> Option<Parsed> {
    if crate::json::nesting_exceeds(body, crate::json::MAX_DEPTH) {
        return None;
    }
    let mut inputs = None;
    let mut params = Vec::new();
    for item in sonic_rs::to_object_iter(body) {
        let (k, v) = item.ok()?;
        match &*k {
            "model" | "user" => {}
            "encoding_format" | "dimensions" => params.push((k.to_string(), v.as_raw_str().to_string())),
            "input" => {
                let raw = v.as_raw_str();
                inputs = Some(match v.get_type() {
                    sonic_rs::JsonType::String => vec![raw.to_string()],
                    sonic_rs::JsonType::Array => {
                        let items: Vec<sonic_rs::LazyValue<'_>> =
                            sonic_rs::to_array_iter(raw).collect::<Result<_, _>>().ok()?;
                        match items.first().map(|i| i.get_type()) {
                            None => return None,
                            // One input written as token ids.
                            Some(sonic_rs::JsonType::Number) => vec![raw.to_string()],
                            Some(_) => items.iter().map(|i| i.as_raw_str().to_string()).collect(),
                        }
                    }
                    _ => return None,
                });
            }
            _ => return None,
        }
    }
    params.sort();
    Some(Parsed { inputs: inputs?, params })
}

/// Split a merged answer per member: its `data` items in order, reindexed
/// from 0, and its share of the usage.
#[allow(clippy::type_complexity)]
fn split(body: &[u8], members: &[Member], usage: Option<Usage>) -> Vec<Result<(Bytes, Option<Usage>), GatewayError>> {
    let bad = |why: &str| GatewayError::UpstreamProtocol {
        provider: "embeddings batch".into(),
        detail: format!("the merged embeddings answer could not be split: {why}"),
    };
    let fail = |why: &str| members.iter().map(|_| Err(bad(why))).collect();
    if crate::json::nesting_exceeds(body, crate::json::MAX_DEPTH) {
        return fail("it nests too deeply");
    }
    let Ok(data) = sonic_rs::get(body, ["data"]) else { return fail("no `data`") };
    let model = sonic_rs::get(body, ["model"]).map(|m| m.as_raw_str().to_string()).unwrap_or_else(|_| "\"\"".into());
    let Ok(items) = sonic_rs::to_array_iter(data.as_raw_str()).collect::<Result<Vec<_>, _>>() else {
        return fail("`data` is not an array");
    };
    let mut items: Vec<(u64, &str)> = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let idx = sonic_rs::get(it.as_raw_str(), ["index"]).ok().and_then(|v| v.as_u64()).unwrap_or(i as u64);
            (idx, it.as_raw_str())
        })
        .collect();
    items.sort_by_key(|(i, _)| *i);
    let total: usize = members.iter().map(|m| m.inputs.len()).sum();
    if items.len() != total {
        return fail(&format!("{} embeddings for {total} inputs", items.len()));
    }
    let shares = usage.map(|u| apportion(u.prompt_tokens, &members.iter().map(|m| m.weight).collect::<Vec<_>>()));
    let mut at = 0;
    members
        .iter()
        .enumerate()
        .map(|(mi, m)| {
            let mut out = String::from("{\"object\":\"list\",\"data\":[");
            for (j, (_, raw)) in items[at..at + m.inputs.len()].iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                reindex(&mut out, raw, j).ok_or_else(|| bad("an item is not an object"))?;
            }
            at += m.inputs.len();
            out.push_str("],\"model\":");
            out.push_str(&model);
            let usage = shares.as_ref().map(|s| Usage { prompt_tokens: s[mi], completion_tokens: 0, cached_tokens: 0 });
            if let Some(u) = usage {
                out.push_str(&format!(
                    ",\"usage\":{{\"prompt_tokens\":{},\"total_tokens\":{}}}",
                    u.prompt_tokens, u.prompt_tokens
                ));
            }
            out.push('}');
            Ok((Bytes::from(out), usage))
        })
        .collect()
}

/// One `data` item with its `index` replaced, every other member kept as written.
fn reindex(out: &mut String, raw: &str, index: usize) -> Option<()> {
    out.push('{');
    let mut first = true;
    for item in sonic_rs::to_object_iter(raw) {
        let (k, v) = item.ok()?;
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&sonic_rs::to_string(&*k).ok()?);
        out.push(':');
        if &*k == "index" {
            out.push_str(&index.to_string());
        } else {
            out.push_str(v.as_raw_str());
        }
    }
    out.push('}');
    Some(())
}

/// Split `total` in proportion to `weights`, the largest remainders
/// rounding up, so the parts add up to `total`.
pub fn apportion(total: u64, weights: &[usize]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|w| *w as u128).sum::<u128>().max(1);
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|w| {
            let x = total as u128 * *w as u128;
            ((x / sum) as u64, x % sum)
        })
        .collect();
    let mut parts: Vec<u64> = exact.iter().map(|(q, _)| *q).collect();
    let mut left = total - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| exact[*b].1.cmp(&exact[*a].1).then(a.cmp(b)));
    for i in order {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        assert_eq!(apportion(10, &[1, 1]), vec![5, 5]);
        assert_eq!(apportion(10, &[1, 2]), vec![3, 7]);
        assert_eq!(apportion(7, &[1, 1, 1]), vec![3, 2, 2]);
        assert_eq!(apportion(0, &[3, 4]), vec![0, 0]);
        let p = apportion(1001, &[13, 7, 900, 1]);
        assert_eq!(p.iter().sum::<u64>(), 1001);
    }

    #[test]
    fn parse_reads_inputs_and_refuses_what_cannot_merge() {
        let p = parse(br#"{"model":"e","input":["a","b"],"dimensions":8,"user":"u"}"#).unwrap();
        assert_eq!(p.inputs, vec!["\"a\"", "\"b\""]);
        assert_eq!(p.params, vec![("dimensions".to_string(), "8".to_string())]);
        assert_eq!(parse(br#"{"input":"x"}"#).unwrap().inputs.len(), 1);
        assert_eq!(parse(br#"{"input":[1,2,3]}"#).unwrap().inputs, vec!["[1,2,3]"]);
        assert_eq!(parse(br#"{"input":[[1],[2]]}"#).unwrap().inputs.len(), 2);
        assert!(parse(br#"{"input":[]}"#).is_none());
        assert!(parse(br#"{"input":"x","extra":1}"#).is_none());
        assert!(parse(br#"{"model":"e"}"#).is_none());
    }

    #[test]
    fn split_reorders_reindexes_and_shares_usage() {
        let (tx1, _r1) = oneshot::channel();
        let (tx2, _r2) = oneshot::channel();
        let members = vec![
            Member { inputs: vec!["\"a\"".into()], weight: 1, tx: tx1 },
            Member { inputs: vec!["\"b\"".into(), "\"c\"".into()], weight: 3, tx: tx2 },
        ];
        let body = br#"{"object":"list","data":[{"object":"embedding","index":2,"embedding":[0.3]},{"object":"embedding","index":0,"embedding":[0.1]},{"object":"embedding","index":1,"embedding":[0.2]}],"model":"e","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let usage = Some(Usage { prompt_tokens: 8, completion_tokens: 0, cached_tokens: 0 });
        let parts: Vec<_> = split(body, &members, usage).into_iter().map(Result::unwrap).collect();
        let v0: serde_json::Value = serde_json::from_slice(&parts[0].0).unwrap();
        let v1: serde_json::Value = serde_json::from_slice(&parts[1].0).unwrap();
        assert_eq!(v0["data"][0]["embedding"][0], 0.1);
        assert_eq!(v0["data"][0]["index"], 0);
        assert_eq!(v1["data"][0]["embedding"][0], 0.2);
        assert_eq!(v1["data"][1]["embedding"][0], 0.3);
        assert_eq!(v1["data"][1]["index"], 1);
        assert_eq!((v0["usage"]["prompt_tokens"].as_u64(), v1["usage"]["prompt_tokens"].as_u64()), (Some(2), Some(6)));
        assert_eq!(v1["model"], "e");
        assert!(split(br#"{"data":[]}"#, &members, None).iter().all(Result::is_err));
    }
}
