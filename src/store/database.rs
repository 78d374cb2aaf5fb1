//! Opening and closing the database: a PostgreSQL server given by URL, or the embedded cluster
//! (a private PostgreSQL run with the machine's server programs, see the embedded-pg crate).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use embedded_pg::{Cluster, ClusterBuilder};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use super::{ACQUIRE_TIMEOUT, STATEMENT_TIMEOUT};

/// The database name of the embedded cluster.
const EMBEDDED_DATABASE: &str = "leavemsg";
/// The least time closed connections get to go away before other clients are counted (a
/// one-off command beside a running server waits this long before leaving the cluster on).
const MIN_SETTLE: Duration = Duration::from_millis(300);

/// Where the data is and how many connections may be open to it.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// A PostgreSQL URL; `None`: the embedded cluster under `data_dir`.
    pub url: Option<String>,
    /// Where the embedded cluster lives (unused with a URL).
    pub data_dir: PathBuf,
    /// The OS user the embedded cluster runs as when leavemsg runs as root; `None`: `postgres`.
    pub pg_os_user: Option<String>,
    /// The pool's size.
    pub max_connections: u32,
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("data_dir", &self.data_dir)
            .field("pg_os_user", &self.pg_os_user)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// The embedded cluster in `data_dir`, with the names leavemsg has always used for it: the
/// folders, database superuser and files of existing installations depend on them. As root it
/// runs as the `postgres` OS user unless [`DatabaseConfig::pg_os_user`] names another.
pub fn embedded_cluster(data_dir: &Path) -> ClusterBuilder {
    Cluster::builder(data_dir)
        .superuser("leavemsg")
        .fallback_root("/var/lib/leavemsg/clusters")
        .socket_fallback_prefix("/tmp/leavemsg-")
        .bin_dir_env("LEAVEMSG_PG_BIN")
        .config_file("leavemsg.conf")
        .managed_by("leavemsg")
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
        let Some(url) = &config.url else {
            return open_embedded(config).await;
        };
        let pool = pool_options(config.max_connections).connect_lazy_with(connect_options(url)?);
        Ok(Database {
            pool,
            cluster: None,
        })
    }

    /// Closes the pool and stops the embedded cluster unless another process still uses it.
    /// `settle`: how long connections this process closed outside the pool (the writers') may
    /// take to go away before the ones left count as another process's. At least
    /// [`MIN_SETTLE`]: a server process may outlive its just-closed connection for a moment.
    pub async fn close(self, settle: Duration) {
        self.pool.close().await;
        if let Some(cluster) = self.cluster {
            let settled = tokio::time::Instant::now() + settle.max(MIN_SETTLE);
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
            // Counted again and stopped under the cluster's lock: a process starting now either
            // reused the server before this count (and may be stopped, see `open_embedded`) or
            // waits and then starts a new one.
            match tokio::task::spawn_blocking(move || cluster.stop_unless_in_use()).await {
                Ok(Ok(true)) => tracing::info!("embedded PostgreSQL stopped"),
                Ok(Ok(false)) => {
                    tracing::info!("embedded PostgreSQL left running: other clients use it");
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "could not stop embedded PostgreSQL"),
                Err(e) => tracing::warn!(error = %e, "could not stop embedded PostgreSQL"),
            }
        }
    }
}

