//! A cached credential that refreshes itself: the one mechanism behind AWS
//! web-identity credentials, Google access tokens and Entra ID tokens.
//!
//! Rules, in the order a caller meets them:
//! - a token fresher than `skew` before its expiry is returned at once;
//! - a token inside the skew window but not yet expired is still returned to
//!   every caller, and the first caller to see it stale refreshes it (the
//!   others do not wait: they keep using the valid token);
//! - with no valid token, callers wait for ONE refresh: the first caller
//!   runs it while holding the refresh lock, the others queue on that lock
//!   and, when they get it, find the new token (or the refresh's error) and
//!   do not refresh again.
//!
//! The refresh runs in the caller's task, not a spawned one: a caller that
//! is cancelled (its client hung up) drops its refresh and releases the lock,
//! and the next waiter starts a fresh one, so no refresh is ever orphaned.
//! Times are tokio [`Instant`]s so the tests run on a paused clock.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::CredentialError;

/// A credential value and when it stops being valid (`None`: never, as for
/// a static key).
#[derive(Clone)]
pub struct Token<T> {
    pub value: T,
    pub expires_at: Option<Instant>,
}

impl<T> Token<T> {
    pub fn new(value: T, expires_at: Option<Instant>) -> Self {
        Token { value, expires_at }
    }

    /// A token valid for `ttl` from now.
    pub fn valid_for(value: T, ttl: Duration) -> Self {
        Token { value, expires_at: Some(Instant::now() + ttl) }
    }
}

impl<T> fmt::Debug for Token<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value is a secret; only its lifetime is worth printing.
        f.debug_struct("Token").field("value", &"***").field("expires_at", &self.expires_at).finish()
    }
}

/// Where fresh tokens come from: one call to an identity provider.
pub trait Refresh: Send + Sync {
    type Value: Clone + Send + Sync;
    fn fetch(&self) -> impl Future<Output = Result<Token<Self::Value>, CredentialError>> + Send;
}

/// Counts kept for `/status` and for tests; no values, no secrets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenStats {
    pub refreshes: u64,
    pub failures: u64,
}

struct State<T> {
    token: Option<Token<T>>,
    /// How long before its expiry this token counts as stale: the cache's
    /// skew, or half the token's lifetime when that is shorter (a token
    /// issued for 2 minutes would otherwise be "stale" from birth and
    /// refreshed on every call).
    window: Duration,
    /// Bumped by every finished refresh, success or failure: a waiter that
    /// sees it moved knows a refresh ran while it queued.
    generation: u64,
    last_error: Option<Arc<CredentialError>>,
    stats: TokenStats,
}

/// A token cache over a [`Refresh`] source. Share it behind an `Arc`.
pub struct TokenCache<R: Refresh> {
    source: R,
    skew: Duration,
    // A std mutex: it is never held across an await, only to read or swap.
    state: Mutex<State<R::Value>>,
    // Held for the whole refresh: the single-flight gate.
    refresh: tokio::sync::Mutex<()>,
}

/// How long before expiry a token counts as stale. Five minutes is what
/// Google's and AWS's own SDKs use: long enough that a slow refresh still
/// ends before the old token dies.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(300);

enum Look<T> {
    Fresh(T),
    /// Valid but inside the skew window.
    Stale(T),
    Missing,
}

