//! `${VAR}` expansion in string values, run on the deserialised structs so
//! that a TOML error never echoes a secret taken from the environment.
//!
//! Rules: `${NAME}` is replaced by the variable `NAME` (letters, digits and
//! `_`, not starting with a digit); `$${` is a literal `${`; any other `$` is
//! kept. A missing variable, an unclosed `${` or a bad name is an error that
//! names the key and (for a missing variable) the variable, never a value.

use super::locate::{Issue, join_index, join_key};
use super::raw::{RawConfig, Text};

/// Where `${VAR}` values come from; tests supply a fake.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment. A variable whose value is not valid UTF-8
/// counts as unset.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

const LITERAL_HINT: &str = "write `$${` for a literal `${`";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// The variable is not set.
    Missing(String),
    /// `${` with no `}` after it.
    Unclosed,
    /// `${}` or `${...}` holding something that is not a variable name. The
    /// text is not kept: a secret pasted there by mistake must not be echoed.
    BadName,
}

impl ExpandError {
    fn message(&self) -> String {
        match self {
            ExpandError::Missing(name) => format!(
                "environment variable `{name}` is not set (used as `${{{name}}}`); \
                 set it before starting Sluice, or {LITERAL_HINT}"
            ),
            ExpandError::Unclosed => {
                format!("`${{` has no closing `}}`; write `${{NAME}}`, or {LITERAL_HINT}")
            }
            ExpandError::BadName => format!(
                "`${{...}}` must hold an environment variable name (letters, digits \
                 and `_`, not starting with a digit); {LITERAL_HINT}"
            ),
        }
    }
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        _ => false,
    }
}

/// The expanded string, and whether any variable was read (only then is the
/// result "from the environment"). Every error in `s` is reported.
pub fn expand(s: &str, env: &dyn Env) -> Result<(String, bool), Vec<ExpandError>> {
    let mut out = String::with_capacity(s.len());
    let mut errors = Vec::new();
    let mut used_env = false;
    let mut rest = s;
    // `$`, `{` and `}` are ASCII, so every index below is a char boundary.
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let at = &rest[pos..];
        if let Some(after) = at.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = at.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                errors.push(ExpandError::Unclosed);
                rest = "";
                break;
            };
            let name = &after[..end];
            if !is_var_name(name) {
                errors.push(ExpandError::BadName);
            } else if let Some(v) = env.get(name) {
                out.push_str(&v);
                used_env = true;
            } else {
                errors.push(ExpandError::Missing(name.to_owned()));
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &at[1..];
        }
    }
    out.push_str(rest);
    if errors.is_empty() { Ok((out, used_env)) } else { Err(errors) }
}

