use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::super::{EMBEDDED_DEFAULT, EMBEDDED_NAME, MockProviderConfig, ProviderKind};
use super::*;

mod clouds;
mod one_pass;
mod rules;
mod vendors;

/// Answers every variable except those starting with `MISSING`, each with a
/// distinct value, plus fixed values for some names.
struct FakeEnv(HashMap<&'static str, &'static str>);

impl Env for FakeEnv {
    fn get(&self, name: &str) -> Option<String> {
        if let Some(v) = self.0.get(name) {
            return Some((*v).to_owned());
        }
        (!name.starts_with("MISSING")).then(|| format!("test-value-of-{name}"))
    }
}

fn env() -> FakeEnv {
    FakeEnv(HashMap::new())
}

fn load_ok(text: &str) -> Config {
    match load(text, "t.toml", &env()) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn errs(text: &str) -> Vec<ConfigError> {
    match load(text, "t.toml", &env()) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0,
    }
}

fn one(text: &str) -> ConfigError {
    let mut e = errs(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.remove(0)
}

/// The one error about `key`. The file may have others: a snippet that
/// misspells a key usually lacks models and keys too, and every error is
/// reported.
fn only_at(text: &str, key: &str) -> ConfigError {
    let all = errs(text);
    let mut at: Vec<ConfigError> = all.iter().filter(|e| e.key == key).cloned().collect();
    assert_eq!(at.len(), 1, "expected one error at {key}, got {all:#?}");
    at.remove(0)
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line(text: &str, needle: &str) -> Option<usize> {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle} not in text"));
    Some(line_of(text, at))
}

/// Asserts an error's key, line (of `needle`) and that its message contains
/// every one of `parts`.
fn check(e: &ConfigError, text: &str, key: &str, needle: &str, parts: &[&str]) {
    assert_eq!(e.key, key, "{e:#?}");
    assert_eq!(e.line, line(text, needle), "{e:#?}");
    assert_eq!(e.file, "t.toml");
    for p in parts {
        assert!(e.message.contains(p), "{:?} lacks {p:?}", e.message);
    }
}

const BASE: &str = r#"[server]
allow_anonymous = true

[[providers]]
name = "m"
kind = "mock"

[[models]]
name = "a"
deployments = [{ provider = "m", model = "x" }]
"#;

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn embedded_default_is_valid() {
    let c = load(EMBEDDED_DEFAULT, EMBEDDED_NAME, &FakeEnv(HashMap::new())).unwrap();
    assert_eq!(c.source, EMBEDDED_NAME);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert!(!c.server.allow_anonymous);
    assert_eq!(c.providers.len(), 1);
    assert_eq!(c.providers[0].kind, ProviderKind::Mock);
    assert_eq!(c.providers[0].mock.tokens, 16);
    let names: Vec<&str> = c.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["mock", "fast"]);
    for m in &c.models {
        assert_eq!(m.deployments[0].provider, 0);
        assert_eq!(m.deployments[0].model, "mock-1");
    }
    assert_eq!(c.keys.len(), 1);
    assert_eq!(c.keys[0].name, "dev");
    let want: [u8; 32] = Sha256::digest(b"sk-sluice-dev").into();
    assert_eq!(c.keys[0].key_sha256, want);
    assert_eq!(c.keys[0].models, ["*"]);
}

#[test]
fn every_example_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.display().to_string();
        if let Err(e) = load(&text, &file, &env()) {
            panic!("{file} does not validate:\n{e}");
        }
        seen += 1;
    }
    assert!(seen >= 3, "expected the examples in {}", dir.display());
}

#[test]
fn defaults_apply() {
    let c = load_ok(BASE);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.admin_key, None);
    assert_eq!(c.server.max_body_bytes, 33_554_432);
    assert_eq!(c.server.workers, 0);
    assert_eq!(c.server.shutdown_timeout_ms, 30_000);
    assert_eq!((c.server.max_upload_bytes, c.server.max_file_bytes), (25 << 20, 512 << 20));
    assert_eq!(c.server.spool_dir, std::env::temp_dir());
    let p = &c.providers[0];
    assert_eq!(p.max_connections, 256);
    assert_eq!(p.connect_timeout_ms, 2_000);
    assert_eq!(p.first_byte_timeout_ms, 60_000);
    assert_eq!(p.idle_timeout_ms, 60_000);
    assert_eq!(p.total_timeout_ms, 600_000);
    assert_eq!(p.warm_connections, 1);
    let mock = MockProviderConfig { delay_ms: 0, chunk_delay_ms: 0, tokens: 16 };
    assert_eq!(p.mock, mock);
    assert_eq!(c.models[0].deployments[0].weight, 1);
    assert!(c.models[0].fallbacks.is_empty());
    assert!(c.keys.is_empty());
}

