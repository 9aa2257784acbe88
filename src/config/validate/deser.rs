//! From the parse tree to [`RawConfig`], reporting every unknown key, wrong
//! type and missing key in one pass, not only the first.
//!
//! serde stops at its first error, and with `deny_unknown_fields` every typo
//! is one. So each error is recorded, the tree is repaired where it points
//! (an unknown key removed; a wrong or missing value replaced by a
//! placeholder of the expected type) and deserialised again, until it
//! builds. The placeholders' paths are handed back, so that the checks after
//! this step say nothing about values the file does not hold. Each
//! `[[providers]]`, `[[models]]` and `[[keys]]` entry is deserialised on its
//! own: a retry then costs one entry, not the whole file.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::Spanned;
use toml::de::{DeArray, DeFloat, DeInteger, DeTable, DeValue, ValueDeserializer};

use super::super::locate::{Issue, Locator, Seg, join_key, path_of};
use super::super::raw::{RawConfig, RawKey, RawModel, RawProvider};
use super::closest;

/// What the file amounts to after every repair.
pub(super) struct Shaped {
    /// `None` when an error could not be repaired (`issues` then says why).
    pub raw: Option<RawConfig>,
    /// One per unknown key, wrong type and missing key.
    pub issues: Vec<Issue>,
    /// Paths that hold a placeholder instead of what the file says.
    pub placeholders: Vec<String>,
}

/// Whether `path` is one of `parents` or a key or item below one.
pub(super) fn within_any(path: &str, parents: &[String]) -> bool {
    parents.iter().any(|p| is_within(path, p))
}

/// Repairs of one value beyond this many are a file that is not a Sluice
/// config at all; stop rather than list the whole file.
const MAX_REPAIRS: usize = 500;

pub(super) fn shape(loc: &Locator<'_>) -> Shaped {
    let mut r = Repairer { loc, issues: Vec::new(), placeholders: Vec::new() };
    let mut root = loc.root().clone();
    let span = root.span();
    let mut take = |name: &str| match root.get_mut().get_mut(name).map(Spanned::get_mut) {
        Some(DeValue::Array(a)) => std::mem::replace(a, DeArray::new()).into_iter().collect(),
        // Not an array: left in place, for the top level to report.
        _ => Vec::new(),
    };
    let (providers, models, keys) = (take("providers"), take("models"), take("keys"));
    let top: Option<RawConfig> = r.build(Spanned::new(span, DeValue::Table(root.into_inner())), &[]);
    let providers: Option<Vec<RawProvider>> = r.entries("providers", providers);
    let models: Option<Vec<RawModel>> = r.entries("models", models);
    let keys: Option<Vec<RawKey>> = r.entries("keys", keys);
    let raw = match (top, providers, models, keys) {
        (Some(mut raw), Some(providers), Some(models), Some(keys)) => {
            raw.providers = providers;
            raw.models = models;
            raw.keys = keys;
            Some(raw)
        }
        _ => None,
    };
    Shaped { raw, issues: r.issues, placeholders: r.placeholders }
}

/// `path` is `parent` or a key or item below it.
fn is_within(path: &str, parent: &str) -> bool {
    path.strip_prefix(parent).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

struct Repairer<'a, 'i> {
    loc: &'a Locator<'i>,
    issues: Vec<Issue>,
    placeholders: Vec<String>,
}

/// How to get past one error. Paths are the file's (`models[1].price`);
/// the value being built holds them below its own place.
enum Fix<'i> {
    /// Drop the key at this path.
    Remove(Vec<Seg>),
    /// Put this value at this path, in place of what is there.
    Fill(Vec<Seg>, DeValue<'i>),
    /// None known: stop.
    Stop,
}

impl<'i> Repairer<'_, 'i> {
    fn entries<T: DeserializeOwned>(&mut self, section: &str, items: Vec<Spanned<DeValue<'i>>>) -> Option<Vec<T>> {
        let mut out = Some(Vec::with_capacity(items.len()));
        for (i, item) in items.into_iter().enumerate() {
            let built = self.build(item, &[Seg::Key(section.to_owned()), Seg::Index(i)]);
            // Go on after a failed entry: its neighbours' errors are worth reporting.
            out = out.zip(built).map(|(mut v, t)| {
                v.push(t);
                v
            });
        }
        out
    }

    /// Deserialise `value`, found at `at`, repairing it after each error.
    fn build<T: DeserializeOwned>(&mut self, mut value: Spanned<DeValue<'i>>, at: &[Seg]) -> Option<T> {
        for _ in 0..MAX_REPAIRS {
            let e = match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(value.clone())) {
                Ok(t) => return Some(t),
                Err(e) => e,
            };
            let mut segs = at.to_vec();
            let whole = push_path(&mut segs, e.path());
            let (issue, fix) = explain(self.loc, &segs, e.inner().message());
            let placeholder = within_any(&issue.path, &self.placeholders);
            // An error inside a placeholder is the placeholder's own doing:
            // mend it quietly.
            let fixed = whole
                && match fix {
                    Fix::Remove(rel) => remove(value.get_mut(), rel.get(at.len()..).unwrap_or_default()),
                    Fix::Fill(rel, v) => {
                        if !placeholder {
                            self.placeholders.push(issue.path.clone());
                        }
                        fill(value.get_mut(), rel.get(at.len()..).unwrap_or_default(), v)
                    }
                    Fix::Stop => false,
                };
            if !placeholder || !fixed {
                self.issues.push(issue);
            }
            if !fixed {
                return None;
            }
        }
        let path = path_of(at);
        let place = if path.is_empty() { "this file".to_owned() } else { format!("`{path}`") };
        let message = format!("more than {MAX_REPAIRS} errors in {place}; fix the ones above and check again");
        self.issues.push(Issue::new(path, message));
        None
    }
}

