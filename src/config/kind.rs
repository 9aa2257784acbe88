//! `kind`: which protocol a provider speaks, parsed once at load.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Any OpenAI-compatible server: OpenAI, vLLM, Ollama, Groq, Together, ...
    OpenAi,
    /// Anthropic's Messages API (translated; passed through for `/v1/messages`).
    Anthropic,
    /// Google's Gemini API (`generateContent`, translated).
    Gemini,
    /// The built-in, in-process fake provider (no network).
    Mock,
    /// Azure OpenAI: OpenAI's protocol, Azure's URLs and credentials.
    Azure,
    /// AWS Bedrock: Converse for every model, InvokeModel for Claude's own body; SigV4.
    Bedrock,
    /// Google Vertex AI: Gemini and Claude models; Google OAuth tokens.
    Vertex,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Mock => "mock",
            ProviderKind::Azure => "azure",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Vertex => "vertex",
        }
    }

    /// The base URL used when the config leaves `base_url` out; `None` when
    /// it is required (`openai`) or meaningless (`mock`).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            ProviderKind::OpenAi
            | ProviderKind::Mock
            | ProviderKind::Azure
            | ProviderKind::Bedrock
            | ProviderKind::Vertex => None,
        }
    }

    /// The header that carries `api_key` upstream (lower case).
    pub fn auth_header(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "x-api-key",
            ProviderKind::Gemini => "x-goog-api-key",
            ProviderKind::Azure => "api-key",
            // Signed or bearer-token requests: `authorization` is Sluice's to set.
            ProviderKind::OpenAi | ProviderKind::Mock | ProviderKind::Bedrock | ProviderKind::Vertex => "authorization",
        }
    }
}
