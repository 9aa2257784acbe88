//! Sluice's actors: one concern each, supervised, with no knowledge of HTTP
//! handlers.
//!
//! Each concern lives in its own folder: `state.rs` is the pure state machine
//! (no actix, testable on a paused clock), `detail.rs` (where it has one) its
//! typed `/status` view, `mod.rs` the thin actor over it, `messages.rs` its
//! messages, and `handle.rs` the typed API the request path calls.
//! [`supervision`] holds what every actor shares: the one shell every actor
//! runs in (guarded handlers, timers and futures; restarts within a budget),
//! its restart-surviving facts, and the registry that `/status` reads.
//!
//! The upstream HTTP client the `UpstreamSessions` actor owns the pools of
//! is its own crate, `sluice-upstream`.

pub mod accounts;
pub mod availability;
pub mod circuit_breakers;
pub mod conversations;
pub mod outcome;
pub mod rate_limiter;
pub mod replicas;
pub mod response_cache;
pub mod status;
pub mod supervision;
pub mod topology;
pub mod upstream_sessions;

pub use status::{ActorStatus, GetStatus};
pub use supervision::{ActorMeta, ActorRegistry, ActorState};

use actix::{Arbiter, ArbiterHandle};

/// Every actor of a running gateway and the registry `/status` reads.
pub struct Actors {
    /// The thread the actors run on. They are message-driven and never block,
    /// so one thread serves them all; a busy actor can get its own later.
    arbiter: Arbiter,
    pub registry: ActorRegistry,
    pub sessions: upstream_sessions::SessionsHandle,
    pub breakers: circuit_breakers::BreakersHandle,
    pub availability: availability::AvailabilityHandle,
    pub limiter: rate_limiter::LimiterHandle,
    pub cache: response_cache::CacheHandle,
    pub conversations: conversations::ConversationsHandle,
    /// Several replicas sharing state through Redis (`[shared] redis_url`):
    /// the Redis link, on a thread of its own.
    pub replicas: Option<replicas::ReplicasHandle>,
    replicas_arbiter: Option<Arbiter>,
}

/// What the actors are started with.
pub struct ActorsSpec {
    pub sessions: Vec<Option<sluice_upstream::SessionSpec>>,
    pub breaker: circuit_breakers::BreakerConfig,
    pub availability: availability::AvailabilitySpec,
    pub limiter: rate_limiter::LimiterSpec,
    /// Limits of the response cache (`[cache]`).
    pub cache: response_cache::StoreLimits,
    /// The Responses API's stored conversations (`[responses]`).
    pub conversations: conversations::ConversationsSpec,
    /// `[shared]`; `None`: everything stays in process.
    pub replicas: Option<replicas::ReplicasSpec>,
}

/// Why the actors could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] sluice_upstream::TlsError),
    #[error(transparent)]
    Store(#[from] rate_limiter::store::StoreError),
    #[error(transparent)]
    Replicas(#[from] replicas::ReplicasError),
    #[error(transparent)]
    Conversations(#[from] conversations::disk::DiskError),
}

impl Actors {
    /// Start every actor. Must run inside an actix `System`.
    pub fn start(spec: ActorsSpec) -> Result<Actors, StartError> {
        let arbiter = Arbiter::new();
        let mut registry = ActorRegistry::default();
        let sessions = upstream_sessions::SessionsHandle::start(spec.sessions, &arbiter.handle(), &mut registry)?;
        // Redis traffic gets its own thread, so a slow Redis never delays
        // the other actors' messages.
        let replicas_arbiter = spec.replicas.as_ref().map(|_| Arbiter::new());
        let replicas = match (&spec.replicas, &replicas_arbiter) {
            (Some(s), Some(a)) => Some(replicas::ReplicasHandle::start(s, &a.handle(), &mut registry)?),
            _ => None,
        };
        let labels = spec.availability.labels.clone();
        let breakers = circuit_breakers::BreakersHandle::start(
            spec.breaker.clone(),
            labels.clone(),
            &arbiter.handle(),
            &mut registry,
            replicas.clone(),
        );
        let availability = availability::AvailabilityHandle::start(
            spec.availability,
            sessions.clone(),
            &arbiter.handle(),
            &mut registry,
        );
        let limiter =
            rate_limiter::LimiterHandle::start(spec.limiter, &arbiter.handle(), &mut registry, replicas.as_ref())?;
        let cache = response_cache::CacheHandle::start(spec.cache, &arbiter.handle(), &mut registry);
        let conversations = conversations::ConversationsHandle::start(
            spec.conversations,
            replicas.as_ref(),
            &arbiter.handle(),
            &mut registry,
        )?;
        if let Some(s) = &replicas {
            let spend = limiter.spend().clone();
            let sinks = replicas::Sinks {
                replica: s.replica().to_string(),
                breakers: breakers.clone(),
                accounts: s.accounts_sender(),
                spend: spend.clone(),
                max_cooldown: spec.breaker.cooldown_max.max(spec.breaker.retry_after_cap),
            };
            s.run(spend, sinks);
        }
        Ok(Actors {
            arbiter,
            registry,
            sessions,
            breakers,
            availability,
            limiter,
            cache,
            conversations,
            replicas,
            replicas_arbiter,
        })
    }

    pub fn arbiter(&self) -> ArbiterHandle {
        self.arbiter.handle()
    }

    /// Stop the actor thread (at shutdown, after the HTTP server drained).
    pub fn stop(self) {
        self.arbiter.stop();
        let _ = self.arbiter.join();
        if let Some(a) = self.replicas_arbiter {
            a.stop();
            let _ = a.join();
        }
    }
}
