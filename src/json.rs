//! JSON helpers shared by the gateway and the mock.

/// Deepest JSON nesting the gateway parses, in client bodies, upstream
/// answers and stream events alike (see [`nesting_exceeds`] for why there is
/// a limit at all). Real tool schemas stay far below it.
pub const MAX_DEPTH: usize = 256;

/// Does `body` nest arrays/objects deeper than `max_depth`?
///
/// sonic-rs 0.5 recurses without a depth limit when it skips values it is
/// not reading (cloudwego/sonic-rs#232): about 10,000 nested `[` overflow the
/// stack and abort the whole process, which no `catch_unwind` can stop. So
/// every body is checked before sonic-rs sees it.
///
/// Cost: a SIMD count of `[`/`{` settles almost every body (depth cannot
/// exceed the number of openers); only bodies with more openers than the
/// limit are scanned, and that scan jumps over string contents with memchr.
pub fn nesting_exceeds(body: &[u8], max_depth: usize) -> bool {
    if memchr::memchr2_iter(b'[', b'{', body).count() <= max_depth {
        return false;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                // Skip the string: jump to each `"` or `\`, stepping over escapes.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &body[i.min(body.len())..]) {
                        Some(off) => {
                            let at = i + off;
                            if body[at] == b'\\' {
                                i = at + 2;
                            } else {
                                i = at + 1;
                                break;
                            }
                        }
                        // Unterminated string: no deeper nesting can follow.
                        None => return false,
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// Why an upstream's answer (or stream event) cannot be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("is not valid JSON")]
    NotJson,
}

/// Is `doc` one JSON value a client can read: UTF-8, not nested past
/// [`MAX_DEPTH`], well formed? Upstream bytes are otherwise passed on
/// untouched, so an SDK would be the first to choke on them. One pass of
/// UTF-8 validation and one of serde_json (a few hundred MB/s and up).
pub fn check(doc: &[u8]) -> Result<(), Unfit> {
    if std::str::from_utf8(doc).is_err() {
        return Err(Unfit::NotUtf8);
    }
    if nesting_exceeds(doc, MAX_DEPTH) {
        return Err(Unfit::TooDeep);
    }
    // serde_json, not sonic-rs: both reject the same malformed documents
    // here, and sonic-rs's skipping parse took twice as long (about 300
    // against 150 ns for a 200-byte chunk, docs/performance.md, issue 14).
    // Skipping with IgnoredAny does not recurse on the stack past what the
    // depth check above already bounds.
    serde_json::from_slice::<serde::de::IgnoredAny>(doc).map(drop).map_err(|_| Unfit::NotJson)
}

/// Is `doc` an object whose first member is `"error"` — an error object,
/// OpenAI's `{"error": {...}}` shape, sent where an answer was expected?
pub fn is_error_object(doc: &[u8]) -> bool {
    let Some(rest) = doc.trim_ascii_start().strip_prefix(b"{") else { return false };
    rest.trim_ascii_start().starts_with(b"\"error\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert_eq!(check(br#"{"a":[1,2,{"b":"c"}]}"#), Ok(()));
        assert_eq!(check(b"{\"a\":\"\xff\"}"), Err(Unfit::NotUtf8));
        assert_eq!(check(br#"{"a":[1,2}"#), Err(Unfit::NotJson));
        assert_eq!(check(br#"{"a":1} trailing"#), Err(Unfit::NotJson));
        assert_eq!(check(&[b'['; 1000]), Err(Unfit::TooDeep));
        assert!(is_error_object(br#" { "error" : {"message":"x"}}"#));
        assert!(!is_error_object(br#"{"id":"x","error":null}"#));
        assert!(!is_error_object(br#"{"type":"error","error":{}}"#));
    }

    #[test]
    fn depth_scan() {
        assert!(!nesting_exceeds(b"[[[]]]", 3));
        assert!(nesting_exceeds(b"[[[[]]]]", 3));
        assert!(!nesting_exceeds(br#"{"a":"[[[[[[\"[[[[","b":[{}]}"#, 3));
        assert!(!nesting_exceeds(br#"["\\", [[]]]"#, 3));
        assert!(nesting_exceeds(br#"["\\", [[[]]]]"#, 3));
        assert!(nesting_exceeds(&[b'['; 100_000], 128));
        // Many openers side by side are shallow.
        let wide = "[{}]".repeat(1000);
        assert!(!nesting_exceeds(wide.as_bytes(), 3));
        // A trailing backslash inside an unterminated string does not run off the end.
        assert!(!nesting_exceeds(b"[[[\"[[[[abc\\", 3));
    }
}
