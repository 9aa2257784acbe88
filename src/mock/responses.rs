//! The mock speaking OpenAI's Responses API natively (`POST /v1/responses`,
//! `POST /v1/responses/input_tokens`), so a provider with
//! `responses = true` can be tested offline, and Anthropic's
//! `POST /v1/messages/count_tokens`.
//!
//! A Response is the mock's chat answer to the same conversation, written
//! the way the Responses API writes it: the request is read as chat (the
//! gateway's translator does that reading, so every input shape the
//! gateway accepts works here too), the deterministic chat generator
//! answers (with a tool call under `x-mock-tool-call`), and the answer
//! becomes a Response or its typed event stream. Ids derive from the
//! answer's seed, so equal requests get byte-for-byte equal answers.
//!
//! Shapes: https://platform.openai.com/docs/api-reference/responses,
//! https://platform.openai.com/docs/api-reference/responses-streaming,
//! https://docs.anthropic.com/en/api/messages-count-tokens.

use bytes::Bytes;

use super::generate::{self, Endpoint, GenError};
use super::vendors;
use crate::translate::SseOut;
use crate::translate::responses::request::{Options, translate};
use crate::translate::responses::{Context, response, stream::StreamTranslator};

/// A fixed `created_at`, so answers are byte-for-byte stable.
const CREATED: u64 = 1_700_000_000;

/// A Response (`Ok`), or its stream events (`Err`), for a Responses
/// request `body`. `tool`: answer with a call of this function (when the
/// request offers tools).
pub(crate) fn answer(
    body: &[u8],
    default_tokens: u32,
    tokens: Option<u32>,
    tool: Option<&str>,
) -> Result<Result<Bytes, Vec<Bytes>>, GenError> {
    let (chat, ctx) = as_chat(body)?;
    let mut g = generate::parse_request(Endpoint::Chat, &chat, default_tokens, tokens)?;
    // The Responses API always reports usage.
    g.include_usage = true;
    let ctx = Context { id: format!("resp_mock{:016x}", g.seed), ..ctx };
    let answer = match tool.filter(|_| vendors::has_tools(&chat)) {
        Some(name) => vendors::openai_tool_call(&g, name),
        None if g.stream => {
            let id = format!("chatcmpl-mock{:016x}", g.seed);
            Err(generate::stream_events(&g, &id, CREATED).collect())
        }
        None => Ok(generate::completion_body(&g, &format!("chatcmpl-mock{:016x}", g.seed), CREATED)),
    };
    Ok(match answer {
        Ok(chat_body) => {
            let a = response::translate(&chat_body, &ctx).map_err(|e| GenError::new(e, None))?;
            Ok(Bytes::from(a.body))
        }
        Err(chunks) => {
            let mut t = StreamTranslator::new(ctx);
            let mut events = Vec::with_capacity(chunks.len() + 8);
            for chunk in chunks {
                let mut out = SseOut::new();
                for ev in crate::sse::events(&chunk) {
                    t.event(ev.data, &mut out).map_err(|e| GenError::new(e.to_string(), None))?;
                }
                if !out.is_empty() {
                    events.push(out.take());
                }
            }
            Err(events)
        }
    })
}

/// `POST /v1/responses/input_tokens`: the prompt's words.
pub(crate) fn input_tokens(body: &[u8]) -> Result<Bytes, GenError> {
    let (chat, _) = as_chat(body)?;
    let g = generate::parse_request(Endpoint::Chat, &chat, 1, None)?;
    Ok(Bytes::from(format!("{{\"object\":\"response.input_tokens\",\"input_tokens\":{}}}", g.prompt_tokens)))
}

