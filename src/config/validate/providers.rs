//! `[[providers]]`: kind-specific settings, URLs, headers and limits.

use std::collections::HashSet;

use super::super::locate::{join_index, join_key};
use super::super::raw::{RawAnthropic, RawMock, RawProvider, Text, defaults};
use super::super::{AnthropicProviderConfig, MockProviderConfig, PromptCaching, ProviderConfig, ProviderKind, Secret};
use super::Checker;

/// Client headers that are never passed upstream: the first two carry the
/// client's Sluice key (the upstream gets the provider's `api_key`), the
/// others describe one hop and are set by Sluice itself.
const NEVER_FORWARD: [&str; 6] =
    ["authorization", "x-api-key", "host", "content-length", "connection", "transfer-encoding"];

/// Headers that frame the upstream request; a fixed value would corrupt it.
const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

pub(super) fn check(c: &mut Checker, raw: Vec<RawProvider>) -> Vec<ProviderConfig> {
    raw.into_iter().enumerate().map(|(i, p)| provider(c, &join_index("providers", i), p)).collect()
}

fn provider(c: &mut Checker, at: &str, p: RawProvider) -> ProviderConfig {
    let path = |k: &str| join_key(at, k);
    let kind = match p.kind.value.as_str() {
        "openai" => Some(ProviderKind::OpenAi),
        "anthropic" => Some(ProviderKind::Anthropic),
        "gemini" => Some(ProviderKind::Gemini),
        "mock" => Some(ProviderKind::Mock),
        "azure" => Some(ProviderKind::Azure),
        "vertex" => Some(ProviderKind::Vertex),
        "bedrock" => Some(ProviderKind::Bedrock),
        _ => {
            c.err(
                path("kind"),
                format!(
                    "unknown provider kind {}; expected one of: openai (any \
                     OpenAI-compatible server: OpenAI, vLLM, Ollama, ...), anthropic, gemini, \
                     azure (Azure OpenAI), bedrock (AWS Bedrock), vertex (Google Vertex AI), \
                     mock (built in, no network)",
                    p.kind.shown()
                ),
            );
            None
        }
    };
    let is_mock = kind == Some(ProviderKind::Mock);
    let cloud = super::clouds::settings(c, at, kind, &p);

    let base_url = match (kind, &p.base_url) {
        (Some(ProviderKind::OpenAi), None) => {
            c.err(
                path("base_url"),
                "a provider of kind \"openai\" needs `base_url`, e.g. \
                 base_url = \"https://api.openai.com/v1\" or \"http://localhost:8000/v1\"",
            );
            String::new()
        }
        (
            Some(
                ProviderKind::OpenAi
                | ProviderKind::Anthropic
                | ProviderKind::Gemini
                | ProviderKind::Azure
                | ProviderKind::Bedrock
                | ProviderKind::Vertex,
            ),
            Some(u),
        ) => base_url(c, &path("base_url"), u),
        (Some(ProviderKind::Azure), None) => super::clouds::azure_endpoint(c, at, &p),
        (Some(ProviderKind::Bedrock | ProviderKind::Vertex), None) => {
            crate::config::cloud::default_base_url(&cloud).unwrap_or_default()
        }
        (Some(k @ (ProviderKind::Anthropic | ProviderKind::Gemini)), None) => {
            k.default_base_url().unwrap_or_default().to_owned()
        }
        (Some(ProviderKind::Mock), Some(_)) => {
            c.err(
                path("base_url"),
                "a mock provider answers inside Sluice and makes no network call, so \
                 `base_url` has no meaning; remove it, or use kind = \"openai\" to call a server",
            );
            String::new()
        }
        _ => String::new(),
    };

    let api_key = match &p.api_key {
        Some(_) if is_mock => {
            c.err(
                path("api_key"),
                "a mock provider has no upstream to authenticate to, so `api_key` has no \
                 meaning; remove it",
            );
            None
        }
        Some(_) if matches!(kind, Some(ProviderKind::Bedrock | ProviderKind::Vertex)) => {
            c.err(path("api_key"), super::clouds::NO_API_KEY);
            None
        }
        Some(k) => {
            if k.value.is_empty() {
                c.err(
                    path("api_key"),
                    "api_key is empty; set it (e.g. \"${OPENAI_API_KEY}\"), or remove the \
                     line for a server that needs no key",
                );
            }
            c.secret_chars(&path("api_key"), k);
            Some(Secret::new(k.value.clone()))
        }
        None => None,
    };

    let headers = headers(c, &path("headers"), p.headers.unwrap_or_default());
    let auth = kind.unwrap_or(ProviderKind::OpenAi).auth_header();
    if api_key.is_some() && headers.iter().any(|(n, _)| n == auth) {
        c.err(
            join_key(&path("headers"), auth),
            format!(
                "both `api_key` and an `{auth}` header are set, and both would go in \
                 the {auth} header; keep one"
            ),
        );
    }
    let forward_headers = forward_headers(c, &path("forward_headers"), p.forward_headers);

    let first_byte_timeout_ms =
        c.u64(&path("first_byte_timeout_ms"), p.first_byte_timeout_ms, defaults::FIRST_BYTE_TIMEOUT_MS, 1, "");
    let total_timeout_ms = c.u64(&path("total_timeout_ms"), p.total_timeout_ms, defaults::TOTAL_TIMEOUT_MS, 1, "");
    if total_timeout_ms < first_byte_timeout_ms {
        c.err(
            path("total_timeout_ms"),
            format!(
                "total_timeout_ms ({total_timeout_ms}) is shorter than first_byte_timeout_ms \
                 ({first_byte_timeout_ms}): the whole request would time out before its first \
                 byte is due; raise total_timeout_ms or lower first_byte_timeout_ms"
            ),
        );
    }

    let mock = match (&p.mock, is_mock) {
        (Some(_), false) if kind.is_some() => {
            c.err(path("mock"), "mock settings apply only to kind = \"mock\"; remove this table");
            MockProviderConfig::default()
        }
        (m, true) => mock(c, &path("mock"), m.as_ref()),
        _ => MockProviderConfig::default(),
    };
    let is_anthropic = kind == Some(ProviderKind::Anthropic);
    let anthropic = match (&p.anthropic, is_anthropic) {
        (Some(_), false) if kind.is_some() => {
            c.err(path("anthropic"), "anthropic settings apply only to kind = \"anthropic\"; remove this table");
            AnthropicProviderConfig::default()
        }
        (a, true) => anthropic(c, &path("anthropic"), a.as_ref()),
        _ => AnthropicProviderConfig::default(),
    };

    let responses = match (p.responses, kind) {
        (Some(true), Some(k)) if k != ProviderKind::OpenAi => {
            c.err(
                path("responses"),
                format!(
                    "`responses = true` says an OpenAI-compatible server serves the Responses API \
                     itself; a provider of kind \"{}\" is translated instead, so remove it",
                    k.as_str()
                ),
            );
            false
        }
        (r, _) => r.unwrap_or(false),
    };
    let files = match (p.files, kind) {
        (Some(true), Some(k)) if k != ProviderKind::OpenAi => {
            c.err(
                path("files"),
                format!(
                    "`files = true` says an OpenAI-compatible server serves the Files and Batch APIs; \
                     a provider of kind \"{}\" does not (the mock always does), so remove it",
                    k.as_str()
                ),
            );
            false
        }
        (f, _) => f.unwrap_or(false),
    };
    super::clouds::cross_checks(c, at, kind, &cloud, api_key.is_some(), &headers, p.health_probe_interval_ms);

    ProviderConfig {
        name: p.name.value,
        kind: kind.unwrap_or(ProviderKind::Mock),
        base_url,
        api_key,
        headers,
        forward_headers,
        max_connections: c.usize(
            &path("max_connections"),
            p.max_connections,
            defaults::MAX_CONNECTIONS,
            1,
            "(it caps concurrent upstream requests)",
        ),
        connect_timeout_ms: c.u64(
            &path("connect_timeout_ms"),
            p.connect_timeout_ms,
            defaults::CONNECT_TIMEOUT_MS,
            1,
            "",
        ),
        first_byte_timeout_ms,
        idle_timeout_ms: c.u64(&path("idle_timeout_ms"), p.idle_timeout_ms, defaults::IDLE_TIMEOUT_MS, 1, ""),
        total_timeout_ms,
        warm_connections: c.usize(&path("warm_connections"), p.warm_connections, defaults::WARM_CONNECTIONS, 0, ""),
        health_probe_interval_ms: c.u64(
            &path("health_probe_interval_ms"),
            p.health_probe_interval_ms,
            defaults::HEALTH_PROBE_INTERVAL_MS,
            0,
            "(0 turns the probe off)",
        ),
        health_probe_timeout_ms: c.u64(
            &path("health_probe_timeout_ms"),
            p.health_probe_timeout_ms,
            defaults::HEALTH_PROBE_TIMEOUT_MS,
            1,
            "",
        ),
        max_response_bytes: bytes(c, &path("max_response_bytes"), p.max_response_bytes, defaults::MAX_RESPONSE_BYTES),
        max_event_bytes: bytes(c, &path("max_event_bytes"), p.max_event_bytes, defaults::MAX_EVENT_BYTES),
        mock,
        anthropic,
        responses,
        files,
        cloud,
        cloud_env: Default::default(),
    }
}

