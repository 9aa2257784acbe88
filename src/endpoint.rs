//! `Endpoint`: which of the proxied operations a request is. Every layer
//! needs to know it (the body peek, the providers, the cache key, metrics),
//! so it sits at the bottom with no dependency of its own. So does the
//! request's `RequestId`, which the upstream call and the cache's shared
//! calls carry too (`request::ingress` makes them).

/// The operations Sluice proxies: OpenAI's chat, legacy completions,
/// embeddings and Responses API; Anthropic's Messages (the `/v1/messages`
/// ingress, whose requests and replies are Anthropic-shaped); and the two
/// token counters, Anthropic's `count_tokens` and OpenAI's
/// `responses/input_tokens`, answered by an upstream that has them or
/// estimated with the tokenizer. Besides, OpenAI's other JSON routes
/// (images, moderations, speech), served by `openai`-kind deployments only;
/// the audio uploads (transcriptions, translations: multipart bodies routed
/// by their `model` field); and the Files and Batch APIs, which name no
/// model and go to a provider instead (`x-sluice-provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/responses/input_tokens`.
    InputTokens,
    /// `POST /v1/images/generations`.
    Images,
    /// `POST /v1/moderations`.
    Moderations,
    /// `POST /v1/audio/speech`: the answer is audio, not JSON.
    Speech,
    /// `POST /v1/audio/transcriptions` (multipart).
    Transcriptions,
    /// `POST /v1/audio/translations` (multipart).
    Translations,
    /// `/v1/files…`: no model; routed to a provider.
    Files,
    /// `/v1/batches…`: no model; routed to a provider.
    Batches,
}

/// The wire protocol a client of an endpoint speaks: what its answers,
/// stream events and errors look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProtocol {
    /// OpenAI's chat (and legacy completions, embeddings) shapes.
    OpenAi,
    /// Anthropic's Messages shapes.
    Anthropic,
    /// OpenAI's Responses API: a Response object, typed stream events.
    Responses,
}

impl Endpoint {
    /// Every endpoint, in [`Endpoint::index`] order.
    pub const ALL: [Endpoint; 14] = [
        Endpoint::Chat,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Messages,
        Endpoint::CountTokens,
        Endpoint::Responses,
        Endpoint::InputTokens,
        Endpoint::Images,
        Endpoint::Moderations,
        Endpoint::Speech,
        Endpoint::Transcriptions,
        Endpoint::Translations,
        Endpoint::Files,
        Endpoint::Batches,
    ];

    /// Position in [`Endpoint::ALL`] (per-route metric slots).
    pub fn index(self) -> usize {
        match self {
            Endpoint::Chat => 0,
            Endpoint::Completions => 1,
            Endpoint::Embeddings => 2,
            Endpoint::Messages => 3,
            Endpoint::CountTokens => 4,
            Endpoint::Responses => 5,
            Endpoint::InputTokens => 6,
            Endpoint::Images => 7,
            Endpoint::Moderations => 8,
            Endpoint::Speech => 9,
            Endpoint::Transcriptions => 10,
            Endpoint::Translations => 11,
            Endpoint::Files => 12,
            Endpoint::Batches => 13,
        }
    }

