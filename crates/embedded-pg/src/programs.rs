//! Finding PostgreSQL's programs on this machine, running them, and explaining their failures.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::Error;
use crate::os_user::OsUser;

/// Every folder holding both initdb and pg_ctl, in order of preference: `override_dir`, then
/// `path_var`, then the usual install folders below `root` (highest version first). `root` is
/// `/` unless the builder names another install tree; tests build fake ones.
pub(crate) fn find_bin_dirs(
    override_dir: Option<&OsStr>,
    path_var: Option<&OsStr>,
    root: &Path,
) -> Result<Vec<PathBuf>, Error> {
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
    let mut found: Vec<PathBuf> = Vec::new();
    for dir in candidates {
        if is_executable(&dir.join("initdb"))
            && is_executable(&dir.join("pg_ctl"))
            && !found.contains(&dir)
        {
            found.push(dir);
        }
    }
    if found.is_empty() {
        return Err(Error::NoServerPrograms);
    }
    Ok(found)
}

/// The server programs to run a cluster with. A new cluster (`cluster_version` None) gets the
/// first of `found`. An existing one gets the first whose major version is the one that made
/// it (its `PG_VERSION`): a server of another major version refuses its files. When none is,
/// the error names both versions. A folder whose version cannot be told is taken only when
/// it comes first, and its server then judges the files itself.
pub(crate) fn choose_bin_dir(
    found: &[PathBuf],
    cluster: Option<(&Path, &str)>,
    version_of: impl Fn(&Path) -> Option<String>,
) -> Result<PathBuf, Error> {
    let first = found.first().ok_or(Error::NoServerPrograms)?;
    let Some((pgdata, wanted)) = cluster else {
        return Ok(first.clone());
    };
    let mut installed: Vec<String> = Vec::new();
    for (i, dir) in found.iter().enumerate() {
        match version_of(dir) {
            Some(version) if version == wanted => {
                if i > 0 {
                    tracing::info!(
                        "using PostgreSQL {wanted} from {}: the cluster in {} was made by it",
                        dir.display(),
                        pgdata.display()
                    );
                }
                return Ok(dir.clone());
            }
            Some(version) if !installed.contains(&version) => installed.push(version),
            Some(_) => {}
            None if i == 0 => return Ok(first.clone()),
            None => {}
        }
    }
    installed.sort_by_key(|v| parse_version(v));
    Err(Error::VersionMismatch {
        dir: pgdata.to_path_buf(),
        cluster: wanted.to_owned(),
        installed,
    })
}

/// The major version of the server programs in `bin_dir`, from `pg_ctl --version` (which
/// answers before its check for root).
pub(crate) fn major_version(bin_dir: &Path) -> Option<String> {
    let out = Command::new(bin_dir.join("pg_ctl"))
        .arg("--version")
        .current_dir("/")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // "pg_ctl (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", "... 9.6.24", "... 18beta1".
    let text = String::from_utf8_lossy(&out.stdout);
    let release = text
        .split("(PostgreSQL)")
        .nth(1)?
        .split_whitespace()
        .next()?;
    major_of(release)
}

/// The major version of a release number as PG_VERSION writes it: `15` for 15.20 (and for
/// 15beta1), `9.6` for 9.6.24: before PostgreSQL 10 the first two numbers made the major.
pub(crate) fn major_of(release: &str) -> Option<String> {
    let numeric: &str = release
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()?;
    let parts: Vec<u32> = numeric
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    match parts.as_slice() {
        [major, ..] if *major >= 10 => Some(major.to_string()),
        [major, minor, ..] => Some(format!("{major}.{minor}")),
        _ => None,
    }
}

