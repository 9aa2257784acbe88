//! Sluice: a fast LLM gateway.
//!
//! A request's way through the code: [`server`] (routes, workers) →
//! [`handlers`] (one file per route) → [`request`]`::steps`, one line per
//! step: request id → auth → budget → body → peek → route → limits →
//! cache → [`upstream::fetch()`] (candidates → attempts, each through
//! [`providers`], one module per upstream protocol) → template → relay →
//! record; the actors of `sluice-actors` are asked and told on the way.
//! docs/request-path.md draws the same list, and its "Layers" table says
//! which module may use which (`scripts/check-layers` holds the code to it).
//!
//! The seam for tests and `main.rs` is [`server::run`]: a bound listener, a
//! validated [`config::Config`] and a shutdown signal.

pub mod alloc;
pub mod auth;
pub mod busy_poll;
pub mod cache;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod deadline;
pub mod endpoint;
pub mod error;
pub mod gateway;
pub mod handlers;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod mock;
pub mod multipart;
pub mod observe;
pub mod peek;
pub mod pricing;
pub mod providers;
pub mod request;
pub mod route;
pub mod series;
pub mod server;
pub mod sse;
pub mod tokens;
pub mod translate;
pub mod upload;
pub mod upstream;
pub mod usage;
