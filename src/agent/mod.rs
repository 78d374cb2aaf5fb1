//! The agents' interface: list, claim, release, call attempts, process, history, queue counts,
//! live stream and CSV export; and, for admins, the webhook endpoints.

pub mod auth;
pub mod body;
pub mod brake;
pub mod cursor;
pub mod error;
pub mod export;
pub mod filter;
pub mod history;
pub mod messages;
pub mod queue;
pub mod stream;
pub mod webhooks;

use actix_web::error::PathError;
use actix_web::{Scope, web};

use error::ApiError;

pub const BASE_PATH: &str = "/api/v1/messages";
/// Largest JSON body an agent call accepts.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// How long an agent call may take to send its body (the visitor's calls allow the same): a
/// client that stops half way would otherwise hold its connection and worker slot.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        error_answers(web::scope(BASE_PATH))
            // Resources answer other methods with 405 and an Allow header.
            .service(web::resource("").get(messages::list))
            .service(web::resource("/stream").get(stream::stream))
            .service(web::resource("/export.csv").get(export::export))
            .service(web::resource("/claim-next").post(messages::claim_next))
            .service(web::resource("/{id}").get(messages::get))
            .service(web::resource("/{id}/claim").post(messages::claim))
            .service(web::resource("/{id}/assign").post(messages::assign))
            .service(web::resource("/{id}/release").post(messages::release))
            .service(web::resource("/{id}/attempts").post(messages::attempt))
            .service(web::resource("/{id}/process").post(messages::process))
            .service(web::resource("/{id}/history").get(history::history)),
    )
    .service(error_answers(web::scope(queue::PATH)).service(web::resource("").get(queue::counts)))
    .service(
        error_answers(web::scope(webhooks::PATH))
            .service(web::resource("").get(webhooks::list).post(webhooks::add))
            .service(web::resource("/{id}").delete(webhooks::remove))
            .service(web::resource("/{id}/deliveries").get(webhooks::deliveries))
            .service(
                web::resource("/{id}/deliveries/{event_id}/redeliver").post(webhooks::redeliver),
            ),
    );
}

/// Malformed query parameters, bodies and ids answered as [`ApiError::BadRequest`].
fn error_answers(scope: Scope) -> Scope {
    scope
        .app_data(
            web::QueryConfig::default().error_handler(|e, _| {
                ApiError::BadRequest(format!("query parameters: {e}")).into()
            }),
        )
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_BODY_BYTES)
                .error_handler(|e, _| ApiError::BadRequest(format!("request body: {e}")).into()),
        )
        // A message id that does not parse is a 400 naming it (see MessageId's Deserialize).
        .app_data(web::PathConfig::default().error_handler(|e, _| {
            let why = match &e {
                PathError::Deserialize(why) => why.to_string(),
                other => other.to_string(),
            };
            ApiError::BadRequest(why).into()
        }))
}
