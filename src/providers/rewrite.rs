//! The client's body as the upstream must see it: `model` renamed to the
//! deployment's name, and usage asked for on streams. One splice and one
//! copy, from the spans the peek found; no copy at all when nothing changes.

use std::ops::Range;

use bytes::Bytes;

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
    // At most two edits (range to replace, replacement), applied in body
    // order, written straight into the one output buffer: no list of
    // edits or replacement on the heap (they were three allocations per
    // request, docs/performance.md).
    enum With<'a> {
        Model(&'a str),
        StreamOptions(&'a [u8]),
        InsertStreamOptions,
    }
    let mut edits: [Option<(Range<usize>, With<'_>)>; 2] = [None, None];
    if change_model {
        edits[0] = Some((peek.model_span.clone(), With::Model(upstream_model)));
    }
    if inject_usage {
        edits[1] = Some(match &peek.stream_options_span {
            Some(span) => (span.clone(), With::StreamOptions(&body[span.clone()])),
            None => {
                // Insert right after the opening brace; the object already has
                // a `model` member, so a trailing comma is always valid.
                let brace = body.iter().position(|&b| b == b'{').unwrap_or(0);
                (brace + 1..brace + 1, With::InsertStreamOptions)
            }
        });
    }
    if let [Some(a), Some(b)] = &edits
        && b.0.start < a.0.start
    {
        edits.swap(0, 1);
    }
    let mut out = Vec::with_capacity(body.len() + upstream_model.len() + 64);
    let mut pos = 0;
    for (range, with) in edits.into_iter().flatten() {
        out.extend_from_slice(&body[pos..range.start]);
        match with {
            With::Model(m) => crate::translate::write_json(&mut out, &m),
            With::StreamOptions(raw) => stream_options_with_usage(&mut out, raw),
            With::InsertStreamOptions => out.extend_from_slice(b"\"stream_options\":{\"include_usage\":true},"),
        }
        pos = range.end;
    }
    out.extend_from_slice(&body[pos..]);
    Bytes::from(out)
}

/// `stream_options` with `include_usage: true` and every other member kept.
fn stream_options_with_usage(out: &mut Vec<u8>, raw: &[u8]) {
    out.extend_from_slice(b"{\"include_usage\":true");
    for (k, v) in sonic_rs::to_object_iter(raw).flatten() {
        if &*k == "include_usage" {
            continue;
        }
        out.extend_from_slice(b",");
        crate::translate::write_json(out, &&*k);
        out.extend_from_slice(b":");
        out.extend_from_slice(v.as_raw_str().as_bytes());
    }
    out.extend_from_slice(b"}");
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

    /// The two edits are applied in body order, whichever comes first.
    #[test]
    fn rewrite_stream_options_before_model() {
        let body = Bytes::from_static(
            br#"{"stream":true,"stream_options":{"x":[1]},"model":"alias","messages":[{"role":"user","content":"x"}]}"#,
        );
        let p = chat(std::str::from_utf8(&body).unwrap());
        let out = rewrite(&body, &p, "real", true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "real");
        assert_eq!(v["stream_options"], serde_json::json!({"include_usage": true, "x": [1]}));
        assert_eq!(v["messages"][0]["content"], "x");
    }
}
