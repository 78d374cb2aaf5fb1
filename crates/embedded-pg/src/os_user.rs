//! The unprivileged OS user a cluster runs as when this process is root, which PostgreSQL
//! refuses to run as.

use nix::unistd::{User, geteuid};

use crate::error::Error;

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

/// The OS user to run the server as: none (this process's user) unless we are root. Then
/// `name`, which must exist and must not be root itself. Users are never created here: making
/// OS accounts is the machine's administrator's decision (and a package's or image's job).
pub(crate) fn cluster_user(name: &str) -> Result<Option<OsUser>, Error> {
    if !is_root() {
        return Ok(None);
    }
    let user = lookup_user(name).ok_or_else(|| Error::OsUser {
        user: name.to_owned(),
    })?;
    if user.uid == 0 {
        return Err(Error::OsUserIsRoot {
            user: name.to_owned(),
        });
    }
    Ok(Some(user))
}

/// Whether `name` can be a user name on any system this crate runs on: no empty name, no
/// leading `-` (it would read as an option to useradd), nothing that would break the one-line
/// messages that name it or the passwd file's format.
pub(crate) fn plausible_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, ':' | '/' | ',' | '`'))
}

/// The user database's entry for `name` (passwd files, LDAP, whatever NSS is set up with).
/// A failed lookup counts as no such user.
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

    #[test]
    fn only_plausible_user_names_are_taken() {
        for good in ["postgres", "pg-17", "svc_db", "app.user", "ü"] {
            assert!(plausible_user_name(good), "{good}");
        }
        let long = "x".repeat(65);
        for bad in ["", "-r", "a b", "a\nb", "a:b", "../x", "a,b", "`id`", &long] {
            assert!(!plausible_user_name(bad), "{bad:?}");
        }
    }
}
