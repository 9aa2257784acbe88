//! Google's OAuth token endpoint as the mock plays it: a JWT-bearer
//! assertion (RFC 7523) is checked as Google checks it — RS256 signature
//! with the service account's public key, `aud` equal to the token URI,
//! `iat`/`exp` a window of at most an hour around now, a `scope` — and
//! answered with a short-lived opaque access token that [`check_bearer`]
//! later accepts until it expires.
//!
//! Error bodies follow Google's: OAuth `{"error","error_description"}` at
//! the token endpoint, `{"error":{"code":401,...,"status":"UNAUTHENTICATED"}}`
//! on API calls.
//!
//! [`check_bearer`]: GoogleTokenIssuer::check_bearer

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Issued, Rejection};
use crate::cloud::google::JWT_BEARER_GRANT;
use crate::cloud::google::jwt::verify_rs256;

/// Clock skew Google tolerates on `iat`.
const IAT_SKEW_S: u64 = 60;

pub struct GoogleTokenIssuer {
    public_key_der: Vec<u8>,
    audience: String,
    token_ttl: Duration,
    issued: Issued,
}

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    aud: String,
    #[serde(default)]
    scope: String,
    iat: Option<u64>,
    exp: Option<u64>,
}

fn oauth_error(error: &str, description: &str) -> Rejection {
    Rejection::json(400, sonic_rs::json!({ "error": error, "error_description": description }).to_string())
}

fn unauthenticated(message: &str) -> Rejection {
    Rejection::json(
        401,
        sonic_rs::json!({ "error": { "code": 401, "message": message, "status": "UNAUTHENTICATED" } }).to_string(),
    )
}

impl GoogleTokenIssuer {
    /// `public_key_der`: the service account's RSA public key (PKCS#1);
    /// `audience`: the token URI the mock serves; `token_ttl`: how long an
    /// issued token lives (short, so tests see refreshes).
    pub fn new(public_key_der: Vec<u8>, audience: impl Into<String>, token_ttl: Duration) -> Self {
        GoogleTokenIssuer { public_key_der, audience: audience.into(), token_ttl, issued: Issued::default() }
    }

    /// Answers a token request's form body: `Ok(json)` with a new token, or
    /// Google's refusal.
    pub fn exchange(&self, form_body: &[u8], now: SystemTime) -> Result<String, Rejection> {
        let form: HashMap<String, String> = form_urlencoded::parse(form_body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER_GRANT) {
            return Err(oauth_error("unsupported_grant_type", "Invalid grant_type: "));
        }
        let Some(assertion) = form.get("assertion") else {
            return Err(oauth_error("invalid_request", "Missing required parameter: assertion"));
        };
        let claims = verify_rs256(assertion, &self.public_key_der)
            .map_err(|_| oauth_error("invalid_grant", "Invalid JWT Signature."))?;
        let claims: Claims = sonic_rs::from_slice(&claims)
            .map_err(|_| oauth_error("invalid_grant", "Invalid JWT: claims are not a JSON object."))?;
        if claims.aud != self.audience {
            return Err(oauth_error("invalid_grant", "Invalid JWT: Failed audience check."));
        }
        if claims.iss.is_empty() {
            return Err(oauth_error("invalid_grant", "Invalid JWT: no iss claim."));
        }
        if claims.scope.is_empty() {
            return Err(oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided."));
        }
        let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let timely = match (claims.iat, claims.exp) {
            (Some(iat), Some(exp)) => iat <= now_s + IAT_SKEW_S && exp > now_s && exp > iat && exp - iat <= 3600,
            _ => false,
        };
        if !timely {
            return Err(oauth_error(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. \
                 Check your iat and exp values in the JWT claim.",
            ));
        }
        let token = self.issued.issue("ya29.mock-", now, self.token_ttl);
        Ok(sonic_rs::json!({
            "access_token": token,
            "expires_in": self.token_ttl.as_secs(),
            "token_type": "Bearer",
        })
        .to_string())
    }

    /// Checks a Vertex call's `Authorization` header value.
    pub fn check_bearer(&self, authorization: Option<&str>, now: SystemTime) -> Result<(), Rejection> {
        let Some(token) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return Err(unauthenticated(
                "Request is missing required authentication credential. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential.",
            ));
        };
        match self.issued.is_valid(token, now) {
            true => Ok(()),
            false => Err(unauthenticated(
                "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential.",
            )),
        }
    }

    /// Tokens issued so far (refresh counts in tests).
    pub fn issued_total(&self) -> u64 {
        self.issued.total()
    }

