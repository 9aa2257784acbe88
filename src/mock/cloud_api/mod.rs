//! The mock speaking the three clouds: Azure OpenAI, AWS Bedrock and
//! Google Vertex AI, with their identity endpoints (Entra ID, STS,
//! Google's OAuth token endpoint). Every call is authenticated as the cloud
//! does it, with the checks of `mock::clouds` (SigV4 recomputed from the
//! request as received; JWT assertions' signature and times; opaque bearer
//! tokens with an expiry; the `api-key` compared in constant time), before
//! any fault or answer.
//!
//! Routes (identities in [`MockCloudOptions`], defaults below):
//! - Azure: `POST /openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=…`,
//!   `POST /openai/v1/{chat/completions|completions|embeddings}`, `GET /openai/models`,
//!   `GET /openai/v1/models`; `api-key` or an Entra bearer token from
//!   `POST /{tenant}/oauth2/v2.0/token`.
//! - Bedrock: `POST /model/{id}/{converse|converse-stream|invoke|invoke-with-response-stream}`
//!   (streams in `application/vnd.amazon.eventstream` framing; `invoke`
//!   also for Titan and Cohere embedding models), SigV4
//!   (service `bedrock`); STS `AssumeRoleWithWebIdentity` at `POST /`.
//! - Vertex: `POST /v1/projects/{p}/locations/{l}/publishers/{google|anthropic}/models/{m}:{method}`,
//!   bearer tokens from `POST /token` (JWT-bearer assertions).
//!
//! Controls besides the common ones: `x-mock-content-filter: prompt|completion`
//! and `x-mock-hostile` (Azure and Bedrock; answered as for any OpenAI
//! route, before credentials are checked: for Bedrock only the whole-JSON
//! modes make sense), `x-mock-aws-error: <Exception>`, `x-mock-stream-exception:
//! <exceptionType>` and `x-mock-bad-frame: crc|huge|cut` (Bedrock). Faults
//! `429` and `500` answer in each cloud's own error shape.

mod azure;
mod bedrock;
mod bedrock_embed;
mod vertex;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Response, StatusCode, Uri};

use super::body::MockBody;
use super::clouds::Rejection;
use super::clouds::azure::EntraIssuer;
use super::clouds::google::GoogleTokenIssuer;
use super::clouds::sigv4::MockAwsKey;
use super::faults::{Controls, Fault};
use super::server::{Reset, ServerState, json};
use super::stats::bump;

/// The service account the mock's token endpoint trusts: the repository's
/// test-only key pair (the file says so in its first lines; it signs
/// nothing real). Tests write it into a key file for the gateway.
pub const MOCK_SERVICE_ACCOUNT_PEM: &str = include_str!("../../cloud/testdata/TEST-ONLY-rsa-2048.pem");
pub const MOCK_SERVICE_ACCOUNT_EMAIL: &str = "sluice-mock@mock-project.iam.gserviceaccount.com";
pub const MOCK_AZURE_API_KEY: &str = "mock-azure-api-key";
pub const MOCK_ENTRA_TENANT: &str = "00000000-0000-0000-0000-00000000mock";
pub const MOCK_ENTRA_CLIENT_ID: &str = "mock-client-id";
pub const MOCK_ENTRA_CLIENT_SECRET: &str = "mock-client-secret";
pub const MOCK_AWS_ACCESS_KEY_ID: &str = "AKIDMOCKSLUICE";
pub const MOCK_AWS_SECRET_ACCESS_KEY: &str = "mock/aws/secret/access/key";

/// Who the cloud routes let in.
#[derive(Clone, Debug, PartialEq)]
pub struct MockCloudOptions {
    pub azure_api_key: String,
    pub entra_tenant: String,
    pub entra_client_id: String,
    pub entra_client_secret: String,
    /// Long-term AWS keys: (access key id, secret access key).
    pub aws_keys: Vec<(String, String)>,
    /// The region SigV4 scopes must name; `None` accepts any.
    pub aws_region: Option<String>,
    /// The service account's RSA public key (DER, PKCS#1).
    pub google_public_key_der: Vec<u8>,
    /// How long Entra and Google access tokens and STS keys live.
    pub token_ttl: Duration,
}

