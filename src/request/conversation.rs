//! The Responses API's conversations: what a request continues, and what
//! it leaves behind for the next turn.
//!
//! Before the upstream call ([`turn`]): the stored conversation that
//! `previous_response_id` names (this key's only: another key's ids are
//! as unknown as expired ones), and the id a translated answer gets. After
//! it ([`Save`]): unless the request said `store: false`, the conversation
//! so far — the stored items, this turn's input, the answer's output — and
//! the Response itself are kept under the Response's id, for the next
//! turn's `previous_response_id` and for `GET /v1/responses/{id}`.
//!
//! A whole answer is stored before it is sent, and a stream's final event
//! (`response.completed`) goes out only once its conversation is stored
//! (the relay waits for [`Save::run`]): a client that continues at once
//! always finds it.

use bytes::Bytes;
use sluice_actors::conversations::ConversationsHandle;
use sonic_rs::JsonValueTrait;

use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::providers::responses::Turn;
use crate::translate::responses::{self, history};

/// The turn of a Responses request (`None` on other routes), and how to
/// save what it answers (`None` when it must not be kept). Both are boxed:
/// they are held across the upstream call, inside every request's future.
pub(super) async fn turn(
    store: &ConversationsHandle,
    owner: &str,
    body: &Bytes,
    endpoint: Endpoint,
) -> Result<(Option<Box<Turn>>, Option<Box<Save>>), GatewayError> {
    if !matches!(endpoint, Endpoint::Responses | Endpoint::InputTokens) {
        return Ok((None, None));
    }
    // The peek already refused deep nesting and anything not an object.
    let field = |k: &str| sonic_rs::get(&body[..], [k]).ok();
    let previous_id = match field("previous_response_id") {
        Some(v) if v.is_null() => None,
        Some(v) => Some(v.as_str().map(str::to_owned).ok_or_else(|| {
            GatewayError::invalid(
                "Invalid type for 'previous_response_id': expected a string.",
                Some("previous_response_id"),
            )
        })?),
        None => None,
    };
    let history = match &previous_id {
        Some(id) => store.get(id, owner).await.map(|c| c.items),
        None => None,
    };
    let turn = Turn {
        id: responses::response_id(u128::from(fastrand::u64(..)) << 64 | u128::from(fastrand::u64(..))),
        created_at: crate::translate::unix_now(),
        previous_id,
        history,
    };
    // `store` defaults to true in the Responses API.
    let keep = endpoint == Endpoint::Responses && field("store").and_then(|v| v.as_bool()) != Some(false);
    let save = match (keep, responses::request::input_items(body)) {
        (true, Some(input)) => Some(Box::new(Save {
            store: store.clone(),
            owner: owner.to_owned(),
            previous: turn.history.clone(),
            input: Bytes::from(input),
        })),
        _ => None,
    };
    Ok((Some(Box::new(turn)), save))
}

/// What saving a turn's answer needs, besides the answer.
pub struct Save {
    store: ConversationsHandle,
    owner: String,
    /// The conversation this turn continued.
    previous: Option<Bytes>,
    /// This turn's input items.
    input: Bytes,
}

impl Save {
    /// Store `response` (a Response object) and the conversation up to it,
    /// under its id. A Response that cannot be stored (too large, or
    /// without an id) is logged and not kept; the answer still goes out.
    pub async fn run(self, response: Bytes, request_id: &str) {
        let Some(id) = response_id(&response) else {
            tracing::warn!(request_id, "a Response without an id: not stored");
            return;
        };
        let output = history::output_items(&response).unwrap_or_else(|| b"[]".to_vec());
        let items = match history::conversation(self.previous.as_deref(), &self.input, &output) {
            Ok(items) => Bytes::from(items),
            Err(e) => {
                tracing::warn!(request_id, response_id = %id, error = %e, "conversation not stored");
                return;
            }
        };
        if let Err(e) = self.store.put(id.clone(), self.owner, response, items).await {
            tracing::warn!(request_id, response_id = %id, error = %e, "conversation not stored");
        }
    }
}

/// `id` of a Response object.
fn response_id(response: &[u8]) -> Option<String> {
    if crate::json::nesting_exceeds(response, crate::json::MAX_DEPTH) {
        return None;
    }
    sonic_rs::get(response, ["id"]).ok().and_then(|v| v.as_str().map(str::to_owned)).filter(|s| !s.is_empty())
}