/// The pool's settings, whichever server it connects to.
fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        // A broken connection fails one statement and is then dropped; pinging before every
        // use would cost a round trip on every request.
        .test_before_acquire(false)
        // Always one connection open: requests skip the connect, and a running server stays
        // visible to other leavemsg commands, which then leave the embedded cluster running.
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// Starts (or reuses) the embedded cluster and connects to it. Once this process holds a
/// connection, another leavemsg process that exits counts it and leaves the server running;
/// before that, such a process may stop the server this one has just reused. So when the
/// first connection finds the server shutting down or gone, the cluster is started again,
/// once: the start waits for a stopping server and then starts a new one.
async fn open_embedded(config: &DatabaseConfig) -> anyhow::Result<Database> {
    let mut retried = false;
    loop {
        match connect_embedded(config).await {
            Ok(database) => return Ok(database),
            Err(e) if !retried && server_went_away(&e) => {
                tracing::info!(error = %e, "embedded PostgreSQL stopped as it was reused; starting it again");
                retried = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One attempt of [`open_embedded`]: start, create the database, hold a first connection.
async fn connect_embedded(config: &DatabaseConfig) -> anyhow::Result<Database> {
    let mut builder = embedded_cluster(&config.data_dir);
    if let Some(user) = &config.pg_os_user {
        builder = builder.os_user(user);
    }
    let cluster = tokio::task::spawn_blocking(move || {
        let cluster = builder.start().map_err(with_alternative)?;
        cluster.ensure_database(EMBEDDED_DATABASE)?;
        anyhow::Ok(cluster)
    })
    .await??;
    let pool =
        pool_options(config.max_connections).connect_lazy_with(cluster_connect_options(&cluster));
    // Returned to the pool, which keeps it open (min_connections): from here on this process
    // counts as a client of the cluster, for a stop that counts from now on.
    let mut first = pool.acquire().await?;
    // A process that counted clients just before this connection existed may be stopping the
    // server: once it is done, the connection is dead and the caller starts again.
    let waiting = cluster.clone();
    tokio::task::spawn_blocking(move || waiting.wait_for_stop_in_progress()).await??;
    sqlx::query("SELECT 1").execute(&mut *first).await?;
    drop(first);
    Ok(Database {
        pool,
        cluster: Some(cluster),
    })
}

/// Whether a failed first connection met a server that was shutting down or no longer there,
/// rather than a problem a second start would meet again.
fn server_went_away(error: &anyhow::Error) -> bool {
    if let Some(embedded_pg::Error::Query { detail, .. }) = error.downcast_ref() {
        // psql's messages for a server in shutdown, and for a socket that is gone.
        return [
            "shutting down",
            "terminating connection",
            "No such file or directory",
            "Connection refused",
        ]
        .iter()
        .any(|m| detail.contains(m));
    }
    match error.downcast_ref::<sqlx::Error>() {
        // A connect that kept failing until the acquire timeout.
        Some(sqlx::Error::PoolTimedOut) => true,
        // 57P03 cannot_connect_now: the server is starting up or shutting down.
        Some(sqlx::Error::Database(d)) if d.code().as_deref() == Some("57P03") => true,
        Some(e) => super::handle::is_broken_connection(e),
        None => false,
    }
}

/// Connection settings from a URL, with the settings every connection carries.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
    Ok(session_settings(options))
}

/// Connection settings for the embedded cluster's database, over its unix socket. No password:
/// the cluster trusts local connections, and only its owner can open the socket's folder.
fn cluster_connect_options(cluster: &Cluster) -> PgConnectOptions {
    let options = PgConnectOptions::new_without_pgpass()
        .socket(cluster.socket_dir())
        .port(cluster.port())
        .username(cluster.superuser())
        .database(EMBEDDED_DATABASE);
    session_settings(options)
}

/// What every connection carries, whichever server it goes to.
fn session_settings(options: PgConnectOptions) -> PgConnectOptions {
    options
        .application_name("leavemsg")
        .options([(
            "statement_timeout",
            STATEMENT_TIMEOUT.as_millis().to_string(),
        )])
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1))
}

/// The embedded cluster's own messages end with what to install or create; leavemsg adds its
/// own ways out: a PostgreSQL server of one's own, the setting that names the OS user, the
/// upgrade steps in its docs.
fn with_alternative(error: embedded_pg::Error) -> anyhow::Error {
    match error {
        embedded_pg::Error::NoServerPrograms => {
            anyhow::anyhow!("{error} or set DATABASE_URL to an existing PostgreSQL")
        }
        embedded_pg::Error::OsUser { .. } => anyhow::anyhow!(
            "{error}, or set LEAVEMSG_PG_OS_USER to an existing one, or set DATABASE_URL"
        ),
        embedded_pg::Error::OsUserIsRoot { .. } => {
            anyhow::anyhow!("{error} in LEAVEMSG_PG_OS_USER")
        }
        embedded_pg::Error::InvalidSetting {
            setting: "os_user",
            reason,
        } => anyhow::anyhow!("LEAVEMSG_PG_OS_USER is {reason}"),
        embedded_pg::Error::VersionMismatch { .. } => {
            anyhow::anyhow!(
                "{error} (see docs/operations.md, \"The embedded database across PostgreSQL upgrades\")"
            )
        }
        other => other.into(),
    }
}

/// Client connections to the embedded cluster other than the one asking. psql runs as a
/// process, so off the async runtime.
async fn other_clients(cluster: &Cluster) -> anyhow::Result<u32> {
    let cluster = cluster.clone();
    Ok(tokio::task::spawn_blocking(move || cluster.connected_clients()).await??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_errors_offer_database_url() {
        assert_eq!(
            with_alternative(embedded_pg::Error::NoServerPrograms).to_string(),
            "PostgreSQL server programs (initdb, pg_ctl) were not found on PATH or in the usual install folders: install them (Debian/Ubuntu: apt-get install postgresql; Fedora/RHEL: dnf install postgresql-server; macOS: brew install postgresql) or set DATABASE_URL to an existing PostgreSQL"
        );
        let os_user = embedded_pg::Error::OsUser {
            user: "postgres".into(),
        };
        assert_eq!(
            with_alternative(os_user).to_string(),
            "running as root, the embedded PostgreSQL needs an unprivileged OS user to run as, and there is no user postgres: create one with `useradd --system postgres`, or set LEAVEMSG_PG_OS_USER to an existing one, or set DATABASE_URL"
        );
        let root = embedded_pg::Error::OsUserIsRoot {
            user: "toor".into(),
        };
        assert_eq!(
            with_alternative(root).to_string(),
            "OS user toor has uid 0, and PostgreSQL refuses to run as root: name an unprivileged user in LEAVEMSG_PG_OS_USER"
        );
        let old = embedded_pg::Error::VersionMismatch {
            dir: "/srv/leavemsg/data/pg".into(),
            cluster: "15".into(),
            installed: vec!["17".into()],
        };
        assert_eq!(
            with_alternative(old).to_string(),
            "the PostgreSQL cluster in /srv/leavemsg/data/pg was made by PostgreSQL 15 but only PostgreSQL 17 is installed: install PostgreSQL 15's server programs, or upgrade the cluster to PostgreSQL 17 with pg_upgrade (see docs/operations.md, \"The embedded database across PostgreSQL upgrades\")"
        );
    }

    #[test]
    fn a_server_gone_or_shutting_down_is_told_from_other_failures() {
        let query = |detail: &str| {
            anyhow::Error::from(embedded_pg::Error::Query {
                action: "look for database leavemsg".into(),
                dir: "/srv/leavemsg/pg".into(),
                detail: detail.into(),
            })
        };
        assert!(server_went_away(&query(
            "psql: error: connection to server on socket \"/srv/leavemsg/run/.s.PGSQL.5432\" failed: FATAL:  the database system is shutting down"
        )));
        assert!(server_went_away(&query(
            "psql: error: connection to server on socket \"/srv/leavemsg/run/.s.PGSQL.5432\" failed: No such file or directory"
        )));
        assert!(!server_went_away(&query(
            "ERROR:  permission denied to create database"
        )));
        assert!(server_went_away(&sqlx::Error::PoolTimedOut.into()));
        assert!(!server_went_away(&sqlx::Error::RowNotFound.into()));
        assert!(!server_went_away(&anyhow::anyhow!("something else")));
    }

    #[test]
    fn both_paths_carry_the_same_session_settings() {
        let from_url = connect_options("postgres://u@db.internal/app").unwrap();
        let from_socket = session_settings(
            PgConnectOptions::new_without_pgpass()
                .socket("/srv/leavemsg/run")
                .port(5432),
        );
        for options in [&from_url, &from_socket] {
            assert_eq!(options.get_application_name(), Some("leavemsg"));
            assert_eq!(
                options.get_options(),
                Some("-c statement_timeout=3000"),
                "{options:?}"
            );
        }
        assert!(
            from_socket
                .to_url_lossy()
                .as_str()
                .contains("%2Fsrv%2Fleavemsg%2Frun")
        );
    }

    #[test]
    fn debug_hides_the_url() {
        let config = DatabaseConfig {
            url: Some("postgres://u:secret@db/app".into()),
            data_dir: "./data".into(),
            pg_os_user: None,
            max_connections: 16,
        };
        let text = format!("{config:?}");
        assert!(!text.contains("secret") && text.contains("<set>"), "{text}");
    }
}
