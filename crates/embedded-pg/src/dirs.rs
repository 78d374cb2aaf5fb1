//! The cluster's folders: where they go, who owns them, whether the server's OS user can
//! reach them, and a socket folder short enough for a unix socket path.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt, fchown, lchown, symlink,
};
use std::path::{Path, PathBuf};

use nix::libc;
use nix::unistd::geteuid;

use crate::error::{Error, io_err};
use crate::os_user::OsUser;

/// Unix socket paths are capped near 107 bytes by the kernel; keep a margin.
pub(crate) const MAX_SOCKET_PATH: usize = 100;

pub(crate) fn canonical(path: &Path) -> Result<PathBuf, Error> {
    fs::canonicalize(path).map_err(io_err("resolve", path))
}

/// Creates `dir` and any missing parents with mode 0755 regardless of umask, so the server's
/// OS user can pass through them.
pub(crate) fn create_dirs_0755(dir: &Path) -> Result<(), Error> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    for path in missing.into_iter().rev() {
        match DirBuilder::new().mode(0o755).create(path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_err("create folder", path)(e));
            }
            _ => {}
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .map_err(io_err("set permissions on", path))?;
    }
    Ok(())
}

pub(crate) fn chown_to(path: &Path, user: Option<&OsUser>) -> Result<(), Error> {
    match user {
        Some(u) => lchown(path, Some(u.uid), Some(u.gid)).map_err(io_err("change owner of", path)),
        None => Ok(()),
    }
}

