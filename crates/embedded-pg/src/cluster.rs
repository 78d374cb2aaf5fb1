//! A started cluster: where to reach it, whether it runs, stopping it, and the steps a start
//! takes (initdb, configuration, launch, waiting for the socket).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use crate::dirs;
use crate::error::{Error, io_err};
use crate::lock;
use crate::os_user::OsUser;
use crate::output::{failure_detail, last_meaningful_line, read_from};
use crate::programs::{pg_command, run};

/// A running PostgreSQL cluster reachable over a unix socket.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub(crate) bin_dir: PathBuf,
    /// The data folder given to the builder, resolved: where the cross-process lock lives.
    pub(crate) data_dir: PathBuf,
    pub(crate) pgdata: PathBuf,
    pub(crate) socket_dir: PathBuf,
    /// The OS user the server runs as when this process is root; `None` means this process's user.
    pub(crate) user: Option<OsUser>,
    pub(crate) superuser: String,
    pub(crate) port: u16,
    pub(crate) started_here: bool,
}

impl Cluster {
    /// The unix socket folder: what libpq calls `host` and sqlx's `PgConnectOptions::socket`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port number in the socket file name (`.s.PGSQL.<port>`); there is no TCP listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database superuser name. Local connections need no password (`trust`): only this
    /// process's user and the server's OS user can open the socket folder.
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// The PGDATA folder actually used.
    pub fn cluster_dir(&self) -> &Path {
        &self.pgdata
    }

