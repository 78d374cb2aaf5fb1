//! Opening and closing the database: a PostgreSQL server given by URL, or the embedded cluster
//! (a private PostgreSQL run with the machine's server programs, see the embedded-pg crate).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use embedded_pg::{Cluster, ClusterBuilder};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgPool};

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
        let options = connect_options(url)?;
        let pool = pool_options(config.max_connections).connect_lazy_with(options.clone());
        // Connected now rather than at the first query, so that a server out of reach or a
        // TLS certificate refused is told in one line that names the server and what to change.
        match pool.acquire().await {
            Ok(first) => drop(first),
            // The pool retries a refused connection (a server starting) until its timeout and
            // then says only that; one more attempt says why.
            Err(sqlx::Error::PoolTimedOut) => {
                let direct = options.connect().await;
                let direct = direct.map_err(|e| connect_failed(&options, &e))?;
                direct.close().await.ok();
            }
            Err(e) => return Err(connect_failed(&options, &e)),
        }
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

/// Connection settings from a URL, with the settings every connection carries. `sslmode` and
/// `sslrootcert` (in the URL, or PGSSLMODE and PGSSLROOTCERT) mean what they mean to libpq,
/// see [`tls_as_libpq`].
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let invalid = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}")
    };
    let options = PgConnectOptions::from_str(url).map_err(|e| invalid(&e))?;
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e))?;
    let tls = TlsParams::from_url_and_env(&parsed, |name| std::env::var(name).ok());
    Ok(session_settings(tls_as_libpq(options, &tls)?))
}

/// What the URL (or the environment) says about TLS beyond what [`PgConnectOptions`] tells.
#[derive(Debug, Default)]
struct TlsParams {
    /// Whether `sslmode` was given at all (libpq's default, `prefer`, is not the same thing as
    /// asking for it when `sslrootcert=system`).
    mode_given: bool,
    /// `sslrootcert` as written.
    root_cert: Option<String>,
}

impl TlsParams {
    /// The URL's parameters (with sqlx's other spellings of them) win over the environment, as
    /// in sqlx and libpq.
    fn from_url_and_env(url: &url::Url, env: impl Fn(&str) -> Option<String>) -> TlsParams {
        let mut params = TlsParams {
            mode_given: env("PGSSLMODE").is_some(),
            root_cert: env("PGSSLROOTCERT"),
        };
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" | "ssl-mode" => params.mode_given = true,
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => {
                    params.root_cert = Some(value.into_owned());
                }
                _ => {}
            }
        }
        params
    }
}

/// sqlx reads `sslmode` and `sslrootcert`; where it departs from libpq, this brings it back:
/// - over a unix socket TLS is never used (PostgreSQL refuses it there, and libpq does not ask;
///   sqlx would ask, and then fail `require`);
/// - `allow` tries TLS too (sqlx treats it as `disable`; libpq tries without TLS first, then
///   with it, so a server that only takes TLS is still reached);
/// - `require` with an `sslrootcert` checks the certificate against it, as `verify-ca` does;
/// - `sslrootcert=system` means the system's trusted CAs and implies `verify-full`; a weaker
///   `sslmode` beside it is refused;
/// - an `sslrootcert` that cannot be read is said at once, with its path (sqlx's error would
///   come at the first connection, without the path).
fn tls_as_libpq(options: PgConnectOptions, tls: &TlsParams) -> anyhow::Result<PgConnectOptions> {
    if options.get_socket().is_some() || options.get_host().starts_with('/') {
        return Ok(options.ssl_mode(PgSslMode::Disable));
    }
    let mut mode = match options.get_ssl_mode() {
        PgSslMode::Allow => PgSslMode::Prefer,
        other => other,
    };
    let mut options = options;
    match tls.root_cert.as_deref() {
        Some("system") => {
            if tls.mode_given && !matches!(mode, PgSslMode::VerifyFull) {
                anyhow::bail!(
                    "DATABASE_URL: sslrootcert=system needs sslmode=verify-full (or no sslmode): \
                     checking a certificate against the system's CAs means nothing without \
                     checking the server's name"
                );
            }
            // The system's CAs are what sqlx trusts anyway; an empty list in place of the
            // file name "system" adds none.
            options = options.ssl_root_cert_from_pem(Vec::new());
            mode = PgSslMode::VerifyFull;
        }
        Some(path) => {
            if matches!(mode, PgSslMode::Require) {
                mode = PgSslMode::VerifyCa;
            }
            if matches!(mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull) {
                std::fs::File::open(path)
                    .map_err(|e| anyhow::anyhow!("DATABASE_URL: sslrootcert {path}: {e}"))?;
            }
        }
        None => {}
    }
    Ok(options.ssl_mode(mode))
}

