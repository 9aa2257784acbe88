//! Golden tests. The Azure bodies follow the examples of Microsoft's public
//! Azure OpenAI documentation ("Content filtering", the scenario tables of
//! HTTP 400 prompt refusals and HTTP 200 filtered completions, and the REST
//! reference's `contentFilterResults` schema), written out here by hand.

use super::*;

const PROMPT_REFUSED: &str = r#"{
  "error": {
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
    "type": null,
    "param": "prompt",
    "code": "content_filter",
    "status": 400,
    "innererror": {
      "code": "ResponsibleAIPolicyViolation",
      "content_filter_result": {
        "hate": { "filtered": true, "severity": "high" },
        "jailbreak": { "filtered": true, "detected": true },
        "self_harm": { "filtered": false, "severity": "safe" },
        "sexual": { "filtered": false, "severity": "safe" },
        "violence": { "filtered": false, "severity": "medium" }
      }
    }
  }
}"#;

const BLOCKLIST_REFUSED: &str = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"custom_blocklists":{"filtered":true,"details":[{"filtered":true,"id":"my-blocklist"},{"filtered":false,"id":"other"}]},"profanity":{"filtered":true,"detected":true}}}}}"#;

const COMPLETION_FILTERED: &str = r#"{
  "id": "chatcmpl-123", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
  "prompt_filter_results": [
    { "prompt_index": 0, "content_filter_results": {
        "hate": { "filtered": false, "severity": "safe" },
        "self_harm": { "filtered": false, "severity": "safe" },
        "sexual": { "filtered": false, "severity": "safe" },
        "violence": { "filtered": false, "severity": "safe" } } }
  ],
  "choices": [
    { "index": 0, "finish_reason": "content_filter",
      "message": { "role": "assistant", "content": "Once upon" },
      "content_filter_results": {
        "hate": { "filtered": false, "severity": "safe" },
        "self_harm": { "filtered": false, "severity": "safe" },
        "sexual": { "filtered": false, "severity": "safe" },
        "violence": { "filtered": true, "severity": "medium" },
        "protected_material_text": { "filtered": false, "detected": false } } }
  ],
  "usage": { "prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13 }
}"#;

const CLEAN: &str = r#"{"id":"c","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"hi"},"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#;

#[test]
fn prompt_refusal_becomes_an_openai_error_naming_the_categories() {
    let m = map_error(400, PROMPT_REFUSED.as_bytes()).unwrap();
    assert_eq!(m.status, 400);
    assert_eq!(
        m.verdict,
        FilterVerdict { source: FilterSource::Prompt, categories: vec!["hate (high)".into(), "jailbreak".into()] }
    );
    assert_eq!(
        m.body,
        r#"{"error":{"message":"Azure OpenAI's content filter refused the prompt (hate (high), jailbreak). Change the request and retry; the filter's policy is set on the Azure deployment.","type":"invalid_request_error","param":"prompt","code":"content_filter"}}"#
    );
}

#[test]
fn blocklist_and_detected_categories() {
    let m = map_error(400, BLOCKLIST_REFUSED.as_bytes()).unwrap();
    assert_eq!(m.verdict.categories, vec!["custom_blocklists: my-blocklist".to_owned(), "profanity".to_owned()]);
    // The older array form of custom_blocklists.
    let array_form = r#"{"error":{"code":"content_filter","param":"prompt","innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"custom_blocklists":[{"id":"b1","filtered":true}]}}}}"#;
    assert_eq!(
        map_error(400, array_form.as_bytes()).unwrap().verdict.categories,
        vec!["custom_blocklists: b1".to_owned()]
    );
}

#[test]
fn other_errors_are_left_alone() {
    for body in [
        r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded call rate limit."}}"#,
        r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#,
        "not json",
        "",
    ] {
        assert_eq!(map_error(400, body.as_bytes()), None, "{body}");
    }
    // No innererror: still a filter refusal, with no category list.
    let bare = r#"{"error":{"code":"content_filter","message":"filtered","param":"prompt"}}"#;
    let m = map_error(500, bare.as_bytes()).unwrap();
    assert_eq!(m.status, 400);
    assert!(m.body.contains("refused the prompt. Change"), "{}", m.body);
}

#[test]
fn filtered_completion_is_read_but_not_rewritten() {
    assert_eq!(
        filtered_completion(COMPLETION_FILTERED.as_bytes()),
        Some(FilterVerdict { source: FilterSource::Completion, categories: vec!["violence (medium)".into()] })
    );
    assert_eq!(filtered_completion(CLEAN.as_bytes()), None);
    assert_eq!(filtered_completion(b"{}"), None);
}

#[test]
fn a_deeply_nested_error_body_is_not_parsed() {
    // Parsed into a `Value` as it was, this overflowed the stack (an abort,
    // not an error) before anything looked at its `code`.
    let deep =
        format!(r#"{{"error":{{"code":"content_filter","x":{}1{}}}}}"#, "[".repeat(200_000), "]".repeat(200_000));
    assert_eq!(map_error(400, deep.as_bytes()), None);
    let shallow = format!(r#"{{"error":{{"code":"content_filter","x":{}1{}}}}}"#, "[".repeat(20), "]".repeat(20));
    assert!(map_error(400, shallow.as_bytes()).is_some());
}
