//! `kind = "azure"`, `"bedrock"`, `"vertex"`: their settings tables, the
//! names that go into URLs, and the rules they add to the common keys.

use super::*;
use crate::config::cloud::{AzureApiConfig, CloudConfig};

fn azure(extra: &str) -> String {
    with(&format!("[[providers]]\nname = \"az\"\nkind = \"azure\"\n{extra}"))
}

#[test]
fn azure_endpoint_from_resource_or_base_url() {
    let c = load_ok(&azure(
        "api_key = \"k-123456\"\nazure = { resource = \"Contoso-East\", api_version = \"2024-10-21\" }\n",
    ));
    let p = &c.providers[1];
    assert_eq!(p.kind, ProviderKind::Azure);
    assert_eq!(p.base_url, "https://contoso-east.openai.azure.com");
    let CloudConfig::Azure(a) = &p.cloud else { panic!("{:?}", p.cloud) };
    assert_eq!(a.api, AzureApiConfig::Deployments { api_version: "2024-10-21".into() });
    assert!(a.entra.is_none());
    let c = load_ok(&azure(
        "base_url = \"https://x.cognitiveservices.azure.com/\"\n[providers.azure]\napi = \"v1\"\n\
         [providers.azure.entra]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"app\"\nclient_secret = \"${SECRET}\"\n",
    ));
    let p = &c.providers[1];
    assert_eq!(p.base_url, "https://x.cognitiveservices.azure.com");
    let CloudConfig::Azure(a) = &p.cloud else { panic!() };
    assert_eq!(a.api, AzureApiConfig::V1 { api_version: None });
    assert_eq!(a.entra.as_ref().unwrap().client_secret.expose(), "test-value-of-SECRET");
}

#[test]
fn azure_rules() {
    let e =
        only_at(&azure("api_key = \"k-123456\"\nazure = { api_version = \"2024-10-21\" }\n"), "providers[1].base_url");
    assert!(e.message.contains("resource"), "{e}");
    let e = one(&azure("api_key = \"k-123456\"\nazure = { resource = \"evil.com/x\", api_version = \"v\" }\n"));
    assert_eq!(e.key, "providers[1].azure.resource");
    let e = one(&azure("api_key = \"k-123456\"\nazure = { resource = \"cc\", api_version = \"2024&x=1\" }\n"));
    assert_eq!(e.key, "providers[1].azure.api_version");
    let e = one(&azure("api_key = \"k-123456\"\nazure = { resource = \"contoso\" }\n"));
    assert_eq!(e.key, "providers[1].azure.api_version");
    assert!(e.message.contains("v1"), "{e}");
    let e = one(&azure("azure = { resource = \"contoso\", api = \"v1\" }\n"));
    assert_eq!(e.key, "providers[1].api_key");
    assert!(e.message.contains("entra"), "{e}");
    let e = one(&azure(
        "api_key = \"k-123456\"\n[providers.azure]\nresource = \"contoso\"\napi = \"v1\"\n\
         [providers.azure.entra]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s-123456\"\n",
    ));
    assert_eq!(e.key, "providers[1].azure.entra");
    // A bad tenant and an unknown key, both in one pass.
    let keys: Vec<String> = errs(&azure(
        "[providers.azure]\nresource = \"contoso\"\napi = \"v1\"\n\
         [providers.azure.entra]\ntenant_id = \"a/b\"\nclient_id = \"c\"\nclient_secret = \"s-123456\"\nscope = \"x\"\n",
    ))
    .into_iter()
    .map(|e| e.key)
    .collect();
    assert_eq!(keys, ["providers[1].azure.entra.tenant_id", "providers[1].azure.entra.scope"]);
    let e = one(&azure("api_key = \"k-123456\"\nazure = { resource = \"contoso\", api = \"v2\" }\n"));
    assert_eq!(e.key, "providers[1].azure.api");
    // An Entra token cannot sit in a probe's fixed request.
    let e = one(&azure(
        "health_probe_interval_ms = 1000\n[providers.azure]\nresource = \"contoso\"\napi = \"v1\"\n\
         [providers.azure.entra]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s-123456\"\n",
    ));
    assert_eq!(e.key, "providers[1].health_probe_interval_ms");
    // The key goes in the api-key header.
    let e = one(&azure(
        "api_key = \"k-123456\"\nheaders = { \"Api-Key\" = \"x\" }\nazure = { resource = \"c1\", api = \"v1\" }\n",
    ));
    assert_eq!(e.key, "providers[1].headers.api-key");
    // Tables of other kinds.
    let e = one(&with("[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nazure = {}\n"));
    assert_eq!(e.key, "providers[1].azure");
}

