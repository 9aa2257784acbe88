//! Web-identity credentials: an OIDC token from a file (EKS and other
//! Kubernetes platforms mount one and rotate it) exchanged at STS for
//! temporary keys with `AssumeRoleWithWebIdentity`.
//!
//! The call is an unsigned form POST (the token is the credential); the
//! answer is STS's XML. The token file is read again at every refresh,
//! because the platform rewrites it before it expires.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use super::AwsCredentials;
use crate::cloud::CredentialError;
use crate::cloud::token::Token;
use crate::cloud::transport::HttpTransport;
use crate::config::Secret;

pub struct WebIdentity {
    pub role_arn: String,
    pub token_file: PathBuf,
    pub session_name: Option<String>,
    /// The STS endpoint URL ([`sts_endpoint`] unless overridden).
    pub endpoint: String,
    pub transport: Arc<dyn HttpTransport>,
}

/// STS's regional endpoint (AWS's recommendation; the global one is only
/// for no region at all).
pub fn sts_endpoint(region: Option<&str>) -> String {
    match region {
        Some(r) if r.starts_with("cn-") => format!("https://sts.{r}.amazonaws.com.cn/"),
        Some(r) => format!("https://sts.{r}.amazonaws.com/"),
        None => "https://sts.amazonaws.com/".to_owned(),
    }
}

impl WebIdentity {
    pub fn describe(&self) -> String {
        format!("web identity {} with token file {}", self.role_arn, self.token_file.display())
    }

    pub(super) async fn fetch(&self) -> Result<Token<AwsCredentials>, CredentialError> {
        let token = tokio::fs::read_to_string(&self.token_file).await.map_err(|e| CredentialError::File {
            path: self.token_file.display().to_string(),
            message: format!("cannot read the web-identity token: {e}"),
        })?;
        let session = self.session_name.clone().unwrap_or_else(|| {
            format!("sluice-{}", SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
        });
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRoleWithWebIdentity")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &self.role_arn)
            .append_pair("RoleSessionName", &session)
            .append_pair("WebIdentityToken", token.trim())
            .finish();
        let request = http::Request::post(&self.endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded; charset=utf-8")
            .body(Bytes::from(body))
            .map_err(|e| CredentialError::Invalid {
                what: "STS endpoint",
                message: format!("{}: {e}", self.endpoint),
            })?;
        let response = self.transport.send(request).await?;
        parse_response(&self.endpoint, response.status().as_u16(), response.body())
    }
}

/// STS's answer → credentials valid until its `Expiration`; an error
/// document → [`CredentialError::Rejected`] with STS's code and message.
fn parse_response(endpoint: &str, status: u16, body: &[u8]) -> Result<Token<AwsCredentials>, CredentialError> {
    let text = String::from_utf8_lossy(body);
    if !(200..300).contains(&status) {
        let message = match (xml_text(&text, "Code"), xml_text(&text, "Message")) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code,
            _ => crate::cloud::error::excerpt(body, 300),
        };
        return Err(CredentialError::Rejected { endpoint: endpoint.to_owned(), status, message });
    }
    let bad = |what: &str| CredentialError::Transport {
        endpoint: endpoint.to_owned(),
        message: format!("the AssumeRoleWithWebIdentity answer has no {what}"),
    };
    let creds = xml_text(&text, "Credentials").ok_or_else(|| bad("Credentials"))?;
    let access_key_id = xml_text(&creds, "AccessKeyId").ok_or_else(|| bad("AccessKeyId"))?;
    let secret = xml_text(&creds, "SecretAccessKey").ok_or_else(|| bad("SecretAccessKey"))?;
    let session_token = xml_text(&creds, "SessionToken").ok_or_else(|| bad("SessionToken"))?;
    let expiration = xml_text(&creds, "Expiration").ok_or_else(|| bad("Expiration"))?;
    let expires = OffsetDateTime::parse(&expiration, &Rfc3339).map_err(|e| CredentialError::Transport {
        endpoint: endpoint.to_owned(),
        message: format!("Expiration {expiration:?} is not RFC 3339: {e}"),
    })?;
    let left = expires - OffsetDateTime::now_utc();
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Ok(Token::new(
        AwsCredentials {
            access_key_id,
            secret_access_key: Secret::new(secret),
            session_token: Some(Secret::new(session_token)),
        },
        Some(Instant::now() + left),
    ))
}

/// The text inside the first `<tag>...</tag>`, with XML's five predefined
/// entities decoded. STS's answers are flat and generated, so this is all
/// the XML they need; a document it cannot read is an error, never a guess.
pub(crate) fn xml_text(doc: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = doc.find(&open)? + open.len();
    let end = start + doc[start..].find(&close)?;
    let raw = doc[start..end].trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::cloud::aws::tests::{env, transport};
    use crate::cloud::aws::{AwsSettings, AwsSource, resolve};
    use crate::cloud::token::{DEFAULT_SKEW, TokenCache};
    use crate::cloud::transport::testing::{form, serve};

    fn answer(id: &str) -> String {
        let exp = (OffsetDateTime::now_utc() + time::Duration::hours(1)).format(&Rfc3339).unwrap();
        format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <AssumeRoleWithWebIdentityResult><Credentials>\
             <AccessKeyId>{id}</AccessKeyId><SecretAccessKey>wJal/rXUtn+FEMI</SecretAccessKey>\
             <SessionToken>FwoG&amp;token</SessionToken><Expiration>{exp}</Expiration>\
             </Credentials><SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>\
             </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
        )
    }