impl Default for MockCloudOptions {
    fn default() -> Self {
        let google = crate::cloud::google::jwt::RsaSigner::from_pem(MOCK_SERVICE_ACCOUNT_PEM, None)
            .map(|s| s.public_key_der())
            .unwrap_or_default();
        MockCloudOptions {
            azure_api_key: MOCK_AZURE_API_KEY.into(),
            entra_tenant: MOCK_ENTRA_TENANT.into(),
            entra_client_id: MOCK_ENTRA_CLIENT_ID.into(),
            entra_client_secret: MOCK_ENTRA_CLIENT_SECRET.into(),
            aws_keys: vec![(MOCK_AWS_ACCESS_KEY_ID.into(), MOCK_AWS_SECRET_ACCESS_KEY.into())],
            aws_region: None,
            google_public_key_der: google,
            token_ttl: Duration::from_secs(3600),
        }
    }
}

/// The clouds' live identities: keys can be rotated and tokens revoked
/// while the mock serves, and token exchanges are counted.
pub struct MockClouds {
    /// Azure gives each resource two keys, both valid, so one can be
    /// rotated while the other is in use.
    azure_keys: RwLock<Vec<String>>,
    entra: EntraIssuer,
    google: GoogleTokenIssuer,
    aws: RwLock<HashMap<String, MockAwsKey>>,
    region: Option<String>,
    token_ttl: Duration,
    sts_issued: AtomicU64,
}

/// Token exchanges each identity endpoint has answered with a token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenExchanges {
    pub entra: u64,
    pub google: u64,
    pub sts: u64,
}

impl MockClouds {
    pub(crate) fn new(o: &MockCloudOptions, addr: SocketAddr) -> MockClouds {
        let aws = o
            .aws_keys
            .iter()
            .map(|(id, secret)| (id.clone(), MockAwsKey { secret_access_key: secret.clone(), session_token: None }))
            .collect();
        MockClouds {
            azure_keys: RwLock::new(vec![o.azure_api_key.clone()]),
            entra: EntraIssuer::new(&o.entra_tenant, &o.entra_client_id, &o.entra_client_secret, o.token_ttl),
            // The audience a JWT assertion must name: this server's token URI.
            google: GoogleTokenIssuer::new(
                o.google_public_key_der.clone(),
                format!("http://{addr}/token"),
                o.token_ttl,
            ),
            aws: RwLock::new(aws),
            region: o.aws_region.clone(),
            token_ttl: o.token_ttl,
            sts_issued: AtomicU64::new(0),
        }
    }

    /// The `api-key` values accepted from now on (Azure's KEY1 and KEY2).
    pub fn set_azure_keys(&self, keys: &[&str]) {
        if let Ok(mut k) = self.azure_keys.write() {
            *k = keys.iter().map(|s| (*s).to_owned()).collect();
        }
    }

    /// Accept another AWS key pair (a new IAM access key).
    pub fn add_aws_key(&self, access_key_id: &str, secret_access_key: &str) {
        if let Ok(mut keys) = self.aws.write() {
            let key = MockAwsKey { secret_access_key: secret_access_key.to_owned(), session_token: None };
            keys.insert(access_key_id.to_owned(), key);
        }
    }

    /// Stop accepting an AWS key (deactivated in IAM).
    pub fn remove_aws_key(&self, access_key_id: &str) {
        if let Ok(mut keys) = self.aws.write() {
            keys.remove(access_key_id);
        }
    }

    /// Revoke every Entra and Google access token issued so far.
    pub fn revoke_tokens(&self) {
        self.entra.revoke_all();
        self.google.revoke_all();
    }

    pub fn token_exchanges(&self) -> TokenExchanges {
        TokenExchanges {
            entra: self.entra.issued_total(),
            google: self.google.issued_total(),
            sts: self.sts_issued.load(Ordering::Relaxed),
        }
    }
}

