//! The few queries a program needs around its own database, run with psql from the cluster's
//! installation.
//!
//! psql rather than a Rust PostgreSQL client: the crate stays synchronous and free of any
//! client library and async runtime (a program picks its own, sqlx, tokio-postgres or
//! postgres), and psql is installed beside initdb and pg_ctl with the same version. Its cost,
//! a process per call, is nothing next to starting a cluster.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::cluster::Cluster;
use crate::error::Error;
use crate::output::failure_detail;
use crate::programs::{client_program, pg_command};

/// The maintenance database every cluster has from initdb on.
const MAINTENANCE_DATABASE: &str = "postgres";

impl Cluster {
    /// Blocking. Creates database `name` (owned by the superuser) unless it exists. Any name
    /// is safe: psql quotes it as a literal, the server as an identifier. Another process
    /// creating it at the same moment is fine.
    pub fn ensure_database(&self, name: &str) -> Result<(), Error> {
        let script = "SELECT format('CREATE DATABASE %I', :'name') \
                      WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \\gexec\n";
        let out = self.psql(script, name)?;
        if out.status.success() || self.database_exists(name)? {
            return Ok(());
        }
        Err(self.query_error(format!("create database {name}"), &out))
    }

    /// Blocking. How many client connections the cluster has, not counting the one this
    /// asks with. A program that shares a cluster among its processes stops it on exit only
    /// when this is 0.
    pub fn connected_clients(&self) -> Result<u32, Error> {
        let script = "SELECT count(*) FROM pg_stat_activity \
                      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid();\n";
        let out = self.psql(script, "")?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim().parse() {
            Ok(count) if out.status.success() => Ok(count),
            _ => Err(self.query_error("count client connections".to_owned(), &out)),
        }
    }

    fn database_exists(&self, name: &str) -> Result<bool, Error> {
        let script = "SELECT count(*) FROM pg_database WHERE datname = :'name';\n";
        let out = self.psql(script, name)?;
        if !out.status.success() {
            return Err(self.query_error(format!("look for database {name}"), &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "1")
    }

    /// Runs `script` with psql as the superuser on the maintenance database, with psql
    /// variable `name` set to `name`. The script goes in on stdin because psql interpolates
    /// variables there and not in `-c`.
    fn psql(&self, script: &str, name: &str) -> Result<Output, Error> {
        let program = client_program(&self.bin_dir, "psql");
        let mut cmd = pg_command(&self.bin_dir, &program, self.user.as_ref());
        cmd.arg("--no-psqlrc")
            .arg("--no-password")
            .args(["--quiet", "--no-align", "--tuples-only"])
            .args(["--set", "ON_ERROR_STOP=1", "--set"])
            .arg(format!("name={name}"))
            .arg("--host")
            .arg(&self.socket_dir)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--username")
            .arg(&self.superuser)
            .arg("--dbname")
            .arg(MAINTENANCE_DATABASE)
            // libpq reads PGOPTIONS, PGSSLMODE, PGSERVICE and the like from the environment;
            // none of them may change where this goes or what it runs.
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_error = |source| Error::Spawn {
            program: program.clone(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_error)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A psql that died early closes the pipe; its output then says why.
            let _ = stdin.write_all(script.as_bytes());
        }
        child.wait_with_output().map_err(spawn_error)
    }

    fn query_error(&self, action: String, out: &Output) -> Error {
        Error::Query {
            action,
            dir: self.pgdata.clone(),
            detail: failure_detail("psql", out),
        }
    }
}
