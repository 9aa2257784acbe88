//! JSON helpers shared by the gateway and the mock.

use std::ops::Range;

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
/// UTF-8 validation and one of [`well_formed`]; it accepts and rejects what
/// serde_json's `IgnoredAny` did, in about 60% of its time per stream event
/// (docs/performance.md, "Stream events: one pass to check JSON").
pub fn check(doc: &[u8]) -> Result<(), Unfit> {
    if std::str::from_utf8(doc).is_err() {
        return Err(Unfit::NotUtf8);
    }
    well_formed(doc, Mark { at: 0, depth: 0, objects: 0 }, &mut ())
}

/// [`check`], and in the same pass, where the value of the document's last
/// top-level member named `key` starts (`key` with its quotes, compared as
/// raw bytes: a name written with escapes is another name). The gateway
/// reads an answer's `usage` from there with [`members`], instead of a
/// second scan for it (docs/performance.md, "The request's and the
/// answer's JSON read in their checks").
pub fn check_member(doc: &[u8], key: &[u8]) -> Result<Option<usize>, Unfit> {
    if std::str::from_utf8(doc).is_err() {
        return Err(Unfit::NotUtf8);
    }
    let mut last = LastMember { key, at: None };
    well_formed(doc, Mark { at: 0, depth: 0, objects: 0 }, &mut last)?;
    Ok(last.at)
}

/// [`check`], and the top-level object's members in order, as [`members`]
/// gives them (each key's bytes between its quotes, and its value's span),
/// found in the same pass. An empty list when the document is not an object.
pub fn check_top(doc: &[u8]) -> Result<Vec<Member>, Unfit> {
    if std::str::from_utf8(doc).is_err() {
        return Err(Unfit::NotUtf8);
    }
    let mut top = TopMembers(Vec::with_capacity(16));
    well_formed(doc, Mark { at: 0, depth: 0, objects: 0 }, &mut top)?;
    Ok(top.0)
}

/// An object member found by [`check_top`]: its key's span (inside the
/// quotes) and its value's.
pub type Member = (Range<usize>, Range<usize>);

/// The top-level object's members.
struct TopMembers(Vec<Member>);

impl Marks for TopMembers {
    #[inline(always)]
    fn mark(&mut self, doc: &[u8], key_at: usize, at: usize, depth: usize, _: u64) {
        if depth == 1 {
            // Between the key's closing quote and its value: blanks and a colon.
            let close = doc.get(key_at + 1..at).and_then(|s| s.iter().rposition(|&b| b == b'"'));
            let key_end = key_at + 1 + close.unwrap_or(0);
            self.0.push((key_at + 1..key_end, at..at));
        }
    }

    #[inline(always)]
    fn end(&mut self, at: usize, depth: usize) {
        if depth == 1
            && let Some((_, value)) = self.0.last_mut()
        {
            value.end = at;
        }
    }
}

/// Notes the value of the last top-level member named `key`.
struct LastMember<'k> {
    key: &'k [u8],
    at: Option<usize>,
}

impl Marks for LastMember<'_> {
    #[inline(always)]
    fn mark(&mut self, doc: &[u8], key_at: usize, at: usize, depth: usize, _: u64) {
        // A whole string starts at `key_at`: if its first bytes are the
        // quoted key, its closing quote is the key's.
        if depth == 1 && doc.get(key_at..key_at + self.key.len()) == Some(self.key) {
            self.at = Some(at);
        }
    }
}

/// Where a parse stands at the start of a value: enough to go on from
/// there in another document that begins with the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    /// The value's first byte.
    at: usize,
    depth: usize,
    /// The open containers (bit set for an object); marks are only taken
    /// up to depth 64, so one word holds them all.
    objects: u64,
}

/// Where [`well_formed`] notes the values it starts.
trait Marks {
    /// An object member whose key starts at `key_at` and value at `at`.
    fn mark(&mut self, doc: &[u8], key_at: usize, at: usize, depth: usize, objects: u64);

    /// A value inside `depth` containers ended just before `at`.
    #[inline(always)]
    fn end(&mut self, _at: usize, _depth: usize) {}
}

/// Plain checks note nothing (the calls compile away).
impl Marks for () {
    #[inline(always)]
    fn mark(&mut self, _: &[u8], _: usize, _: usize, _: usize, _: u64) {}
}

/// Most marks one document keeps: a stream chunk has a dozen or two members.
const MAX_MARKS: usize = 64;

