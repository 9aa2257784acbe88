//! Vertex AI endpoint URLs: a pure function of project, location,
//! publisher, model and method.
//!
//! Regional: `https://{region}-aiplatform.googleapis.com/v1/projects/{p}/locations/{region}/publishers/{pub}/models/{m}:{method}`;
//! `global`: the same path on `https://aiplatform.googleapis.com`.
//! Streaming Gemini asks `?alt=sse` so the answer is Server-Sent Events
//! (without it `streamGenerateContent` returns one JSON array, which cannot
//! be relayed event by event).

use super::CredentialError;

/// Who publishes the model, which fixes the body protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// Gemini: `generateContent` / `streamGenerateContent`.
    Google,
    /// Claude: Anthropic's Messages body via `rawPredict` / `streamRawPredict`.
    Anthropic,
}

/// The call: one of the five methods Sluice uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    GenerateContent,
    StreamGenerateContent,
    RawPredict,
    StreamRawPredict,
    /// Google's text-embedding models.
    Predict,
}

impl Method {
    /// The method for a publisher and a stream flag.
    pub fn for_publisher(publisher: Publisher, stream: bool) -> Method {
        match (publisher, stream) {
            (Publisher::Google, false) => Method::GenerateContent,
            (Publisher::Google, true) => Method::StreamGenerateContent,
            (Publisher::Anthropic, false) => Method::RawPredict,
            (Publisher::Anthropic, true) => Method::StreamRawPredict,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Method::GenerateContent => "generateContent",
            Method::StreamGenerateContent => "streamGenerateContent",
            Method::RawPredict => "rawPredict",
            Method::StreamRawPredict => "streamRawPredict",
            Method::Predict => "predict",
        }
    }
}

impl Publisher {
    fn as_str(self) -> &'static str {
        match self {
            Publisher::Google => "google",
            Publisher::Anthropic => "anthropic",
        }
    }
}

/// Where a Vertex deployment lives. `base_url` replaces the Google host
/// (scheme and authority, no path), for the mock and private endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexTarget<'a> {
    pub project: &'a str,
    pub location: &'a str,
    pub base_url: Option<&'a str>,
}

/// The full URL of one call. Every part is checked so that no value can
/// add a path segment, a query or a fragment.
pub fn endpoint_url(
    target: &VertexTarget<'_>,
    publisher: Publisher,
    model: &str,
    method: Method,
) -> Result<String, CredentialError> {
    check("project", target.project, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')?;
    check("location", target.location, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')?;
    check("model", model, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))?;
    let host = match (target.base_url, target.location) {
        (Some(base), _) => base.trim_end_matches('/').to_owned(),
        (None, "global") => "https://aiplatform.googleapis.com".to_owned(),
        (None, region) => format!("https://{region}-aiplatform.googleapis.com"),
    };
    let query = if method == Method::StreamGenerateContent { "?alt=sse" } else { "" };
    Ok(format!(
        "{host}/v1/projects/{}/locations/{}/publishers/{}/models/{model}:{}{query}",
        target.project,
        target.location,
        publisher.as_str(),
        method.as_str()
    ))
}

fn check(what: &'static str, value: &str, ok: impl Fn(char) -> bool) -> Result<(), CredentialError> {
    if value.is_empty() || !value.chars().all(ok) {
        return Err(CredentialError::Invalid {
            what: "Vertex AI endpoint",
            message: format!("{what} {value:?} has characters a Vertex {what} cannot have"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "my-proj";

    #[test]
    fn regional_gemini_and_claude() {
        let t = VertexTarget { project: P, location: "us-central1", base_url: None };
        assert_eq!(
            endpoint_url(&t, Publisher::Google, "text-embedding-005", Method::Predict).unwrap(),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-central1/publishers/google/models/text-embedding-005:predict"
        );
        assert_eq!(
            endpoint_url(&t, Publisher::Google, "gemini-2.0-flash", Method::GenerateContent).unwrap(),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent"
        );
        assert_eq!(
            endpoint_url(&t, Publisher::Google, "gemini-2.0-flash", Method::for_publisher(Publisher::Google, true))
                .unwrap(),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
        let t = VertexTarget { project: P, location: "europe-west1", base_url: None };
        assert_eq!(
            endpoint_url(&t, Publisher::Anthropic, "claude-3-5-sonnet-v2@20241022", Method::StreamRawPredict).unwrap(),
            "https://europe-west1-aiplatform.googleapis.com/v1/projects/my-proj/locations/europe-west1/publishers/anthropic/models/claude-3-5-sonnet-v2@20241022:streamRawPredict"
        );
        assert_eq!(
            endpoint_url(
                &t,
                Publisher::Anthropic,
                "claude-sonnet-4",
                Method::for_publisher(Publisher::Anthropic, false)
            )
            .unwrap(),
            "https://europe-west1-aiplatform.googleapis.com/v1/projects/my-proj/locations/europe-west1/publishers/anthropic/models/claude-sonnet-4:rawPredict"
        );
    }

    #[test]
    fn global_has_no_region_prefix() {
        let t = VertexTarget { project: P, location: "global", base_url: None };
        assert_eq!(
            endpoint_url(&t, Publisher::Google, "gemini-2.5-pro", Method::GenerateContent).unwrap(),
            "https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global/publishers/google/models/gemini-2.5-pro:generateContent"
        );
    }

    #[test]
    fn base_url_override_keeps_the_path() {
        let t = VertexTarget { project: P, location: "us-east5", base_url: Some("http://127.0.0.1:9000/") };
        assert_eq!(
            endpoint_url(&t, Publisher::Anthropic, "claude-x", Method::RawPredict).unwrap(),
            "http://127.0.0.1:9000/v1/projects/my-proj/locations/us-east5/publishers/anthropic/models/claude-x:rawPredict"
        );
    }

    #[test]
    fn no_part_can_inject_a_path_or_query() {
        let t = VertexTarget { project: P, location: "us-central1", base_url: None };
        for model in ["", "a/b", "m?x=1", "m#f", "../x", "m:rawPredict", "gemini pro"] {
            assert!(endpoint_url(&t, Publisher::Google, model, Method::GenerateContent).is_err(), "{model}");
        }
        let bad = VertexTarget { project: "Proj/x", location: "us-central1", base_url: None };
        assert!(endpoint_url(&bad, Publisher::Google, "m", Method::GenerateContent).is_err());
        let bad = VertexTarget { project: P, location: "us_central1", base_url: None };
        let err = endpoint_url(&bad, Publisher::Google, "m", Method::GenerateContent).unwrap_err().to_string();
        assert!(err.contains("location"), "{err}");
    }
}
