//! `GET /metrics`: Prometheus text format.

use actix_web::HttpResponse;
use actix_web::web::Data;

use crate::server::state::WorkerState;

pub async fn metrics(state: Data<WorkerState>) -> HttpResponse {
    state.shared.registry.publish_gauges();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.shared.metrics.render(&state.shared.prometheus, state.shared.limiter.spend()))
}