/// A request to a cloud route, as it arrived.
pub(crate) struct CloudRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl CloudRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn query(&self, key: &str) -> Option<String> {
        form_urlencoded::parse(self.uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }
}

pub(crate) enum CloudRoute {
    Azure(azure::Call),
    EntraToken,
    GoogleToken,
    Sts,
    Bedrock(bedrock::Call),
    Vertex(vertex::Call),
}

/// The cloud route of a request, if it is one.
pub(crate) fn route(method: &Method, path: &str) -> Option<CloudRoute> {
    if let Some(c) = azure::route(method, path) {
        return Some(CloudRoute::Azure(c));
    }
    if *method != Method::POST {
        return None;
    }
    if path == "/" {
        return Some(CloudRoute::Sts);
    }
    if path == "/token" {
        return Some(CloudRoute::GoogleToken);
    }
    if path.ends_with("/oauth2/v2.0/token") {
        return Some(CloudRoute::EntraToken);
    }
    if let Some(c) = bedrock::route(path) {
        return Some(CloudRoute::Bedrock(c));
    }
    vertex::route(path).map(CloudRoute::Vertex)
}

pub(crate) async fn handle(
    state: &Arc<ServerState>,
    route: CloudRoute,
    req: CloudRequest,
    controls: Controls,
) -> Result<Response<MockBody>, Reset> {
    let now = SystemTime::now();
    let clouds = &state.clouds;
    let stats = &state.stats;
    match route {
        CloudRoute::EntraToken => Ok(token_answer(clouds.entra.exchange(req.uri.path(), &req.body, now))),
        CloudRoute::GoogleToken => Ok(token_answer(clouds.google.exchange(&req.body, now))),
        CloudRoute::Sts => Ok(bedrock::sts(clouds, &req, now)),
        CloudRoute::Azure(call) => {
            bump(&stats.azure_total);
            let keys = clouds.azure_keys.read().map(|k| k.clone()).unwrap_or_default();
            let checked = match req.header("api-key") {
                Some(k) => keys
                    .iter()
                    .map(|key| super::clouds::azure::check_api_key(Some(k), key))
                    .find(Result::is_ok)
                    .unwrap_or_else(|| super::clouds::azure::check_api_key(None, "")),
                None if req.header("authorization").is_some() => {
                    clouds.entra.check_bearer(req.header("authorization"), now)
                }
                None => super::clouds::azure::check_api_key(None, ""),
            };
            if let Err(r) = checked {
                return Ok(refused(stats, r));
            }
            let fault = before_answer(state, &controls, Shape::OpenAi).await?;
            match fault {
                Err(resp) => Ok(resp),
                Ok(fault) => Ok(azure::answer(state, &call, &req, &controls, fault)),
            }
        }
        CloudRoute::Bedrock(call) => {
            bump(&stats.bedrock_total);
            let keys = clouds.aws.read().map(|k| k.clone()).unwrap_or_default();
            if let Err(r) = bedrock::verify(&req, clouds.region.as_deref(), &keys, now) {
                return Ok(refused(stats, r));
            }
            if let Some(name) = &controls.aws_error {
                return Ok(aws_error(name));
            }
            match before_answer(state, &controls, Shape::Aws).await? {
                Err(resp) => Ok(resp),
                Ok(fault) => Ok(bedrock::answer(state, &call, &req, &controls, fault)),
            }
        }
        CloudRoute::Vertex(call) => {
            bump(&stats.vertex_total);
            if let Err(r) = clouds.google.check_bearer(req.header("authorization"), now) {
                return Ok(refused(stats, r));
            }
            match before_answer(state, &controls, Shape::Google).await? {
                Err(resp) => Ok(resp),
                Ok(fault) => Ok(vertex::answer(state, &call, &req, &controls, fault)),
            }
        }
    }
}

/// A token endpoint's answer: its JSON, or the identity provider's refusal.
fn token_answer(r: Result<String, Rejection>) -> Response<MockBody> {
    match r {
        Ok(body) => json(StatusCode::OK, Bytes::from(body)),
        Err(r) => rejection(r),
    }
}

