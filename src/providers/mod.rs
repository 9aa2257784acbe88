//! Upstream providers behind one abstraction.
//!
//! A [`Provider`] turns one attempt ([`Call`]) into a [`Reply`] in the OpenAI
//! shape: a whole body, or a stream of whole SSE events. The closed
//! [`ProviderKind`] enum is parsed once at config load; each protocol is a
//! module and an arm in [`Protocol`] (`openai`, `anthropic`, `gemini`, `mock`),
//! and the handlers and the request pipeline never learn which protocol an
//! upstream speaks.
//!
//! The one exception to "OpenAI shape" is the Anthropic-shaped ingress,
//! [`Endpoint::Messages`]: its replies are Anthropic's, passed through from
//! an `anthropic` provider or translated back ([`messages`]) from any other.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod credentials;
pub mod errors;
pub mod events;
pub mod gemini;
pub mod messages;
pub mod mock;
pub mod openai;
pub mod resources;
pub mod responses;
pub mod rewrite;
pub mod transport;
pub mod upload;
pub mod vertex;

use std::time::Duration;

use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use futures_util::stream::LocalBoxStream;
use sluice_upstream::{SessionSpec, UpstreamClient};

use crate::config::{ProviderConfig, ProviderKind};
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::peek::Peek;
use crate::usage::Usage;

/// Per-provider waits (overridden per model).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
}

