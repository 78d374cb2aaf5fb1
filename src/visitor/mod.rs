//! The visitor interface, compatible with the CC-Messaging web channel:
//! `applyToken` issues a ccmessaging-token, `doLeaveMessage` stores a message.

pub mod apply_token;
pub mod client_ip;
pub mod leave_message;
mod request;
pub mod token_cache;
pub mod vendor_reply;

use actix_web::web;
use chrono::{Duration, Utc};

use crate::credentials::SigningKey;
use crate::domain::TrustedProxies;
use crate::limits::Limits;
use crate::store::Store;
use token_cache::TokenCache;

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

/// What the two visitor calls share: the store, the token key and this instance's memory of
/// tokens and request counts.
pub struct VisitorState {
    pub store: Store,
    pub signing_key: SigningKey,
    pub token_ttl: Duration,
    pub cookie_secure: bool,
    pub trusted_proxies: TrustedProxies,
    pub limits: Limits,
    pub tokens: TokenCache,
}

impl VisitorState {
    /// Forgets what has run out: idle rate-limit entries, expired tokens in memory and in the
    /// database.
    pub async fn housekeeping(&self) {
        self.limits.forget_idle();
        self.tokens.remove_expired(Utc::now());
        if let Err(e) = self.store.delete_expired_tokens(Utc::now()).await {
            tracing::warn!(error = ?e, "could not delete expired tokens");
        }
    }
}
