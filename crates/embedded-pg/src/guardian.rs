//! A child process that stops the cluster once this process is gone, however it ends.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::cluster::Cluster;
use crate::error::Error;

impl Cluster {
    /// Spawns a guardian child that stops the cluster once this process has exited for any
    /// reason (even SIGKILL): it waits for end-of-file on a pipe only this process writes to.
    /// Meant for test harnesses, whose clusters must not outlive them.
    pub fn stop_when_this_process_exits(&self) -> Result<(), Error> {
        // The pipe's write end lives as long as the Child kept here, that is, as long as this
        // process: nothing ever drops these.
        static GUARDIANS: OnceLock<Mutex<Vec<Child>>> = OnceLock::new();
        // Only the postmaster running now is stopped, so a later cluster in this folder survives.
        let pid = fs::read_to_string(self.pgdata.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(|l| l.trim().to_owned()))
            .unwrap_or_default();
        let script = r#"trap '' HUP INT; read _; [ "$(head -n 1 "$2/postmaster.pid" 2>/dev/null)" = "$3" ] && exec "$1" stop -D "$2" -m fast -w"#;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(self.bin_dir.join("pg_ctl"))
            .arg(&self.pgdata)
            .arg(pid)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            // Its own process group, so a Ctrl-C aimed at this process does not kill it first.
            .process_group(0);
        if let Some(user) = &self.user {
            cmd.uid(user.uid).gid(user.gid);
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: PathBuf::from("/bin/sh"),
            source,
        })?;
        GUARDIANS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(child);
        Ok(())
    }
}
