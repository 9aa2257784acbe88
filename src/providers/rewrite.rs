//! The client's body as the upstream must see it: `model` renamed to the
//! deployment's name, and usage asked for on streams. One splice and one
//! copy, from the spans the peek found; no copy at all when nothing changes.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::peek::Peek;

/// Rewrite the body for the upstream: replace `model` when the deployment's
/// name differs, and ask for usage on streams when the client did not.
/// Returns the original bytes (no copy) when nothing must change.
pub fn rewrite(body: &Bytes, peek: &Peek, upstream_model: &str, want_usage: bool) -> Bytes {
    let change_model = peek.model != upstream_model;
    let inject_usage = want_usage && peek.stream && !peek.include_usage;
    if !change_model && !inject_usage {
        return body.clone();
    }
    // (range to replace, replacement), applied in body order.
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::with_capacity(2);
    if change_model {
        edits.push((peek.model_span.clone(), json_string(upstream_model)));
    }
    if inject_usage {
        match &peek.stream_options_span {
            Some(span) => edits.push((span.clone(), stream_options_with_usage(&body[span.clone()]))),
            None => {
                // Insert right after the opening brace; the object already has
                // a `model` member, so a trailing comma is always valid.
                let brace = body.iter().position(|&b| b == b'{').unwrap_or(0);
                edits.push((brace + 1..brace + 1, b"\"stream_options\":{\"include_usage\":true},".to_vec()));
            }
        }
    }
    edits.sort_by_key(|(r, _)| r.start);
    let extra: usize = edits.iter().map(|(_, v)| v.len()).sum();
    let mut out = BytesMut::with_capacity(body.len() + extra);
    let mut pos = 0;
    for (range, replacement) in edits {
        out.extend_from_slice(&body[pos..range.start]);
        out.extend_from_slice(&replacement);
        pos = range.end;
    }
    out.extend_from_slice(&body[pos..]);
    out.freeze()
}

fn json_string(s: &str) -> Vec<u8> {
    sonic_rs::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec())
}

/// `stream_options` with `include_usage: true` and every other member kept.
fn stream_options_with_usage(raw: &[u8]) -> Vec<u8> {
    let mut out = b"{\"include_usage\":true".to_vec();
    for (k, v) in sonic_rs::to_object_iter(raw).flatten() {
        if &*k == "include_usage" {
            continue;
        }
        out.push(b',');
        out.extend_from_slice(&json_string(&k));
        out.push(b':');
        out.extend_from_slice(v.as_raw_str().as_bytes());
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    use crate::peek::Peek;

    fn chat(body: &str) -> Peek {
        Peek::read(body.as_bytes(), Endpoint::Chat).unwrap()
    }

    #[test]
    fn rewrite_is_zero_copy_when_nothing_changes() {
        let body = Bytes::from_static(br#"{"model":"m","messages":[{}]}"#);
        let p = chat(std::str::from_utf8(&body).unwrap());
        let out = rewrite(&body, &p, "m", true);
        assert_eq!(out.as_ptr(), body.as_ptr());
    }

    #[test]
    fn rewrite_model_and_inject_usage() {
        let body = Bytes::from_static(br#"{"model":"alias","stream":true,"messages":[{"role":"user","content":"x"}]}"#);
        let p = chat(std::str::from_utf8(&body).unwrap());
        let out = rewrite(&body, &p, "real\"name", true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "real\"name");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["messages"][0]["content"], "x");
    }

    #[test]
    fn rewrite_existing_stream_options_keeps_other_members() {
        let body = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1},"messages":[{}]}"#,
        );
        let p = chat(std::str::from_utf8(&body).unwrap());
        assert!(!p.include_usage);
        let out = rewrite(&body, &p, "m", true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
        // Already asked: untouched.
        let body2 = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{}]}"#,
        );
        let p2 = chat(std::str::from_utf8(&body2).unwrap());
        assert!(p2.include_usage);
        assert_eq!(rewrite(&body2, &p2, "m", true).as_ptr(), body2.as_ptr());
    }
}
