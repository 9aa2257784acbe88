//! Table-driven tests: one bad setting per case, checking the key path, the
//! line and the message.

use super::*;

#[test]
fn unknown_keys_at_every_level() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "[sever]\n",
            "sever",
            "[sever]",
            &["at the top level", "server, providers, models, keys", "(did you mean `server`?)"],
        ),
        (
            "[server]\nlisen = \"x\"\n",
            "server.lisen",
            "lisen",
            &[
                "unknown key `lisen` in [server]",
                "expected one of: listen, admin_key, max_body_bytes, workers, shutdown_timeout_ms, allow_anonymous, busy_poll_us",
                "did you mean `listen`",
            ],
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nbase = 1\n",
            "providers[0].base",
            "base =",
            &["in [[providers]]", "base_url", "forward_headers", "mock"],
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\n[providers.mock]\ntoken = 1\n",
            "providers[0].mock.token",
            "token =",
            &["in [providers.mock]", "delay_ms, chunk_delay_ms, tokens", "did you mean `tokens`"],
        ),
        (
            "[[models]]\nname = \"a\"\ndeployments = []\nalias = 1\n",
            "models[0].alias",
            "alias",
            &["in [[models]]", "name, deployments, fallbacks, price"],
        ),
        (
            "[[models]]\nname = \"a\"\ndeployments = [\n  { provider = \"m\", model = \"x\", wieght = 2 },\n]\n",
            "models[0].deployments[0].wieght",
            "wieght",
            &["`models[0].deployments[0]`", "provider, model, weight", "did you mean `weight`"],
        ),
        (
            "[[models]]\nname = \"a\"\ndeployments = []\nprice = { input = 1 }\n",
            "models[0].price.input",
            "price",
            &["[models.price]", "input_per_mtok, output_per_mtok"],
        ),
        (
            "[[keys]]\nname = \"k\"\nrpn = 5\n",
            "keys[0].rpn",
            "rpn",
            &["in [[keys]]", "name, key, key_sha256, models, rpm, tpm", "did you mean `rpm`"],
        ),
    ];
    for (body, key, needle, parts) in cases {
        let text = format!("# leading comment\n\n{body}");
        let e = only_at(&text, key);
        check(&e, &text, key, needle, parts);
    }
}

#[test]
fn wrong_types() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("[server]\nworkers = \"four\"\n", "server.workers", "workers", "expected an integer, found a string"),
        ("[server]\nlisten = 8080\n", "server.listen", "listen", "expected a string, found an integer"),
        (
            "[server]\nallow_anonymous = \"yes\"\n",
            "server.allow_anonymous",
            "allow_anonymous",
            "expected a boolean (true or false), found a string",
        ),
        ("[server]\nworkers = 1.5\n", "server.workers", "workers", "expected an integer, found a float"),
        ("[server]\nallow_anonymous = 1979-05-27\n", "server.allow_anonymous", "allow_anonymous", "found a date-time"),
        ("[server]\nworkers = 99999999999999999999\n", "server.workers", "workers", "out of range"),
        ("server = 5\n", "server", "server", "expected a table, found an integer"),
        ("providers = 5\n", "providers", "providers", "expected an array, found an integer"),
        (
            "[[models]]\nname = \"a\"\ndeployments = \"m\"\n",
            "models[0].deployments",
            "deployments",
            "expected an array, found a string",
        ),
        (
            "[[models]]\nname = \"a\"\ndeployments = []\nfallbacks = [1]\n",
            "models[0].fallbacks[0]",
            "fallbacks",
            "expected a string, found an integer",
        ),
        (
            "[[models]]\nname = \"a\"\ndeployments = []\nprice = { input_per_mtok = \"1\", output_per_mtok = 1 }\n",
            "models[0].price.input_per_mtok",
            "price",
            "expected a number, found a string",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nheaders = { a = 1 }\n",
            "providers[0].headers.a",
            "headers",
            "expected a string, found an integer",
        ),
    ];
    for (text, key, needle, msg) in cases {
        let e = only_at(text, key);
        check(&e, text, key, needle, &[msg]);
    }
}

