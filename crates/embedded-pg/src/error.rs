//! Why a cluster could not be started, stopped or queried.

use std::io;
use std::path::{Path, PathBuf};

/// Why a cluster could not be started, stopped or queried. Every message is one line, meant to
/// be shown to the person running the program as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither the override folder, PATH nor the usual install folders hold initdb and pg_ctl.
    #[error(
        "PostgreSQL server programs (initdb, pg_ctl) were not found on PATH or in the usual install folders: install them (Debian/Ubuntu: apt-get install postgresql; Fedora/RHEL: dnf install postgresql-server; macOS: brew install postgresql)"
    )]
    NoServerPrograms,
    /// A file system operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create folder".
        action: &'static str,
        /// The file or folder it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A program could not be run at all.
    #[error("could not run {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The cluster was made by a major version of PostgreSQL whose server programs are not
    /// installed; servers of other major versions cannot open its files.
    #[error("{}", version_mismatch(dir, cluster, installed))]
    VersionMismatch {
        /// The cluster folder.
        dir: PathBuf,
        /// The major version that made the cluster (its `PG_VERSION`).
        cluster: String,
        /// The major versions of the server programs found, lowest first.
        installed: Vec<String>,
    },
    /// This process is root, which PostgreSQL refuses, and the OS user to run the server as
    /// (see [`ClusterBuilder::os_user`](crate::ClusterBuilder::os_user)) does not exist. This
    /// crate never creates OS users.
    #[error(
        "running as root, the embedded PostgreSQL needs an unprivileged OS user to run as, and there is no user {user}: create one with `useradd --system {user}`"
    )]
    OsUser {
        /// The user name looked for.
        user: String,
    },
    /// The OS user to run the server as is root too (uid 0), which PostgreSQL refuses.
    #[error(
        "OS user {user} has uid 0, and PostgreSQL refuses to run as root: name an unprivileged user"
    )]
    OsUserIsRoot {
        /// The user name.
        user: String,
    },
    /// The server's OS user cannot pass through a folder above an existing cluster folder.
    #[error(
        "OS user {user} cannot reach the cluster folder {} (a folder above it is not searchable): remove it so a reachable location is used, or grant search permission on its parents",
        dir.display()
    )]
    Unreachable {
        /// The cluster folder.
        dir: PathBuf,
        /// The OS user the server runs as.
        user: String,
    },
    /// initdb failed.
    #[error("initdb failed for {}: {detail}", dir.display())]
    Initdb {
        /// The cluster folder.
        dir: PathBuf,
        /// The line of initdb's output that best explains the failure.
        detail: String,
    },
    /// The server did not start.
    #[error("PostgreSQL did not start in {}: {detail} (see {})", dir.display(), log.display())]
    Start {
        /// The cluster folder.
        dir: PathBuf,
        /// The server's log file.
        log: PathBuf,
        /// The line of the log that best explains the failure.
        detail: String,
    },
    /// A server runs in the cluster folder but its socket is not where this cluster expects it.
    #[error(
        "PostgreSQL is running in {} but has no socket in {}: stop it (pg_ctl stop -D {}) and start again",
        dir.display(), socket_dir.display(), dir.display()
    )]
    SocketMissing {
        /// The cluster folder.
        dir: PathBuf,
        /// Where the socket was expected.
        socket_dir: PathBuf,
    },
    /// pg_ctl stop failed and the server still runs.
    #[error("pg_ctl stop failed for {}: {detail}", dir.display())]
    Stop {
        /// The cluster folder.
        dir: PathBuf,
        /// The line of pg_ctl's output that best explains the failure.
        detail: String,
    },
    /// A query run with psql failed.
    #[error("could not {action} on the PostgreSQL cluster in {}: {detail}", dir.display())]
    Query {
        /// What was being done, e.g. "create database app".
        action: String,
        /// The cluster folder.
        dir: PathBuf,
        /// The line of psql's output that best explains the failure.
        detail: String,
    },
    /// A builder setting cannot work.
    #[error("invalid embedded PostgreSQL setting {setting}: {reason}")]
    InvalidSetting {
        /// The builder method's name.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}

/// The text of [`Error::VersionMismatch`]: both versions and what to do, which depends on
/// whether the cluster is older (pg_upgrade moves it forward) or newer than what is installed.
fn version_mismatch(dir: &Path, cluster: &str, installed: &[String]) -> String {
    let list = match installed {
        [] => String::from("no other version"),
        [one] => format!("PostgreSQL {one}"),
        [rest @ .., last] => format!("PostgreSQL {} and {last}", rest.join(", ")),
    };
    let verb = if installed.len() > 1 { "are" } else { "is" };
    let number = |v: &str| -> Vec<u32> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    let newest = installed.iter().max_by_key(|v| number(v));
    let way_out = match newest {
        Some(newest) if number(newest) > number(cluster) => format!(
            "install PostgreSQL {cluster}'s server programs, or upgrade the cluster to PostgreSQL {newest} with pg_upgrade"
        ),
        _ => format!(
            "install PostgreSQL {cluster}'s server programs (pg_upgrade only moves a cluster to a newer version)"
        ),
    };
    format!(
        "the PostgreSQL cluster in {} was made by PostgreSQL {cluster} but only {list} {verb} installed: {way_out}",
        dir.display()
    )
}

/// For `map_err`: an [`Error::Io`] for `action` on `path`.
pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
