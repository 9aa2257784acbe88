//! The limiter interface the request path uses, so that a shared backend
//! (Redis, for several replicas) can replace the in-process table.
//!
//! `admit_now` answers at once when the backend can decide without I/O (the
//! in-process table always can); a networked backend returns `None` and
//! answers through `admit`, which it overrides.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::table::{Headroom, Refusal};

/// A decision that needed I/O.
pub type AdmitFuture = Pin<Box<dyn Future<Output = Result<bool, Refusal>>>>;

pub trait LimiterBackend: Send + Sync + 'static {
    /// Decide at once if possible: `Ok(true)` admitted holding concurrency
    /// slots, `Ok(false)` admitted without; `None` when it needs I/O.
    fn admit_now(&self, scopes: &[usize], tokens: u64) -> Option<Result<bool, Refusal>>;

    /// Decide with I/O (a networked backend); only called after `admit_now`
    /// returned `None`.
    fn admit_later(&self, _scopes: Vec<usize>, _tokens: u64) -> AdmitFuture {
        Box::pin(async { Ok(false) })
    }

    /// Give back concurrency slots.
    fn release(&self, scopes: &[usize]);

    /// Replace a token estimate by the real count.
    fn correct(&self, scopes: &[usize], estimated: u64, actual: u64);

    /// Give back the request an admission counted (its tokens go back
    /// through [`LimiterBackend::correct`]): the admission was never used.
    fn refund_request(&self, _scopes: &[usize]) {}

    /// The tightest remaining limits among `scopes`.
    fn headroom(&self, scopes: &[usize]) -> Headroom;

    fn name(&self) -> &'static str;
}

/// Admit one request needing about `tokens` tokens in every scope, or refuse
/// it (all scopes or none). No allocation or await when the backend can
/// decide at once.
pub async fn admit(backend: &Arc<dyn LimiterBackend>, scopes: &[usize], tokens: u64) -> Result<Grant, Refusal> {
    let slots = match backend.admit_now(scopes, tokens) {
        Some(r) => r?,
        None => backend.admit_later(scopes.to_vec(), tokens).await?,
    };
    Ok(Grant::new(backend.clone(), scopes.to_vec(), tokens, slots))
}

/// An admission: holds its concurrency slots until dropped, and settles its
/// token estimate against the real count.
pub struct Grant {
    backend: Arc<dyn LimiterBackend>,
    scopes: Vec<usize>,
    estimated_tokens: u64,
    holds_slots: bool,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("scopes", &self.scopes).field("tokens", &self.estimated_tokens).finish()
    }
}

impl Grant {
    pub fn new(
        backend: Arc<dyn LimiterBackend>,
        scopes: Vec<usize>,
        estimated_tokens: u64,
        holds_slots: bool,
    ) -> Grant {
        Grant { backend, scopes, estimated_tokens, holds_slots }
    }

    pub fn scopes(&self) -> &[usize] {
        &self.scopes
    }

    pub fn estimated_tokens(&self) -> u64 {
        self.estimated_tokens
    }

    /// Replace the token estimate by the real count.
    pub fn settle(&mut self, actual_tokens: u64) {
        if actual_tokens != self.estimated_tokens {
            self.backend.correct(&self.scopes, self.estimated_tokens, actual_tokens);
            self.estimated_tokens = actual_tokens;
        }
    }

    /// Give back the concurrency slots now (the request is over), while
    /// its token count is still to be settled.
    pub fn release_slots(&mut self) {
        if std::mem::replace(&mut self.holds_slots, false) {
            self.backend.release(&self.scopes);
        }
    }

    /// Undo the admission: its request and its tokens are given back, its
    /// slots released (it was granted to a request that had already left).
    pub fn refund(mut self) {
        self.backend.refund_request(&self.scopes);
        self.settle(0);
    }

    /// The limits left after this admission, for the response headers.
    pub fn headroom(&self) -> Headroom {
        self.backend.headroom(&self.scopes)
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if self.holds_slots {
            self.backend.release(&self.scopes);
        }
    }
}