    /// Path below the provider's base URL (and below `/v1` on ingress).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/messages",
            Endpoint::CountTokens => "/messages/count_tokens",
            Endpoint::Responses => "/responses",
            Endpoint::InputTokens => "/responses/input_tokens",
            Endpoint::Images => "/images/generations",
            Endpoint::Moderations => "/moderations",
            Endpoint::Speech => "/audio/speech",
            Endpoint::Transcriptions => "/audio/transcriptions",
            Endpoint::Translations => "/audio/translations",
            Endpoint::Files => "/files",
            Endpoint::Batches => "/batches",
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
            Endpoint::Responses => "responses",
            Endpoint::InputTokens => "input_tokens",
            Endpoint::Images => "images",
            Endpoint::Moderations => "moderations",
            Endpoint::Speech => "speech",
            Endpoint::Transcriptions => "transcriptions",
            Endpoint::Translations => "translations",
            Endpoint::Files => "files",
            Endpoint::Batches => "batches",
        }
    }

    pub fn protocol(self) -> ClientProtocol {
        match self {
            Endpoint::Chat
            | Endpoint::Completions
            | Endpoint::Embeddings
            | Endpoint::InputTokens
            | Endpoint::Images
            | Endpoint::Moderations
            | Endpoint::Speech
            | Endpoint::Transcriptions
            | Endpoint::Translations
            | Endpoint::Files
            | Endpoint::Batches => ClientProtocol::OpenAi,
            Endpoint::Messages | Endpoint::CountTokens => ClientProtocol::Anthropic,
            Endpoint::Responses => ClientProtocol::Responses,
        }
    }

    pub fn streams(self) -> bool {
        match self {
            Endpoint::Chat | Endpoint::Completions | Endpoint::Messages | Endpoint::Responses => true,
            Endpoint::Embeddings
            | Endpoint::CountTokens
            | Endpoint::InputTokens
            | Endpoint::Images
            | Endpoint::Moderations
            | Endpoint::Speech
            | Endpoint::Transcriptions
            | Endpoint::Translations
            | Endpoint::Files
            | Endpoint::Batches => false,
        }
    }

    /// Does a stream of this endpoint report usage only when asked
    /// (`stream_options.include_usage`, which Sluice then adds)? The
    /// Responses API and Anthropic always report it.
    pub fn asks_stream_usage(self) -> bool {
        match self {
            Endpoint::Chat | Endpoint::Completions => true,
            Endpoint::Embeddings
            | Endpoint::Messages
            | Endpoint::CountTokens
            | Endpoint::Responses
            | Endpoint::InputTokens
            | Endpoint::Images
            | Endpoint::Moderations
            | Endpoint::Speech
            | Endpoint::Transcriptions
            | Endpoint::Translations
            | Endpoint::Files
            | Endpoint::Batches => false,
        }
    }

    /// Does the answer hold generated text, which the tokenizer can count
    /// when the upstream reports no usage? (An embedding, image, verdict
    /// or sound does not: only the prompt is counted then.)
    pub fn answers_text(self) -> bool {
        !matches!(
            self,
            Endpoint::Embeddings
                | Endpoint::Images
                | Endpoint::Moderations
                | Endpoint::Speech
                | Endpoint::Transcriptions
                | Endpoint::Translations
                | Endpoint::Files
                | Endpoint::Batches
        )
    }

    /// OpenAI's routes that only `openai`-kind deployments (and the
    /// built-in mock) serve: there is nothing to translate them to.
    pub fn openai_only(self) -> bool {
        matches!(
            self,
            Endpoint::Images
                | Endpoint::Moderations
                | Endpoint::Speech
                | Endpoint::Transcriptions
                | Endpoint::Translations
                | Endpoint::Files
                | Endpoint::Batches
        )
    }

    /// A `multipart/form-data` upload routed by its `model` field
    /// (`crate::upload`), never read whole into memory.
    pub fn multipart(self) -> bool {
        matches!(self, Endpoint::Transcriptions | Endpoint::Translations)
    }

    /// A token counter: it spends no tokens, and is estimated where no
    /// deployment of the model serves it.
    pub fn counts_tokens(self) -> bool {
        matches!(self, Endpoint::CountTokens | Endpoint::InputTokens)
    }

    /// The fields each request must carry besides `model`, with their
    /// allowed JSON types. (`prompt` is optional in OpenAI's legacy
    /// completions; Anthropic requires `max_tokens` on Messages but not on
    /// `count_tokens`; a Responses request may continue a stored
    /// conversation instead of sending `input`.)
    pub fn required_fields(self) -> &'static [(&'static str, &'static [sonic_rs::JsonType])] {
        use sonic_rs::JsonType;
        match self {
            Endpoint::Chat => &[("messages", &[JsonType::Array])],
            Endpoint::Completions | Endpoint::Responses | Endpoint::InputTokens => &[],
            Endpoint::Embeddings => &[("input", &[JsonType::String, JsonType::Array])],
            Endpoint::Messages => &[("messages", &[JsonType::Array]), ("max_tokens", &[JsonType::Number])],
            Endpoint::CountTokens => &[("messages", &[JsonType::Array])],
            Endpoint::Images => &[("prompt", &[JsonType::String])],
            Endpoint::Moderations => &[("input", &[JsonType::String, JsonType::Array])],
            Endpoint::Speech => &[("input", &[JsonType::String]), ("voice", &[JsonType::String, JsonType::Object])],
            // Not JSON: read by `crate::multipart`, or not read at all.
            Endpoint::Transcriptions | Endpoint::Translations | Endpoint::Files | Endpoint::Batches => &[],
        }
    }

    /// Members whose size makes up the prompt estimate, besides the
    /// required ones (the Responses API's `input` and `instructions`).
    pub fn prompt_fields(self) -> &'static [&'static str] {
        match self {
            Endpoint::Completions => &["prompt"],
            Endpoint::Responses | Endpoint::InputTokens => &["input", "instructions"],
            Endpoint::Chat
            | Endpoint::Embeddings
            | Endpoint::Messages
            | Endpoint::CountTokens
            | Endpoint::Images
            | Endpoint::Moderations
            | Endpoint::Speech
            | Endpoint::Transcriptions
            | Endpoint::Translations
            | Endpoint::Files
            | Endpoint::Batches => &[],
        }
    }
}

/// What the pipeline reads of a request's head: from actix-web's
/// `HttpRequest`, or from the fast ingress's own parse (`server::fast`).
#[derive(Clone, Copy)]
pub struct Head<'a> {
    pub headers: &'a actix_web::http::header::HeaderMap,
    /// The query string, without its `?` (empty when there is none).
    pub query: &'a str,
}

impl<'a> Head<'a> {
    pub fn of(req: &'a actix_web::HttpRequest) -> Self {
        Head { headers: req.headers(), query: req.query_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_all() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
        }
    }
}

/// A request's id: visible ASCII, held once and shared. The record, the
/// answer's `x-request-id` and the upstream request's take it without a
/// copy (it was copied into a new allocation four times per request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(bytes::Bytes);

impl RequestId {
    /// The id in `id` (`request::ingress` makes them): visible ASCII is the
    /// caller's to give.
    pub fn from_bytes(id: bytes::Bytes) -> RequestId {
        debug_assert!(id.iter().all(u8::is_ascii_graphic), "a request id is visible ASCII");
        RequestId(id)
    }

    /// A fixed id (benches, tests): visible ASCII is the caller's to give.
    pub const fn from_static(id: &'static str) -> RequestId {
        RequestId(bytes::Bytes::from_static(id.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // Visible ASCII by construction.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id's bytes: visible ASCII, fit to write in a head as they are.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id's bytes, shared: for a header value of either `http` version.
    pub fn bytes(&self) -> bytes::Bytes {
        self.0.clone()
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
