//! What the three clouds need before a request can leave: credentials that
//! refresh themselves, request signing, endpoint URLs and the clouds' own
//! wire formats (docs/decisions/clouds.md).
//!
//! Self-contained on purpose: it depends on `config` (for [`Secret`] and
//! [`Env`]) and on no part of the request path, so providers and the mock
//! can call it without either knowing the other.
//!
//! - [`token`]: a cached token refreshed before expiry, one refresh in flight.
//! - [`transport`]: the one trait every identity-provider call goes through.
//! - [`aws`]: credentials (env, profiles, web identity), SigV4, event streams.
//! - [`google`]: service-account JWTs, application-default credentials;
//!   [`vertex`]: Vertex AI endpoint URLs.
//! - [`azure`]: Azure OpenAI URLs, Entra ID tokens, content-filter errors.
//!
//! [`Secret`]: crate::config::Secret
//! [`Env`]: crate::config::Env

pub mod aws;
pub mod azure;
mod error;
pub mod google;
pub mod token;
pub mod transport;
pub mod vertex;

pub use error::CredentialError;
