//! The names the writer and the exporter print: the request path hands
//! them indices (a model, a deployment), never strings.

use crate::config::{Config, ProviderKind};
use crate::route::ModelTable;

#[derive(Debug, Default)]
pub struct Names {
    /// Model names by index.
    pub models: Vec<String>,
    /// Per model, per deployment.
    pub deployments: Vec<Vec<DeploymentNames>>,
}

#[derive(Debug, Clone)]
pub struct DeploymentNames {
    /// `provider/model`, as `x-sluice-deployment` says.
    pub label: String,
    pub provider: String,
    /// `gen_ai.provider.name`: the vendor, in the GenAI conventions' words.
    pub provider_system: &'static str,
    /// The model name sent upstream.
    pub upstream_model: String,
}

impl Names {
    pub fn new(config: &Config, models: &ModelTable) -> Names {
        let mut n = Names::default();
        for m in &models.models {
            n.models.push(m.name.clone());
            n.deployments.push(
                m.deployments
                    .iter()
                    .map(|d| {
                        let p = config.providers.get(d.provider);
                        DeploymentNames {
                            label: d.label.clone(),
                            provider: p.map(|p| p.name.clone()).unwrap_or_default(),
                            provider_system: p.map_or("unknown", |p| system(p.kind)),
                            upstream_model: d.model.clone(),
                        }
                    })
                    .collect(),
            );
        }
        n
    }

    pub fn model(&self, i: usize) -> &str {
        self.models.get(i).map_or("", String::as_str)
    }

    pub fn deployment(&self, model: usize, deployment: usize) -> Option<&DeploymentNames> {
        self.deployments.get(model)?.get(deployment)
    }
}

/// The GenAI conventions' `gen_ai.provider.name` of a provider kind; an
/// `openai` provider is any OpenAI-compatible server, named for the protocol.
fn system(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Mock => "sluice.mock",
        ProviderKind::Azure => "azure.ai.openai",
        ProviderKind::Bedrock => "aws.bedrock",
        ProviderKind::Vertex => "gcp.vertex_ai",
    }
}
