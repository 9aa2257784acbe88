//! How the clouds check who is calling, for the mock to do the same
//! (issue 16): each check is a pure function of the request's parts and
//! the time, answering either "let it through" or the cloud's own refusal
//! (status, headers, body), so the mock's routes only have to call it.
//!
//! - [`sigv4`]: AWS SigV4, recomputed independently of the signer and checked
//!   against AWS's published test suite.
//! - [`google`]: Google's token endpoint (JWT-bearer assertions) and the
//!   bearer tokens it issued.
//! - [`azure`]: the `api-key` header and Entra ID client-credentials tokens.

pub mod azure;
pub mod google;
pub mod sigv4;

/// A cloud's refusal, shaped as that cloud shapes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Rejection {
    pub(crate) fn json(status: u16, body: String) -> Self {
        Rejection { status, headers: vec![("content-type", "application/json".to_owned())], body }
    }
}

/// Opaque bearer tokens a mock identity provider issued, with their expiry.
#[derive(Default)]
pub(crate) struct Issued {
    tokens: std::sync::Mutex<std::collections::HashMap<String, std::time::SystemTime>>,
    counter: std::sync::atomic::AtomicU64,
}

impl Issued {
    /// A fresh token (a prefix, a counter and 64 random bits) valid for `ttl`.
    pub(crate) fn issue(&self, prefix: &str, now: std::time::SystemTime, ttl: std::time::Duration) -> String {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("{prefix}{n}.{:016x}", fastrand::u64(..));
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        // Forget expired tokens so a long test run does not grow the table.
        tokens.retain(|_, expiry| *expiry > now);
        tokens.insert(token.clone(), now + ttl);
        token
    }

    pub(crate) fn is_valid(&self, token: &str, now: std::time::SystemTime) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.get(token).is_some_and(|expiry| *expiry > now)
    }

    /// Forget every token issued (as when an app's secret is rotated or a
    /// token revoked): the next call with one is refused.
    pub(crate) fn revoke_all(&self) {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub(crate) fn total(&self) -> u64 {
        self.counter.load(std::sync::atomic::Ordering::Relaxed)
    }
}
