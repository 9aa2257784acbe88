//! Azure OpenAI's two credentials as the mock checks them: the `api-key`
//! header (compared in constant time) and Entra ID bearer tokens, issued by
//! a mock of Entra's client-credentials token endpoint.
//!
//! Error texts are Azure's: the 401 for a bad key or token, and Entra's
//! `AADSTS` codes for a wrong tenant, client, secret or scope.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use subtle::ConstantTimeEq;

use super::{Issued, Rejection};
use crate::cloud::azure::COGNITIVE_SERVICES_SCOPE;

fn azure_401(message: &str) -> Rejection {
    Rejection::json(401, sonic_rs::json!({ "error": { "code": "401", "message": message } }).to_string())
}

/// Checks Azure OpenAI's `api-key` header against the configured key.
pub fn check_api_key(header: Option<&str>, expected: &str) -> Result<(), Rejection> {
    match header {
        Some(got) if bool::from(got.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        _ => Err(azure_401(
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid \
             key for an active subscription and use a correct regional API endpoint for your resource.",
        )),
    }
}

/// Entra ID's token endpoint for one tenant and one app registration.
pub struct EntraIssuer {
    tenant: String,
    client_id: String,
    client_secret: String,
    token_ttl: Duration,
    issued: Issued,
}

fn entra_error(status: u16, error: &str, description: &str) -> Rejection {
    Rejection::json(
        status,
        sonic_rs::json!({ "error": error, "error_description": description, "error_codes": [] }).to_string(),
    )
}

impl EntraIssuer {
    pub fn new(tenant: &str, client_id: &str, client_secret: &str, token_ttl: Duration) -> Self {
        EntraIssuer {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            token_ttl,
            issued: Issued::default(),
        }
    }

    /// Answers `POST /{tenant}/oauth2/v2.0/token` (`path` may carry a query).
    pub fn exchange(&self, path: &str, form_body: &[u8], now: SystemTime) -> Result<String, Rejection> {
        let path = path.split('?').next().unwrap_or_default();
        let tenant = path.strip_prefix('/').and_then(|p| p.strip_suffix("/oauth2/v2.0/token")).unwrap_or_default();
        if tenant != self.tenant {
            return Err(entra_error(400, "invalid_request", &format!("AADSTS90002: Tenant '{tenant}' not found.")));
        }
        let form: HashMap<String, String> = form_urlencoded::parse(form_body).into_owned().collect();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        if field("grant_type") != "client_credentials" {
            return Err(entra_error(
                400,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            ));
        }
        if field("client_id") != self.client_id {
            return Err(entra_error(
                400,
                "unauthorized_client",
                &format!(
                    "AADSTS700016: Application with identifier '{}' was not found in the directory.",
                    field("client_id")
                ),
            ));
        }
        if !bool::from(field("client_secret").as_bytes().ct_eq(self.client_secret.as_bytes())) {
            return Err(entra_error(
                401,
                "invalid_client",
                &format!(
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is \
                     the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    self.client_id
                ),
            ));
        }
        if field("scope") != COGNITIVE_SERVICES_SCOPE {
            return Err(entra_error(
                400,
                "invalid_scope",
                &format!(
                    "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope {} is not valid.",
                    field("scope")
                ),
            ));
        }
        let token = self.issued.issue("eyJ0eXAiOiJKV1Qi.mock-", now, self.token_ttl);
        let ttl = self.token_ttl.as_secs();
        Ok(sonic_rs::json!({ "token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": token })
            .to_string())
    }

    /// Checks an Azure OpenAI call's `Authorization` header value.
    pub fn check_bearer(&self, authorization: Option<&str>, now: SystemTime) -> Result<(), Rejection> {
        match authorization.and_then(|h| h.strip_prefix("Bearer ")) {
            Some(token) if self.issued.is_valid(token, now) => Ok(()),
            _ => Err(azure_401(
                "Unauthorized. Access token is missing, invalid, audience is incorrect \
                 (https://cognitiveservices.azure.com), or have expired.",
            )),
        }
    }

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
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
    }

    #[test]
    fn api_key() {
        assert!(check_api_key(Some("k1"), "k1").is_ok());
        for bad in [None, Some("k2"), Some("k1 "), Some("")] {
            let r = check_api_key(bad, "k1").unwrap_err();
            assert_eq!(r.status, 401);
            assert!(r.body.contains("invalid subscription key"));
        }
    }

    #[test]
    fn entra_refusals_and_expiry() {
        let e = EntraIssuer::new("t1", "app", "sec", Duration::from_secs(60));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let good = [
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "sec"),
            ("scope", COGNITIVE_SERVICES_SCOPE),
        ];
        let answer = e.exchange("/t1/oauth2/v2.0/token", &form(&good), now).unwrap();
        let v: sonic_rs::Value = sonic_rs::from_str(&answer).unwrap();
        let token = sonic_rs::JsonValueTrait::as_str(&v["access_token"]).unwrap().to_owned();
        assert!(e.check_bearer(Some(&format!("Bearer {token}")), now).is_ok());
        assert!(e.check_bearer(Some(&format!("Bearer {token}")), now + Duration::from_secs(61)).is_err());
        assert!(e.check_bearer(None, now).unwrap_err().body.contains("Access token is missing"));
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
        let cases: [Case<'_>; 5] = [
            ("/t2/oauth2/v2.0/token", good.to_vec(), "AADSTS90002"),
            ("/t1/oauth2/v2.0/token", vec![("grant_type", "password")], "AADSTS70003"),
            ("/t1/oauth2/v2.0/token", vec![good[0], ("client_id", "x")], "AADSTS700016"),
            ("/t1/oauth2/v2.0/token", vec![good[0], good[1], ("client_secret", "no"), good[3]], "AADSTS7000215"),
            ("/t1/oauth2/v2.0/token", vec![good[0], good[1], good[2], ("scope", "https://x/.default")], "AADSTS70011"),
        ];
        for (path, fields, code) in cases {
            let r = e.exchange(path, &form(&fields), now).unwrap_err();
            assert!(r.body.contains(code), "{code}: {}", r.body);
            assert!(!r.body.contains("\"sec\""));
        }
        assert_eq!(e.issued_total(), 1);
    }
}
