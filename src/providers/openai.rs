//! Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, Groq, Together, …).
//! The client's body bytes go out untouched unless `model` must be renamed or
//! usage must be requested on a stream; responses come back as they are.
//!
//! With `responses = true` the upstream also serves the Responses API, and
//! `/v1/responses` (and `/v1/responses/input_tokens`) go there the same
//! way. The one change Sluice may make there: a request continuing a
//! conversation Sluice keeps (`previous_response_id`) gets that
//! conversation spliced into its `input`, since the upstream may never
//! have seen it (an earlier turn may have been served elsewhere).

use bytes::Bytes;
use http::Uri;
use sluice_upstream::{SessionSpec, UpstreamClient};

use super::errors::ErrorStyle;
use super::events;
use super::rewrite::rewrite;
use super::transport::{self, HttpUpstream};
use super::{Call, Provider, Reply};
use crate::config::ProviderConfig;
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::translate::responses::history;
use crate::usage;

pub struct OpenAi {
    up: HttpUpstream,
    /// Chat, completions, embeddings, images, moderations, speech,
    /// transcriptions, translations.
    uris: [Uri; 8],
    /// `/responses` and `/responses/input_tokens`, when the upstream serves them.
    responses: Option<[Uri; 2]>,
    files: bool,
}

impl OpenAi {
    pub fn new(cfg: &ProviderConfig) -> Result<OpenAi, String> {
        let up = HttpUpstream::new(cfg, &[], ErrorStyle::OpenAi)?;
        let uri = |e: Endpoint| up.uri(&cfg.name, e.path());
        let uris = [
            uri(Endpoint::Chat)?,
            uri(Endpoint::Completions)?,
            uri(Endpoint::Embeddings)?,
            uri(Endpoint::Images)?,
            uri(Endpoint::Moderations)?,
            uri(Endpoint::Speech)?,
            uri(Endpoint::Transcriptions)?,
            uri(Endpoint::Translations)?,
        ];
        let responses = match cfg.responses {
            true => Some([uri(Endpoint::Responses)?, uri(Endpoint::InputTokens)?]),
            false => None,
        };
        Ok(OpenAi { up, uris, responses, files: cfg.files })
    }

    /// Does the upstream serve the Files and Batch APIs (`files = true`)?
    pub fn serves_files(&self) -> bool {
        self.files
    }

    /// Its credentials and headers, for the Files and Batch APIs.
    pub fn upstream(&self) -> &HttpUpstream {
        &self.up
    }

    /// Does the upstream serve the Responses API (`responses = true`)?
    pub fn serves_responses(&self) -> bool {
        self.responses.is_some()
    }

    fn uri(&self, p: &Provider, e: Endpoint) -> Result<&Uri, GatewayError> {
        match e {
            Endpoint::Chat | Endpoint::Messages => Ok(&self.uris[0]),
            Endpoint::Completions => Ok(&self.uris[1]),
            Endpoint::Embeddings => Ok(&self.uris[2]),
            Endpoint::Images => Ok(&self.uris[3]),
            Endpoint::Moderations => Ok(&self.uris[4]),
            Endpoint::Speech => Ok(&self.uris[5]),
            Endpoint::Transcriptions => Ok(&self.uris[6]),
            Endpoint::Translations => Ok(&self.uris[7]),
            Endpoint::Responses | Endpoint::InputTokens => {
                let [responses, input_tokens] = self.responses.as_ref().ok_or_else(|| GatewayError::Internal {
                    detail: format!("provider `{}` does not serve the Responses API", p.name),
                })?;
                Ok(if e == Endpoint::Responses { responses } else { input_tokens })
            }
            Endpoint::CountTokens | Endpoint::Files | Endpoint::Batches => Err(super::unsupported_endpoint(p, e)),
        }
    }

    pub fn secrets(&self) -> &[String] {
        self.up.secrets()
    }

    pub fn session_spec(&self, cfg: &ProviderConfig) -> SessionSpec {
        let warm = self.up.uri(&cfg.name, "/models").ok();
        self.up.session_spec(cfg, warm, &self.uris[0])
    }

