//! Auth: the client's key (`Authorization: Bearer` or `x-api-key`) to the
//! policy of a configured `[[keys]]` entry.
//!
//! Keys are stored and looked up only as SHA-256 digests: a plaintext key from
//! the config is hashed at load, so neither memory dumps of the table nor
//! lookup timing reveal a key.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

use crate::config::{Config, KeyConfig};
use crate::error::GatewayError;

/// A model name pattern: `*`, an exact name, or `prefix*`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    All,
    Exact(String),
    Prefix(String),
}

/// What one client key may do, and which limiter scopes and spend slots
/// it counts against (ids of the limiter's and the spend table's, given by
/// name: see docs/decisions/runtime-keys.md).
#[derive(Debug)]
pub struct KeyPolicy {
    pub name: String,
    /// Queue priority: higher waits less.
    pub priority: i32,
    patterns: Vec<Pattern>,
    /// The team it belongs to (runtime keys only).
    pub team: Option<String>,
    /// Its spend slot; `None` until the key table gives it one.
    pub spend: Option<usize>,
    /// Its team's spend slot.
    pub team_spend: Option<usize>,
    /// Limiter scopes of the key across its models, and of its team.
    pub scopes: Vec<usize>,
    /// Limiter scope of the key on one model, by model index.
    pub model_scopes: HashMap<usize, usize>,
}

impl KeyPolicy {
    pub fn new(name: String, models: &[String]) -> KeyPolicy {
        let patterns = models
            .iter()
            .map(|m| {
                if m == "*" {
                    Pattern::All
                } else if let Some(p) = m.strip_suffix('*') {
                    Pattern::Prefix(p.to_string())
                } else {
                    Pattern::Exact(m.clone())
                }
            })
            .collect();
        KeyPolicy {
            name,
            priority: 0,
            patterns,
            team: None,
            spend: None,
            team_spend: None,
            scopes: Vec::new(),
            model_scopes: HashMap::new(),
        }
    }

    pub fn allows(&self, model: &str) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::All => true,
            Pattern::Exact(m) => m == model,
            Pattern::Prefix(p) => model.starts_with(p.as_str()),
        })
    }
}

/// A digest's policy, and until when the digest is accepted (unix
/// seconds): a key's expiry, or a rotated key's grace period.
#[derive(Debug, Clone)]
struct Entry {
    policy: Arc<KeyPolicy>,
    until: Option<u64>,
}

/// Client keys by digest.
#[derive(Debug, Default)]
pub struct KeyTable {
    /// foldhash, not SipHash: looked up on every request, never filled
    /// from what a client sends.
    by_digest: HashMap<[u8; 32], Entry, foldhash::fast::RandomState>,
    /// Set when no keys are configured and `server.allow_anonymous` is true.
    anonymous: Option<Arc<KeyPolicy>>,
}

impl KeyTable {
    /// The config's keys alone, without limiter scopes or spend slots (see
    /// `gateway::keys` for the table requests use).
    pub fn from_config(cfg: &Config) -> KeyTable {
        let mut t = KeyTable::default();
        for k in &cfg.keys {
            t.insert(k.key_sha256, Arc::new(config_policy(k)), None);
        }
        if cfg.keys.is_empty() && cfg.server.allow_anonymous {
            t.anonymous = Some(Arc::new(KeyPolicy::new(ANONYMOUS.into(), &["*".to_string()])));
        }
        t
    }

    /// Accept `digest` as `policy` until `until` (unix seconds), if given.
    pub fn insert(&mut self, digest: [u8; 32], policy: Arc<KeyPolicy>, until: Option<u64>) {
        self.by_digest.insert(digest, Entry { policy, until });
    }

    /// Let every client in as `policy` (no keys configured, and
    /// `server.allow_anonymous`).
    pub fn set_anonymous(&mut self, policy: Arc<KeyPolicy>) {
        self.anonymous = Some(policy);
    }

    /// Is a key with this digest known (live or not)?
    pub fn contains(&self, digest: &[u8; 32]) -> bool {
        self.by_digest.contains_key(digest)
    }

