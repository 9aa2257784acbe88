//! SigV4 signing with AWS's own signer (`aws-sigv4`), never by hand.
//!
//! Defaults are those of AWS's SDKs for every service but S3: the path is
//! normalised and percent-encoded twice in the canonical request, the body is
//! hashed (no `x-amz-content-sha256` header), and a session token is signed.
//! Bedrock's model ids hold `:` (`anthropic.claude-3-5-sonnet-20240620-v1:0`),
//! so callers must percent-encode path segments ([`encode_path_segment`])
//! before building the URI, as the SDKs do.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::AwsCredentials;
use crate::cloud::CredentialError;

/// Bedrock runtime's signing name: the host is `bedrock-runtime.{region}…`
/// but the credential scope says `bedrock`.
pub const BEDROCK_SERVICE: &str = "bedrock";

/// RFC 3986 unreserved characters stay; everything else is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One path segment, encoded the way AWS's SDKs put model ids in URLs.
pub fn encode_path_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// `https://bedrock-runtime.{region}.amazonaws.com` (or `base_url`), then
/// `/model/{model}/{action}` with the model id encoded.
pub fn bedrock_url(region: &str, base_url: Option<&str>, model: &str, action: BedrockAction) -> String {
    let host = match base_url {
        Some(b) => b.trim_end_matches('/').to_owned(),
        None => format!("https://bedrock-runtime.{region}.amazonaws.com"),
    };
    format!("{host}/model/{}/{}", encode_path_segment(model), action.as_str())
}

/// The four Bedrock runtime calls Sluice makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BedrockAction {
    Converse,
    ConverseStream,
    Invoke,
    InvokeWithResponseStream,
}

impl BedrockAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BedrockAction::Converse => "converse",
            BedrockAction::ConverseStream => "converse-stream",
            BedrockAction::Invoke => "invoke",
            BedrockAction::InvokeWithResponseStream => "invoke-with-response-stream",
        }
    }
}

/// Signs `request` in place: adds `x-amz-date`, `authorization` and, with
/// temporary credentials, `x-amz-security-token`. `body` is what will be
/// sent. `host` must already be a header or in the URI.
pub fn sign_request<B>(
    request: &mut http::Request<B>,
    body: &[u8],
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(), CredentialError> {
    let failed = |message: String| CredentialError::Invalid { what: "request to sign", message };
    let identity = Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose().to_owned(),
        credentials.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "sluice",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(e.to_string()))?
        .into();
    let mut headers = Vec::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        let value = value.to_str().map_err(|_| failed(format!("header {name} is not visible ASCII")))?;
        headers.push((name.as_str(), value));
    }
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(request.method().as_str(), uri, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| failed(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params).map_err(|e| failed(e.to_string()))?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Secret;

    pub(crate) fn example_credentials(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(Secret::new),
        }
    }

    /// `post-vanilla` of AWS's SigV4 test suite (the copy shipped in the
    /// aws-sigv4 crate, aws-signing-test-suite/v4/post-vanilla): the signer
    /// must produce its published signature.
    #[test]
    fn post_vanilla_matches_the_published_signature() {
        let mut req = http::Request::post("https://example.amazonaws.com/")
            .header("host", "example.amazonaws.com")
            .body(())
            .unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        sign_request(&mut req, b"", &example_credentials(None), "us-east-1", "service", t).unwrap();
        assert_eq!(req.headers()["x-amz-date"], "20150830T123600Z");
        assert_eq!(
            req.headers()["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let mut req = http::Request::post(bedrock_url("us-east-1", None, "m", BedrockAction::Converse))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        sign_request(
            &mut req,
            b"{}",
            &example_credentials(Some("tok")),
            "us-east-1",
            BEDROCK_SERVICE,
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(req.headers()["x-amz-security-token"], "tok");
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"), "{auth}");
    }

    #[test]
    fn bedrock_urls_encode_the_model_id() {
        assert_eq!(
            bedrock_url(
                "us-west-2",
                None,
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                BedrockAction::InvokeWithResponseStream
            ),
            "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke-with-response-stream"
        );
        assert_eq!(
            bedrock_url(
                "eu-west-1",
                Some("http://127.0.0.1:9/"),
                "arn:aws:bedrock:eu-west-1:1:inference-profile/eu.x",
                BedrockAction::ConverseStream
            ),
            "http://127.0.0.1:9/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A1%3Ainference-profile%2Feu.x/converse-stream"
        );
    }
}