/// Expand `${VAR}` in every string value of `raw`, in place. A value that
/// fails keeps its text as written and is marked unresolved.
pub fn interpolate(raw: &mut RawConfig, env: &dyn Env) -> Vec<Issue> {
    let mut w = Walker { env, issues: Vec::new() };
    let s = &mut raw.server;
    w.opt(join_key("server", "listen"), s.listen.as_mut());
    w.opt(join_key("server", "admin_key"), s.admin_key.as_mut());

    for (i, p) in raw.providers.iter_mut().enumerate() {
        let at = join_index("providers", i);
        w.text(join_key(&at, "name"), &mut p.name);
        w.text(join_key(&at, "kind"), &mut p.kind);
        w.opt(join_key(&at, "base_url"), p.base_url.as_mut());
        w.opt(join_key(&at, "api_key"), p.api_key.as_mut());
        let headers = join_key(&at, "headers");
        for (name, v) in p.headers.iter_mut().flatten() {
            w.text(join_key(&headers, name), v);
        }
        w.list(join_key(&at, "forward_headers"), p.forward_headers.as_mut());
        if let Some(a) = p.anthropic.as_mut() {
            let aat = join_key(&at, "anthropic");
            w.opt(join_key(&aat, "version"), a.version.as_mut());
            w.opt(join_key(&aat, "prompt_caching"), a.prompt_caching.as_mut());
        }
        if let Some(a) = p.azure.as_mut() {
            let aat = join_key(&at, "azure");
            w.opt(join_key(&aat, "resource"), a.resource.as_mut());
            w.opt(join_key(&aat, "api"), a.api.as_mut());
            w.opt(join_key(&aat, "api_version"), a.api_version.as_mut());
            if let Some(e) = a.entra.as_mut() {
                let eat = join_key(&aat, "entra");
                w.text(join_key(&eat, "tenant_id"), &mut e.tenant_id);
                w.text(join_key(&eat, "client_id"), &mut e.client_id);
                w.text(join_key(&eat, "client_secret"), &mut e.client_secret);
                w.opt(join_key(&eat, "authority"), e.authority.as_mut());
            }
        }
        if let Some(b) = p.bedrock.as_mut() {
            let bat = join_key(&at, "bedrock");
            w.text(join_key(&bat, "region"), &mut b.region);
            w.opt(join_key(&bat, "profile"), b.profile.as_mut());
            w.opt(join_key(&bat, "sts_endpoint"), b.sts_endpoint.as_mut());
        }
        if let Some(v) = p.vertex.as_mut() {
            let vat = join_key(&at, "vertex");
            w.opt(join_key(&vat, "project"), v.project.as_mut());
            w.text(join_key(&vat, "location"), &mut v.location);
            w.opt(join_key(&vat, "credentials_file"), v.credentials_file.as_mut());
            w.opt(join_key(&vat, "token_url"), v.token_url.as_mut());
        }
    }
    for (i, m) in raw.models.iter_mut().enumerate() {
        let at = join_index("models", i);
        w.text(join_key(&at, "name"), &mut m.name);
        let deps = join_key(&at, "deployments");
        for (j, d) in m.deployments.iter_mut().enumerate() {
            let dat = join_index(&deps, j);
            w.text(join_key(&dat, "provider"), &mut d.provider);
            w.text(join_key(&dat, "model"), &mut d.model);
        }
        w.list(join_key(&at, "fallbacks"), m.fallbacks.as_mut());
        w.opt(join_key(&at, "strategy"), m.strategy.as_mut());
        w.opt(join_key(&at, "fallback_response"), m.fallback_response.as_mut());
    }
    for (i, k) in raw.keys.iter_mut().enumerate() {
        let at = join_index("keys", i);
        w.text(join_key(&at, "name"), &mut k.name);
        w.opt(join_key(&at, "key"), k.key.as_mut());
        w.opt(join_key(&at, "key_sha256"), k.key_sha256.as_mut());
        w.list(join_key(&at, "models"), k.models.as_mut());
        for (j, l) in k.limits.iter_mut().flatten().enumerate() {
            w.text(join_key(&join_index(&join_key(&at, "limits"), j), "model"), &mut l.model);
        }
    }
    if let Some(s) = raw.spend.as_mut() {
        w.opt(join_key("spend", "store"), s.store.as_mut());
    }
    if let Some(r) = raw.responses.as_mut() {
        w.opt(join_key("responses", "store"), r.store.as_mut());
    }
    if let Some(s) = raw.shared.as_mut() {
        w.opt(join_key("shared", "redis_url"), s.redis_url.as_mut());
        w.opt(join_key("shared", "prefix"), s.prefix.as_mut());
        w.opt(join_key("shared", "ca_file"), s.ca_file.as_mut());
        w.opt(join_key("shared", "master_name"), s.master_name.as_mut());
        w.list(join_key("shared", "sentinels"), s.sentinels.as_mut());
    }
    if let Some(t) = raw.telemetry.as_mut() {
        w.opt(join_key("telemetry", "otlp_endpoint"), t.otlp_endpoint.as_mut());
        w.opt(join_key("telemetry", "service_name"), t.service_name.as_mut());
        for (name, v) in t.otlp_headers.iter_mut().flatten() {
            w.text(join_key("telemetry.otlp_headers", name), v);
        }
        if let Some(l) = t.request_log.as_mut() {
            w.opt(join_key("telemetry.request_log", "path"), l.path.as_mut());
        }
    }
    w.issues
}

struct Walker<'a> {
    env: &'a dyn Env,
    issues: Vec<Issue>,
}

