//! RS256 JSON Web Tokens (RFC 7519 with RFC 7518's RS256), signed and
//! verified with `ring`, which rustls already builds for the gateway.
//!
//! Why not the `jsonwebtoken` crate: since version 10 it signs only through
//! `aws-lc-rs` (cmake, minutes of C build) or RustCrypto's `rsa` crate
//! (RUSTSEC-2023-0071, a timing side channel on private-key operations with
//! no fixed release) — docs/decisions/clouds.md has the numbers. A JWT is
//! two base64url JSON objects and a signature; the cryptography is the
//! part worth borrowing, and ring's RSA is constant-time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

use crate::cloud::CredentialError;

/// An RSA private key that signs RS256 JWTs. `Debug` shows only the key id.
pub struct RsaSigner {
    key: RsaKeyPair,
    key_id: Option<String>,
}

impl fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaSigner").field("key_id", &self.key_id).field("key", &"***").finish()
    }
}

impl RsaSigner {
    /// A PKCS#8 PEM key (`-----BEGIN PRIVATE KEY-----`), as Google's
    /// service-account JSON files carry it.
    pub fn from_pem(pem: &str, key_id: Option<String>) -> Result<Self, CredentialError> {
        let invalid = |message: String| CredentialError::Invalid { what: "service-account private_key", message };
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| invalid(format!("not a PKCS#8 PEM private key ({e})")))?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| invalid(format!("not a usable RSA key ({e})")))?;
        Ok(RsaSigner { key, key_id })
    }

    /// The public half as a DER `RSAPublicKey` (PKCS#1), what [`verify_rs256`] takes.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.public().as_ref().to_vec()
    }

    /// `header.claims.signature`, with `claims` already serialised JSON.
    pub fn sign(&self, claims_json: &[u8]) -> Result<String, CredentialError> {
        let header = match &self.key_id {
            Some(kid) => sonic_rs::to_string(&Header { alg: "RS256", typ: "JWT", kid: Some(kid) }),
            None => sonic_rs::to_string(&Header { alg: "RS256", typ: "JWT", kid: None }),
        }
        .map_err(|e| CredentialError::Invalid { what: "JWT header", message: e.to_string() })?;
        let mut token = format!("{}.{}", B64.encode(header), B64.encode(claims_json));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), token.as_bytes(), &mut sig).map_err(
            |_| CredentialError::Invalid { what: "service-account private_key", message: "RSA signing failed".into() },
        )?;
        token.push('.');
        token.push_str(&B64.encode(sig));
        Ok(token)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header<'a> {
    alg: &'a str,
    #[serde(default)]
    typ: &'a str,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    kid: Option<&'a str>,
}

/// Why a JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT: {0}")]
    Malformed(&'static str),
    #[error("JWT algorithm {0:?} is not RS256")]
    Algorithm(String),
    #[error("JWT signature does not verify")]
    Signature,
}

/// Checks an RS256 JWT's signature with `public_key_der` (PKCS#1
/// `RSAPublicKey`) and returns its claims JSON. Claims are not judged
/// here: audience and times are the caller's business.
pub fn verify_rs256(token: &str, public_key_der: &[u8]) -> Result<Vec<u8>, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed("a JWT has three dot-separated parts"));
    };
    let header = B64.decode(h).map_err(|_| JwtError::Malformed("header is not base64url"))?;
    let header: Header<'_> = sonic_rs::from_slice(&header).map_err(|_| JwtError::Malformed("header is not JSON"))?;
    if header.alg != "RS256" {
        return Err(JwtError::Algorithm(header.alg.to_owned()));
    }
    let sig = B64.decode(s).map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let signed = &token[..h.len() + 1 + c.len()];
    signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::Signature)?;
    B64.decode(c).map_err(|_| JwtError::Malformed("claims are not base64url"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TEST-ONLY key pair: see the text at the top of the file.
    pub(crate) const TEST_ONLY_KEY_PEM: &str = include_str!("../testdata/TEST-ONLY-rsa-2048.pem");

    pub(crate) fn signer() -> RsaSigner {
        RsaSigner::from_pem(TEST_ONLY_KEY_PEM, Some("kid-1".into())).unwrap()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let s = signer();
        let token = s.sign(br#"{"iss":"a@b","exp":1}"#).unwrap();
        assert_eq!(verify_rs256(&token, &s.public_key_der()).unwrap(), br#"{"iss":"a@b","exp":1}"#.to_vec());
        let header = B64.decode(token.split('.').next().unwrap()).unwrap();
        assert_eq!(header, br#"{"alg":"RS256","typ":"JWT","kid":"kid-1"}"#.to_vec());
    }

    #[test]
    fn tampering_is_caught() {
        let s = signer();
        let token = s.sign(br#"{"aud":"x"}"#).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], B64.encode(br#"{"aud":"y"}"#), parts[2]);
        assert_eq!(verify_rs256(&forged, &s.public_key_der()), Err(JwtError::Signature));
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(verify_rs256(&none, &s.public_key_der()), Err(JwtError::Algorithm("none".into())));
        assert!(matches!(verify_rs256("a.b", &s.public_key_der()), Err(JwtError::Malformed(_))));
        assert!(matches!(verify_rs256("a.b.c.d", &s.public_key_der()), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn bad_keys_are_clear_errors_and_debug_hides_the_key() {
        let err = RsaSigner::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("private_key"), "{err}");
        assert!(RsaSigner::from_pem("not pem", None).is_err());
        let shown = format!("{:?}", signer());
        assert!(shown.contains("kid-1") && !shown.contains("MII"), "{shown}");
    }
}
