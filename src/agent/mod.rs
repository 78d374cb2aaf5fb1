//! The agents' interface: list, claim, release, process, live stream and CSV export.

pub mod auth;
pub mod cursor;
pub mod error;
pub mod export;
pub mod messages;
pub mod stream;

use actix_web::web;

use error::ApiError;

pub const BASE_PATH: &str = "/api/v1/messages";
/// Largest JSON body an agent call accepts.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(BASE_PATH)
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                ApiError::BadRequest(format!("query parameters: {e}")).into()
            }))
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_BODY_BYTES)
                    .error_handler(|e, _| {
                        ApiError::BadRequest(format!("request body: {e}")).into()
                    }),
            )
            .route("", web::get().to(messages::list))
            .route("/stream", web::get().to(stream::stream))
            .route("/export.csv", web::get().to(export::export))
            .route("/claim-next", web::post().to(messages::claim_next))
            .route("/{id}", web::get().to(messages::get))
            .route("/{id}/claim", web::post().to(messages::claim))
            .route("/{id}/assign", web::post().to(messages::assign))
            .route("/{id}/release", web::post().to(messages::release))
            .route("/{id}/process", web::post().to(messages::process)),
    );
}
