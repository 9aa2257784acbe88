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
}

/// Longest delay a client may ask of the built-in mock.
const MAX_DELAY_MS: u64 = 60_000;

impl MockProvider {
    pub fn new(cfg: MockProviderConfig, forward: HeaderForward) -> Self {
        MockProvider { cfg, forward }
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
            // The other routes never reach this provider (`Provider::send`
            // translates Messages and Responses to Chat first, and the
            // mock serves no token counter).
            Endpoint::Messages | Endpoint::Responses | Endpoint::CountTokens | Endpoint::InputTokens => {
                Err(super::unsupported(p, call))
            }
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
