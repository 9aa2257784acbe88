//! AWS: where credentials come from, SigV4 signing, and Bedrock's binary
//! event-stream framing.
//!
//! Credentials are looked up in the order AWS's SDKs use, stopping at the
//! first that is configured: the environment (`AWS_ACCESS_KEY_ID`, ...), the
//! shared files' profile (`AWS_PROFILE`, `~/.aws/credentials` and
//! `~/.aws/config`, keys or a web-identity role), then the environment's web
//! identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as EKS sets
//! them). Every source sits behind one [`TokenCache`], so STS is called once
//! per expiry however many requests sign at once, and profile files are
//! re-read every few minutes so a rotated key is picked up without a restart.

pub mod eventstream;
mod profile;
pub mod sign;
mod web_identity;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Env, Secret};

use super::CredentialError;
use super::token::{Refresh, Token, TokenCache};
use super::transport::HttpTransport;

pub use profile::{ProfileFiles, profile_region};
pub use web_identity::{WebIdentity, sts_endpoint};

/// One set of AWS credentials. The access key id is not a secret (AWS puts
/// it in every `Authorization` header) but is shortened in `Debug` anyway.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.access_key_id.chars().take(4).collect();
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &format_args!("{shown}…"))
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How often credentials read from the shared files are read again.
pub const PROFILE_RELOAD: Duration = Duration::from_secs(300);

/// Where one provider's credentials come from.
pub enum AwsSource {
    /// Keys from the process environment (fixed for the process's life).
    Environment(AwsCredentials),
    /// Keys from a profile of the shared files, re-read every [`PROFILE_RELOAD`].
    Profile { files: ProfileFiles, profile: String },
    /// STS AssumeRoleWithWebIdentity with a token file that the platform rotates.
    WebIdentity(WebIdentity),
}

impl AwsSource {
    /// Which source this is, for `/status` and logs (no secrets).
    pub fn describe(&self) -> String {
        match self {
            AwsSource::Environment(_) => "environment (AWS_ACCESS_KEY_ID)".to_owned(),
            AwsSource::Profile { files, profile } => format!("profile {profile:?} of {}", files.describe()),
            AwsSource::WebIdentity(w) => w.describe(),
        }
    }
}

impl Refresh for AwsSource {
    type Value = AwsCredentials;
    async fn fetch(&self) -> Result<Token<AwsCredentials>, CredentialError> {
        match self {
            AwsSource::Environment(c) => Ok(Token::new(c.clone(), None)),
            // A blocking read of a small file, once per PROFILE_RELOAD: not
            // worth a thread hop.
            AwsSource::Profile { files, profile } => match files.load(profile)? {
                profile::ProfileCredentials::Keys(c) => Ok(Token::valid_for(c, PROFILE_RELOAD)),
                profile::ProfileCredentials::WebIdentity { .. } => Err(CredentialError::Invalid {
                    what: "AWS profile",
                    message: format!("profile {profile:?} changed from keys to a web-identity role; restart to use it"),
                }),
            },
            AwsSource::WebIdentity(w) => w.fetch().await,
        }
    }
}

/// The credentials of one provider: cached, refreshed before expiry.
pub type AwsCredentialsProvider = TokenCache<AwsSource>;

/// Explicit settings that win over the environment (from the provider's config).
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// A profile name instead of `AWS_PROFILE`.
    pub profile: Option<String>,
    /// The region, used to pick the regional STS endpoint.
    pub region: Option<String>,
    /// STS endpoint override (tests, VPC endpoints).
    pub sts_endpoint: Option<String>,
}

/// Finds the first configured source, in the SDKs' order (module doc). An
/// error lists every place looked at when none is configured, and names the
/// broken one when one is configured wrongly.
pub fn resolve(
    env: &dyn Env,
    settings: &AwsSettings,
    transport: Arc<dyn HttpTransport>,
) -> Result<AwsSource, CredentialError> {
    if let Some(creds) = from_env(env)? {
        return Ok(AwsSource::Environment(creds));
    }
    let files = ProfileFiles::from_env(env);
    let profile = settings.profile.clone().or_else(|| env.get("AWS_PROFILE")).unwrap_or_else(|| "default".to_owned());
    let region = settings.region.clone().or_else(|| env.get("AWS_REGION")).or_else(|| env.get("AWS_DEFAULT_REGION"));
    let sts = |region: Option<&str>| settings.sts_endpoint.clone().unwrap_or_else(|| sts_endpoint(region));
    match files.load(&profile) {
        Ok(profile::ProfileCredentials::Keys(_)) => return Ok(AwsSource::Profile { files, profile }),
        Ok(profile::ProfileCredentials::WebIdentity { role_arn, token_file, session_name }) => {
            let region = region.or_else(|| files.region(&profile));
            return Ok(AwsSource::WebIdentity(WebIdentity {
                role_arn,
                token_file,
                session_name,
                endpoint: sts(region.as_deref()),
                transport,
            }));
        }
        // A profile that was asked for by name must exist; the implicit
        // "default" may be absent (then the next source is tried).
        Err(e @ CredentialError::Missing { .. }) if settings.profile.is_some() || env.get("AWS_PROFILE").is_some() => {
            return Err(e);
        }
        Err(CredentialError::Missing { .. }) => {}
        Err(e) => return Err(e),
    }
    if let (Some(token_file), Some(role_arn)) = (env.get("AWS_WEB_IDENTITY_TOKEN_FILE"), env.get("AWS_ROLE_ARN")) {
        return Ok(AwsSource::WebIdentity(WebIdentity {
            role_arn,
            token_file: PathBuf::from(token_file),
            session_name: env.get("AWS_ROLE_SESSION_NAME"),
            endpoint: sts(region.as_deref()),
            transport,
        }));
    }
    Err(CredentialError::Missing {
        cloud: "AWS",
        tried: format!(
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set; profile {profile:?} is in neither {}; \
             AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are not both set",
            files.describe()
        ),
    })
}

