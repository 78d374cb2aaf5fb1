//! The settings that name what a cluster leaves on the machine, and starting a cluster from
//! them (creating it on first use, reusing a running one).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::cluster::{self, Cluster};
use crate::dirs::{self, MAX_SOCKET_PATH};
use crate::error::Error;
use crate::{lock, os_user, programs};

impl Cluster {
    /// Settings for a cluster kept in `data_dir`: the cluster in `<data_dir>/pg` (or a symlink
    /// there), its socket in `<data_dir>/run` (or a short fallback). Nothing happens until
    /// [`ClusterBuilder::start`].
    pub fn builder(data_dir: impl Into<PathBuf>) -> ClusterBuilder {
        ClusterBuilder::new(data_dir.into())
    }
}

/// Settings for a [`Cluster`]: every name the cluster leaves on the machine. Made with
/// [`Cluster::builder`]; the defaults suit a program that has no name of its own to give.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct ClusterBuilder {
    pub(crate) data_dir: PathBuf,
    pub(crate) superuser: String,
    pub(crate) port: u16,
    pub(crate) os_user: String,
    pub(crate) fallback_root: PathBuf,
    pub(crate) socket_fallback_prefix: String,
    pub(crate) bin_dir: Option<PathBuf>,
    pub(crate) bin_dir_env: Option<String>,
    pub(crate) install_root: PathBuf,
    pub(crate) config_file: String,
    pub(crate) managed_by: String,
}

impl ClusterBuilder {
    pub(crate) fn new(data_dir: PathBuf) -> Self {
        ClusterBuilder {
            data_dir,
            superuser: "postgres".to_owned(),
            port: 5432,
            os_user: "postgres".to_owned(),
            fallback_root: PathBuf::from("/var/lib/embedded-pg/clusters"),
            socket_fallback_prefix: "/tmp/embedded-pg-".to_owned(),
            bin_dir: None,
            bin_dir_env: None,
            install_root: PathBuf::from("/"),
            config_file: "embedded-pg.conf".to_owned(),
            managed_by: "embedded-pg".to_owned(),
        }
    }

    /// The database superuser initdb creates. Default `postgres`. Changing it for an existing
    /// cluster does not rename the role.
    pub fn superuser(mut self, name: impl Into<String>) -> Self {
        self.superuser = name.into();
        self
    }

    /// The port number in the socket's file name (`.s.PGSQL.<port>`). There is no TCP
    /// listener, so it needs no coordination with other servers. Default 5432.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// When this process is root, which PostgreSQL refuses to run as: the unprivileged OS
    /// user the server runs as. It must exist ([`start`](Self::start) fails with
    /// [`Error::OsUser`] otherwise; users are never created) and it gets the cluster's files.
    /// Ignored when this process is not root: the server then runs as this process's user.
    /// Default `postgres`, the user the distributions' PostgreSQL packages create.
    pub fn os_user(mut self, name: impl Into<String>) -> Self {
        self.os_user = name.into();
        self
    }