/// Anthropic's `POST /v1/messages/count_tokens`: the words of `system`,
/// `messages` and `tools` (no `max_tokens` needed).
pub(crate) fn count_tokens(body: &[u8]) -> Result<Bytes, GenError> {
    use sonic_rs::JsonValueTrait;
    if crate::json::nesting_exceeds(body, vendors::MAX_DEPTH) {
        return Err(GenError::new("The JSON body nests too deeply.", None));
    }
    let v: sonic_rs::Value = sonic_rs::from_slice(body)
        .map_err(|e| GenError::new(format!("We could not parse the JSON body of your request: {e}"), None))?;
    if v.get("model").and_then(|m| m.as_str()).is_none() {
        return Err(GenError::new("model: Field required", Some("model")));
    }
    let Some(messages) = v.get("messages").filter(|m| m.is_array()) else {
        return Err(GenError::new("messages: Field required", Some("messages")));
    };
    let (mut words, mut hash) = (0u64, 0u64);
    vendors::texts(messages, &mut words, &mut hash);
    for member in ["system", "tools"] {
        match v.get(member) {
            Some(x) if x.is_str() => words += x.as_str().unwrap_or("").split_whitespace().count() as u64,
            Some(x) => vendors::texts(x, &mut words, &mut hash),
            None => {}
        }
    }
    Ok(Bytes::from(format!("{{\"input_tokens\":{}}}", words.max(1))))
}

/// The request as chat, and the context its Response repeats back.
fn as_chat(body: &[u8]) -> Result<(Vec<u8>, Context), GenError> {
    let model = sonic_rs::get(body, ["model"])
        .ok()
        .and_then(|m| sonic_rs::JsonValueTrait::as_str(&m).map(str::to_owned))
        .ok_or_else(|| GenError::new("Missing required parameter: 'model'.", Some("model")))?;
    let t = translate(body, &model, None, &Options { reasoning_effort: true, ..Options::default() })
        .map_err(|e| GenError::new(e.message, e.param))?;
    let ctx = t.context(String::new(), CREATED);
    Ok((t.body, ctx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn run(req: Value, tool: Option<&str>) -> Result<Bytes, Vec<Bytes>> {
        answer(req.to_string().as_bytes(), 4, None, tool).unwrap()
    }

    #[test]
    fn whole_and_streamed_answers_say_the_same() {
        let req = json!({"model": "m", "instructions": "Be brief.", "input": "Say hi"});
        let body: Value = serde_json::from_slice(&run(req.clone(), None).unwrap()).unwrap();
        assert_eq!(body["object"], "response");
        assert_eq!(body["status"], "completed");
        assert_eq!(body["instructions"], "Be brief.");
        assert_eq!(body["usage"]["output_tokens"], 4);
        let text = body["output"][0]["content"][0]["text"].as_str().unwrap().to_owned();
        let mut s = req;
        s["stream"] = json!(true);
        let events = run(s, None).unwrap_err();
        let all: String = events.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        assert!(all.starts_with("event: response.created\n"), "{all}");
        let done = all.split("\n\n").find(|e| e.starts_with("event: response.completed")).unwrap();
        let done: Value = serde_json::from_str(done.split_once("data: ").unwrap().1).unwrap();
        assert_eq!(done["response"]["output"][0]["content"][0]["text"], text);
        assert_eq!(done["response"]["id"], body["id"]);
    }

    #[test]
    fn tool_calls_and_counts() {
        let req = json!({"model": "m", "input": "weather?", "tools": [{"type": "function", "name": "get_weather",
            "parameters": {"type": "object"}}]});
        let body: Value = serde_json::from_slice(&run(req.clone(), Some("get_weather")).unwrap()).unwrap();
        assert_eq!(body["output"][0]["type"], "function_call");
        assert_eq!(body["output"][0]["name"], "get_weather");
        let n: Value = serde_json::from_slice(&input_tokens(req.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(n, json!({"object": "response.input_tokens", "input_tokens": 1}));
        assert!(answer(br#"{"input": "x"}"#, 4, None, None).is_err());
        assert!(answer(br#"{"model": "m", "input": [{"type": "item_reference", "id": "x"}]}"#, 4, None, None).is_err());
    }
}
