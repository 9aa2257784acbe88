//! Where a request-scoped arena (bumpalo) could replace heap allocations,
//! measured against the heap code the gateway runs (issue 14, point 4;
//! docs/performance.md, "Arenas"):
//!
//! - `allocs`: heap allocations per operation of the request path's
//!   translators and of the cache key, counted by a wrapper around the
//!   gateway's own allocator (mimalloc). The upper bound of what an arena
//!   can save is their count times the cost of one small malloc + free.
//! - `small_alloc`: that cost, mimalloc against a bump allocation.
//! - `cache_key`: the canonical sort's vectors (one per JSON object) from
//!   the heap (the gateway before issue 14), from an arena reset per key,
//!   and from one scratch vector used as a stack (the gateway since); each
//!   variant is checked to give the same key as
//!   `sluice::cache::key::compute_seeded`.
//!
//! Run: `cargo bench --bench arena`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sluice::cache::key;
use sluice::endpoint::Endpoint;
use sluice::translate::{SseOut, anthropic, gemini, messages};
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use xxhash_rust::xxh3::Xxh3;

/// The gateway's allocator, counting allocations on this thread.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to mimalloc; the counter is a
// thread-local Cell with a const initialiser (no allocation, no lazy init).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { sluice::alloc::Mimalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { sluice::alloc::Mimalloc.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { sluice::alloc::Mimalloc.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { sluice::alloc::Mimalloc.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn allocs_of<R>(f: impl FnOnce() -> R) -> u64 {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    let n = ALLOCS.with(Cell::get) - before;
    drop(r);
    n
}

// The translation fixtures of benches/translate.rs (a realistic chat turn:
// system prompt, three turns, a tool call and its result, two tools).
const CHAT: &str = r#"{"model":"claude","stream":true,"max_tokens":512,"temperature":0.7,
"messages":[
 {"role":"system","content":"You are a helpful assistant. Answer briefly and cite the tools you used."},
 {"role":"user","content":"What's the weather in Paris, and what should I wear for a walk along the Seine this evening?"},
 {"role":"assistant","content":"Let me check the weather first.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},
 {"role":"tool","tool_call_id":"call_1","content":"{\"temp\":14,\"sky\":\"light rain\",\"wind_kmh\":18}"},
 {"role":"user","content":"Thanks. And tomorrow morning?"}],
"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}},
 {"type":"function","function":{"name":"get_forecast","description":"Forecast for a city and day","parameters":{"type":"object","properties":{"city":{"type":"string"},"day":{"type":"string"}},"required":["city","day"]}}}]}"#;

const MESSAGES: &str = r#"{"model":"claude","max_tokens":512,"stream":true,"system":"You are a helpful assistant. Answer briefly and cite the tools you used.",
"messages":[
 {"role":"user","content":"What's the weather in Paris, and what should I wear for a walk along the Seine this evening?"},
 {"role":"assistant","content":[{"type":"text","text":"Let me check the weather first."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris","unit":"celsius"}}]},
 {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"{\"temp\":14,\"sky\":\"light rain\",\"wind_kmh\":18}"},{"type":"text","text":"Thanks. And tomorrow morning?"}]}],
"tools":[{"name":"get_weather","description":"Current weather for a city","input_schema":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}},
 {"name":"get_forecast","description":"Forecast for a city and day","input_schema":{"type":"object","properties":{"city":{"type":"string"},"day":{"type":"string"}},"required":["city","day"]}}]}"#;

const ANTHROPIC_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":412,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
const ANTHROPIC_EVENT: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" jacket\"}}\n\n";
const GEMINI_EVENT: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" jacket\"}],\"role\":\"model\"},\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}\n\n";

/// A chat request of about `size` bytes: a system prompt and user/assistant
/// turns (benches/cache.rs's body), with a tool definition for nesting.
fn chat_body(size: usize) -> Bytes {
    let mut messages =
        vec![serde_json::json!({"role": "system", "content": "You are a careful assistant. Answer briefly."})];
    let mut i = 0;
    while serde_json::to_vec(&messages).unwrap().len() < size.saturating_sub(300) {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages
            .push(serde_json::json!({"role": role, "content": format!("Turn {i}: what does the cache do with café?")}));
        i += 1;
    }
    let tools = serde_json::json!([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]);
    let body =
        serde_json::json!({"model": "m", "messages": messages, "tools": tools, "temperature": 0, "max_tokens": 256});
    Bytes::from(serde_json::to_vec(&body).unwrap())
}

// ---------------------------------------------------------------------------
// The cache key's canonical hash, three ways. The hashing is the same code
// as src/cache/key.rs; only where the sorted member lists live differs.
// `gateway_compute` is the gateway's own function (parse included).
// ---------------------------------------------------------------------------

