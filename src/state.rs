//! What every request handler shares.

use std::future::Future;

use chrono::Duration;
use sqlx::PgPool;

use crate::store::{DEADLINE, StoreError};

use crate::events::Events;
use crate::limits::Limits;
use crate::visitor::client_ip::TrustedProxies;
use crate::visitor::token::SigningKey;
use crate::visitor::token_cache::TokenCache;

pub struct AppState {
    /// The runtime the server was built on, which outlives the HTTP workers' runtimes: every
    /// database call runs there, so pooled connections never belong to a worker that stops
    /// first during a graceful shutdown.
    pub db_runtime: tokio::runtime::Handle,
    pub pool: PgPool,
    pub signing_key: SigningKey,
    pub token_ttl: Duration,
    pub cookie_secure: bool,
    pub trusted_proxies: TrustedProxies,
    pub limits: Limits,
    pub events: Events,
    pub tokens: std::sync::Arc<TokenCache>,
}

impl AppState {
    /// Runs `work` with the pool on the database runtime, within [`DEADLINE`]; beyond it the
    /// caller gets [`StoreError::Timeout`] (the statement timeout ends the work itself).
    pub async fn db<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(PgPool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let task = self.db_runtime.spawn(async move { work(pool).await });
        match tokio::time::timeout(DEADLINE, task).await {
            Ok(Ok(result)) => result.map_err(StoreError::from),
            Ok(Err(failed)) => Err(StoreError::Task(failed.to_string())),
            Err(_) => Err(StoreError::Timeout(DEADLINE)),
        }
    }
}
