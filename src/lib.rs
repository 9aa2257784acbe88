//! Sluice: a fast LLM gateway.
//!
//! A request's way through the code: [`server`] (routes, workers) →
//! [`handlers`] (one file per route) → [`request`] (the pipeline, one module
//! per step: ingress, auth, route, attempt, relay, record) → [`providers`]
//! (one module per upstream protocol) → the actors in `sluice-actors`.
//!
//! The seam for tests and `main.rs` is [`server::run`]: a bound listener, a
//! validated [`config::Config`] and a shutdown signal.

pub mod auth;
pub mod busy_poll;
pub mod cache;
pub mod cli;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod gateway;
pub mod handlers;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod mock;
pub mod peek;
pub mod pricing;
pub mod providers;
pub mod request;
pub mod route;
pub mod server;
pub mod sse;
pub mod tokens;
pub mod translate;
pub mod upstream;
pub mod usage;
