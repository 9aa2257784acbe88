//! Tiny JSON/encoding writers for the generator's hot path.
//!
//! The mock writes its responses by hand instead of building a serde value:
//! the shapes are fixed, most of the text is constant, and the only strings
//! that come from the client (model name, ids) go through [`push_str`], which
//! escapes exactly what JSON requires. This keeps a response at one
//! allocation and no intermediate tree.

use bytes::BufMut;

/// Appends `s` as a JSON string literal (with quotes), escaping `"`, `\` and
/// control characters. Everything else is copied as is: the input is valid
/// UTF-8 and JSON allows any other code point unescaped.
pub(crate) fn push_str<B: BufMut>(out: &mut B, s: &str) {
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.put_slice(b"\\u00");
            out.put_u8(HEX[usize::from(b >> 4)]);
            out.put_u8(HEX[usize::from(b & 0xf)]);
        } else {
            out.put_slice(esc);
        }
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
}

/// Appends the decimal form of `n` without going through `fmt`.
pub(crate) fn push_u64<B: BufMut>(out: &mut B, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // n % 10 < 10, so the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

/// Appends `null` or the string literal.
pub(crate) fn push_opt_str<B: BufMut>(out: &mut B, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.put_slice(b"null"),
    }
}

/// Standard base64 (RFC 4648, with padding), as OpenAI uses for
/// `encoding_format: "base64"` embeddings. Written here to avoid a dependency
/// for twenty lines.
pub(crate) fn push_base64<B: BufMut>(out: &mut B, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| ALPHABET[(v & 63) as usize];
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let v = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out.put_slice(&[sym(v >> 18), sym(v >> 12), sym(v >> 6), sym(v)]);
    }
    match *chunks.remainder() {
        [a] => {
            let v = u32::from(a) << 16;
            out.put_slice(&[sym(v >> 18), sym(v >> 12), b'=', b'=']);
        }
        [a, b] => {
            let v = u32::from(a) << 16 | u32::from(b) << 8;
            out.put_slice(&[sym(v >> 18), sym(v >> 12), sym(v >> 6), b'=']);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_round_trip() {
        let nasty = "a\"b\\c\nd\u{1}e\u{7f}é😀\t\r";
        let out = s(|v| push_str(v, nasty));
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, nasty);
    }

    #[test]
    fn numbers() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            assert_eq!(s(|v| push_u64(v, n)), n.to_string());
        }
    }

    #[test]
    fn base64_matches_rfc4648() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(s(|v| push_base64(v, input.as_bytes())), want);
        }
    }
}