fn chown_tree(path: &Path, user: &OsUser) -> Result<(), Error> {
    chown_to(path, Some(user))?;
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        for entry in fs::read_dir(path)
            .map_err(io_err("read folder", path))?
            .flatten()
        {
            chown_tree(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// FNV-1a 64: a stable, dependency-free hash for naming per-cluster folders.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(crate) fn hex_hash(path: &Path) -> String {
    format!("{:016x}", fnv1a64(path.as_os_str().as_bytes()))
}

/// Whether `user` may pass through a folder with this mode and ownership (POSIX rules: only
/// the most specific class of permission bits applies).
fn can_search(mode: u32, owner: u32, group: u32, user: &OsUser) -> bool {
    if owner == user.uid {
        mode & 0o100 != 0
    } else if user.groups.contains(&group) {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// Whether every existing folder above `path` is searchable by `user`. Missing ones are fine:
/// they will be created with mode 0755.
fn reachable(path: &Path, user: &OsUser) -> bool {
    path.ancestors().skip(1).all(|dir| match fs::metadata(dir) {
        Ok(m) => can_search(m.mode(), m.uid(), m.gid(), user),
        Err(_) => true,
    })
}

/// The PGDATA folder to use: `<data_dir>/pg`, or where that symlink points, or (as root, when
/// the server's user cannot reach `data_dir`) a folder under `fallback_root` linked from there.
pub(crate) fn resolve_pgdata(
    data_dir: &Path,
    user: Option<&OsUser>,
    fallback_root: &Path,
) -> Result<PathBuf, Error> {
    let link = data_dir.join("pg");
    let meta = fs::symlink_metadata(&link);
    let target = if meta.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
        let target = data_dir.join(fs::read_link(&link).map_err(io_err("read link", &link))?);
        tracing::info!(
            "the PostgreSQL cluster lives in {} (linked from {})",
            target.display(),
            link.display()
        );
        target
    } else {
        link.clone()
    };
    let Some(user) = user else {
        return Ok(target);
    };
    if reachable(&target, user) {
        return Ok(target);
    }
    if meta.is_ok() {
        return Err(Error::Unreachable {
            dir: target,
            user: user.name.clone(),
        });
    }
    let home = fallback_root.join(hex_hash(data_dir));
    create_dirs_0755(&home)?;
    let pgdata = home.join("pg");
    symlink(&pgdata, &link).map_err(io_err("create link", &link))?;
    tracing::info!(
        "the PostgreSQL cluster lives in {} (linked from {}) because OS user {} cannot reach {}",
        pgdata.display(),
        link.display(),
        user.name,
        data_dir.display()
    );
    Ok(pgdata)
}

/// Makes sure PGDATA exists, is private and owned by the server's user. Returns true when it
/// still needs initdb; a folder without PG_VERSION is left from an interrupted initdb, so it
/// is emptied.
pub(crate) fn prepare_pgdata(pgdata: &Path, user: Option<&OsUser>) -> Result<bool, Error> {
    let version_file = pgdata.join("PG_VERSION");
    // try_exists: a permission error must not pass for "half-created" and get the folder emptied.
    if version_file
        .try_exists()
        .map_err(io_err("read", &version_file))?
    {
        if let Some(u) = user {
            // A cluster created under another uid (e.g. before running as root) must be handed over.
            let meta = fs::metadata(pgdata).map_err(io_err("read", pgdata))?;
            if meta.uid() != u.uid {
                chown_tree(pgdata, u)?;
            }
        }
        return Ok(false);
    }
    if pgdata.exists() {
        tracing::warn!("emptying half-created cluster folder {}", pgdata.display());
        for entry in fs::read_dir(pgdata).map_err(io_err("read folder", pgdata))? {
            let path = entry.map_err(io_err("read folder", pgdata))?.path();
            let removed = if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(io_err("remove", &path))?;
        }
    } else {
        if let Some(parent) = pgdata.parent() {
            create_dirs_0755(parent)?;
        }
        DirBuilder::new()
            .mode(0o700)
            .create(pgdata)
            .map_err(io_err("create folder", pgdata))?;
    }
    fs::set_permissions(pgdata, fs::Permissions::from_mode(0o700))
        .map_err(io_err("set permissions on", pgdata))?;
    chown_to(pgdata, user)?;
    Ok(true)
}

/// The length of the socket path in `dir` for `port`.
pub(crate) fn socket_path_len(dir: &Path, port: u16) -> usize {
    dir.as_os_str().len() + format!("/.s.PGSQL.{port}").len()
}

/// `<parent of PGDATA>/run` when its socket path fits and needs no quoting in a folder list.
fn preferred_socket_dir(pgdata: &Path, port: u16) -> Option<PathBuf> {
    let dir = pgdata.parent()?.join("run");
    let text = dir.to_str()?;
    let plain = !text.contains([',', '"']) && text.trim() == text;
    (socket_path_len(&dir, port) <= MAX_SOCKET_PATH && plain).then_some(dir)
}

/// How many random names a fallback socket folder gets before giving up: each is refused only
/// when someone else already has a folder (or anything) by that name.
const FALLBACK_ATTEMPTS: usize = 16;

/// `<prefix><16 hex digits>`, e.g. `/tmp/embedded-pg-0123456789abcdef`.
pub(crate) fn fallback_socket_dir(prefix: &str, id: u64) -> PathBuf {
    PathBuf::from(format!("{prefix}{id:016x}"))
}

/// 64 random bits from the kernel, for a name nobody can create ahead of us.
fn random_id() -> io::Result<u64> {
    let mut bytes = [0; 8];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_ne_bytes(bytes))
}

/// The socket folder: `<parent of PGDATA>/run` when it fits and is usable, else `recorded` (the
/// fallback folder the running or last server used, so that every process finds the same one)
/// when it still exists and is ours, else a new fallback folder with a random name. A
/// predictable name in a shared folder like /tmp could be created first by another user.
pub(crate) fn choose_socket_dir(
    pgdata: &Path,
    port: u16,
    fallback_prefix: &str,
    recorded: Option<&Path>,
    user: Option<&OsUser>,
) -> Result<PathBuf, Error> {
    let preferred = preferred_socket_dir(pgdata, port);
    if let Some(dir) = &preferred {
        match ensure_private_dir(dir, user) {
            Ok(()) => return Ok(dir.clone()),
            Err(e) => tracing::debug!(
                "socket folder {} unusable ({e}), using a folder named {fallback_prefix}...",
                dir.display()
            ),
        }
    }
    let recorded = recorded.filter(|dir| {
        Some(*dir) != preferred.as_deref()
            && socket_path_len(dir, port) <= MAX_SOCKET_PATH
            && dir.to_str().is_some_and(|d| d.starts_with(fallback_prefix))
    });
    if let Some(dir) = recorded {
        // Only an existing one: once gone, its name is no better than a new random one.
        match open_private_dir(dir, user) {
            Ok(()) => return Ok(dir.to_path_buf()),
            Err(e) => tracing::debug!(
                "recorded socket folder {} unusable ({e}), making a new one",
                dir.display()
            ),
        }
    }
    let mut attempt = 0;
    loop {
        let dir = fallback_socket_dir(
            fallback_prefix,
            random_id().map_err(io_err("read", Path::new("/dev/urandom")))?,
        );
        match ensure_private_dir(&dir, user) {
            Ok(()) => return Ok(dir),
            Err(e)
                if attempt + 1 < FALLBACK_ATTEMPTS && e.kind() == io::ErrorKind::AlreadyExists =>
            {
                tracing::debug!(
                    "socket folder {} unusable ({e}), trying another name",
                    dir.display()
                );
                attempt += 1;
            }
            Err(e) => return Err(io_err("prepare socket folder", &dir)(e)),
        }
    }
}

/// Creates `dir` private (0700) to the server's user, or takes an existing one that is a real
/// folder (not a symlink someone planted) already owned by that user (or by this process's).
fn ensure_private_dir(dir: &Path, user: Option<&OsUser>) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        // One just created belongs to this process and passes the same checks.
        _ => {}
    }
    open_private_dir(dir, user)
}

