//! `[responses]`, as the rest of the gateway reads it (validated in
//! `validate/cache.rs`).

use std::path::PathBuf;

/// `[responses]`: how long and how much of the Responses API's
/// conversations Sluice keeps (for `previous_response_id` and
/// `GET /v1/responses/{id}`), and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesSettings {
    /// How long a stored response can be continued or read.
    pub ttl_ms: u64,
    /// Every stored conversation together; the oldest go first past it.
    pub max_bytes: usize,
    /// One stored conversation (the whole history up to that response);
    /// a larger one is not stored.
    pub max_entry_bytes: usize,
    /// A redb file the conversations are also written to, so they survive
    /// a restart; `None`: memory only. (With `[shared]`, Redis keeps them.)
    pub store: Option<PathBuf>,
}
