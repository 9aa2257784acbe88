//! `Endpoint`: which of the proxied operations a request is. Every layer
//! needs to know it (the body peek, the providers, the cache key, metrics),
//! so it sits at the bottom with no dependency of its own.

/// The operations Sluice proxies: OpenAI's three, and Anthropic's Messages
/// (the `/v1/messages` ingress, whose requests and replies are Anthropic-shaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Messages,
}

impl Endpoint {
    /// Path below the provider's base URL (and below `/v1` on ingress).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/messages",
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
        }
    }

    pub fn streams(self) -> bool {
        match self {
            Endpoint::Chat | Endpoint::Completions | Endpoint::Messages => true,
            Endpoint::Embeddings => false,
        }
    }

    /// The fields each request must carry besides `model`, with their
    /// allowed JSON types. (`prompt` is optional in OpenAI's legacy
    /// completions; Anthropic requires `max_tokens`.)
    pub fn required_fields(self) -> &'static [(&'static str, &'static [sonic_rs::JsonType])] {
        use sonic_rs::JsonType;
        match self {
            Endpoint::Chat => &[("messages", &[JsonType::Array])],
            Endpoint::Completions => &[],
            Endpoint::Embeddings => &[("input", &[JsonType::String, JsonType::Array])],
            Endpoint::Messages => &[("messages", &[JsonType::Array]), ("max_tokens", &[JsonType::Number])],
        }
    }
}