#[test]
fn missing_required_keys() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "[[providers]]\nname = \"p\"\n",
            "providers[0].kind",
            "[[providers]]",
            "missing required key `kind` in [[providers]]",
        ),
        ("[[providers]]\nkind = \"mock\"\n", "providers[0].name", "[[providers]]", "missing required key `name`"),
        ("[[models]]\nname = \"a\"\n", "models[0].deployments", "[[models]]", "deployments = [{ provider"),
        (
            "[[models]]\nname = \"a\"\ndeployments = [{ model = \"x\" }]\n",
            "models[0].deployments[0].provider",
            "deployments",
            "missing required key `provider`",
        ),
        (
            "[[models]]\nname = \"a\"\ndeployments = []\nprice = { input_per_mtok = 1 }\n",
            "models[0].price.output_per_mtok",
            "price",
            "`output_per_mtok`",
        ),
        ("[[keys]]\nkey = \"x\"\n", "keys[0].name", "[[keys]]", "missing required key `name` in [[keys]]"),
    ];
    for (text, key, needle, msg) in cases {
        let e = only_at(text, key);
        check(&e, text, key, needle, &[msg]);
    }
}

#[test]
fn provider_rules() {
    let p = |body: &str| with(&format!("\n[[providers]]\nname = \"p\"\n{body}"));
    let cases: &[(&str, &str, &str, &str)] = &[
        ("kind = \"mock\"\nbase_url = \"http://x\"\n", "providers[1].base_url", "base_url =", "makes no network call"),
        ("kind = \"mock\"\napi_key = \"k\"\n", "providers[1].api_key", "api_key", "no upstream to authenticate to"),
        ("kind = \"openai\"\n", "providers[1].base_url", "[[providers]]", "needs `base_url`"),
        (
            "kind = \"openai\"\nbase_url = \"ftp://x\"\n",
            "providers[1].base_url",
            "base_url",
            "must start with http:// or https://",
        ),
        ("kind = \"openai\"\nbase_url = \"https:///v1\"\n", "providers[1].base_url", "base_url", "has no host"),
        ("kind = \"openai\"\nbase_url = \"https://x/v1?a=b\"\n", "providers[1].base_url", "base_url", "query"),
        (
            "kind = \"openai\"\nbase_url = \"http://x\"\napi_key = \"\"\n",
            "providers[1].api_key",
            "api_key",
            "api_key is empty",
        ),
        (
            "kind = \"openai\"\nbase_url = \"http://x\"\nmock = { tokens = 3 }\n",
            "providers[1].mock",
            "mock =",
            "only to kind = \"mock\"",
        ),
        ("kind = \"mock\"\nmock = { tokens = 0 }\n", "providers[1].mock.tokens", "mock =", "must be at least 1"),
        (
            "kind = \"anthropic\"\napi_key = \"k\"\nfiles = true\n",
            "providers[1].files",
            "files",
            "Files and Batch APIs",
        ),
        (
            "kind = \"mock\"\nmax_connections = 0\n",
            "providers[1].max_connections",
            "max_connections",
            "must be at least 1",
        ),
        (
            "kind = \"mock\"\nconnect_timeout_ms = 0\n",
            "providers[1].connect_timeout_ms",
            "connect_timeout_ms",
            "at least 1",
        ),
        ("kind = \"mock\"\nidle_timeout_ms = -5\n", "providers[1].idle_timeout_ms", "idle_timeout_ms", "found -5"),
        ("kind = \"mock\"\nwarm_connections = -1\n", "providers[1].warm_connections", "warm_connections", "at least 0"),
        (
            "kind = \"mock\"\nfirst_byte_timeout_ms = 5000\ntotal_timeout_ms = 1000\n",
            "providers[1].total_timeout_ms",
            "total_timeout_ms",
            "shorter than first_byte_timeout_ms",
        ),
        (
            "kind = \"mock\"\nforward_headers = [\"Authorization\"]\n",
            "providers[1].forward_headers[0]",
            "forward_headers",
            "`authorization` is never forwarded",
        ),
        (
            "kind = \"mock\"\nforward_headers = [\"x-api*\"]\n",
            "providers[1].forward_headers[0]",
            "forward_headers",
            "would forward `x-api-key`",
        ),
        (
            "kind = \"mock\"\nforward_headers = [\"*\"]\n",
            "providers[1].forward_headers[0]",
            "forward_headers",
            "a bare `*`",
        ),
        (
            "kind = \"mock\"\nforward_headers = [\"bad header\"]\n",
            "providers[1].forward_headers[0]",
            "forward_headers",
            "is not a header name",
        ),
        (
            "kind = \"mock\"\nforward_headers = [\"x-*-y\"]\n",
            "providers[1].forward_headers[0]",
            "forward_headers",
            "trailing `*`",
        ),
        (
            "kind = \"mock\"\nheaders = { \"bad name\" = \"v\" }\n",
            "providers[1].headers.\"bad name\"",
            "headers",
            "not a valid HTTP header name",
        ),
        (
            "kind = \"mock\"\nheaders = { Content-Length = \"1\" }\n",
            "providers[1].headers.Content-Length",
            "headers",
            "set by Sluice",
        ),
        ("kind = \"mock\"\nheaders = { a = \"1\", A = \"2\" }\n", "providers[1].headers.a", "headers", "set twice"),
        ("kind = \"mock\"\nheaders = { a = \"x\\ny\" }\n", "providers[1].headers.a", "headers", "control character"),
        (
            "kind = \"openai\"\nbase_url = \"http://x\"\napi_key = \"k\"\nheaders = { Authorization = \"Bearer k\" }\n",
            "providers[1].headers.authorization",
            "headers",
            "keep one",
        ),
    ];
    for (body, key, needle, msg) in cases {
        let text = p(body);
        let e = one(&text);
        // The needle is searched after the base part, in the provider's lines.
        let at = BASE.len() + text[BASE.len()..].find(needle).unwrap();
        assert_eq!(e.key, *key, "{e:#?}");
        assert_eq!(e.line, Some(line_of(&text, at)), "{e:#?}");
        assert!(e.message.contains(msg), "{:?} lacks {msg:?}", e.message);
    }
}

