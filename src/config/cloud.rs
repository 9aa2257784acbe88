//! The settings of the three cloud provider kinds (`azure`, `bedrock`,
//! `vertex`), as validated. Where credentials come from is decided here;
//! fetching and refreshing them is `crate::cloud`'s job.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::{Env, Secret};

/// The environment variables a cloud's credential chain reads, as they were
/// when the config was loaded — the moment `${VAR}`s are read too — so a
/// provider resolves its credentials from one known snapshot (and tests can
/// give each gateway its own). Values are kept as secrets.
#[derive(Clone, Default)]
pub struct CloudEnv(BTreeMap<String, Secret>);

impl CloudEnv {
    pub fn capture(env: &dyn Env, names: &[&str]) -> CloudEnv {
        CloudEnv(names.iter().filter_map(|n| Some(((*n).to_owned(), Secret::new(env.get(n)?)))).collect())
    }
}

impl Env for CloudEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|s| s.expose().to_owned())
    }
}

impl fmt::Debug for CloudEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: AWS_SECRET_ACCESS_KEY's value must never be printed.
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What AWS's SDKs read to find credentials and the STS region.
pub const AWS_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "HOME",
    "USERPROFILE",
];

/// What Google's application-default credentials read.
pub const GOOGLE_VARS: &[&str] = &["GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "GCE_METADATA_HOST", "HOME"];

/// A provider's cloud settings; `None` for the other kinds.
#[derive(Debug, Clone, Default)]
pub enum CloudConfig {
    #[default]
    None,
    Azure(AzureConfig),
    Bedrock(BedrockConfig),
    Vertex(VertexConfig),
}

/// `[providers.azure]`. The endpoint itself (`https://{resource}.openai.azure.com`
/// or `base_url`) is the provider's `base_url`.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    pub api: AzureApiConfig,
    /// Entra ID client credentials instead of the provider's `api_key`.
    pub entra: Option<EntraConfig>,
}

/// Which URL family: `/openai/deployments/{deployment}/…?api-version=` or `/openai/v1/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureApiConfig {
    Deployments { api_version: String },
    V1 { api_version: Option<String> },
}

/// `[providers.azure.entra]`: a Microsoft Entra ID app registration.
#[derive(Debug, Clone)]
pub struct EntraConfig {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// `https://login.microsoftonline.com` unless set (sovereign clouds, the mock).
    pub authority: Option<String>,
}

/// `[providers.bedrock]`. Credentials never come from the file: the
/// environment, the shared AWS files or web identity, as AWS's SDKs find them.
#[derive(Debug, Clone)]
pub struct BedrockConfig {
    pub region: String,
    /// A profile of the shared files instead of `AWS_PROFILE`.
    pub profile: Option<String>,
    /// The STS endpoint for web identity (tests, VPC endpoints).
    pub sts_endpoint: Option<String>,
}

/// `[providers.vertex]`.
#[derive(Debug, Clone)]
pub struct VertexConfig {
    /// `None`: the project named by the credentials (a service-account key's `project_id`).
    pub project: Option<String>,
    /// A region (`us-central1`) or `global`.
    pub location: String,
    /// A service-account or authorized-user JSON file; else application-default credentials.
    pub credentials_file: Option<PathBuf>,
    /// Ask the GCE metadata server when no credentials file is found.
    pub metadata_server: bool,
    /// Overrides the token endpoint a key file names (tests, private endpoints).
    pub token_url: Option<String>,
}

/// The base URL a cloud provider uses when the config does not set one.
pub fn default_base_url(cloud: &CloudConfig) -> Option<String> {
    match cloud {
        CloudConfig::Bedrock(b) => Some(format!("https://bedrock-runtime.{}.amazonaws.com", b.region)),
        CloudConfig::Vertex(v) if v.location == "global" => Some("https://aiplatform.googleapis.com".to_owned()),
        CloudConfig::Vertex(v) => Some(format!("https://{}-aiplatform.googleapis.com", v.location)),
        CloudConfig::Azure(_) | CloudConfig::None => None,
    }
}

/// Names that go into a URL's host or path: checked at load so that no
/// value can add a path segment, a query or another host.
pub mod names {
    /// An AWS region: `us-east-1`, `eu-central-2`, `us-gov-west-1`.
    pub fn aws_region(s: &str) -> bool {
        s.len() <= 32
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.ends_with(|c: char| c.is_ascii_digit())
            && s.contains('-')
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    /// A Google Cloud project id or location: lower-case letters, digits, hyphens.
    pub fn google_id(s: &str) -> bool {
        !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    /// An Azure resource name: the subdomain of `{resource}.openai.azure.com`.
    pub fn azure_resource(s: &str) -> bool {
        (2..=64).contains(&s.len())
            && !s.starts_with('-')
            && !s.ends_with('-')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }

    /// An `api-version`: `2024-10-21`, `2025-04-01-preview`, `preview`.
    pub fn azure_api_version(s: &str) -> bool {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    }

    /// An Azure deployment name (one path segment).
    pub fn azure_deployment(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// A Vertex model id: `gemini-2.5-flash`, `claude-sonnet-4@20250514`.
    pub fn vertex_model(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    }

    /// An Entra tenant: a GUID or a verified domain.
    pub fn entra_tenant(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn regions_and_names() {
            for ok in ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-4"] {
                assert!(aws_region(ok), "{ok}");
            }
            for bad in ["", "us-east", "US-EAST-1", "us_east_1", "us-east-1.evil.com", "1-us"] {
                assert!(!aws_region(bad), "{bad}");
            }
            assert!(google_id("us-central1") && google_id("global") && !google_id("us_central1"));
            assert!(azure_resource("contoso-east") && !azure_resource("evil.com/x") && !azure_resource("-a"));
            assert!(azure_api_version("2024-10-21") && !azure_api_version("2024&x=1"));
            assert!(azure_deployment("gpt-4o") && !azure_deployment("a/b") && !azure_deployment(".."));
            assert!(vertex_model("claude-sonnet-4@20250514") && !vertex_model("m:rawPredict"));
        }
    }
}