impl Default for Timeouts {
    /// The config defaults (docs/configuration.md).
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// Which client request headers a provider receives (`forward_headers`):
/// exact lower-case names, or prefixes written with a trailing `*`.
#[derive(Debug, Clone, Default)]
pub struct HeaderForward {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl HeaderForward {
    pub fn new(names: &[String]) -> HeaderForward {
        let mut f = HeaderForward::default();
        for n in names {
            match n.strip_suffix('*') {
                Some(p) => f.prefixes.push(p.to_ascii_lowercase()),
                None => f.exact.push(n.to_ascii_lowercase()),
            }
        }
        f
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// `name` must be lower case (as actix and http store header names).
    pub fn allows(&self, name: &str) -> bool {
        self.exact.iter().any(|e| e == name) || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// One attempt at one deployment.
pub struct Call<'a> {
    pub endpoint: Endpoint,
    /// The client's body, untouched.
    pub body: &'a Bytes,
    pub peek: &'a Peek,
    /// The model name the deployment's upstream knows.
    pub upstream_model: &'a str,
    pub client_headers: &'a HeaderMap,
    /// The client's query string (`beta=true`), passed on where the
    /// deployment speaks the client's protocol.
    pub client_query: &'a str,
    pub request_id: &'a crate::endpoint::RequestId,
    /// This attempt's waits: the provider's, overridden per model.
    pub timeouts: Timeouts,
    /// The deployment's model takes reasoning settings (`reasoning = true`
    /// on the deployment): translations may send `reasoning_effort`.
    pub reasoning: bool,
    /// A Responses API request's turn (its id, the conversation it
    /// continues); `None` on every other route.
    pub turn: Option<&'a responses::Turn>,
    /// A multipart upload's body (`Endpoint::multipart`); `body` is empty then.
    pub upload: Option<&'a crate::upload::Upload>,
    /// The request's telemetry (`[telemetry]` on): the attempt loop notes
    /// each attempt in it.
    pub obs: Option<&'a crate::observe::RequestObs>,
    /// This attempt's `traceparent`/`tracestate`, sent upstream.
    pub trace_headers: Option<&'a crate::observe::trace::Outgoing>,
}

/// A successful (2xx) upstream answer, in OpenAI's shape.
pub enum Reply {
    Complete { body: Bytes, usage: Option<Usage> },
    Stream(EventStream),
}

/// Runs of whole SSE events (`data: ...\n\n`), each forwarded as soon as it
/// arrives. An `Err` item ends the stream (the relay turns it into an error
/// event); the stream ends on its own after `[DONE]`.
pub struct EventStream {
    inner: LocalBoxStream<'static, Result<Bytes, GatewayError>>,
    /// The upstream connection's, when it can be half-closed.
    stopper: Option<sluice_upstream::Stopper>,
}

impl EventStream {
    pub fn new(inner: LocalBoxStream<'static, Result<Bytes, GatewayError>>) -> EventStream {
        EventStream { inner, stopper: None }
    }

    pub fn empty() -> EventStream {
        EventStream::new(futures_util::StreamExt::boxed_local(futures_util::stream::empty()))
    }

    pub fn with_stopper(mut self, stopper: Option<sluice_upstream::Stopper>) -> EventStream {
        self.stopper = stopper;
        self
    }

    pub fn stopper(&self) -> Option<sluice_upstream::Stopper> {
        self.stopper.clone()
    }

    /// Tell the upstream to stop sending, while what it already sent can
    /// still be read from this stream (its connection is half-closed at the
    /// next read). False when the upstream cannot be told so: then the only
    /// way to stop it is to drop the stream.
    pub fn stop_sending(&self) -> bool {
        self.stopper.as_ref().inspect(|s| s.stop()).is_some()
    }
}

impl futures_util::Stream for EventStream {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

enum Protocol {
    OpenAi(Box<openai::OpenAi>),
    Azure(Box<azure::Azure>),
    Anthropic(Box<anthropic::Anthropic>),
    Gemini(Box<gemini::Gemini>),
    Vertex(Box<vertex::Vertex>),
    Bedrock(Box<bedrock::Bedrock>),
    Mock(mock::MockProvider),
}

pub struct Provider {
    pub idx: usize,
    pub name: String,
    pub kind: ProviderKind,
    pub timeouts: Timeouts,
    /// Has this provider reported usage on streams: 0 not yet known, 1 yes,
    /// 2 no. While not known to, the relay keeps the answer's text to count
    /// its tokens when no usage comes.
    pub stream_usage: std::sync::Arc<std::sync::atomic::AtomicU8>,
    /// The largest whole (non-stream) answer read (`max_response_bytes`).
    pub max_response_bytes: usize,
    /// The largest stream event (`max_event_bytes`).
    pub max_event_bytes: usize,
    protocol: Protocol,
}

impl Provider {
    pub fn from_config(idx: usize, cfg: &ProviderConfig) -> Result<Provider, String> {
        let timeouts = Timeouts {
            connect: Duration::from_millis(cfg.connect_timeout_ms),
            first_byte: Duration::from_millis(cfg.first_byte_timeout_ms),
            idle: Duration::from_millis(cfg.idle_timeout_ms),
            total: Duration::from_millis(cfg.total_timeout_ms),
        };
        let protocol = match cfg.kind {
            ProviderKind::OpenAi => Protocol::OpenAi(Box::new(openai::OpenAi::new(cfg)?)),
            ProviderKind::Azure => Protocol::Azure(Box::new(azure::Azure::new(cfg)?)),
            ProviderKind::Vertex => Protocol::Vertex(Box::new(vertex::Vertex::new(cfg)?)),
            ProviderKind::Bedrock => Protocol::Bedrock(Box::new(bedrock::Bedrock::new(cfg)?)),
            ProviderKind::Anthropic => Protocol::Anthropic(Box::new(anthropic::Anthropic::new(cfg)?)),
            ProviderKind::Gemini => Protocol::Gemini(Box::new(gemini::Gemini::new(cfg)?)),
            ProviderKind::Mock => {
                Protocol::Mock(mock::MockProvider::new(cfg.mock.clone(), HeaderForward::new(&cfg.forward_headers)))
            }
        };
        Ok(Provider {
            idx,
            name: cfg.name.clone(),
            kind: cfg.kind,
            timeouts,
            stream_usage: Default::default(),
            max_response_bytes: cfg.max_response_bytes,
            max_event_bytes: cfg.max_event_bytes,
            protocol,
        })
    }

    /// How `UpstreamSessions` should pool this provider's connections;
    /// `None` for providers that need no network.
    pub fn session_spec(&self, cfg: &ProviderConfig) -> Option<SessionSpec> {
        match &self.protocol {
            Protocol::OpenAi(p) => Some(p.session_spec(cfg)),
            Protocol::Azure(p) => Some(p.session_spec(cfg)),
            Protocol::Anthropic(p) => Some(p.session_spec(cfg)),
            Protocol::Gemini(p) => Some(p.session_spec(cfg)),
            Protocol::Vertex(p) => Some(p.session_spec(cfg)),
            Protocol::Bedrock(p) => Some(p.session_spec(cfg)),
            Protocol::Mock(_) => None,
        }
    }

    /// Can this provider serve `endpoint`? Anthropic and Gemini have no
    /// legacy completions or embeddings here, Vertex and Bedrock no legacy
    /// completions; their deployments are skipped for those routes (see
    /// `upstream::capability`). OpenAI's images, moderations and speech are
    /// served by `openai` deployments (and the mock) only. The token
    /// counters are served only where the upstream has them (Anthropic's
    /// `count_tokens`, a Responses server's `input_tokens`); elsewhere the
    /// gateway estimates instead of calling anyone.
    pub fn serves(&self, endpoint: Endpoint) -> bool {
        if matches!(endpoint, Endpoint::Files | Endpoint::Batches) {
            return self.serves_files();
        }
        if endpoint.openai_only() {
            return matches!(self.protocol, Protocol::OpenAi(_) | Protocol::Mock(_));
        }
        match (&self.protocol, endpoint) {
            (
                Protocol::Anthropic(_) | Protocol::Gemini(_) | Protocol::Vertex(_) | Protocol::Bedrock(_),
                Endpoint::Completions,
            )
            | (Protocol::Anthropic(_) | Protocol::Gemini(_), Endpoint::Embeddings) => false,
            (Protocol::Anthropic(_), Endpoint::CountTokens) => true,
            (Protocol::OpenAi(p), Endpoint::InputTokens) => p.serves_responses(),
            (_, Endpoint::CountTokens | Endpoint::InputTokens) => false,
            // Not routed by model: see `Provider::serves_files`.
            (_, Endpoint::Files | Endpoint::Batches) => false,
            (
                Protocol::OpenAi(_)
                | Protocol::Azure(_)
                | Protocol::Anthropic(_)
                | Protocol::Gemini(_)
                | Protocol::Vertex(_)
                | Protocol::Bedrock(_)
                | Protocol::Mock(_),
                Endpoint::Chat
                | Endpoint::Completions
                | Endpoint::Embeddings
                | Endpoint::Messages
                | Endpoint::Responses
                | Endpoint::Images
                | Endpoint::Moderations
                | Endpoint::Speech
                | Endpoint::Transcriptions
                | Endpoint::Translations,
            ) => true,
        }
    }

    /// Make one attempt. `client` is this worker's pool for the provider
    /// (`None` for in-process providers). Waits at most the first-byte
    /// timeout for the upstream's response head.
    ///
    /// Replies are in the client's protocol: OpenAI-shaped, except on the
    /// Anthropic routes ([`Endpoint::Messages`], `CountTokens`), where they
    /// are Anthropic-shaped, and on [`Endpoint::Responses`], where they are
    /// Responses. A provider that speaks the client's protocol gets the
    /// client's bytes (only `model` renamed) and returns its own untouched;
    /// any other is translated through chat.
    #[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
    pub fn send(
        &self,
        call: &Call<'_>,
        client: Option<&UpstreamClient>,
    ) -> impl Future<Output = Result<Reply, GatewayError>> {
        async move {
            // Every branch but OpenAI's own is boxed: an `async fn`'s future is
            // as large as its largest branch, and it sits inside every proxied
            // request's future for the request's whole life. Inline, the
            // translated and cloud branches made that future 8.2 KB (mimalloc's
            // 10 KiB class) for requests that never take them; boxed, each of
            // their requests pays one allocation instead (docs/performance.md,
            // "A smaller request future").
            match (&self.protocol, call.endpoint) {
                (Protocol::Anthropic(p), Endpoint::Messages | Endpoint::CountTokens) => {
                    Box::pin(p.send_native(self, call, self.client(client)?)).await
                }
                (Protocol::Vertex(p), Endpoint::Messages) if p.native_messages(call.upstream_model) => {
                    Box::pin(p.send_native(self, call, self.client(client)?)).await
                }
                (Protocol::Bedrock(p), Endpoint::Messages) if p.native_messages(call.upstream_model) => {
                    Box::pin(p.send_native(self, call, self.client(client)?)).await
                }
                (Protocol::OpenAi(p), Endpoint::Responses | Endpoint::InputTokens) if p.serves_responses() => {
                    let client = self.client(client)?;
                    p.send(self, call, client).await
                }
                (_, Endpoint::Messages) => Box::pin(messages::send(self, call, client)).await,
                (_, Endpoint::Responses) => Box::pin(responses::send(self, call, client)).await,
                (_, Endpoint::CountTokens | Endpoint::InputTokens | Endpoint::Files | Endpoint::Batches) => {
                    Err(unsupported(self, call))
                }
                (
                    _,
                    Endpoint::Chat
                    | Endpoint::Completions
                    | Endpoint::Embeddings
                    | Endpoint::Images
                    | Endpoint::Moderations
                    | Endpoint::Speech
                    | Endpoint::Transcriptions
                    | Endpoint::Translations,
                ) => self.send_openai(call, client).await,
            }
        }
    }

    /// An OpenAI-shaped request (`call.endpoint` is not `Messages`). The
    /// providers that translate, sign or fetch tokens are boxed, as in
    /// [`Provider::send`].
    #[allow(clippy::manual_async_fn, reason = "an async block stores its arguments once, an async fn twice")]
    pub(crate) fn send_openai(
        &self,
        call: &Call<'_>,
        client: Option<&UpstreamClient>,
    ) -> impl Future<Output = Result<Reply, GatewayError>> {
        async move {
            match &self.protocol {
                // The client looked up in a statement of its own: a `?` inside
                // the awaited call keeps its 80-byte result alive in the future
                // for the whole wait.
                Protocol::OpenAi(p) => {
                    let client = self.client(client)?;
                    p.send(self, call, client).await
                }
                Protocol::Azure(p) => Box::pin(p.send(self, call, self.client(client)?)).await,
                Protocol::Anthropic(p) => Box::pin(p.send(self, call, self.client(client)?)).await,
                Protocol::Gemini(p) => Box::pin(p.send(self, call, self.client(client)?)).await,
                Protocol::Vertex(p) => Box::pin(p.send(self, call, self.client(client)?)).await,
                Protocol::Bedrock(p) => Box::pin(p.send(self, call, self.client(client)?)).await,
                Protocol::Mock(p) => Box::pin(p.send(self, call)).await,
            }
        }
    }

    /// Strings of this provider's configuration that must never reach a client.
    pub fn secrets(&self) -> &[String] {
        match &self.protocol {
            Protocol::OpenAi(p) => p.secrets(),
            Protocol::Azure(p) => p.secrets(),
            Protocol::Anthropic(p) => p.secrets(),
            Protocol::Gemini(p) => p.secrets(),
            Protocol::Vertex(p) => p.secrets(),
            Protocol::Bedrock(p) => p.secrets(),
            Protocol::Mock(_) => &[],
        }
    }

    /// Where this provider's cloud credentials come from and how their
    /// refreshes went (`/status`); `None` for providers with a fixed key.
    pub fn credentials(&self) -> Option<credentials::CredentialStatus> {
        match &self.protocol {
            Protocol::Azure(p) => p.credentials(),
            Protocol::Vertex(p) => Some(p.credentials()),
            Protocol::Bedrock(p) => Some(p.credentials()),
            Protocol::OpenAi(_) | Protocol::Anthropic(_) | Protocol::Gemini(_) | Protocol::Mock(_) => None,
        }
    }

    /// Why this provider's credentials fail right now (`/health`), if they do.
    pub fn credential_problem(&self) -> Option<String> {
        match &self.protocol {
            Protocol::Azure(p) => p.credential_problem(),
            Protocol::Vertex(p) => p.credential_problem(),
            Protocol::Bedrock(p) => p.credential_problem(),
            Protocol::OpenAi(_) | Protocol::Anthropic(_) | Protocol::Gemini(_) | Protocol::Mock(_) => None,
        }
    }

    fn client<'c>(&self, client: Option<&'c UpstreamClient>) -> Result<&'c UpstreamClient, GatewayError> {
        client.ok_or_else(|| GatewayError::Internal { detail: format!("no HTTP session for provider `{}`", self.name) })
    }
}

/// The error for a request a provider cannot serve (normally filtered out
/// before any attempt, see [`Provider::serves`]).
pub(crate) fn unsupported(p: &Provider, call: &Call<'_>) -> GatewayError {
    GatewayError::invalid(
        format!(
            "The {} deployment `{}` of provider `{}` does not support /v1{}.",
            p.kind.as_str(),
            call.upstream_model,
            p.name,
            call.endpoint.path()
        ),
        Some("model"),
    )
}

/// [`unsupported`], where only the route is known.
pub(crate) fn unsupported_endpoint(p: &Provider, e: Endpoint) -> GatewayError {
    GatewayError::invalid(
        format!("The {} provider `{}` does not support /v1{}.", p.kind.as_str(), p.name, e.path()),
        Some("model"),
    )
}
