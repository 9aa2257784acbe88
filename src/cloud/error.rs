//! One error type for every way a credential can fail to appear.
//!
//! Messages name the source (a file path, an environment variable, an
//! endpoint) and what to do, never a secret: the variants hold no secret
//! field, so no `Display` of them can leak one.

use std::sync::Arc;

/// Why a credential or token could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// Nothing configured where we looked; the message lists the places.
    #[error("no {cloud} credentials found: {tried}")]
    Missing { cloud: &'static str, tried: String },
    /// A credential file could not be read or parsed.
    #[error("credential file {path}: {message}")]
    File { path: String, message: String },
    /// A configured value has the wrong shape (a key, a URL, a duration).
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
    /// The identity endpoint could not be reached or answered garbage.
    #[error("{endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    /// The identity endpoint answered with an error status.
    #[error("{endpoint} refused the credential (HTTP {status}): {message}")]
    Rejected { endpoint: String, status: u16, message: String },
    /// A refresh that other callers waited on failed; they all see its error.
    #[error("{0}")]
    Shared(Arc<CredentialError>),
}

impl CredentialError {
    /// May the same call succeed later without a change of configuration?
    /// Unreachable endpoints, 429 and 5xx: yes. Bad files, refused keys: no.
    pub fn retryable(&self) -> bool {
        match self {
            CredentialError::Transport { .. } => true,
            CredentialError::Rejected { status, .. } => *status == 429 || *status >= 500,
            CredentialError::Missing { .. } | CredentialError::File { .. } | CredentialError::Invalid { .. } => false,
            CredentialError::Shared(inner) => inner.retryable(),
        }
    }
}

/// At most `max` characters of an identity provider's error text: enough to
/// say what was wrong, bounded so a hostile endpoint cannot flood the logs.
pub(crate) fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
