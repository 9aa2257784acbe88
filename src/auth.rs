//! Auth: the client's key (`Authorization: Bearer` or `x-api-key`) to the
//! policy of a configured `[[keys]]` entry.
//!
//! Keys are stored and looked up only as SHA-256 digests: a plaintext key from
//! the config is hashed at load, so neither memory dumps of the table nor
//! lookup timing reveal a key.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::header::HeaderMap;
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

/// What one client key may do.
#[derive(Debug)]
pub struct KeyPolicy {
    pub name: String,
    /// Index in `[[keys]]`; `None` for the anonymous policy.
    pub index: Option<usize>,
    /// Queue priority: higher waits less.
    pub priority: i32,
    patterns: Vec<Pattern>,
}

impl KeyPolicy {
    fn new(name: String, models: &[String]) -> KeyPolicy {
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
        KeyPolicy { name, index: None, priority: 0, patterns }
    }

    pub fn allows(&self, model: &str) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::All => true,
            Pattern::Exact(m) => m == model,
            Pattern::Prefix(p) => model.starts_with(p.as_str()),
        })
    }
}

/// Client keys by digest.
#[derive(Debug, Default)]
pub struct KeyTable {
    by_digest: HashMap<[u8; 32], Arc<KeyPolicy>>,
    /// Set when no keys are configured and `server.allow_anonymous` is true.
    anonymous: Option<Arc<KeyPolicy>>,
}

impl KeyTable {
    pub fn from_config(cfg: &Config) -> KeyTable {
        let by_digest = cfg
            .keys
            .iter()
            .enumerate()
            .map(|(i, k): (usize, &KeyConfig)| {
                let mut p = KeyPolicy::new(k.name.clone(), &k.models);
                p.index = Some(i);
                p.priority = k.priority;
                (k.key_sha256, Arc::new(p))
            })
            .collect();
        let anonymous = (cfg.keys.is_empty() && cfg.server.allow_anonymous)
            .then(|| Arc::new(KeyPolicy::new("anonymous".into(), &["*".to_string()])));
        KeyTable { by_digest, anonymous }
    }

    /// Who is calling, or 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<KeyPolicy>, GatewayError> {
        if let Some(anon) = &self.anonymous {
            return Ok(anon.clone());
        }
        let key = presented_key(headers).ok_or(GatewayError::MissingApiKey)?;
        self.by_digest.get(&digest(key)).cloned().ok_or(GatewayError::InvalidApiKey)
    }
}

pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key from `Authorization: Bearer <key>` (scheme case-insensitive) or
/// `x-api-key: <key>`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            let k = v[7..].trim();
            if !k.is_empty() {
                return Some(k);
            }
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty())
}

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