impl Marks for Vec<Mark> {
    #[inline(always)]
    fn mark(&mut self, _: &[u8], _: usize, at: usize, depth: usize, objects: u64) {
        if depth <= 64 && self.len() < MAX_MARKS {
            self.push(Mark { at, depth, objects });
        }
    }
}

/// One JSON document, checked in a single pass without recursion: RFC 8259
/// syntax (what serde_json accepts: no trailing bytes, no leading zeros, no
/// raw control characters in strings, `\u` followed by four hex digits and
/// nothing said of surrogates) and nesting at most [`MAX_DEPTH`] deep. The
/// input must already be UTF-8: bytes past 0x7F are only accepted inside
/// strings, where UTF-8 decides them.
///
/// It starts at `from` (where a value begins, whitespace allowed, with
/// `depth` containers open as `objects` says) and notes in `marks` where
/// each object member's value starts.
#[inline(always)]
fn well_formed(doc: &[u8], from: Mark, marks: &mut impl Marks) -> Result<(), Unfit> {
    // One bit per open container, set for an object.
    let mut objects = [from.objects, 0, 0, 0];
    const _: () = assert!(MAX_DEPTH <= 256);
    let mut depth = from.depth;
    // (A mark is taken past the whitespace before its value, but a later
    // document may have whitespace where the earlier had the value.)
    let mut i = ws(doc, from.at);
    'value: loop {
        // A value starts at `i`.
        match doc.get(i) {
            Some(b'{') => {
                if depth == MAX_DEPTH {
                    return Err(Unfit::TooDeep);
                }
                i = ws(doc, i + 1);
                if doc.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    objects[depth / 64] |= 1 << (depth % 64);
                    depth += 1;
                    let key_at = i;
                    i = member_key(doc, i)?;
                    marks.mark(doc, key_at, i, depth, objects[0]);
                    continue 'value;
                }
            }
            Some(b'[') => {
                if depth == MAX_DEPTH {
                    return Err(Unfit::TooDeep);
                }
                i = ws(doc, i + 1);
                if doc.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    objects[depth / 64] &= !(1 << (depth % 64));
                    depth += 1;
                    continue 'value;
                }
            }
            Some(b'"') => i = string(doc, i + 1)?,
            Some(b't') => i = literal(doc, i, b"true")?,
            Some(b'f') => i = literal(doc, i, b"false")?,
            Some(b'n') => i = literal(doc, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number(doc, i)?,
            _ => return Err(Unfit::NotJson),
        }
        // A value ended before `i`: close containers until one goes on.
        loop {
            marks.end(i, depth);
            i = ws(doc, i);
            if depth == 0 {
                return if i == doc.len() { Ok(()) } else { Err(Unfit::NotJson) };
            }
            let in_object = objects[(depth - 1) / 64] & (1 << ((depth - 1) % 64)) != 0;
            match doc.get(i) {
                Some(b',') => {
                    i = ws(doc, i + 1);
                    if in_object {
                        let key_at = i;
                        i = member_key(doc, i)?;
                        marks.mark(doc, key_at, i, depth, objects[0]);
                    }
                    continue 'value;
                }
                Some(b'}') if in_object => {}
                Some(b']') if !in_object => {}
                _ => return Err(Unfit::NotJson),
            }
            depth -= 1;
            i += 1;
        }
    }
}

/// [`check`] for the events of one stream, which mostly begin alike (an
/// OpenAI chunk repeats its id, model and fingerprint before the token):
/// each event is checked from the last member value that the event before
/// it had with the same bytes up to there. The JSON grammar is
/// deterministic, so the same bytes from the same start leave the parse in
/// the same state, which the mark recorded; and a mark sits before an
/// ASCII byte of a valid document, so UTF-8 is checked from there too.
/// Same answers as [`check`] (the tests and the `json_check` fuzz target
/// hold it to that), a fraction of the work on real streams.
#[derive(Debug, Default)]
pub struct StreamCheck {
    /// The last event that passed, up to its last mark.
    prev: Vec<u8>,
    /// Its marks, in order.
    marks: Vec<Mark>,
}

