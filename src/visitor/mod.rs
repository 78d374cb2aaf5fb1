//! The visitor interface, compatible with the CC-Messaging web channel:
//! `applyToken` issues a ccmessaging-token, `doLeaveMessage` stores a message.

pub mod apply_token;
mod authenticate;
pub mod client_ip;
mod cors;
pub mod leave_message;
mod refusal;
mod request;
pub mod token_cache;
pub mod vendor_reply;

use std::net::IpAddr;

use actix_web::web;
use chrono::{Duration, Utc};

use crate::counters::{self, Limit};
use crate::credentials::{SigningKey, VerifiedToken};
use crate::domain::{TrustedProxies, WebOrigin};
use crate::limits::{Limits, RetryAfter};
use crate::store::Store;
use refusal::Refusal;
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
                    .route(options().to(cors::preflight)),
            )
            .service(
                web::resource("/doLeaveMessage")
                    .route(web::post().to(leave_message::leave_message))
                    .route(options().to(cors::preflight)),
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
    pub known_origins: cors::KnownOrigins,
    /// The origin of `LEAVEMSG_PUBLIC_URL`, when set: the service's own, whatever `Host` says.
    pub own_origin: Option<WebOrigin>,
}

impl VisitorState {
    /// `LEAVEMSG_RATE_PER_IP`, for both calls.
    fn limit_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.limits
            .check_ip(ip)
            .map_err(|r| rate_limited(Limit::Ip, r))
    }

    /// `LEAVEMSG_RATE_PER_TOKEN`, for doLeaveMessage.
    fn limit_token(&self, token: &VerifiedToken) -> Result<(), Refusal> {
        self.limits
            .check_token(&token.hash)
            .map_err(|r| rate_limited(Limit::Token, r))
    }

    /// Forgets a token the database says is no longer current; the refusal to answer with.
    fn forget_token(&self, token: &VerifiedToken) -> Refusal {
        self.tokens.revoke(&token.hash.0);
        Refusal::Unauthorized(authenticate::NO_LONGER_VALID)
    }

    /// Forgets what has run out: idle rate-limit entries, expired tokens in memory and in the
    /// database; and reads the origins enabled channels list afresh.
    pub async fn housekeeping(&self) {
        self.limits.forget_idle();
        self.tokens.remove_expired(Utc::now());
        if let Err(e) = self.store.delete_expired_tokens(Utc::now()).await {
            tracing::warn!(error = ?e, "could not delete expired tokens");
        }
        match self.store.allowed_origins().await {
            Ok(origins) => self.known_origins.replace(origins),
            Err(e) => tracing::warn!(error = ?e, "could not read the channels' origins"),
        }
    }
}

fn rate_limited(limit: Limit, RetryAfter(retry_after_secs): RetryAfter) -> Refusal {
    counters::rate_limited(limit);
    Refusal::RateLimited { retry_after_secs }
}
