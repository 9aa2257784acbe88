//! The cache key: a 128-bit xxh3 hash (seeded per process) of everything
//! that determines an answer, and the request's own say over caching (`Cache-Control`).
//!
//! What goes in: the route, the resolved model name (so aliases of one
//! deployment keep their own entries, and the client's spelling of an alias
//! does not matter), every member of the body except those that cannot change
//! the answer ([`IGNORED`]), and the client headers the model's providers
//! forward (they may change the answer: `x-mock-tokens`, `openai-beta`).
//!
//! Canonical form: objects are hashed with their members sorted by key,
//! strings by their decoded text (so `"\u0041"` and `"A"` agree), numbers by
//! value (`0`, `0.0` and `0e0` agree; integers beyond 2^53 stay exact), with
//! a type tag and a length before every value so that no two different
//! documents hash the same bytes. Whitespace and member order never matter.

use actix_web::http::header::HeaderMap;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use xxhash_rust::xxh3::Xxh3;

use crate::endpoint::Endpoint;
use crate::json::MAX_DEPTH;
use crate::providers::HeaderForward;

/// Top-level members that do not change the answer, so they do not split
/// entries: the transport (`stream`, `stream_options`), bookkeeping
/// (`user`, `metadata`, `store`) and the model name as the client wrote it
/// (the resolved name is hashed instead).
pub const IGNORED: &[&str] = &["model", "stream", "stream_options", "user", "metadata", "store"];

/// Why a request is not cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCacheable {
    /// The model caches only `temperature: 0` requests, and this one is not.
    NotDeterministic,
    /// The body could not be read as JSON (ingress already checked it, so
    /// this does not happen in practice).
    Unreadable,
}

/// The key of a request, or why it has none.
pub fn compute(
    endpoint: Endpoint,
    model: &str,
    body: &[u8],
    headers: &HeaderMap,
    forward: &[HeaderForward],
    only_deterministic: bool,
) -> Result<u128, NotCacheable> {
    compute_seeded(seed(), endpoint, model, body, headers, forward, only_deterministic)
}

/// [`compute`] with another seed: replicas mode's second tier hashes with a
/// seed every replica shares (kept in Redis), since each process's own
/// seed differs.
pub fn compute_seeded(
    seed: u64,
    endpoint: Endpoint,
    model: &str,
    body: &[u8],
    headers: &HeaderMap,
    forward: &[HeaderForward],
    only_deterministic: bool,
) -> Result<u128, NotCacheable> {
    // sonic-rs recurses without a limit (src/json.rs): never hand it a deep body.
    if crate::json::nesting_exceeds(body, MAX_DEPTH) {
        return Err(NotCacheable::Unreadable);
    }
    let doc: Value = sonic_rs::from_slice(body).map_err(|_| NotCacheable::Unreadable)?;
    let obj = doc.as_object().ok_or(NotCacheable::Unreadable)?;
    if only_deterministic && endpoint != Endpoint::Embeddings {
        let t = obj.get(&"temperature").and_then(|t| t.as_f64());
        if t != Some(0.0) {
            return Err(NotCacheable::NotDeterministic);
        }
    }
    let mut h = Xxh3::with_seed(seed);
    h.update(endpoint.label().as_bytes());
    str_(&mut h, model);
    // Every object's members are sorted in one scratch vector used as a
    // stack (see `members`): a `Vec` per object was 15–20% of the hashing
    // (criterion `arena`, docs/performance.md "Arenas").
    let mut stack: Vec<(&str, &Value)> = Vec::with_capacity(64);
    stack.extend(obj.iter().filter(|(k, _)| !IGNORED.contains(k)));
    members(&mut h, &mut stack, 0);
    if !forward.is_empty() {
        let mut sent: Vec<(&str, &[u8])> = headers
            .iter()
            .filter(|(n, _)| forward.iter().any(|f| f.allows(n.as_str())))
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        sent.sort_unstable();
        h.update(b"H");
        h.update(&(sent.len() as u64).to_le_bytes());
        for (n, v) in sent {
            str_(&mut h, n);
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
        }
    }
    Ok(h.digest128())
}

