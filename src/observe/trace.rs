//! Trace context: the client's W3C `traceparent`/`tracestate` read with the
//! OpenTelemetry SDK's propagator, the sampling decision taken by its
//! parent-based ratio sampler, and the `traceparent` sent upstream.
//!
//! A request continues the client's trace when it sends a valid
//! `traceparent` (its sampled flag decides, as W3C asks of a
//! participant), else starts a new one sampled at `sample_ratio`. An
//! unsampled request still gets ids and still propagates them upstream
//! (flag `00`), so the upstream's own tracing sees one trace; nothing of
//! it is exported.

use actix_web::http::header::HeaderMap;
use http::{HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};

use crate::config::TracesConfig;
use crate::endpoint::Endpoint;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `[telemetry.traces]`, ready for use.
pub struct TraceSettings {
    sampler: Sampler,
    propagator: TraceContextPropagator,
    pub record_content: bool,
    pub max_content_bytes: usize,
}

impl TraceSettings {
    pub fn new(cfg: &TracesConfig) -> TraceSettings {
        TraceSettings {
            sampler: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio))),
            propagator: TraceContextPropagator::new(),
            record_content: cfg.record_content,
            max_content_bytes: cfg.max_content_bytes,
        }
    }

    /// The trace a request joins or starts.
    pub fn begin(&self, headers: &HeaderMap, endpoint: Endpoint) -> TraceCtx {
        let parent = self.propagator.extract(&Headers(headers));
        let remote = parent.span().span_context().clone();
        let (trace_id, parent_span) = if remote.is_valid() {
            (remote.trace_id(), Some(u64::from_be_bytes(remote.span_id().to_bytes())))
        } else {
            (TraceId::from(new_trace_id()), None)
        };
        let decision =
            self.sampler.should_sample(Some(&parent), trace_id, operation(endpoint), &SpanKind::Server, &[], &[]);
        TraceCtx {
            trace_id: u128::from_be_bytes(trace_id.to_bytes()),
            span_id: new_span_id(),
            parent: parent_span,
            sampled: decision.decision == SamplingDecision::RecordAndSample,
            state: Some(decision.trace_state).filter(|s| *s != TraceState::default()),
        }
    }
}

/// One request's place in its trace.
#[derive(Debug, Clone)]
pub struct TraceCtx {
    pub trace_id: u128,
    /// The request's own span.
    pub span_id: u64,
    /// The client's span, when it sent a `traceparent`.
    pub parent: Option<u64>,
    pub sampled: bool,
    /// The client's `tracestate`, passed on untouched.
    pub state: Option<TraceState>,
}

/// The trace headers of one upstream call.
pub struct Outgoing {
    pub traceparent: (HeaderName, HeaderValue),
    pub tracestate: Option<(HeaderName, HeaderValue)>,
}

impl TraceCtx {
    /// `traceparent` naming `span_id` (the attempt's span) as the parent
    /// of whatever the upstream does.
    pub fn outgoing(&self, span_id: u64) -> Outgoing {
        let flags = if self.sampled { "01" } else { "00" };
        let tp = format!("00-{:032x}-{:016x}-{flags}", self.trace_id, span_id);
        Outgoing {
            traceparent: (TRACEPARENT, HeaderValue::from_str(&tp).unwrap_or(HeaderValue::from_static(""))),
            tracestate: self
                .state
                .as_ref()
                .and_then(|s| HeaderValue::from_str(&s.header()).ok())
                .map(|v| (TRACESTATE, v)),
        }
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// `gen_ai.operation.name` of a route: the conventions' well-known
/// values where one fits (a Responses turn is a chat turn; images and
/// speech generate content), else the route's own name.
pub fn operation(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat | Endpoint::Messages | Endpoint::Responses => "chat",
        Endpoint::Completions => "text_completion",
        Endpoint::Embeddings => "embeddings",
        Endpoint::Images | Endpoint::Speech => "generate_content",
        Endpoint::CountTokens | Endpoint::InputTokens => "count_tokens",
        Endpoint::Moderations => "moderations",
        Endpoint::Transcriptions => "transcriptions",
        Endpoint::Translations => "translations",
        Endpoint::Files => "files",
        Endpoint::Batches => "batches",
    }
}

/// A random, non-zero span id (W3C: all zeros is invalid).
pub fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

fn new_trace_id() -> u128 {
    fastrand::u128(1..)
}

/// actix's header map, as the propagator reads headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ratio: f64) -> TraceSettings {
        TraceSettings::new(&TracesConfig { sample_ratio: ratio, record_content: false, max_content_bytes: 10 })
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        use actix_web::http::header;
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(header::HeaderName::from_static(n), header::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_client_traceparent_is_continued_and_decides_sampling() {
        let s = settings(0.0);
        let h = headers(&[
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        let t = s.begin(&h, Endpoint::Chat);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent, Some(0x00f067aa0ba902b7));
        assert!(t.sampled, "the client sampled it: ratio 0 does not override");
        let out = t.outgoing(0xabc);
        assert_eq!(out.traceparent.1, "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01");
        assert_eq!(out.tracestate.unwrap().1, "congo=t61rcWkgMzE");

        let unsampled = headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")]);
        let t = settings(1.0).begin(&unsampled, Endpoint::Chat);
        assert!(!t.sampled, "the client did not sample it: ratio 1 does not override");
        assert!(t.outgoing(1).traceparent.1.to_str().unwrap().ends_with("-00"));
    }

    #[test]
    fn without_a_valid_traceparent_a_new_trace_is_sampled_at_the_ratio() {
        for bad in ["", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "garbage", "00-xyz-abc-01"] {
            let h = if bad.is_empty() { HeaderMap::new() } else { headers(&[("traceparent", bad)]) };
            let t = settings(1.0).begin(&h, Endpoint::Embeddings);
            assert_eq!(t.parent, None, "{bad}");
            assert!(t.sampled && t.trace_id != 0 && t.span_id != 0);
            assert!(!settings(0.0).begin(&h, Endpoint::Chat).sampled);
        }
        let half = settings(0.5);
        let n = (0..2000).filter(|_| half.begin(&HeaderMap::new(), Endpoint::Chat).sampled).count();
        assert!((800..1200).contains(&n), "{n} of 2000 sampled at 0.5");
    }
}
