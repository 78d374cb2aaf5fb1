//! The unprivileged OS user a cluster runs as when this process is root, which PostgreSQL
//! refuses to run as.

use std::process::Command;

use nix::unistd::{User, geteuid};

use crate::error::Error;
use crate::output::failure_detail;

/// An OS user and the credentials its processes get.
#[derive(Clone, Debug)]
pub(crate) struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The groups the server's processes have. Only the primary group: std's `Command::uid`
    /// drops every supplementary group, and giving them back would take unsafe code (or the
    /// unstable `CommandExt::groups`), so counting them would call reachable a folder the
    /// server cannot open.
    pub groups: Vec<u32>,
}

pub(crate) fn is_root() -> bool {
    geteuid().is_root()
}

/// The OS user to run the server as: none (this process's user) unless we are root. Then the
/// `postgres` user of the distribution's packages, else `system_user`, created if missing.
pub(crate) fn cluster_user(system_user: &str) -> Result<Option<OsUser>, Error> {
    if !is_root() {
        return Ok(None);
    }
    if let Some(user) = lookup_user("postgres").or_else(|| lookup_user(system_user)) {
        return Ok(Some(user));
    }
    tracing::info!(
        "creating system user {system_user} to run PostgreSQL, which refuses to run as root"
    );
    // No library call creates users portably; useradd is what the distributions provide.
    let out = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            system_user,
        ])
        .output();
    // Another process may have created it meanwhile, so look again before failing.
    if let Some(user) = lookup_user(system_user) {
        return Ok(Some(user));
    }
    let detail = match out {
        Ok(out) => failure_detail("useradd", &out),
        Err(e) => format!("could not run useradd: {e}"),
    };
    Err(Error::OsUser { detail })
}

/// The user database's entry for `name` (passwd files, LDAP, whatever NSS is set up with).
/// A failed lookup counts as no such user: the caller then tries the next name or creates one.
pub(crate) fn lookup_user(name: &str) -> Option<OsUser> {
    let user = User::from_name(name).ok().flatten()?;
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    Some(OsUser {
        name: name.to_owned(),
        uid,
        gid,
        groups: vec![gid],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_looked_up_in_the_user_database() {
        let root = lookup_user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.groups, vec![0]);
        assert!(lookup_user("no-such-user-for-embedded-pg").is_none());
    }
}
