//! Liveness and readiness.

use actix_web::{HttpResponse, web};

use crate::store::Store;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// The database answers.
pub async fn readyz(store: web::Data<Store>) -> HttpResponse {
    match store.ping().await {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        Err(e) => {
            tracing::warn!(error = ?e, "not ready: database unreachable");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("database unreachable\n")
        }
    }
}
