//! Micro-benchmarks of the request hot path, each against the baseline it
//! should beat (docs/benchmarks/micro.md has the results and their reading):
//!
//! - `peek`:    lazy read of `model` / `stream` vs a full parse (sonic-rs and
//!   serde_json), and the nesting check that runs before either
//! - `rewrite`: the upstream body, unchanged (zero-copy), renamed, renamed +
//!   `stream_options.include_usage` injected
//! - `sse`:     event splitting + usage capture per upstream chunk
//! - `auth`:    client key → policy for tables of 1 to 10,000 keys
//! - `metrics`: the `sluice::metrics` recording functions vs pre-registered handles
//! - `arena`:   request-scoped temporaries on the heap vs in a bumpalo arena
//! - `telemetry`: a request's telemetry hooks (`[telemetry]` off: one
//!   branch each) vs the same request record without them, and on
//!
//! Run: `cargo bench --bench hot_path` (a filter narrows it: `-- sse`).

// Benchmark set-up fails loudly on a broken fixture: unwrap/expect/panic are
// the point here, and nothing in this file runs inside the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The gateway binary's allocator (src/main.rs), so heap-versus-arena and
/// every other allocation-heavy number here is the one the gateway sees.
#[global_allocator]
static ALLOC: sluice::alloc::Mimalloc = sluice::alloc::Mimalloc;

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::auth::KeyTable;
use sluice::config::{Config, Env, Price};
use sluice::endpoint::Endpoint;
use sluice::json;
use sluice::metrics::RequestOutcome;
use sluice::peek::Peek;
use sluice::providers::rewrite::rewrite;
use sluice::request::record::Record;
use sluice::sse;
use sluice::sse::SseSplitter;
use sluice::usage::{Usage, scan_events};

// ---------------------------------------------------------------------------
// Fixtures: realistic chat bodies and an OpenAI chat stream, from a fixed seed.
// ---------------------------------------------------------------------------

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "you",
    "that",
    "it",
    "for",
    "on",
    "with",
    "as",
    "this",
    "be",
    "at",
    "have",
    "from",
    "or",
    "by",
    "not",
    "but",
    "what",
    "all",
    "were",
    "when",
    "we",
    "there",
    "can",
    "an",
    "your",
    "which",
    "their",
    "if",
    "do",
    "will",
    "each",
    "about",
    "how",
    "up",
    "out",
    "them",
    "then",
    "she",
    "many",
    "some",
    "so",
    "these",
    "would",
    "other",
    "into",
    "has",
    "more",
    "her",
    "two",
    "like",
    "him",
    "see",
    "time",
    "could",
    "no",
    "make",
    "than",
    "first",
    "been",
    "its",
    "who",
    "now",
    "people",
    "my",
    "made",
    "over",
    "did",
    "down",
    "only",
    "way",
    "find",
    "use",
    "may",
    "water",
    "long",
    "little",
    "very",
    "after",
    "words",
    "called",
    "just",
    "where",
    "most",
    "know",
    "request",
    "gateway",
    "latency",
    "function",
    "returns",
    "config",
    "error",
    "deployment",
    "token",
    "stream",
    "summarise",
    "document",
    "customer",
    "invoice",
    "schedule",
    "meeting",
    "Paris",
    "quarterly",
    "revenue",
    "café",
    "naïve",
    "résumé",
    "—",
    "“quoted”",
    "\"quoted\"",
    "path\\to\\file",
    "line\nbreak",
    "tab\there",
    "fn main() {}",
    "x = [1, 2, 3];",
    "{\"json\": true}",
    "🙂",
    "東京",
    "Straße",
];

fn sentence(rng: &mut fastrand::Rng, words: usize) -> String {
    let mut s = String::with_capacity(words * 7);
    for i in 0..words {
        if i > 0 {
            s.push(if rng.u8(..) < 12 { '\n' } else { ' ' });
        }
        s.push_str(WORDS[rng.usize(..WORDS.len())]);
        if rng.u8(..) < 20 {
            s.push(if rng.bool() { '.' } else { ',' });
        }
    }
    s
}

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Tool definitions as an agent framework sends them: JSON Schema parameters.
fn tools_json(rng: &mut fastrand::Rng) -> String {
    let names = [
        "get_weather",
        "search_documents",
        "create_calendar_event",
        "send_email",
        "run_sql_query",
        "fetch_url",
        "read_file",
        "write_file",
    ];
    let tools: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            serde_json::json!({
                "type": "function",
                "function": {
                    "name": name,
                    "description": sentence(rng, 25),
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "query": {"type": "string", "description": sentence(rng, 12)},
                            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": sentence(rng, 6)},
                            "filters": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "field": {"type": "string", "enum": ["date", "author", "tag", "status"]},
                                        "op": {"type": "string", "enum": ["eq", "ne", "lt", "gt", "contains"]},
                                        "value": {"type": "string"}
                                    },
                                    "required": ["field", "op", "value"],
                                    "additionalProperties": false
                                }
                            },
                            "format": {"type": "string", "enum": ["json", "markdown", "text"]}
                        },
                        "required": ["query"],
                        "additionalProperties": false
                    },
                    "strict": true
                }
            })
        })
        .collect();
    serde_json::to_string(&tools).unwrap()
}

