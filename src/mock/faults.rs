//! Fault kinds, per-request controls read from `x-mock-*` headers, and gates.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue};
use tokio::sync::Semaphore;

/// A failure the mock can inject, by header (`x-mock-fault`) or at random
/// (`MockOptions::fail_rate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `"429"`: 429 with `Retry-After` and an OpenAI rate-limit error body.
    RateLimit,
    /// `"500"`: 500 with an OpenAI `server_error` body.
    ServerError,
    /// `"hang"`: never answer (until the client goes away).
    Hang,
    /// `"cut"`: stream: send about half the events (or `x-mock-cut-after`),
    /// then abort the connection without `[DONE]`; non-stream: send the
    /// headers and part of the body (Content-Length promises more), then abort.
    Cut,
    /// `"garbage"`: 200 whose body is not valid JSON (stream: the first
    /// event is a `data:` line that is not JSON; the rest follows normally).
    Garbage,
    /// `"reset"`: close the connection before any response byte.
    Reset,
}

impl Fault {
    /// Every fault, in stats order (the discriminant indexes stats arrays).
    pub const ALL: [Fault; 6] =
        [Fault::RateLimit, Fault::ServerError, Fault::Hang, Fault::Cut, Fault::Garbage, Fault::Reset];

    /// The name used by `x-mock-fault`, `--faults` and the stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::RateLimit => "429",
            Fault::ServerError => "500",
            Fault::Hang => "hang",
            Fault::Cut => "cut",
            Fault::Garbage => "garbage",
            Fault::Reset => "reset",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown fault name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFaultError(pub String);

impl fmt::Display for ParseFaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown fault {:?}: expected one of 429, 500, hang, cut, garbage, reset", self.0)
    }
}

impl std::error::Error for ParseFaultError {}

impl FromStr for Fault {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Fault, ParseFaultError> {
        let s = s.trim();
        Fault::ALL.into_iter().find(|f| f.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| ParseFaultError(s.to_owned()))
    }
}

/// Per-request controls from `x-mock-*` headers. Read in one pass over the
/// headers: most requests carry none, and a `starts_with` per header is
/// cheaper than a hash lookup per control.
#[derive(Default)]
pub(crate) struct Controls {
    pub fault: Option<Fault>,
    pub delay_ms: Option<u64>,
    pub chunk_delay_ms: Option<u64>,
    pub tokens: Option<u32>,
    /// `x-mock-retry-after`: the 429's `Retry-After`, sent as written
    /// (`1e300`, `-1`, `NaN` and HTTP-dates included).
    pub retry_after: Option<HeaderValue>,
    /// `x-mock-hostile`: answer like a broken upstream (see `hostile`).
    pub hostile: Option<super::hostile::Hostile>,
    /// `x-mock-drip-ms`: pace of the `drip` hostile answer, per byte.
    pub drip_ms: Option<u64>,
    pub cut_after: Option<u32>,
    pub gate: Option<HeaderValue>,
    /// `x-mock-usage: none`: answer without any usage.
    pub no_usage: bool,
    /// `x-mock-tool-call`: answer with a call of this tool (see `vendors`).
    pub tool_call: Option<String>,
    /// `x-mock-cached-tokens`: prompt tokens reported as read from the cache.
    pub cached_tokens: Option<u64>,
    /// `x-mock-content-filter: prompt | completion` (Azure routes): Azure's
    /// content filter refuses the prompt (400), or cuts the answer.
    pub content_filter: Option<ContentFilter>,
    /// `x-mock-aws-error: <ExceptionName>` (Bedrock routes): answer with that
    /// Bedrock error (`ThrottlingException`, `ModelNotReadyException`, ...).
    pub aws_error: Option<String>,
    /// `x-mock-stream-exception: <exceptionType>` (Bedrock streams): after
    /// `x-mock-cut-after` events (default 0), send that exception frame.
    pub stream_exception: Option<String>,
    /// `x-mock-bad-frame: crc | huge | cut` (Bedrock streams): after
    /// `x-mock-cut-after` events (default 1), a frame a decoder must refuse.
    pub bad_frame: Option<BadFrame>,
    /// A control header whose value could not be read; the request gets a 400.
    pub bad: Option<(&'static str, &'static str)>,
}