    #[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
    pub fn send(
        &self,
        p: &Provider,
        call: &Call<'_>,
        client: &UpstreamClient,
    ) -> impl Future<Output = Result<Reply, GatewayError>> {
        async move {
            if let Some(u) = call.upload {
                let uri = self.uri(p, call.endpoint)?;
                return super::upload::send(&self.up, p, call, client, uri, u).await;
            }
            // The id of a conversation spliced in: the answer must still say it
            // continued it, though the upstream was not told.
            let continued = call.turn.filter(|t| t.history.is_some()).and_then(|t| t.previous_id.as_deref());
            let body = match call.turn.and_then(|t| t.history.as_ref()) {
                // A conversation Sluice keeps: sent whole, under the upstream's model name.
                Some(h) => Bytes::from(
                    history::expand(call.body, h, call.upstream_model)
                        .map_err(|e| GatewayError::invalid(format!("Invalid Responses request: {e}"), Some("input")))?,
                ),
                None => rewrite(call.body, call.peek, call.upstream_model, call.endpoint.asks_stream_usage()),
            };
            let headers = self.up.headers(call, call.peek.stream);
            let uri = self.uri(p, call.endpoint)?;
            let resp = self.up.send(p, call.timeouts, client, uri, &headers, body).await?;
            if call.peek.stream && resp.event_stream {
                let events = events::event_stream(resp.body, resp.permit, p);
                return Ok(Reply::Stream(match continued {
                    Some(id) => previous_id_restored(events, id),
                    None => events,
                }));
            }
            let bytes =
                transport::read_body(p, &resp.timeouts, resp.body, p.max_response_bytes, false, resp.deadline).await?;
            drop(resp.permit);
            // Audio is not JSON; everything else must be a well-formed answer.
            let usage_at = match call.endpoint {
                Endpoint::Speech => None,
                _ => transport::check_answer(p, &bytes, self.up.secrets())?,
            };
            let usage = match call.endpoint {
                // A Response object's `usage` is read by its path: `metadata`
                // and the echoed request members may follow it.
                Endpoint::Responses => history::usage_from_body(&bytes).map(Into::into),
                Endpoint::InputTokens => Some(usage::Usage::default()),
                // Audio: no usage in it (the gateway counts the input).
                Endpoint::Speech => None,
                _ => usage::from_checked(&bytes, usage_at).map_err(|e| GatewayError::UpstreamProtocol {
                    provider: p.name.clone(),
                    detail: format!("the response body is not valid JSON ({e})"),
                })?,
            };
            let bytes = match continued {
                Some(id) => restore_previous_id(bytes, id),
                None => bytes,
            };
            Ok(Reply::Complete { body: bytes, usage })
        }
    }
}

/// `"previous_response_id":null` (as the upstream wrote it, not having been
/// told) → the id the client continued, in a Response or its events.
fn restore_previous_id(b: Bytes, id: &str) -> Bytes {
    let mut with = Vec::with_capacity(id.len() + 32);
    with.extend_from_slice(b"\"previous_response_id\":");
    crate::translate::write_json(&mut with, &id);
    let mut out: Option<Vec<u8>> = None;
    for null in [&b"\"previous_response_id\":null"[..], &b"\"previous_response_id\": null"[..]] {
        let cur = out.as_deref().unwrap_or(&b[..]);
        if memchr::memmem::find(cur, null).is_none() {
            continue;
        }
        let mut next = Vec::with_capacity(cur.len() + id.len());
        let mut rest = cur;
        while let Some(i) = memchr::memmem::find(rest, null) {
            next.extend_from_slice(&rest[..i]);
            next.extend_from_slice(&with);
            rest = &rest[i + null.len()..];
        }
        next.extend_from_slice(rest);
        out = Some(next);
    }
    out.map_or(b, Bytes::from)
}

/// [`restore_previous_id`] over every run of a stream.
fn previous_id_restored(events: super::EventStream, id: &str) -> super::EventStream {
    use futures_util::StreamExt;
    let id = id.to_owned();
    // The connection's stopper stays with the stream (a departed client's
    // stream is half-closed and counted).
    let stopper = events.stopper();
    super::EventStream::new(events.map(move |run| run.map(|b| restore_previous_id(b, &id))).boxed_local())
        .with_stopper(stopper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_continued_id_is_put_back() {
        let b = Bytes::from_static(br#"{"id":"r2","previous_response_id":null,"x":{"previous_response_id": null}}"#);
        assert_eq!(
            &restore_previous_id(b, "resp_\"1")[..],
            br#"{"id":"r2","previous_response_id":"resp_\"1","x":{"previous_response_id":"resp_\"1"}}"#
        );
        let kept = Bytes::from_static(br#"{"previous_response_id":"resp_0"}"#);
        assert_eq!(restore_previous_id(kept.clone(), "resp_1").as_ptr(), kept.as_ptr());
    }
}
