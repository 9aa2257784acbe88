//! The built-in `mock` provider: answers in process, with no network, from
//! the same deterministic generator as `sluice mock`, so a newcomer sees a
//! full round trip (stream and non-stream, usage included) offline.
//!
//! Per-request controls, read from the client's headers when the provider's
//! `forward_headers` lets them through (as for any provider): `x-mock-delay-ms`
//! (before the answer or first event), `x-mock-chunk-delay-ms` (between
//! events), `x-mock-tokens` (answer length) and `x-mock-tool-call: <name>`
//! (answer with a call of that tool, when the request offers tools). Fault
//! injection lives in the standalone `sluice mock` server.

use std::time::Duration;

use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;

use super::rewrite::rewrite;
use super::{Call, HeaderForward, Provider, Reply};
use crate::config::MockProviderConfig;
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::mock::generate::{self, GenRequest};
use crate::usage::Usage;

pub struct MockProvider {
    cfg: MockProviderConfig,
    forward: HeaderForward,
    /// The Files and Batch APIs' files and batches (in memory, per provider).
    store: crate::mock::files::FileStore,
}

/// Longest delay a client may ask of the built-in mock.
const MAX_DELAY_MS: u64 = 60_000;

impl MockProvider {
    pub fn new(cfg: MockProviderConfig, forward: HeaderForward) -> Self {
        MockProvider { cfg, forward, store: Default::default() }
    }

    fn header_u64(&self, h: &HeaderMap, name: &str) -> Option<u64> {
        if !self.forward.allows(name) {
            return None;
        }
        h.get(name)?.to_str().ok()?.trim().parse().ok()
    }

    pub async fn send(&self, p: &Provider, call: &Call<'_>) -> Result<Reply, GatewayError> {
        let h = call.client_headers;
        let delay = self.header_u64(h, "x-mock-delay-ms").unwrap_or(self.cfg.delay_ms).min(MAX_DELAY_MS);
        let chunk_delay =
            self.header_u64(h, "x-mock-chunk-delay-ms").unwrap_or(self.cfg.chunk_delay_ms).min(MAX_DELAY_MS);
        let tokens = self.header_u64(h, "x-mock-tokens").map(|t| t.min(u32::MAX as u64) as u32);
        if delay > 0 {
            let d = Duration::from_millis(delay);
            if d > call.timeouts.first_byte {
                tokio::time::sleep(call.timeouts.first_byte).await;
                return Err(GatewayError::UpstreamTimeout {
                    provider: p.name.clone(),
                    phase: crate::error::TimeoutPhase::FirstByte,
                    ms: call.timeouts.first_byte.as_millis() as u64,
                });
            }
            tokio::time::sleep(d).await;
        }
        let invalid = |e: generate::GenError| GatewayError::invalid(e.message, e.param);
        let id = format!("chatcmpl-{:016x}", fastrand::u64(..));
        let created = unix_now();
        match call.endpoint {
            Endpoint::Embeddings => {
                let body = rewrite(call.body, call.peek, call.upstream_model, false);
                let body = generate::embeddings_body(&body).map_err(invalid)?;
                let usage = crate::usage::from_body(&body).ok().flatten();
                Ok(Reply::Complete { body, usage })
            }
            Endpoint::Images | Endpoint::Moderations | Endpoint::Speech => {
                let body = rewrite(call.body, call.peek, call.upstream_model, false);
                let body = match call.endpoint {
                    Endpoint::Images => crate::mock::media::images(&body),
                    Endpoint::Moderations => crate::mock::media::moderations(&body),
                    _ => crate::mock::media::speech(&body).map(|(audio, _)| audio),
                }
                .map_err(invalid)?;
                let usage = match call.endpoint {
                    Endpoint::Speech => None,
                    _ => crate::usage::from_body(&body).ok().flatten(),
                };
                Ok(Reply::Complete { body, usage })
            }
            Endpoint::Transcriptions | Endpoint::Translations => {
                let u = call.upload.ok_or_else(|| super::unsupported(p, call))?;
                let body = u.body(Some(call.upstream_model)).ok_or_else(|| GatewayError::Internal {
                    detail: "the upload was already relayed to another deployment".into(),
                })?;
                let ct = u.content_type.to_str().unwrap_or_default();
                let heard = crate::mock::audio::hear(ct, body.chunks).await;
                // The client's side failing cut the upload: answer that.
                if let Some(f) = u.failure.take() {
                    return Err(f.error());
                }
                let heard = heard.map_err(|e| GatewayError::invalid(e, None))?;
                let (body, _) = crate::mock::audio::answer(&heard, call.endpoint == Endpoint::Translations)
                    .map_err(|e| GatewayError::invalid(e, Some("response_format")))?;
                let usage = crate::usage::from_body(&body).ok().flatten();
                Ok(Reply::Complete { body, usage })
            }
            // The other routes never reach this provider (`Provider::send`
            // translates Messages and Responses to Chat first, the mock
            // serves no token counter, and files go to `resource`).
            Endpoint::Messages
            | Endpoint::Responses
            | Endpoint::CountTokens
            | Endpoint::InputTokens
            | Endpoint::Files
            | Endpoint::Batches => Err(super::unsupported(p, call)),
            Endpoint::Chat | Endpoint::Completions => {
                // Same body the openai provider would send: renamed model,
                // usage requested on streams.
                let body = rewrite(call.body, call.peek, call.upstream_model, true);
                let gen_endpoint = match call.endpoint {
                    Endpoint::Completions => generate::Endpoint::Completions,
                    _ => generate::Endpoint::Chat,
                };
                let req: GenRequest =
                    generate::parse_request(gen_endpoint, &body, self.cfg.tokens, tokens).map_err(invalid)?;
                let tool = if self.forward.allows("x-mock-tool-call") { h.get("x-mock-tool-call") } else { None };
                if let Some(name) = tool.and_then(|v| v.to_str().ok())
                    && gen_endpoint == generate::Endpoint::Chat
                    && crate::mock::vendors::has_tools(&body)
                {
                    return Ok(match crate::mock::vendors::openai_tool_call(&req, name) {
                        Ok(body) => {
                            let usage = crate::usage::from_body(&body).ok().flatten();
                            Reply::Complete { body, usage }
                        }
                        Err(events) => Reply::Stream(paced(events.into_iter(), Duration::from_millis(chunk_delay))),
                    });
                }
                if req.stream {
                    let events = generate::stream_events(&req, &id, created);
                    Ok(Reply::Stream(paced(events, Duration::from_millis(chunk_delay))))
                } else {
                    let usage = Usage {
                        prompt_tokens: req.prompt_tokens as u64,
                        completion_tokens: req.completion_tokens as u64,
                        cached_tokens: 0,
                    };
                    Ok(Reply::Complete { body: generate::completion_body(&req, &id, created), usage: Some(usage) })
                }
            }
        }
    }
}

