//! Anthropic's Messages body as the clouds take it for Claude: Vertex AI's
//! `rawPredict` / `streamRawPredict` and Bedrock's `InvokeModel` /
//! `InvokeModelWithResponseStream` name the model in the URL and the API
//! version in the body, so the body loses `model`, gains
//! `anthropic_version` (Vertex: `vertex-2023-10-16`; Bedrock:
//! `bedrock-2023-05-31`) and, for Bedrock, loses `stream` (the URL says it;
//! Bedrock refuses any key it does not know). Every other member is copied
//! as its raw text, in order: nothing is parsed below the top level, so a
//! client's request reaches Claude as it wrote it.
//!
//! References: https://docs.anthropic.com/en/api/claude-on-vertex-ai,
//! https://docs.anthropic.com/en/api/claude-on-amazon-bedrock,
//! https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages.html

use crate::translate::TranslateError;

/// Vertex AI's `anthropic_version`.
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";
/// Bedrock's `anthropic_version`.
pub const BEDROCK_VERSION: &str = "bedrock-2023-05-31";

/// Which cloud the body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Vertex,
    Bedrock,
}

/// `body` (a Messages request object) rewritten for `cloud`.
pub fn body(body: &[u8], cloud: Cloud) -> Result<Vec<u8>, TranslateError> {
    let invalid = |e: String| TranslateError::new(format!("Invalid Messages request: {e}"), None);
    let body = crate::translate::readable(body).map_err(invalid)?;
    let (version, drop_stream) = match cloud {
        Cloud::Vertex => (VERTEX_VERSION, false),
        Cloud::Bedrock => (BEDROCK_VERSION, true),
    };
    let mut out = Vec::with_capacity(body.len() + 48);
    out.extend_from_slice(b"{\"anthropic_version\":\"");
    out.extend_from_slice(version.as_bytes());
    out.push(b'"');
    for member in sonic_rs::to_object_iter(body) {
        let (key, value) = member.map_err(|e| invalid(e.to_string()))?;
        match &*key {
            "model" | "anthropic_version" => continue,
            "stream" if drop_stream => continue,
            _ => {}
        }
        out.push(b',');
        crate::translate::write_json(&mut out, &&*key);
        out.push(b':');
        out.extend_from_slice(value.as_raw_str().as_bytes());
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn model_goes_version_comes_rest_stays_as_written() {
        let input = br#"{"model":"claude-x","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"h\u00e9"}],"metadata":{"user_id":"u"}}"#;
        let out = body(input, Cloud::Vertex).unwrap();
        let s = std::str::from_utf8(&out).unwrap();
        assert!(s.starts_with(r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":64,"stream":true,"#), "{s}");
        // Raw text copied: the escape is kept as the client wrote it.
        assert!(s.contains(r#""content":"h\u00e9""#), "{s}");
        assert!(v(&out).get("model").is_none());
        let bedrock = v(&body(input, Cloud::Bedrock).unwrap());
        assert_eq!(bedrock["anthropic_version"], "bedrock-2023-05-31");
        assert!(bedrock.get("stream").is_none() && bedrock.get("model").is_none());
        assert_eq!(bedrock["metadata"]["user_id"], "u");
        // A client's own anthropic_version is replaced, not duplicated.
        let own = body(br#"{"anthropic_version":"x","messages":[]}"#, Cloud::Bedrock).unwrap();
        assert_eq!(std::str::from_utf8(&own).unwrap(), r#"{"anthropic_version":"bedrock-2023-05-31","messages":[]}"#);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b"{"[..], b"[1]", b"{\"a\":}", b"nope"] {
            let _ = body(bad, Cloud::Vertex);
        }
        assert!(body(b"{\"a\":}", Cloud::Vertex).is_err());
        let deep = format!("{{\"a\":{}}}", "[".repeat(1000));
        assert!(body(deep.as_bytes(), Cloud::Bedrock).is_err());
    }
}
