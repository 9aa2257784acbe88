//! Bedrock's runtime as the mock plays it, and STS's web-identity exchange.
//!
//! - `converse` / `converse-stream`: the Converse API for any model; the
//!   stream is `application/vnd.amazon.eventstream` frames (`messageStart`,
//!   `contentBlockStart|Delta|Stop`, `messageStop`, `metadata`), each
//!   payload padded with Bedrock's `p` member.
//! - `invoke` / `invoke-with-response-stream` for Anthropic models: Claude's
//!   own Messages body with `anthropic_version: "bedrock-2023-05-31"` and no
//!   `model` or `stream` member (Bedrock refuses extraneous keys); the
//!   stream wraps each Anthropic event as a `chunk` frame `{"bytes": base64}`.
//! - `invoke` for Titan and Cohere embedding models: `bedrock_embed`.
//!
//! Every call's SigV4 signature is verified first (`mock::clouds::sigv4`).
//! Shapes follow https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html,
//! …/API_runtime_ConverseStream.html, …/API_runtime_InvokeModelWithResponseStream.html
//! and https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages.html.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{Response, StatusCode};
use sonic_rs::{JsonContainerTrait, JsonValueMutTrait, JsonValueTrait};

use super::{CloudRequest, MockClouds};
use crate::cloud::aws::eventstream::{DEFAULT_MAX_FRAME, encode_event, encode_exception};
use crate::mock::body::{Events, MockBody};
use crate::mock::clouds::Rejection;
use crate::mock::clouds::sigv4::{self, MockAwsKey, SigV4Policy, SignedRequest};
use crate::mock::faults::{BadFrame, Controls, Fault};
use crate::mock::generate::GenRequest;
use crate::mock::server::{MockReply, ServerState, json, reply};
use crate::mock::vendors;

const EVENT_STREAM: HeaderValue = HeaderValue::from_static("application/vnd.amazon.eventstream");
/// Bedrock's version of Anthropic's API, in the InvokeModel body.
const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Converse,
    ConverseStream,
    Invoke,
    InvokeStream,
}

pub(crate) struct Call {
    model: String,
    action: Action,
}

pub(super) fn route(path: &str) -> Option<Call> {
    let rest = path.strip_prefix("/model/")?;
    let (model, action) = rest.rsplit_once('/')?;
    let action = match action {
        "converse" => Action::Converse,
        "converse-stream" => Action::ConverseStream,
        "invoke" => Action::Invoke,
        "invoke-with-response-stream" => Action::InvokeStream,
        _ => return None,
    };
    let model = percent_encoding::percent_decode_str(model).decode_utf8_lossy().into_owned();
    Some(Call { model, action })
}

pub(super) fn verify(
    req: &CloudRequest,
    region: Option<&str>,
    keys: &HashMap<String, MockAwsKey>,
    now: SystemTime,
) -> Result<(), Rejection> {
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let headers = req.headers.iter().filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))).collect();
    let signed = SignedRequest { method: req.method.as_str(), target, headers, body: &req.body };
    sigv4::verify(&signed, &SigV4Policy::bedrock(region), keys, now).map(|_| ())
}

fn validation(message: &str) -> Response<MockBody> {
    let mut r = json(StatusCode::BAD_REQUEST, Bytes::from(sonic_rs::json!({ "message": message }).to_string()));
    r.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static("ValidationException"));
    r
}

