//! The visitor interface, compatible with the CC-Messaging web channel:
//! `applyToken` issues a ccmessaging-token, `doLeaveMessage` stores a message.

pub mod apply_token;
pub mod client_ip;
pub mod leave_message;
mod request;
pub mod token;
pub mod token_cache;
pub mod vendor_reply;

use actix_web::web;

/// Base path of the vendor's web adapter facade.
pub const BASE_PATH: &str = "/service-cloud/rest/webadapter/v1/webadapterfacade";
/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Name of the token cookie and of the request header that may carry it instead.
pub const TOKEN_NAME: &str = "ccmessaging-token";

pub fn routes(cfg: &mut web::ServiceConfig) {
    let options = || web::method(actix_web::http::Method::OPTIONS);
    // Resources answer other methods with 405 and an Allow header.
    cfg.service(
        web::scope(BASE_PATH)
            .service(
                web::resource("/applyToken")
                    .route(web::post().to(apply_token::apply_token))
                    .route(options().to(request::preflight)),
            )
            .service(
                web::resource("/doLeaveMessage")
                    .route(web::post().to(leave_message::leave_message))
                    .route(options().to(request::preflight)),
            ),
    );
}
