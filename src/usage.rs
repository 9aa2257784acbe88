//! Token usage: read it from a whole response, or pick it out of a stream's
//! events on the way past (and hide the usage-only chunk from a client that
//! did not ask for it).

use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;
use sonic_rs::JsonValueTrait;

use crate::sse;

/// Tokens one request used, as the upstream reported them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache.
    pub cached_tokens: u64,
}

/// The OpenAI `usage` object a translator read or wrote, as the gateway counts it.
impl From<crate::translate::openai::Usage> for Usage {
    fn from(u: crate::translate::openai::Usage) -> Usage {
        Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, cached_tokens: u.cached() }
    }
}

/// A Response's usage (the Responses API), as the gateway counts it.
impl From<crate::translate::responses::Usage> for Usage {
    fn from(u: crate::translate::responses::Usage) -> Usage {
        Usage { prompt_tokens: u.input_tokens, completion_tokens: u.output_tokens, cached_tokens: u.cached_tokens }
    }
}

impl Usage {
    /// Saturating: the counts come from the upstream, which may report anything.
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Parse an OpenAI `usage` object (`{"prompt_tokens":..,"completion_tokens":..,..}`).
pub fn parse_usage_object(raw: &[u8]) -> Option<Usage> {
    let mut usage = Usage::default();
    let mut any = false;
    for item in sonic_rs::to_object_iter(raw) {
        let (k, v) = item.ok()?;
        match &*k {
            "prompt_tokens" | "input_tokens" => {
                usage.prompt_tokens = v.as_u64().unwrap_or(0);
                any = true;
            }
            "completion_tokens" | "output_tokens" => {
                usage.completion_tokens = v.as_u64().unwrap_or(0);
                any = true;
            }
            "prompt_tokens_details" | "input_tokens_details" => {
                if let Ok(c) = sonic_rs::get(v.as_raw_str(), ["cached_tokens"]) {
                    usage.cached_tokens = c.as_u64().unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    any.then_some(usage)
}

/// The `usage` of a whole answer that [`crate::json::check_member`]
/// passed, read from the value of its top-level `usage` member (`at`, as
/// the check found it), or `Err` when the answer is not a JSON object. The
/// check's pass found the member, so nothing is scanned twice: ~600
/// instructions per answer, where [`from_body`]'s search and sonic-rs's
/// object walk took ~3.5k (docs/performance.md, "The request's and the
/// answer's JSON read in their checks").
pub fn from_checked(body: &[u8], at: Option<usize>) -> Result<Option<Usage>, String> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err("the body is not a JSON object".into());
    }
    Ok(at.and_then(|at| usage_at(body, at)))
}

/// [`parse_usage_object`] for the object at `at` of a checked document.
fn usage_at(doc: &[u8], at: usize) -> Option<Usage> {
    use crate::json::{as_u64, members};
    let count = |v: std::ops::Range<usize>| doc.get(v).and_then(as_u64).unwrap_or(0);
    let mut usage = Usage::default();
    let mut any = false;
    for (key, value) in members(doc, at) {
        match key {
            b"prompt_tokens" | b"input_tokens" => {
                usage.prompt_tokens = count(value);
                any = true;
            }
            b"completion_tokens" | b"output_tokens" => {
                usage.completion_tokens = count(value);
                any = true;
            }
            b"prompt_tokens_details" | b"input_tokens_details" => {
                if let Some((_, c)) = members(doc, value.start).find(|(k, _)| *k == b"cached_tokens") {
                    usage.cached_tokens = count(c);
                }
            }
            _ => {}
        }
    }
    any.then_some(usage)
}

/// The `usage` of a whole (non-stream) response body, if it has one, or
/// `Err` when the body is not a JSON object.
///
/// A full parse of the upstream's answer was the largest single cost of the
/// gateway's own work per request (docs/performance.md), so this reads only
/// what it needs: the body must look like one JSON object (first and last
/// non-blank bytes `{` and `}`; bodies cut short are already caught by HTTP
/// framing), and `usage` is the last unescaped `"usage"` key, where OpenAI
/// and compatible servers put it. A `"usage"` inside a string value is
/// escaped (`\"usage\"`) and so never matches.
pub fn from_body(body: &[u8]) -> Result<Option<Usage>, String> {
    let trimmed = body.trim_ascii();
    if trimmed.first() != Some(&b'{') || trimmed.last() != Some(&b'}') {
        return Err("the body is not a JSON object".into());
    }
    let Some(at) = USAGE_KEY_REV.rfind(trimmed) else { return Ok(None) };
    let rest = trimmed[at + USAGE_KEY.needle().len()..].trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b":") else { return Ok(None) };
    let rest = rest.trim_ascii_start();
    if rest.first() != Some(&b'{') {
        // `"usage": null` (or not an object): no usage.
        return Ok(None);
    }
    let Some(end) = memchr::memchr(b'}', rest) else { return Err("unterminated usage object".into()) };
    // `usage` holds one nested object at most (`*_tokens_details`); find
    // the brace that closes the whole object.
    let end = match memchr::memchr(b'{', &rest[1..end]) {
        None => end,
        Some(_) => closing_brace(rest).ok_or("unterminated usage object")?,
    };
    let object = &rest[..=end];
    if crate::json::nesting_exceeds(object, crate::json::MAX_DEPTH) {
        return Err("the usage object nests too deeply".into());
    }
    Ok(parse_usage_object(object))
}

/// Index of the `}` closing the object that starts at `s[0]`, skipping strings.
fn closing_brace(s: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

static USAGE_KEY_REV: LazyLock<memchr::memmem::FinderRev<'static>> =
    LazyLock::new(|| memchr::memmem::FinderRev::new(b"\"usage\""));

static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));

/// Does `data` hold `"usage"` followed by an object (not `null`)?
fn has_usage_object(data: &[u8]) -> bool {
    let mut from = 0;
    while let Some(i) = USAGE_KEY.find(&data[from..]) {
        let after = from + i + USAGE_KEY.needle().len();
        let rest = data[after..].trim_ascii_start();
        if let Some(rest) = rest.strip_prefix(b":")
            && rest.trim_ascii_start().first() == Some(&b'{')
        {
            return true;
        }
        from = after;
    }
    false
}

/// Is this chunk the usage-only one (`"choices": []`)?
fn is_usage_only_chunk(data: &[u8]) -> bool {
    match sonic_rs::get(data, ["choices"]) {
        Ok(v) => {
            let raw = v.as_raw_str().as_bytes();
            raw.first() == Some(&b'[') && raw[1..].trim_ascii_start().first() == Some(&b']')
        }
        Err(_) => false,
    }
}

/// Look through a buffer of whole SSE events for usage. Returns the usage
/// found (if any) and the buffer to forward: unchanged (zero-copy) unless
/// `strip_usage_chunk` asked to drop a usage-only chunk that was present.
pub fn scan_events(buf: Bytes, strip_usage_chunk: bool) -> (Option<Usage>, Bytes) {
    // Fast path: most chunks carry no usage object at all.
    if !has_usage_object(&buf) {
        return (None, buf);
    }
    let mut usage = None;
    let mut drop_ranges: Vec<(usize, usize)> = Vec::new();
    for ev in sse::events(&buf) {
        if !has_usage_object(ev.data) || crate::json::nesting_exceeds(ev.data, crate::json::MAX_DEPTH) {
            continue;
        }
        if let Ok(v) = sonic_rs::get(ev.data, ["usage"])
            && let Some(u) = parse_usage_object(v.as_raw_str().as_bytes())
        {
            usage = Some(u);
        }
        if strip_usage_chunk && is_usage_only_chunk(ev.data) {
            drop_ranges.push((ev.start, ev.end));
        }
    }
    if drop_ranges.is_empty() {
        return (usage, buf);
    }
    let mut out = BytesMut::with_capacity(buf.len());
    let mut pos = 0;
    for (s, e) in drop_ranges {
        out.extend_from_slice(&buf[pos..s]);
        pos = e;
    }
    out.extend_from_slice(&buf[pos..]);
    (usage, out.freeze())
}

/// Usage capture over a stream in the client's protocol: OpenAI chunks
/// ([`scan_events`]); Anthropic events on `/v1/messages`, where input
/// counts arrive in `message_start` and output counts (cumulative) in
/// `message_delta`, so they are merged as they pass; or the Responses
/// API's events, whose usage is in the final Response (and whose stream
/// the relay also needs to follow, [`ResponsesWatch`]).
pub enum StreamUsage {
    OpenAi,
    Anthropic(crate::translate::anthropic::Usage),
    Responses(Box<ResponsesWatch>),
}

/// What the relay knows of a Responses stream as it passes: enough to end
/// it with its own `response.failed` (the id and the next sequence
/// number), whether its terminal event already went out, and the final
/// Response, which Sluice stores for `previous_response_id`.
#[derive(Debug, Default)]
pub struct ResponsesWatch {
    /// `response.id` of the first event (`response.created`).
    pub id: Option<String>,
    pub created_at: u64,
    pub model: String,
    /// Events seen: the next event's sequence number (streams number from 0).
    pub events: u64,
    /// A terminal event (`response.completed`, `.incomplete`, `.failed`) passed.
    pub ended: bool,
    /// The Response carried by `response.completed` or `response.incomplete`.
    pub response: Option<Bytes>,
}

static RESPONSE_EVENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"response."));