pub(super) fn answer(
    state: &ServerState,
    call: &Call,
    req: &CloudRequest,
    controls: &Controls,
    fault: Option<Fault>,
) -> Response<MockBody> {
    let Ok(v) = sonic_rs::from_slice::<sonic_rs::Value>(&req.body) else {
        return validation("Malformed input request: the body is not JSON, please reformat your input and try again.");
    };
    let opts = &state.opts;
    let cached = controls.cached_tokens.unwrap_or(0);
    let (events, stream_type) = match call.action {
        Action::Converse | Action::ConverseStream => {
            if let Err(m) = check_converse(&v) {
                return validation(&m);
            }
            let cap = v.get("inferenceConfig").and_then(|c| c.get("maxTokens")).and_then(|m| m.as_u64());
            let messages = v.get("messages").cloned().unwrap_or_default();
            let stream = call.action == Action::ConverseStream;
            let g = vendors::gen_request(
                call.model.clone(),
                stream,
                cap,
                &messages,
                &[v.get("system")],
                opts.tokens,
                controls.tokens,
            );
            let has_tools = v
                .get("toolConfig")
                .and_then(|t| t.get("tools"))
                .and_then(|t| t.as_array())
                .is_some_and(|a| !a.is_empty());
            let tool = controls.tool_call.as_deref().filter(|_| has_tools);
            if !stream {
                return reply(
                    state,
                    StatusCode::OK,
                    MockReply::Full(converse_body(&g, tool, cached)),
                    fault,
                    controls,
                    EVENT_STREAM,
                );
            }
            (converse_events(&g, tool, cached), EVENT_STREAM)
        }
        Action::Invoke | Action::InvokeStream if super::bedrock_embed::embeds(&call.model) => {
            if call.action == Action::InvokeStream {
                return validation("The model is unsupported for streaming.");
            }
            return super::bedrock_embed::answer(state, &call.model, &v, controls, fault)
                .unwrap_or_else(|m| validation(&m));
        }
        Action::Invoke | Action::InvokeStream => {
            if !call.model.contains("anthropic.") {
                return validation("The mock's InvokeModel speaks Anthropic's body only; use Converse for this model.");
            }
            for key in ["model", "stream"] {
                if v.get(key).is_some() {
                    return validation(&format!(
                        "Malformed input request: #: extraneous key [{key}] is not permitted, please reformat your \
                         input and try again."
                    ));
                }
            }
            if v.get("anthropic_version").and_then(|a| a.as_str()) != Some(BEDROCK_ANTHROPIC_VERSION) {
                return validation("Malformed input request: #/anthropic_version: expected bedrock-2023-05-31");
            }
            let (Some(cap), Some(messages)) = (v.get("max_tokens").and_then(|m| m.as_u64()), v.get("messages")) else {
                return validation("Malformed input request: #: required key [max_tokens] or [messages] not found");
            };
            let stream = call.action == Action::InvokeStream;
            let g = vendors::gen_request(
                call.model.clone(),
                stream,
                Some(cap),
                messages,
                &[v.get("system")],
                opts.tokens,
                controls.tokens,
            );
            let has_tools = v.get("tools").and_then(|t| t.as_array()).is_some_and(|a| !a.is_empty());
            let tool = controls.tool_call.as_deref().filter(|_| has_tools);
            match vendors::anthropic(&g, tool, cached, vendors::thinking_on(&v)) {
                Ok(body) => return reply(state, StatusCode::OK, MockReply::Full(body), fault, controls, EVENT_STREAM),
                Err(sse) => (sse.iter().filter_map(|ev| chunk_frame(ev, &g)).collect(), EVENT_STREAM),
            }
        }
    };
    let mut events: Vec<Bytes> = events;
    if let Some(exception) = &controls.stream_exception {
        let at = controls.cut_after.map_or(0, |n| n as usize).min(events.len());
        events.truncate(at);
        let payload = sonic_rs::json!({ "message": "Too many requests, please wait before trying again." });
        if let Ok(frame) = encode_exception(exception, payload.to_string().as_bytes()) {
            events.push(frame);
        }
    }
    if let Some(bad) = controls.bad_frame {
        spoil_frame(&mut events, bad, controls.cut_after.map_or(1, |n| n as usize));
    }
    let answer = MockReply::Stream(Events::List(events.into_iter()));
    // A `cut` fault here counts events, as for SSE streams.
    reply(state, StatusCode::OK, answer, fault, controls, stream_type)
}

/// `x-mock-bad-frame`: frame `at` (or, past the end, one more) spoiled;
/// the frames after it are dropped, as nothing could be read past it.
fn spoil_frame(events: &mut Vec<Bytes>, bad: BadFrame, at: usize) {
    let at = at.min(events.len());
    events.truncate(at + 1);
    let frame = events.pop().unwrap_or_else(|| encode_event("chunk", b"{}").unwrap_or_default());
    match bad {
        BadFrame::Crc => {
            // The last byte before the message CRC: a payload (or header) byte.
            let mut v = frame.to_vec();
            if let Some(i) = v.len().checked_sub(5) {
                v[i] ^= 0x01;
            }
            events.push(Bytes::from(v));
        }
        BadFrame::Huge => {
            let total = (DEFAULT_MAX_FRAME as u32).saturating_add(1);
            let mut prelude = total.to_be_bytes().to_vec();
            prelude.extend_from_slice(&0u32.to_be_bytes());
            let crc = crc32fast::hash(&prelude);
            prelude.extend_from_slice(&crc.to_be_bytes());
            events.push(Bytes::from(prelude));
        }
        BadFrame::Cut => events.push(frame.slice(..frame.len() / 2)),
    }
}

