//! The token counters (`POST /v1/messages/count_tokens`,
//! `POST /v1/responses/input_tokens`) for a model none of whose
//! deployments can count: an estimate with the tokenizer
//! ([`crate::tokens::prompt_tokens`]), in the shape the client's API
//! answers with. Never a made-up 0: a prompt always has tokens.

use bytes::Bytes;

use crate::endpoint::Endpoint;
use crate::providers::responses::Turn;

/// The estimate's body for `endpoint` (one of the counters).
pub(super) async fn estimate(body: &Bytes, endpoint: Endpoint, turn: Option<&Turn>) -> Bytes {
    let history = turn.and_then(|t| t.history.clone());
    let n = crate::tokens::prompt_tokens(body.clone(), history).await.max(1);
    Bytes::from(match endpoint {
        Endpoint::InputTokens => format!("{{\"object\":\"response.input_tokens\",\"input_tokens\":{n}}}"),
        _ => format!("{{\"input_tokens\":{n}}}"),
    })
}