/// A size in bytes an upstream may fill: 1 KiB to 4 GiB.
fn bytes(c: &mut Checker, path: &str, v: Option<i64>, default: i64) -> usize {
    let n = c.int(path, v, default, 1024, 1 << 32, "(bytes)");
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Check a base URL and strip its trailing slashes (Sluice appends
/// `/chat/completions` and friends).
pub(super) fn base_url(c: &mut Checker, path: &str, u: &Text) -> String {
    let v = u.value.as_str();
    let Some(rest) = v.strip_prefix("https://").or_else(|| v.strip_prefix("http://")) else {
        c.err(path, format!("base_url must start with http:// or https://, found {}", u.shown()));
        return String::new();
    };
    if v.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        c.err(path, "base_url contains whitespace or a control character");
    } else if rest.is_empty() || rest.starts_with('/') {
        c.err(path, format!("base_url {} has no host", u.shown()));
    } else if v.contains(['?', '#']) {
        c.err(
            path,
            "base_url must not have a query (`?`) or fragment (`#`): Sluice appends paths \
             such as /chat/completions to it",
        );
    }
    v.trim_end_matches('/').to_owned()
}

/// `tchar` from RFC 9110: the characters of a header name.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) fn headers(
    c: &mut Checker,
    at: &str,
    raw: std::collections::BTreeMap<String, Text>,
) -> Vec<(String, Secret)> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let path = join_key(at, &name);
        // HTTP/2 sends header names in lower case; store them that way.
        let lower = name.to_ascii_lowercase();
        if !is_token(&lower) {
            c.err(&path, "not a valid HTTP header name: use letters, digits and !#$%&'*+-.^_`|~");
            continue;
        }
        if FRAMING.contains(&lower.as_str()) {
            c.err(&path, format!("`{lower}` is set by Sluice for each request; remove it"));
            continue;
        }
        if !seen.insert(lower.clone()) {
            c.err(&path, format!("header `{lower}` is set twice (header names ignore case); keep one"));
            continue;
        }
        c.secret_chars(&path, &value);
        out.push((lower, Secret::new(value.value)));
    }
    out
}

