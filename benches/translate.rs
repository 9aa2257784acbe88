//! What translation adds per request and per stream event, against the
//! pass-through it replaces (docs/benchmarks/translate.md has the results):
//!
//! - `request`: one OpenAI chat request (system, three turns, a tool call and
//!   its result, two tools) as Anthropic and as Gemini, and one Anthropic
//!   request as OpenAI; baseline: the pass-through body rewrite (model renamed)
//! - `response`: one whole answer, each direction
//! - `event`: one stream event (a text delta), each direction, through the
//!   state machine; baseline: the pass-through path's event split
//!
//! Run: `cargo bench --bench translate` (about 40 s; a filter narrows it: `-- event`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::endpoint::Endpoint;
use sluice::peek::Peek;
use sluice::providers::rewrite::rewrite;
use sluice::sse;
use sluice::translate::{SseOut, StreamTranslate, anthropic, gemini, messages};

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

const ANTHROPIC_BODY: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Tomorrow morning will be dry and around 11 degrees: a light jacket and a scarf will do, and an umbrella just in case the wind brings showers back."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":412,"cache_creation_input_tokens":0,"cache_read_input_tokens":256,"output_tokens":38}}"#;
const GEMINI_BODY: &str = r#"{"candidates":[{"content":{"parts":[{"text":"Tomorrow morning will be dry and around 11 degrees: a light jacket and a scarf will do, and an umbrella just in case the wind brings showers back."}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":412,"candidatesTokenCount":38,"totalTokenCount":450},"modelVersion":"gemini-2.5-flash","responseId":"abc"}"#;
const OPENAI_BODY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Tomorrow morning will be dry and around 11 degrees: a light jacket and a scarf will do, and an umbrella just in case the wind brings showers back."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":412,"completion_tokens":38,"total_tokens":450}}"#;

const ANTHROPIC_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":412,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
const ANTHROPIC_EVENT: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" jacket\"}}\n\n";
const GEMINI_EVENT: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" jacket\"}],\"role\":\"model\"},\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}\n\n";
const OPENAI_EVENT: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" jacket\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";

fn request(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let chat = Bytes::from_static(CHAT.as_bytes());
    let peek = Peek::read(&chat, Endpoint::Chat).unwrap();
    g.throughput(Throughput::Bytes(chat.len() as u64));
    g.bench_function("passthrough_rename", |b| b.iter(|| rewrite(black_box(&chat), &peek, "claude-x", false)));
    let opts = anthropic::request::Options::default();
    g.bench_function("openai_to_anthropic", |b| {
        b.iter(|| anthropic::request::translate(black_box(CHAT.as_bytes()), "claude-x", &opts).unwrap())
    });
    g.bench_function("openai_to_gemini", |b| {
        b.iter(|| gemini::request::translate(black_box(CHAT.as_bytes())).unwrap())
    });
    g.bench_function("anthropic_to_openai", |b| {
        b.iter(|| messages::request::translate(black_box(MESSAGES.as_bytes()), "gpt-x").unwrap())
    });
    g.finish();
}

fn response(c: &mut Criterion) {
    let mut g = c.benchmark_group("response");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    g.bench_function("passthrough_usage_read", |b| {
        b.iter(|| sluice::usage::from_body(black_box(OPENAI_BODY.as_bytes())).unwrap())
    });
    g.bench_function("anthropic_to_openai", |b| {
        b.iter(|| anthropic::response::translate(black_box(ANTHROPIC_BODY.as_bytes()), 1).unwrap())
    });
    g.bench_function("gemini_to_openai", |b| {
        b.iter(|| gemini::response::translate(black_box(GEMINI_BODY.as_bytes()), "m", 1).unwrap())
    });
    g.bench_function("openai_to_anthropic", |b| {
        b.iter(|| messages::response::translate(black_box(OPENAI_BODY.as_bytes())).unwrap())
    });
    g.finish();
}

/// One run of one event through the event iterator and a translator that
/// has already seen the stream's start.
fn event_cost(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    start: &str,
    ev: &'static str,
    mut t: Box<dyn StreamTranslate>,
) {
    let mut out = SseOut::new();
    for e in sse::events(start.as_bytes()) {
        t.event(e.data, &mut out).unwrap();
    }
    out.take();
    let ev = Bytes::from_static(ev.as_bytes());
    c.bench_function(name, |b| {
        b.iter(|| {
            for e in sse::events(black_box(&ev)) {
                t.event(e.data, &mut out).unwrap();
            }
            out.take()
        })
    });
}

fn event(c: &mut Criterion) {
    let mut g = c.benchmark_group("event");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    let raw = Bytes::from_static(OPENAI_EVENT.as_bytes());
    g.bench_function("passthrough_split_and_usage_scan", |b| {
        b.iter(|| {
            let mut s = sse::SseSplitter::new();
            let run = s.push(black_box(raw.clone())).ok().flatten().unwrap_or_default();
            sluice::usage::scan_events(run, true)
        })
    });
    event_cost(
        &mut g,
        "anthropic_to_openai",
        ANTHROPIC_START,
        ANTHROPIC_EVENT,
        Box::new(anthropic::stream::StreamTranslator::new(1)),
    );
    event_cost(
        &mut g,
        "gemini_to_openai",
        GEMINI_EVENT,
        GEMINI_EVENT,
        Box::new(gemini::stream::StreamTranslator::new("m", 1)),
    );
    event_cost(
        &mut g,
        "openai_to_anthropic",
        OPENAI_EVENT,
        OPENAI_EVENT,
        Box::new(messages::stream::StreamTranslator::new()),
    );
    g.finish();
}

fn all(c: &mut Criterion) {
    request(c);
    response(c);
    event(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
