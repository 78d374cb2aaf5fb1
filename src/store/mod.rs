//! All SQL lives here. Handlers call these functions; they never build queries.

// Declared first: its macros are used by the modules after it.
#[macro_use]
mod row;

pub mod agents;
pub mod channels;
mod database;
pub mod email;
mod handle;
pub mod history;
pub mod listing;
pub mod messages;
pub mod notify;
pub mod queue;
pub mod queue_levels;
pub mod tokens;
pub mod webhooks;
pub mod writer;

pub use database::{Database, DatabaseConfig, connect_options, embedded_cluster};
pub use handle::Store;
pub use row::MessageRow;

use std::time::Duration;

use sqlx::PgPool;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a request may wait for a pooled connection before the answer is 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long PostgreSQL may spend on one statement.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole of a request's database work, end to end; beyond it the answer is 503.
pub const DEADLINE: Duration = Duration::from_secs(4);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("database task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Write(#[from] writer::WriteError),
}

/// Awaits `work` for at most [`DEADLINE`]: the one place the deadline is applied (the
/// [`Store`] handle's queries and the [`writer::Writer`]'s answers go through it).
async fn within_deadline<T, F>(work: F) -> Result<T, StoreError>
where
    F: Future<Output = T>,
{
    tokio::time::timeout(DEADLINE, work)
        .await
        .map_err(|_| StoreError::Timeout(DEADLINE))
}

impl Store {
    /// Succeeds when the database answers a trivial query. A pooled connection that died with
    /// a database restart is retried on a fresh one: readiness reflects the database, not the
    /// pool's leftovers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run_retrying(
            |pool| async move { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()) },
        )
        .await
    }
}

/// Applies pending migrations, on a database that stores text as UTF-8 only.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    require_utf8(pool).await?;
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Errors, in one line that says how to fix it, unless the database's encoding is UTF8.
/// In a `SQL_ASCII` database every message with a character outside ASCII fails to store
/// (503 for a valid request), and PostgreSQL writes the failed statement, message text
/// included, into its log; other encodings cannot hold every visitor's text either. So the
/// service refuses to start on one rather than fail message by message.
pub async fn require_utf8(pool: &PgPool) -> anyhow::Result<()> {
    let encoding: String = sqlx::query_scalar("SELECT current_setting('server_encoding')")
        .fetch_one(pool)
        .await?;
    if encoding != "UTF8" {
        anyhow::bail!(
            "the database's encoding is {encoding}; leavemsg needs UTF8: create it with \
             ENCODING 'UTF8' (e.g. CREATE DATABASE leavemsg ENCODING 'UTF8' TEMPLATE template0)"
        );
    }
    Ok(())
}

/// Errors unless the database is UTF-8 ([`require_utf8`]) and every migration this binary
/// knows is applied: commands other than `serve` and `migrate` refuse to work on an old
/// schema.
pub async fn require_migrated(pool: &PgPool) -> anyhow::Result<()> {
    require_utf8(pool).await?;
    let table_exists: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    let applied: Vec<i64> = if table_exists {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    let missing = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| !applied.contains(&m.version))
        .count();
    if missing > 0 {
        anyhow::bail!(
            "the database needs migrating ({missing} pending migration(s)): run `leavemsg migrate` first"
        );
    }
    Ok(())
}