/// Takes an existing folder if it is a real folder owned by the server's user (or this
/// process's), then makes it private to the server's user. Anything else is refused with
/// `AlreadyExists`: someone else has that name.
fn open_private_dir(dir: &Path, user: Option<&OsUser>) -> io::Result<()> {
    let folder = open_dir_nofollow(dir).map_err(|e| match e.kind() {
        // Someone else's private folder.
        io::ErrorKind::PermissionDenied => {
            io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not accessible")
        }
        _ => e,
    })?;
    let owner = folder.metadata()?.uid();
    let ours = geteuid().as_raw();
    if owner != ours && user.is_none_or(|u| owner != u.uid) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("exists and belongs to another user (uid {owner})"),
        ));
    }
    secure_dir(&folder, user)
}

/// Opens the folder itself: a symlink in its place fails (ELOOP) instead of being followed,
/// and so does anything that is not a folder (ENOTDIR).
fn open_dir_nofollow(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => {
                io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a folder")
            }
            _ => e,
        })
}

/// Owner and mode set through the open folder, so nothing swapped in at its path since it was
/// opened and checked is changed instead.
fn secure_dir(folder: &File, user: Option<&OsUser>) -> io::Result<()> {
    if let Some(u) = user {
        fchown(folder, Some(u.uid), Some(u.gid))?;
    }
    folder.set_permissions(fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        assert_eq!(hex_hash(Path::new("a")), "af63dc4c8601ec8c");
    }

    #[test]
    fn socket_dir_falls_back_to_tmp_for_long_or_odd_paths() {
        let short = Path::new("/srv/app/pg");
        assert_eq!(
            preferred_socket_dir(short, 5432),
            Some(PathBuf::from("/srv/app/run"))
        );
        // 82-byte parent: ".../run/.s.PGSQL.5432" is exactly 100 bytes.
        let parent = format!("/{}", "x".repeat(81));
        assert!(preferred_socket_dir(&Path::new(&parent).join("pg"), 5432).is_some());
        let long = Path::new(&format!("{parent}y")).join("pg");
        assert_eq!(preferred_socket_dir(&long, 5432), None);
        let fallback = fallback_socket_dir("/tmp/app-", u64::MAX);
        assert_eq!(fallback, PathBuf::from("/tmp/app-ffffffffffffffff"));
        assert!(socket_path_len(&fallback, 5432) <= MAX_SOCKET_PATH);
        assert_eq!(preferred_socket_dir(Path::new("/a,b/pg"), 5432), None);
        // A longer port number counts.
        assert!(preferred_socket_dir(&Path::new(&parent).join("pg"), 54321).is_none());
    }

    #[test]
    fn search_permission_follows_posix_classes() {
        let user = OsUser {
            name: "pg".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 50],
        };
        assert!(can_search(0o755, 0, 0, &user));
        assert!(!can_search(0o700, 0, 0, &user));
        assert!(can_search(0o700, 1000, 0, &user));
        assert!(
            !can_search(0o071, 1000, 0, &user),
            "owner bits alone apply to the owner"
        );
        assert!(can_search(0o750, 0, 50, &user));
        assert!(
            !can_search(0o701, 0, 50, &user),
            "group bits alone apply to members"
        );
        assert!(can_search(0o701, 0, 0, &user));
    }

    #[test]
    fn reachability_checks_every_parent() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let private = dir.path().join("private");
        fs::create_dir(&private).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
        let owner = fs::metadata(&private).unwrap().uid();
        let stranger = OsUser {
            name: "stranger".into(),
            uid: owner.wrapping_add(4242),
            gid: 4242,
            groups: vec![4242],
        };
        let pgdata = private.join("data/pg");
        assert!(!reachable(&pgdata, &stranger));
        fs::set_permissions(&private, fs::Permissions::from_mode(0o711)).unwrap();
        assert!(reachable(&pgdata, &stranger));
    }

    #[test]
    fn a_symlink_in_place_of_a_private_folder_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.path().join("run");
        symlink(&target, &link).unwrap();
        let err = ensure_private_dir(&link, None).unwrap_err();
        assert_eq!(err.to_string(), "exists and is not a folder");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o755);
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(ensure_private_dir(&file, None).is_err());
    }

    #[test]
    fn an_existing_folder_is_taken_only_from_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("mine");
        fs::create_dir(&mine).unwrap();
        fs::set_permissions(&mine, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&mine, None).unwrap();
        assert_eq!(fs::metadata(&mine).unwrap().mode() & 0o777, 0o700);
        if !geteuid().is_root() {
            return;
        }
        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o777)).unwrap();
        lchown(&theirs, Some(65534), Some(65534)).unwrap();
        let server = OsUser {
            name: "server".into(),
            uid: 4242,
            gid: 4242,
            groups: vec![4242],
        };
        let err = ensure_private_dir(&theirs, Some(&server)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        let meta = fs::metadata(&theirs).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (65534, 0o777));
        // A new folder is handed to the server's user.
        let new = dir.path().join("new");
        ensure_private_dir(&new, Some(&server)).unwrap();
        let meta = fs::metadata(&new).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (4242, 0o700));
    }

    #[test]
    fn fallback_names_are_random() {
        assert_ne!(random_id().unwrap(), random_id().unwrap());
    }
}