#[test]
fn azure_deployment_names_are_checked() {
    let text = format!(
        "{}[[models]]\nname = \"bad\"\ndeployments = [{{ provider = \"az\", model = \"gpt/4o?x\" }}]\n",
        azure("api_key = \"k-123456\"\nazure = { resource = \"contoso\", api_version = \"2024-10-21\" }\n")
    );
    let e = one(&text);
    assert_eq!(e.key, "models[1].deployments[0].model");
    assert!(e.message.contains("Azure deployment name"), "{e}");
}

fn vertex(table: &str) -> String {
    with(&format!("[[providers]]\nname = \"vx\"\nkind = \"vertex\"\nvertex = {{ {table} }}\n"))
}

#[test]
fn vertex_settings_and_endpoints() {
    let c = load_ok(&vertex("location = \"europe-west1\", project = \"my-proj\""));
    let p = &c.providers[1];
    assert_eq!(p.kind, ProviderKind::Vertex);
    assert_eq!(p.base_url, "https://europe-west1-aiplatform.googleapis.com");
    let CloudConfig::Vertex(v) = &p.cloud else { panic!() };
    assert_eq!(
        (v.project.as_deref(), v.location.as_str(), v.metadata_server),
        (Some("my-proj"), "europe-west1", false)
    );
    let c = load_ok(&vertex(
        "location = \"global\", credentials_file = \"/k.json\", token_url = \"http://127.0.0.1:9/token\"",
    ));
    let p = &c.providers[1];
    assert_eq!(p.base_url, "https://aiplatform.googleapis.com");
    let CloudConfig::Vertex(v) = &p.cloud else { panic!() };
    assert_eq!(v.credentials_file.as_deref(), Some(std::path::Path::new("/k.json")));
    assert_eq!(v.token_url.as_deref(), Some("http://127.0.0.1:9/token"));
}

#[test]
fn vertex_rules() {
    let e = one(&vertex("location = \"us_central1\""));
    assert_eq!(e.key, "providers[1].vertex.location");
    let e = one(&vertex("location = \"us-central1\", project = \"My Project\""));
    assert_eq!(e.key, "providers[1].vertex.project");
    let e = one(&vertex("location = \"us-central1\", token_url = \"ftp://x\""));
    assert_eq!(e.key, "providers[1].vertex.token_url");
    let e = one(&vertex("location = \"us-central1\", region = \"x\""));
    assert_eq!(e.key, "providers[1].vertex.region");
    let e = one(&with("[[providers]]\nname = \"vx\"\nkind = \"vertex\"\n"));
    assert_eq!(e.key, "providers[1].vertex");
    let e = one(&with(
        "[[providers]]\nname = \"vx\"\nkind = \"vertex\"\napi_key = \"AIza-123456\"\nvertex = { location = \"us-central1\" }\n",
    ));
    assert_eq!(e.key, "providers[1].api_key");
    assert!(e.message.contains("credentials_file"), "{e}");
    let e = one(&with(
        "[[providers]]\nname = \"vx\"\nkind = \"vertex\"\nhealth_probe_interval_ms = 5\nvertex = { location = \"us-central1\" }\n",
    ));
    assert_eq!(e.key, "providers[1].health_probe_interval_ms");
    let text = format!(
        "{}[[models]]\nname = \"bad\"\ndeployments = [{{ provider = \"vx\", model = \"gemini:rawPredict\" }}]\n",
        vertex("location = \"us-central1\"")
    );
    let e = one(&text);
    assert_eq!(e.key, "models[1].deployments[0].model");
}

