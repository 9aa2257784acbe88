//! Sluice: a fast LLM gateway.
//!
//! The seam for tests and `main.rs` is [`server::run`]: it takes a bound
//! listener, a validated [`config::Config`] and a shutdown signal.

pub mod config;
