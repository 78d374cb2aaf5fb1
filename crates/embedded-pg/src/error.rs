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
    /// This process is root, which PostgreSQL refuses, and no other OS user could be found or
    /// created.
    #[error(
        "PostgreSQL refuses to run as root and no OS user could be set up for it ({detail}): create a `postgres` user"
    )]
    OsUser {
        /// Why the user could not be created.
        detail: String,
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

/// For `map_err`: an [`Error::Io`] for `action` on `path`.
pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