#[test]
fn vertex_captures_the_environment_adc_reads() {
    let c = load(
        &vertex("location = \"us-central1\""),
        "t.toml",
        &FakeEnv(HashMap::from([("GOOGLE_APPLICATION_CREDENTIALS", "/sa.json")])),
    )
    .unwrap();
    assert_eq!(c.providers[1].cloud_env.get("GOOGLE_APPLICATION_CREDENTIALS").as_deref(), Some("/sa.json"));
    // Only the names ADC reads, and none for other kinds.
    assert_eq!(c.providers[1].cloud_env.get("AWS_ACCESS_KEY_ID"), None);
    assert_eq!(c.providers[0].cloud_env.get("HOME"), None);
}

fn bedrock(table: &str) -> String {
    with(&format!("[[providers]]\nname = \"br\"\nkind = \"bedrock\"\nbedrock = {{ {table} }}\n"))
}

#[test]
fn bedrock_settings_and_endpoint() {
    let c = load_ok(&bedrock(
        "region = \"eu-central-1\", profile = \"prod\", sts_endpoint = \"https://sts.eu-central-1.amazonaws.com/\"",
    ));
    let p = &c.providers[1];
    assert_eq!(p.kind, ProviderKind::Bedrock);
    assert_eq!(p.base_url, "https://bedrock-runtime.eu-central-1.amazonaws.com");
    let CloudConfig::Bedrock(b) = &p.cloud else { panic!() };
    assert_eq!((b.region.as_str(), b.profile.as_deref()), ("eu-central-1", Some("prod")));
    assert_eq!(b.sts_endpoint.as_deref(), Some("https://sts.eu-central-1.amazonaws.com"));
    // AWS's variables, captured at load for this provider only.
    assert!(p.cloud_env.get("AWS_ACCESS_KEY_ID").is_some());
    assert!(c.providers[0].cloud_env.get("AWS_ACCESS_KEY_ID").is_none());
}

#[test]
fn bedrock_rules() {
    let e = one(&bedrock("region = \"us-east-1.evil.com\""));
    assert_eq!(e.key, "providers[1].bedrock.region");
    assert!(e.message.contains("AWS region"), "{e}");
    let e = one(&bedrock("region = \"us-east-1\", profile = \"a b\""));
    assert_eq!(e.key, "providers[1].bedrock.profile");
    let e = one(&bedrock("region = \"us-east-1\", access_key_id = \"AKID\""));
    assert_eq!(e.key, "providers[1].bedrock.access_key_id", "AWS keys are never read from the file");
    let e = one(&bedrock("profile = \"prod\""));
    assert_eq!(e.key, "providers[1].bedrock.region");
    let e = one(&with("[[providers]]\nname = \"br\"\nkind = \"bedrock\"\n"));
    assert_eq!(e.key, "providers[1].bedrock");
    let e = one(&with(
        "[[providers]]\nname = \"br\"\nkind = \"bedrock\"\napi_key = \"${AWS_SECRET_ACCESS_KEY}\"\nbedrock = { region = \"us-east-1\" }\n",
    ));
    assert_eq!(e.key, "providers[1].api_key");
    assert!(!e.message.contains("test-value-of-AWS_SECRET_ACCESS_KEY"));
    let e = one(&with(
        "[[providers]]\nname = \"br\"\nkind = \"bedrock\"\nheaders = { authorization = \"x\" }\nbedrock = { region = \"us-east-1\" }\n",
    ));
    assert_eq!(e.key, "providers[1].headers.authorization");
    assert!(e.message.contains("SigV4"), "{e}");
    let e = one(&with(
        "[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nbedrock = { region = \"us-east-1\" }\n",
    ));
    assert_eq!(e.key, "providers[1].bedrock");
}
