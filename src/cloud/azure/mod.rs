//! Azure OpenAI.
