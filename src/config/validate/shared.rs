//! `[shared]`: Redis, for state several replicas share.

use super::super::locate::join_key;
use super::super::raw::{RawShared, defaults};
use super::super::{Secret, SharedConfig};
use super::Checker;

/// A request waits at most this long for Redis; more is a typo (and would
/// make a slow Redis everyone's latency).
const MAX_TIMEOUT_MS: i64 = 5_000;
const MAX_PROBE_INTERVAL_MS: i64 = 60_000;

pub(super) fn settings(c: &mut Checker, raw: Option<RawShared>) -> Option<SharedConfig> {
    let raw = raw?;
    let key = |k: &str| join_key("shared", k);
    let url = match raw.redis_url {
        None => {
            c.err(
                "shared",
                "[shared] needs redis_url, e.g. redis_url = \"redis://redis:6379\" (or remove [shared] \
                 to keep every state in this process)",
            );
            String::new()
        }
        Some(t) => {
            // Only the redacted form may appear in a message: the URL may hold a password.
            let shown = if t.template.is_some() {
                t.shown()
            } else {
                format!("`{}`", sluice_actors::replicas::redact_url(&t.value))
            };
            if !t.unresolved
                && let Err(e) = sluice_actors::replicas::check_url(&t.value)
            {
                {
                    c.err(
                        key("redis_url"),
                        format!("{shown} is not a Redis URL ({e}); write e.g. \"redis://redis:6379/0\" or \"redis://:${{REDIS_PASSWORD}}@redis:6379\""),
                    );
                }
            }
            t.value
        }
    };
    let timeout_ms = c.int(
        &key("timeout_ms"),
        raw.timeout_ms,
        defaults::SHARED_TIMEOUT_MS,
        1,
        MAX_TIMEOUT_MS,
        "(how long a request waits for Redis before going on without it)",
    );
    let probe_interval_ms = c.int(
        &key("probe_interval_ms"),
        raw.probe_interval_ms,
        defaults::SHARED_PROBE_INTERVAL_MS,
        10,
        MAX_PROBE_INTERVAL_MS,
        "",
    );
    let prefix = raw.prefix.map_or_else(|| defaults::SHARED_PREFIX.to_string(), |t| t.value);
    if prefix.is_empty() || prefix.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        c.err(key("prefix"), "must be a non-empty word without spaces, e.g. \"sluice\" or \"sluice-prod\"");
    }
    Some(SharedConfig {
        redis_url: Secret::new(url),
        timeout_ms: u64::try_from(timeout_ms).unwrap_or(50),
        probe_interval_ms: u64::try_from(probe_interval_ms).unwrap_or(500),
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::interpolate::Env;

    struct OneEnv;
    impl Env for OneEnv {
        fn get(&self, name: &str) -> Option<String> {
            (name == "REDIS_URL").then(|| "redis://:s3cret-pw@redis:6379/1".to_string())
        }
    }

    const BASE: &str = r#"
[server]
allow_anonymous = true
[[providers]]
name = "mock"
kind = "mock"
[[models]]
name = "m"
deployments = [{ provider = "mock", model = "m" }]
"#;

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_str_with_env(&format!("{BASE}{extra}"), "t.toml", &OneEnv).map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_defaults_when_on() {
        assert!(load("").unwrap().shared.is_none());
        let c = load("[shared]\nredis_url = \"${REDIS_URL}\"").unwrap();
        let s = c.shared.unwrap();
        assert_eq!(s.redis_url.expose(), "redis://:s3cret-pw@redis:6379/1");
        assert_eq!((s.timeout_ms, s.probe_interval_ms, s.prefix.as_str()), (50, 500, "sluice"));
        assert!(!format!("{s:?}").contains("s3cret"), "Debug must not print the password");
    }

    #[test]
    fn budgets_are_fine_with_redis_instead_of_a_store() {
        let key = "[[keys]]\nname = \"a\"\nkey = \"sk-a\"\ndaily_budget_usd = 1.0\n";
        assert!(load(key).unwrap_err().contains("budgets need"));
        assert!(load(&format!("{key}[shared]\nredis_url = \"redis://127.0.0.1:6379\"")).is_ok());
    }

    #[test]
    fn errors_name_the_key_and_never_the_password() {
        let e = load("[shared]\ntimeout_ms = 10").unwrap_err();
        assert!(e.contains("[shared] needs redis_url"), "{e}");
        let e = load("[shared]\nredis_url = \"http://:hunter2@x:1\"\ntimeout_ms = 0\nprefix = \"a b\"").unwrap_err();
        assert!(e.contains("t.toml:11: shared.redis_url: `http://***@x:1` is not a Redis URL"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("shared.timeout_ms: must be at least 1"), "{e}");
        assert!(e.contains("shared.prefix: must be a non-empty word"), "{e}");
        let e = load("[shared]\nredis_url = \"redis://x\"\nurl = 1").unwrap_err();
        assert!(e.contains("unknown key `url`"), "{e}");
    }
}