impl MockProvider {
    /// A Files or Batch API request, answered from this provider's store.
    pub async fn resource(
        &self,
        call: super::resources::ResourceCall<'_>,
    ) -> Result<super::resources::ResourceReply, GatewayError> {
        use super::resources::{ResourceBody, ResourceReply};
        let path = call.path.split('?').next().unwrap_or("");
        let Some(op) = crate::mock::files::Op::route(call.method.as_str(), path) else {
            return Err(GatewayError::RouteNotFound { method: call.method.to_string(), path: format!("/v1{path}") });
        };
        let (content_type, body) = match call.body {
            ResourceBody::None => (String::new(), Bytes::new()),
            ResourceBody::Json(b) => (String::new(), b),
            ResourceBody::Upload(u) => {
                // The mock keeps files in memory: the upload is read whole here.
                let ct = u.content_type.to_str().unwrap_or_default().to_string();
                let mut chunks =
                    u.body(None).map(|b| b.chunks).unwrap_or_else(|| futures_util::stream::empty().boxed_local());
                let mut all = bytes::BytesMut::new();
                while let Some(c) = chunks.next().await {
                    match c {
                        Ok(c) => all.extend_from_slice(&c),
                        Err(e) => {
                            return Err(u.failure.take().map_or_else(|| GatewayError::invalid(e, None), |f| f.error()));
                        }
                    }
                }
                (ct, all.freeze())
            }
        };
        let a = self.store.handle(&op, &content_type, &body);
        if a.status >= 400 {
            return Err(GatewayError::UpstreamStatus {
                provider: "mock".into(),
                upstream_status: a.status,
                body: super::errors::map_status_error(super::errors::ErrorStyle::OpenAi, "mock", a.status, a.body),
                retry_after: None,
            });
        }
        Ok(ResourceReply::whole(a.status, a.content_type, a.body))
    }
}

/// Emit events one at a time, `gap` apart (the first at once).
fn paced(events: impl Iterator<Item = Bytes> + 'static, gap: Duration) -> super::EventStream {
    let first = std::cell::Cell::new(true);
    let runs = futures_util::stream::iter(events)
        .then(move |ev: Bytes| {
            let wait = !first.replace(false) && !gap.is_zero();
            async move {
                if wait {
                    tokio::time::sleep(gap).await;
                }
                Ok(ev)
            }
        })
        .boxed_local();
    super::EventStream::new(runs)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
