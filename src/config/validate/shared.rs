//! `[shared]`: Redis, for state several replicas share.

use super::super::locate::{join_index, join_key};
use super::super::raw::{RawShared, Text, defaults};
use super::super::{Secret, SharedConfig};
use super::Checker;

/// A request waits at most this long for Redis; more is a typo (and would
/// make a slow Redis everyone's latency).
const MAX_TIMEOUT_MS: i64 = 5_000;
const MAX_PROBE_INTERVAL_MS: i64 = 60_000;

pub(super) fn settings(c: &mut Checker, raw: Option<RawShared>) -> Option<SharedConfig> {
    let raw = raw?;
    let key = |k: &str| join_key("shared", k);
    let sentinels = sentinels(c, raw.sentinels.unwrap_or_default());
    let master_name = raw.master_name.map(|t| t.value);
    match (sentinels.is_empty(), &master_name) {
        (false, None) => c.err(
            "shared.sentinels",
            "sentinels need master_name, the name they monitor the master under (e.g. master_name = \"mymaster\")",
        ),
        (true, Some(_)) => c.err(
            "shared.master_name",
            "has no effect without sentinels; list them (sentinels = [\"redis://sentinel-1:26379\"]) or remove it",
        ),
        (false, Some(m)) if m.is_empty() || m.chars().any(char::is_whitespace) => {
            c.err("shared.master_name", "must be a non-empty name without spaces, e.g. \"mymaster\"")
        }
        _ => {}
    }
    let url = match (raw.redis_url, &master_name) {
        (None, None) => {
            c.err(
                "shared",
                "[shared] needs redis_url, e.g. redis_url = \"redis://redis:6379\" (or sentinels and \
                 master_name to find the master through Redis Sentinel; or remove [shared] to keep every \
                 state in this process)",
            );
            String::new()
        }
        // Sentinel without credentials: plain connections, database 0.
        (None, Some(m)) => format!("redis://{m}"),
        (Some(t), _) => {
            // Only the redacted form may appear in a message: the URL may hold a password.
            let shown = if t.template.is_some() {
                t.shown()
            } else {
                format!("`{}`", sluice_actors::replicas::redact_url(&t.value))
            };
            if !t.unresolved {
                if let Err(e) = sluice_actors::replicas::check_url(&t.value) {
                    c.err(
                        key("redis_url"),
                        format!("{shown} is not a Redis URL ({e}); write e.g. \"redis://redis:6379/0\", \"rediss://redis:6380\" (TLS) or \"redis://:${{REDIS_PASSWORD}}@redis:6379\""),
                    );
                } else if let Some(m) = &master_name
                    && sluice_actors::replicas::url_host(&t.value).as_deref() != Some(m.as_str())
                {
                    c.err(
                        key("redis_url"),
                        format!("with sentinels, redis_url gives the master's scheme, credentials and database, and its host is the master's name: write e.g. \"redis://:${{REDIS_PASSWORD}}@{m}/0\" (found {shown})"),
                    );
                }
            }
            t.value
        }
    };
    let ca_file = raw.ca_file.map(|t| {
        let path = std::path::PathBuf::from(&t.value);
        let tls = url.starts_with("rediss://") || sentinels.iter().any(|s| s.expose().starts_with("rediss://"));
        if !tls {
            c.err(key("ca_file"), "has no effect without TLS: use a rediss:// URL, or remove it");
        } else if !t.unresolved {
            match std::fs::read_to_string(&path) {
                Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => c.err(
                    key("ca_file"),
                    format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", t.shown()),
                ),
                Err(e) => c.err(key("ca_file"), format!("cannot read {}: {e}", t.shown())),
            }
        }
        path
    });
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
        ca_file,
        sentinels,
        master_name,
    })
}

/// Each sentinel's URL (`redis://host:26379`, `rediss://` for TLS), checked;
/// the same scheme and credentials for all (redis-rs asks them alike).
fn sentinels(c: &mut Checker, raw: Vec<Text>) -> Vec<Secret> {
    let mut out = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let path = join_index("shared.sentinels", i);
        let shown = if t.template.is_some() {
            t.shown()
        } else {
            format!("`{}`", sluice_actors::replicas::redact_url(&t.value))
        };
        if !t.unresolved && sluice_actors::replicas::check_url(&t.value).is_err() {
            c.err(path, format!("{shown} is not a sentinel URL; write e.g. \"redis://sentinel-1:26379\""));
        } else if let Some(first) = out.first().map(Secret::expose)
            && scheme_and_auth(first) != scheme_and_auth(&t.value)
        {
            c.err(path, "every sentinel must use the same scheme (redis:// or rediss://) and credentials");
        }
        out.push(Secret::new(t.value));
    }
    out
}

/// A URL's scheme and user information, for comparison only.
fn scheme_and_auth(url: &str) -> (&str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    (scheme, authority.rsplit_once('@').map_or("", |(a, _)| a))
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

    #[test]
    fn tls_and_sentinel_settings() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        let c =
            load(&format!("[shared]\nredis_url = \"rediss://redis:6380\"\nca_file = \"{}\"", ca.display())).unwrap();
        assert_eq!(c.shared.unwrap().ca_file.as_deref(), Some(ca.as_path()));
        let e =
            load(&format!("[shared]\nredis_url = \"redis://redis:6379\"\nca_file = \"{}\"", ca.display())).unwrap_err();
        assert!(e.contains("shared.ca_file: has no effect without TLS"), "{e}");
        let e = load("[shared]\nredis_url = \"rediss://redis\"\nca_file = \"/nonexistent/ca.pem\"").unwrap_err();
        assert!(e.contains("shared.ca_file: cannot read"), "{e}");

        let s = load("[shared]\nsentinels = [\"redis://s1:26379\", \"redis://s2:26379\"]\nmaster_name = \"mymaster\"")
            .unwrap()
            .shared
            .unwrap();
        assert_eq!((s.sentinels.len(), s.master_name.as_deref()), (2, Some("mymaster")));
        assert_eq!(s.redis_url.expose(), "redis://mymaster", "no redis_url: plain, no credentials");
        let ok = "[shared]\nsentinels = [\"rediss://:pw@s1:26379\"]\nmaster_name = \"mymaster\"\nredis_url = \"rediss://:pw@mymaster/2\"";
        assert!(load(ok).is_ok(), "{:?}", load(ok).err());
        let e = load("[shared]\nsentinels = [\"redis://s1:26379\"]").unwrap_err();
        assert!(e.contains("sentinels need master_name"), "{e}");
        let e = load("[shared]\nredis_url = \"redis://r\"\nmaster_name = \"m\"").unwrap_err();
        assert!(e.contains("shared.master_name: has no effect without sentinels"), "{e}");
        let e = load("[shared]\nsentinels = [\"redis://s1:26379\"]\nmaster_name = \"m\"\nredis_url = \"redis://:hunter2@other:6379\"").unwrap_err();
        assert!(e.contains("its host is the master's name") && !e.contains("hunter2"), "{e}");
        let e = load("[shared]\nsentinels = [\"redis://:a@s1:26379\", \"rediss://:b@s2:26379\", \"http://x\"]\nmaster_name = \"m\"").unwrap_err();
        assert!(e.contains("shared.sentinels[1]: every sentinel must use the same scheme"), "{e}");
        assert!(e.contains("shared.sentinels[2]: `http://x` is not a sentinel URL"), "{e}");
    }
}
