//! Locks: ours, so that concurrent starts on one data folder share one cluster, and
//! PostgreSQL's, which a crash can leave behind.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, io_err};

/// Takes the cross-process lock on `data_dir` (a `.cluster.lock` file in it), waiting while
/// another process holds it. Released when the returned file is dropped, or when this process
/// dies, which is why it is a lock on an open file rather than a file's existence.
pub(crate) fn lock_data_dir(data_dir: &Path) -> Result<File, Error> {
    let lock_path = data_dir.join(".cluster.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("open", &lock_path))?;
    lock.lock().map_err(io_err("lock", &lock_path))?;
    Ok(lock)
}

/// Whether a PostgreSQL lock file (postmaster.pid or the socket's .lock) names a process that
/// is not this cluster's postmaster any more. After a crash its pid may belong to an unrelated
/// process, and the server then refuses to start. Without /proc nothing is judged stale.
pub(crate) fn is_stale(lock_file: &Path, pgdata: &Path) -> bool {
    if !Path::new("/proc/self").exists() {
        return false;
    }
    let Ok(text) = fs::read_to_string(lock_file) else {
        return false;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i64>().ok())
    else {
        return true;
    };
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.unsigned_abs()));
    let comm = fs::read_to_string(proc_dir.join("comm")).unwrap_or_default();
    // A zombie nobody reaped still has a /proc entry but is dead.
    let alive = fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    });
    let is_postgres = matches!(comm.trim(), "postgres" | "postmaster");
    // The postmaster works inside its PGDATA; a postgres of another cluster does not.
    let other_cluster = fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd != pgdata);
    !alive || !is_postgres || other_cluster
}

/// Whether postmaster.pid says the server is shutting down: its status line (the 8th, since
/// PostgreSQL 10) reads `stopping` from the moment a stop is requested until the file goes.
pub(crate) fn is_stopping(pid_file: &Path) -> bool {
    fs::read_to_string(pid_file)
        .is_ok_and(|text| text.lines().nth(7).is_some_and(|l| l.trim() == "stopping"))
}

pub(crate) fn remove_if_stale(lock_file: &Path, pgdata: &Path) -> Result<(), Error> {
    if is_stale(lock_file, pgdata) {
        tracing::info!(
            "removing stale PostgreSQL lock file {}",
            lock_file.display()
        );
        fs::remove_file(lock_file).map_err(io_err("remove stale lock file", lock_file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_pid_files_are_detected() {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("postmaster.pid");
        assert!(
            !is_stale(&pid_file, dir.path()),
            "a missing file is not stale"
        );
        // This test process is alive but is not postgres.
        fs::write(
            &pid_file,
            format!("{}\n{}\n", std::process::id(), dir.path().display()),
        )
        .unwrap();
        assert!(is_stale(&pid_file, dir.path()));
        fs::write(&pid_file, "999999999\n").unwrap();
        assert!(is_stale(&pid_file, dir.path()));
        fs::write(&pid_file, "garbage\n").unwrap();
        assert!(is_stale(&pid_file, dir.path()));
        remove_if_stale(&pid_file, dir.path()).unwrap();
        assert!(!pid_file.exists());
    }

    #[test]
    fn the_status_line_tells_a_stopping_server() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("postmaster.pid");
        assert!(!is_stopping(&pid_file), "no file: nothing stops");
        let lines =
            |status: &str| format!("4242\n/pg\n1700000000\n5432\n/run\n\n  5432001  1\n{status}\n");
        fs::write(&pid_file, lines("stopping")).unwrap();
        assert!(is_stopping(&pid_file));
        fs::write(&pid_file, lines("ready   ")).unwrap();
        assert!(!is_stopping(&pid_file));
        fs::write(&pid_file, "4242\n/pg\n").unwrap();
        assert!(
            !is_stopping(&pid_file),
            "before PostgreSQL 10 there is no status"
        );
    }

    #[test]
    fn the_data_folder_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_data_dir(dir.path()).unwrap();
        let second = File::open(dir.path().join(".cluster.lock")).unwrap();
        assert!(second.try_lock().is_err());
        drop(held);
        assert!(second.try_lock().is_ok());
    }
}