fn forward_headers(c: &mut Checker, at: &str, raw: Option<Vec<Text>>) -> Vec<String> {
    let mut out = Vec::new();
    for (j, t) in raw.into_iter().flatten().enumerate() {
        let path = join_index(at, j);
        let v = t.value.to_ascii_lowercase();
        let (base, prefix) = match v.strip_suffix('*') {
            Some(b) => (b, true),
            None => (v.as_str(), false),
        };
        if base.is_empty() {
            let m = if prefix {
                "a bare `*` would forward every client header, including the client's \
                 Sluice key; list header names, or a prefix such as \"x-mock-*\""
            } else {
                "empty header name; remove it"
            };
            c.err(path, m);
            continue;
        }
        if base.contains('*') || !is_token(base) {
            c.err(
                path,
                format!(
                    "{} is not a header name: use letters, digits and !#$%&'+-.^_`|~, \
                     with an optional trailing `*` for a prefix",
                    t.shown()
                ),
            );
            continue;
        }
        let blocked = NEVER_FORWARD.iter().find(|n| if prefix { n.starts_with(base) } else { **n == base });
        if let Some(n) = blocked {
            let why = if matches!(*n, "authorization" | "x-api-key") {
                "it carries the client's Sluice key (the upstream gets the provider's api_key)"
            } else {
                "it describes one connection and Sluice sets it"
            };
            let m = if prefix {
                format!("{} would forward `{n}`, which is never forwarded: {why}", t.shown())
            } else {
                format!("`{n}` is never forwarded: {why}; remove it")
            };
            c.err(path, m);
            continue;
        }
        out.push(v);
    }
    out
}