/// The major version that made the cluster in `pgdata`: its `PG_VERSION` file, which initdb
/// writes first of all. `None` when there is none yet (a new cluster) or it does not hold a
/// version (the server then says what is wrong with it).
pub(crate) fn cluster_version(pgdata: &Path) -> Option<String> {
    let mut text = String::new();
    // A version is a few bytes; whatever else is there is not read.
    fs::File::open(pgdata.join("PG_VERSION"))
        .ok()?
        .take(16)
        .read_to_string(&mut text)
        .ok()?;
    let text = text.trim();
    let parts: Vec<&str> = text.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    (parts.len() <= 2 && parts.iter().all(numeric)).then(|| text.to_owned())
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
        let first =
            |o: Option<&OsStr>, p: Option<&OsStr>| find_bin_dirs(o, p, r).unwrap()[0].clone();
        assert_eq!(
            find_bin_dirs(None, None, r).unwrap(),
            [
                installed.clone(),
                r.join("usr/lib/postgresql/9.6/bin"),
                r.join("usr/pgsql-16/bin")
            ]
        );

        let on_path = r.join("on-path");
        fake_bin(&on_path, &["initdb", "pg_ctl"]);
        let path = std::env::join_paths([Path::new("relative"), &on_path]).unwrap();
        assert_eq!(first(None, Some(&path)), on_path);

        let custom = r.join("custom");
        fake_bin(&custom, &["initdb", "pg_ctl"]);
        assert_eq!(first(Some(custom.as_os_str()), Some(&path)), custom);
        // A folder named twice is listed once.
        let twice = std::env::join_paths([&custom, &on_path]).unwrap();
        assert_eq!(
            find_bin_dirs(Some(custom.as_os_str()), Some(&twice), r).unwrap()[..2],
            [custom.clone(), on_path.clone()]
        );
        // An override without the programs falls through to the other places.
        assert_eq!(first(Some(r.as_os_str()), None), installed);
    }

    #[test]
    fn finder_reports_missing_programs_in_one_line() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_bin_dirs(
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
    fn an_existing_cluster_gets_the_programs_of_its_own_major_version() {
        let dirs: Vec<PathBuf> = ["/opt/pg17", "/usr/lib/postgresql/17/bin", "/x/15", "/x/9.6"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let version_of = |dir: &Path| {
            let name = dir.to_string_lossy();
            let version = if name.contains("15") {
                "15"
            } else if name.contains("9.6") {
                "9.6"
            } else {
                "17"
            };
            Some(version.to_owned())
        };
        let pgdata = Path::new("/srv/app/data/pg");
        let pick = |v: Option<&str>| choose_bin_dir(&dirs, v.map(|v| (pgdata, v)), version_of);
        assert_eq!(
            pick(None).unwrap(),
            dirs[0],
            "a new cluster: the first found"
        );
        assert_eq!(pick(Some("17")).unwrap(), dirs[0]);
        assert_eq!(pick(Some("15")).unwrap(), dirs[2]);
        assert_eq!(pick(Some("9.6")).unwrap(), dirs[3]);

        let older = pick(Some("14")).unwrap_err();
        assert!(matches!(older, Error::VersionMismatch { .. }));
        assert_eq!(
            older.to_string(),
            "the PostgreSQL cluster in /srv/app/data/pg was made by PostgreSQL 14 but only \
             PostgreSQL 9.6, 15 and 17 are installed: install PostgreSQL 14's server programs, \
             or upgrade the cluster to PostgreSQL 17 with pg_upgrade"
        );
        let newer = choose_bin_dir(&dirs[2..3], Some((pgdata, "18")), version_of).unwrap_err();
        assert_eq!(
            newer.to_string(),
            "the PostgreSQL cluster in /srv/app/data/pg was made by PostgreSQL 18 but only \
             PostgreSQL 15 is installed: install PostgreSQL 18's server programs (pg_upgrade only \
             moves a cluster to a newer version)"
        );

        // Programs whose version cannot be told: the first is used as it is, others skipped.
        let unknown = |dir: &Path| (dir != dirs[0]).then(|| "15".to_owned());
        assert_eq!(
            choose_bin_dir(&dirs, Some((pgdata, "16")), unknown).unwrap(),
            dirs[0]
        );
        let unknown = |dir: &Path| (dir == dirs[0]).then(|| "17".to_owned());
        assert!(choose_bin_dir(&dirs, Some((pgdata, "16")), unknown).is_err());
    }

    #[test]
    fn major_versions_are_read_as_pg_version_writes_them() {
        assert_eq!(major_of("15.20").as_deref(), Some("15"));
        assert_eq!(major_of("18beta1").as_deref(), Some("18"));
        assert_eq!(major_of("17devel").as_deref(), Some("17"));
        assert_eq!(major_of("9.6.24").as_deref(), Some("9.6"));
        assert_eq!(major_of("10.1").as_deref(), Some("10"));
        assert_eq!(major_of("9"), None);
        assert_eq!(major_of("devel"), None);
        assert_eq!(major_of(""), None);
    }

    #[test]
    fn the_cluster_version_is_read_from_pg_version() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cluster_version(dir.path()), None, "no cluster yet");
        let file = dir.path().join("PG_VERSION");
        for (text, read) in [
            ("15\n", Some("15")),
            ("9.6\n", Some("9.6")),
            ("9", Some("9")),
            ("", None),
            ("15.x", None),
            ("1.2.3", None),
            ("15\n\0garbage", None),
            ("../../etc", None),
        ] {
            fs::write(&file, text).unwrap();
            assert_eq!(cluster_version(dir.path()).as_deref(), read, "{text:?}");
        }
        // Only the first bytes are read: a huge file is not a version.
        fs::write(&file, "1".repeat(1 << 20)).unwrap();
        assert_eq!(cluster_version(dir.path()), None);
    }

    #[test]
    fn the_version_of_installed_programs_is_asked_of_pg_ctl() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path();
        let script = |text: &str| {
            let path = bin.join("pg_ctl");
            fs::write(&path, format!("#!/bin/sh\n{text}\n")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        };
        script("echo 'pg_ctl (PostgreSQL) 16.4 (Debian 16.4-1)'");
        assert_eq!(major_version(bin).as_deref(), Some("16"));
        script("echo 'pg_ctl (PostgreSQL) 9.6.24'");
        assert_eq!(major_version(bin).as_deref(), Some("9.6"));
        script("echo 'something else'");
        assert_eq!(major_version(bin), None);
        script("echo 'pg_ctl (PostgreSQL) 16.4'; exit 1");
        assert_eq!(major_version(bin), None);
        assert_eq!(major_version(&bin.join("missing")), None);
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
