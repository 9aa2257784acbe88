use serde_json::{Value, json};

use super::*;

fn chat(body: Value) -> GenRequest {
    parse_request(Endpoint::Chat, body.to_string().as_bytes(), 16, None).unwrap()
}

fn parse_err(endpoint: Endpoint, body: &str) -> GenError {
    parse_request(endpoint, body.as_bytes(), 16, None).unwrap_err()
}

fn events(req: &GenRequest) -> Vec<String> {
    stream_events(req, "chatcmpl-1", 1700000000).map(|b| String::from_utf8(b.to_vec()).unwrap()).collect()
}

fn event_json(ev: &str) -> Value {
    let data = ev.strip_prefix("data: ").unwrap().strip_suffix("\n\n").unwrap();
    serde_json::from_str(data).unwrap()
}

#[test]
fn chat_non_stream_shape() {
    let req = chat(json!({"model":"gpt-x","messages":[{"role":"user","content":"hello there world"}]}));
    assert_eq!(req.prompt_tokens, 3);
    assert_eq!(req.completion_tokens, 16);
    assert!(!req.stream);
    let v: Value = serde_json::from_slice(&completion_body(&req, "chatcmpl-1", 42)).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "chatcmpl-1");
    assert_eq!(v["created"], 42);
    assert_eq!(v["model"], "gpt-x");
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["message"]["role"], "assistant");
    assert_eq!(c["finish_reason"], "stop");
    assert!(c["logprobs"].is_null());
    let text = c["message"]["content"].as_str().unwrap();
    assert_eq!(text.split(' ').count(), 16);
    assert_eq!(text, answer_text(&req));
    assert_eq!(v["usage"], json!({"prompt_tokens":3,"completion_tokens":16,"total_tokens":19}));
}

#[test]
fn chat_stream_shape_without_usage() {
    let req = chat(json!({"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}));
    let evs = events(&req);
    assert_eq!(evs.len(), 1 + 16 + 1 + 1);
    assert_eq!(evs.last().unwrap(), "data: [DONE]\n\n");
    let first = event_json(&evs[0]);
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["model"], "m");
    assert_eq!(first["choices"][0]["delta"], json!({"role":"assistant","content":""}));
    assert!(first["choices"][0]["finish_reason"].is_null());
    assert!(first["choices"][0]["logprobs"].is_null());
    let mut text = String::new();
    for ev in &evs[1..17] {
        let v = event_json(ev);
        assert!(v.get("usage").is_none(), "no usage key unless asked");
        text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap());
    }
    assert_eq!(text, answer_text(&req));
    let fin = event_json(&evs[17]);
    assert_eq!(fin["choices"][0]["finish_reason"], "stop");
    assert_eq!(fin["choices"][0]["delta"], json!({}));
}

#[test]
fn chat_stream_usage_only_when_asked() {
    let req = chat(json!({"model":"m","stream":true,"stream_options":{"include_usage":true},
        "messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"one two"}]}]}));
    assert!(req.include_usage);
    assert_eq!(req.prompt_tokens, 4);
    let evs = events(&req);
    assert_eq!(evs.len(), 1 + 16 + 1 + 1 + 1);
    for ev in &evs[..18] {
        assert!(event_json(ev)["usage"].is_null());
        assert!(event_json(ev).get("usage").is_some());
    }
    let usage = event_json(&evs[18]);
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], json!({"prompt_tokens":4,"completion_tokens":16,"total_tokens":20}));
    assert_eq!(evs[19], "data: [DONE]\n\n");
}

#[test]
fn max_tokens_caps_and_says_length() {
    let req = chat(json!({"model":"m","max_tokens":5,"messages":[]}));
    assert_eq!((req.completion_tokens, req.finish_reason), (5, "length"));
    let req = chat(json!({"model":"m","max_completion_tokens":3,"max_tokens":10,"messages":[]}));
    assert_eq!((req.completion_tokens, req.finish_reason), (3, "length"));
    let req = chat(json!({"model":"m","max_tokens":16,"messages":[]}));
    assert_eq!((req.completion_tokens, req.finish_reason), (16, "stop"));
    let req = parse_request(Endpoint::Chat, br#"{"model":"m","messages":[]}"#, 16, Some(2)).unwrap();
    assert_eq!((req.completion_tokens, req.finish_reason), (2, "stop"));
    let v: Value =
        serde_json::from_slice(&completion_body(&chat(json!({"model":"m","max_tokens":5,"messages":[]})), "x", 1))
            .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["usage"]["prompt_tokens"], 1, "at least one prompt token");
}

#[test]
fn deterministic_and_prompt_sensitive() {
    let a = chat(json!({"model":"m","messages":[{"role":"user","content":"same"}]}));
    let b = chat(json!({"model":"m","messages":[{"role":"user","content":"same"}],"stream":true,"temperature":1.5}));
    let c = chat(json!({"model":"m","messages":[{"role":"user","content":"different"}]}));
    assert_eq!(answer_text(&a), answer_text(&b), "stream or not, same text");
    assert_eq!(completion_body(&a, "i", 1), completion_body(&a, "i", 1));
    assert_ne!(answer_text(&a), answer_text(&c));
}

#[test]
fn completions_shapes() {
    for prompt in [json!("say hi"), json!(["say", "hi"]), json!([1, 2]), json!([[1], [2]])] {
        let body = json!({"model":"davinci","prompt":prompt,"max_tokens":4,"stream":true,
            "stream_options":{"include_usage":true}});
        let req = parse_request(Endpoint::Completions, body.to_string().as_bytes(), 16, None).unwrap();
        assert_eq!(req.prompt_tokens, 2, "{prompt}");
        let evs = events(&req);
        assert_eq!(evs.len(), 4 + 1 + 1 + 1);
        let tok = event_json(&evs[0]);
        assert_eq!(tok["object"], "text_completion");
        assert!(tok["choices"][0]["text"].is_string());
        assert!(tok["usage"].is_null());
        assert_eq!(event_json(&evs[4])["choices"][0]["finish_reason"], "length");
        assert_eq!(event_json(&evs[5])["usage"]["total_tokens"], 6);
        let v: Value = serde_json::from_slice(&completion_body(&req, "cmpl-1", 1)).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], answer_text(&req));
        assert_eq!(v["choices"][0]["index"], 0);
        assert!(v["choices"][0]["logprobs"].is_null());
    }
}

