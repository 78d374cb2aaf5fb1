//! Endpoints for operators: liveness, readiness and metrics.

pub mod health;
pub mod metrics;
pub mod openapi;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::render))
        .route("/openapi.json", web::get().to(openapi::openapi_json));
}
