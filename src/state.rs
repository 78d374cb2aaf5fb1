//! What every request handler shares.

use chrono::Duration;
use sqlx::PgPool;

use crate::events::Events;
use crate::limits::Limits;
use crate::visitor::client_ip::TrustedProxies;
use crate::visitor::token::SigningKey;

pub struct AppState {
    pub pool: PgPool,
    pub signing_key: SigningKey,
    pub token_ttl: Duration,
    pub cookie_secure: bool,
    pub trusted_proxies: TrustedProxies,
    pub limits: Limits,
    pub events: Events,
}