fn str_(h: &mut Xxh3, s: &str) {
    h.update(b"s");
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

fn int(h: &mut Xxh3, i: i128) {
    h.update(b"i");
    h.update(&i.to_le_bytes());
}

/// Everything but objects (which each variant handles with its own storage).
fn scalar(h: &mut Xxh3, v: &Value) {
    if let Some(b) = v.as_bool() {
        h.update(if b { b"t" } else { b"f" });
    } else if let Some(i) = v.as_i64() {
        int(h, i128::from(i));
    } else if let Some(u) = v.as_u64() {
        int(h, i128::from(u));
    } else if let Some(f) = v.as_f64() {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            int(h, f as i128);
        } else {
            h.update(b"d");
            h.update(&f.to_bits().to_le_bytes());
        }
    } else {
        h.update(b"n");
    }
}

trait Members<'v> {
    /// Hash `o`'s members sorted by key.
    fn object(&mut self, h: &mut Xxh3, o: &'v sonic_rs::Object);
}

fn value<'v, M: Members<'v>>(m: &mut M, h: &mut Xxh3, v: &'v Value) {
    if let Some(s) = v.as_str() {
        str_(h, s);
    } else if let Some(o) = v.as_object() {
        m.object(h, o);
    } else if let Some(a) = v.as_array() {
        h.update(b"[");
        h.update(&(a.len() as u64).to_le_bytes());
        for x in a.iter() {
            value(m, h, x);
        }
    } else {
        scalar(h, v);
    }
}

fn members_out<'v, M: Members<'v>>(m: &mut M, h: &mut Xxh3, members: &[(&'v str, &'v Value)]) {
    h.update(b"{");
    h.update(&(members.len() as u64).to_le_bytes());
    for &(k, v) in members {
        str_(h, k);
        value(m, h, v);
    }
}

/// As the gateway did before: a new `Vec` per object.
struct Heap;

impl<'v> Members<'v> for Heap {
    fn object(&mut self, h: &mut Xxh3, o: &'v sonic_rs::Object) {
        let mut members: Vec<(&str, &Value)> = o.iter().collect();
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        members_out(self, h, &members);
    }
}

/// A bumpalo `Vec` per object, in an arena reset after each key.
struct Arena<'b>(&'b bumpalo::Bump);

impl<'v> Members<'v> for Arena<'_> {
    fn object(&mut self, h: &mut Xxh3, o: &'v sonic_rs::Object) {
        let mut members = bumpalo::collections::Vec::with_capacity_in(o.len(), self.0);
        members.extend(o.iter());
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        members_out(self, h, &members);
    }
}

/// As the gateway does it now: one scratch `Vec` used as a stack; each
/// object pushes its members on top, sorts that slice, hashes it (nested
/// objects push above it) and truncates.
struct Scratch<'v>(Vec<(&'v str, &'v Value)>);

impl<'v> Members<'v> for Scratch<'v> {
    fn object(&mut self, h: &mut Xxh3, o: &'v sonic_rs::Object) {
        let base = self.0.len();
        self.0.extend(o.iter());
        self.0[base..].sort_unstable_by(|a, b| a.0.cmp(b.0));
        h.update(b"{");
        h.update(&((self.0.len() - base) as u64).to_le_bytes());
        for i in base..self.0.len() {
            let (k, v) = self.0[i];
            str_(h, k);
            value(self, h, v);
        }
        self.0.truncate(base);
    }
}

/// The key as `key::compute_seeded` computes it (chat route, no forwarded
/// headers, no determinism check), with `m` holding the sorted lists.
fn key_with<'v, M: Members<'v>>(m: &mut M, seed: u64, model: &str, doc: &'v Value) -> u128 {
    let obj = doc.as_object().unwrap();
    let mut h = Xxh3::with_seed(seed);
    h.update(Endpoint::Chat.label().as_bytes());
    str_(&mut h, model);
    let top: Vec<(&str, &Value)> = obj.iter().filter(|(k, _)| !key::IGNORED.contains(k)).collect();
    let mut top = top;
    top.sort_unstable_by(|a, b| a.0.cmp(b.0));
    members_out(m, &mut h, &top);
    h.digest128()
}

fn parse(body: &[u8]) -> Value {
    sonic_rs::from_slice(body).unwrap()
}

