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

#[cfg(test)]
mod tests {
    use super::*;

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