    /// Who is calling, or 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<KeyPolicy>, GatewayError> {
        if let Some(anon) = &self.anonymous {
            return Ok(anon.clone());
        }
        let key = read_key(headers).map_err(|problem| match problem {
            Some(problem) => GatewayError::MalformedApiKey { problem },
            None => GatewayError::MissingApiKey,
        })?;
        let e = self.by_digest.get(&digest(key)).ok_or(GatewayError::InvalidApiKey)?;
        // Expired and past-grace keys read as unknown: nothing tells a
        // holder of an old secret which it was.
        if e.until.is_some_and(|until| unix_now() >= until) {
            return Err(GatewayError::InvalidApiKey);
        }
        Ok(e.policy.clone())
    }
}

/// The anonymous policy's name (and its spend slot's).
pub const ANONYMOUS: &str = "anonymous";

/// A config key's policy, without scopes or spend slot.
pub fn config_policy(k: &KeyConfig) -> KeyPolicy {
    let mut p = KeyPolicy::new(k.name.clone(), &k.models);
    p.priority = k.priority;
    p
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key from `Authorization: Bearer <key>` (scheme case-insensitive) or
/// `x-api-key: <key>`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    read_key(headers).ok()
}

/// The key, or why none could be read: `None` when no key header was sent,
/// else what is wrong with the one that was. The messages never quote the
/// header: a key sent the wrong way is still a secret.
fn read_key(headers: &HeaderMap) -> Result<&str, Option<&'static str>> {
    // Named by constants: actix's `HeaderMap::get("x-api-key")` parses the
    // name, and allocates a copy of it, on every lookup.
    const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
    let bearer = headers.get(AUTHORIZATION).map(|v| {
        // ASCII from here (`to_str`), so the ASCII trim and a byte search
        // for the space say what `trim` and `split_once([' ', '\t'])` said,
        // without decoding characters (~150 instructions fewer per request).
        let v = v.to_str().map_err(|_| NOT_TEXT)?.trim_ascii();
        let split = v.bytes().position(|b| b == b' ' || b == b'\t').map(|i| (&v[..i], &v[i + 1..]));
        match split {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") && !key.trim_ascii().is_empty() => {
                Ok(key.trim_ascii())
            }
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("bearer") => Err(NO_KEY),
            None if v.eq_ignore_ascii_case("bearer") => Err(NO_KEY),
            None if v.is_empty() => Err(EMPTY),
            None => Err(NO_SCHEME),
            Some(_) => Err(OTHER_SCHEME),
        }
    });
    // A bearer key wins: `x-api-key` is looked up (a map probe) only without one.
    let bearer = match bearer {
        Some(Ok(k)) => return Ok(k),
        Some(Err(problem)) => Some(problem),
        None => None,
    };
    let api_key = headers.get(X_API_KEY).map(|v| match v.to_str().map(str::trim_ascii) {
        Ok("") => Err(EMPTY_X_API_KEY),
        Ok(k) => Ok(k),
        Err(_) => Err(NOT_TEXT_X_API_KEY),
    });
    match (bearer, api_key) {
        (_, Some(Ok(k))) => Ok(k),
        (Some(problem), _) | (None, Some(Err(problem))) => Err(Some(problem)),
        (None, None) => Err(None),
    }
}

const NO_SCHEME: &str = "The Authorization header must be `Bearer <key>`: it holds one word with no `Bearer ` \
                         before it. Add the scheme: send `Authorization: Bearer <your Sluice key>`, or the key \
                         alone in the `x-api-key` header.";
const OTHER_SCHEME: &str = "The Authorization header must be `Bearer <key>`: it uses another scheme (such as \
                            Basic), which Sluice does not accept. Send `Authorization: Bearer <your Sluice key>`, \
                            or the key alone in the `x-api-key` header.";
const NO_KEY: &str = "The Authorization header says `Bearer` but holds no key after it; \
                      send `Authorization: Bearer <your Sluice key>`.";
