//! A private PostgreSQL cluster run with the server programs already installed on the machine
//! (`initdb`, `pg_ctl`), for programs that want "no database setup" as their default and for
//! test suites. Nothing is downloaded.
//!
//! The cluster lives in a data folder of your choice, listens only on a unix socket in a
//! private (0700) folder and has no TCP listener, which is why local `trust` authentication
//! is safe. It is created on first use, reused when another process (or thread) already runs
//! it, and survives a crash of its owner: a stale `postmaster.pid` does not block the next
//! start.
//!
//! When the calling process is root, which PostgreSQL refuses to run as, the server runs as
//! an existing unprivileged OS user, `postgres` unless [`ClusterBuilder::os_user`] names
//! another; OS users are never created. If that user cannot reach the data folder, the cluster
//! is kept under [`ClusterBuilder::fallback_root`] and linked from the data folder.
//!
//! An existing cluster is run with the installed server programs of the major version that
//! made it, when several versions are installed; when none is, the start fails with an
//! [`Error::VersionMismatch`] naming both versions.
//!
//! The crate hands out what a client needs to connect over the socket (folder, port, user)
//! rather than a URL; with sqlx, for example:
//!
//! ```no_run
//! use embedded_pg::Cluster;
//!
//! let cluster = Cluster::builder("./data").superuser("app").start()?;
//! cluster.ensure_database("app")?;
//! // sqlx::postgres::PgConnectOptions::new()
//! //     .socket(cluster.socket_dir())
//! //     .port(cluster.port())
//! //     .username(cluster.superuser())
//! //     .database("app");
//! // ... and when done, stop it unless other processes still use it:
//! cluster.stop_unless_in_use()?;
//! # Ok::<(), embedded_pg::Error>(())
//! ```
//!
//! Every call that runs a program blocks; from async code run it on a blocking thread (e.g.
//! `tokio::task::spawn_blocking`). Unix only.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod cluster;
mod dirs;
mod error;
mod guardian;
mod lock;
mod os_user;
mod output;
mod programs;
mod psql;

pub use builder::ClusterBuilder;
pub use cluster::Cluster;
pub use error::Error;