/// Append serde's path to `segs`; false when part of it could not be named.
fn push_path(segs: &mut Vec<Seg>, path: &serde_path_to_error::Path) -> bool {
    for s in path.iter() {
        segs.push(match s {
            Segment::Seq { index } => Seg::Index(*index),
            Segment::Map { key } => Seg::Key(key.clone()),
            Segment::Enum { variant } => Seg::Key(variant.clone()),
            Segment::Unknown => return false,
        });
    }
    true
}

/// The value at `segs` below `v`.
fn slot<'v, 'i>(v: &'v mut DeValue<'i>, segs: &[Seg]) -> Option<&'v mut DeValue<'i>> {
    segs.iter().try_fold(v, |v, seg| match (seg, v) {
        (Seg::Key(k), DeValue::Table(t)) => t.get_mut(k.as_str()).map(Spanned::get_mut),
        (Seg::Index(i), DeValue::Array(a)) => a.get_mut(*i).map(Spanned::get_mut),
        _ => None,
    })
}

fn remove(v: &mut DeValue<'_>, segs: &[Seg]) -> bool {
    let Some((Seg::Key(key), parent)) = segs.split_last() else { return false };
    match slot(v, parent) {
        Some(DeValue::Table(t)) => t.remove(key.as_str()).is_some(),
        _ => false,
    }
}

fn fill<'i>(v: &mut DeValue<'i>, segs: &[Seg], new: DeValue<'i>) -> bool {
    if let Some((Seg::Key(key), parent)) = segs.split_last()
        && let Some(DeValue::Table(t)) = slot(v, parent)
    {
        // Spans only place serde's own errors, which are rewritten anyway.
        t.insert(Spanned::new(0..0, Cow::Owned(key.clone())), Spanned::new(0..0, new));
        return true;
    }
    match slot(v, segs) {
        Some(old) => {
            *old = new;
            true
        }
        None => false,
    }
}

/// A value of the type serde expected, standing in for a wrong or missing one.
fn placeholder(expected: &str) -> Option<DeValue<'static>> {
    Some(match expected {
        "a string" => DeValue::String(Cow::Borrowed("")),
        "i64" | "u64" | "u32" | "usize" => DeValue::Integer(DeInteger::default()),
        "f64" => DeValue::Float(DeFloat::default()),
        "a boolean" => DeValue::Boolean(false),
        "a sequence" => DeValue::Array(DeArray::new()),
        s if s == "a map" || s.starts_with("struct ") => DeValue::Table(DeTable::new()),
        _ => return None,
    })
}