impl Controls {
    pub fn from_headers(headers: &HeaderMap) -> Controls {
        let mut c = Controls::default();
        for (name, value) in headers {
            let Some(which) = name.as_str().strip_prefix("x-mock-") else {
                continue;
            };
            let text = value.to_str().unwrap_or("").trim();
            let num = || text.parse::<u64>().ok();
            let bad = match which {
                "usage" => {
                    c.no_usage = text.eq_ignore_ascii_case("none");
                    (!c.no_usage).then_some("x-mock-usage")
                }
                "fault" => {
                    c.fault = text.parse().ok();
                    c.fault.is_none().then_some("x-mock-fault")
                }
                "delay-ms" => {
                    c.delay_ms = num();
                    c.delay_ms.is_none().then_some("x-mock-delay-ms")
                }
                "chunk-delay-ms" => {
                    c.chunk_delay_ms = num();
                    c.chunk_delay_ms.is_none().then_some("x-mock-chunk-delay-ms")
                }
                "tokens" => {
                    c.tokens = text.parse().ok();
                    c.tokens.is_none().then_some("x-mock-tokens")
                }
                "retry-after" => {
                    c.retry_after = Some(value.clone());
                    None
                }
                "hostile" => {
                    c.hostile = text.parse().ok();
                    c.hostile.is_none().then_some("x-mock-hostile")
                }
                "drip-ms" => {
                    c.drip_ms = num();
                    c.drip_ms.is_none().then_some("x-mock-drip-ms")
                }
                "cut-after" => {
                    c.cut_after = text.parse().ok();
                    c.cut_after.is_none().then_some("x-mock-cut-after")
                }
                "gate" => {
                    c.gate = (!text.is_empty()).then(|| value.clone());
                    c.gate.is_none().then_some("x-mock-gate")
                }
                "tool-call" => {
                    c.tool_call = (!text.is_empty()).then(|| text.to_owned());
                    c.tool_call.is_none().then_some("x-mock-tool-call")
                }
                "cached-tokens" => {
                    c.cached_tokens = num();
                    c.cached_tokens.is_none().then_some("x-mock-cached-tokens")
                }
                "content-filter" => {
                    c.content_filter = match text {
                        "prompt" => Some(ContentFilter::Prompt),
                        "completion" => Some(ContentFilter::Completion),
                        _ => None,
                    };
                    c.content_filter.is_none().then_some("x-mock-content-filter")
                }
                "aws-error" => {
                    c.aws_error = (!text.is_empty()).then(|| text.to_owned());
                    c.aws_error.is_none().then_some("x-mock-aws-error")
                }
                "stream-exception" => {
                    c.stream_exception = (!text.is_empty()).then(|| text.to_owned());
                    c.stream_exception.is_none().then_some("x-mock-stream-exception")
                }
                "bad-frame" => {
                    c.bad_frame = match text.to_ascii_lowercase().as_str() {
                        "crc" => Some(BadFrame::Crc),
                        "huge" => Some(BadFrame::Huge),
                        "cut" => Some(BadFrame::Cut),
                        _ => None,
                    };
                    c.bad_frame.is_none().then_some("x-mock-bad-frame")
                }
                _ => None,
            };
            if let Some(h) = bad {
                let expected = match h {
                    "x-mock-fault" => "one of 429, 500, hang, cut, garbage, reset",
                    "x-mock-gate" => "a non-empty gate name",
                    "x-mock-hostile" => "a hostile mode (see `sluice mock --help`)",
                    "x-mock-usage" => "none",
                    "x-mock-tool-call" => "a non-empty tool name",
                    "x-mock-content-filter" => "prompt or completion",
                    "x-mock-aws-error" | "x-mock-stream-exception" => "an AWS exception name",
                    "x-mock-bad-frame" => "crc, huge or cut",
                    _ => "a non-negative integer",
                };
                c.bad.get_or_insert((h, expected));
            }
        }
        c
    }
}

