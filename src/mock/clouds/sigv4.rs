//! SigV4 as AWS checks it, for the mock's Bedrock routes.
//!
//! The canonical request is rebuilt here from the request as received —
//! independently of `aws-sigv4`'s signer, so the mock would catch a signing
//! bug in the gateway instead of repeating it — and only the HMAC chain
//! (`generate_signing_key`, `calculate_signature`) is borrowed from
//! `aws-sigv4`. The whole verifier is checked against AWS's published SigV4
//! test suite (the copy shipped inside the `aws-sigv4` crate; see tests).
//!
//! Checks, in AWS's order: an `Authorization` header is present and well
//! formed; `X-Amz-Date` is present and within 15 minutes of now; the
//! credential scope's date, region, service and terminator agree; the
//! access key is known (and its session token matches); the signature,
//! compared in constant time. Refusals are Bedrock's (restJson1): HTTP 403,
//! `x-amzn-ErrorType` and `{"message": ...}`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Rejection;

/// AWS's tolerance between `X-Amz-Date` and its own clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// A request as it arrived: `target` is the request line's path and query,
/// still percent-encoded; `headers` are every header in arrival order.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// What the mock expects of every request.
#[derive(Debug, Clone)]
pub struct SigV4Policy {
    /// The endpoint's region; `None` accepts any (a multi-region mock).
    pub region: Option<String>,
    /// The signing name, `bedrock` for Bedrock runtime.
    pub service: String,
    pub max_skew: Duration,
    /// AWS normalises the path (`.`/`..`, repeated `/`) for every service but S3.
    pub normalize_path: bool,
}

impl SigV4Policy {
    pub fn bedrock(region: Option<&str>) -> Self {
        SigV4Policy {
            region: region.map(str::to_owned),
            service: "bedrock".into(),
            max_skew: MAX_SKEW,
            normalize_path: true,
        }
    }
}

/// A key pair the mock knows. Temporary keys carry their session token.
#[derive(Debug, Clone)]
pub struct MockAwsKey {
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// The caller AWS would have identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub region: String,
}

fn reject(error_type: &str, message: &str) -> Rejection {
    Rejection {
        status: 403,
        headers: vec![("content-type", "application/json".to_owned()), ("x-amzn-errortype", error_type.to_owned())],
        body: sonic_rs::json!({ "message": message }).to_string(),
    }
}

const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. \
Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// Checks `req`'s signature as AWS would at `now`.
pub fn verify(
    req: &SignedRequest<'_>,
    policy: &SigV4Policy,
    keys: &HashMap<String, MockAwsKey>,
    now: SystemTime,
) -> Result<Verified, Rejection> {
    let header = |name: &str| req.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
    let Some(auth) = header("authorization") else {
        return Err(reject("MissingAuthenticationTokenException", "Missing Authentication Token"));
    };
    let auth = parse_authorization(auth).map_err(|m| reject("IncompleteSignatureException", &m))?;
    let Some(amz_date) = header("x-amz-date") else {
        return Err(reject(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    };
    let Some(signed_at) = parse_amz_date(amz_date) else {
        return Err(reject(
            "IncompleteSignatureException",
            &format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'."),
        ));
    };
    if now.duration_since(signed_at).is_ok_and(|d| d > policy.max_skew) {
        return Err(reject(
            "InvalidSignatureException",
            &format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
                format_amz_date(now - policy.max_skew),
                format_amz_date(now)
            ),
        ));
    }
    if signed_at.duration_since(now).is_ok_and(|d| d > policy.max_skew) {
        return Err(reject(
            "InvalidSignatureException",
            &format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
                format_amz_date(now + policy.max_skew),
                format_amz_date(now)
            ),
        ));
    }
    let [key_id, date, region, service, terminator] = auth.scope.as_slice() else {
        return Err(reject("IncompleteSignatureException", "Credential must have exactly 5 slash-delimited elements."));
    };
    if *date != &amz_date[..8] {
        return Err(reject(
            "InvalidSignatureException",
            &format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{}', from 'X-Amz-Date'.",
                &amz_date[..8]
            ),
        ));
    }
    if policy.region.as_deref().is_some_and(|r| r != *region) {
        return Err(reject(
            "InvalidSignatureException",
            &format!("Credential should be scoped to a valid region, not '{region}'."),
        ));
    }
    if *service != policy.service {
        return Err(reject(
            "InvalidSignatureException",
            &format!("Credential should be scoped to correct service: '{}'.", policy.service),
        ));
    }
    if *terminator != "aws4_request" {
        return Err(reject(
            "InvalidSignatureException",
            "Credential should be scoped with a valid terminator: 'aws4_request'.",
        ));
    }
    let Some(key) = keys.get(*key_id) else {
        return Err(reject("UnrecognizedClientException", "The security token included in the request is invalid."));
    };
    if let Some(expected) = &key.session_token {
        let sent = header("x-amz-security-token").unwrap_or_default();
        if !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(reject(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        }
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(reject("InvalidSignatureException", "'Host' must be a 'SignedHeader' in the AWS Authorization."));
    }
    let canonical = canonical_request(req, &auth.signed_headers, policy.normalize_path)
        .map_err(|m| reject("InvalidSignatureException", &m))?;
    let to_sign = string_to_sign(amz_date, &auth.scope[1..], &canonical);
    let signing_key = generate_signing_key(&key.secret_access_key, signed_at, region, service);
    let expected = calculate_signature(signing_key, to_sign.as_bytes());
    if !bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        return Err(reject("InvalidSignatureException", MISMATCH));
    }
    Ok(Verified { access_key_id: (*key_id).to_owned(), region: (*region).to_owned() })
}