    /// The folder the server programs were found in.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The OS user the server runs as when this process is root; `None` when it runs as this
    /// process's user.
    pub fn os_user(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.name.as_str())
    }

    /// True if [`ClusterBuilder::start`] started the server, false if it reused a running one.
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Blocking. Whether a server runs in this cluster's folder (`pg_ctl status`).
    pub fn is_running(&self) -> Result<bool, Error> {
        Ok(run(&mut self.pg_ctl("status"))?.status.success())
    }

    /// Blocking. Stops the server (fast mode: clients are disconnected) and waits; not
    /// running is fine.
    pub fn stop(&self) -> Result<(), Error> {
        if !self.is_running()? {
            return Ok(());
        }
        let out = run(self.pg_ctl("stop").args(["-m", "fast", "-w"]))?;
        if out.status.success() || !self.is_running()? {
            return Ok(());
        }
        Err(Error::Stop {
            dir: self.pgdata.clone(),
            detail: failure_detail("pg_ctl", &out),
        })
    }

    /// Blocking. Stops the server unless other clients are connected to it; returns whether it
    /// is stopped now (also true when it was not running). The count and the stop happen under
    /// the data folder's lock, which [`ClusterBuilder::start`] holds while it decides to reuse
    /// the server: another process can then not reuse it between the count and the stop.
    /// A process that reused the server but had not connected yet is not counted: see
    /// [`wait_for_stop_in_progress`](Self::wait_for_stop_in_progress).
    pub fn stop_unless_in_use(&self) -> Result<bool, Error> {
        let _lock = lock::lock_data_dir(&self.data_dir)?;
        if !self.is_running()? {
            return Ok(true);
        }
        // A server already shutting down refuses the count's connection; it is going anyway.
        let stopping = lock::is_stopping(&self.pgdata.join("postmaster.pid"));
        if !stopping && self.connected_clients()? > 0 {
            return Ok(false);
        }
        self.stop()?;
        Ok(true)
    }

    /// Blocking. Waits while another process's [`stop_unless_in_use`](Self::stop_unless_in_use)
    /// is counting clients or stopping the server (it holds the data folder's lock until the
    /// server is gone). A process that reused a running server calls this once it has
    /// connected, then checks that connection: a stop that counted clients before the
    /// connection existed has finished by then (the connection is dead: start again), and a
    /// later one counts it and leaves the server running.
    pub fn wait_for_stop_in_progress(&self) -> Result<(), Error> {
        lock::lock_data_dir(&self.data_dir).map(drop)
    }

    /// `pg_ctl <action> -D PGDATA`, run as the server's OS user.
    pub(crate) fn pg_ctl(&self, action: &str) -> Command {
        let mut cmd = pg_command(&self.bin_dir, "pg_ctl", self.user.as_ref());
        cmd.arg(action).arg("-D").arg(&self.pgdata);
        cmd
    }

    pub(crate) fn initdb(&self, config_file: &str, managed_by: &str) -> Result<(), Error> {
        tracing::info!(pgdata = %self.pgdata.display(), "creating PostgreSQL cluster");
        let out = run(pg_command(&self.bin_dir, "initdb", self.user.as_ref())
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-U")
            .arg(&self.superuser)
            .args(["--auth=trust", "-E", "UTF8", "--no-locale"]))?;
        if !out.status.success() {
            return Err(Error::Initdb {
                dir: self.pgdata.clone(),
                detail: failure_detail("initdb", &out),
            });
        }
        let conf = self.pgdata.join("postgresql.conf");
        let include = format!(
            "\n# Socket and listener settings managed by {managed_by}.\ninclude_if_exists = '{}'\n",
            conf_quote(config_file)
        );
        OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(include.as_bytes()))
            .map_err(io_err("append to", &conf))
    }

    /// Rewritten at every start so a moved data folder gets its new socket location.
    pub(crate) fn write_config(&self, config_file: &str, managed_by: &str) -> Result<(), Error> {
        let path = self.pgdata.join(config_file);
        let text = format!(
            "# Written by {managed_by} at every start; edits here are overwritten.\n\
             listen_addresses = ''\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\n",
            self.port,
            conf_quote(&self.socket_dir.to_string_lossy())
        );
        fs::write(&path, text).map_err(io_err("write", &path))?;
        dirs::chown_to(&path, self.user.as_ref())
    }

    pub(crate) fn launch(&self) -> Result<(), Error> {
        let log = self.pgdata.join("postgres.log");
        let log_start = fs::metadata(&log).map_or(0, |m| m.len());
        let out = run(self
            .pg_ctl("start")
            .args(["-w", "-t", "60", "-l"])
            .arg(&log))?;
        if out.status.success() {
            return Ok(());
        }
        let detail = last_meaningful_line(&read_from(&log, log_start))
            .unwrap_or_else(|| failure_detail("pg_ctl", &out));
        Err(Error::Start {
            dir: self.pgdata.clone(),
            log,
            detail,
        })
    }

    /// A server that is shutting down (its last user stopped it a moment ago) would refuse
    /// every connection: wait until it is gone, up to pg_ctl's own 60 s, then start a new one.
    pub(crate) fn wait_while_stopping(&self) {
        let pid_file = self.pgdata.join("postmaster.pid");
        if !lock::is_stopping(&pid_file) {
            return;
        }
        tracing::info!(pgdata = %self.pgdata.display(), "waiting for PostgreSQL to finish stopping");
        for _ in 0..600 {
            sleep(Duration::from_millis(100));
            if !lock::is_stopping(&pid_file) {
                return;
            }
        }
    }

    /// pg_ctl's wait already covers our own starts; this also covers a server someone else
    /// started without waiting.
    pub(crate) fn wait_for_socket(&self) -> Result<(), Error> {
        let socket = self.socket_dir.join(format!(".s.PGSQL.{}", self.port));
        for _ in 0..50 {
            if socket.exists() {
                return Ok(());
            }
            sleep(Duration::from_millis(100));
        }
        Err(Error::SocketMissing {
            dir: self.pgdata.clone(),
            socket_dir: self.socket_dir.clone(),
        })
    }
}

/// A value for a single-quoted postgresql.conf string.
fn conf_quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "''")
}

/// The socket folder the include file (written by [`Cluster::write_config`] at the last start)
/// names: a fallback folder's name is random, and a server already running uses that one.
pub(crate) fn recorded_socket_dir(config: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(config).ok()?;
    let value = text.lines().find_map(|line| {
        line.strip_prefix("unix_socket_directories = '")?
            .strip_suffix('\'')
    })?;
    Some(PathBuf::from(conf_unquote(value)))
}

/// The inverse of [`conf_quote`].
fn conf_unquote(value: &str) -> String {
    let mut text = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '\'' => text.extend(chars.next()),
            _ => text.push(c),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_quoted() {
        assert_eq!(conf_quote(r"/a'b\c"), r"/a''b\\c");
        assert_eq!(conf_unquote(&conf_quote(r"/a'b\c''")), r"/a'b\c''");
    }

    #[test]
    fn the_socket_folder_is_read_back_from_the_include_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("embedded-pg.conf");
        assert_eq!(recorded_socket_dir(&config), None);
        fs::write(
            &config,
            "# Written by x\nport = 5432\nunix_socket_directories = '/tmp/it''s-0123'\n",
        )
        .unwrap();
        assert_eq!(
            recorded_socket_dir(&config),
            Some(PathBuf::from("/tmp/it's-0123"))
        );
    }
}