/// A chat completions body of about `target` bytes: a system prompt, then
/// user/assistant turns (with tool calls and tool results when `tools`),
/// `messages` first as the OpenAI SDKs send it, then the scalar fields.
fn chat_body(target: usize, tools: bool, seed: u64) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    let tools_part =
        if tools { format!(",\"tools\":{},\"tool_choice\":\"auto\"", tools_json(&mut rng)) } else { String::new() };
    let tail = format!(
        "],\"model\":\"gpt-4o-mini\",\"stream\":true,\"temperature\":0.7,\"max_tokens\":1024,\"user\":\"user-4711\"{tools_part}}}"
    );
    let mut out = String::with_capacity(target + 4096);
    out.push_str("{\"messages\":[");
    out.push_str(&format!("{{\"role\":\"system\",\"content\":{}}}", js(&sentence(&mut rng, 30))));
    let mut turn = 0usize;
    while out.len() + tail.len() < target {
        // Keep each message within what is left, so small bodies stay small.
        let room = (target.saturating_sub(out.len() + tail.len()) / 7).max(4);
        let words = rng.usize(8..120).min(room);
        out.push(',');
        if tools && turn % 3 == 2 {
            let id = format!("call_{:024x}", rng.u128(..));
            let args = js(&format!("{{\"query\":{},\"limit\":10}}", js(&sentence(&mut rng, 6))));
            out.push_str(&format!(
                "{{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{{\"id\":\"{id}\",\"type\":\"function\",\
                 \"function\":{{\"name\":\"search_documents\",\"arguments\":{args}}}}}]}},\
                 {{\"role\":\"tool\",\"tool_call_id\":\"{id}\",\"content\":{}}}",
                js(&sentence(&mut rng, words))
            ));
        } else {
            let role = if turn.is_multiple_of(2) { "user" } else { "assistant" };
            out.push_str(&format!("{{\"role\":\"{role}\",\"content\":{}}}", js(&sentence(&mut rng, words))));
        }
        turn += 1;
    }
    out.push_str(&tail);
    // The fixture must be what it claims: valid JSON that the gateway accepts.
    let _: serde_json::Value = serde_json::from_str(&out).expect("fixture is valid JSON");
    let p = Peek::read(out.as_bytes(), Endpoint::Chat).expect("fixture passes peek");
    assert_eq!(p.model, "gpt-4o-mini");
    Bytes::from(out)
}

/// The bodies every `peek`/`rewrite` bench uses: (label, body).
fn bodies() -> Vec<(String, Bytes)> {
    let mut v = Vec::new();
    for (label, target, tools) in
        [("1KB", 1_000, false), ("100KB", 100_000, false), ("100KB+tools", 100_000, true), ("1MB", 1_000_000, false)]
    {
        v.push((label.to_string(), chat_body(target, tools, 42)));
    }
    v
}

const STREAM_MODEL: &str = "gpt-4o-mini-2024-07-18";

/// An OpenAI chat stream asked with `include_usage`: a role chunk, 62 content
/// chunks, a finish chunk (each with `"usage":null`), the usage-only chunk and
/// `[DONE]`. Returns the events, one `Bytes` each.
fn openai_stream() -> Vec<Bytes> {
    let mut rng = fastrand::Rng::with_seed(7);
    let head = format!(
        "data: {{\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\
         \"created\":1741569952,\"model\":\"{STREAM_MODEL}\",\"service_tier\":\"default\",\
         \"system_fingerprint\":\"fp_06737a9306\",\"choices\":"
    );
    let mut ev = Vec::new();
    ev.push(format!(
        "{head}[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\
         \"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
    ));
    for _ in 0..62 {
        let word = format!(" {}", WORDS[rng.usize(..WORDS.len())]);
        ev.push(format!(
            "{head}[{{\"index\":0,\"delta\":{{\"content\":{}}},\"logprobs\":null,\"finish_reason\":null}}],\
             \"usage\":null}}\n\n",
            js(&word)
        ));
    }
    ev.push(format!(
        "{head}[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n"
    ));
    ev.push(format!(
        "{head}[],\"usage\":{{\"prompt_tokens\":1117,\"completion_tokens\":63,\"total_tokens\":1180,\
         \"prompt_tokens_details\":{{\"cached_tokens\":1024,\"audio_tokens\":0}},\
         \"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\
         \"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}\n\n"
    ));
    ev.push("data: [DONE]\n\n".to_string());
    ev.into_iter().map(Bytes::from).collect()
}