#[test]
fn openai_provider_is_mapped() {
    let t = with(
        r#"
[[providers]]
name = "o"
kind = "openai"
base_url = "https://api.example.com/v1//"
api_key = "${OPENAI_API_KEY}"
headers = { "X-Team" = "t1", Other = "${HDR}" }
forward_headers = ["X-Trace-Id", "x-mock-*"]
"#,
    );
    let c = load_ok(&t);
    let p = &c.providers[1];
    assert_eq!(p.kind, ProviderKind::OpenAi);
    assert_eq!(p.base_url, "https://api.example.com/v1");
    assert_eq!(p.api_key.as_ref().map(Secret::expose), Some("test-value-of-OPENAI_API_KEY"));
    let h: Vec<(&str, &str)> = p.headers.iter().map(|(n, v)| (n.as_str(), v.expose())).collect();
    assert_eq!(h, [("other", "test-value-of-HDR"), ("x-team", "t1")]);
    assert_eq!(p.forward_headers, ["x-trace-id", "x-mock-*"]);
    assert_eq!(c.provider(1).map(|p| p.name.as_str()), Some("o"));
}

#[test]
fn toml_syntax_errors_have_a_line() {
    let text = "[server]\nlisten = \"127.0.0.1:1\"\nworkers = = 2\n";
    let e = one(text);
    assert_eq!(e.line, Some(3));
    assert_eq!(e.key, "");
    assert!(e.message.starts_with("invalid TOML: "), "{e}");
    let e = one("[server]\nlisten = 'a'\nlisten = 'b'\n");
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("duplicate key"));
}

#[test]
fn cross_reference_errors_are_all_reported() {
    let text = r#"[server]
listen = "localhost:80"
admin_key = ""

[[providers]]
name = "m"
kind = "mock"

[[providers]]
name = "m"
kind = "cohere"

[[models]]
name = "a"
deployments = [{ provider = "n", model = "" }]
fallbacks = ["a", "zz"]

[[models]]
name = "a"
deployments = []

[[keys]]
name = "k"
models = ["nope", "a*b"]

[[keys]]
name = "k"
key = "same"

[[keys]]
name = "k2"
key_sha256 = "XYZ"
"#;
    let e = errs(text);
    let want: &[(&str, &str, &str)] = &[
        ("server.listen", "listen", "not an IP address and port"),
        ("server.admin_key", "admin_key", "admin_key is empty"),
        (
            "providers[1].name",
            "name = \"m\"\nkind = \"cohere\"",
            "duplicate provider name `m`: providers[0] already uses it",
        ),
        ("providers[1].kind", "cohere", "unknown provider kind `cohere`; expected one of: openai"),
        ("models[0].deployments[0].provider", "provider = \"n\"", "no provider named `n`; defined providers: `m`"),
        ("models[0].deployments[0].model", "provider = \"n\"", "upstream model name is empty"),
        ("models[0].fallbacks[0]", "fallbacks", "cannot fall back to itself"),
        ("models[0].fallbacks[1]", "fallbacks", "no model named `zz`"),
        ("models[1].name", "name = \"a\"\ndeployments = []", "duplicate model name `a`"),
        ("models[1].deployments", "deployments = []", "at least one deployment"),
        ("keys[0]", "[[keys]]", "needs `key`"),
        ("keys[0].models[0]", "models = [", "no model named `nope`"),
        ("keys[0].models[1]", "models = [", "`*` is only allowed at the end"),
        ("keys[1].name", "name = \"k\"\nkey =", "duplicate key name `k`"),
        ("keys[2].key_sha256", "XYZ", "64 hex characters"),
    ];
    let got: Vec<(&str, Option<usize>)> = e.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert_eq!(e.len(), want.len(), "{got:#?}\n{e:#?}");
    for (key, needle, msg) in want {
        let found = e.iter().find(|e| e.key == *key && e.message.contains(msg));
        let found = found.unwrap_or_else(|| panic!("no error {key}: {msg} in {e:#?}"));
        assert_eq!(found.line, line(text, needle), "{found:#?}");
    }
    let lines: Vec<usize> = e.iter().filter_map(|e| e.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "sorted by line: {lines:?}");
}

