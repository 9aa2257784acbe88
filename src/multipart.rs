//! An incremental reader of `multipart/form-data` bodies that keeps no
//! part in memory: fed the body chunk by chunk, it reports each part's
//! name and file name, the values of the small text fields asked for with
//! their byte ranges in the body (to route by `model`, and to rename it),
//! and each file part's size. File contents pass through and are dropped.
//!
//! Why not `multer`: it hands out parsed fields, not where they lie in the
//! body, and Sluice forwards the body's own bytes; the scan it needs is a
//! boundary search (memchr's two-way `Finder`) and one header line.

use std::ops::Range;

use memchr::memmem::Finder;

/// Longest part head (its header lines) accepted.
const MAX_PART_HEAD: usize = 16 * 1024;
/// Longest text field value kept.
const MAX_FIELD: usize = 64 * 1024;

/// What the scan found, in body order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A text field asked for: its value and where the value lies in the body.
    Field { name: String, value: String, span: Range<u64> },
    /// A file part began (its content follows).
    FileStart { name: String, filename: String, content_type: Option<String> },
    /// A file part ended; its content lies at `span` in the body.
    FileEnd { name: String, span: Range<u64> },
}

/// Why a body is not valid `multipart/form-data`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MultipartError(pub String);

enum State {
    /// Before the first boundary.
    Preamble,
    /// A boundary was read: `--` (the end) or a line break (a part) follows.
    AfterBoundary,
    /// Reading a part's header lines.
    Head,
    /// Reading a part's content.
    Content { name: String, file: bool, start: u64, keep: Option<Vec<u8>> },
    /// After the closing boundary: ignored.
    Epilogue,
}

/// The scanner. Offsets are of the body as fed.
pub struct Scanner {
    /// `\r\n--boundary`.
    delim: Vec<u8>,
    finder: Finder<'static>,
    /// Fields whose values are reported.
    wanted: &'static [&'static str],
    state: State,
    /// Unread bytes; `base` is the body offset of `buf[0]`, counted as if
    /// the body began with `\r\n` (so the first boundary is found like the others).
    buf: Vec<u8>,
    base: u64,
}

impl Scanner {
    /// `boundary` as the `content-type` gave it; `wanted`: the fields whose values to report.
    pub fn new(boundary: &str, wanted: &'static [&'static str]) -> Scanner {
        let mut delim = b"\r\n--".to_vec();
        delim.extend_from_slice(boundary.as_bytes());
        let finder = Finder::new(&delim).into_owned();
        Scanner { delim, finder, wanted, state: State::Preamble, buf: b"\r\n".to_vec(), base: 0 }
    }

    /// The boundary of a `multipart/form-data` content type, if it is one.
    pub fn boundary(content_type: &str) -> Option<String> {
        let mut params = content_type.split(';');
        if !params.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
            return None;
        }
        params.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim().trim_matches('"');
            (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty() && v.len() <= 70).then(|| v.to_string())
        })
    }

    /// Has the closing boundary been read?
    pub fn ended(&self) -> bool {
        matches!(self.state, State::Epilogue)
    }

    /// Scan the next chunk, appending what it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Part>) -> Result<(), MultipartError> {
        if matches!(self.state, State::Epilogue) {
            return Ok(());
        }
        self.buf.extend_from_slice(chunk);
        let mut at = 0usize;
        loop {
            let rest = &self.buf[at..];
            match &mut self.state {
                State::Epilogue => {
                    at = self.buf.len();
                    break;
                }
                State::Preamble => match self.finder.find(rest) {
                    Some(i) => {
                        at += i + self.delim.len();
                        self.state = State::AfterBoundary;
                    }
                    None => {
                        at += rest.len().saturating_sub(self.delim.len());
                        break;
                    }
                },
                State::AfterBoundary => {
                    if rest.len() < 2 {
                        break;
                    }
                    if rest.starts_with(b"--") {
                        self.state = State::Epilogue;
                        continue;
                    }
                    // Transport padding (spaces, tabs) may precede the line break.
                    let pad = rest.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
                    match rest.get(pad..pad + 2) {
                        Some(b"\r\n") => {
                            at += pad + 2;
                            self.state = State::Head;
                        }
                        Some(_) => {
                            return Err(MultipartError(
                                "a multipart boundary is followed by neither a line break nor `--`".into(),
                            ));
                        }
                        None if rest.len() > 256 => {
                            return Err(MultipartError("a multipart boundary line is too long".into()));
                        }
                        None => break,
                    }
                }
                State::Head => match memchr::memmem::find(rest, b"\r\n\r\n") {
                    Some(i) => {
                        let head = std::str::from_utf8(&rest[..i])
                            .map_err(|_| MultipartError("a multipart part's headers are not UTF-8".into()))?;
                        let (name, filename, content_type) = part_head(head)?;
                        at += i + 4;
                        let start = self.base + at as u64 - 2;
                        let file = filename.is_some();
                        if let Some(filename) = filename {
                            out.push(Part::FileStart { name: name.clone(), filename, content_type });
                        }
                        let keep = (!file && self.wanted.contains(&name.as_str())).then(Vec::new);
                        self.state = State::Content { name, file, start, keep };
                    }
                    None if rest.len() > MAX_PART_HEAD => {
                        return Err(MultipartError(format!(
                            "a multipart part's headers are longer than {MAX_PART_HEAD} bytes"
                        )));
                    }
                    None => break,
                },
                State::Content { name, file, start, keep } => {
                    let (found, upto) = match self.finder.find(rest) {
                        Some(i) => (true, i),
                        None => (false, rest.len().saturating_sub(self.delim.len())),
                    };
                    if let Some(k) = keep {
                        if k.len() + upto > MAX_FIELD {
                            return Err(MultipartError(format!(
                                "the multipart field `{name}` is longer than {MAX_FIELD} bytes"
                            )));
                        }
                        k.extend_from_slice(&rest[..upto]);
                    }
                    at += upto;
                    if !found {
                        break;
                    }
                    let end = self.base + at as u64 - 2;
                    let name = std::mem::take(name);
                    if *file {
                        out.push(Part::FileEnd { name, span: *start..end });
                    } else if let Some(k) = keep.take() {
                        let value = String::from_utf8(k)
                            .map_err(|_| MultipartError(format!("the multipart field `{name}` is not UTF-8 text")))?;
                        out.push(Part::Field { name, value, span: *start..end });
                    }
                    at += self.delim.len();
                    self.state = State::AfterBoundary;
                }
            }
        }
        self.buf.drain(..at);
        self.base += at as u64;
        Ok(())
    }

    /// The body ended: an error unless its closing boundary was read.
    pub fn finish(&self) -> Result<(), MultipartError> {
        match self.state {
            State::Epilogue => Ok(()),
            State::Preamble => Err(MultipartError("the body holds no multipart boundary from its content-type".into())),
            _ => Err(MultipartError("the multipart body ended before its closing boundary".into())),
        }
    }
}