impl<R: Refresh> TokenCache<R> {
    pub fn new(source: R, skew: Duration) -> Self {
        TokenCache {
            source,
            skew,
            state: Mutex::new(State {
                token: None,
                window: skew,
                generation: 0,
                last_error: None,
                stats: TokenStats::default(),
            }),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    pub fn source(&self) -> &R {
        &self.source
    }

    pub fn stats(&self) -> TokenStats {
        self.lock().stats
    }

    /// A valid token, refreshing it first when needed (see the module doc).
    pub async fn get(&self) -> Result<R::Value, CredentialError> {
        let generation = match self.look() {
            (Look::Fresh(v), _) => return Ok(v),
            (Look::Stale(v), _) => {
                // Someone is already refreshing: keep using the valid token.
                let Ok(_gate) = self.refresh.try_lock() else { return Ok(v) };
                if let (Look::Fresh(v), _) = self.look() {
                    return Ok(v);
                }
                return match self.run_refresh().await {
                    Ok(fresh) => Ok(fresh),
                    Err(e) => {
                        // Still valid: serve it and let the next caller try again.
                        tracing::warn!(error = %e, "credential refresh failed; using the still-valid token");
                        Ok(v)
                    }
                };
            }
            (Look::Missing, generation) => generation,
        };
        let _gate = self.refresh.lock().await;
        match self.look() {
            (Look::Fresh(v) | Look::Stale(v), _) => return Ok(v),
            (Look::Missing, now) if now != generation => {
                // The refresh we queued behind failed: report it, do not
                // hammer the identity provider once per waiter.
                if let Some(e) = self.lock().last_error.clone() {
                    return Err(CredentialError::Shared(e));
                }
            }
            (Look::Missing, _) => {}
        }
        self.run_refresh().await
    }

    /// Forget the current token, e.g. after the upstream answered 401 to
    /// it; the next [`get`](Self::get) refreshes (still one at a time).
    pub fn invalidate(&self) {
        self.lock().token = None;
    }

    /// Forget the current token only if it is `used`: when many requests
    /// sent with one token are refused together, the first invalidates it
    /// and refreshes, and the others, finding a newer token, keep it (one
    /// refresh for the whole wave, not one per refusal).
    pub fn invalidate_if(&self, used: &R::Value)
    where
        R::Value: PartialEq,
    {
        let mut st = self.lock();
        if st.token.as_ref().is_some_and(|t| t.value == *used) {
            st.token = None;
        }
    }

    /// How long the current token has left (`None`: no token, or one that never expires).
    pub fn expires_in(&self) -> Option<Duration> {
        let st = self.lock();
        st.token.as_ref()?.expires_at.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// The last refresh's error, while no refresh has succeeded since.
    pub fn last_error(&self) -> Option<Arc<CredentialError>> {
        self.lock().last_error.clone()
    }

    async fn run_refresh(&self) -> Result<R::Value, CredentialError> {
        let result = self.source.fetch().await;
        let mut st = self.lock();
        st.generation += 1;
        match result {
            Ok(token) => {
                st.stats.refreshes += 1;
                st.last_error = None;
                let lifetime = token.expires_at.map(|at| at.saturating_duration_since(Instant::now()));
                st.window = lifetime.map_or(self.skew, |l| self.skew.min(l / 2));
                let value = token.value.clone();
                st.token = Some(token);
                Ok(value)
            }
            Err(e) => {
                st.stats.failures += 1;
                let e = Arc::new(e);
                st.last_error = Some(e.clone());
                Err(CredentialError::Shared(e))
            }
        }
    }

    fn look(&self) -> (Look<R::Value>, u64) {
        let st = self.lock();
        let now = Instant::now();
        let look = match &st.token {
            Some(Token { value, expires_at: None }) => Look::Fresh(value.clone()),
            Some(Token { value, expires_at: Some(at) }) if now + st.window < *at => Look::Fresh(value.clone()),
            Some(Token { value, expires_at: Some(at) }) if now < *at => Look::Stale(value.clone()),
            _ => Look::Missing,
        };
        (look, st.generation)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<R::Value>> {
        // A panic while holding this lock cannot leave the state half-written
        // (every write is a single assignment), so a poisoned lock is safe to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<R: Refresh> fmt::Debug for TokenCache<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("TokenCache")
            .field("skew", &self.skew)
            .field("expires_at", &st.token.as_ref().and_then(|t| t.expires_at))
            .field("stats", &st.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A source whose value the test can rotate and whose failures it can
    /// switch on; each fetch takes 200 ms of (paused) time.
    struct Rotating {
        value: Mutex<String>,
        fail: Mutex<bool>,
        ttl: Duration,
        calls: AtomicU64,
    }

    impl Rotating {
        fn new(value: &str, ttl: Duration) -> Self {
            Rotating { value: Mutex::new(value.into()), fail: Mutex::new(false), ttl, calls: AtomicU64::new(0) }
        }
    }

    impl Refresh for Rotating {
        type Value = String;
        async fn fetch(&self) -> Result<Token<String>, CredentialError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            if *self.fail.lock().unwrap() {
                return Err(CredentialError::Rejected { endpoint: "test".into(), status: 401, message: "no".into() });
            }
            Ok(Token::valid_for(self.value.lock().unwrap().clone(), self.ttl))
        }
    }

    fn cache(ttl_s: u64, skew_s: u64) -> Arc<TokenCache<Rotating>> {
        Arc::new(TokenCache::new(Rotating::new("v1", Duration::from_secs(ttl_s)), Duration::from_secs(skew_s)))
    }

    async fn all(cache: &Arc<TokenCache<Rotating>>, n: usize) -> Vec<Result<String, CredentialError>> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.get().await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn first_use_by_100_callers_runs_one_refresh() {
        let c = cache(3600, 300);
        let got = all(&c, 100).await;
        assert!(got.iter().all(|r| r.as_deref().ok() == Some("v1")));
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn hundred_callers_at_expiry_run_exactly_one_refresh() {
        let c = cache(3600, 300);
        c.get().await.unwrap();
        *c.source().value.lock().unwrap() = "v2".into();
        // Past the expiry itself: nobody may use the old token any more.
        tokio::time::advance(Duration::from_secs(3601)).await;
        let got = all(&c, 100).await;
        assert!(got.iter().all(|r| r.as_deref().ok() == Some("v2")), "{got:?}");
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 2);
        assert_eq!(c.stats(), TokenStats { refreshes: 2, failures: 0 });
    }

    #[tokio::test(start_paused = true)]
    async fn stale_token_serves_everyone_while_one_caller_refreshes() {
        let c = cache(3600, 300);
        c.get().await.unwrap();
        *c.source().value.lock().unwrap() = "v2".into();
        // Inside the skew window, not yet expired.
        tokio::time::advance(Duration::from_secs(3400)).await;
        let refresher = {
            let c = c.clone();
            tokio::spawn(async move { c.get().await })
        };
        tokio::task::yield_now().await;
        // While the refresh is in flight (it takes 200 ms), others get the old token at once.
        let during = all(&c, 50).await;
        assert!(during.iter().all(|r| r.as_deref().ok() == Some("v1")), "{during:?}");
        assert_eq!(refresher.await.unwrap().unwrap(), "v2");
        assert_eq!(c.get().await.unwrap(), "v2");
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn rotated_credential_is_picked_up_on_the_next_refresh() {
        let c = cache(600, 60);
        assert_eq!(c.get().await.unwrap(), "v1");
        *c.source().value.lock().unwrap() = "rotated".into();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(c.get().await.unwrap(), "v1", "fresh tokens are not refetched");
        tokio::time::advance(Duration::from_secs(450)).await;
        assert_eq!(c.get().await.unwrap(), "rotated");
        // invalidate() forces the rotation through at once.
        *c.source().value.lock().unwrap() = "rotated-again".into();
        c.invalidate();
        assert_eq!(c.get().await.unwrap(), "rotated-again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_is_reported_to_every_waiter_once() {
        let c = cache(3600, 300);
        *c.source().fail.lock().unwrap() = true;
        let got = all(&c, 20).await;
        assert!(got.iter().all(|r| matches!(r, Err(CredentialError::Shared(_)))));
        let msg = got[0].as_ref().unwrap_err().to_string();
        assert!(msg.contains("refused the credential (HTTP 401)"), "{msg}");
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 1, "waiters must not retry one by one");
        // The next wave tries again, and succeeds once the source recovers.
        *c.source().fail.lock().unwrap() = false;
        assert_eq!(c.get().await.unwrap(), "v1");
        assert_eq!(c.stats(), TokenStats { refreshes: 1, failures: 1 });
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_of_a_valid_token_keeps_serving_it() {
        let c = cache(3600, 300);
        c.get().await.unwrap();
        tokio::time::advance(Duration::from_secs(3400)).await;
        *c.source().fail.lock().unwrap() = true;
        assert_eq!(c.get().await.unwrap(), "v1");
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(c.get().await.is_err(), "an expired token is never served");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_refresher_does_not_strand_the_waiters() {
        let c = cache(3600, 300);
        let first = {
            let c = c.clone();
            tokio::spawn(async move { c.get().await })
        };
        tokio::task::yield_now().await;
        let second = {
            let c = c.clone();
            tokio::spawn(async move { c.get().await })
        };
        tokio::task::yield_now().await;
        first.abort();
        assert_eq!(second.await.unwrap().unwrap(), "v1");
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_lived_token_is_not_stale_from_birth() {
        // 120 s tokens under a 300 s skew: fresh for their first half.
        let c = cache(120, 300);
        c.get().await.unwrap();
        tokio::time::advance(Duration::from_secs(50)).await;
        all(&c, 20).await;
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(20)).await;
        c.get().await.unwrap();
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 2, "past half its life: refreshed early");
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_refused_token_is_invalidated() {
        let c = cache(3600, 300);
        let old = c.get().await.unwrap();
        *c.source().value.lock().unwrap() = "v2".into();
        c.invalidate_if(&old);
        assert_eq!(c.get().await.unwrap(), "v2");
        // A late refusal of the old token leaves the new one alone.
        c.invalidate_if(&old);
        assert_eq!(c.get().await.unwrap(), "v2");
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 2);
        assert!(c.expires_in().is_some_and(|d| d > Duration::from_secs(3500)));
    }

    #[test]
    fn debug_never_shows_the_value() {
        let t = Token::new("sk-very-secret".to_string(), None);
        assert!(!format!("{t:?}").contains("very-secret"));
        let c = TokenCache::new(Rotating::new("sk-very-secret", Duration::from_secs(1)), DEFAULT_SKEW);
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
