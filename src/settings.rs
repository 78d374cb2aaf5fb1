//! One typed set of settings, read once and passed down. `cli` fills it from flags,
//! environment variables and `.env`.

use std::net::SocketAddr;

use chrono::Duration;

use crate::domain::{PublicUrl, TrustedProxies};
pub use crate::outbox::{EmailSettings, WebhookSettings};
use crate::store::DatabaseConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Settings {
    pub database: DatabaseConfig,
    pub listen: SocketAddr,
    /// The service's address as people reach it.
    pub public_url: PublicUrl,
    pub trusted_proxies: TrustedProxies,
    pub token_ttl: Duration,
    pub cookie_secure: bool,
    pub rate_per_token: u32,
    pub rate_per_ip: u32,
    pub log_format: LogFormat,
    /// How long a writer gathers a batch after its first message (zero: not at all).
    pub batch_window: std::time::Duration,
    pub webhooks: WebhookSettings,
    pub email: EmailSettings,
}

impl std::fmt::Debug for Settings {
    // The database URL may hold a password: DatabaseConfig's Debug hides it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database", &self.database)
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("token_ttl", &self.token_ttl)
            .field("cookie_secure", &self.cookie_secure)
            .field("rate_per_token", &self.rate_per_token)
            .field("rate_per_ip", &self.rate_per_ip)
            .field("log_format", &self.log_format)
            .field("batch_window", &self.batch_window)
            .field("webhooks", &self.webhooks)
            .field("email", &self.email)
            .finish()
    }
}
