//! `kind = "anthropic"` and `kind = "gemini"`: defaults and their own rules.

use super::*;
use crate::config::PromptCaching;

#[test]
fn anthropic_and_gemini_defaults() {
    let c = load_ok(&with(
        "[[providers]]\nname = \"a\"\nkind = \"anthropic\"\napi_key = \"sk-ant-123456\"\n\
         [[providers]]\nname = \"g\"\nkind = \"gemini\"\napi_key = \"AIza123456\"\n",
    ));
    let a = &c.providers[1];
    assert_eq!(a.kind, ProviderKind::Anthropic);
    assert_eq!(a.base_url, "https://api.anthropic.com/v1");
    assert_eq!(a.anthropic.version, "2023-06-01");
    assert_eq!(a.anthropic.default_max_tokens, 4096);
    assert_eq!(a.anthropic.prompt_caching, PromptCaching::Client);
    let g = &c.providers[2];
    assert_eq!(g.kind, ProviderKind::Gemini);
    assert_eq!(g.base_url, "https://generativelanguage.googleapis.com/v1beta");
}

#[test]
fn anthropic_settings() {
    let c = load_ok(&with(
        "[[providers]]\nname = \"a\"\nkind = \"anthropic\"\nbase_url = \"http://localhost:9/v1/\"\n\
         anthropic = { version = \"2024-01-01\", default_max_tokens = 100, prompt_caching = \"auto\" }\n",
    ));
    let a = &c.providers[1];
    assert_eq!(a.base_url, "http://localhost:9/v1");
    assert_eq!(a.anthropic.version, "2024-01-01");
    assert_eq!(a.anthropic.default_max_tokens, 100);
    assert_eq!(a.anthropic.prompt_caching, PromptCaching::Auto);
}

#[test]
fn anthropic_rules() {
    let e =
        one(&with("[[providers]]\nname = \"a\"\nkind = \"anthropic\"\nanthropic = { prompt_caching = \"always\" }\n"));
    assert_eq!(e.key, "providers[1].anthropic.prompt_caching");
    assert!(e.message.contains("client") && e.message.contains("auto") && e.message.contains("off"), "{e}");
    let e = one(&with("[[providers]]\nname = \"a\"\nkind = \"anthropic\"\nanthropic = { default_max_tokens = 0 }\n"));
    assert_eq!(e.key, "providers[1].anthropic.default_max_tokens");
    let e = one(&with("[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nanthropic = {}\n"));
    assert_eq!(e.key, "providers[1].anthropic");
    // The key goes in x-api-key: a fixed x-api-key header would clash with it.
    let e = one(&with(
        "[[providers]]\nname = \"a\"\nkind = \"anthropic\"\napi_key = \"sk-ant-123456\"\nheaders = { \"X-Api-Key\" = \"other\" }\n",
    ));
    assert_eq!(e.key, "providers[1].headers.x-api-key");
    assert!(!e.message.contains("sk-ant-123456"));
    let e = one(&with(
        "[[providers]]\nname = \"g\"\nkind = \"gemini\"\napi_key = \"AIza123456\"\nheaders = { \"x-goog-api-key\" = \"other\" }\n",
    ));
    assert_eq!(e.key, "providers[1].headers.x-goog-api-key");
}
