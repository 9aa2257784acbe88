//! Counters and the ring of recent requests, shared by every worker.
//!
//! Counters are relaxed atomics: they are statistics, read by tests after the
//! fact, and need no ordering with anything else. The `recent` ring keeps the
//! request's own `HeaderMap` (moved, not copied) and a `Bytes` clone of the
//! body (a reference count), so recording costs no allocation on the hot path;
//! the strings of [`RecordedRequest`] are built only when a snapshot is taken.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use serde::{Deserialize, Serialize};

use super::Fault;
use super::hostile::Hostile;

/// How many requests `recent` keeps.
pub const RECENT_LEN: usize = 32;
/// Longest body kept per recorded request.
pub const RECENT_BODY_MAX: usize = 64 * 1024;

/// One request as the mock received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// In arrival order, names lower-case; `authorization` included on purpose
    /// so tests can check which key a gateway sent.
    pub headers: Vec<(String, String)>,
    /// Lossy UTF-8, cut at 64 KiB.
    pub body: String,
}

/// What `GET /mock/stats` returns. Inspection routes (`/mock/...`) are not counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStatsSnapshot {
    /// Every request to an API route (`/v1/...` or unknown), faulted or not.
    pub requests_total: u64,
    pub chat_total: u64,
    pub completions_total: u64,
    pub embeddings_total: u64,
    pub models_total: u64,
    /// Anthropic `POST /v1/messages` requests.
    #[serde(default)]
    pub messages_total: u64,
    /// Gemini `generateContent` / `streamGenerateContent` requests.
    #[serde(default)]
    pub gemini_total: u64,
    /// OpenAI Responses API requests (`/v1/responses`, `/v1/responses/input_tokens`).
    #[serde(default)]
    pub responses_total: u64,
    /// Anthropic `POST /v1/messages/count_tokens` requests.
    #[serde(default)]
    pub count_tokens_total: u64,
    /// Calls to the Azure OpenAI routes (authenticated or not).
    #[serde(default)]
    pub azure_total: u64,
    /// Calls to the Bedrock runtime routes.
    #[serde(default)]
    pub bedrock_total: u64,
    /// Calls to the Vertex AI routes.
    #[serde(default)]
    pub vertex_total: u64,
    /// Cloud calls refused by the authentication check (bad key, signature, token).
    #[serde(default)]
    pub auth_refused_total: u64,
    pub streams_started: u64,
    /// Streams that sent `[DONE]`.
    pub streams_completed: u64,
    /// Streams whose body was dropped before it finished: the peer went away.
    pub streams_cancelled: u64,
    /// Requests whose client went away before the answer was done: while
    /// its body was read, while the answer was delayed or hung, or mid-stream.
    #[serde(default)]
    pub client_gone: u64,
    /// Completion tokens produced: a stream's as each token event is handed
    /// to the connection, a whole answer's when it is sent (a whole answer
    /// `cut` short or replaced by `garbage` delivers none).
    #[serde(default)]
    pub completion_tokens: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Open right now (not zeroed by `/mock/reset`).
    pub connections_active: u64,
    /// Fault name (`"429"`, `"500"`, `"hang"`, `"cut"`, `"garbage"`, `"reset"`) -> count.
    pub faults_injected: BTreeMap<String, u64>,
    /// Hostile answer (`"drip"`, `"endless-line"`, ...) -> count.
    #[serde(default)]
    pub hostile_injected: BTreeMap<String, u64>,
    /// The last 32 requests, oldest first.
    pub recent: Vec<RecordedRequest>,
}

struct RawRecord {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// Live statistics of one mock server.
#[derive(Default)]
pub(crate) struct Stats {
    pub requests_total: AtomicU64,
    pub chat_total: AtomicU64,
    pub completions_total: AtomicU64,
    pub embeddings_total: AtomicU64,
    pub models_total: AtomicU64,
    pub messages_total: AtomicU64,
    pub gemini_total: AtomicU64,
    pub responses_total: AtomicU64,
    pub count_tokens_total: AtomicU64,
    pub azure_total: AtomicU64,
    pub bedrock_total: AtomicU64,
    pub vertex_total: AtomicU64,
    pub auth_refused_total: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_cancelled: AtomicU64,
    pub client_gone: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    connections_active: AtomicU64,
    faults: [AtomicU64; Fault::ALL.len()],
    hostile: [AtomicU64; Hostile::ALL.len()],
    recent: Mutex<VecDeque<RawRecord>>,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Stats {
    pub fn fault(&self, f: Fault) {
        bump(&self.faults[f as usize]);
    }

    pub fn hostile(&self, h: Hostile) {
        bump(&self.hostile[h as usize]);
    }

    /// Keeps the request in the ring. The evicted record is dropped after the
    /// lock is released, so the critical section is two pointer moves.
    pub fn record(&self, method: Method, uri: Uri, headers: HeaderMap, body: &Bytes) {
        // A small body is kept as a reference; a big one is copied down to
        // the cap, so 32 records never pin 32 huge request buffers.
        let body =
            if body.len() > RECENT_BODY_MAX { Bytes::copy_from_slice(&body[..RECENT_BODY_MAX]) } else { body.clone() };
        let rec = RawRecord { method, uri, headers, body };
        let evicted = match self.recent.lock() {
            Ok(mut ring) => {
                let old = if ring.len() >= RECENT_LEN { ring.pop_front() } else { None };
                ring.push_back(rec);
                old
            }
            // A poisoned lock only means another thread panicked mid-push; the
            // ring is still a valid VecDeque, but skipping is simpler and harmless.
            Err(_) => None,
        };
        drop(evicted);
    }

    /// Returns a guard that counts a connection as open until dropped, so a
    /// connection task that is cancelled (e.g. at shutdown) is still counted closed.
    pub fn connection(&self) -> ConnGuard<'_> {
        bump(&self.connections_opened);
        bump(&self.connections_active);
        ConnGuard(self)
    }