    /// Over a real loopback STS: the env's web identity is found, STS gets
    /// the token file's content, 100 concurrent callers cause one call, and a
    /// rotated token file is what the next refresh sends.
    #[tokio::test]
    async fn web_identity_over_http_one_call_and_rotation() {
        let calls = Arc::new(AtomicUsize::new(0));
        let n = calls.clone();
        let sts = serve(Arc::new(move |seen| {
            let f = form(&seen.body);
            assert_eq!(f["Action"], "AssumeRoleWithWebIdentity");
            assert_eq!(f["RoleArn"], "arn:aws:iam::123456789012:role/bedrock");
            assert_eq!(f["RoleSessionName"], "sess");
            let i = n.fetch_add(1, Ordering::SeqCst);
            (200, answer(&format!("ASIA{i}-{}", f["WebIdentityToken"])))
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "jwt-one\n").unwrap();
        let e = env(&[
            ("HOME", dir.path().to_str().unwrap()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bedrock"),
            ("AWS_ROLE_SESSION_NAME", "sess"),
        ]);
        let settings = AwsSettings { sts_endpoint: Some(sts.url("/")), ..AwsSettings::default() };
        let source = resolve(&e, &settings, transport()).unwrap();
        assert!(matches!(source, AwsSource::WebIdentity(_)), "{}", source.describe());
        let cache = Arc::new(TokenCache::new(source, DEFAULT_SKEW));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.get().await })
            })
            .collect();
        for t in tasks {
            let c = t.await.unwrap().unwrap();
            assert_eq!(c.access_key_id, "ASIA0-jwt-one");
            assert_eq!(c.secret_access_key.expose(), "wJal/rXUtn+FEMI");
            assert_eq!(c.session_token.as_ref().unwrap().expose(), "FwoG&token");
        }
        assert_eq!(sts.count(), 1);
        std::fs::write(&token_file, "jwt-two").unwrap();
        cache.invalidate();
        assert_eq!(cache.get().await.unwrap().access_key_id, "ASIA1-jwt-two");
    }

    #[tokio::test]
    async fn sts_errors_are_clear() {
        let sts = serve(Arc::new(|_| {
            (
                400,
                "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>\
                 <Message>No OpenIDConnect provider found in your account</Message></Error></ErrorResponse>"
                    .into(),
            )
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "jwt").unwrap();
        let w = WebIdentity {
            role_arn: "arn:aws:iam::1:role/r".into(),
            token_file: dir.path().join("t"),
            session_name: None,
            endpoint: sts.url("/"),
            transport: transport(),
        };
        let err = w.fetch().await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("HTTP 400") && msg.contains("InvalidIdentityToken: No OpenIDConnect"), "{msg}");
        assert!(!err.retryable());
        let missing = WebIdentity { token_file: dir.path().join("gone"), ..w };
        let msg = missing.fetch().await.unwrap_err().to_string();
        assert!(msg.contains("gone") && msg.contains("web-identity token"), "{msg}");
    }

    #[test]
    fn malformed_answers_are_errors() {
        assert!(parse_response("e", 200, b"<x/>").is_err());
        let no_exp = "<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey>\
                      <SessionToken>T</SessionToken><Expiration>tomorrow</Expiration></Credentials>";
        assert!(parse_response("e", 200, no_exp.as_bytes()).unwrap_err().to_string().contains("RFC 3339"));
        assert!(parse_response("e", 503, b"").unwrap_err().retryable());
    }

    #[test]
    fn regional_sts_endpoints() {
        assert_eq!(sts_endpoint(Some("eu-central-1")), "https://sts.eu-central-1.amazonaws.com/");
        assert_eq!(sts_endpoint(Some("cn-north-1")), "https://sts.cn-north-1.amazonaws.com.cn/");
        assert_eq!(sts_endpoint(None), "https://sts.amazonaws.com/");
    }
}