#[test]
fn config_level_errors() {
    let e = one("[server]\nallow_anonymous = true\n");
    assert_eq!((e.key.as_str(), e.line), ("models", None));
    assert!(e.message.contains("no [[models]] configured"));

    let text = BASE.replace("allow_anonymous = true", "");
    let e = one(&text);
    assert_eq!((e.key.as_str(), e.line), ("keys", None));
    assert_eq!(
        e.message,
        "no [[keys]] configured: add one, or set server.allow_anonymous = true to let every client in"
    );
    assert_eq!(e.to_string(), format!("t.toml: keys: {}", e.message), "no line, key shown");

    let both = errs("");
    assert_eq!(both.len(), 2);
}

#[test]
fn keys_are_hashed_and_patterns_kept() {
    let digest = hex::encode(Sha256::digest(b"other"));
    let text = with(&format!(
        "[[keys]]\nname = \"k1\"\nkey = \"${{K1}}\"\nmodels = [\"a\", \"pre*\", \"*\"]\n\
         [[keys]]\nname = \"k2\"\nkey_sha256 = \"{}\"\n",
        digest.to_uppercase()
    ));
    let c = load_ok(&text);
    let k1: [u8; 32] = Sha256::digest(b"test-value-of-K1").into();
    assert_eq!(c.keys[0].key_sha256, k1);
    assert_eq!(c.keys[0].models, ["a", "pre*", "*"]);
    assert_eq!(hex::encode(c.keys[1].key_sha256), digest);
    assert_eq!(c.keys[1].models, ["*"]);
}

#[test]
fn duplicate_key_material_names_both_keys() {
    let digest = hex::encode(Sha256::digest(b"shared"));
    let text = with(&format!(
        "[[keys]]\nname = \"first\"\nkey = \"shared\"\n\
         [[keys]]\nname = \"second\"\nkey_sha256 = \"{digest}\"\n"
    ));
    let e = one(&text);
    check(&e, &text, "keys[1].key_sha256", "key_sha256", &["`second`", "`first` (keys[0])"]);
    assert!(!e.to_string().contains("shared"));
}