    /// Revoke every token issued so far.
    pub fn revoke_all(&self) {
        self.issued.revoke_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::cloud::google::jwt::tests::{TEST_ONLY_KEY_PEM, signer};
    use crate::cloud::google::{GoogleAuth, GoogleSettings, from_json};
    use crate::cloud::token::{DEFAULT_SKEW, TokenCache};
    use crate::cloud::transport::testing::serve;
    use crate::cloud::transport::{HttpTransport, HyperTransport};

    fn key_json(token_uri: &str) -> String {
        sonic_rs::json!({
            "type": "service_account",
            "project_id": "test-proj",
            "private_key_id": "kid-1",
            "private_key": TEST_ONLY_KEY_PEM,
            "client_email": "sluice@test-proj.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        })
        .to_string()
    }

    fn assertion_form(claims: &str) -> Vec<u8> {
        let jwt = signer().sign(claims.as_bytes()).unwrap();
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", JWT_BEARER_GRANT)
            .append_pair("assertion", &jwt)
            .finish()
            .into_bytes()
    }

    fn issuer() -> GoogleTokenIssuer {
        GoogleTokenIssuer::new(signer().public_key_der(), "http://t/token", Duration::from_secs(60))
    }

    const T: u64 = 1_800_000_000;
    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn a_good_assertion_gets_a_token_that_expires() {
        let i = issuer();
        let claims = format!(r#"{{"iss":"a@b","scope":"s","aud":"http://t/token","iat":{T},"exp":{}}}"#, T + 3600);
        let answer = i.exchange(&assertion_form(&claims), at(T)).unwrap();
        let v: sonic_rs::Value = sonic_rs::from_str(&answer).unwrap();
        let token = sonic_rs::JsonValueTrait::as_str(&v["access_token"]).unwrap().to_owned();
        assert!(i.check_bearer(Some(&format!("Bearer {token}")), at(T + 59)).is_ok());
        let late = i.check_bearer(Some(&format!("Bearer {token}")), at(T + 61)).unwrap_err();
        assert_eq!(late.status, 401);
        assert!(late.body.contains("UNAUTHENTICATED"));
        assert_eq!(i.check_bearer(None, at(T)).unwrap_err().status, 401);
        assert!(i.check_bearer(Some("Bearer ya29.forged"), at(T)).is_err());
    }

    #[test]
    fn bad_assertions_get_googles_errors() {
        let i = issuer();
        let ok = |aud: &str, iat: u64, exp: u64| {
            format!(r#"{{"iss":"a@b","scope":"s","aud":"{aud}","iat":{iat},"exp":{exp}}}"#)
        };
        let cases = [
            (ok("http://other/token", T, T + 3600), "Failed audience check"),
            (ok("http://t/token", T - 7200, T - 3600), "short-lived"),
            (ok("http://t/token", T, T + 7200), "short-lived"),
            (ok("http://t/token", T + 600, T + 1200), "short-lived"),
            (r#"{"iss":"a@b","aud":"http://t/token","iat":1,"exp":2}"#.to_owned(), "invalid_scope"),
        ];
        for (claims, says) in cases {
            let err = i.exchange(&assertion_form(&claims), at(T)).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.body.contains(says), "{claims}: {}", err.body);
        }
        // Signed by another key: the signature check fails.
        let other = GoogleTokenIssuer::new(vec![0x30, 0x00], "http://t/token", Duration::from_secs(60));
        let err = other.exchange(&assertion_form(&ok("http://t/token", T, T + 60)), at(T)).unwrap_err();
        assert!(err.body.contains("Invalid JWT Signature"), "{}", err.body);
        assert!(i.exchange(b"grant_type=password", at(T)).unwrap_err().body.contains("unsupported_grant_type"));
    }

    /// The whole service-account flow over real HTTP: the gateway's side
    /// (key file → signed assertion → token) against the mock's issuer on a
    /// loopback port; 50 concurrent callers cause one exchange, and the
    /// token the cache hands out is one the mock accepts.
    #[tokio::test]
    async fn service_account_flow_over_http_against_the_mock_issuer() {
        let issuer = Arc::new(Mutex::new(None::<Arc<GoogleTokenIssuer>>));
        let slot = issuer.clone();
        let server = serve(Arc::new(move |seen| {
            let i = slot.lock().unwrap().clone().unwrap();
            match i.exchange(&seen.body, SystemTime::now()) {
                Ok(json) => (200, json),
                Err(r) => (r.status, r.body),
            }
        }))
        .await;
        let token_uri = server.url("/token");
        let mock =
            Arc::new(GoogleTokenIssuer::new(signer().public_key_der(), token_uri.clone(), Duration::from_secs(600)));
        *issuer.lock().unwrap() = Some(mock.clone());

        let source = from_json(key_json(&token_uri).as_bytes(), "key.json", &GoogleSettings::default()).unwrap();
        let transport: Arc<dyn HttpTransport> = Arc::new(HyperTransport::new(Duration::from_secs(5)).unwrap());
        let auth = GoogleAuth::new(source, "key.json".into(), transport);
        assert_eq!(auth.project_id(), Some("test-proj"));
        let cache = Arc::new(TokenCache::new(auth, DEFAULT_SKEW));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.get().await })
            })
            .collect();
        let mut tokens = Vec::new();
        for t in tasks {
            tokens.push(t.await.unwrap().unwrap());
        }
        assert_eq!(server.count(), 1, "one exchange for 50 callers");
        assert_eq!(mock.issued_total(), 1);
        let header = format!("Bearer {}", tokens[0].expose());
        assert!(mock.check_bearer(Some(&header), SystemTime::now()).is_ok());
        assert!(tokens.iter().all(|t| t == &tokens[0]));
        // A token the mock stopped accepting (e.g. revoked) is replaced after invalidate().
        cache.invalidate();
        let next = cache.get().await.unwrap();
        assert_ne!(next, tokens[0]);
        assert_eq!(mock.issued_total(), 2);
    }

    #[tokio::test]
    async fn a_key_the_mock_does_not_know_is_refused_clearly() {
        let wrong = Arc::new(GoogleTokenIssuer::new(vec![1, 2, 3], "http://x/token", Duration::from_secs(60)));
        let server = serve(Arc::new(move |seen| match wrong.exchange(&seen.body, SystemTime::now()) {
            Ok(json) => (200, json),
            Err(r) => (r.status, r.body),
        }))
        .await;
        let source =
            from_json(key_json(&server.url("/token")).as_bytes(), "key.json", &GoogleSettings::default()).unwrap();
        let transport: Arc<dyn HttpTransport> = Arc::new(HyperTransport::new(Duration::from_secs(5)).unwrap());
        let cache = TokenCache::new(GoogleAuth::new(source, "key.json".into(), transport), DEFAULT_SKEW);
        let err = cache.get().await.unwrap_err().to_string();
        assert!(err.contains("HTTP 400") && err.contains("invalid_grant: Invalid JWT Signature."), "{err}");
    }
}