#[test]
fn model_is_escaped() {
    let req = chat(json!({"model":"we\"ird\\\n\u{1}é","messages":[]}));
    let v: Value = serde_json::from_slice(&completion_body(&req, "i\"d", 1)).unwrap();
    assert_eq!(v["model"], "we\"ird\\\n\u{1}é");
    assert_eq!(v["id"], "i\"d");
    for ev in events(&req).iter().take(3) {
        assert_eq!(event_json(ev)["model"], "we\"ird\\\n\u{1}é");
    }
}

#[test]
fn bad_requests_name_the_param() {
    let cases = [
        ("not json", None),
        ("[]", None),
        ("{\"model\":\"m\",\"messages\":[]} trailing", None),
        (r#"{"messages":[]}"#, Some("model")),
        (r#"{"model":1,"messages":[]}"#, Some("model")),
        (r#"{"model":"m"}"#, Some("messages")),
        (r#"{"model":"m","messages":"hi"}"#, Some("messages")),
        (r#"{"model":"m","messages":[1]}"#, Some("messages")),
        (r#"{"model":"m","messages":[{"content":5}]}"#, Some("messages")),
        (r#"{"model":"m","messages":[],"stream":"yes"}"#, Some("stream")),
        (r#"{"model":"m","messages":[],"max_tokens":-1}"#, Some("max_tokens")),
        (r#"{"model":"m","messages":[],"max_tokens":0}"#, Some("max_tokens")),
        (r#"{"model":"m","messages":[],"stream_options":{"include_usage":1}}"#, Some("stream_options")),
    ];
    for (body, param) in cases {
        let e = parse_err(Endpoint::Chat, body);
        assert_eq!(e.param, param, "{body}: {}", e.message);
        assert!(!e.message.is_empty());
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert_eq!(parse_err(Endpoint::Completions, r#"{"model":"m"}"#).param, Some("prompt"));
    assert_eq!(parse_err(Endpoint::Completions, r#"{"model":"m","prompt":{}}"#).param, Some("prompt"));
}

#[test]
fn no_panic_on_odd_input() {
    let inputs: [&[u8]; 8] = [
        b"",
        b"\xff\xfe",
        b"{",
        b"{\"model\":\"\xff\"}",
        b"{\"model\":\"m\",\"messages\":[{\"content\":[{\"text\":[{\"text\":\"deep\"}]}]}]}",
        &[b'['; 10000],
        b"{\"model\":\"m\",\"messages\":[],\"max_tokens\":1e999}",
        b"{\"model\":\"m\",\"messages\":[],\"max_tokens\":99999999999999}",
    ];
    let mut deep = br#"{"model":"m","messages":[],"tools":"#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', 50_000));
    let e = parse_request(Endpoint::Chat, &deep, 16, None).unwrap_err();
    assert!(e.message.contains("nests deeper"), "{}", e.message);
    for i in inputs {
        let _ = parse_request(Endpoint::Chat, i, 16, None);
        let _ = parse_request(Endpoint::Completions, i, 16, None);
        let _ = embeddings_body(i);
    }
    let req =
        parse_request(Endpoint::Chat, br#"{"model":"m","messages":[],"max_tokens":99999999999999}"#, 3, None).unwrap();
    assert_eq!(req.completion_tokens, 3);
    let huge = parse_request(Endpoint::Chat, br#"{"model":"m","messages":[]}"#, 3, Some(u32::MAX)).unwrap();
    assert_eq!(huge.completion_tokens, MAX_COMPLETION_TOKENS);
    let many = format!(r#"{{"model":"m","input":[{}"x"]}}"#, "\"x\",".repeat(MAX_EMBEDDING_INPUTS));
    assert_eq!(embeddings_body(many.as_bytes()).unwrap_err().param, Some("input"));
}

#[test]
fn embeddings_shapes() {
    let one = |input: Value| -> Value {
        let body = json!({"model":"emb","input":input});
        serde_json::from_slice(&embeddings_body(body.to_string().as_bytes()).unwrap()).unwrap()
    };
    let v = one(json!("hello world"));
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "emb");
    assert_eq!(v["usage"], json!({"prompt_tokens":2,"total_tokens":2}));
    let e = v["data"][0]["embedding"].as_array().unwrap();
    assert_eq!(e.len(), 8);
    let norm: f64 = e.iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
    assert!((norm - 1.0).abs() < 1e-3, "unit length, got {norm}");
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["index"], 0);

    let v = one(json!(["a", "b", "a"]));
    let d = v["data"].as_array().unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(d[0]["embedding"], d[2]["embedding"], "deterministic");
    assert_ne!(d[0]["embedding"], d[1]["embedding"]);
    assert_eq!(d[2]["index"], 2);

    assert_eq!(one(json!([1, 2, 3]))["data"].as_array().unwrap().len(), 1);
    assert_eq!(one(json!([1, 2, 3]))["usage"]["prompt_tokens"], 3);
    assert_eq!(one(json!([[1, 2], [3]]))["data"].as_array().unwrap().len(), 2);

    let body = json!({"model":"emb","input":"x","dimensions":3,"encoding_format":"base64"});
    let v: Value = serde_json::from_slice(&embeddings_body(body.to_string().as_bytes()).unwrap()).unwrap();
    assert_eq!(v["data"][0]["embedding"].as_str().unwrap().len(), 16, "12 bytes -> 16 base64 chars");

    for (body, param) in [
        (json!({"input":"x"}), Some("model")),
        (json!({"model":"m"}), Some("input")),
        (json!({"model":"m","input":[]}), Some("input")),
        (json!({"model":"m","input":[1,"a"]}), Some("input")),
        (json!({"model":"m","input":{}}), Some("input")),
        (json!({"model":"m","input":"x","dimensions":0}), Some("dimensions")),
        (json!({"model":"m","input":"x","encoding_format":"hex"}), Some("encoding_format")),
    ] {
        let e = embeddings_body(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.param, param, "{body}: {}", e.message);
    }
}

#[test]
fn models_and_errors() {
    let v: Value = serde_json::from_slice(&models_body(&["a", "b"], 7)).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1], json!({"id":"b","object":"model","created":7,"owned_by":"sluice-mock"}));
    let v: Value =
        serde_json::from_slice(&error_body("bad \"x\"", "requests", None, Some("rate_limit_exceeded"))).unwrap();
    assert_eq!(v, json!({"error":{"message":"bad \"x\"","type":"requests","param":null,"code":"rate_limit_exceeded"}}));
}

#[test]
fn stream_events_exact_size() {
    let req = chat(json!({"model":"m","stream":true,"messages":[]}));
    let mut it = stream_events(&req, "i", 1);
    assert_eq!(it.len(), 19);
    assert_eq!(it.total(), 19);
    it.next();
    assert_eq!(it.len(), 18);
    let zero = parse_request(Endpoint::Chat, br#"{"model":"m","messages":[]}"#, 0, None).unwrap();
    let evs = events(&zero);
    assert_eq!(evs.len(), 3, "role, finish, done");
}