fn bench_cache_key(c: &mut Criterion) {
    const SEED: u64 = 7;
    let headers = HeaderMap::new();
    let mut g = c.benchmark_group("cache_key");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for size in [1_000usize, 20_000] {
        let body = chat_body(size);
        let real = key::compute_seeded(SEED, Endpoint::Chat, "m", &body, &headers, &[], false).unwrap();
        let doc = parse(&body);
        let mut bump = bumpalo::Bump::with_capacity(16 * 1024);
        assert_eq!(key_with(&mut Heap, SEED, "m", &doc), real, "heap copy");
        assert_eq!(key_with(&mut Arena(&bump), SEED, "m", &doc), real, "arena");
        assert_eq!(key_with(&mut Scratch(Vec::new()), SEED, "m", &doc), real, "scratch");
        bump.reset();
        let id = |what: &str| BenchmarkId::new(what, format!("{}_bytes", body.len()));
        // The whole key as the gateway computes it (parse included), for scale.
        g.bench_function(id("gateway_compute"), |b| {
            b.iter(|| key::compute_seeded(SEED, Endpoint::Chat, "m", black_box(&body), &headers, &[], false))
        });
        // The hashing alone, on a parsed document: where the sort vectors are.
        g.bench_function(id("hash_heap"), |b| b.iter(|| key_with(&mut Heap, SEED, "m", black_box(&doc))));
        g.bench_function(id("hash_arena_reset"), |b| {
            b.iter(|| {
                let k = key_with(&mut Arena(&bump), SEED, "m", black_box(&doc));
                bump.reset();
                k
            })
        });
        g.bench_function(id("hash_scratch"), |b| {
            b.iter(|| key_with(&mut Scratch(Vec::with_capacity(64)), SEED, "m", black_box(&doc)))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// Allocation counts and the cost of one small allocation
// ---------------------------------------------------------------------------

fn report_allocs() {
    let headers = HeaderMap::new();
    let opts = anthropic::request::Options::default();
    let body = chat_body(1_000);
    let rows: Vec<(&str, u64)> = vec![
        (
            "request openai→anthropic",
            allocs_of(|| anthropic::request::translate(CHAT.as_bytes(), "claude-x", &opts).unwrap()),
        ),
        ("request openai→gemini", allocs_of(|| gemini::request::translate(CHAT.as_bytes()).unwrap())),
        ("request anthropic→openai", allocs_of(|| messages::request::translate(MESSAGES.as_bytes(), "gpt-x").unwrap())),
        (
            "cache key, 1 KB chat body",
            allocs_of(|| key::compute_seeded(7, Endpoint::Chat, "m", &body, &headers, &[], false).unwrap()),
        ),
        ("event anthropic→openai (one delta)", {
            let mut t = anthropic::stream::StreamTranslator::new(1);
            let mut out = SseOut::new();
            for ev in sluice::sse::events(ANTHROPIC_START.as_bytes()) {
                t.event(ev.data, &mut out).unwrap();
            }
            out.take();
            let ev = sluice::sse::events(ANTHROPIC_EVENT.as_bytes()).next().unwrap();
            allocs_of(|| {
                t.event(ev.data, &mut out).unwrap();
                out.take()
            })
        }),
        ("event gemini→openai (one delta)", {
            let mut t = gemini::stream::StreamTranslator::new("m", 1);
            let mut out = SseOut::new();
            let ev = sluice::sse::events(GEMINI_EVENT.as_bytes()).next().unwrap();
            t.event(ev.data, &mut out).unwrap();
            out.take();
            allocs_of(|| {
                t.event(ev.data, &mut out).unwrap();
                out.take()
            })
        }),
    ];
    println!("\nheap allocations per operation (mimalloc, counted):");
    for (what, n) in rows {
        println!("  {what:<40} {n:>4}");
    }
    println!();
}

fn bench_small_alloc(c: &mut Criterion) {
    report_allocs();
    let mut g = c.benchmark_group("small_alloc");
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    // 32 live 48-byte objects, then all freed: the shape of a translator's
    // temporaries (small vectors and strings that live for one call).
    g.bench_function("mimalloc_32x48B", |b| {
        b.iter(|| {
            let v: Vec<Box<[u8; 48]>> = (0..32).map(|i| Box::new([i as u8; 48])).collect();
            black_box(v)
        })
    });
    let mut bump = bumpalo::Bump::with_capacity(4096);
    g.bench_function("bump_32x48B_reset", |b| {
        b.iter(|| {
            {
                let v: bumpalo::collections::Vec<&mut [u8; 48]> =
                    bumpalo::collections::Vec::from_iter_in((0..32).map(|i| bump.alloc([i as u8; 48])), &bump);
                black_box(&v);
            }
            bump.reset();
        })
    });
    g.finish();
}

criterion_group!(benches, bench_small_alloc, bench_cache_key);
criterion_main!(benches);
