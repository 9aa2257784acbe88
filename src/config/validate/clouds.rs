//! `[providers.azure]`, `[providers.bedrock]` and `[providers.vertex]`: the
//! cloud kinds' settings, and the rules they add to the provider's own keys.
//!
//! Everything a URL is built from (resource, region, project, location,
//! api-version, deployment names) is checked here, so a bad name is an
//! error of `sluice check` with its line, not a failed request. Whether the
//! credentials themselves can be found is checked after the file is valid
//! (`providers::credentials::preflight`, which `sluice check` runs), since
//! that needs the cloud code above this layer.

use super::super::cloud::{AzureApiConfig, AzureConfig, BedrockConfig, CloudConfig, EntraConfig, VertexConfig, names};
use super::super::locate::join_key;
use super::super::raw::{RawAzure, RawBedrock, RawEntra, RawProvider, RawVertex, Text};
use super::super::{ProviderConfig, ProviderKind, Secret};
use super::Checker;

pub(super) const NO_API_KEY: &str = "this cloud does not take an `api_key` from Sluice's config: Bedrock \
     signs with AWS credentials (environment, ~/.aws profiles or web identity) and Vertex AI uses Google \
     credentials (credentials_file or application-default credentials); remove it";

/// The kind's settings table, and an error for a table on another kind.
pub(super) fn settings(c: &mut Checker, at: &str, kind: Option<ProviderKind>, p: &RawProvider) -> CloudConfig {
    let tables = [
        ("azure", p.azure.is_some(), ProviderKind::Azure),
        ("bedrock", p.bedrock.is_some(), ProviderKind::Bedrock),
        ("vertex", p.vertex.is_some(), ProviderKind::Vertex),
    ];
    for (table, present, owner) in tables {
        if present && kind.is_some() && kind != Some(owner) {
            c.err(join_key(at, table), format!("{table} settings apply only to kind = \"{table}\"; remove this table"));
        }
    }
    match kind {
        Some(ProviderKind::Azure) => {
            let d = RawAzure::default();
            CloudConfig::Azure(azure(c, at, p.azure.as_ref().unwrap_or(&d), p))
        }
        Some(ProviderKind::Bedrock) => match &p.bedrock {
            Some(b) => CloudConfig::Bedrock(bedrock(c, &join_key(at, "bedrock"), b)),
            None => {
                c.err(
                    join_key(at, "bedrock"),
                    "a bedrock provider needs its region: add [providers.bedrock] with region = \"us-east-1\"",
                );
                CloudConfig::None
            }
        },
        Some(ProviderKind::Vertex) => match &p.vertex {
            Some(v) => CloudConfig::Vertex(vertex(c, &join_key(at, "vertex"), v)),
            None => {
                c.err(
                    join_key(at, "vertex"),
                    "a vertex provider needs its location: add [providers.vertex] with location = \"us-central1\" \
                     (and project = \"...\" unless the credentials file names it)",
                );
                CloudConfig::None
            }
        },
        _ => CloudConfig::None,
    }
}

/// An `azure` provider's endpoint when `base_url` is left out: from `resource`.
pub(super) fn azure_endpoint(c: &mut Checker, at: &str, p: &RawProvider) -> String {
    match p.azure.as_ref().and_then(|a| a.resource.as_ref()) {
        Some(r) if names::azure_resource(&r.value) => format!("https://{}.openai.azure.com", r.value.to_lowercase()),
        Some(r) => {
            c.err(
                join_key(&join_key(at, "azure"), "resource"),
                format!(
                    "{} is not an Azure resource name (2 to 64 letters, digits and hyphens: the `contoso` of \
                     contoso.openai.azure.com)",
                    r.shown()
                ),
            );
            String::new()
        }
        None => {
            c.err(
                join_key(at, "base_url"),
                "an azure provider needs its endpoint: base_url = \"https://<resource>.openai.azure.com\", \
                 or [providers.azure] resource = \"<resource>\"",
            );
            String::new()
        }
    }
}