impl ResponsesWatch {
    /// Follow one run of events; the usage of a terminal event, if one passed.
    fn scan(&mut self, buf: &[u8]) -> Option<Usage> {
        let mut usage = None;
        for ev in sse::events(buf) {
            self.events += 1;
            let data = ev.data;
            // Only the lifecycle events matter here; deltas (most events)
            // hold no `"response.` type and are skipped without a parse.
            if RESPONSE_EVENT.find(data).is_none() || crate::json::nesting_exceeds(data, crate::json::MAX_DEPTH) {
                continue;
            }
            let Some(kind) = sonic_rs::get(data, ["type"]).ok().and_then(|t| t.as_str().map(str::to_owned)) else {
                continue;
            };
            match kind.as_str() {
                "response.created" if self.id.is_none() => {
                    let field = |k: &str| sonic_rs::get(data, ["response", k]).ok();
                    self.id = field("id").and_then(|v| v.as_str().map(str::to_owned));
                    self.created_at = field("created_at").and_then(|v| v.as_u64()).unwrap_or(0);
                    self.model = field("model").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                }
                "response.completed" | "response.incomplete" | "response.failed" => {
                    self.ended = true;
                    if let Some(u) = crate::translate::responses::history::usage_from_event(data) {
                        usage = Some(u.into());
                    }
                    if kind != "response.failed"
                        && let Ok(r) = sonic_rs::get(data, ["response"])
                    {
                        self.response = Some(Bytes::copy_from_slice(r.as_raw_str().as_bytes()));
                    }
                }
                _ => {}
            }
        }
        usage
    }
}