const STREAM_USAGE: Usage = Usage { prompt_tokens: 1117, completion_tokens: 63, cached_tokens: 1024 };

/// What the relay does with each upstream chunk: cut whole events, read usage,
/// maybe hide the usage chunk. Returns the usage and the bytes forwarded.
fn relay(chunks: &[Bytes], strip: bool) -> (Option<Usage>, usize) {
    let mut split = SseSplitter::new();
    let mut usage = None;
    let mut sent = 0;
    for c in chunks {
        if let Ok(Some(events)) = split.push(c.clone()) {
            let (u, out) = scan_events(events, strip);
            if u.is_some() {
                usage = u;
            }
            sent += out.len();
            black_box(out);
        }
    }
    (usage, sent)
}

// ---------------------------------------------------------------------------
// peek
// ---------------------------------------------------------------------------

/// Diagnostic only, never the gateway's way: the top-level pass with
/// sonic-rs's unvalidated skip, to show what validation costs.
#[allow(unsafe_code)]
fn object_iter_unchecked(body: &[u8]) -> usize {
    // SAFETY: `to_object_iter_unchecked` requires valid JSON; every fixture
    // is checked with serde_json when it is built (`chat_body`).
    let iter = unsafe { sonic_rs::to_object_iter_unchecked(body) };
    iter.map(|kv| kv.unwrap().1.as_raw_str().len()).sum()
}