#[test]
fn model_and_key_rules() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[models]]\nname = \"b*\"\ndeployments = [{ provider = \"m\", model = \"x\" }]\n",
            "models[1].name",
            "cannot contain `*`",
        ),
        (
            "[[models]]\nname = \"b\"\ndeployments = [{ provider = \"m\", model = \"x\", weight = 0 }]\n",
            "models[1].deployments[0].weight",
            "at least 1",
        ),
        (
            "[[models]]\nname = \"b\"\ndeployments = [{ provider = \"m\", model = \"x\", weight = 5000000000 }]\n",
            "models[1].deployments[0].weight",
            "at most 4294967295",
        ),
        (
            "[[models]]\nname = \"b\"\ndeployments = [{ provider = \"m\", model = \"x\" }]\nfallbacks = [\"a\", \"a\"]\n",
            "models[1].fallbacks[1]",
            "listed twice",
        ),
        (
            "[[models]]\nname = \"b\"\ndeployments = [{ provider = \"m\", model = \"x\" }]\nprice = { input_per_mtok = -1, output_per_mtok = nan }\n",
            "models[1].price.input_per_mtok",
            "finite number >= 0",
        ),
        (
            "[[models]]\nname = \"\"\ndeployments = [{ provider = \"m\", model = \"x\" }]\n",
            "models[1].name",
            "name is empty",
        ),
        ("[[keys]]\nname = \"k\"\nkey = \"a\"\nkey_sha256 = \"b\"\n", "keys[0].key_sha256", "not both"),
        ("[[keys]]\nname = \"k\"\nkey = \"\"\n", "keys[0].key", "the key is empty"),
        (
            "[[keys]]\nname = \"k\"\nkey_sha256 = \"zz00000000000000000000000000000000000000000000000000000000000000\"\n",
            "keys[0].key_sha256",
            "only hex characters",
        ),
        ("[[keys]]\nname = \"k\"\nkey = \"x\"\nmodels = []\n", "keys[0].models", "the list is empty"),
        ("[[keys]]\nname = \"k\"\nkey = \"x\"\nmodels = [\"\"]\n", "keys[0].models[0]", "empty model pattern"),
    ];
    for (extra, key, msg) in cases {
        let text = with(extra);
        let mut e = errs(&text);
        e.retain(|e| !e.message.contains("must be a finite") || e.key.ends_with("input_per_mtok"));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(e[0].key, *key, "{e:#?}");
        assert!(e[0].message.contains(msg), "{:?} lacks {msg:?}", e[0].message);
        assert!(e[0].line.is_some_and(|l| l > BASE.lines().count()), "{e:#?}");
    }
}

#[test]
fn a_spool_dir_must_be_a_directory() {
    let text =
        BASE.replace("allow_anonymous = true\n", "allow_anonymous = true\nspool_dir = \"/no/such/dir/for/sluice\"\n");
    let e = one(&text);
    check(&e, &text, "server.spool_dir", "spool_dir", &["is not a directory"]);
}
