//! Anthropic generation settings that have an OpenAI counterpart, for the
//! `/v1/messages` translation (`request.rs`).
//!
//! - `thinking` and `output_config.effort` → chat `reasoning_effort`.
//!   `output_config.effort` is the explicit knob and wins (it applies with
//!   thinking on or off). Otherwise `thinking: {"type": "enabled",
//!   "budget_tokens": n}` maps by budget (under 4,096 `low`, under 16,384
//!   `medium`, else `high`); `adaptive` and `disabled` leave the
//!   deployment's default. Effort labels pass through under the same name:
//!   OpenAI's `reasoning_effort` has `low`, `medium`, `high`, `xhigh` and
//!   `max` too.
//! - `output_config.format` (and the earlier beta's top-level
//!   `output_format`) `{"type": "json_schema", "schema": ..}` → chat
//!   `response_format` with a `json_schema`.
//!
//! Hazard: Claude Code sends `output_config.effort` on every turn (`high`
//! by default), and OpenAI answers 400 to `reasoning_effort` on models that
//! do not reason (gpt-4o, gpt-4.1). So it goes only to deployments marked
//! `reasoning = true`, never to every OpenAI-shaped one.
//!
//! References: https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking,
//! https://docs.anthropic.com/en/docs/build-with-claude/effort,
//! https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs,
//! https://platform.openai.com/docs/api-reference/chat/create (reasoning_effort, response_format)

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sonic_rs::LazyValue;

/// `thinking`.
#[derive(Debug, Default, Deserialize)]
pub struct Thinking<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(default)]
    pub budget_tokens: Option<u64>,
}

/// `output_config`.
#[derive(Debug, Default, Deserialize)]
pub struct OutputConfig<'a> {
    #[serde(borrow, default)]
    pub effort: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub format: Option<OutputFormat<'a>>,
}

/// `output_config.format`, or the top-level `output_format` of the beta.
#[derive(Debug, Default, Deserialize)]
pub struct OutputFormat<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub schema: Option<LazyValue<'a>>,
}

/// Chat `reasoning_effort` for these settings, if they ask for one.
pub fn reasoning_effort(thinking: Option<&Thinking<'_>>, output: Option<&OutputConfig<'_>>) -> Option<&'static str> {
    if let Some(effort) = output.and_then(|o| o.effort.as_deref()) {
        return match effort {
            "low" => Some("low"),
            "medium" => Some("medium"),
            "high" => Some("high"),
            "xhigh" => Some("xhigh"),
            "max" => Some("max"),
            _ => None,
        };
    }
    let t = thinking?;
    match t.kind.as_deref() {
        Some("enabled") => Some(match t.budget_tokens {
            Some(b) if b < 4_096 => "low",
            Some(b) if b < 16_384 => "medium",
            Some(_) => "high",
            // Enabled without a budget (the API requires one): the middle.
            None => "medium",
        }),
        _ => None,
    }
}

/// Chat `response_format`.
#[derive(Debug, Serialize)]
pub struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchema<'a>,
}

#[derive(Debug, Serialize)]
struct JsonSchema<'a> {
    name: &'static str,
    schema: LazyValue<'a>,
    strict: bool,
}

/// Chat `response_format` for a structured-output request: `output_config.format`,
/// else the beta's `output_format`. Anthropic enforces the schema, so the
/// chat side asks for `strict` too.
pub fn response_format<'a>(
    output: Option<&OutputConfig<'a>>,
    legacy: Option<&OutputFormat<'a>>,
) -> Option<ResponseFormat<'a>> {
    let f = output.and_then(|o| o.format.as_ref()).or(legacy)?;
    if f.kind.as_deref() != Some("json_schema") {
        return None;
    }
    let schema = f.schema.clone()?;
    Some(ResponseFormat { kind: "json_schema", json_schema: JsonSchema { name: "output", schema, strict: true } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::parse;

    #[derive(Deserialize)]
    struct Req<'a> {
        #[serde(borrow, default)]
        thinking: Option<Thinking<'a>>,
        #[serde(borrow, default)]
        output_config: Option<OutputConfig<'a>>,
        #[serde(borrow, default)]
        output_format: Option<OutputFormat<'a>>,
    }

    fn effort(body: &str) -> Option<&'static str> {
        let r: Req<'_> = parse(body).unwrap();
        reasoning_effort(r.thinking.as_ref(), r.output_config.as_ref())
    }

    #[test]
    fn effort_from_claude_codes_request() {
        // What Claude Code 2.1 sends on every turn.
        assert_eq!(effort(r#"{"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}"#), Some("high"));
        assert_eq!(effort(r#"{"thinking": {"type": "adaptive"}}"#), None);
        assert_eq!(effort(r#"{"output_config": {"effort": "max"}}"#), Some("max"));
        assert_eq!(effort(r#"{"output_config": {"effort": "turbo"}}"#), None);
        assert_eq!(effort(r#"{"thinking": {"type": "disabled"}, "output_config": {"effort": "low"}}"#), Some("low"));
    }

    #[test]
    fn effort_from_a_thinking_budget() {
        assert_eq!(effort(r#"{"thinking": {"type": "enabled", "budget_tokens": 1024}}"#), Some("low"));
        assert_eq!(effort(r#"{"thinking": {"type": "enabled", "budget_tokens": 8000}}"#), Some("medium"));
        assert_eq!(effort(r#"{"thinking": {"type": "enabled", "budget_tokens": 32000}}"#), Some("high"));
        assert_eq!(effort(r#"{"thinking": {"type": "disabled"}}"#), None);
        assert_eq!(effort("{}"), None);
    }

    #[test]
    fn structured_output_formats() {
        let body = r#"{"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}"#;
        let r: Req<'_> = parse(body).unwrap();
        let f = response_format(r.output_config.as_ref(), r.output_format.as_ref()).unwrap();
        let mut out = Vec::new();
        crate::translate::write_json(&mut out, &f);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"type":"json_schema","json_schema":{"name":"output","schema":{"type": "object"},"strict":true}}"#
        );
        let legacy = r#"{"output_format": {"type": "json_schema", "schema": {"type": "object"}}}"#;
        let r: Req<'_> = parse(legacy).unwrap();
        assert!(response_format(r.output_config.as_ref(), r.output_format.as_ref()).is_some());
        let effort_only = r#"{"output_config": {"effort": "low"}}"#;
        let r: Req<'_> = parse(effort_only).unwrap();
        assert!(response_format(r.output_config.as_ref(), r.output_format.as_ref()).is_none());
    }
}
