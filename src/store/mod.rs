//! All SQL lives here. Handlers call these functions; they never build queries.

// Declared first: its macros are used by the modules after it.
#[macro_use]
mod row;

pub mod agents;
pub mod channels;
mod handle;
pub mod listing;
pub mod messages;
pub mod notify;
pub mod queue;
pub mod tokens;
pub mod writer;

pub use handle::Store;
pub use row::MessageRow;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::embedded_pg::Cluster;
use crate::settings::Settings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a request may wait for a pooled connection before the answer is 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long PostgreSQL may spend on one statement.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole of a request's database work, end to end; beyond it the answer is 503.
pub const DEADLINE: Duration = Duration::from_secs(4);

/// The database name of the embedded cluster.
const EMBEDDED_DATABASE: &str = "leavemsg";

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

/// The connection pool, plus the private cluster when there is no `DATABASE_URL`.
pub struct Database {
    pub pool: PgPool,
    pub cluster: Option<Cluster>,
}

impl Database {
    /// Connects to `DATABASE_URL`, or starts (or reuses) the embedded cluster and connects to it.
    /// Blocking parts (starting the cluster) run off the async runtime.
    pub async fn open(settings: &Settings) -> anyhow::Result<Database> {
        let (url, cluster) = match &settings.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let data_dir = settings.data_dir.clone();
                let cluster =
                    tokio::task::spawn_blocking(move || Cluster::start(&data_dir)).await??;
                ensure_database(&cluster).await?;
                (cluster.database_url(EMBEDDED_DATABASE), Some(cluster))
            }
        };
        let options = connect_options(&url)?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_db_connections)
            // A broken connection fails one statement and is then dropped; pinging before every
            // use would cost a round trip on every request.
            .test_before_acquire(false)
            // Always one connection open: requests skip the connect, and a running server stays
            // visible to other leavemsg commands, which then leave the embedded cluster running.
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Database { pool, cluster })
    }

    /// Closes the pool and stops the embedded cluster unless another process still uses it.
    /// `settle`: how long connections this process closed outside the pool (the writers') may
    /// take to go away before the ones left count as another process's.
    pub async fn close(self, settle: Duration) {
        self.pool.close().await;
        if let Some(cluster) = self.cluster {
            let settled = tokio::time::Instant::now() + settle;
            let mut others = other_clients(&cluster).await.unwrap_or(0);
            while others > 0 && tokio::time::Instant::now() < settled {
                tokio::time::sleep(Duration::from_millis(100)).await;
                others = other_clients(&cluster).await.unwrap_or(0);
            }
            if others > 0 {
                tracing::info!(
                    others,
                    "embedded PostgreSQL left running: other clients use it"
                );
                return;
            }
            match tokio::task::spawn_blocking(move || cluster.stop()).await {
                Ok(Ok(())) => tracing::info!("embedded PostgreSQL stopped"),
                Ok(Err(e)) => tracing::warn!(error = %e, "could not stop embedded PostgreSQL"),
                Err(e) => tracing::warn!(error = %e, "could not stop embedded PostgreSQL"),
            }
        }
    }
}

/// Connection settings from a URL, with the timeouts every connection carries.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?
        .application_name("leavemsg")
        .options([(
            "statement_timeout",
            STATEMENT_TIMEOUT.as_millis().to_string(),
        )])
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    Ok(options)
}

async fn ensure_database(cluster: &Cluster) -> anyhow::Result<()> {
    let mut conn = connect_options(&cluster.database_url("postgres"))?
        .connect()
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(EMBEDDED_DATABASE)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // Another process may create it at the same moment; that is fine.
        // (The name is EMBEDDED_DATABASE; DDL takes no bind parameters.)
        let created = sqlx::query("CREATE DATABASE leavemsg")
            .execute(&mut conn)
            .await;
        if let Err(e) = created {
            let duplicate = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "42P04");
            if !duplicate {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

async fn other_clients(cluster: &Cluster) -> anyhow::Result<i64> {
    let mut conn = connect_options(&cluster.database_url("postgres"))?
        .connect()
        .await?;
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut conn)
    .await?;
    Ok(count)
}

impl Store {
    /// Succeeds when the database answers a trivial query. Pooled connections that died with a
    /// database restart fail once each (an I/O error) and are dropped, so each of them may be
    /// tried: readiness reflects the database, not the pool's leftovers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|pool| async move {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match sqlx::query("SELECT 1").execute(&pool).await {
                    Ok(_) => return Ok(()),
                    Err(sqlx::Error::Io(_)) if attempts <= pool.size() => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await
    }
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Errors unless every migration this binary knows is applied: commands other than `serve`
/// and `migrate` refuse to work on an old schema.
pub async fn require_migrated(pool: &PgPool) -> anyhow::Result<()> {
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