impl Walker<'_> {
    fn text(&mut self, path: String, t: &mut Text) {
        if !t.value.contains('$') {
            return;
        }
        match expand(&t.value, self.env) {
            Ok((value, used_env)) => {
                let original = std::mem::replace(&mut t.value, value);
                if used_env {
                    t.template = Some(original);
                }
            }
            Err(errors) => {
                t.template = Some(t.value.clone());
                t.unresolved = true;
                for e in errors {
                    self.issues.push(Issue::new(path.clone(), e.message()));
                }
            }
        }
    }

    fn opt(&mut self, path: String, t: Option<&mut Text>) {
        if let Some(t) = t {
            self.text(path, t);
        }
    }

    fn list(&mut self, path: String, list: Option<&mut Vec<Text>>) {
        for (i, t) in list.into_iter().flatten().enumerate() {
            self.text(join_index(&path, i), t);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    pub struct FakeEnv(pub HashMap<String, String>);

    impl Env for FakeEnv {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn env() -> FakeEnv {
        FakeEnv(HashMap::from([
            ("A".to_owned(), "alpha".to_owned()),
            ("B_2".to_owned(), "beta".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]))
    }

    fn ok(s: &str) -> (String, bool) {
        expand(s, &env()).unwrap()
    }

    #[test]
    fn present_variables_are_replaced() {
        assert_eq!(ok("${A}"), ("alpha".into(), true));
        assert_eq!(ok("x-${A}-${B_2}-y"), ("x-alpha-beta-y".into(), true));
        assert_eq!(ok("${EMPTY}"), (String::new(), true));
        assert_eq!(ok("plain"), ("plain".into(), false));
        assert_eq!(ok("ünï${A}ü"), ("ünïalphaü".into(), true));
    }

    #[test]
    fn escapes_and_lone_dollars() {
        assert_eq!(ok("$${A}"), ("${A}".into(), false));
        assert_eq!(ok("a$${"), ("a${".into(), false));
        assert_eq!(ok("$5 and $ and $A"), ("$5 and $ and $A".into(), false));
        assert_eq!(ok("$$"), ("$$".into(), false));
        assert_eq!(ok("$"), ("$".into(), false));
        assert_eq!(ok("$${A}${A}"), ("${A}alpha".into(), true));
    }

    #[test]
    fn missing_variables_are_named() {
        let e = expand("${NOPE}-${A}-${ALSO_NOPE}", &env()).unwrap_err();
        assert_eq!(e, vec![ExpandError::Missing("NOPE".into()), ExpandError::Missing("ALSO_NOPE".into())]);
        assert!(e[0].message().contains("`NOPE`"));
    }

    #[test]
    fn malformed_references() {
        assert_eq!(expand("${A", &env()), Err(vec![ExpandError::Unclosed]));
        assert_eq!(expand("x${", &env()), Err(vec![ExpandError::Unclosed]));
        assert_eq!(expand("${}", &env()), Err(vec![ExpandError::BadName]));
        assert_eq!(expand("${1A}", &env()), Err(vec![ExpandError::BadName]));
        assert_eq!(expand("${A B}", &env()), Err(vec![ExpandError::BadName]));
        assert_eq!(expand("${sk-secret-123}", &env()), Err(vec![ExpandError::BadName]));
        assert!(!ExpandError::BadName.message().contains("sk-secret"));
    }

    #[test]
    fn walker_marks_values_and_reports_paths() {
        let mut raw: RawConfig = toml::from_str(
            r#"
            [server]
            admin_key = "${A}"
            listen = "$${literal}"
            [[keys]]
            name = "k"
            key = "${MISSING}"
            models = ["x", "${B_2}"]
            "#,
        )
        .unwrap();
        let issues = interpolate(&mut raw, &env());
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "keys[0].key");
        let admin = raw.server.admin_key.as_ref().unwrap();
        assert_eq!(admin.value, "alpha");
        assert_eq!(admin.template.as_deref(), Some("${A}"));
        assert!(!admin.shown().contains("alpha"));
        let listen = raw.server.listen.as_ref().unwrap();
        assert_eq!(listen.value, "${literal}");
        assert_eq!(listen.template, None);
        let key = raw.keys[0].key.as_ref().unwrap();
        assert!(key.unresolved);
        assert_eq!(key.value, "${MISSING}");
        let models = raw.keys[0].models.as_ref().unwrap();
        assert_eq!(models[1].value, "beta");
    }
}