/// A first connection that failed, as one line: the server, the `sslmode`, and for TLS and
/// authentication refusals what to change.
fn connect_failed(options: &PgConnectOptions, error: &sqlx::Error) -> anyhow::Error {
    let server = format!(
        "cannot connect to PostgreSQL at {}:{} (sslmode={})",
        options.get_host(),
        options.get_port(),
        ssl_mode_name(options.get_ssl_mode())
    );
    match tls_refusal(error, options.get_host()) {
        Some(reason) => anyhow::anyhow!("{server}: {reason}"),
        None => anyhow::anyhow!("{server}: {error}"),
    }
}

/// Why TLS failed, in words, when that is what `error` is about.
fn tls_refusal(error: &sqlx::Error, host: &str) -> Option<String> {
    use rustls::CertificateError as Cert;
    match error {
        // rustls's errors reach sqlx inside the socket's I/O error.
        sqlx::Error::Io(io) => {
            let tls = io.get_ref()?.downcast_ref::<rustls::Error>()?;
            Some(match tls {
                // BadSignature: a CA of the same name but another key (one renewed, say).
                rustls::Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => {
                    "the server's TLS certificate is not signed by a trusted CA: set sslrootcert \
                     to the CA certificate (PEM) that signed it"
                        .to_owned()
                }
                rustls::Error::InvalidCertificate(
                    Cert::NotValidForName | Cert::NotValidForNameContext { .. },
                ) => format!(
                    "the server's TLS certificate is not valid for the name {host}: connect by \
                     a name it holds ({tls})"
                ),
                rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
                    format!("the server's TLS certificate has expired ({tls})")
                }
                rustls::Error::InvalidCertificate(_) => {
                    format!("the server's TLS certificate is refused: {tls}")
                }
                other => format!("TLS failed: {other}"),
            })
        }
        sqlx::Error::Tls(e) => Some(format!("TLS failed: {e}")),
        // 28000: invalid_authorization_specification, which is what pg_hba.conf's `reject`
        // and a missing `hostnossl` line give.
        sqlx::Error::Database(d)
            if d.code().as_deref() == Some("28000") && d.message().contains("no encryption") =>
        {
            Some(format!(
                "{}: the server refuses this connection without TLS: use sslmode=verify-full (or require)",
                d.message()
            ))
        }
        _ => None,
    }
}