const EMPTY: &str = "The Authorization header is empty; \
                     send `Authorization: Bearer <your Sluice key>`, or the key alone in the `x-api-key` header.";
const NOT_TEXT: &str = "The Authorization header holds characters other than visible ASCII, which a Sluice \
                        key never does; send `Authorization: Bearer <your Sluice key>`.";
const EMPTY_X_API_KEY: &str = "The `x-api-key` header is empty; put your Sluice key in it, or \
                               send `Authorization: Bearer <your Sluice key>`.";
const NOT_TEXT_X_API_KEY: &str = "The `x-api-key` header holds characters other than visible ASCII, which a \
                                  Sluice key never does.";

/// Does the request carry the admin key? Compared as digests, in constant time.
pub fn is_admin(admin_digest: &[u8; 32], headers: &HeaderMap) -> bool {
    let Some(k) = presented_key(headers) else { return false };
    let d = digest(k);
    d.iter().zip(admin_digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_static(k), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn key_extraction() {
        assert_eq!(presented_key(&headers(&[("authorization", "Bearer abc")])), Some("abc"));
        assert_eq!(presented_key(&headers(&[("authorization", "bearer  abc ")])), Some("abc"));
        assert_eq!(presented_key(&headers(&[("x-api-key", "xyz")])), Some("xyz"));
        assert_eq!(presented_key(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(presented_key(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(presented_key(&headers(&[])), None);
    }

    #[test]
    fn malformed_keys_are_told_apart_from_absent_ones() {
        let problem = |pairs: &[(&'static str, &str)]| read_key(&headers(pairs)).err();
        assert_eq!(problem(&[]), Some(None));
        assert_eq!(problem(&[("authorization", "sk-abc")]), Some(Some(NO_SCHEME)));
        assert_eq!(problem(&[("authorization", "Basic abc")]), Some(Some(OTHER_SCHEME)));
        assert_eq!(problem(&[("authorization", "Bearer")]), Some(Some(NO_KEY)));
        assert_eq!(problem(&[("authorization", "bearer \t ")]), Some(Some(NO_KEY)));
        assert_eq!(problem(&[("authorization", " ")]), Some(Some(EMPTY)));
        assert_eq!(problem(&[("x-api-key", " ")]), Some(Some(EMPTY_X_API_KEY)));
        // The Authorization header's problem is the one reported.
        assert_eq!(problem(&[("authorization", "abc"), ("x-api-key", "")]), Some(Some(NO_SCHEME)));
        assert_eq!(read_key(&headers(&[("authorization", "abc"), ("x-api-key", "k")])), Ok("k"));
        assert_eq!(read_key(&headers(&[("authorization", "Bearer\tk")])), Ok("k"));
        // A bearer key wins over `x-api-key`, even a malformed one.
        assert_eq!(read_key(&headers(&[("authorization", "Bearer a"), ("x-api-key", "b")])), Ok("a"));
        assert_eq!(read_key(&headers(&[("authorization", "Bearer a"), ("x-api-key", " ")])), Ok("a"));
        for m in [NO_SCHEME, OTHER_SCHEME, NO_KEY, EMPTY, NOT_TEXT, EMPTY_X_API_KEY, NOT_TEXT_X_API_KEY] {
            assert!(!m.contains("  "), "a line break in the source left a gap: {m}");
        }
    }

    #[test]
    fn patterns() {
        let p = KeyPolicy::new("k".into(), &["gpt-*".into(), "mock".into()]);
        assert!(p.allows("gpt-4o"));
        assert!(p.allows("mock"));
        assert!(!p.allows("mock-2"));
        assert!(!p.allows("claude"));
        assert!(KeyPolicy::new("k".into(), &["*".into()]).allows("anything"));
    }

    #[test]
    fn admin_check() {
        let d = digest("admin-secret");
        assert!(is_admin(&d, &headers(&[("authorization", "Bearer admin-secret")])));
        assert!(!is_admin(&d, &headers(&[("authorization", "Bearer nope")])));
        assert!(!is_admin(&d, &headers(&[])));
    }
}