impl StreamCheck {
    pub fn check(&mut self, doc: &[u8]) -> Result<(), Unfit> {
        let same = common_prefix(&self.prev, doc);
        let keep = self.marks.partition_point(|m| m.at <= same);
        let from = match keep {
            0 => Mark { at: 0, depth: 0, objects: 0 },
            k => self.marks[k - 1],
        };
        self.marks.truncate(keep);
        let checked = match std::str::from_utf8(&doc[from.at.min(doc.len())..]) {
            Err(_) => Err(Unfit::NotUtf8),
            Ok(_) => well_formed(doc, from, &mut self.marks),
        };
        if checked.is_err() {
            self.prev.clear();
            self.marks.clear();
            return checked;
        }
        let end = self.marks.last().map_or(0, |m| m.at);
        self.prev.truncate(same.min(end));
        self.prev.extend_from_slice(&doc[self.prev.len()..end]);
        Ok(())
    }
}

/// How many leading bytes `a` and `b` share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 16 <= n && a[i..i + 16] == b[i..i + 16] {
        i += 16;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Past JSON whitespace from `i`.
#[inline(always)]
fn ws(doc: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = doc.get(i) {
        i += 1;
    }
    i
}

/// `"key" :` at `i` (no whitespace before it); the position of the value.
#[inline(always)]
fn member_key(doc: &[u8], i: usize) -> Result<usize, Unfit> {
    if doc.get(i) != Some(&b'"') {
        return Err(Unfit::NotJson);
    }
    let i = ws(doc, string(doc, i + 1)?);
    if doc.get(i) != Some(&b':') {
        return Err(Unfit::NotJson);
    }
    Ok(ws(doc, i + 1))
}

#[inline(always)]
fn literal(doc: &[u8], i: usize, word: &[u8]) -> Result<usize, Unfit> {
    match doc.get(i..i + word.len()) {
        Some(got) if got == word => Ok(i + word.len()),
        _ => Err(Unfit::NotJson),
    }
}

/// A number at `i`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[inline(always)]
fn number(doc: &[u8], mut i: usize) -> Result<usize, Unfit> {
    if doc.get(i) == Some(&b'-') {
        i += 1;
    }
    match doc.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(doc, i + 1),
        _ => return Err(Unfit::NotJson),
    }
    if doc.get(i) == Some(&b'.') {
        i = some_digits(doc, i + 1)?;
    }
    if let Some(b'e' | b'E') = doc.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = doc.get(i) {
            i += 1;
        }
        i = some_digits(doc, i)?;
    }
    Ok(i)
}

#[inline(always)]
fn digits(doc: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = doc.get(i) {
        i += 1;
    }
    i
}

#[inline(always)]
fn some_digits(doc: &[u8], i: usize) -> Result<usize, Unfit> {
    let end = digits(doc, i);
    if end == i { Err(Unfit::NotJson) } else { Ok(end) }
}

/// The rest of a string whose opening quote is before `i`; the position
/// past its closing quote. Eight bytes at a time while none of them is a
/// quote, a backslash or a control character (the SWAR test serde_json
/// uses: the lowest flagged byte is always a true one).
#[inline(always)]
fn string(doc: &[u8], mut i: usize) -> Result<usize, Unfit> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    loop {
        while let Some(chunk) = doc.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            let ctrl = w.wrapping_sub(ONES * 0x20) & !w;
            let q = w ^ (ONES * u64::from(b'"'));
            let quote = q.wrapping_sub(ONES) & !q;
            let s = w ^ (ONES * u64::from(b'\\'));
            let slash = s.wrapping_sub(ONES) & !s;
            let hits = (ctrl | quote | slash) & HIGH;
            if hits != 0 {
                i += hits.trailing_zeros() as usize / 8;
                break;
            }
            i += 8;
        }
        match doc.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => {
                i = match doc.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i + 2,
                    Some(b'u') => match doc.get(i + 2..i + 6) {
                        Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => i + 6,
                        _ => return Err(Unfit::NotJson),
                    },
                    _ => return Err(Unfit::NotJson),
                }
            }
            Some(0..0x20) | None => return Err(Unfit::NotJson),
            Some(_) => i += 1,
        }
    }
}

/// Is `doc` an object whose first member is `"error"` — an error object,
/// OpenAI's `{"error": {...}}` shape, sent where an answer was expected?
pub fn is_error_object(doc: &[u8]) -> bool {
    let Some(rest) = doc.trim_ascii_start().strip_prefix(b"{") else { return false };
    rest.trim_ascii_start().starts_with(b"\"error\"")
}