fn bench_peek(c: &mut Criterion) {
    let bodies = bodies();
    let mut g = c.benchmark_group("peek");
    for (label, body) in &bodies {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.sample_size(if body.len() > 500_000 { 20 } else { 30 });
        g.bench_with_input(BenchmarkId::new("lazy_peek", label), body, |b, body| {
            b.iter(|| Peek::read(black_box(body), Endpoint::Chat).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("sonic_full_parse", label), body, |b, body| {
            b.iter(|| sonic_rs::from_slice::<sonic_rs::Value>(black_box(body)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("serde_json_full_parse", label), body, |b, body| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("nesting_exceeds", label), body, |b, body| {
            b.iter(|| assert!(!sluice::json::nesting_exceeds(black_box(body), sluice::json::MAX_DEPTH)))
        });
        // Where peek's time goes: its sonic-rs pass alone (validating skip of
        // every top-level value), and the same pass without validation.
        g.bench_with_input(BenchmarkId::new("object_iter_checked", label), body, |b, body| {
            b.iter(|| {
                sonic_rs::to_object_iter(black_box(&body[..])).map(|kv| kv.unwrap().1.as_raw_str().len()).sum::<usize>()
            })
        });
        g.bench_with_input(BenchmarkId::new("object_iter_unchecked", label), body, |b, body| {
            b.iter(|| object_iter_unchecked(black_box(body)))
        });
        // The gateway's own one-pass check (UTF-8, depth, RFC 8259), which
        // upstream answers go through, on the same bodies.
        g.bench_with_input(BenchmarkId::new("json_check", label), body, |b, body| {
            b.iter(|| sluice::json::check(black_box(body)).unwrap())
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// rewrite
// ---------------------------------------------------------------------------

fn bench_rewrite(c: &mut Criterion) {
    let bodies: Vec<_> = bodies().into_iter().filter(|(l, _)| l == "1KB" || l == "100KB").collect();
    let mut g = c.benchmark_group("rewrite");
    for (label, body) in &bodies {
        let peek = Peek::read(body, Endpoint::Chat).unwrap();
        assert!(peek.stream && !peek.include_usage);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("unchanged", label), body, |b, body| {
            b.iter(|| {
                let out = rewrite(black_box(body), &peek, "gpt-4o-mini", false);
                debug_assert_eq!(out.as_ptr(), body.as_ptr());
                out
            })
        });
        g.bench_with_input(BenchmarkId::new("rename_model", label), body, |b, body| {
            b.iter(|| rewrite(black_box(body), &peek, "gpt-4o-mini-2024-07-18", false))
        });
        g.bench_with_input(BenchmarkId::new("rename_and_inject_usage", label), body, |b, body| {
            b.iter(|| rewrite(black_box(body), &peek, "gpt-4o-mini-2024-07-18", true))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// sse
// ---------------------------------------------------------------------------

fn bench_sse(c: &mut Criterion) {
    let events = openai_stream();
    let n_events = events.len() as u64;
    let whole: Bytes = events.iter().flat_map(|e| e.iter().copied()).collect::<Vec<u8>>().into();

    // (b): the same bytes cut at 64 random offsets, as TCP reads would.
    let mut rng = fastrand::Rng::with_seed(99);
    let mut cuts: Vec<usize> = (0..64).map(|_| rng.usize(1..whole.len())).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut random = Vec::new();
    let mut prev = 0;
    for cut in cuts.into_iter().chain([whole.len()]) {
        random.push(whole.slice(prev..cut));
        prev = cut;
    }
    let one = vec![whole.clone()];

    // Every feeding forwards the same bytes and finds the same usage.
    for chunks in [&events, &random, &one] {
        assert_eq!(relay(chunks, false), (Some(STREAM_USAGE), whole.len()));
        let (u, sent) = relay(chunks, true);
        assert_eq!(u, Some(STREAM_USAGE));
        assert_eq!(sent, whole.len() - events[events.len() - 2].len());
    }
    assert_eq!(sse::events(&whole).count() as u64, n_events);

    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Elements(n_events));
    g.bench_function(BenchmarkId::new("relay", "one_event_per_chunk"), |b| b.iter(|| relay(black_box(&events), false)));
    g.bench_function(BenchmarkId::new("relay", format!("{}_random_chunks", random.len())), |b| {
        b.iter(|| relay(black_box(&random), false))
    });
    g.bench_function(BenchmarkId::new("relay", "whole_stream_one_chunk"), |b| b.iter(|| relay(black_box(&one), false)));
    // The splitting alone, without the usage scan.
    g.bench_function(BenchmarkId::new("split_only", "one_event_per_chunk"), |b| {
        b.iter(|| {
            let mut split = SseSplitter::new();
            black_box(&events)
                .iter()
                .filter_map(|c| split.push(c.clone()).ok().flatten())
                .map(|e| e.len())
                .sum::<usize>()
        })
    });
    g.bench_function(BenchmarkId::new("relay_strip_usage", "one_event_per_chunk"), |b| {
        b.iter(|| relay(black_box(&events), true))
    });
    // What the stream driver does to every run of events besides (issue 13):
    // each event found, its data checked to be JSON a client can read.
    g.bench_function(BenchmarkId::new("check_events", "whole_stream_one_chunk"), |b| {
        b.iter(|| {
            sse::events(black_box(&whole))
                .filter(|e| !e.data.is_empty() && e.data != b"[DONE]")
                .all(|e| json::check(e.data).is_ok())
        })
    });
    // The same, as the stream driver checks them: each event from where it
    // stops agreeing with the one before (json::StreamCheck).
    g.bench_function(BenchmarkId::new("check_events_resumed", "whole_stream_one_chunk"), |b| {
        b.iter(|| {
            let mut check = json::StreamCheck::default();
            sse::events(black_box(&whole))
                .filter(|e| !e.data.is_empty() && e.data != b"[DONE]")
                .all(|e| check.check(e.data).is_ok())
        })
    });
    g.bench_function(BenchmarkId::new("events_only", "whole_stream_one_chunk"), |b| {
        b.iter(|| sse::events(black_box(&whole)).map(|e| e.data.len()).sum::<usize>())
    });
    // The two event kinds on their own: a plain content chunk (fast path),
    // and the usage chunk (parsed, and dropped when the client did not ask).
    g.throughput(Throughput::Elements(1));
    let content = events[5].clone();
    let usage_chunk = events[events.len() - 2].clone();
    g.bench_function(BenchmarkId::new("scan_events", "content_chunk"), |b| {
        b.iter(|| scan_events(black_box(content.clone()), true))
    });
    g.bench_function(BenchmarkId::new("scan_events", "usage_chunk_keep"), |b| {
        b.iter(|| scan_events(black_box(usage_chunk.clone()), false))
    });
    g.bench_function(BenchmarkId::new("scan_events", "usage_chunk_strip"), |b| {
        b.iter(|| scan_events(black_box(usage_chunk.clone()), true))
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// auth
// ---------------------------------------------------------------------------

struct FakeEnv(HashMap<String, String>);

impl Env for FakeEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

fn key_of(i: usize) -> String {
    format!("sk-sluice-{:032x}", (i as u128 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C834))
}

/// A validated config with `n` client keys; key 0 comes from the (fake) environment.
fn config_with_keys(n: usize) -> Config {
    let mut toml = String::from(
        "[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\n\
         [[models]]\nname = \"gpt-4o-mini\"\ndeployments = [{ provider = \"mock\", model = \"mock-1\" }]\n\n",
    );
    for i in 0..n {
        let key = if i == 0 { "${SLUICE_KEY}".to_string() } else { key_of(i) };
        let models = if i.is_multiple_of(2) { "[\"*\"]" } else { "[\"gpt-*\"]" };
        toml.push_str(&format!("[[keys]]\nname = \"team-{i}\"\nkey = \"{key}\"\nmodels = {models}\n\n"));
    }
    let env = FakeEnv(HashMap::from([("SLUICE_KEY".to_string(), key_of(0))]));
    Config::from_str_with_env(&toml, "bench.toml", &env).unwrap_or_else(|e| panic!("bench config: {e}"))
}

/// Headers as the OpenAI Python SDK sends them, plus the key.
fn sdk_headers(auth: (&'static str, String)) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "sluice.internal:8080"),
        ("accept-encoding", "gzip, deflate"),
        ("connection", "keep-alive"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("user-agent", "OpenAI/Python 1.99.9"),
        ("x-stainless-lang", "python"),
        ("x-stainless-package-version", "1.99.9"),
        ("x-stainless-os", "Linux"),
        ("x-stainless-arch", "x64"),
        ("x-stainless-runtime", "CPython"),
        ("x-stainless-runtime-version", "3.12.3"),
        ("x-stainless-retry-count", "0"),
        ("x-stainless-read-timeout", "600"),
        ("content-length", "1024"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h.insert(HeaderName::from_static(auth.0), HeaderValue::from_str(&auth.1).unwrap());
    h
}

fn bench_auth(c: &mut Criterion) {
    let mut g = c.benchmark_group("auth");
    for n in [1usize, 100, 10_000] {
        let table = KeyTable::from_config(&config_with_keys(n));
        let last = key_of(n - 1);
        let cases = [
            ("bearer_valid", sdk_headers(("authorization", format!("Bearer {last}")))),
            ("x_api_key_valid", sdk_headers(("x-api-key", last.clone()))),
            ("bearer_invalid", sdk_headers(("authorization", format!("Bearer {}", key_of(n + 7))))),
        ];
        for (what, headers) in &cases {
            let ok = *what != "bearer_invalid";
            assert_eq!(table.authenticate(headers).is_ok(), ok, "{what} with {n} keys");
            g.bench_with_input(BenchmarkId::new(*what, format!("{n}_keys")), headers, |b, h| {
                b.iter(|| table.authenticate(black_box(h)).is_ok())
            });
        }
    }
    // What the lookup costs without the hashing (SHA-256 of the key).
    let key = key_of(0);
    g.bench_function(BenchmarkId::new("sha256_only", format!("{}_byte_key", key.len())), |b| {
        b.iter(|| sluice::auth::digest(black_box(&key)))
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// metrics
// ---------------------------------------------------------------------------

const MODEL: &str = "gpt-4o-mini";
const DEPLOYMENT: &str = "openai/gpt-4o-mini-2024-07-18";
const PRICE: Price = Price { input_per_mtok: 0.15, output_per_mtok: 0.60, cached_input_per_mtok: None };
const USAGE: Usage = Usage { prompt_tokens: 1117, completion_tokens: 63, cached_tokens: 0 };

/// The way the gateway first recorded metrics: a `counter!`/`histogram!`
/// macro with labels at every call (label Strings allocated, series looked
/// up in the registry). Kept here as the baseline for `MetricsTable`.
mod macros {
    use super::*;
    use sluice::metrics::*;

    pub fn request(d: Duration) {
        metrics::counter!(REQUESTS_TOTAL, "route" => "chat", "model" => MODEL.to_string(), "status" => "200")
            .increment(1);
        metrics::histogram!(REQUEST_DURATION, "route" => "chat").record(d.as_secs_f64());
    }

    pub fn attempt(d: Duration) {
        metrics::counter!(UPSTREAM_ATTEMPTS, "deployment" => DEPLOYMENT.to_string(), "outcome" => "ok").increment(1);
        metrics::histogram!(UPSTREAM_TTFT, "deployment" => DEPLOYMENT.to_string()).record(d.as_secs_f64());
    }

    pub fn usage(u: &Usage) {
        metrics::counter!(TOKENS_TOTAL, "model" => MODEL.to_string(), "direction" => "input")
            .increment(u.prompt_tokens);
        metrics::counter!(TOKENS_TOTAL, "model" => MODEL.to_string(), "direction" => "output")
            .increment(u.completion_tokens);
    }

    pub fn overhead(d: Duration) {
        metrics::histogram!(GATEWAY_OVERHEAD, "route" => "chat").record(d.as_secs_f64());
    }
}

/// (name, with label macros per call, with the gateway's `MetricsTable`).
type Case<'a> = (&'static str, &'a dyn Fn(), &'a dyn Fn());

fn bench_metrics(c: &mut Criterion) {
    let prom = sluice::metrics::install().unwrap();
    let cfg = format!(
        r#"
[server]
allow_anonymous = true
[[providers]]
name = "openai"
kind = "openai"
base_url = "https://api.openai.com/v1"
[[models]]
name = "{MODEL}"
deployments = [{{ provider = "openai", model = "gpt-4o-mini-2024-07-18" }}]
"#
    );
    let cfg = Config::from_str_with_env(&cfg, "bench.toml", &FakeEnv(HashMap::new())).unwrap();
    let table = sluice::metrics::MetricsTable::new(&sluice::route::ModelTable::from_config(&cfg));
    let d = Duration::from_micros(1234);
    // Histograms keep samples until a scrape drains them: scrape before each
    // sample (untimed), as Prometheus would every few seconds.
    let timed = |iters: u64, f: &dyn Fn()| {
        black_box(prom.render());
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        t.elapsed()
    };
    let t = &table;
    let mut g = c.benchmark_group("metrics");
    let cases: [Case; 5] = [
        ("record_request", &|| macros::request(d), &|| {
            t.record_request(Endpoint::Chat, Some(0), RequestOutcome::Status(200), d)
        }),
        ("record_attempt", &|| macros::attempt(d), &|| t.record_attempt(0, 0, Ok(()), d)),
        ("record_usage_priced", &|| macros::usage(&USAGE), &|| t.record_usage(0, &USAGE, Some(PRICE))),
        ("record_overhead", &|| macros::overhead(d), &|| t.record_overhead(Endpoint::Chat, d)),
        (
            "whole_request",
            &|| {
                macros::overhead(d);
                macros::attempt(d);
                macros::request(d);
                macros::usage(&USAGE);
            },
            &|| {
                t.record_overhead(Endpoint::Chat, d);
                t.record_attempt(0, 0, Ok(()), d);
                t.record_request(Endpoint::Chat, Some(0), RequestOutcome::Status(200), d);
                t.record_usage(0, &USAGE, Some(PRICE));
            },
        ),
    ];
    for (name, macros, handles) in cases {
        g.bench_function(BenchmarkId::new("macros", name), |b| b.iter_custom(|iters| timed(iters, macros)));
        g.bench_function(BenchmarkId::new("table", name), |b| b.iter_custom(|iters| timed(iters, handles)));
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// arena
// ---------------------------------------------------------------------------

/// Where the escaper writes: the same code for a heap and an arena vector,
/// so only the allocator differs.
trait Put {
    fn put(&mut self, b: &[u8]);
}

impl Put for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

impl Put for bumpalo::collections::Vec<'_, u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// `s` as a JSON string literal.
fn escape_into(out: &mut impl Put, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put(b"\"");
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut u = *b"\\u0000";
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                u[4] = HEX[(b >> 4) as usize];
                u[5] = HEX[(b & 15) as usize];
                &u
            }
            _ => continue,
        };
        out.put(&bytes[run..i]);
        out.put(esc);
        run = i + 1;
    }
    out.put(&bytes[run..]);
    out.put(b"\"");
}

const INJECT: &[u8] = b"\"stream_options\":{\"include_usage\":true},";

/// Splice the edits into the outgoing body (heap in both versions: it
/// outlives the request handler, it goes to hyper).
fn splice(body: &[u8], edits: &mut [(std::ops::Range<usize>, &[u8])]) -> Bytes {
    edits.sort_by_key(|(r, _)| r.start);
    let extra: usize = edits.iter().map(|(_, v)| v.len()).sum();
    let mut out = BytesMut::with_capacity(body.len() + extra);
    let mut pos = 0;
    for (range, replacement) in edits.iter() {
        out.extend_from_slice(&body[pos..range.start]);
        out.extend_from_slice(replacement);
        pos = range.end;
    }
    out.extend_from_slice(&body[pos..]);
    out.freeze()
}

/// The small temporaries of one request, heap version: the request id and
/// `server-timing` as `String`s that become header values without a copy,
/// and the rewrite's edit list with the escaped model name.
fn temporaries_heap(
    body: &Bytes,
    peek: &Peek,
    upstream_model: &str,
    a: u64,
    b: u64,
) -> (HeaderValue, Bytes, HeaderValue) {
    let id = format!("req_{a:016x}{b:016x}");
    let id = HeaderValue::try_from(id).unwrap();
    let mut model = Vec::with_capacity(upstream_model.len() + 2);
    escape_into(&mut model, upstream_model);
    let mut edits: Vec<(std::ops::Range<usize>, &[u8])> = Vec::with_capacity(2);
    edits.push((peek.model_span.clone(), &model));
    let inject = INJECT.to_vec();
    edits.push((1..1, &inject));
    let out = splice(body, &mut edits);
    let timing = format!("gateway;dur={:.3}, upstream;dur={:.3}", 0.412, 231.877);
    let timing = HeaderValue::try_from(timing).unwrap();
    (id, out, timing)
}

/// Arena version: the same work with every temporary in `bump`. What leaves
/// the request (header values, the body) must be copied out of the arena.
fn temporaries_arena(
    bump: &bumpalo::Bump,
    body: &Bytes,
    peek: &Peek,
    upstream_model: &str,
    a: u64,
    b: u64,
) -> (HeaderValue, Bytes, HeaderValue) {
    let id = bumpalo::format!(in bump, "req_{:016x}{:016x}", a, b);
    let id = HeaderValue::from_str(&id).unwrap();
    let mut model = bumpalo::collections::Vec::with_capacity_in(upstream_model.len() + 2, bump);
    escape_into(&mut model, upstream_model);
    let mut edits = bumpalo::collections::Vec::with_capacity_in(2, bump);
    edits.push((peek.model_span.clone(), &model[..]));
    let inject = bump.alloc_slice_copy(INJECT);
    edits.push((1..1, &inject[..]));
    let out = splice(body, &mut edits);
    let timing = bumpalo::format!(in bump, "gateway;dur={:.3}, upstream;dur={:.3}", 0.412, 231.877);
    let timing = HeaderValue::from_str(&timing).unwrap();
    (id, out, timing)
}

/// Many small temporaries (e.g. translating 64 messages to another
/// provider's format): where an arena is supposed to pay off.
fn many_small_heap(words: &[&str]) -> usize {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for w in words {
        let mut v = Vec::new();
        escape_into(&mut v, w);
        parts.push(v);
    }
    parts.iter().map(Vec::len).sum()
}

fn many_small_arena(bump: &bumpalo::Bump, words: &[&str]) -> usize {
    let mut parts = bumpalo::collections::Vec::new_in(bump);
    for w in words {
        let mut v = bumpalo::collections::Vec::new_in(bump);
        escape_into(&mut v, w);
        parts.push(v);
    }
    parts.iter().map(|v| v.len()).sum()
}

thread_local! {
    /// A per-worker arena pool: a request takes an arena and gives it back,
    /// reset, when it ends (it cannot hold a `RefCell` borrow across awaits).
    static POOL: RefCell<Vec<bumpalo::Bump>> = const { RefCell::new(Vec::new()) };
}

fn with_pooled_arena<R>(f: impl FnOnce(&bumpalo::Bump) -> R) -> R {
    let mut bump = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    let r = f(&bump);
    bump.reset();
    POOL.with(|p| p.borrow_mut().push(bump));
    r
}

fn bench_arena(c: &mut Criterion) {
    let body = chat_body(1_000, false, 42);
    let peek = Peek::read(&body, Endpoint::Chat).unwrap();
    let up = "gpt-4o-mini-2024-07-18";
    // Both versions produce the same bytes, and the same as the gateway's rewrite.
    let heap = temporaries_heap(&body, &peek, up, 1, 2);
    let bump = bumpalo::Bump::with_capacity(4096);
    let arena = temporaries_arena(&bump, &body, &peek, up, 1, 2);
    assert_eq!(heap, arena);
    let real = rewrite(&body, &peek, up, true);
    let v1: serde_json::Value = serde_json::from_slice(&real).unwrap();
    let v2: serde_json::Value = serde_json::from_slice(&heap.1).unwrap();
    assert_eq!(v1, v2);
    let words: Vec<&str> = (0..64).map(|i| WORDS[(i * 7) % WORDS.len()]).collect();

    let mut g = c.benchmark_group("arena");
    g.bench_function(BenchmarkId::new("request_temporaries", "heap"), |b| {
        b.iter(|| temporaries_heap(black_box(&body), &peek, up, 1, 2))
    });
    let mut bump = bumpalo::Bump::with_capacity(4096);
    g.bench_function(BenchmarkId::new("request_temporaries", "arena_reset"), |b| {
        b.iter(|| {
            let r = temporaries_arena(&bump, black_box(&body), &peek, up, 1, 2);
            bump.reset();
            r
        })
    });
    g.bench_function(BenchmarkId::new("request_temporaries", "arena_worker_pool"), |b| {
        b.iter(|| with_pooled_arena(|bump| temporaries_arena(bump, black_box(&body), &peek, up, 1, 2)))
    });
    // For scale: the gateway's own rewrite (sonic-rs escaping) without the headers.
    g.bench_function(BenchmarkId::new("request_temporaries", "ingress_rewrite_only"), |b| {
        b.iter(|| rewrite(black_box(&body), &peek, up, true))
    });
    g.bench_function(BenchmarkId::new("64_small_buffers", "heap"), |b| b.iter(|| many_small_heap(black_box(&words))));
    g.bench_function(BenchmarkId::new("64_small_buffers", "arena_reset"), |b| {
        b.iter(|| {
            let n = many_small_arena(&bump, black_box(&words));
            bump.reset();
            n
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// limiter
// ---------------------------------------------------------------------------

/// The rate limiter's cost per request: admission (a GCRA compare-and-swap
/// per limited scope, plus a concurrency count), the token correction at the
/// end, and releasing the grant.
fn bench_limiter(c: &mut Criterion) {
    use sluice_actors::rate_limiter::{LimitSpec, LimiterBackend, LimiterTable, gcra::Rate};
    let spec = |name: &str| LimitSpec {
        name: name.into(),
        // Large enough never to refuse during the bench.
        requests: Some(Rate::per_minute(u64::MAX / 2)),
        tokens: Some(Rate::per_minute(u64::MAX / 2)),
        concurrency: Some(u32::MAX),
    };
    let table = LimiterTable::new(vec![spec("key"), spec("key/model"), spec("model")]);
    let backend: std::sync::Arc<dyn LimiterBackend> = table.clone();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut g = c.benchmark_group("limiter");
    for scopes in [&[][..], &[0][..], &[0, 1, 2][..]] {
        g.bench_function(BenchmarkId::new("admit_settle_release", format!("{}_scopes", scopes.len())), |b| {
            b.iter(|| {
                rt.block_on(async {
                    if scopes.is_empty() {
                        return;
                    }
                    let mut grant = sluice_actors::rate_limiter::admit(&backend, black_box(scopes), 300).await.unwrap();
                    grant.settle(black_box(120));
                    black_box(grant.headroom());
                })
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// telemetry
// ---------------------------------------------------------------------------

/// One request's telemetry hooks, as the pipeline calls them: observe (the
/// trace context from the headers), the key, the request, one attempt with
/// its `traceparent`, the end. `baseline` is the same record with no hook
/// called: the difference is what `[telemetry]` costs a request.
fn bench_telemetry(c: &mut Criterion) {
    let cfg = |telemetry: &str| {
        let text = format!(
            "[server]\nallow_anonymous = true\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\
             [[models]]\nname = \"{MODEL}\"\ndeployments = [{{ provider = \"mock\", model = \"m\" }}]\n{telemetry}"
        );
        Config::from_str_with_env(&text, "bench.toml", &FakeEnv(HashMap::new())).unwrap()
    };
    let base = cfg("");
    let models = sluice::route::ModelTable::from_config(&base);
    let metrics = std::sync::Arc::new(sluice::metrics::MetricsTable::new(&models));
    let headers = sdk_headers(("authorization", "Bearer sk-x".to_string()));
    let body = chat_body(1024, false, 1);
    let peek = Peek::read(&body, Endpoint::Chat).unwrap();
    // An exporter to a port nothing listens on: its queue fills and drops,
    // which is what the request path sees of a collector that is down.
    let on = |ratio: f64| {
        let c = cfg(&format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:9\"\nqueue_size = 16\n[telemetry.traces]\nsample_ratio = {ratio}\n"
        ));
        sluice::observe::Observer::start(&c.telemetry).unwrap().map(|observer| sluice::observe::Telemetry {
            observer,
            names: std::sync::Arc::new(sluice::observe::Names::new(&c, &models)),
        })
    };
    let cases = [("off", None), ("on_unsampled", on(0.0)), ("on_sampled", on(1.0))];
    let mut g = c.benchmark_group("telemetry");
    g.bench_function("baseline", |b| {
        b.iter(|| {
            let mut rec =
                Record::new(Endpoint::Chat, sluice::endpoint::RequestId::from_static("req_1"), metrics.clone());
            rec.set_model(0);
            rec.finish(RequestOutcome::Status(200), None, None);
        })
    });
    for (name, observer) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut rec =
                    Record::new(Endpoint::Chat, sluice::endpoint::RequestId::from_static("req_1"), metrics.clone());
                rec.observe(black_box(observer.as_ref()), &headers);
                rec.set_key("team-a", None);
                rec.set_request(&peek, &body);
                rec.set_model(0);
                if let Some(o) = rec.obs.clone() {
                    let span = o.attempt(0, 0, 0);
                    black_box(o.traceparent(span.span_id));
                    span.end(Ok(()), None);
                }
                rec.finish(RequestOutcome::Status(200), None, None);
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = hot_path;
    // Short runs: the whole file finishes in about two minutes on 2 cores.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(400))
        .measurement_time(Duration::from_millis(1200))
        .sample_size(30)
        // The default 100,000 bootstrap resamples take longer than the
        // measurement itself on 2 cores without rayon.
        .nresamples(10_000);
    targets = bench_peek, bench_rewrite, bench_sse, bench_auth, bench_metrics, bench_arena, bench_limiter, bench_telemetry
}
criterion_main!(hot_path);
