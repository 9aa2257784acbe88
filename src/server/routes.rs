//! The route table, and nothing else.

use actix_web::web;

use crate::handlers;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(handlers::chat::chat))
        .route("/v1/completions", web::post().to(handlers::completions::completions))
        .route("/v1/embeddings", web::post().to(handlers::embeddings::embeddings))
        .route("/v1/messages", web::post().to(handlers::messages::messages))
        .route("/v1/models", web::get().to(handlers::models::list))
        .route("/v1/models/{model:.*}", web::get().to(handlers::models::get))
        .route("/health", web::get().to(handlers::health::health))
        .route("/ready", web::get().to(handlers::ready::ready))
        .route("/metrics", web::get().to(handlers::metrics::metrics))
        .route("/status", web::get().to(handlers::status::status));
    #[cfg(feature = "fault-injection")]
    cfg.route("/admin/faults/panic", web::post().to(handlers::status::inject_panic))
        .route("/admin/faults/stall", web::post().to(handlers::status::inject_stall));
    cfg.default_service(web::to(handlers::not_found));
}