/// A part's `name`, `filename` and `content-type` from its header lines.
fn part_head(head: &str) -> Result<(String, Option<String>, Option<String>), MultipartError> {
    let mut name = None;
    let mut filename = None;
    let mut content_type = None;
    for line in head.split("\r\n") {
        let Some((h, v)) = line.split_once(':') else { continue };
        if h.trim().eq_ignore_ascii_case("content-type") {
            content_type = Some(v.trim().to_string());
        }
        if !h.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        for (k, val) in params(v) {
            if k.eq_ignore_ascii_case("name") {
                name = Some(val);
            } else if k.eq_ignore_ascii_case("filename") {
                filename = Some(val);
            }
        }
    }
    let name = name.ok_or_else(|| MultipartError("a multipart part has no `content-disposition` name".into()))?;
    Ok((name, filename, content_type))
}

/// `form-data; name="a"; filename="b \"c\".mp3"` → its `key=value` parameters.
fn params(v: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    loop {
        // Up to the next `;` outside quotes.
        while chars.peek().is_some_and(|c| *c != ';') {
            chars.next();
        }
        if chars.next().is_none() {
            return out;
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_string();
        while chars.peek().is_some_and(|c| *c == ' ') {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ';') {
                val.push(c);
                chars.next();
            }
            val = val.trim().to_string();
        }
        out.push((key, val));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(model_first: bool) -> Vec<u8> {
        let model = "--XyZ\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n";
        let file = "--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".mp3\"\r\ncontent-type: audio/mpeg\r\n\r\n\r\n--Xy\r\nfake audio\r\n";
        let mut b = String::new();
        if model_first {
            b.push_str(model);
            b.push_str(file);
        } else {
            b.push_str(file);
            b.push_str(model);
        }
        b.push_str("--XyZ--\r\n");
        b.into_bytes()
    }

    fn scan(b: &[u8], step: usize) -> Result<Vec<Part>, MultipartError> {
        let mut s = Scanner::new("XyZ", &["model"]);
        let mut out = Vec::new();
        for c in b.chunks(step) {
            s.feed(c, &mut out)?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn fields_and_files_are_found_whatever_the_chunking() {
        for model_first in [true, false] {
            let b = body(model_first);
            let whole = scan(&b, b.len()).unwrap();
            for step in 1..b.len() {
                assert_eq!(scan(&b, step).unwrap(), whole, "step {step}");
            }
            let Some(Part::Field { value, span, .. }) = whole.iter().find(|p| matches!(p, Part::Field { .. })) else {
                panic!("no model: {whole:?}")
            };
            assert_eq!(value, "whisper");
            assert_eq!(&b[span.start as usize..span.end as usize], b"whisper");
            let Some(Part::FileEnd { span, .. }) = whole.iter().find(|p| matches!(p, Part::FileEnd { .. })) else {
                panic!("no file: {whole:?}")
            };
            assert_eq!(&b[span.start as usize..span.end as usize], b"\r\n--Xy\r\nfake audio");
            assert!(whole.iter().any(|p| matches!(p, Part::FileStart { filename, .. } if filename == "a \"b\".mp3")));
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(scan(b"no boundary here", 4).is_err());
        let b = body(true);
        assert!(scan(&b[..b.len() - 10], 7).is_err(), "cut before the closing boundary");
        assert!(scan(b"--XyZ\r\nx-nothing: 1\r\n\r\nv\r\n--XyZ--", 3).is_err(), "a part without a name");
        assert!(scan(b"--XyZgarbage", 3).is_err());
    }

    #[test]
    fn boundaries_come_from_the_content_type() {
        assert_eq!(Scanner::boundary("multipart/form-data; boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(Scanner::boundary("Multipart/Form-Data;charset=x; BOUNDARY=q").as_deref(), Some("q"));
        assert_eq!(Scanner::boundary("application/json"), None);
        assert_eq!(Scanner::boundary("multipart/form-data"), None);
    }
}
