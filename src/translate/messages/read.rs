//! A Messages request as its translation reads it: every member optional
//! and lenient ([`crate::translate::lenient`]), so that members, blocks and
//! roles newer than the translator (or without chat meaning) are read past,
//! never refused.

use serde::Deserialize;
use sonic_rs::LazyValue;

use super::settings::{OutputConfig, OutputFormat, Thinking};
use crate::translate::lenient::{Content, Text};

#[derive(Deserialize)]
pub(super) struct MessagesRequest<'a> {
    #[serde(default)]
    pub(super) max_tokens: Option<u64>,
    #[serde(borrow, default)]
    pub(super) system: Content<'a, BlockIn<'a>>,
    #[serde(borrow, default)]
    pub(super) messages: Vec<MessageIn<'a>>,
    #[serde(borrow, default)]
    pub(super) stop_sequences: Content<'a, Text<'a>>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) top_p: Option<f64>,
    #[serde(default)]
    pub(super) stream: Option<bool>,
    #[serde(borrow, default)]
    pub(super) tools: Option<Vec<ToolIn<'a>>>,
    #[serde(borrow, default)]
    pub(super) tool_choice: Option<ToolChoiceIn<'a>>,
    #[serde(borrow, default)]
    pub(super) metadata: Option<MetadataIn<'a>>,
    #[serde(borrow, default)]
    pub(super) thinking: Option<Thinking<'a>>,
    #[serde(borrow, default)]
    pub(super) output_config: Option<OutputConfig<'a>>,
    #[serde(borrow, default)]
    pub(super) output_format: Option<OutputFormat<'a>>,
}

#[derive(Deserialize)]
pub(super) struct MessageIn<'a> {
    #[serde(borrow, default)]
    pub(super) role: Text<'a>,
    #[serde(borrow, default)]
    pub(super) content: Content<'a, BlockIn<'a>>,
}

/// A content block, every member optional and lenient.
#[derive(Deserialize, Default)]
pub(super) struct BlockIn<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(super) kind: Text<'a>,
    #[serde(borrow, default)]
    pub(super) text: Text<'a>,
    #[serde(borrow, default)]
    pub(super) source: Option<SourceIn<'a>>,
    #[serde(borrow, default)]
    pub(super) id: Text<'a>,
    #[serde(borrow, default)]
    pub(super) name: Text<'a>,
    #[serde(borrow, default)]
    pub(super) input: Option<LazyValue<'a>>,
    #[serde(borrow, default)]
    pub(super) tool_use_id: Text<'a>,
    #[serde(borrow, default)]
    pub(super) content: Content<'a, BlockIn<'a>>,
    #[serde(borrow, default)]
    pub(super) title: Text<'a>,
}

/// An image or document source: `base64`, `url`, `text` or `content`.
#[derive(Deserialize, Default)]
pub(super) struct SourceIn<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(super) kind: Text<'a>,
    #[serde(borrow, default)]
    pub(super) media_type: Text<'a>,
    #[serde(borrow, default)]
    pub(super) data: Text<'a>,
    #[serde(borrow, default)]
    pub(super) url: Text<'a>,
    #[serde(borrow, default)]
    pub(super) content: Content<'a, BlockIn<'a>>,
}

#[derive(Deserialize)]
pub(super) struct ToolIn<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(super) kind: Text<'a>,
    #[serde(borrow, default)]
    pub(super) name: Text<'a>,
    #[serde(borrow, default)]
    pub(super) description: Text<'a>,
    #[serde(borrow, default)]
    pub(super) input_schema: Option<LazyValue<'a>>,
}

#[derive(Deserialize)]
pub(super) struct ToolChoiceIn<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(super) kind: Text<'a>,
    #[serde(borrow, default)]
    pub(super) name: Text<'a>,
    #[serde(default)]
    pub(super) disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct MetadataIn<'a> {
    #[serde(borrow, default)]
    pub(super) user_id: Text<'a>,
}