fn from_env(env: &dyn Env) -> Result<Option<AwsCredentials>, CredentialError> {
    let id = env.get("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty());
    let secret = env.get("AWS_SECRET_ACCESS_KEY").filter(|v| !v.is_empty());
    match (id, secret) {
        (Some(access_key_id), Some(secret)) => Ok(Some(AwsCredentials {
            access_key_id,
            secret_access_key: Secret::new(secret),
            session_token: env.get("AWS_SESSION_TOKEN").filter(|v| !v.is_empty()).map(Secret::new),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(CredentialError::Invalid {
            what: "AWS environment",
            message: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
        }),
        (None, Some(_)) => Err(CredentialError::Invalid {
            what: "AWS environment",
            message: "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cloud::token::DEFAULT_SKEW;
    use crate::cloud::transport::HyperTransport;

    pub struct FakeEnv(pub HashMap<String, String>);
    impl Env for FakeEnv {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }
    pub fn env(pairs: &[(&str, &str)]) -> FakeEnv {
        FakeEnv(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
    pub fn transport() -> Arc<dyn HttpTransport> {
        Arc::new(HyperTransport::new(Duration::from_secs(5)).unwrap())
    }

    #[tokio::test]
    async fn environment_keys_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let e = env(&[
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_SESSION_TOKEN", "envtoken"),
            ("HOME", dir.path().to_str().unwrap()),
        ]);
        let source = resolve(&e, &AwsSettings::default(), transport()).unwrap();
        assert!(source.describe().contains("environment"));
        let cache = TokenCache::new(source, DEFAULT_SKEW);
        let c = cache.get().await.unwrap();
        assert_eq!(c.access_key_id, "AKIDENV");
        assert_eq!(c.secret_access_key.expose(), "envsecret");
        assert_eq!(c.session_token.unwrap().expose(), "envtoken");
        let shown = format!("{:?}", cache.get().await.unwrap());
        assert!(!shown.contains("envsecret") && !shown.contains("envtoken") && !shown.contains("AKIDENV"), "{shown}");
    }

    /// A key rotated in the credentials file is used within PROFILE_RELOAD,
    /// without a restart (paused clock: the reload interval is simulated).
    #[tokio::test(start_paused = true)]
    async fn a_key_rotated_in_the_profile_file_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(&file, "[default]\naws_access_key_id=AKIDOLD\naws_secret_access_key=old\n").unwrap();
        let e = env(&[("HOME", dir.path().to_str().unwrap()), ("AWS_SHARED_CREDENTIALS_FILE", file.to_str().unwrap())]);
        let source = resolve(&e, &AwsSettings::default(), transport()).unwrap();
        let cache = TokenCache::new(source, Duration::from_secs(30));
        assert_eq!(cache.get().await.unwrap().access_key_id, "AKIDOLD");
        std::fs::write(&file, "[default]\naws_access_key_id=AKIDNEW\naws_secret_access_key=new\n").unwrap();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(cache.get().await.unwrap().access_key_id, "AKIDOLD", "not re-read before the interval");
        tokio::time::advance(PROFILE_RELOAD).await;
        let c = cache.get().await.unwrap();
        assert_eq!((c.access_key_id.as_str(), c.secret_access_key.expose()), ("AKIDNEW", "new"));
    }

    #[test]
    fn half_set_environment_is_an_error_not_a_fallthrough() {
        let e = env(&[("AWS_ACCESS_KEY_ID", "AKID")]);
        let err = resolve(&e, &AwsSettings::default(), transport()).err().unwrap().to_string();
        assert!(err.contains("AWS_SECRET_ACCESS_KEY is not"), "{err}");
    }

    #[test]
    fn nothing_configured_lists_every_place_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let e = env(&[("HOME", dir.path().to_str().unwrap())]);
        let err = resolve(&e, &AwsSettings::default(), transport()).err().unwrap().to_string();
        for part in ["AWS_ACCESS_KEY_ID", "profile \"default\"", ".aws/credentials", "AWS_WEB_IDENTITY_TOKEN_FILE"] {
            assert!(err.contains(part), "{part} missing from {err}");
        }
    }

    #[test]
    fn a_named_profile_that_does_not_exist_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id=A\naws_secret_access_key=B\n",
        )
        .unwrap();
        let e = env(&[("HOME", dir.path().to_str().unwrap()), ("AWS_PROFILE", "prod")]);
        let err = resolve(&e, &AwsSettings::default(), transport()).err().unwrap().to_string();
        assert!(err.contains("\"prod\""), "{err}");
        let e = env(&[("HOME", dir.path().to_str().unwrap())]);
        assert!(matches!(resolve(&e, &AwsSettings::default(), transport()), Ok(AwsSource::Profile { .. })));
    }
}
