//! Opening and closing the database: a PostgreSQL server given by URL, or the embedded cluster.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use super::{ACQUIRE_TIMEOUT, STATEMENT_TIMEOUT};
use crate::embedded_pg::Cluster;

/// The database name of the embedded cluster.
const EMBEDDED_DATABASE: &str = "leavemsg";

/// Where the data is and how many connections may be open to it.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// A PostgreSQL URL; `None`: the embedded cluster under `data_dir`.
    pub url: Option<String>,
    /// Where the embedded cluster lives (unused with a URL).
    pub data_dir: PathBuf,
    /// The pool's size.
    pub max_connections: u32,
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("data_dir", &self.data_dir)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// The connection pool, plus the private cluster when there is no `DATABASE_URL`.
pub struct Database {
    pub pool: PgPool,
    pub cluster: Option<Cluster>,
}

impl Database {
    /// Connects to `config.url`, or starts (or reuses) the embedded cluster and connects to it.
    /// Blocking parts (starting the cluster) run off the async runtime.
    pub async fn open(config: &DatabaseConfig) -> anyhow::Result<Database> {
        let (url, cluster) = match &config.url {
            Some(url) => (url.clone(), None),
            None => {
                let data_dir = config.data_dir.clone();
                let cluster =
                    tokio::task::spawn_blocking(move || Cluster::start(&data_dir)).await??;
                ensure_database(&cluster).await?;
                (cluster.database_url(EMBEDDED_DATABASE), Some(cluster))
            }
        };
        let options = connect_options(&url)?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_url() {
        let config = DatabaseConfig {
            url: Some("postgres://u:secret@db/app".into()),
            data_dir: "./data".into(),
            max_connections: 16,
        };
        let text = format!("{config:?}");
        assert!(!text.contains("secret") && text.contains("<set>"), "{text}");
    }
}
