//! Every error of a file in one pass: unknown keys, wrong types, missing
//! keys, missing variables and cross-references together, each at its line.

use super::*;

const BAD: &str = r#"lisen = "x"

[server]
lisen = "127.0.0.1:8080"
workerz = 4
max_body_bytes = "big"
admin_key = "${MISSING_ADMIN}"

[[providers]]
name = "openai"
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key = "${MISSING_OPENAI}"
max_conections = 10
connect_timeout_ms = true

[[providers]]
name = "local"
kind = "mock"
[providers.mock]
tokenz = 5
delay_ms = "1s"

[[models]]
name = "gpt"
deployments = [{ provider = "opneai", model = "gpt-4o", wieght = 2 }]
fallbacks = ["nope", 3]

[[models]]
name = "fast"
deployments = [{ provider = "local" }]
strategy = "fastest"

[[keys]]
name = "app"
key = "${MISSING_APP}"
models = ["gpt", "gtp"]
rpn = 10
"#;

#[test]
fn every_kind_of_error_at_once() {
    let want: &[(&str, usize, &str)] = &[
        ("lisen", 1, "unknown key `lisen` at the top level"),
        ("server.lisen", 4, "(did you mean `listen`?)"),
        ("server.workerz", 5, "(did you mean `workers`?)"),
        ("server.max_body_bytes", 6, "expected an integer, found a string"),
        ("server.admin_key", 7, "`MISSING_ADMIN` is not set"),
        ("providers[0].api_key", 13, "`MISSING_OPENAI` is not set"),
        ("providers[0].max_conections", 14, "(did you mean `max_connections`?)"),
        ("providers[0].connect_timeout_ms", 15, "expected an integer, found a boolean"),
        ("providers[1].mock.tokenz", 21, "(did you mean `tokens`?)"),
        ("providers[1].mock.delay_ms", 22, "expected an integer, found a string"),
        ("models[0].deployments[0].wieght", 26, "(did you mean `weight`?)"),
        ("models[0].deployments[0].provider", 26, "no provider named `opneai` (did you mean `openai`?)"),
        ("models[0].fallbacks[0]", 27, "no model named `nope`"),
        ("models[0].fallbacks[1]", 27, "expected a string, found an integer"),
        ("models[1].deployments[0].model", 31, "missing required key `model`"),
        ("models[1].strategy", 32, "unknown strategy `fastest`"),
        ("keys[0].key", 36, "`MISSING_APP` is not set"),
        ("keys[0].models[1]", 37, "no model named `gtp` (did you mean `gpt`?)"),
        ("keys[0].rpn", 38, "(did you mean `rpm`?)"),
    ];
    let e = errs(BAD);
    for (key, line, part) in want {
        let found = e.iter().find(|e| e.key == *key && e.message.contains(part));
        let found = found.unwrap_or_else(|| panic!("no error {key}: {part} in {e:#?}"));
        assert_eq!(found.line, Some(*line), "{found:#?}");
    }
    assert_eq!(e.len(), want.len(), "nothing else: {e:#?}");
    let lines: Vec<usize> = e.iter().filter_map(|e| e.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "sorted by line: {lines:?}");
}

#[test]
fn placeholders_are_not_checked_again() {
    // `name` of the wrong type would otherwise also be "empty"; a table
    // where an array belongs would also mean "no models".
    let text = "models = { a = 1 }\n[server]\nallow_anonymous = true\n[[providers]]\nname = 5\nkind = []\n";
    let e = errs(text);
    let got: Vec<(&str, &str)> = e.iter().map(|e| (e.key.as_str(), e.message.as_str())).collect();
    assert_eq!(
        got,
        [
            ("models", "expected an array, found a table"),
            ("providers[0].name", "expected a string, found an integer"),
            ("providers[0].kind", "expected a string, found an array"),
        ],
    );
}

#[test]
fn entries_that_are_not_tables() {
    let text = BASE.replace("name = \"a\"", "name = \"a\"\nprice = 3");
    let e = only_at(&text, "models[0].price");
    assert!(e.message.contains("expected a table, found an integer"), "{e:#?}");

    let e = errs("providers = [1, { name = \"p\", kind = \"mock\", extra = 1 }]\n[server]\nallow_anonymous = true\n");
    let got: Vec<(&str, Option<usize>)> = e.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert_eq!(got, [("providers[0]", Some(1)), ("providers[1].extra", Some(1)), ("models", None)], "{e:#?}");
}

#[test]
fn a_hopeless_file_stops_with_a_bound() {
    let mut text = String::from("[server]\n");
    for i in 0..600 {
        text.push_str(&format!("k{i} = 1\n"));
    }
    let e = errs(&text);
    assert!(e.len() > 500 && e.len() < 510, "{}", e.len());
    assert!(e.iter().any(|e| e.message.contains("more than 500 errors in this file")), "{e:#?}");
}
