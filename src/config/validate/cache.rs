//! `[cache]` and each model's `cache` and `embeddings_batch`.

use super::super::locate::join_key;
use super::super::raw::{RawCache, RawEmbeddingsBatch, RawModelCache, RawResponses, defaults};
use super::super::{CacheSettings, EmbeddingsBatch, ModelCache, ResponsesSettings};
use super::Checker;

/// A cache bigger than this is a typo (64 GiB).
const MAX_CACHE_BYTES: i64 = 1 << 36;
/// A TTL longer than 30 days is a typo.
const MAX_TTL_MS: i64 = 30 * 86_400_000;
/// A batching window longer than a second would be latency, not batching.
const MAX_WINDOW_MS: i64 = 1_000;
/// OpenAI's limit of inputs per embeddings request.
const MAX_INPUTS: i64 = 2048;

pub(super) fn settings(c: &mut Checker, raw: Option<RawCache>) -> CacheSettings {
    let raw = raw.unwrap_or_default();
    let bytes = |c: &mut Checker, key: &str, v, d| {
        usize::try_from(c.int(&join_key("cache", key), v, d, 1, MAX_CACHE_BYTES, "(bytes)")).unwrap_or(0)
    };
    let max_bytes = bytes(c, "max_bytes", raw.max_bytes, defaults::CACHE_MAX_BYTES);
    let max_entry_bytes = bytes(c, "max_entry_bytes", raw.max_entry_bytes, defaults::CACHE_MAX_ENTRY_BYTES);
    if max_entry_bytes > max_bytes {
        c.err(
            "cache.max_entry_bytes",
            format!("must be at most cache.max_bytes ({max_bytes}): an entry that large could never be stored"),
        );
    }
    CacheSettings { max_bytes, max_entry_bytes }
}

/// `[responses]`: the Responses API's stored conversations.
pub(super) fn responses(c: &mut Checker, raw: Option<RawResponses>) -> ResponsesSettings {
    let raw = raw.unwrap_or_default();
    let key = |k: &str| join_key("responses", k);
    let ttl_ms = c.int(&key("ttl_ms"), raw.ttl_ms, defaults::RESPONSES_TTL_MS, 1_000, MAX_TTL_MS, "(30 days at most)");
    let bytes = |c: &mut Checker, k: &str, v, d| {
        usize::try_from(c.int(&key(k), v, d, 1024, MAX_CACHE_BYTES, "(bytes)")).unwrap_or(0)
    };
    let max_bytes = bytes(c, "max_bytes", raw.max_bytes, defaults::RESPONSES_MAX_BYTES);
    let max_entry_bytes = bytes(c, "max_entry_bytes", raw.max_entry_bytes, defaults::RESPONSES_MAX_ENTRY_BYTES);
    if max_entry_bytes > max_bytes {
        c.err(
            key("max_entry_bytes"),
            format!("must be at most responses.max_bytes ({max_bytes}): a conversation that large could never be kept"),
        );
    }
    let store = raw.store.map(|t| {
        if t.value.is_empty() {
            c.err(key("store"), "store is empty; write a file path, e.g. \"data/responses.redb\", or remove the line");
        }
        std::path::PathBuf::from(t.value)
    });
    ResponsesSettings { ttl_ms: u64::try_from(ttl_ms).unwrap_or(1_000), max_bytes, max_entry_bytes, store }
}

pub(super) fn model_cache(c: &mut Checker, at: &str, raw: Option<RawModelCache>) -> Option<ModelCache> {
    let raw = raw?;
    let at = join_key(at, "cache");
    let ttl_ms =
        c.int(&join_key(&at, "ttl_ms"), raw.ttl_ms, defaults::CACHE_TTL_MS, 1, MAX_TTL_MS, "(30 days at most)");
    Some(ModelCache {
        ttl_ms: u64::try_from(ttl_ms).unwrap_or(1),
        only_deterministic: raw.only_deterministic.unwrap_or(defaults::CACHE_ONLY_DETERMINISTIC),
    })
}

pub(super) fn embeddings_batch(c: &mut Checker, at: &str, raw: Option<RawEmbeddingsBatch>) -> Option<EmbeddingsBatch> {
    let raw = raw?;
    let at = join_key(at, "embeddings_batch");
    let window_ms = c.int(&join_key(&at, "window_ms"), raw.window_ms, defaults::BATCH_WINDOW_MS, 1, MAX_WINDOW_MS, "");
    let max_inputs = c.int(
        &join_key(&at, "max_inputs"),
        raw.max_inputs,
        defaults::BATCH_MAX_INPUTS,
        1,
        MAX_INPUTS,
        "(inputs per merged upstream request)",
    );
    Some(EmbeddingsBatch {
        window_ms: u64::try_from(window_ms).unwrap_or(1),
        max_inputs: usize::try_from(max_inputs).unwrap_or(1),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::interpolate::Env;

    struct NoEnv;
    impl Env for NoEnv {
        fn get(&self, _: &str) -> Option<String> {
            None
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

    fn load(extra_model: &str, extra: &str) -> Result<Config, String> {
        let text = format!("{BASE}{extra_model}\n{extra}");
        Config::from_str_with_env(&text, "t.toml", &NoEnv).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_values() {
        let c = load("cache = {}\nembeddings_batch = {}", "").unwrap();
        let m = &c.models[0];
        assert_eq!(m.cache.map(|c| (c.ttl_ms, c.only_deterministic)), Some((600_000, true)));
        assert_eq!(m.embeddings_batch.map(|b| (b.window_ms, b.max_inputs)), Some((5, 64)));
        assert_eq!((c.cache.max_bytes, c.cache.max_entry_bytes), (67_108_864, 1_048_576));
        let c = load(
            "cache = { ttl_ms = 1000, only_deterministic = false }",
            "[cache]\nmax_bytes = 4096\nmax_entry_bytes = 1024",
        )
        .unwrap();
        assert_eq!(c.models[0].cache.map(|c| (c.ttl_ms, c.only_deterministic)), Some((1000, false)));
        assert_eq!((c.cache.max_bytes, c.cache.max_entry_bytes), (4096, 1024));
        assert!(load("", "").unwrap().models[0].cache.is_none());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = load("cache = { ttl = 5 }", "").unwrap_err();
        assert!(e.contains("t.toml:10: models[0].cache.ttl: unknown key `ttl`"), "{e}");
        assert!(e.contains("expected one of: ttl_ms, only_deterministic"), "{e}");
        let e = load("embeddings_batch = { window_ms = 0, max_inputs = 5000 }", "").unwrap_err();
        assert!(e.contains("models[0].embeddings_batch.window_ms: must be at least 1"), "{e}");
        assert!(e.contains("models[0].embeddings_batch.max_inputs: must be at most 2048"), "{e}");
        let e = load("", "[cache]\nmax_bytes = 100\nmax_entry_bytes = 1000").unwrap_err();
        assert!(e.contains("t.toml:13: cache.max_entry_bytes: must be at most cache.max_bytes"), "{e}");
        let e = load("", "[cache]\nsize = 1").unwrap_err();
        assert!(e.contains("unknown key `size` in [cache]"), "{e}");
    }
}