/// What Bedrock checks of a Converse body that the gateway's translation
/// could get wrong: messages that alternate from a user turn, content as a
/// list of blocks of known kinds, `system` as a list.
fn check_converse(v: &sonic_rs::Value) -> Result<(), String> {
    const BLOCKS: [&str; 9] = [
        "text",
        "image",
        "document",
        "video",
        "toolUse",
        "toolResult",
        "guardContent",
        "reasoningContent",
        "cachePoint",
    ];
    let Some(messages) = v.get("messages").and_then(|m| m.as_array()) else {
        return Err(
            "1 validation error detected: Value at 'messages' failed to satisfy constraint: Member must not be null"
                .into(),
        );
    };
    if messages.is_empty() {
        return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
    }
    let mut expect = "user";
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("");
        if role != expect {
            return Err(format!(
                "A conversation must alternate between user and assistant roles. Make sure the conversation \
                 alternates between user and assistant roles and try again. (messages.{i}.role is {role:?})"
            ));
        }
        expect = if role == "user" { "assistant" } else { "user" };
        let Some(content) = m.get("content").and_then(|c| c.as_array()).filter(|c| !c.is_empty()) else {
            return Err(format!(
                "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
            ));
        };
        for block in content.iter() {
            let Some(o) = block.as_object() else {
                return Err(format!("messages.{i}.content: a block is not an object"));
            };
            if o.len() != 1 || !o.iter().all(|(k, _)| BLOCKS.contains(&k)) {
                return Err(format!("messages.{i}.content: a ContentBlock must hold exactly one of {BLOCKS:?}"));
            }
        }
    }
    if let Some(system) = v.get("system")
        && !system.is_array()
    {
        return Err("system: expected a list of SystemContentBlock".into());
    }
    Ok(())
}

/// Bedrock pads event payloads so their sizes say nothing; clients must ignore it.
const PAD: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGH";

fn usage(g: &GenRequest, cached: u64) -> sonic_rs::Value {
    let p = u64::from(g.prompt_tokens);
    let cached = cached.min(p);
    let c = u64::from(g.completion_tokens);
    let mut u = sonic_rs::json!({ "inputTokens": p - cached, "outputTokens": c, "totalTokens": p + c });
    if cached > 0
        && let Some(o) = u.as_object_mut()
    {
        o.insert("cacheReadInputTokens", sonic_rs::json!(cached));
        o.insert("cacheWriteInputTokens", sonic_rs::json!(0));
    }
    u
}

fn stop_reason(g: &GenRequest, tool: Option<&str>) -> &'static str {
    match (tool, g.finish_reason) {
        (Some(_), _) => "tool_use",
        (None, "length") => "max_tokens",
        _ => "end_turn",
    }
}

fn tool_use_id(g: &GenRequest) -> String {
    format!("tooluse_mock{:016x}", g.seed)
}

fn converse_body(g: &GenRequest, tool: Option<&str>, cached: u64) -> Bytes {
    let content = match tool {
        Some(name) => {
            let input: sonic_rs::Value = sonic_rs::from_slice(&vendors::tool_args_json(g)).unwrap_or_default();
            sonic_rs::json!([{ "toolUse": { "toolUseId": tool_use_id(g), "name": name, "input": input } }])
        }
        None => sonic_rs::json!([{ "text": crate::mock::generate::answer_text(g) }]),
    };
    let body = sonic_rs::json!({
        "output": { "message": { "role": "assistant", "content": content } },
        "stopReason": stop_reason(g, tool),
        "usage": usage(g, cached),
        "metrics": { "latencyMs": 12 }
    });
    Bytes::from(body.to_string())
}

fn frame(event_type: &str, mut payload: sonic_rs::Value) -> Option<Bytes> {
    if let Some(o) = payload.as_object_mut() {
        o.insert("p", sonic_rs::json!(PAD));
    }
    encode_event(event_type, payload.to_string().as_bytes()).ok()
}