#[test]
fn fallback_cycles_are_reported_once_each() {
    let m = |name: &str, fb: &str| {
        format!(
            "[[models]]\nname = \"{name}\"\ndeployments = [{{ provider = \"m\", model = \"x\" }}]\nfallbacks = [{fb}]\n"
        )
    };
    let text = with(
        &[m("b", "\"c\""), m("c", "\"a\", \"d\""), m("d", "\"b\""), m("e", "\"f\""), m("f", "\"e\", \"a\"")].concat(),
    );
    let e = errs(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(e[0].key, "models[1].fallbacks[0]");
    assert!(e[0].message.contains("fallback cycle: `b` -> `c` -> `d` -> `b`"), "{e:#?}");
    assert_eq!(e[0].line, line(&text, "fallbacks = [\"c\"]"));
    assert_eq!(e[1].key, "models[4].fallbacks[0]");
    assert!(e[1].message.contains("`e` -> `f` -> `e`"), "{e:#?}");

    // A long chain is fine, and does not exhaust the stack.
    let mut long = String::new();
    for i in 0..5000 {
        long.push_str(&m(&format!("n{i}"), &format!("\"n{}\"", i + 1)));
    }
    long.push_str(&m("n5000", ""));
    let c = load_ok(&with(&long));
    assert_eq!(c.models.len(), 5002);
}

#[test]
fn interpolation_through_load() {
    let text = with(
        "[[keys]]\nname = \"k\"\nkey = \"${MISSING_KEY}\"\n\
         [[keys]]\nname = \"$${literal}\"\nkey = \"x\"\nmodels = [\"${}\"]\n",
    );
    let e = errs(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    check(&e[0], &text, "keys[0].key", "MISSING_KEY", &["`MISSING_KEY` is not set"]);
    check(&e[1], &text, "keys[1].models[0]", "${}", &["must hold an environment variable name"]);

    let text = with("[[keys]]\nname = \"$${literal}\"\nkey = \"${K}-$${x}\"\n");
    let c = load_ok(&text);
    assert_eq!(c.keys[0].name, "${literal}");
    let want: [u8; 32] = Sha256::digest(b"test-value-of-K-${x}").into();
    assert_eq!(c.keys[0].key_sha256, want);

    // A failed value is not checked again: one error, not two.
    let text = with(
        "[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"${MISSING_URL}\"\n\
         [[providers]]\nname = \"o2\"\nkind = \"openai\"\nbase_url = \"${MISSING_URL\"\n",
    );
    let e = errs(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e[0].message.contains("`MISSING_URL`"));
    assert!(e[1].message.contains("no closing `}`"));
}

#[test]
fn secrets_never_appear_in_errors() {
    const S: &str = "s3cr3t-XYZZY-value";
    let env = FakeEnv(HashMap::from([("S", S), ("S2", "s3cr3t-XYZZY-value\n")]));
    let text = r#"[server]
listen = "${S}"
admin_key = "${S2}"
workers = "literal-s3cr3t-XYZZY-value"

[[providers]]
name = "${S}"
kind = "${S}"
base_url = "${S}"
api_key = "${S2}"
headers = { a = "${S2}" }
forward_headers = ["${S}", "${S}*"]

[[providers]]
name = "p"
kind = "openai"
base_url = "${S}"

[[models]]
name = "${S}"
deployments = [{ provider = "${S}", model = "${S}" }, { provider = "x${S}", model = "m" }]
fallbacks = ["${S}", "x${S}"]

[[models]]
name = "${S}"
deployments = [{ provider = "p", model = "m" }]
fallbacks = ["${S}"]

[[keys]]
name = "${S}"
key = "${S}"
key_sha256 = "${S}"
models = ["${S}", "a*${S}"]

[[keys]]
name = "${S}"
key = "${S2}"

[[keys]]
name = "k3"
key = "${S2}"

[[keys]]
name = "k4"
key_sha256 = "${S}"
"#;
    // With a type error, and without.
    let e = load(text, "t.toml", &env).unwrap_err();
    assert!(e.0.len() >= 16, "{e}");
    assert!(!e.to_string().contains("XYZZY"), "{e}");
    let text = text.replace("workers = \"literal-s3cr3t-XYZZY-value\"\n", "");
    let e = load(&text, "t.toml", &env).unwrap_err();
    let shown = format!("{e}\n{e:?}");
    assert!(e.0.len() >= 15, "{shown}");
    assert!(!shown.contains("XYZZY"), "{shown}");
    // And in messages where a literal secret sits next to a problem.
    let text = with("[[keys]]\nname = \"k\"\nkey = \"lit-XYZZY\"\n[[keys]]\nname = \"k\"\nkey = \"lit-XYZZY\"\n");
    let shown = load(&text, "t.toml", &env).unwrap_err().to_string();
    assert!(shown.contains("same key") && !shown.contains("XYZZY"), "{shown}");
    // A valid config's Debug hides secrets too.
    let ok = with(
        "[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"http://h\"\napi_key = \"${S}\"\nheaders = { h = \"${S}\" }\n",
    );
    let c = load(&ok, "t.toml", &env).unwrap();
    assert!(!format!("{c:?}").contains("XYZZY"));
}

#[test]
fn no_panic_on_any_prefix_or_mutation() {
    let text = EMBEDDED_DEFAULT;
    for (i, _) in text.char_indices() {
        let _ = load(&text[..i], "t.toml", &env());
    }
    for junk in ["\0", "\u{feff}", "[[", "]]", "=", "\"", "${", "'''", "[server]", "9"] {
        for (i, _) in text.char_indices().step_by(7) {
            let mutated = format!("{}{junk}{}", &text[..i], &text[i..]);
            let _ = load(&mutated, "t.toml", &env());
        }
    }
}

#[test]
fn errors_display_file_line_key() {
    let e = only_at("[server]\nlisen = 1\n", "server.lisen");
    assert!(e.to_string().starts_with("t.toml:2: server.lisen: unknown key `lisen` in [server]"), "{e}");
}
