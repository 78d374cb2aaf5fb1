//! Finding PostgreSQL's programs on this machine, running them, and explaining their failures.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::Error;
use crate::os_user::OsUser;

/// The folder holding both initdb and pg_ctl: `override_dir`, then `path_var`, then the usual
/// install folders below `root` (a parameter so tests can build a fake file system).
pub(crate) fn find_bin_dir(
    override_dir: Option<&OsStr>,
    path_var: Option<&OsStr>,
    root: &Path,
) -> Result<PathBuf, Error> {
    let mut candidates: Vec<PathBuf> = override_dir
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .collect();
    // Relative PATH entries would depend on the working folder; skip them.
    candidates.extend(
        path_var
            .into_iter()
            .flat_map(std::env::split_paths)
            .filter(|d| d.is_absolute()),
    );
    let at = |p: &str| root.join(p);
    candidates.extend(versioned(&at("usr/lib/postgresql"), ""));
    candidates.extend(versioned(&at("usr"), "pgsql-"));
    candidates.push(at("usr/local/pgsql/bin"));
    candidates.extend(versioned(&at("opt/homebrew/opt"), "postgresql@"));
    candidates.push(at("opt/homebrew/bin"));
    candidates.extend(versioned(&at("usr/local/opt"), "postgresql@"));
    candidates
        .into_iter()
        .find(|d| is_executable(&d.join("initdb")) && is_executable(&d.join("pg_ctl")))
        .ok_or(Error::NoServerPrograms)
}

/// `<parent>/<prefix><N>/bin` for every version N found, highest first.
fn versioned(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((
                parse_version(name.strip_prefix(prefix)?)?,
                e.path().join("bin"),
            ))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

fn parse_version(s: &str) -> Option<Vec<u32>> {
    s.split('.').map(|part| part.parse().ok()).collect()
}

pub(crate) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A client program (psql) of the same installation as the server programs, so client and
/// server versions match; else the first one on this process's PATH. Distributions that split
/// server and client packages still install the client beside the server on Debian and with
/// Homebrew, so the fallback is for unusual layouts.
pub(crate) fn client_program(bin_dir: &Path, name: &str) -> PathBuf {
    let beside = bin_dir.join(name);
    if is_executable(&beside) {
        return beside;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .unwrap_or(beside)
}

/// `program` (a name in `bin_dir`, or a path), run as `user` when given.
pub(crate) fn pg_command(
    bin_dir: &Path,
    program: impl AsRef<Path>,
    user: Option<&OsUser>,
) -> Command {
    let mut cmd = Command::new(bin_dir.join(program));
    // "/" so the server user never needs access to this process's working folder.
    cmd.current_dir("/").stdin(Stdio::null());
    if let Some(user) = user {
        // std drops every supplementary group when it changes the uid: the child has the
        // primary group only, which is what `dirs::reachable` assumes.
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Result<Output, Error> {
    cmd.output().map_err(|source| Error::Spawn {
        program: PathBuf::from(cmd.get_program()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin(dir: &Path, programs: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        for program in programs {
            let path = dir.join(program);
            fs::write(&path, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn finder_prefers_override_then_path_then_highest_install() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fake_bin(&r.join("usr/lib/postgresql/9.6/bin"), &["initdb", "pg_ctl"]);
        fake_bin(&r.join("usr/lib/postgresql/15/bin"), &["initdb", "pg_ctl"]);
        fake_bin(&r.join("usr/lib/postgresql/100/bin"), &["initdb"]);
        fake_bin(&r.join("usr/pgsql-16/bin"), &["initdb", "pg_ctl"]);
        let installed = r.join("usr/lib/postgresql/15/bin");
        assert_eq!(find_bin_dir(None, None, r).unwrap(), installed);

        let on_path = r.join("on-path");
        fake_bin(&on_path, &["initdb", "pg_ctl"]);
        let path = std::env::join_paths([Path::new("relative"), &on_path]).unwrap();
        assert_eq!(find_bin_dir(None, Some(&path), r).unwrap(), on_path);

        let custom = r.join("custom");
        fake_bin(&custom, &["initdb", "pg_ctl"]);
        assert_eq!(
            find_bin_dir(Some(custom.as_os_str()), Some(&path), r).unwrap(),
            custom
        );
        // An override without the programs falls through to the other places.
        assert_eq!(
            find_bin_dir(Some(r.as_os_str()), None, r).unwrap(),
            installed
        );
    }

    #[test]
    fn finder_reports_missing_programs_in_one_line() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_bin_dir(
            Some(empty.path().as_os_str()),
            Some(OsStr::new("")),
            empty.path(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::NoServerPrograms));
        let text = err.to_string();
        assert!(
            !text.contains('\n') && text.contains("apt-get install postgresql"),
            "{text}"
        );
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(parse_version("10") > parse_version("9.6"));
        assert_eq!(parse_version("x"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn client_program_prefers_the_servers_installation() {
        let dir = tempfile::tempdir().unwrap();
        fake_bin(dir.path(), &["psql"]);
        assert_eq!(client_program(dir.path(), "psql"), dir.path().join("psql"));
        let missing = dir.path().join("none");
        let found = client_program(&missing, "no-such-program-here");
        assert_eq!(found, missing.join("no-such-program-here"));
    }
}