/// `sslmode` as written in a URL.
fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// Connection settings for the embedded cluster's database, over its unix socket. No password:
/// the cluster trusts local connections, and only its owner can open the socket's folder. No
/// TLS over the socket, whatever PGSSLMODE says (see [`tls_as_libpq`]).
fn cluster_connect_options(cluster: &Cluster) -> PgConnectOptions {
    let options = PgConnectOptions::new_without_pgpass()
        .socket(cluster.socket_dir())
        .port(cluster.port())
        .username(cluster.superuser())
        .database(EMBEDDED_DATABASE)
        .ssl_mode(PgSslMode::Disable);
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

    fn tls_of(url: &str, env: &[(&str, &str)]) -> TlsParams {
        let url = url::Url::parse(url).unwrap();
        TlsParams::from_url_and_env(&url, |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    /// The options `url` gives, as [`connect_options`] makes them, with `env` in place of the
    /// process's PGSSLMODE and PGSSLROOTCERT.
    fn libpq_options(url: &str, env: &[(&str, &str)]) -> anyhow::Result<PgConnectOptions> {
        let mut options = PgConnectOptions::from_str(url).unwrap();
        if let Some((_, mode)) = env.iter().find(|(k, _)| *k == "PGSSLMODE") {
            options = options.ssl_mode(mode.parse().unwrap());
        }
        tls_as_libpq(options, &tls_of(url, env))
    }

    fn mode_of(url: &str) -> &'static str {
        ssl_mode_name(libpq_options(url, &[]).unwrap().get_ssl_mode())
    }

    #[test]
    fn sslmode_means_what_it_means_to_libpq() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let ca = ca.path().display();
        for (url, mode) in [
            ("postgres://db.internal/app", "prefer"),
            ("postgres://db.internal/app?sslmode=disable", "disable"),
            ("postgres://db.internal/app?sslmode=allow", "prefer"),
            ("postgres://db.internal/app?sslmode=prefer", "prefer"),
            ("postgres://db.internal/app?sslmode=require", "require"),
            ("postgres://db.internal/app?sslmode=verify-ca", "verify-ca"),
            (
                "postgres://db.internal/app?sslmode=verify-full",
                "verify-full",
            ),
            // Over a unix socket, no TLS whatever is asked.
            (
                "postgres://%2Fvar%2Frun%2Fpostgresql/app?sslmode=require",
                "disable",
            ),
            (
                "postgres:///app?host=/run/pg&sslmode=verify-full",
                "disable",
            ),
        ] {
            assert_eq!(mode_of(url), mode, "{url}");
        }
        // A CA file turns `require` into a check against it, as in libpq.
        let url = format!("postgres://db.internal/app?sslmode=require&sslrootcert={ca}");
        assert_eq!(mode_of(&url), "verify-ca");
        let url = format!("postgres://db.internal/app?sslmode=prefer&sslrootcert={ca}");
        assert_eq!(mode_of(&url), "prefer");
        // ... also when the CA or the mode comes from the environment.
        let options = libpq_options(
            "postgres://db.internal/app",
            &[("PGSSLMODE", "require"), ("PGSSLROOTCERT", &ca.to_string())],
        )
        .unwrap();
        assert_eq!(ssl_mode_name(options.get_ssl_mode()), "verify-ca");
    }

    #[test]
    fn sslrootcert_system_means_the_systems_cas_and_verify_full() {
        assert_eq!(
            mode_of("postgres://db.example.com/app?sslrootcert=system"),
            "verify-full"
        );
        assert_eq!(
            mode_of("postgres://db.example.com/app?sslmode=verify-full&sslrootcert=system"),
            "verify-full"
        );
        for weaker in ["disable", "prefer", "require", "verify-ca"] {
            let url = format!("postgres://db.example.com/app?sslmode={weaker}&sslrootcert=system");
            let error = libpq_options(&url, &[]).unwrap_err().to_string();
            assert!(
                error.contains("sslrootcert=system needs sslmode=verify-full"),
                "{error}"
            );
        }
        let error = libpq_options(
            "postgres://db.example.com/app",
            &[("PGSSLMODE", "require"), ("PGSSLROOTCERT", "system")],
        )
        .unwrap_err();
        assert!(error.to_string().contains("sslrootcert=system"), "{error}");
        // The file name "system" is not looked for.
        let url = "postgres://db.example.com/app?sslrootcert=system";
        let options = libpq_options(url, &[]).unwrap();
        assert!(
            !options.to_url_lossy().as_str().contains("system"),
            "{}",
            options.to_url_lossy()
        );
    }

    #[test]
    fn an_unreadable_sslrootcert_is_named_at_once() {
        let url = "postgres://db.internal/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
        let error = connect_options(url).unwrap_err().to_string();
        assert!(
            error.starts_with("DATABASE_URL: sslrootcert /nonexistent/ca.pem: ")
                && !error.contains('\n'),
            "{error}"
        );
        // Modes that check nothing do not read it, as in libpq.
        for mode in ["disable", "prefer"] {
            let url = format!(
                "postgres://db.internal/app?sslmode={mode}&sslrootcert=/nonexistent/ca.pem"
            );
            assert!(connect_options(&url).is_ok(), "{url}");
        }
        let error = connect_options("postgres://db.internal/app?sslmode=sometimes").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("DATABASE_URL is not a valid PostgreSQL URL"),
            "{error}"
        );
    }

    #[test]
    fn tls_failures_are_told_in_words() {
        use rustls::CertificateError as Cert;
        let options =
            connect_options("postgres://db.internal:6432/app?sslmode=verify-full").unwrap();
        let tls_error = |e: rustls::Error| {
            sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        };
        let said = |e: sqlx::Error| connect_failed(&options, &e).to_string();
        let unknown = said(tls_error(rustls::Error::InvalidCertificate(
            Cert::UnknownIssuer,
        )));
        assert_eq!(
            unknown,
            "cannot connect to PostgreSQL at db.internal:6432 (sslmode=verify-full): the server's \
             TLS certificate is not signed by a trusted CA: set sslrootcert to the CA certificate \
             (PEM) that signed it"
        );
        let name = said(tls_error(rustls::Error::InvalidCertificate(
            Cert::NotValidForName,
        )));
        assert!(
            name.contains("not valid for the name db.internal"),
            "{name}"
        );
        let expired = said(tls_error(rustls::Error::InvalidCertificate(Cert::Expired)));
        assert!(expired.contains("certificate has expired"), "{expired}");
        let refused = said(sqlx::Error::Io(
            std::io::ErrorKind::ConnectionRefused.into(),
        ));
        assert!(
            refused.starts_with(
                "cannot connect to PostgreSQL at db.internal:6432 (sslmode=verify-full): "
            ),
            "{refused}"
        );
        for text in [unknown, name, expired, refused] {
            assert!(!text.contains('\n'), "{text}");
        }
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
