//! The route table, and nothing else.

use actix_web::web;

use crate::handlers;
use crate::handlers::admin;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(handlers::chat::chat))
        .route("/v1/completions", web::post().to(handlers::completions::completions))
        .route("/v1/embeddings", web::post().to(handlers::embeddings::embeddings))
        .route("/v1/messages", web::post().to(handlers::messages::messages))
        .route("/v1/messages/count_tokens", web::post().to(handlers::messages::count_tokens))
        .route("/v1/responses", web::post().to(handlers::responses::create))
        .route("/v1/responses/input_tokens", web::post().to(handlers::responses::input_tokens))
        .route("/v1/responses/{id}", web::get().to(handlers::responses::get))
        .route("/v1/responses/{id}", web::delete().to(handlers::responses::delete))
        .route("/v1/images/generations", web::post().to(handlers::media::images))
        .route("/v1/moderations", web::post().to(handlers::media::moderations))
        .route("/v1/audio/speech", web::post().to(handlers::media::speech))
        .route("/v1/audio/transcriptions", web::post().to(handlers::media::transcriptions))
        .route("/v1/audio/translations", web::post().to(handlers::media::translations))
        .route("/v1/files", web::post().to(handlers::files::files))
        .route("/v1/files", web::get().to(handlers::files::files))
        .route("/v1/files/{id}", web::get().to(handlers::files::files))
        .route("/v1/files/{id}", web::delete().to(handlers::files::files))
        .route("/v1/files/{id}/content", web::get().to(handlers::files::files))
        .route("/v1/batches", web::post().to(handlers::files::batches))
        .route("/v1/batches", web::get().to(handlers::files::batches))
        .route("/v1/batches/{id}", web::get().to(handlers::files::batches))
        .route("/v1/batches/{id}/cancel", web::post().to(handlers::files::batches))
        .route("/v1/models", web::get().to(handlers::models::list))
        .route("/v1/models/{model:.*}", web::get().to(handlers::models::get))
        .route("/health", web::get().to(handlers::health::health))
        .route("/ready", web::get().to(handlers::ready::ready))
        .route("/metrics", web::get().to(handlers::metrics::metrics))
        .route("/status", web::get().to(handlers::status::status))
        .route("/dashboard", web::get().to(handlers::dashboard::dashboard))
        .route("/dashboard/data", web::get().to(handlers::dashboard::data))
        .route("/admin/keys", web::post().to(admin::keys::create))
        .route("/admin/keys", web::get().to(admin::keys::list))
        .route("/admin/keys/{name}", web::get().to(admin::keys::get))
        .route("/admin/keys/{name}", web::patch().to(admin::keys::patch))
        .route("/admin/keys/{name}", web::delete().to(admin::keys::delete))
        .route("/admin/keys/{name}/rotate", web::post().to(admin::keys::rotate))
        .route("/admin/teams", web::post().to(admin::teams::create))
        .route("/admin/teams", web::get().to(admin::teams::list))
        .route("/admin/teams/{name}", web::get().to(admin::teams::get))
        .route("/admin/teams/{name}", web::patch().to(admin::teams::patch))
        .route("/admin/teams/{name}", web::delete().to(admin::teams::delete))
        .route("/admin/spend", web::get().to(admin::spend::spend))
        .route("/admin/reload", web::post().to(admin::reload::reload));
    #[cfg(feature = "fault-injection")]
    cfg.route("/admin/faults/panic", web::post().to(handlers::status::inject_panic))
        .route("/admin/faults/stall", web::post().to(handlers::status::inject_stall));
    cfg.default_service(web::to(handlers::not_found));
}
