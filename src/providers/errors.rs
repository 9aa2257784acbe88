//! An upstream's error, as the client sees it: its body read in the
//! upstream's own style and given OpenAI's shape, and every provider secret
//! scrubbed from anything an upstream says.

use bytes::Bytes;
use memchr::memmem;
use sonic_rs::JsonValueTrait;

use crate::error::error_body;

/// How an upstream writes its error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error":{"message":..,"type":..}}` (also Ollama's `{"error":"text"}`).
    OpenAi,
    /// `{"type":"error","error":{"type":..,"message":..}}`
    Anthropic,
    /// `{"error":{"code":..,"message":..,"status":..}}`
    Gemini,
    /// OpenAI's, plus Azure's content-filter refusals, made readable.
    Azure,
    /// Vertex AI: Anthropic's for Claude's own errors, Google's for the platform's.
    Vertex,
    /// Bedrock: `{"message": ..}`, the exception's kind told by the status.
    Bedrock,
}

/// The OpenAI-shaped error body for an upstream's error `status` and
/// `body` (already scrubbed of secrets); see [`HttpUpstream::status_error`](super::transport::HttpUpstream::status_error).
pub fn map_status_error(style: ErrorStyle, provider: &str, status: u16, body: Bytes) -> Bytes {
    if style == ErrorStyle::Azure
        && let Some(m) = crate::cloud::azure::content_filter::map_error(status, &body)
    {
        return Bytes::from(m.body);
    }
    // Parse only bodies that are UTF-8 (nothing before checked an error
    // body, and sonic-rs reads object keys without checking) and cannot
    // overflow the parser's stack; the others are quoted lossily below.
    let text = crate::translate::readable(&body).ok();
    let parseable = text.is_some();
    let field = |path: &[&str]| -> Option<String> {
        let v = sonic_rs::get(text?, path).ok()?;
        v.as_str().map(str::to_string)
    };
    // (OpenAI error type, message) of the upstream's own error.
    let parsed: Option<(Option<String>, String)> = if !parseable {
        None
    } else {
        match style {
            ErrorStyle::OpenAi | ErrorStyle::Azure => field(&["error", "message"]).map(|m| (None, m)),
            ErrorStyle::Anthropic => {
                crate::translate::anthropic::response::error_parts(&body).map(|(t, m)| (Some(t), m))
            }
            ErrorStyle::Gemini => gemini_parts(&body),
            ErrorStyle::Bedrock => crate::translate::bedrock::error_message(&body)
                .map(|m| (Some(crate::translate::bedrock::error_type(status).to_owned()), m)),
            ErrorStyle::Vertex => match crate::translate::anthropic::response::error_parts(&body) {
                // Google's bodies parse too, with no inner `type`.
                Some((kind, message)) if !kind.is_empty() => Some((Some(kind), message)),
                _ => gemini_parts(&body),
            },
        }
    };
    let client_fault = (400..500).contains(&status) && !matches!(status, 401 | 403 | 429);
    match (client_fault, parsed) {
        (true, Some((None, _))) => body,
        (true, Some((Some(kind), message))) => error_body(&message, &kind, None, None),
        (_, parsed) => {
            // The upstream's message: its error's, Ollama's
            // `{"error":"text"}`, or the start of a plain-text / HTML body.
            let text = parsed
                .map(|(_, m)| m)
                .or_else(|| if parseable { field(&["error"]) } else { None })
                .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string());
            let message = if text.is_empty() {
                format!("The upstream provider `{provider}` answered with HTTP {status}.")
            } else {
                format!("The upstream provider `{provider}` answered with HTTP {status}: {text}")
            };
            let (kind, code) = match status {
                429 => ("rate_limit_error", "rate_limit_exceeded"),
                _ => ("upstream_error", "upstream_error"),
            };
            error_body(&message, kind, None, Some(code))
        }
    }
}

fn gemini_parts(body: &[u8]) -> Option<(Option<String>, String)> {
    crate::translate::gemini::error_parts(body)
        .map(|(s, m)| (Some(crate::translate::gemini::error_type(&s).to_string()), m))
}

/// Replace every occurrence of a secret with `***`.
///
/// One pass per secret, copying: the body is the upstream's, and one that
/// repeats a secret (an upstream knows the key it was sent) must not cost
/// a search from the start and a shift of the rest per copy (quadratic: a
/// 16 MiB Bedrock exception frame full of it held a worker for hours).
pub fn scrub(body: Bytes, secrets: &[String]) -> Bytes {
    if secrets.iter().all(|s| memmem::find(&body, s.as_bytes()).is_none()) {
        return body;
    }
    let mut text = body.to_vec();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let finder = memmem::Finder::new(s.as_bytes());
        if finder.find(&text).is_none() {
            continue;
        }
        let mut out = Vec::with_capacity(text.len());
        let mut from = 0;
        for i in finder.find_iter(&text) {
            // `find_iter` does not overlap its matches: each starts at or past `from`.
            out.extend_from_slice(&text[from..i]);
            out.extend_from_slice(b"***");
            from = i + s.len();
        }
        out.extend_from_slice(&text[from..]);
        text = out;
    }
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_copy() {
        let s = vec!["sk-secret-123".to_string()];
        let out = scrub(Bytes::from_static(b"bad key sk-secret-123 and sk-secret-123!"), &s);
        assert_eq!(&out[..], b"bad key *** and ***!");
        let clean = Bytes::from_static(b"nothing here");
        assert_eq!(scrub(clean.clone(), &s).as_ptr(), clean.as_ptr());
    }

    #[test]
    fn scrubbing_a_body_full_of_a_secret_is_linear() {
        // 8 MiB of the key: the search-and-splice loop took minutes on this
        // (no clock here: one pass per secret is linear by construction).
        let s = vec!["sk-secret-123".to_string()];
        let body = Bytes::from("sk-secret-123,".repeat(600_000));
        assert_eq!(scrub(body, &s), Bytes::from("***,".repeat(600_000)));
        // Overlapping copies: the leftmost goes, as before.
        let s = vec!["aaaaaa".to_string()];
        assert_eq!(&scrub(Bytes::from_static(b"aaaaaaaaa!"), &s)[..], b"***aaa!");
    }

    #[test]
    fn an_error_body_that_is_not_utf8_is_quoted_not_parsed() {
        // A client's fault, in OpenAI's style: a readable error passes as is.
        let good = Bytes::from_static(br#"{"error":{"k":1,"message":"bad model"}}"#);
        assert_eq!(map_status_error(ErrorStyle::OpenAi, "p", 400, good.clone()), good);
        // With a key that is not UTF-8 it is not parsed (nor passed on): the
        // gateway's own error quotes it, lossily, as valid JSON.
        let bad = Bytes::from_static(b"{\"error\":{\"k\x80\":1,\"message\":\"bad model\"}}");
        for style in
            [ErrorStyle::OpenAi, ErrorStyle::Anthropic, ErrorStyle::Gemini, ErrorStyle::Vertex, ErrorStyle::Bedrock]
        {
            let out = map_status_error(style, "p", 400, bad.clone());
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("The upstream provider `p` answered with HTTP 400: {"), "{message}");
        }
    }
}