    pub fn reset(&self) {
        for c in [
            &self.requests_total,
            &self.chat_total,
            &self.completions_total,
            &self.embeddings_total,
            &self.models_total,
            &self.messages_total,
            &self.gemini_total,
            &self.responses_total,
            &self.count_tokens_total,
            &self.azure_total,
            &self.bedrock_total,
            &self.vertex_total,
            &self.auth_refused_total,
            &self.streams_started,
            &self.streams_completed,
            &self.streams_cancelled,
            &self.client_gone,
            &self.completion_tokens,
            &self.connections_opened,
            &self.connections_closed,
        ] {
            c.store(0, Relaxed);
        }
        for c in self.faults.iter().chain(&self.hostile) {
            c.store(0, Relaxed);
        }
        let old = match self.recent.lock() {
            Ok(mut ring) => std::mem::take(&mut *ring),
            Err(_) => VecDeque::new(),
        };
        drop(old);
    }

    pub fn snapshot(&self) -> MockStatsSnapshot {
        // Clone the cheap raw records under the lock, format them after.
        let raw: Vec<(Method, Uri, HeaderMap, Bytes)> = match self.recent.lock() {
            Ok(ring) => {
                ring.iter().map(|r| (r.method.clone(), r.uri.clone(), r.headers.clone(), r.body.clone())).collect()
            }
            Err(_) => Vec::new(),
        };
        let recent = raw
            .into_iter()
            .map(|(method, uri, headers, body)| RecordedRequest {
                method: method.as_str().to_owned(),
                path: uri.path_and_query().map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect(),
                body: String::from_utf8_lossy(&body).into_owned(),
            })
            .collect();
        let get = |c: &AtomicU64| c.load(Relaxed);
        MockStatsSnapshot {
            requests_total: get(&self.requests_total),
            chat_total: get(&self.chat_total),
            completions_total: get(&self.completions_total),
            embeddings_total: get(&self.embeddings_total),
            models_total: get(&self.models_total),
            messages_total: get(&self.messages_total),
            gemini_total: get(&self.gemini_total),
            responses_total: get(&self.responses_total),
            count_tokens_total: get(&self.count_tokens_total),
            azure_total: get(&self.azure_total),
            bedrock_total: get(&self.bedrock_total),
            vertex_total: get(&self.vertex_total),
            auth_refused_total: get(&self.auth_refused_total),
            streams_started: get(&self.streams_started),
            streams_completed: get(&self.streams_completed),
            streams_cancelled: get(&self.streams_cancelled),
            client_gone: get(&self.client_gone),
            completion_tokens: get(&self.completion_tokens),
            connections_opened: get(&self.connections_opened),
            connections_closed: get(&self.connections_closed),
            connections_active: get(&self.connections_active),
            faults_injected: Fault::ALL
                .iter()
                .map(|f| (f.as_str().to_owned(), get(&self.faults[*f as usize])))
                .collect(),
            hostile_injected: Hostile::ALL
                .iter()
                .map(|h| (h.as_str().to_owned(), get(&self.hostile[*h as usize])))
                .collect(),
            recent,
        }
    }
}

/// Counts a request as [`MockStatsSnapshot::client_gone`] unless it is
/// [`Answering::done`] first: hyper drops the request's future when the
/// peer closes the connection while the answer is still being made.
pub(crate) struct Answering<'a> {
    stats: &'a Stats,
    done: bool,
}

impl<'a> Answering<'a> {
    pub fn new(stats: &'a Stats) -> Self {
        Answering { stats, done: false }
    }

    pub fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        if !self.done {
            bump(&self.stats.client_gone);
        }
    }
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

pub(crate) struct ConnGuard<'a>(&'a Stats);

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        bump(&self.0.connections_closed);
        self.0.connections_active.fetch_sub(1, Relaxed);
    }
}