fn mock(c: &mut Checker, at: &str, m: Option<&RawMock>) -> MockProviderConfig {
    let d = RawMock::default();
    let m = m.unwrap_or(&d);
    MockProviderConfig {
        delay_ms: c.u64(&join_key(at, "delay_ms"), m.delay_ms, defaults::MOCK_DELAY_MS, 0, ""),
        chunk_delay_ms: c.u64(&join_key(at, "chunk_delay_ms"), m.chunk_delay_ms, defaults::MOCK_CHUNK_DELAY_MS, 0, ""),
        tokens: c.u32(&join_key(at, "tokens"), m.tokens, defaults::MOCK_TOKENS, 1, ""),
    }
}

fn anthropic(c: &mut Checker, at: &str, a: Option<&RawAnthropic>) -> AnthropicProviderConfig {
    let d = RawAnthropic::default();
    let a = a.unwrap_or(&d);
    let version = match &a.version {
        None => defaults::ANTHROPIC_VERSION.to_owned(),
        Some(v) => {
            if v.value.is_empty() || !v.value.bytes().all(|b| b.is_ascii_graphic()) {
                c.err(
                    join_key(at, "version"),
                    format!(
                        "{} is not an API version; write a date such as \"{}\"",
                        v.shown(),
                        defaults::ANTHROPIC_VERSION
                    ),
                );
            }
            v.value.clone()
        }
    };
    let prompt_caching = match a.prompt_caching.as_ref().map(|t| (t, t.value.as_str())) {
        None | Some((_, "client")) => PromptCaching::Client,
        Some((_, "auto")) => PromptCaching::Auto,
        Some((_, "off")) => PromptCaching::Off,
        Some((t, _)) => {
            c.err(
                join_key(at, "prompt_caching"),
                format!(
                    "unknown prompt_caching {}; expected one of: client (pass the client's \
                     cache_control hints), auto (also cache the system prompt and tools), off",
                    t.shown()
                ),
            );
            PromptCaching::Client
        }
    };
    AnthropicProviderConfig {
        version,
        default_max_tokens: c.u32(
            &join_key(at, "default_max_tokens"),
            a.default_max_tokens,
            defaults::ANTHROPIC_MAX_TOKENS,
            1,
            "",
        ),
        prompt_caching,
    }
}