impl StreamUsage {
    pub fn for_endpoint(e: crate::endpoint::Endpoint) -> StreamUsage {
        match e.protocol() {
            crate::endpoint::ClientProtocol::Anthropic => StreamUsage::Anthropic(Default::default()),
            crate::endpoint::ClientProtocol::OpenAi => StreamUsage::OpenAi,
            crate::endpoint::ClientProtocol::Responses => StreamUsage::Responses(Box::default()),
        }
    }

    /// The Responses stream followed so far (`None` for other protocols).
    pub fn responses(&self) -> Option<&ResponsesWatch> {
        match self {
            StreamUsage::Responses(w) => Some(w),
            StreamUsage::OpenAi | StreamUsage::Anthropic(_) => None,
        }
    }

    /// The usage so far (if this buffer held any) and the buffer to forward.
    /// Anthropic and Responses events are never changed.
    pub fn scan(&mut self, buf: Bytes, strip_usage_chunk: bool) -> (Option<Usage>, Bytes) {
        let acc = match self {
            StreamUsage::OpenAi => return scan_events(buf, strip_usage_chunk),
            StreamUsage::Responses(w) => {
                let u = w.scan(&buf);
                return (u, buf);
            }
            StreamUsage::Anthropic(acc) => acc,
        };
        if !has_usage_object(&buf) {
            return (None, buf);
        }
        let mut found = false;
        for ev in sse::events(&buf) {
            if !has_usage_object(ev.data) || crate::json::nesting_exceeds(ev.data, crate::json::MAX_DEPTH) {
                continue;
            }
            let start = sonic_rs::get(ev.data, ["type"]).is_ok_and(|t| t.as_str() == Some("message_start"));
            let raw =
                if start { sonic_rs::get(ev.data, ["message", "usage"]) } else { sonic_rs::get(ev.data, ["usage"]) };
            if let Ok(v) = raw
                && let Ok(u) = sonic_rs::from_str::<crate::translate::anthropic::Usage>(v.as_raw_str())
            {
                acc.merge(&u);
                found = true;
            }
        }
        let usage = found.then(|| acc.to_openai().into());
        (usage, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_usage() {
        let b = br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        assert_eq!(from_body(b), Ok(Some(Usage { prompt_tokens: 3, completion_tokens: 5, cached_tokens: 2 })));
        assert_eq!(from_body(br#"{"usage":null}"#), Ok(None));
        assert_eq!(from_body(br#"{"id":1}"#), Ok(None));
        assert!(from_body(b"not json").is_err());
        assert!(from_body(br#"{"id": [1, 2"#).is_err());
        assert!(from_body(br#"{"id":"mock-garbage","choices":[{<html>this is not JSON"#).is_err());
        // A "usage" inside a string is escaped and ignored; the real one is last.
        let tricky = br#"{"choices":[{"message":{"content":"say \"usage\": {\"prompt_tokens\": 99}"}}],"usage" : {"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1},"completion_tokens_details":{"reasoning_tokens":0}}}"#;
        assert_eq!(from_body(tricky), Ok(Some(Usage { prompt_tokens: 1, completion_tokens: 2, cached_tokens: 1 })));
    }

    /// What the check finds, read as [`from_body`] reads it.
    fn checked(body: &[u8]) -> Result<Option<Usage>, String> {
        let at = crate::json::check_member(body, b"\"usage\"").map_err(|e| e.to_string())?;
        from_checked(body, at)
    }

    #[test]
    fn checked_usage_agrees_with_the_body_scan() {
        let bodies: &[&[u8]] = &[
            br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2}}}"#,
            br#"{"choices":[{"message":{"content":"say \"usage\": {\"prompt_tokens\": 99}"}}],"usage" : {"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
            br#" { "usage" : { "input_tokens" : 7 , "output_tokens" : 9 , "input_tokens_details" : { "x" : [ 1 , { "y" : "}" } ] , "cached_tokens" : 4 } } } "#,
            br#"{"usage":{"prompt_tokens":-1,"completion_tokens":2.5,"extra":{"a":[{}]},"prompt_tokens_details":null}}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551616,"completion_tokens":18446744073709551615}}"#,
            br#"{"usage":{"total_tokens":8}}"#,
            br#"{"usage":{}}"#,
            br#"{"usage":null}"#,
            br#"{"usage":[1]}"#,
            br#"{"id":1}"#,
            br#"{}"#,
        ];
        for b in bodies {
            assert_eq!(checked(b), from_body(b), "{}", String::from_utf8_lossy(b));
        }
        assert_eq!(
            checked(
                br#"{"usage":{"prompt_tokens":3,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":2}}}"#
            ),
            Ok(Some(Usage { prompt_tokens: 3, completion_tokens: 5, cached_tokens: 2 }))
        );
        // Not an object: an error, as from the scan.
        assert!(checked(b"[1]").is_err() && from_body(b"[1]").is_err());
        // Only the top level's member counts (the scan took the last key anywhere).
        assert_eq!(
            checked(br#"{"usage":{"prompt_tokens":1},"x":{"usage":{"prompt_tokens":2}}}"#),
            Ok(Some(Usage { prompt_tokens: 1, ..Usage::default() }))
        );
        // The last top-level member wins.
        assert_eq!(
            checked(br#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#),
            Ok(Some(Usage { prompt_tokens: 2, ..Usage::default() }))
        );
    }

    #[test]
    fn stream_usage_captured_and_stripped() {
        let buf = Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\ndata: {\"choices\": [ ],\"usage\": {\"prompt_tokens\":4,\"completion_tokens\":6}}\n\ndata: [DONE]\n\n",
        );
        let (u, kept) = scan_events(buf.clone(), false);
        assert_eq!(u, Some(Usage { prompt_tokens: 4, completion_tokens: 6, cached_tokens: 0 }));
        assert_eq!(kept, buf);
        let (u2, stripped) = scan_events(buf, true);
        assert_eq!(u2, u);
        assert_eq!(&stripped[..], &b"data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\ndata: [DONE]\n\n"[..]);
    }

    #[test]
    fn anthropic_stream_usage_is_merged() {
        let mut s = StreamUsage::for_endpoint(crate::endpoint::Endpoint::Messages);
        let start = Bytes::from_static(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\n\n");
        let (u, out) = s.scan(start.clone(), true);
        assert_eq!(out, start);
        assert_eq!(u, Some(Usage { prompt_tokens: 14, completion_tokens: 1, cached_tokens: 4 }));
        let delta = Bytes::from_static(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n");
        let (u, _) = s.scan(delta, true);
        assert_eq!(u, Some(Usage { prompt_tokens: 14, completion_tokens: 15, cached_tokens: 4 }));
    }

    #[test]
    fn responses_streams_are_followed() {
        let mut s = StreamUsage::for_endpoint(crate::endpoint::Endpoint::Responses);
        let run = Bytes::from_static(b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"created_at\":7,\"model\":\"m\",\"usage\":null}}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"\\\"response.completed\\\"\"}\n\n");
        let (u, out) = s.scan(run.clone(), true);
        assert_eq!((u, out), (None, run));
        let w = s.responses().unwrap();
        assert_eq!(
            (w.id.as_deref(), w.created_at, w.model.as_str(), w.events, w.ended),
            (Some("resp_1"), 7, "m", 2, false)
        );
        let done = Bytes::from_static(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"output\":[],\"usage\":{\"input_tokens\":3,\"input_tokens_details\":{\"cached_tokens\":1},\"output_tokens\":4,\"total_tokens\":7}}}\n\n");
        let (u, _) = s.scan(done, true);
        assert_eq!(u, Some(Usage { prompt_tokens: 3, completion_tokens: 4, cached_tokens: 1 }));
        let w = s.responses().unwrap();
        assert!(w.ended);
        assert_eq!(w.events, 3);
        assert!(w.response.as_deref().unwrap().starts_with(b"{\"id\":\"resp_1\""));
        assert_eq!(
            from_body(br#"{"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":2},"output_tokens":1}}"#),
            Ok(Some(Usage { prompt_tokens: 5, completion_tokens: 1, cached_tokens: 2 }))
        );
    }

    #[test]
    fn usage_null_only_is_fast_path() {
        let buf = Bytes::from_static(b"data: {\"choices\":[],\"usage\":null}\n\n");
        let (u, kept) = scan_events(buf.clone(), true);
        assert_eq!(u, None);
        assert_eq!(kept.as_ptr(), buf.as_ptr());
    }
}
