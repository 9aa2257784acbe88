use super::*;
use crate::mock::generate::{self, Endpoint as Gen};

fn generated(stream: bool, usage: bool) -> (Bytes, Bytes) {
    let body = format!(
        r#"{{"model":"m","stream":{stream},"stream_options":{{"include_usage":{usage}}},"messages":[{{"role":"user","content":"hello there"}}]}}"#
    );
    let req = generate::parse_request(Gen::Chat, body.as_bytes(), 5, None).unwrap();
    let whole = generate::completion_body(&req, "chatcmpl-1", 7);
    let events: Vec<u8> = generate::stream_events(&req, "chatcmpl-1", 7).flat_map(|b| b.to_vec()).collect();
    (whole, Bytes::from(events))
}

fn content_of_events(events: &[u8]) -> String {
    let mut s = String::new();
    for ev in sse::events(events) {
        if let Some(v) = parse(ev.data)
            && let Some(t) = v.pointer(sonic_rs::pointer!["choices", 0, "delta", "content"]).and_then(|c| c.as_str())
        {
            s.push_str(t);
        }
    }
    s
}

fn content_of_body(body: &[u8]) -> String {
    let v = parse(body).unwrap();
    v.pointer(sonic_rs::pointer!["choices", 0, "message", "content"]).and_then(|c| c.as_str()).unwrap_or("").to_string()
}

#[test]
fn whole_and_stream_forms_carry_the_same_answer() {
    let (whole, _) = generated(false, false);
    let (_, stream) = generated(true, true);
    let a = from_body(Endpoint::Chat, &whole).unwrap();
    let b = from_stream(Endpoint::Chat, &stream).unwrap();
    let text = content_of_body(&whole);
    assert!(!text.is_empty());
    assert_eq!(content_of_events(&a.events), text);
    assert_eq!(content_of_body(&b.body), text);
    assert_eq!(content_of_events(&b.events), text);
    // The stream form of a stream is the live events, usage chunk aside.
    assert!(stream.starts_with(&b.events));
    assert!(b.usage_event.windows(8).any(|w| w == b"\"usage\":"));
    let vb = parse(&b.body).unwrap();
    assert_eq!(vb.get("object").and_then(|o| o.as_str()), Some("chat.completion"));
    assert_eq!(vb.pointer(sonic_rs::pointer!["usage", "completion_tokens"]).and_then(|c| c.as_u64()), Some(5));
    assert_eq!(vb.pointer(sonic_rs::pointer!["choices", 0, "finish_reason"]).and_then(|c| c.as_str()), Some("stop"));
    // Synthesised chunks have the live shape: role first, finish last, usage apart.
    let evs: Vec<Value> = sse::events(&a.events).filter_map(|e| parse(e.data)).collect();
    assert_eq!(
        evs[0].pointer(sonic_rs::pointer!["choices", 0, "delta", "role"]).and_then(|r| r.as_str()),
        Some("assistant")
    );
    assert_eq!(
        evs.last().unwrap().pointer(sonic_rs::pointer!["choices", 0, "finish_reason"]).and_then(|r| r.as_str()),
        Some("stop")
    );
    assert!(evs.iter().all(|e| e.get("object").and_then(|o| o.as_str()) == Some("chat.completion.chunk")));
    let u = parse(sse::events(&a.usage_event).next().unwrap().data).unwrap();
    assert_eq!(
        u.pointer(sonic_rs::pointer!["usage", "prompt_tokens"]),
        vb.pointer(sonic_rs::pointer!["usage", "prompt_tokens"])
    );
}

#[test]
fn tool_calls_are_assembled_and_replayed() {
    let stream = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let a = from_stream(Endpoint::Chat, stream.as_bytes()).unwrap();
    let v = parse(&a.body).unwrap();
    let call = v.pointer(sonic_rs::pointer!["choices", 0, "message", "tool_calls", 0]).unwrap();
    assert_eq!(call.pointer(sonic_rs::pointer!["function", "arguments"]).and_then(|s| s.as_str()), Some("{\"a\":1}"));
    assert_eq!(call.get("id").and_then(|s| s.as_str()), Some("call_1"));
    // And back: the whole form replays with the tool call in one chunk.
    let b = from_body(Endpoint::Chat, &a.body).unwrap();
    let replayed: Vec<Value> = sse::events(&b.events).filter_map(|e| parse(e.data)).collect();
    let tc =
        replayed.iter().find_map(|e| e.pointer(sonic_rs::pointer!["choices", 0, "delta", "tool_calls", 0])).unwrap();
    assert_eq!(tc.pointer(sonic_rs::pointer!["function", "arguments"]).and_then(|s| s.as_str()), Some("{\"a\":1}"));
    assert_eq!(tc.get("index").and_then(|i| i.as_u64()), Some(0));
}

#[test]
fn incomplete_or_failed_answers_are_not_stored() {
    let (_, stream) = generated(true, true);
    // Cut before [DONE] / before the finish chunk.
    let cut = &stream[..stream.len() / 2];
    assert!(from_stream(Endpoint::Chat, cut).is_none());
    let mut failed = stream[..stream.len() - b"data: [DONE]\n\n".len()].to_vec();
    failed.extend_from_slice(b"data: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n");
    assert!(from_stream(Endpoint::Chat, &failed).is_none());
    assert!(from_body(Endpoint::Chat, &Bytes::from_static(b"{\"error\":{\"message\":\"x\"}}")).is_none());
    assert!(from_body(Endpoint::Embeddings, &Bytes::from_static(b"{\"error\":{}}")).is_none());
    assert!(from_body(Endpoint::Chat, &Bytes::from_static(b"not json")).is_none());
}

#[test]
fn legacy_completions_both_ways() {
    let body = br#"{"model":"m","prompt":"say it","stream":true,"stream_options":{"include_usage":true}}"#;
    let req = generate::parse_request(Gen::Completions, body, 4, None).unwrap();
    let events: Vec<u8> = generate::stream_events(&req, "cmpl-1", 7).flat_map(|b| b.to_vec()).collect();
    let a = from_stream(Endpoint::Completions, &events).unwrap();
    let v = parse(&a.body).unwrap();
    assert_eq!(v.get("object").and_then(|o| o.as_str()), Some("text_completion"));
    let text = v.pointer(sonic_rs::pointer!["choices", 0, "text"]).and_then(|t| t.as_str()).unwrap().to_string();
    assert_eq!(text, generate::answer_text(&req));
    let b = from_body(Endpoint::Completions, &a.body).unwrap();
    let replayed: String = sse::events(&b.events)
        .filter_map(|e| parse(e.data))
        .filter_map(|e| {
            e.pointer(sonic_rs::pointer!["choices", 0, "text"]).and_then(|t| t.as_str()).map(str::to_string)
        })
        .collect();
    assert_eq!(replayed, text);
}
