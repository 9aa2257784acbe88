//! Azure OpenAI's content filter, seen from an OpenAI client.
//!
//! Azure refuses a filtered prompt with HTTP 400, `error.code =
//! "content_filter"` and the per-category verdicts in
//! `error.innererror.content_filter_result`; a completion cut by the filter
//! is a 200 whose choice has `finish_reason: "content_filter"` and
//! `content_filter_results` (prompt verdicts in `prompt_filter_results`).
//!
//! [`map_error`] turns the refusal into OpenAI's error shape with a message
//! that names the categories, so a client sees why without knowing Azure.
//! A filtered 200 passes through unchanged (OpenAI clients already know
//! `finish_reason: "content_filter"`); [`filtered_completion`] only reads
//! its verdict for logs and metrics.

use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterSource {
    Prompt,
    Completion,
}

/// Which categories tripped the filter, e.g. `["hate (high)", "jailbreak"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterVerdict {
    pub source: FilterSource,
    pub categories: Vec<String>,
}

/// A content-filter refusal in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedError {
    pub status: u16,
    pub body: String,
    pub verdict: FilterVerdict,
}

/// `Some` when `body` is Azure's content-filter refusal; `None` for every
/// other error, which the caller maps as usual.
pub fn map_error(status: u16, body: &[u8]) -> Option<MappedError> {
    // An upstream's error body, unchecked until here: sonic-rs builds a
    // `Value` recursively, so a deeply nested one would overflow the stack.
    let text = crate::translate::readable(body).ok()?;
    let v: Value = sonic_rs::from_str(text).ok()?;
    let error = v.get("error")?;
    let inner = error.get("innererror");
    let is_filter = error.get("code").and_then(|c| c.as_str()) == Some("content_filter")
        || inner.and_then(|i| i.get("code")).and_then(|c| c.as_str()) == Some("ResponsibleAIPolicyViolation");
    if !is_filter {
        return None;
    }
    let param = error.get("param").and_then(|p| p.as_str()).unwrap_or("prompt");
    let source = if param == "prompt" || param == "messages" || param == "input" {
        FilterSource::Prompt
    } else {
        FilterSource::Completion
    };
    let categories = inner.and_then(|i| i.get("content_filter_result")).map(tripped).unwrap_or_default();
    let what = match source {
        FilterSource::Prompt => "the prompt",
        FilterSource::Completion => "the completion",
    };
    let why = if categories.is_empty() { String::new() } else { format!(" ({})", categories.join(", ")) };
    let message = format!(
        "Azure OpenAI's content filter refused {what}{why}. Change the request and retry; \
         the filter's policy is set on the Azure deployment."
    );
    // A struct, not `json!`, so the keys keep OpenAI's order (golden tests).
    let body = sonic_rs::to_string(&OpenAiError {
        error: OpenAiErrorBody { message: &message, kind: "invalid_request_error", param, code: "content_filter" },
    })
    .unwrap_or_default();
    // Azure answers 400; anything else claiming to be a filter refusal is
    // still the client's request being refused, so it stays a 4xx.
    let status = if (400..500).contains(&status) { status } else { 400 };
    Some(MappedError { status, body, verdict: FilterVerdict { source, categories } })
}

#[derive(serde::Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorBody<'a>,
}

#[derive(serde::Serialize)]
struct OpenAiErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: &'a str,
    code: &'a str,
}

/// The verdict of a 200 answer that the filter cut or flagged: `Some`
/// when a choice ended with `finish_reason: "content_filter"` or any prompt
/// verdict says `filtered: true`.
pub fn filtered_completion(body: &[u8]) -> Option<FilterVerdict> {
    let v: Value = sonic_rs::from_slice(body).ok()?;
    let mut categories = Vec::new();
    let mut source = None;
    if let Some(prompts) = v.get("prompt_filter_results").and_then(|p| p.as_array()) {
        for p in prompts.iter() {
            let found = p.get("content_filter_results").map(tripped).unwrap_or_default();
            if !found.is_empty() {
                source = Some(FilterSource::Prompt);
                categories.extend(found);
            }
        }
    }
    if let Some(choices) = v.get("choices").and_then(|c| c.as_array()) {
        for c in choices.iter() {
            if c.get("finish_reason").and_then(|f| f.as_str()) == Some("content_filter") {
                source = Some(FilterSource::Completion);
                categories.extend(c.get("content_filter_results").map(tripped).unwrap_or_default());
            }
        }
    }
    source.map(|source| FilterVerdict { source, categories })
}

/// The categories whose verdict says `filtered: true`, with their severity
/// when Azure gives one; blocklist hits by id.
fn tripped(results: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(obj) = results.as_object() else { return out };
    for (name, verdict) in obj.iter() {
        if let Some(list) = verdict.as_array() {
            // `custom_blocklists: [{"id": "...", "filtered": true}]`
            for item in list.iter().filter(|i| i.get("filtered").and_then(|f| f.as_bool()) == Some(true)) {
                out.push(format!("{name}: {}", item.get("id").and_then(|i| i.as_str()).unwrap_or("?")));
            }
            continue;
        }
        if verdict.get("filtered").and_then(|f| f.as_bool()) != Some(true) {
            continue;
        }
        let details: Vec<String> = verdict
            .get("details")
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    .filter(|i| i.get("filtered").and_then(|f| f.as_bool()) == Some(true))
                    .filter_map(|i| i.get("id").and_then(|x| x.as_str()).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        match (verdict.get("severity").and_then(|s| s.as_str()), details.is_empty()) {
            (Some(sev), _) => out.push(format!("{name} ({sev})")),
            (None, false) => out.push(format!("{name}: {}", details.join(", "))),
            (None, true) => out.push(name.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests;