fn converse_events(g: &GenRequest, tool: Option<&str>, cached: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    out.extend(frame("messageStart", sonic_rs::json!({ "role": "assistant" })));
    match tool {
        Some(name) => {
            let start = sonic_rs::json!({ "toolUse": { "toolUseId": tool_use_id(g), "name": name } });
            out.extend(frame("contentBlockStart", sonic_rs::json!({ "contentBlockIndex": 0, "start": start })));
            let input = String::from_utf8(vendors::tool_args_json(g)).unwrap_or_default();
            for piece in vendors::halves(&input) {
                let delta = sonic_rs::json!({ "toolUse": { "input": piece } });
                out.extend(frame("contentBlockDelta", sonic_rs::json!({ "contentBlockIndex": 0, "delta": delta })));
            }
        }
        None => {
            for t in vendors::tokens(g) {
                let delta = sonic_rs::json!({ "text": t });
                out.extend(frame("contentBlockDelta", sonic_rs::json!({ "contentBlockIndex": 0, "delta": delta })));
            }
        }
    }
    out.extend(frame("contentBlockStop", sonic_rs::json!({ "contentBlockIndex": 0 })));
    out.extend(frame("messageStop", sonic_rs::json!({ "stopReason": stop_reason(g, tool) })));
    let metadata = sonic_rs::json!({ "usage": usage(g, cached), "metrics": { "latencyMs": 12 } });
    out.extend(frame("metadata", metadata));
    out
}

/// One Anthropic SSE event as InvokeModelWithResponseStream sends it: its
/// JSON, base64 in a `chunk` frame; `message_stop` gains Bedrock's metrics.
fn chunk_frame(sse: &Bytes, g: &GenRequest) -> Option<Bytes> {
    let data = std::str::from_utf8(sse).ok()?.lines().find_map(|l| l.strip_prefix("data: "))?;
    let mut v: sonic_rs::Value = sonic_rs::from_str(data).ok()?;
    if v.get("type").and_then(|t| t.as_str()) == Some("message_stop")
        && let Some(o) = v.as_object_mut()
    {
        let metrics = sonic_rs::json!({
            "inputTokenCount": g.prompt_tokens, "outputTokenCount": g.completion_tokens,
            "invocationLatency": 12, "firstByteLatency": 3
        });
        o.insert("amazon-bedrock-invocationMetrics", metrics);
    }
    let bytes = base64::engine::general_purpose::STANDARD.encode(v.to_string());
    frame("chunk", sonic_rs::json!({ "bytes": bytes }))
}

/// STS `AssumeRoleWithWebIdentity`: any non-empty token is trusted (the
/// mock has no OIDC provider); the temporary keys it issues are accepted by
/// the Bedrock routes until they expire.
pub(super) fn sts(clouds: &MockClouds, req: &CloudRequest, now: SystemTime) -> Response<MockBody> {
    let form: HashMap<String, String> = form_urlencoded::parse(&req.body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let error = |code: &str, message: &str| {
        let body = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>{code}</Code><Message>{message}</Message></Error><RequestId>mock</RequestId></ErrorResponse>"
        );
        let mut r = json(StatusCode::BAD_REQUEST, Bytes::from(body));
        r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        r
    };
    if field("Action") != "AssumeRoleWithWebIdentity" {
        return error("InvalidAction", "Could not find operation for the action (mock STS).");
    }
    if field("RoleArn").is_empty() || field("RoleSessionName").is_empty() {
        return error("ValidationError", "RoleArn and RoleSessionName are required.");
    }
    if field("WebIdentityToken").is_empty() {
        return error("InvalidIdentityToken", "The web identity token is empty.");
    }
    let n = clouds.sts_issued.fetch_add(1, Ordering::Relaxed);
    let id = format!("ASIAMOCK{n:08}");
    let secret = format!("mock-sts-secret-{:016x}", fastrand::u64(..));
    let token = format!("mock-sts-session-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    if let Ok(mut keys) = clouds.aws.write() {
        keys.insert(id.clone(), MockAwsKey { secret_access_key: secret.clone(), session_token: Some(token.clone()) });
    }
    let expires = now + clouds.token_ttl;
    let secs = expires.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let expiration = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let body = format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{id}</AccessKeyId>\
         <SecretAccessKey>{secret}</SecretAccessKey><SessionToken>{token}</SessionToken>\
         <Expiration>{expiration}</Expiration></Credentials>\
         <AssumedRoleUser><Arn>{}/{}</Arn></AssumedRoleUser></AssumeRoleWithWebIdentityResult>\
         <ResponseMetadata><RequestId>mock</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>",
        xml_escape(field("RoleArn")),
        xml_escape(field("RoleSessionName"))
    );
    let mut r = json(StatusCode::OK, Bytes::from(body));
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    r
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