/// A Bedrock stream frame spoiled on purpose (`x-mock-bad-frame`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadFrame {
    /// A byte of the frame flipped: its message CRC no longer matches.
    Crc,
    /// A well-formed prelude declaring a frame over AWS's 16 MiB cap, then
    /// nothing more.
    Huge,
    /// The stream ends halfway through the frame.
    Cut,
}

/// What Azure's content filter does to a request (`x-mock-content-filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContentFilter {
    Prompt,
    Completion,
}

/// A named gate: a gated stream waits for one release before each event
/// after the first. Releases that arrive early are banked as permits, so a
/// test may release before or after the stream reaches the gate.
pub(crate) struct Gate {
    permits: Semaphore,
    sent: AtomicU64,
}

impl Gate {
    pub async fn pass(&self) {
        // The semaphore is never closed, so acquire cannot fail; forget() so
        // the permit is consumed rather than returned.
        if let Ok(p) = self.permits.acquire().await {
            p.forget();
        }
    }

    pub fn sent_one(&self) {
        self.sent.fetch_add(1, Relaxed);
    }
}

/// All gates by name, created on first use (by a stream or a release).
#[derive(Default)]
pub(crate) struct Gates(Mutex<HashMap<String, Arc<Gate>>>);

impl Gates {
    pub fn get(&self, name: &str) -> Arc<Gate> {
        let mut map = match self.0.lock() {
            Ok(m) => m,
            // Poisoning cannot leave a HashMap half-updated in a way that matters here.
            Err(p) => p.into_inner(),
        };
        if let Some(g) = map.get(name) {
            return g.clone();
        }
        let g = Arc::new(Gate { permits: Semaphore::new(0), sent: AtomicU64::new(0) });
        map.insert(name.to_owned(), g.clone());
        g
    }

    pub fn release(&self, name: &str) {
        self.get(name).permits.add_permits(1);
    }

    pub fn sent(&self, name: &str) -> u64 {
        self.get(name).sent.load(Relaxed)
    }
}

/// The body of a non-stream `garbage` answer: starts like JSON, is not JSON.
pub(crate) const GARBAGE_BODY: &[u8] =
    b"{\"id\":\"mock-garbage\",\"object\":\"chat.completion\",\"choices\":[{<html>this is not JSON";
/// The extra first event of a `garbage` stream.
pub(crate) const GARBAGE_EVENT: &[u8] = b"data: {\"id\":\"mock-garbage\", this is not JSON\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_round_trip() {
        for f in Fault::ALL {
            assert_eq!(f.as_str().parse::<Fault>(), Ok(f));
        }
        assert_eq!(" HANG ".parse::<Fault>(), Ok(Fault::Hang));
        let e = "503".parse::<Fault>().unwrap_err();
        assert!(e.to_string().contains("503") && e.to_string().contains("garbage"));
    }

    #[test]
    fn controls_from_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-mock-fault", HeaderValue::from_static("cut"));
        h.insert("x-mock-tokens", HeaderValue::from_static("3"));
        h.insert("x-mock-gate", HeaderValue::from_static("g1"));
        h.insert("authorization", HeaderValue::from_static("Bearer k"));
        let c = Controls::from_headers(&h);
        assert_eq!(c.fault, Some(Fault::Cut));
        assert_eq!(c.tokens, Some(3));
        assert_eq!(c.gate.as_ref().map(|g| g.as_bytes()), Some(&b"g1"[..]));
        assert!(c.bad.is_none());
        h.insert("x-mock-delay-ms", HeaderValue::from_static("soon"));
        assert_eq!(Controls::from_headers(&h).bad.map(|b| b.0), Some("x-mock-delay-ms"));
    }
}
