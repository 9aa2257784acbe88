//! The mock's routes besides chat, completions, embeddings, models and the
//! vendors' chat APIs: OpenAI's Responses API and its token counter,
//! Anthropic's `count_tokens`, and OpenAI's images, moderations and speech.
//! The server's route table dispatches here, so it stays one table.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::MockOptions;
use super::body::MockBody;
use super::faults::Controls;
use super::media::{self, Media};
use super::server::{MockReply, listed};
use super::stats::{Stats, bump};
use super::vendors::{self, Vendor};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Native {
    Responses,
    InputTokens,
    /// Anthropic's `count_tokens` (errors in Anthropic's shape).
    CountTokens,
    Media(Media),
}

impl Native {
    /// The route (below `/v1`), if it is one of these; all are `POST`.
    pub(crate) fn route(path: &str) -> Option<Native> {
        match path {
            "/responses" => Some(Native::Responses),
            "/responses/input_tokens" => Some(Native::InputTokens),
            "/messages/count_tokens" => Some(Native::CountTokens),
            p => Media::route(p).map(Native::Media),
        }
    }

    pub(crate) fn count(self, stats: &Stats) {
        match self {
            Native::Responses | Native::InputTokens => bump(&stats.responses_total),
            Native::CountTokens => bump(&stats.count_tokens_total),
            Native::Media(_) => {}
        }
    }

    /// The vendor whose error shape an injected fault takes.
    pub(crate) fn vendor(self) -> Option<Vendor> {
        (self == Native::CountTokens).then_some(Vendor::Anthropic)
    }
}

/// The answer's status and body (JSON, or an event stream), or a whole
/// response of another media type (speech), sent as it is.
pub(crate) fn answer(
    n: Native,
    body: &[u8],
    opts: &MockOptions,
    controls: &Controls,
) -> Result<(StatusCode, MockReply), Box<Response<MockBody>>> {
    let refused = |b: Bytes| Ok((StatusCode::BAD_REQUEST, MockReply::Full(b)));
    let (tokens, tool) = (controls.tokens, controls.tool_call.as_deref());
    match n {
        Native::Responses => match super::responses::answer(body, opts.tokens, tokens, tool) {
            Ok(out) => Ok((StatusCode::OK, listed(out))),
            Err(e) => refused(e.body()),
        },
        Native::InputTokens => match super::responses::input_tokens(body) {
            Ok(b) => Ok((StatusCode::OK, MockReply::Full(b))),
            Err(e) => refused(e.body()),
        },
        Native::CountTokens => match super::responses::count_tokens(body) {
            Ok(b) => Ok((StatusCode::OK, MockReply::Full(b))),
            Err(e) => refused(vendors::error_body(Vendor::Anthropic, 400, &e.message)),
        },
        Native::Media(m) => match media::answer(m, body) {
            Ok((b, "application/json")) => Ok((StatusCode::OK, MockReply::Full(b))),
            Ok((b, media_type)) => {
                let mut r = Response::new(MockBody::full(b));
                r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
                Err(Box::new(r))
            }
            Err(e) => refused(e.body()),
        },
    }
}
