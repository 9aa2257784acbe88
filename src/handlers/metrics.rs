//! `GET /metrics`: Prometheus text format.

use actix_web::HttpResponse;

use crate::gateway::WorkerState;

pub async fn metrics(state: WorkerState) -> HttpResponse {
    let gw = &state.gateway;
    gw.registry.publish_gauges();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(gw.upstreams.metrics.render(&gw.prometheus, gw.upstreams.limiter.spend()))
}
