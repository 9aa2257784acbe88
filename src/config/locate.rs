//! Key paths (`models[1].deployments[0].provider`) and where they are in the
//! file. Errors are found on the deserialised structs, which have lost their
//! positions, so each one is traced back through the span-annotated parse
//! tree by its key path.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A problem found before it has a file and line: its key path and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl Issue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue { path: path.into(), message: message.into() }
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// `parent.key`, quoting the key when it could not be read back unquoted
/// (header names may contain dots).
pub fn join_key(parent: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        let mut q = String::with_capacity(key.len() + 2);
        q.push('"');
        for c in key.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    };
    if parent.is_empty() { key } else { format!("{parent}.{key}") }
}

/// `parent[index]`.
pub fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Build a path from segments (the inverse of [`parse_path`]).
pub fn path_of(segs: &[Seg]) -> String {
    segs.iter().fold(String::new(), |p, s| match s {
        Seg::Key(k) => join_key(&p, k),
        Seg::Index(i) => join_index(&p, *i),
    })
}

/// Split a key path into segments. A malformed path yields the segments
/// read so far, which still locates the closest parent.
pub fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut chars = path.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '.' => {
                chars.next();
            }
            '[' => {
                chars.next();
                let digits: String = chars.by_ref().take_while(|c| *c != ']').collect();
                match digits.parse() {
                    Ok(i) => segs.push(Seg::Index(i)),
                    Err(_) => return segs,
                }
            }
            '"' => {
                chars.next();
                let mut key = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                key.push(n);
                            }
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => key.push(c),
                    }
                }
                if !closed {
                    return segs;
                }
                segs.push(Seg::Key(key));
            }
            _ => {
                let mut key = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                segs.push(Seg::Key(key));
            }
        }
    }
    segs
}

/// The 1-based line holding byte `offset` of `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes().get(..end).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) + 1
}

/// The parsed file with its spans, for looking key paths up.
pub struct Locator<'i> {
    text: &'i str,
    root: Spanned<DeTable<'i>>,
}

impl<'i> Locator<'i> {
    pub fn parse(text: &'i str) -> Result<Self, toml::de::Error> {
        Ok(Locator { text, root: DeTable::parse(text)? })
    }

    /// The parse tree, from which the deserialiser is built (so the file is
    /// parsed once).
    pub fn root(&self) -> &Spanned<DeTable<'i>> {
        &self.root
    }

    /// The line of `path`, or of its closest parent present in the file;
    /// `None` when not even its first key is there.
    pub fn line(&self, path: &str) -> Option<usize> {
        self.walk(path).1.map(|span| line_of(self.text, span.start))
    }

    /// The TOML type of the value at exactly `path`, if present.
    pub fn type_at(&self, path: &str) -> Option<&'static str> {
        match self.walk(path) {
            (Some(v), _) => Some(v.type_str()),
            (None, _) => None,
        }
    }

    /// Follow `path` down the tree: the value reached if the whole path
    /// exists, and the span of the deepest step that exists. A key's span is
    /// the key itself (the line a reader looks for), an array item's span is
    /// the item (for `[[array]]` tables, its header).
    fn walk(&self, path: &str) -> (Option<&DeValue<'i>>, Option<Range<usize>>) {
        let mut table: Option<&DeTable<'i>> = Some(self.root.get_ref());
        let mut value: Option<&DeValue<'i>> = None;
        let mut span = None;
        for seg in parse_path(path) {
            let next = match (&seg, table, value) {
                (Seg::Key(k), Some(t), _) => t.get_key_value(k.as_str()).map(|(key, v)| (key.span(), v.get_ref())),
                (Seg::Index(i), None, Some(DeValue::Array(a))) => a.get(*i).map(|v| (v.span(), v.get_ref())),
                _ => None,
            };
            let Some((s, v)) = next else {
                return (None, span);
            };
            span = Some(s);
            value = Some(v);
            table = match v {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        (value, span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# comment
[server]
listen = "127.0.0.1:1"

[[providers]]
name = "a"
kind = "mock"
headers = { "x.y" = "1", plain = "2" }

[[providers]]
name = "b"
kind = "mock"

[providers.mock]
tokens = 3

[[models]]
name = "m"
deployments = [
  { provider = "a", model = "x" },
  { provider = "b", model = "y" },
]
"#;

    #[test]
    fn paths_round_trip() {
        for p in [
            "server.listen",
            "models[1].deployments[0].provider",
            "keys[0]",
            r#"providers[0].headers."x.y""#,
            r#"providers[0].headers."a\"b""#,
        ] {
            assert_eq!(path_of(&parse_path(p)), p);
        }
        assert_eq!(join_key("", "server"), "server");
        assert_eq!(join_key("a", ""), r#"a."""#);
        assert_eq!(
            parse_path("models[1].fallbacks"),
            vec![Seg::Key("models".into()), Seg::Index(1), Seg::Key("fallbacks".into())]
        );
    }

    #[test]
    fn malformed_paths_do_not_panic() {
        for p in ["", "[", "a[x]", "a.\"b", "a..b", "[99999999999999999999999]", "]"] {
            let _ = parse_path(p);
        }
    }

    #[test]
    fn lines_of_paths() {
        let l = Locator::parse(TEXT).unwrap();
        assert_eq!(l.line("server"), Some(2));
        assert_eq!(l.line("server.listen"), Some(3));
        assert_eq!(l.line("providers[0]"), Some(5));
        assert_eq!(l.line("providers[0].kind"), Some(7));
        assert_eq!(l.line(r#"providers[0].headers."x.y""#), Some(8));
        assert_eq!(l.line("providers[1]"), Some(10));
        assert_eq!(l.line("providers[1].mock.tokens"), Some(15));
        assert_eq!(l.line("models[0].deployments[1].provider"), Some(21));
        assert_eq!(l.line("models[0].deployments[1]"), Some(21));
    }

    #[test]
    fn missing_paths_fall_back_to_the_parent() {
        let l = Locator::parse(TEXT).unwrap();
        assert_eq!(l.line("server.admin_key"), Some(2));
        assert_eq!(l.line("providers[1].base_url"), Some(10));
        // The `providers` key itself sits in the first `[[providers]]` header.
        assert_eq!(l.line("providers[7].name"), Some(5));
        assert_eq!(l.line("models[0].deployments[5].weight"), Some(19));
        assert_eq!(l.line("keys"), None);
        assert_eq!(l.line("server.listen.deeper"), Some(3));
    }

    #[test]
    fn value_types() {
        let l = Locator::parse(TEXT).unwrap();
        assert_eq!(l.type_at("server.listen"), Some("string"));
        assert_eq!(l.type_at("providers[1].mock.tokens"), Some("integer"));
        assert_eq!(l.type_at("models[0].deployments"), Some("array"));
        assert_eq!(l.type_at("server.nope"), None);
    }

    #[test]
    fn offsets_to_lines() {
        assert_eq!(line_of("", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 100), 2);
    }
}