/// A per-process seed: xxh3 is fast but not collision-resistant against a
/// client who knows the function, and the cache is shared by every client
/// key. Unseeded, a tenant could search offline for a body whose key equals
/// another tenant's likely prompt and plant its own answer there; with an
/// unknown seed the key cannot be predicted (docs/decisions/cache.md).
fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let stack = &t as *const u64 as u64;
        fastrand::Rng::with_seed(t ^ stack.rotate_left(29) ^ u64::from(std::process::id())).u64(..) ^ fastrand::u64(..)
    })
}

fn str_(h: &mut Xxh3, s: &str) {
    h.update(b"s");
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

/// Hash the object whose members are `stack[base..]`, sorted by key, then
/// pop them. Nested objects push their members above and pop them before
/// returning, so the slice is intact for the next member.
fn members<'v>(h: &mut Xxh3, stack: &mut Vec<(&'v str, &'v Value)>, base: usize) {
    stack[base..].sort_unstable_by(|a, b| a.0.cmp(b.0));
    let end = stack.len();
    h.update(b"{");
    h.update(&((end - base) as u64).to_le_bytes());
    for i in base..end {
        let (k, v) = stack[i];
        str_(h, k);
        value(h, stack, v);
    }
    stack.truncate(base);
}

/// Hash one value in canonical form. Depth is bounded by [`MAX_DEPTH`],
/// checked before parsing.
fn value<'v>(h: &mut Xxh3, stack: &mut Vec<(&'v str, &'v Value)>, v: &'v Value) {
    if let Some(s) = v.as_str() {
        str_(h, s);
    } else if let Some(o) = v.as_object() {
        let base = stack.len();
        stack.extend(o.iter());
        members(h, stack, base);
    } else if let Some(a) = v.as_array() {
        h.update(b"[");
        h.update(&(a.len() as u64).to_le_bytes());
        for x in a.iter() {
            value(h, stack, x);
        }
    } else if let Some(b) = v.as_bool() {
        h.update(if b { b"t" } else { b"f" });
    } else if let Some(i) = v.as_i64() {
        int(h, i128::from(i));
    } else if let Some(u) = v.as_u64() {
        int(h, i128::from(u));
    } else if let Some(f) = v.as_f64() {
        // Integral floats hash as the integer they equal (1.0 == 1);
        // others by their bits (-0.0 is integral and becomes 0).
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

fn int(h: &mut Xxh3, i: i128) {
    h.update(b"i");
    h.update(&i.to_le_bytes());
}

/// What the request's `Cache-Control` asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// Neither read nor store (`no-store`).
    pub no_store: bool,
    /// Do not serve a stored answer; fetch a fresh one and store it (`no-cache`).
    pub no_cache: bool,
    /// Serve a stored answer only if it is at most this many seconds old.
    pub max_age: Option<u64>,
}

/// Read every `Cache-Control` header; unknown directives are ignored.
pub fn control(headers: &HeaderMap) -> Control {
    let mut c = Control::default();
    for v in headers.get_all(actix_web::http::header::CACHE_CONTROL) {
        let Ok(s) = v.to_str() else { continue };
        for d in s.split(',') {
            let d = d.trim();
            if d.eq_ignore_ascii_case("no-store") {
                c.no_store = true;
            } else if d.eq_ignore_ascii_case("no-cache") {
                c.no_cache = true;
            } else if let Some((name, n)) = d.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
                && let Ok(n) = n.trim().trim_matches('"').parse::<u64>()
            {
                c.max_age = Some(c.max_age.map_or(n, |m| m.min(n)));
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn key(body: &str) -> u128 {
        compute(Endpoint::Chat, "m", body.as_bytes(), &HeaderMap::new(), &[], false).unwrap()
    }

    const BASE: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#;

    #[test]
    fn equivalent_requests_share_a_key() {
        let k = key(BASE);
        // Whitespace and key order, nested too.
        assert_eq!(
            k,
            key(
                " { \"temperature\" : 0 ,\n \"messages\" : [ { \"content\":\"hi\", \"role\":\"user\" } ], \"model\":\"m\" } "
            )
        );
        // Transport and bookkeeping members do not split entries.
        assert_eq!(
            k,
            key(
                r#"{"model":"alias-as-written","messages":[{"role":"user","content":"hi"}],"temperature":0,"stream":true,"stream_options":{"include_usage":true},"user":"u-42","metadata":{"a":"b"},"store":false}"#
            )
        );
        // Numbers by value, strings by decoded text.
        assert_eq!(k, key(r#"{"model":"m","messages":[{"role":"user","content":"h\u0069"}],"temperature":0.0}"#));
        assert_eq!(k, key(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":-0e3}"#));
    }

    #[test]
    fn different_requests_get_different_keys() {
        let k = key(BASE);
        let differ = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi!"}],"temperature":0}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"hi"}],"temperature":0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"seed":1}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"tools":[]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"n":2}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"user","content":"hi"}],"temperature":0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":["hi"]}],"temperature":0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"stop":null}"#,
        ];
        let mut seen = vec![k];
        for d in differ {
            let kd = key(d);
            assert!(!seen.contains(&kd), "{d}");
            seen.push(kd);
        }
        // The resolved model and the route are part of the key.
        let h = HeaderMap::new();
        assert_ne!(k, compute(Endpoint::Chat, "other", BASE.as_bytes(), &h, &[], false).unwrap());
        assert_ne!(k, compute(Endpoint::Completions, "m", BASE.as_bytes(), &h, &[], false).unwrap());
        // Strings and numbers that print alike stay apart.
        assert_ne!(key(r#"{"messages":"1"}"#), key(r#"{"messages":1}"#));
        assert_ne!(key(r#"{"a":["x","y"]}"#), key(r#"{"a":["xy"]}"#));
        assert_ne!(key(r#"{"a":1.5}"#), key(r#"{"a":1}"#));
        assert_ne!(key(r#"{"a":18446744073709551615}"#), key(r#"{"a":18446744073709551614}"#));
    }

    #[test]
    fn forwarded_headers_are_part_of_the_key() {
        let fwd = [HeaderForward::new(&["x-mock-*".to_string()])];
        let mut h = HeaderMap::new();
        let k0 = compute(Endpoint::Chat, "m", BASE.as_bytes(), &h, &fwd, false).unwrap();
        h.insert(HeaderName::from_static("x-other"), HeaderValue::from_static("1"));
        assert_eq!(k0, compute(Endpoint::Chat, "m", BASE.as_bytes(), &h, &fwd, false).unwrap());
        h.insert(HeaderName::from_static("x-mock-tokens"), HeaderValue::from_static("3"));
        assert_ne!(k0, compute(Endpoint::Chat, "m", BASE.as_bytes(), &h, &fwd, false).unwrap());
    }

    #[test]
    fn only_deterministic_needs_temperature_zero() {
        let h = HeaderMap::new();
        let c = |b: &str| compute(Endpoint::Chat, "m", b.as_bytes(), &h, &[], true);
        assert!(c(BASE).is_ok());
        assert_eq!(c(r#"{"messages":[]}"#), Err(NotCacheable::NotDeterministic), "absent means 1");
        assert_eq!(c(r#"{"messages":[],"temperature":0.2}"#), Err(NotCacheable::NotDeterministic));
        assert!(compute(Endpoint::Embeddings, "m", br#"{"input":"x"}"#, &h, &[], true).is_ok());
        assert_eq!(c("[1]"), Err(NotCacheable::Unreadable));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(300), "]".repeat(300));
        assert_eq!(c(&deep), Err(NotCacheable::Unreadable));
    }

    #[test]
    fn cache_control_directives() {
        let mut h = HeaderMap::new();
        assert_eq!(control(&h), Control::default());
        h.insert(actix_web::http::header::CACHE_CONTROL, HeaderValue::from_static("No-Cache, max-age=30"));
        assert_eq!(control(&h), Control { no_store: false, no_cache: true, max_age: Some(30) });
        h.append(actix_web::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store, max-age=bad, max-age=5"));
        assert_eq!(control(&h), Control { no_store: true, no_cache: true, max_age: Some(5) });
    }
}