    /// When this process is root and the server's OS user cannot reach the data folder (one
    /// under a private home folder, say): the cluster goes to `<root>/<hash of data folder>/pg`
    /// instead, with a symlink `<data folder>/pg` to it. Default
    /// `/var/lib/embedded-pg/clusters`.
    pub fn fallback_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.fallback_root = root.into();
        self
    }

    /// When `<data folder>/run` would make a socket path too long for the kernel (about 100
    /// bytes) or is unusable: the socket folder is `<prefix><16 random hex digits>`, recorded
    /// in the cluster's settings so that later starts find it. Default `/tmp/embedded-pg-`.
    pub fn socket_fallback_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.socket_fallback_prefix = prefix.into();
        self
    }

    /// A folder to look in for initdb and pg_ctl before the environment variable set with
    /// [`bin_dir_env`](Self::bin_dir_env), PATH and the usual install folders. A folder without
    /// them is skipped.
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// An environment variable naming a folder to look in for initdb and pg_ctl before PATH
    /// and the usual install folders, read when the cluster starts. Default: none.
    pub fn bin_dir_env(mut self, variable: impl Into<String>) -> Self {
        self.bin_dir_env = Some(variable.into());
        self
    }

    /// The folder below which the usual install folders (`usr/lib/postgresql/<version>/bin`,
    /// `usr/pgsql-<version>/bin`, Homebrew's...) are looked for, after
    /// [`bin_dir`](Self::bin_dir) and PATH. Default `/`; another root suits an install tree
    /// unpacked elsewhere.
    pub fn install_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.install_root = root.into();
        self
    }

    /// The file in the cluster folder that holds the socket and listener settings, rewritten
    /// at every start and included from postgresql.conf. Default `embedded-pg.conf`.
    pub fn config_file(mut self, file_name: impl Into<String>) -> Self {
        self.config_file = file_name.into();
        self
    }

    /// The name in the comments of the configuration this crate writes, so that whoever reads
    /// postgresql.conf knows what manages it. Default `embedded-pg`.
    pub fn managed_by(mut self, name: impl Into<String>) -> Self {
        self.managed_by = name.into();
        self
    }

    /// Blocking. Finds the server programs, creates the cluster on first use (initdb), starts
    /// it unless it is already running (then reuses it), and waits until it accepts
    /// connections. Concurrent starts on one data folder, in this process or others, wait for
    /// each other and share one server.
    ///
    /// A new cluster is made with the first server programs found (see
    /// [`bin_dir`](Self::bin_dir)); an existing one is run with installed programs of the
    /// major version that made it (its `PG_VERSION`), wherever they come in that order, and
    /// fails with [`Error::VersionMismatch`] when there are none.
    pub fn start(self) -> Result<Cluster, Error> {
        self.validate()?;
        let override_dir: Option<OsString> = self.bin_dir.map(PathBuf::into_os_string);
        let override_dir =
            override_dir.or_else(|| self.bin_dir_env.as_ref().and_then(std::env::var_os));
        let bin_dirs = programs::find_bin_dirs(
            override_dir.as_deref(),
            std::env::var_os("PATH").as_deref(),
            &self.install_root,
        )?;
        dirs::create_dirs_0755(&self.data_dir)?;
        let data_dir = dirs::canonical(&self.data_dir)?;
        // Held until this function returns, so a concurrent start waits, then reuses the cluster.
        let _lock = lock::lock_data_dir(&data_dir)?;

        let user = os_user::cluster_user(&self.os_user)?;
        let pgdata = dirs::resolve_pgdata(&data_dir, user.as_ref(), &self.fallback_root)?;
        // Before anything in the cluster folder changes hands: a cluster no installed server
        // can open is left as it is.
        let made_by = programs::cluster_version(&pgdata);
        let bin_dir = programs::choose_bin_dir(
            &bin_dirs,
            made_by.as_deref().map(|v| (pgdata.as_path(), v)),
            programs::major_version,
        )?;
        let fresh = dirs::prepare_pgdata(&pgdata, user.as_ref())?;
        let pgdata = dirs::canonical(&pgdata)?;
        let recorded = cluster::recorded_socket_dir(&pgdata.join(&self.config_file));
        let socket_dir = dirs::choose_socket_dir(
            &pgdata,
            self.port,
            &self.socket_fallback_prefix,
            recorded.as_deref(),
            user.as_ref(),
        )?;
        let mut cluster = Cluster {
            bin_dir,
            data_dir,
            pgdata,
            socket_dir,
            user,
            superuser: self.superuser,
            port: self.port,
            started_here: false,
        };
        if fresh {
            cluster.initdb(&self.config_file, &self.managed_by)?;
        }
        cluster.write_config(&self.config_file, &self.managed_by)?;
        for lock_file in [
            cluster.pgdata.join("postmaster.pid"),
            cluster
                .socket_dir
                .join(format!(".s.PGSQL.{}.lock", cluster.port)),
        ] {
            lock::remove_if_stale(&lock_file, &cluster.pgdata)?;
        }
        cluster.wait_while_stopping();
        if cluster.is_running()? {
            cluster.wait_for_socket()?;
            tracing::info!(pgdata = %cluster.pgdata.display(), "reusing running PostgreSQL");
            return Ok(cluster);
        }
        cluster.launch()?;
        cluster.started_here = true;
        cluster.wait_for_socket()?;
        tracing::info!(pgdata = %cluster.pgdata.display(), "started PostgreSQL");
        Ok(cluster)
    }

    /// Settings that cannot work are refused before anything is created.
    fn validate(&self) -> Result<(), Error> {
        let invalid = |setting, reason: &str| {
            Err(Error::InvalidSetting {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.superuser.is_empty() {
            return invalid("superuser", "empty");
        }
        if !os_user::plausible_user_name(&self.os_user) {
            return invalid(
                "os_user",
                "not a user name (empty, a leading '-', or whitespace, control characters, ':', '/', ',' or '`')",
            );
        }
        if self.config_file.is_empty() || self.config_file.contains('/') {
            return invalid("config_file", "must be a file name without '/'");
        }
        if !self.install_root.is_absolute() {
            return invalid("install_root", "must be an absolute path");
        }
        if !self.fallback_root.is_absolute() {
            return invalid("fallback_root", "must be an absolute path");
        }
        if !self.socket_fallback_prefix.starts_with('/') {
            return invalid("socket_fallback_prefix", "must be an absolute path");
        }
        let longest = dirs::fallback_socket_dir(&self.socket_fallback_prefix, 0);
        if dirs::socket_path_len(&longest, self.port) > MAX_SOCKET_PATH {
            return invalid(
                "socket_fallback_prefix",
                "too long for a unix socket path (about 100 bytes with the socket's name)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let refused = |builder: ClusterBuilder| match builder.validate() {
            Err(Error::InvalidSetting { setting, .. }) => setting,
            other => panic!("{other:?}"),
        };
        let builder = || Cluster::builder("/nonexistent");
        assert!(builder().validate().is_ok());
        assert_eq!(refused(builder().superuser("")), "superuser");
        assert_eq!(refused(builder().config_file("a/b.conf")), "config_file");
        assert_eq!(refused(builder().os_user("")), "os_user");
        assert_eq!(refused(builder().os_user("pg\nroot")), "os_user");
        assert_eq!(refused(builder().install_root("usr")), "install_root");
        assert_eq!(refused(builder().fallback_root("rel")), "fallback_root");
        assert_eq!(
            refused(builder().socket_fallback_prefix("tmp/x-")),
            "socket_fallback_prefix"
        );
        let long = format!("/tmp/{}-", "x".repeat(80));
        assert_eq!(
            refused(builder().socket_fallback_prefix(long)),
            "socket_fallback_prefix"
        );
        // The longest accepted prefix leaves room for the hash and the socket's name.
        let fits = format!("/{}", "x".repeat(MAX_SOCKET_PATH - 16 - 14 - 1));
        assert!(builder().socket_fallback_prefix(fits).validate().is_ok());
    }
}