/// Turn a deserialisation error into a message that says what is wrong and
/// how to fix it, and into the repair that gets past it. Serde's own wording
/// echoes string values, so it is rewritten rather than passed on.
fn explain<'i>(loc: &Locator<'_>, segs: &[Seg], msg: &str) -> (Issue, Fix<'i>) {
    let path = path_of(segs);
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let (key, parent) = match segs.split_last() {
            Some((Seg::Key(k), parent)) => (k.clone(), parent),
            _ => (backticked(rest).first().cloned().unwrap_or_default(), segs),
        };
        let allowed = rest.split_once(", expected ").map(|(_, list)| backticked(list)).unwrap_or_default();
        let mut m = format!("unknown key `{key}` {}", section(parent));
        if allowed.is_empty() {
            m.push_str("; this table takes no keys");
        } else {
            m.push_str(&format!("; expected one of: {}", allowed.join(", ")));
            let refs: Vec<&str> = allowed.iter().map(String::as_str).collect();
            if let Some(s) = closest(&key, &refs) {
                m.push_str(&format!(" (did you mean `{s}`?)"));
            }
        }
        let mut at = parent.to_vec();
        at.push(Seg::Key(key));
        return (Issue::new(path_of(&at), m), Fix::Remove(at));
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        let field = backticked(rest).first().cloned().unwrap_or_default();
        let m = format!("missing required key `{field}` {}; add {}", section(segs), example(&field));
        let mut at = segs.to_vec();
        at.push(Seg::Key(field.clone()));
        // A string first; if the key wants another type, the next round
        // says which, inside what is by then a placeholder.
        return (Issue::new(join_key(&path, &field), m), Fix::Fill(at, DeValue::String(Cow::Borrowed(""))));
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let serde_expected = rest.rsplit_once(", expected ").map_or("", |(_, e)| e);
        let expected = describe_expected(serde_expected);
        let found = loc.type_at(&path).map_or_else(|| describe_serde_found(rest), describe_toml_type);
        let m = if expected == "an integer" && found == "an integer" {
            format!("the number is out of range (at most {})", i64::MAX)
        } else {
            format!("expected {expected}, found {found}")
        };
        let fix = placeholder(serde_expected).map_or(Fix::Stop, |v| Fix::Fill(segs.to_vec(), v));
        return (Issue::new(path, m), fix);
    }
    (Issue::new(path, scrub_quoted(msg)), Fix::Stop)
}

/// The `names` between backticks in a serde message.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Where a table is, as a reader of the file calls it: "in [server]",
/// "in [[providers]]", ...
fn section(segs: &[Seg]) -> String {
    match segs {
        [] => "at the top level".to_owned(),
        [Seg::Key(a)] => format!("in [{a}]"),
        [Seg::Key(a), Seg::Index(_)] => format!("in [[{a}]]"),
        [Seg::Key(a), Seg::Index(_), Seg::Key(b)] => format!("in [{a}.{b}]"),
        _ => format!("in `{}`", path_of(segs)),
    }
}

fn example(field: &str) -> &'static str {
    match field {
        "name" => "`name = \"...\"`",
        "kind" => {
            "`kind = \"openai\"` (any OpenAI-compatible server), `kind = \"anthropic\"`, `kind = \"gemini\"` or `kind = \"mock\"`"
        }
        "deployments" => "`deployments = [{ provider = \"...\", model = \"...\" }]`",
        "provider" => "`provider = \"...\"`, the name of a [[providers]] entry",
        "model" => "`model = \"...\"`, the model name the provider knows",
        "input_per_mtok" | "output_per_mtok" => "it, in USD per million tokens (e.g. `0.15`)",
        _ => "it",
    }
}

fn describe_expected(serde: &str) -> String {
    match serde {
        "a string" => "a string".to_owned(),
        "i64" | "u64" | "u32" | "usize" => "an integer".to_owned(),
        "f64" => "a number".to_owned(),
        "a boolean" => "a boolean (true or false)".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        s if s.starts_with("struct ") => "a table".to_owned(),
        s => scrub_quoted(s),
    }
}

fn describe_toml_type(t: &str) -> String {
    match t {
        "integer" => "an integer",
        "array" => "an array",
        "datetime" => "a date-time",
        "string" => "a string",
        "float" => "a float",
        "boolean" => "a boolean",
        "table" => "a table",
        _ => "another type",
    }
    .to_owned()
}

fn describe_serde_found(rest: &str) -> String {
    let kinds = [
        ("string", "a string"),
        ("integer", "an integer"),
        ("floating point", "a float"),
        ("boolean", "a boolean"),
        ("map", "a table"),
        ("sequence", "an array"),
    ];
    kinds.iter().find(|(p, _)| rest.starts_with(p)).map_or("another type", |(_, d)| d).to_owned()
}

/// Blank out `"..."` in a message we did not write: it may quote a value.
fn scrub_quoted(msg: &str) -> String {
    msg.split('"').enumerate().map(|(i, part)| if i % 2 == 1 { "..." } else { part }).collect::<Vec<_>>().join("\"")
}