fn refused(stats: &super::stats::Stats, r: Rejection) -> Response<MockBody> {
    bump(&stats.auth_refused_total);
    rejection(r)
}

fn rejection(r: Rejection) -> Response<MockBody> {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    let mut resp = json(status, Bytes::from(r.body));
    for (name, value) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

/// How a cloud writes its errors.
#[derive(Clone, Copy)]
enum Shape {
    OpenAi,
    Aws,
    Google,
}

/// The delay, then the fault dice: `Err(response)` for a fault answered
/// in the cloud's shape (429, 500), `Ok(fault)` for one that spoils the
/// answer later (`cut`, `garbage`) or none. `hang` and `reset` as elsewhere.
async fn before_answer(
    state: &ServerState,
    controls: &Controls,
    shape: Shape,
) -> Result<Result<Option<Fault>, Response<MockBody>>, Reset> {
    let delay = controls.delay_ms.unwrap_or(state.opts.delay_ms);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let fault = controls.fault.or_else(|| state.dice.roll());
    let status = match fault {
        Some(Fault::RateLimit) => StatusCode::TOO_MANY_REQUESTS,
        Some(Fault::ServerError) => StatusCode::INTERNAL_SERVER_ERROR,
        Some(Fault::Hang) => {
            state.stats.fault(Fault::Hang);
            return std::future::pending().await;
        }
        Some(Fault::Reset) => {
            state.stats.fault(Fault::Reset);
            return Err(Reset);
        }
        other => return Ok(Ok(other)),
    };
    let f = fault.unwrap_or(Fault::ServerError);
    state.stats.fault(f);
    let mut resp = match (shape, f) {
        (Shape::Aws, Fault::RateLimit) => aws_error("ThrottlingException"),
        (Shape::Aws, _) => aws_error("InternalServerException"),
        (Shape::OpenAi, Fault::RateLimit) => json(
            status,
            super::generate::error_body(
                "Requests to the ChatCompletions_Create Operation have exceeded call rate limit (mock).",
                "requests",
                None,
                Some("429"),
            ),
        ),
        (Shape::OpenAi, _) => json(
            status,
            super::generate::error_body("The server had an error (mock fault).", "server_error", None, None),
        ),
        (Shape::Google, _) => {
            let message = if f == Fault::RateLimit {
                "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute (mock)."
            } else {
                "Internal error encountered (mock fault)."
            };
            json(
                status,
                super::vendors::error_body(super::vendors::Vendor::Gemini { stream: false }, status.as_u16(), message),
            )
        }
    };
    if f == Fault::RateLimit && !matches!(shape, Shape::Aws) {
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(state.opts.retry_after_s));
    }
    Ok(Err(resp))
}

/// A Bedrock error by exception name, with the status AWS documents for it.
pub(crate) fn aws_error(name: &str) -> Response<MockBody> {
    let (status, message) = match name {
        "ThrottlingException" => (429, "Too many requests, please wait before trying again."),
        "ModelNotReadyException" => (
            429,
            "Model is not ready for inference. Wait and try your request again. Refer to the documentation for \
             more details.",
        ),
        "ServiceUnavailableException" => (503, "Bedrock is unable to process your request."),
        "InternalServerException" => (500, "The server encountered an internal error (mock)."),
        "AccessDeniedException" => (403, "You don't have access to the model with the specified model ID."),
        "ResourceNotFoundException" => (404, "Could not resolve the foundation model from the provided model id."),
        "ModelTimeoutException" => (408, "Model has timed out in processing the request."),
        "ModelErrorException" => (424, "The model returned an error (mock)."),
        "ServiceQuotaExceededException" => (400, "Your request exceeds the service quota for your account."),
        _ => (400, "The request is invalid (mock)."),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = json(status, Bytes::from(sonic_rs::json!({ "message": message }).to_string()));
    if let Ok(v) = HeaderValue::from_str(name) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}