fn azure(c: &mut Checker, at: &str, a: &RawAzure, p: &RawProvider) -> AzureConfig {
    let aat = join_key(at, "azure");
    let path = |k: &str| join_key(&aat, k);
    if a.resource.is_some() && p.base_url.is_some() {
        c.err(path("resource"), "both base_url and azure.resource name the endpoint; keep one");
    }
    let version = a.api_version.as_ref().map(|v| {
        if !names::azure_api_version(&v.value) {
            c.err(
                path("api_version"),
                format!("{} is not an api-version such as \"2024-10-21\" or \"preview\"", v.shown()),
            );
        }
        v.value.clone()
    });
    let api = match a.api.as_ref().map(|t| (t, t.value.as_str())) {
        None | Some((_, "deployments")) => match version {
            Some(api_version) => AzureApiConfig::Deployments { api_version },
            None => {
                c.err(
                    path("api_version"),
                    "deployment URLs need an api-version: api_version = \"2024-10-21\" (or api = \"v1\" for the \
                     /openai/v1/ URLs, which need none)",
                );
                AzureApiConfig::Deployments { api_version: String::new() }
            }
        },
        Some((_, "v1")) => AzureApiConfig::V1 { api_version: version },
        Some((t, _)) => {
            c.err(
                path("api"),
                format!(
                    "unknown api {}; expected deployments (/openai/deployments/{{deployment}}/…?api-version=…) \
                     or v1 (/openai/v1/…)",
                    t.shown()
                ),
            );
            AzureApiConfig::V1 { api_version: None }
        }
    };
    let entra = a.entra.as_ref().map(|e| entra(c, &path("entra"), e));
    match (p.api_key.is_some(), entra.is_some()) {
        (true, true) => c.err(
            path("entra"),
            "both api_key and Entra ID credentials are set; keep one (Azure takes either an api-key header or \
             a bearer token)",
        ),
        (false, false) => c.err(
            join_key(at, "api_key"),
            "an azure provider needs credentials: api_key = \"${AZURE_OPENAI_API_KEY}\", or an Entra ID app in \
             [providers.azure.entra] (tenant_id, client_id, client_secret)",
        ),
        _ => {}
    }
    AzureConfig { api, entra }
}

fn entra(c: &mut Checker, at: &str, e: &RawEntra) -> EntraConfig {
    if !names::entra_tenant(&e.tenant_id.value) {
        c.err(
            join_key(at, "tenant_id"),
            format!("{} is neither a tenant GUID nor a domain such as contoso.onmicrosoft.com", e.tenant_id.shown()),
        );
    }
    if e.client_id.value.is_empty() {
        c.err(join_key(at, "client_id"), "client_id is empty; write the app registration's application (client) id");
    }
    if e.client_secret.value.is_empty() {
        c.err(join_key(at, "client_secret"), "client_secret is empty; set it, e.g. \"${AZURE_CLIENT_SECRET}\"");
    }
    c.secret_chars(&join_key(at, "client_secret"), &e.client_secret);
    let authority = e.authority.as_ref().map(|u| super::providers::base_url(c, &join_key(at, "authority"), u));
    EntraConfig {
        tenant_id: e.tenant_id.value.clone(),
        client_id: e.client_id.value.clone(),
        client_secret: Secret::new(e.client_secret.value.clone()),
        authority,
    }
}

fn bedrock(c: &mut Checker, at: &str, b: &RawBedrock) -> BedrockConfig {
    if !names::aws_region(&b.region.value) {
        c.err(join_key(at, "region"), format!("{} is not an AWS region such as \"us-east-1\"", b.region.shown()));
    }
    let profile = b.profile.as_ref().map(|t| {
        if t.value.is_empty() || t.value.contains(|ch: char| ch.is_whitespace() || ch == '[' || ch == ']') {
            c.err(join_key(at, "profile"), format!("{} is not a profile name of ~/.aws/credentials", t.shown()));
        }
        t.value.clone()
    });
    BedrockConfig {
        region: b.region.value.clone(),
        profile,
        sts_endpoint: url(c, at, "sts_endpoint", b.sts_endpoint.as_ref()),
    }
}

