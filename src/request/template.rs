//! Template answers: a model's static `fallback_response`, served (and
//! marked `x-sluice-fallback: template`) when every deployment failed, in
//! the shape the client asked for — chat, legacy completion, Messages or
//! a Response, whole or streamed.

use bytes::Bytes;

use super::ClientReply;
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::peek::Peek;
use crate::translate::openai::Usage;
use crate::upstream::Upstreams;

/// The template step: when every deployment failed (or none could be
/// tried), the model's template answer instead of the error, if it has one
/// and the route is one it can answer.
pub(super) fn instead_of_failure(
    reply: Result<ClientReply, GatewayError>,
    up: &Upstreams,
    endpoint: Endpoint,
    model: usize,
    peek: &Peek,
    request_id: &str,
) -> Result<ClientReply, GatewayError> {
    let e = match reply {
        Err(e) if (e.retryable() || matches!(e, GatewayError::NoDeployment { .. })) && endpoint.streams() => e,
        r => return r,
    };
    let Some((entry, text)) = up.models.get(model).and_then(|m| Some((m, m.fallback_response.as_ref()?))) else {
        return Err(e);
    };
    tracing::warn!(request_id = %request_id, model = %entry.name, error = %e, "every deployment failed; serving the template answer");
    up.metrics.record_template(model);
    let body = if peek.stream { stream(endpoint, &entry.name, text) } else { body(endpoint, &entry.name, text) };
    Ok(ClientReply::Template { body, stream: peek.stream })
}

#[derive(serde::Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(serde::Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(serde::Serialize)]
struct TextChoice<'a> {
    index: u32,
    text: &'a str,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(serde::Serialize)]
struct Whole<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [C; 1],
    usage: Usage,
}

#[derive(serde::Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(serde::Serialize)]
struct TextChunkChoice<'a> {
    index: u32,
    text: &'a str,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(serde::Serialize)]
struct Chunk<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [C; 1],
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    sonic_rs::to_vec(v).unwrap_or_default()
}

fn event(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// The whole answer (non-stream).
pub fn body(endpoint: Endpoint, model: &str, text: &str) -> Bytes {
    if endpoint == Endpoint::Messages {
        // Anthropic's shape: the chat answer, translated as any upstream's is.
        let chat = body(Endpoint::Chat, model, text);
        return match crate::translate::messages::response::translate(&chat) {
            Ok((out, _)) => Bytes::from(out),
            Err(_) => chat,
        };
    }
    if endpoint == Endpoint::Responses {
        let chat = body(Endpoint::Chat, model, text);
        return match crate::translate::responses::response::translate(&chat, &response_context(model)) {
            Ok(a) => Bytes::from(a.body),
            Err(_) => chat,
        };
    }
    let id = format!("sluice-template-{:016x}", fastrand::u64(..));
    // No upstream ran: zero tokens, written as OpenAI writes `usage`.
    let usage = Usage::default();
    let created = now();
    Bytes::from(match endpoint {
        Endpoint::Completions => json(&Whole {
            id: &id,
            object: "text_completion",
            created,
            model,
            choices: [TextChoice { index: 0, text, logprobs: None, finish_reason: "stop" }],
            usage,
        }),
        // Only streaming routes get a template (`instead_of_failure`).
        Endpoint::Chat
        | Endpoint::Embeddings
        | Endpoint::Messages
        | Endpoint::CountTokens
        | Endpoint::Responses
        | Endpoint::InputTokens
        | Endpoint::Images
        | Endpoint::Moderations
        | Endpoint::Speech
        | Endpoint::Transcriptions
        | Endpoint::Translations
        | Endpoint::Files
        | Endpoint::Batches => json(&Whole {
            id: &id,
            object: "chat.completion",
            created,
            model,
            choices: [ChatChoice {
                index: 0,
                message: Message { role: "assistant", content: text },
                logprobs: None,
                finish_reason: "stop",
            }],
            usage,
        }),
    })
}

/// The same answer as SSE events, ending with `[DONE]`.
pub fn stream(endpoint: Endpoint, model: &str, text: &str) -> Bytes {
    if endpoint == Endpoint::Messages {
        // Anthropic's events: the chat stream, translated as any upstream's is.
        let chat = stream(Endpoint::Chat, model, text);
        let mut t = crate::translate::messages::stream::StreamTranslator::new();
        let mut out = crate::translate::SseOut::new();
        for ev in crate::sse::events(&chat) {
            if t.event(ev.data, &mut out).is_err() {
                break;
            }
        }
        return out.take();
    }
    if endpoint == Endpoint::Responses {
        let chat = stream(Endpoint::Chat, model, text);
        let mut t = crate::translate::responses::stream::StreamTranslator::new(response_context(model));
        let mut out = crate::translate::SseOut::new();
        for ev in crate::sse::events(&chat) {
            if t.event(ev.data, &mut out).is_err() {
                break;
            }
        }
        return out.take();
    }
    let id = format!("sluice-template-{:016x}", fastrand::u64(..));
    let created = now();
    let mut out = Vec::new();
    match endpoint {
        Endpoint::Completions => {
            for (t, fin) in [(text, None), ("", Some("stop"))] {
                let c = Chunk {
                    id: &id,
                    object: "text_completion",
                    created,
                    model,
                    choices: [TextChunkChoice { index: 0, text: t, logprobs: None, finish_reason: fin }],
                };
                event(&mut out, &json(&c));
            }
        }
        Endpoint::Chat
        | Endpoint::Embeddings
        | Endpoint::Messages
        | Endpoint::CountTokens
        | Endpoint::Responses
        | Endpoint::InputTokens
        | Endpoint::Images
        | Endpoint::Moderations
        | Endpoint::Speech
        | Endpoint::Transcriptions
        | Endpoint::Translations
        | Endpoint::Files
        | Endpoint::Batches => {
            let deltas = [
                (Delta { role: Some("assistant"), content: Some("") }, None),
                (Delta { role: None, content: Some(text) }, None),
                (Delta { role: None, content: None }, Some("stop")),
            ];
            for (delta, fin) in deltas {
                let c = Chunk {
                    id: &id,
                    object: "chat.completion.chunk",
                    created,
                    model,
                    choices: [ChunkChoice { index: 0, delta, logprobs: None, finish_reason: fin }],
                };
                event(&mut out, &json(&c));
            }
        }
    }
    event(&mut out, b"[DONE]");
    Bytes::from(out)
}

/// A template Response's context: a fresh id, the model as asked.
fn response_context(model: &str) -> crate::translate::responses::Context {
    let id =
        crate::translate::responses::response_id(u128::from(fastrand::u64(..)) << 64 | u128::from(fastrand::u64(..)));
    let echo = crate::translate::responses::Echo { model: model.to_owned(), ..Default::default() };
    crate::translate::responses::Context { id, created_at: now(), echo, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let b: serde_json::Value = serde_json::from_slice(&body(Endpoint::Chat, "m", "sorry \"x\"")).unwrap();
        assert_eq!(b["object"], "chat.completion");
        assert_eq!(b["choices"][0]["message"]["content"], "sorry \"x\"");
        let s = stream(Endpoint::Chat, "m", "hello");
        let text = std::str::from_utf8(&s).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 4);
        assert_eq!(events[3], "data: [DONE]");
        let mid: serde_json::Value = serde_json::from_str(events[1].trim_start_matches("data: ")).unwrap();
        assert_eq!(mid["choices"][0]["delta"]["content"], "hello");
        let c: serde_json::Value = serde_json::from_slice(&body(Endpoint::Completions, "m", "t")).unwrap();
        assert_eq!(c["choices"][0]["text"], "t");
    }
}
