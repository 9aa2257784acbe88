use std::sync::Arc;

use super::*;
use crate::cloud::aws::tests::{env, transport};
use crate::cloud::google::jwt::tests::TEST_ONLY_KEY_PEM;
use crate::cloud::token::DEFAULT_SKEW;
use crate::cloud::transport::testing::{form, serve};

fn sa_json() -> String {
    sonic_rs::json!({
        "type": "service_account",
        "project_id": "p1",
        "private_key_id": "k1",
        "private_key": TEST_ONLY_KEY_PEM,
        "client_email": "sa@p1.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

fn user_json() -> &'static str {
    r#"{"type":"authorized_user","client_id":"cid.apps.googleusercontent.com","client_secret":"csecret","refresh_token":"1//rtoken","quota_project_id":"qp"}"#
}

#[test]
fn adc_order_explicit_then_env_then_well_known_then_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap();
    let explicit = dir.path().join("explicit.json");
    std::fs::write(&explicit, sa_json()).unwrap();
    let env_file = dir.path().join("env.json");
    std::fs::write(&env_file, user_json()).unwrap();
    std::fs::create_dir_all(dir.path().join(".config/gcloud")).unwrap();
    std::fs::write(dir.path().join(".config/gcloud/application_default_credentials.json"), user_json()).unwrap();

    let with_file = GoogleSettings { credentials_file: Some(explicit.clone()), ..GoogleSettings::default() };
    let e = env(&[("HOME", home), ("GOOGLE_APPLICATION_CREDENTIALS", env_file.to_str().unwrap())]);
    let a = resolve(&e, &with_file, transport()).unwrap();
    assert!(matches!(a.source, GoogleSource::ServiceAccount(_)));
    assert!(a.describe().contains("sa@p1.iam.gserviceaccount.com") && a.describe().contains("explicit.json"));

    let a = resolve(&e, &GoogleSettings::default(), transport()).unwrap();
    assert!(matches!(a.source, GoogleSource::AuthorizedUser(_)));
    assert_eq!(a.origin, env_file.display().to_string());
    assert_eq!(a.project_id(), Some("qp"));

    let e = env(&[("HOME", home)]);
    let a = resolve(&e, &GoogleSettings::default(), transport()).unwrap();
    assert!(a.origin.ends_with(".config/gcloud/application_default_credentials.json"), "{}", a.origin);

    let empty = tempfile::tempdir().unwrap();
    let e = env(&[("HOME", empty.path().to_str().unwrap())]);
    let err = resolve(&e, &GoogleSettings::default(), transport()).err().unwrap().to_string();
    assert!(err.contains("GOOGLE_APPLICATION_CREDENTIALS") && err.contains("metadata server"), "{err}");
    let meta = GoogleSettings { metadata_server: true, ..GoogleSettings::default() };
    let a = resolve(&e, &meta, transport()).unwrap();
    assert!(matches!(&a.source, GoogleSource::Metadata(b) if b == METADATA_BASE));
    let e = env(&[("HOME", empty.path().to_str().unwrap()), ("GCE_METADATA_HOST", "127.0.0.1:8081")]);
    let a = resolve(&e, &GoogleSettings::default(), transport()).unwrap();
    assert!(matches!(&a.source, GoogleSource::Metadata(b) if b == "http://127.0.0.1:8081"));
}

#[test]
fn a_named_file_that_is_missing_or_wrong_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(&[("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")]);
    let err = resolve(&e, &GoogleSettings::default(), transport()).err().unwrap().to_string();
    assert!(err.contains("/nonexistent/key.json"), "{err}");
    for (json, says) in [
        (r#"{"type":"external_account"}"#, "\"external_account\" are not supported"),
        (r#"{"client_email":"x"}"#, "no \"type\""),
        (r#"{"type":"service_account","client_email":"x"}"#, "no \"private_key\""),
        (r#"{"type":"service_account","client_email":"x","private_key":"junk"}"#, "PKCS#8"),
        ("not json", "not a Google credentials JSON file"),
    ] {
        let p = dir.path().join("k.json");
        std::fs::write(&p, json).unwrap();
        let s = GoogleSettings { credentials_file: Some(p), ..GoogleSettings::default() };
        let err = resolve(&env(&[]), &s, transport()).err().unwrap().to_string();
        assert!(err.contains(says), "{json}: {err}");
    }
}

#[tokio::test]
async fn authorized_user_refresh_over_http() {
    let server = serve(Arc::new(|seen| {
        let f = form(&seen.body);
        if f.get("grant_type").map(String::as_str) == Some("refresh_token") && f["refresh_token"] == "1//rtoken" {
            assert_eq!(f["client_secret"], "csecret");
            (200, r#"{"access_token":"ya29.user","expires_in":3599,"token_type":"Bearer"}"#.into())
        } else {
            (400, r#"{"error":"invalid_grant","error_description":"Bad Request"}"#.into())
        }
    }))
    .await;
    let settings = GoogleSettings { token_uri: Some(server.url("/token")), ..GoogleSettings::default() };
    let source = from_json(user_json().as_bytes(), "adc.json", &settings).unwrap();
    let cache = TokenCache::new(GoogleAuth::new(source, "adc.json".into(), transport()), DEFAULT_SKEW);
    assert_eq!(cache.get().await.unwrap().expose(), "ya29.user");
    assert_eq!(cache.get().await.unwrap().expose(), "ya29.user");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn metadata_server_over_http_sends_the_flavor_header() {
    let server = serve(Arc::new(|seen| {
        let flavored = seen.headers.get("metadata-flavor").is_some_and(|v| v == "Google");
        let path_ok = seen.uri.ends_with("/computeMetadata/v1/instance/service-accounts/default/token");
        if flavored && path_ok && seen.method == "GET" {
            (200, r#"{"access_token":"ya29.gce","expires_in":1800,"token_type":"Bearer"}"#.into())
        } else {
            (403, "Missing Metadata-Flavor:Google header.".into())
        }
    }))
    .await;
    let base = format!("http://{}", server.addr);
    let auth = GoogleAuth::new(GoogleSource::Metadata(base), "metadata server".into(), transport());
    let cache = TokenCache::new(auth, DEFAULT_SKEW);
    assert_eq!(cache.get().await.unwrap().expose(), "ya29.gce");
}

#[test]
fn assertions_carry_the_claims_google_asks_for() {
    let settings = GoogleSettings { token_uri: Some("http://127.0.0.1:1/token".into()), ..GoogleSettings::default() };
    let GoogleSource::ServiceAccount(sa) = from_json(sa_json().as_bytes(), "k", &settings).unwrap() else {
        panic!("expected a service account");
    };
    let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let jwt = sa.assertion(t).unwrap();
    let claims = jwt::verify_rs256(&jwt, &jwt::tests::signer().public_key_der()).unwrap();
    let v: sonic_rs::Value = sonic_rs::from_slice(&claims).unwrap();
    use sonic_rs::JsonValueTrait;
    assert_eq!(v["iss"].as_str(), Some("sa@p1.iam.gserviceaccount.com"));
    assert_eq!(v["aud"].as_str(), Some("http://127.0.0.1:1/token"));
    assert_eq!(v["scope"].as_str(), Some(CLOUD_PLATFORM_SCOPE));
    assert_eq!(v["iat"].as_u64(), Some(1_700_000_000));
    assert_eq!(v["exp"].as_u64(), Some(1_700_003_600));
}