/// The members of the object whose `{` is at `at` in a document [`check`]
/// passed, in order: each key's bytes between its quotes (escapes as
/// written) and its value's byte range. Nothing when no object starts at
/// `at`. On a document that did not pass it may stop early or yield
/// nonsense, but never panics.
pub fn members(doc: &[u8], at: usize) -> Members<'_> {
    let i = if doc.get(at) == Some(&b'{') { at + 1 } else { doc.len() };
    Members { doc, i }
}

/// See [`members`].
pub struct Members<'a> {
    doc: &'a [u8],
    /// Past the last value read (or the object's `{`).
    i: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a [u8], Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let doc = self.doc;
        let found = (|| {
            let mut i = ws(doc, self.i);
            if doc.get(i) == Some(&b',') {
                i = ws(doc, i + 1);
            }
            // A `}` (or anything else): the object ended.
            if doc.get(i) != Some(&b'"') {
                return None;
            }
            let key_end = string(doc, i + 1).ok()?;
            let key = doc.get(i + 1..key_end - 1)?;
            let colon = ws(doc, key_end);
            if doc.get(colon) != Some(&b':') {
                return None;
            }
            let start = ws(doc, colon + 1);
            Some((key, start..value_end(doc, start)))
        })();
        self.i = found.as_ref().map_or(doc.len(), |(_, v)| v.end);
        found
    }
}

/// Where the value starting at `i` of a well-formed document ends.
fn value_end(doc: &[u8], i: usize) -> usize {
    match doc.get(i) {
        Some(b'"') => string(doc, i + 1).unwrap_or(doc.len()),
        Some(b'{' | b'[') => {
            let (mut i, mut depth) = (i, 0usize);
            loop {
                match doc.get(i) {
                    None => return doc.len(),
                    Some(b'"') => {
                        i = string(doc, i + 1).unwrap_or(doc.len());
                        continue;
                    }
                    Some(b'{' | b'[') => depth += 1,
                    Some(b'}' | b']') => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    Some(_) => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = i;
            while let Some(b) = doc.get(i) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                    break;
                }
                i += 1;
            }
            i
        }
    }
}