struct Authorization<'a> {
    scope: Vec<&'a str>,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, String> {
    let Some(rest) = value.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err("Authorization header must start with the algorithm 'AWS4-HMAC-SHA256'.".into());
    };
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let need = |name: &str| format!("Authorization header requires '{name}' parameter.");
    Ok(Authorization {
        scope: credential.ok_or_else(|| need("Credential"))?.split('/').collect(),
        signed_headers: signed.ok_or_else(|| need("SignedHeaders"))?.split(';').collect(),
        signature: signature.ok_or_else(|| need("Signature"))?,
    })
}

/// `YYYYMMDDTHHMMSSZ` → a time; `None` if malformed.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(num(0..4)?).ok()?, month, u8::try_from(num(6..8)?).ok()?).ok()?;
    let t = time::Time::from_hms(
        u8::try_from(num(9..11)?).ok()?,
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(13..15)?).ok()?,
    )
    .ok()?;
    let secs = u64::try_from(time::PrimitiveDateTime::new(date, t).assume_utc().unix_timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn format_amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let dt = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Unreserved characters (RFC 3986) stay; everything else is `%XX`.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// The same, keeping `/` for paths.
const PATH: &AsciiSet = &STRICT.remove(b'/');

/// The canonical request of SigV4 (AWS's "Create a canonical request").
pub(crate) fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &[&str],
    normalize: bool,
) -> Result<String, String> {
    let (path, query) = req.target.split_once('?').unwrap_or((req.target, ""));
    let path = if path.is_empty() { "/" } else { path };
    let path = if normalize { normalize_path(path) } else { path.to_owned() };
    // The path on the wire is already encoded once; every service but S3
    // signs it encoded a second time (`%` becomes `%25`).
    let mut out = format!("{}\n{}\n", req.method, utf8_percent_encode(&path, PATH));

    let mut params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (utf8_percent_encode(&k, STRICT).to_string(), utf8_percent_encode(&v, STRICT).to_string()))
        .collect();
    params.sort();
    for (i, (k, v)) in params.iter().enumerate() {
        let _ = write!(out, "{}{k}={v}", if i == 0 { "" } else { "&" });
    }
    out.push('\n');

    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(format!("The request is missing the signed header '{name}'."));
        }
        let _ = writeln!(out, "{name}:{}", values.join(","));
    }
    let _ = write!(out, "\n{}\n", signed_headers.join(";"));

    let computed = hex::encode(Sha256::digest(req.body));
    let sent = req.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("x-amz-content-sha256")).map(|(_, v)| *v);
    match sent {
        Some(hash) if hash != computed => {
            return Err("The provided 'x-amz-content-sha256' header does not match what was computed.".into());
        }
        _ => out.push_str(&computed),
    }
    Ok(out)
}

/// RFC 3986 `remove_dot_segments`, with empty segments dropped as AWS does
/// (`//a//` signs as `/a/`).
fn normalize_path(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut out = format!("/{}", kept.join("/"));
    if trailing && !kept.is_empty() {
        out.push('/');
    }
    out
}

pub(crate) fn string_to_sign(amz_date: &str, scope: &[&str], canonical: &str) -> String {
    format!("AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}", scope.join("/"), hex::encode(Sha256::digest(canonical)))
}

#[cfg(test)]
mod tests;
