//! Endpoints for operators: liveness, readiness and metrics (the OpenAPI document is served
//! from `crate::openapi`, which describes the faces from above them).

pub mod health;
pub mod metrics;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::render));
}