fn vertex(c: &mut Checker, at: &str, v: &RawVertex) -> VertexConfig {
    if !names::google_id(&v.location.value) {
        c.err(
            join_key(at, "location"),
            format!("{} is not a Vertex AI location such as \"us-central1\" or \"global\"", v.location.shown()),
        );
    }
    let project = v.project.as_ref().map(|t| {
        if !names::google_id(&t.value) {
            c.err(
                join_key(at, "project"),
                format!("{} is not a Google Cloud project id (lower-case letters, digits, hyphens)", t.shown()),
            );
        }
        t.value.clone()
    });
    let credentials_file = v.credentials_file.as_ref().map(|t| {
        if t.value.is_empty() {
            c.err(join_key(at, "credentials_file"), "credentials_file is empty; remove it to use ADC");
        }
        std::path::PathBuf::from(&t.value)
    });
    VertexConfig {
        project,
        location: v.location.value.clone(),
        credentials_file,
        metadata_server: v.metadata_server.unwrap_or(false),
        token_url: url(c, at, "token_url", v.token_url.as_ref()),
    }
}

fn url(c: &mut Checker, at: &str, key: &str, t: Option<&Text>) -> Option<String> {
    t.map(|u| super::providers::base_url(c, &join_key(at, key), u))
}

/// Rules between a cloud kind and the provider's common keys.
pub(super) fn cross_checks(
    c: &mut Checker,
    at: &str,
    kind: Option<ProviderKind>,
    cloud: &CloudConfig,
    has_api_key: bool,
    headers: &[(String, Secret)],
    health_probe_interval_ms: Option<i64>,
) {
    let fresh_auth = match (kind, cloud) {
        (Some(ProviderKind::Bedrock), _) => Some("every request is signed with SigV4"),
        (Some(ProviderKind::Vertex), _) => Some("every request carries a fresh Google access token"),
        (Some(ProviderKind::Azure), CloudConfig::Azure(a)) if a.entra.is_some() || !has_api_key => {
            Some("every request carries a fresh Entra ID token")
        }
        _ => None,
    };
    let Some(why) = fresh_auth else { return };
    if health_probe_interval_ms.is_some_and(|ms| ms > 0) {
        c.err(
            join_key(at, "health_probe_interval_ms"),
            format!(
                "health probes send a fixed request, but {why}; leave the probe off for this provider (its \
                 failures still show in /health and /status)"
            ),
        );
    }
    if headers.iter().any(|(n, _)| n == "authorization") {
        c.err(join_key(&join_key(at, "headers"), "authorization"), format!("Sluice sets `authorization`: {why}"));
    }
}

/// A deployment's upstream model name where it becomes part of a URL path.
pub(super) fn deployment_model(c: &mut Checker, path: &str, provider: &ProviderConfig, model: &Text) {
    let ok = match &provider.cloud {
        CloudConfig::Azure(AzureConfig { api: AzureApiConfig::Deployments { .. }, .. }) => {
            names::azure_deployment(&model.value)
        }
        CloudConfig::Vertex(_) => names::vertex_model(&model.value),
        CloudConfig::Azure(_) | CloudConfig::Bedrock(_) | CloudConfig::None => true,
    };
    if !ok && !model.value.is_empty() {
        let what = match provider.kind {
            ProviderKind::Vertex => "a Vertex AI model id (letters, digits, - _ . @) such as \"gemini-2.5-flash\"",
            _ => "an Azure deployment name (letters, digits, - _ .)",
        };
        c.err(path, format!("{} is not {what}", model.shown()));
    }
}
