//! Which API a mock request asks for, by method and path.

use http::header::HeaderValue;
use http::{Method, Response, StatusCode};

use super::body::MockBody;
use super::native::Native;
use super::server::error;
use super::vendors::Vendor;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    Chat,
    Completions,
    Embeddings,
    Models,
    Vendor(Vendor),
    Native(Native),
}

/// The API route of a request, or the 404/405 to answer instead.
pub(super) fn route(method: &Method, path: &str) -> Result<Api, Box<Response<MockBody>>> {
    // Accept the routes with and without the /v1 prefix: clients differ in
    // whether their base URL ends in /v1.
    let p = path.strip_prefix("/v1").unwrap_or(path);
    let gemini = path.strip_prefix("/v1beta").unwrap_or(p).strip_prefix("/models/").and_then(|m| m.rsplit_once(':'));
    let (want, api) = match (p, gemini) {
        (_, Some((_, "generateContent"))) => (Method::POST, Api::Vendor(Vendor::Gemini { stream: false })),
        (_, Some((_, "streamGenerateContent"))) => (Method::POST, Api::Vendor(Vendor::Gemini { stream: true })),
        ("/messages", _) => (Method::POST, Api::Vendor(Vendor::Anthropic)),
        (p, _) => match p {
            "/chat/completions" => (Method::POST, Api::Chat),
            "/completions" => (Method::POST, Api::Completions),
            "/embeddings" => (Method::POST, Api::Embeddings),
            "/models" => (Method::GET, Api::Models),
            p if let Some(n) = Native::route(p) => (Method::POST, Api::Native(n)),
            _ => {
                let msg = format!("Unknown request URL: {method} {path}. Please check the URL for typos.");
                return Err(Box::new(error(StatusCode::NOT_FOUND, &msg, "invalid_request_error", Some("unknown_url"))));
            }
        },
    };
    if *method == want {
        return Ok(api);
    }
    let msg = format!("Method not allowed: {method} {path}; use {want}.");
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, &msg, "invalid_request_error", None);
    let allow = if want == Method::POST { "POST" } else { "GET" };
    r.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(allow));
    Err(Box::new(r))
}