/// A JSON number that is a non-negative integer a `u64` holds (no sign,
/// fraction or exponent), as sonic-rs's `as_u64` reads one.
pub fn as_u64(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    raw.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
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
    fn the_last_top_level_member_is_found() {
        let doc = br#" { "a" : {"usage":1} , "usage" : [ "x" ] , "b" : "usage" , "usage":null } "#;
        let at = check_member(doc, b"\"usage\"").unwrap().unwrap();
        assert_eq!(&doc[at..at + 4], b"null");
        assert_eq!(check_member(br#"{"usages":1,"x":{"usage":2}}"#, b"\"usage\""), Ok(None));
        assert_eq!(check_member(br#"["usage",{"usage":1}]"#, b"\"usage\""), Ok(None));
        assert_eq!(check_member(br#"{"usage":1"#, b"\"usage\""), Err(Unfit::NotJson));
        assert_eq!(check_member(b"{\"usage\":\"\xff\"}", b"\"usage\""), Err(Unfit::NotUtf8));
    }

    #[test]
    fn top_members_are_found_in_the_check() {
        let doc = br#" { "a" : 12 , "b\"c" : { "d" : [ "]" , { } ] } , "e" : "}" , "f":[] , "g" : true } "#;
        let found: Vec<_> = check_top(doc).unwrap().into_iter().map(|(k, v)| (&doc[k], &doc[v])).collect();
        let walked: Vec<_> = members(doc, 1).map(|(k, v)| (k, &doc[v])).collect();
        assert_eq!(found, walked);
        assert_eq!(found.len(), 5);
        assert_eq!(found[4], (&b"g"[..], &b"true"[..]));
        assert_eq!(check_top(br#"[{"a":1},{"b":[2]}]"#), Ok(vec![]));
        assert_eq!(check_top(br#"{}"#), Ok(vec![]));
        assert_eq!(check_top(br#"{"a":1,}"#), Err(Unfit::NotJson));
    }

    #[test]
    fn members_of_a_checked_document() {
        let doc = br#"{ "a" : 12 , "b\"c" : { "d" : [ "]" , { } ] } , "e" : "}" , "f" : -1.5e3 , "g" : true }"#;
        assert_eq!(check(doc), Ok(()));
        let got: Vec<_> = members(doc, 0).map(|(k, v)| (k, &doc[v])).collect();
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"a", b"12"),
            (br#"b\"c"#, br#"{ "d" : [ "]" , { } ] }"#),
            (b"e", br#""}""#),
            (b"f", b"-1.5e3"),
            (b"g", b"true"),
        ];
        assert_eq!(got, want);
        assert_eq!(members(doc, 1).count(), 0);
        assert_eq!(members(b"{}", 0).count(), 0);
        // Cut-off and broken documents end the walk without a panic.
        for bad in [&br#"{"a":"#[..], br#"{"a"#, br#"{"a":[1,"#, br#"{"a" 1}"#, b"{", br#"{"a":"\"#] {
            let _ = members(bad, 0).count();
        }
        assert_eq!(as_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(as_u64(b"18446744073709551616"), None);
        for no in [&b""[..], b"-1", b"1.0", b"1e3", b"null"] {
            assert_eq!(as_u64(no), None);
        }
    }

    /// What `check` accepted before it had its own pass: serde_json's
    /// `IgnoredAny` after the depth scan.
    fn serde_says(doc: &[u8]) -> bool {
        std::str::from_utf8(doc).is_ok()
            && !nesting_exceeds(doc, MAX_DEPTH)
            && serde_json::from_slice::<serde::de::IgnoredAny>(doc).is_ok()
    }

    const SAMPLES: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":" tok\"en\u00e9\n"},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"usage":{"prompt_tokens":12,"completion_tokens":50,"total_tokens":62},"choices":[]}"#,
        r#" [ 1 , -0 , 0.5 , -12.5e+3 , 1E9 , 2e-0 , true , false , null , "" , {} , [ ] , { "a" : { "b" : [ [ ] ] } } ] "#,
        "\"caf\u{e9} \u{1F600} \\/\\b\\f\\r\\t\\ud800\"",
        "0",
        "-1",
        "123456789012345678901234567890e400",
    ];

    #[test]
    fn well_formed_agrees_with_serde_json() {
        let bad = [
            "",
            " ",
            "{",
            "}",
            "[",
            "]",
            "[1,]",
            "{,}",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            "{1:2}",
            "[1 2]",
            "01",
            "-",
            "-a",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "tru",
            "nul",
            "nulll",
            "truex",
            r#""abc"#,
            r#""\x""#,
            r#""\u12g4""#,
            r#""\u12""#,
            "\"a\tb\"",
            "\"a\u{1}b\"",
            "[1]]",
            "[1]x",
            "{}{}",
            "NaN",
            "Infinity",
            r#"["a":1]"#,
            r#"{"a":1]"#,
            "[1}",
            r#""\""#,
            "\u{feff}{}",
            "[1,\n\n]",
            r#"{"a" 1}"#,
            "[-]",
            "[--1]",
            "[1.e5]",
            "[0x1]",
            "[1e5.5]",
        ];
        for doc in SAMPLES.iter().chain(bad.iter()) {
            assert_eq!(check(doc.as_bytes()).is_ok(), serde_says(doc.as_bytes()), "{doc:?}");
        }
        for doc in SAMPLES {
            assert_eq!(check(doc.as_bytes()), Ok(()), "{doc:?}");
        }
        // Every prefix of a good document, and many one-byte changes of it,
        // are judged the way serde_json judges them.
        let alphabet = b"{}[]\",: \\0123456789-+.eEtrufalsn\t\n\x01\x7f\xc3\xa9u";
        let mut rng = fastrand::Rng::with_seed(7);
        for doc in SAMPLES {
            let doc = doc.as_bytes();
            for cut in 0..doc.len() {
                assert_eq!(check(&doc[..cut]).is_ok(), serde_says(&doc[..cut]), "{:?}", &doc[..cut]);
            }
            for at in 0..doc.len() {
                for _ in 0..24 {
                    let mut m = doc.to_vec();
                    m[at] = alphabet[rng.usize(..alphabet.len())];
                    if rng.bool() {
                        let at2 = rng.usize(..m.len());
                        m[at2] = alphabet[rng.usize(..alphabet.len())];
                    }
                    assert_eq!(check(&m).is_ok(), serde_says(&m), "{:?}", String::from_utf8_lossy(&m));
                }
            }
        }
    }

    #[test]
    fn nesting_limit_is_exact() {
        for (open, close) in [("[", "]"), (r#"{"k":"#, "}")] {
            let nest = |n: usize, inner: &str| format!("{}{inner}{}", open.repeat(n), close.repeat(n));
            assert_eq!(check(nest(MAX_DEPTH, "1").as_bytes()), Ok(()));
            assert_eq!(check(nest(MAX_DEPTH - 1, "[]").as_bytes()), Ok(()));
            assert_eq!(check(nest(MAX_DEPTH - 1, "{}").as_bytes()), Ok(()));
            assert_eq!(check(nest(MAX_DEPTH, "[]").as_bytes()), Err(Unfit::TooDeep));
            assert_eq!(check(nest(MAX_DEPTH + 1, "1").as_bytes()), Err(Unfit::TooDeep));
            assert_eq!(check(open.repeat(100_000).as_bytes()), Err(Unfit::TooDeep));
        }
        // Wide is not deep.
        let wide = format!("[{}{{}}]", r#"{"a":[[1]]},"#.repeat(10_000));
        assert_eq!(check(wide.as_bytes()), Ok(()));
    }

    #[test]
    fn strings_of_every_length_around_the_eight_byte_steps() {
        for n in 0..40 {
            for special in [r#"\""#, r#"\n"#, r#"\u00e9"#, "\u{e9}", "\u{1}", "\"", "\\", "\u{1f}", " "] {
                for at in 0..=n {
                    let body = format!("\"{}{special}{}\"", "x".repeat(at), "y".repeat(n - at));
                    assert_eq!(check(body.as_bytes()).is_ok(), serde_says(body.as_bytes()), "{body:?}");
                }
            }
        }
    }

    /// A stream's events checked one after another give, each, what a
    /// fresh check gives: events alike, events that differ anywhere (the
    /// byte where a mark was taken, whitespace before a value, a cut), and
    /// events after a failed one.
    #[test]
    fn stream_check_answers_as_check_does() {
        let chunk = |w: &str| {
            format!(
                r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{{"index":0,"delta":{{"content":{w}}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )
        };
        let mut alike = StreamCheck::default();
        for w in [r#"" a""#, r#""bb""#, "12", r#""c\"""#, "[1,{\"x\":2}]", "{}", r#"" ""#, r#""d""#] {
            assert_eq!(alike.check(chunk(w).as_bytes()), Ok(()), "{w}");
        }
        // Having resumed before, the same prefix with a bad end still fails.
        assert_eq!(alike.check(chunk(r#""x"#).as_bytes()), Err(Unfit::NotJson));
        assert_eq!(alike.check(chunk(r#""é""#).as_bytes()), Ok(()));
        let mut bad_utf8 = chunk(r#""é""#).into_bytes();
        let at = bad_utf8.iter().position(|&b| b == 0xc3).unwrap_or(0);
        bad_utf8[at + 1] = b'x';
        assert_eq!(alike.check(&bad_utf8), Err(Unfit::NotUtf8));
        // Whitespace where the earlier event had the value.
        let mut s = StreamCheck::default();
        assert_eq!(s.check(br#"{"a":1,"b":2}"#), Ok(()));
        assert_eq!(s.check(br#"{"a":1,"b": 2}"#), Ok(()));
        assert_eq!(s.check(br#"{"a":1,"b":}"#), Err(Unfit::NotJson));
        assert_eq!(s.check(br#"{"a":1,"b":[]}"#), Ok(()));

        // Random streams: every event a few byte changes away from the one
        // before it, or from a sample.
        let base: Vec<Vec<u8>> =
            SAMPLES.iter().map(|s| s.as_bytes().to_vec()).chain([chunk(r#""x""#).into_bytes()]).collect();
        let alphabet = b"{}[]\",: \\0123456789-+.eEtrufalsn\t\n\x01\xc3\xa9u";
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..300 {
            let mut s = StreamCheck::default();
            let mut doc = base[rng.usize(..base.len())].clone();
            for _ in 0..40 {
                match rng.u8(..10) {
                    0 => doc = base[rng.usize(..base.len())].clone(),
                    1 if !doc.is_empty() => doc.truncate(rng.usize(..doc.len())),
                    2 => doc.insert(rng.usize(..=doc.len()), b' '),
                    _ if !doc.is_empty() => {
                        let at = rng.usize(..doc.len());
                        doc[at] = alphabet[rng.usize(..alphabet.len())];
                    }
                    _ => {}
                }
                assert_eq!(s.check(&doc), check(&doc), "{:?}", String::from_utf8_lossy(&doc));
                if check(&doc).is_err() && rng.bool() {
                    doc = base[rng.usize(..base.len())].clone();
                }
            }
        }
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
