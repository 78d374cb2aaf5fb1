//! A private PostgreSQL cluster run with the server programs installed on this machine.
//!
//! Used when no DATABASE_URL is given. The cluster lives under the service's data folder,
//! listens only on a unix socket in a private (0700) folder and has no TCP listener, which is
//! why local `trust` authentication is safe.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt, lchown, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::sleep;
use std::time::Duration;

const SUPERUSER: &str = "leavemsg";
const PORT: u16 = 5432;
/// OS user created to own the cluster when running as root and no `postgres` user exists.
const SYSTEM_USER: &str = "leavemsg";
/// Where clusters go when the OS user cannot reach the data folder (e.g. a checkout in /root).
const FALLBACK_ROOT: &str = "/var/lib/leavemsg/clusters";
/// Unix socket paths are capped near 107 bytes by the kernel; keep a margin.
const MAX_SOCKET_PATH: usize = 100;

/// Why the embedded cluster could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server programs (initdb, pg_ctl) were not found on PATH or in the usual install folders: install them (Debian/Ubuntu: apt-get install postgresql; Fedora/RHEL: dnf install postgresql-server; macOS: brew install postgresql) or set DATABASE_URL to an existing PostgreSQL"
    )]
    NoServerPrograms,
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("could not run {}: {source}", program.display())]
    Spawn { program: PathBuf, source: io::Error },
    #[error(
        "PostgreSQL refuses to run as root and no OS user could be set up for it ({detail}): create a `postgres` user or set DATABASE_URL"
    )]
    OsUser { detail: String },
    #[error(
        "OS user {user} cannot reach the cluster folder {} (a folder above it is not searchable): remove it so a reachable location is used, or grant search permission on its parents",
        dir.display()
    )]
    Unreachable { dir: PathBuf, user: String },
    #[error("initdb failed for {}: {detail}", dir.display())]
    Initdb { dir: PathBuf, detail: String },
    #[error("PostgreSQL did not start in {}: {detail} (see {})", dir.display(), log.display())]
    Start {
        dir: PathBuf,
        log: PathBuf,
        detail: String,
    },
    #[error(
        "PostgreSQL is running in {} but has no socket in {}: stop it (pg_ctl stop -D {}) and start again",
        dir.display(), socket_dir.display(), dir.display()
    )]
    SocketMissing { dir: PathBuf, socket_dir: PathBuf },
    #[error("pg_ctl stop failed for {}: {detail}", dir.display())]
    Stop { dir: PathBuf, detail: String },
}

/// A running PostgreSQL cluster reachable over a unix socket.
#[derive(Clone, Debug)]
pub struct Cluster {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    /// The OS user the server runs as when this process is root; `None` means this process's user.
    user: Option<OsUser>,
    started_here: bool,
}

#[derive(Clone, Debug)]
struct OsUser {
    name: String,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Cluster {
    /// Blocking. Finds the server programs, creates the cluster on first use (initdb), starts it
    /// unless it is already running (then reuses it), and waits until it accepts connections.
    pub fn start(data_dir: &Path) -> Result<Cluster, EmbeddedError> {
        let bin_dir = find_bin_dir(
            std::env::var_os("LEAVEMSG_PG_BIN").as_deref(),
            std::env::var_os("PATH").as_deref(),
            Path::new("/"),
        )?;
        create_dirs_0755(data_dir)?;
        let data_dir = canonical(data_dir)?;
        let lock_path = data_dir.join(".cluster.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        // Held until this function returns, so a concurrent start waits, then reuses the cluster.
        lock.lock().map_err(io_err("lock", &lock_path))?;

        let user = cluster_user()?;
        let pgdata = resolve_pgdata(&data_dir, user.as_ref())?;
        let fresh = prepare_pgdata(&pgdata, user.as_ref())?;
        let pgdata = canonical(&pgdata)?;
        let socket_dir = choose_socket_dir(&pgdata, user.as_ref())?;
        let mut cluster = Cluster {
            bin_dir,
            pgdata,
            socket_dir,
            user,
            started_here: false,
        };
        if fresh {
            cluster.initdb()?;
        }
        cluster.write_config()?;
        for lock_file in [
            cluster.pgdata.join("postmaster.pid"),
            cluster.socket_dir.join(format!(".s.PGSQL.{PORT}.lock")),
        ] {
            remove_if_stale(&lock_file, &cluster.pgdata)?;
        }
        if cluster.is_running()? {
            cluster.wait_for_socket()?;
            tracing::info!(pgdata = %cluster.pgdata.display(), "reusing running PostgreSQL");
            return Ok(cluster);
        }
        cluster.launch()?;
        cluster.started_here = true;
        cluster.wait_for_socket()?;
        tracing::info!(pgdata = %cluster.pgdata.display(), "started PostgreSQL");
        Ok(cluster)
    }

    /// The unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port number in the socket file name (`.s.PGSQL.<port>`); there is no TCP listener.
    pub fn port(&self) -> u16 {
        PORT
    }

    /// The database superuser name.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The PGDATA folder actually used.
    pub fn cluster_dir(&self) -> &Path {
        &self.pgdata
    }

    /// True if [`Cluster::start`] started the server, false if it reused a running one.
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// A libpq-style URL for `database` on this cluster over the unix socket, e.g.
    /// `postgres://leavemsg@localhost/DBNAME?host=%2Fpath%2Fto%2Frun&port=5432`; libpq and sqlx
    /// both read a `host` starting with `/` as the socket folder.
    pub fn database_url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost/{}?host={}&port={PORT}",
            percent_encode(database.as_bytes()),
            percent_encode(self.socket_dir.as_os_str().as_bytes()),
        )
    }

    /// Blocking. Stops the server (fast mode) and waits; not running is fine.
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        if !self.is_running()? {
            return Ok(());
        }
        let out = run(self.pg_ctl("stop").args(["-m", "fast", "-w"]))?;
        if out.status.success() || !self.is_running()? {
            return Ok(());
        }
        Err(EmbeddedError::Stop {
            dir: self.pgdata.clone(),
            detail: failure_detail("pg_ctl", &out),
        })
    }

    /// Spawns a guardian child that stops the cluster once this process has exited for any
    /// reason (even SIGKILL): it waits for end-of-file on a pipe only this process writes to.
    /// Meant for test harnesses, whose clusters must not outlive them.
    pub fn stop_when_this_process_exits(&self) -> Result<(), EmbeddedError> {
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
        let child = cmd.spawn().map_err(|source| EmbeddedError::Spawn {
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

    /// `pg_ctl <action> -D PGDATA`, run as the server's OS user.
    fn pg_ctl(&self, action: &str) -> Command {
        let mut cmd = pg_command(&self.bin_dir, "pg_ctl", self.user.as_ref());
        cmd.arg(action).arg("-D").arg(&self.pgdata);
        cmd
    }

    fn is_running(&self) -> Result<bool, EmbeddedError> {
        Ok(run(&mut self.pg_ctl("status"))?.status.success())
    }

    fn initdb(&self) -> Result<(), EmbeddedError> {
        tracing::info!(pgdata = %self.pgdata.display(), "creating PostgreSQL cluster");
        let out = run(pg_command(&self.bin_dir, "initdb", self.user.as_ref())
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale"]))?;
        if !out.status.success() {
            return Err(EmbeddedError::Initdb {
                dir: self.pgdata.clone(),
                detail: failure_detail("initdb", &out),
            });
        }
        let conf = self.pgdata.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| {
                f.write_all(b"\n# Socket and listener settings managed by leavemsg.\ninclude_if_exists = 'leavemsg.conf'\n")
            })
            .map_err(io_err("append to", &conf))
    }

    /// Rewritten at every start so a moved data folder gets its new socket location.
    fn write_config(&self) -> Result<(), EmbeddedError> {
        let path = self.pgdata.join("leavemsg.conf");
        let text = format!(
            "# Written by leavemsg at every start; edits here are overwritten.\n\
             listen_addresses = ''\n\
             port = {PORT}\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\n",
            conf_quote(&self.socket_dir.to_string_lossy())
        );
        fs::write(&path, text).map_err(io_err("write", &path))?;
        chown_to(&path, self.user.as_ref())
    }

    fn launch(&self) -> Result<(), EmbeddedError> {
        let log = self.pgdata.join("postgres.log");
        let log_start = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let out = run(self
            .pg_ctl("start")
            .args(["-w", "-t", "60", "-l"])
            .arg(&log))?;
        if out.status.success() {
            return Ok(());
        }
        let detail = last_meaningful_line(&read_from(&log, log_start))
            .unwrap_or_else(|| failure_detail("pg_ctl", &out));
        Err(EmbeddedError::Start {
            dir: self.pgdata.clone(),
            log,
            detail,
        })
    }

    /// pg_ctl's wait already covers our own starts; this also covers a server someone else
    /// started without waiting.
    fn wait_for_socket(&self) -> Result<(), EmbeddedError> {
        let socket = self.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        for _ in 0..50 {
            if socket.exists() {
                return Ok(());
            }
            sleep(Duration::from_millis(100));
        }
        Err(EmbeddedError::SocketMissing {
            dir: self.pgdata.clone(),
            socket_dir: self.socket_dir.clone(),
        })
    }
}

/// The folder holding both initdb and pg_ctl: `override_dir`, then `path_var`, then the usual
/// install folders below `root`.
fn find_bin_dir(
    override_dir: Option<&OsStr>,
    path_var: Option<&OsStr>,
    root: &Path,
) -> Result<PathBuf, EmbeddedError> {
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
        .ok_or(EmbeddedError::NoServerPrograms)
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

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn pg_command(bin_dir: &Path, program: &str, user: Option<&OsUser>) -> Command {
    let mut cmd = Command::new(bin_dir.join(program));
    // "/" so the server user never needs access to this process's working folder.
    cmd.current_dir("/").stdin(Stdio::null());
    if let Some(user) = user {
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

fn run(cmd: &mut Command) -> Result<Output, EmbeddedError> {
    cmd.output().map_err(|source| EmbeddedError::Spawn {
        program: PathBuf::from(cmd.get_program()),
        source,
    })
}

/// One line on why a program failed, from its output.
fn failure_detail(program: &str, out: &Output) -> String {
    let text = [&out.stdout[..], b"\n", &out.stderr[..]].concat();
    last_meaningful_line(&String::from_utf8_lossy(&text))
        .unwrap_or_else(|| format!("{program} exited with {}", out.status))
}

/// The line that best explains a failure: the last error-like line, else the last line,
/// skipping pg_ctl's generic ones.
fn last_meaningful_line(text: &str) -> Option<String> {
    const GENERIC: [&str; 3] = [
        "waiting for server",
        "Examine the log output",
        "could not start server",
    ];
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !GENERIC.iter().any(|g| l.contains(g)))
        .collect();
    let error_like = |l: &&&str| {
        ["FATAL:", "PANIC:", "ERROR:", "error:"]
            .iter()
            .any(|m| l.contains(m))
    };
    let line = lines.iter().rev().find(error_like).or(lines.last())?;
    let flat: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Some(flat.chars().take(300).collect())
}

/// The text a log gained since `offset` (its last 16 KiB at most).
fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let from = offset.max(len.saturating_sub(16 * 1024));
        if file.seek(SeekFrom::Start(from)).is_ok() {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EmbeddedError {
    move |source| EmbeddedError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn canonical(path: &Path) -> Result<PathBuf, EmbeddedError> {
    fs::canonicalize(path).map_err(io_err("resolve", path))
}

/// Creates `dir` and any missing parents with mode 0755 regardless of umask, so the server's
/// OS user can pass through them.
fn create_dirs_0755(dir: &Path) -> Result<(), EmbeddedError> {
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

fn chown_to(path: &Path, user: Option<&OsUser>) -> Result<(), EmbeddedError> {
    match user {
        Some(u) => lchown(path, Some(u.uid), Some(u.gid)).map_err(io_err("change owner of", path)),
        None => Ok(()),
    }
}

fn chown_tree(path: &Path, user: &OsUser) -> Result<(), EmbeddedError> {
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

fn hex_hash(path: &Path) -> String {
    format!("{:016x}", fnv1a64(path.as_os_str().as_bytes()))
}

fn effective_uid() -> Option<u32> {
    // /proc/self is owned by the effective uid; `id -u` covers systems without /proc.
    if let Ok(meta) = fs::metadata("/proc/self") {
        return Some(meta.uid());
    }
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The OS user to run the server as: none (this process's user) unless we are root, which
/// PostgreSQL refuses.
fn cluster_user() -> Result<Option<OsUser>, EmbeddedError> {
    if effective_uid() != Some(0) {
        return Ok(None);
    }
    if let Some(user) = lookup_user("postgres").or_else(|| lookup_user(SYSTEM_USER)) {
        return Ok(Some(user));
    }
    tracing::info!(
        "creating system user {SYSTEM_USER} to run PostgreSQL, which refuses to run as root"
    );
    let out = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            SYSTEM_USER,
        ])
        .output();
    // Another process may have created it meanwhile, so look again before failing.
    if let Some(user) = lookup_user(SYSTEM_USER) {
        return Ok(Some(user));
    }
    let detail = match out {
        Ok(out) => failure_detail("useradd", &out),
        Err(e) => format!("could not run useradd: {e}"),
    };
    Err(EmbeddedError::OsUser { detail })
}

fn lookup_user(name: &str) -> Option<OsUser> {
    let from_getent = Command::new("getent")
        .args(["passwd", name])
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| parse_passwd(&String::from_utf8_lossy(&o.stdout), name));
    let (uid, gid) =
        from_getent.or_else(|| parse_passwd(&fs::read_to_string("/etc/passwd").ok()?, name))?;
    let mut groups: Vec<u32> = Command::new("id")
        .args(["-G", name])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    groups.push(gid);
    Some(OsUser {
        name: name.to_owned(),
        uid,
        gid,
        groups,
    })
}

/// (uid, gid) of `name` in passwd-format text.
fn parse_passwd(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [n, _, uid, gid, ..] if *n == name => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    })
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
/// the server's user cannot reach `data_dir`) a folder under FALLBACK_ROOT linked from there.
fn resolve_pgdata(data_dir: &Path, user: Option<&OsUser>) -> Result<PathBuf, EmbeddedError> {
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
        return Err(EmbeddedError::Unreachable {
            dir: target,
            user: user.name.clone(),
        });
    }
    let home = Path::new(FALLBACK_ROOT).join(hex_hash(data_dir));
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
fn prepare_pgdata(pgdata: &Path, user: Option<&OsUser>) -> Result<bool, EmbeddedError> {
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

/// `<parent of PGDATA>/run` when its socket path fits and needs no quoting in a folder list.
fn preferred_socket_dir(pgdata: &Path) -> Option<PathBuf> {
    let dir = pgdata.parent()?.join("run");
    let text = dir.to_str()?;
    let socket_len = text.len() + format!("/.s.PGSQL.{PORT}").len();
    let plain = !text.contains([',', '"']) && text.trim() == text;
    (socket_len <= MAX_SOCKET_PATH && plain).then_some(dir)
}

fn fallback_socket_dir(pgdata: &Path) -> PathBuf {
    PathBuf::from(format!("/tmp/leavemsg-{}", hex_hash(pgdata)))
}

fn choose_socket_dir(pgdata: &Path, user: Option<&OsUser>) -> Result<PathBuf, EmbeddedError> {
    if let Some(dir) = preferred_socket_dir(pgdata) {
        match ensure_private_dir(&dir, user) {
            Ok(()) => return Ok(dir),
            Err(e) => tracing::debug!("socket folder {} unusable ({e}), using /tmp", dir.display()),
        }
    }
    let dir = fallback_socket_dir(pgdata);
    ensure_private_dir(&dir, user).map_err(io_err("prepare socket folder", &dir))?;
    Ok(dir)
}

/// A real folder (not a symlink someone planted) owned by the server's user, mode 0700.
fn ensure_private_dir(dir: &Path, user: Option<&OsUser>) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other("exists and is not a folder"));
    }
    if let Some(u) = user {
        lchown(dir, Some(u.uid), Some(u.gid))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// A value for a single-quoted postgresql.conf string.
fn conf_quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "''")
}

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a PostgreSQL lock file (postmaster.pid or the socket's .lock) names a process that
/// is not this cluster's postmaster any more. After a crash its pid may belong to an unrelated
/// process, and the server then refuses to start. Without /proc nothing is judged stale.
fn is_stale(lock_file: &Path, pgdata: &Path) -> bool {
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

fn remove_if_stale(lock_file: &Path, pgdata: &Path) -> Result<(), EmbeddedError> {
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
    use std::io::{BufRead, BufReader};

    fn have_postgres() -> bool {
        let found = find_bin_dir(
            std::env::var_os("LEAVEMSG_PG_BIN").as_deref(),
            std::env::var_os("PATH").as_deref(),
            Path::new("/"),
        )
        .is_ok();
        // The suite's setup (.ci/run, README) installs them; a missing install is a failure,
        // not a reason to pass without checking anything.
        assert!(
            found,
            "these tests need the PostgreSQL server programs (apt-get install postgresql)"
        );
        found
    }

    fn is_root() -> bool {
        effective_uid() == Some(0)
    }

    /// A temp folder others may search, so the server's OS user can reach it when run as root.
    fn open_tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    /// Stops the cluster and removes a /tmp socket folder even when the test fails.
    struct Running(Cluster);

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.stop();
            if self
                .0
                .socket_dir
                .to_string_lossy()
                .starts_with("/tmp/leavemsg-")
            {
                let _ = fs::remove_dir_all(&self.0.socket_dir);
            }
        }
    }

    impl std::ops::Deref for Running {
        type Target = Cluster;
        fn deref(&self) -> &Cluster {
            &self.0
        }
    }

    fn start_guarded(dir: &Path) -> Running {
        let cluster = Cluster::start(dir).unwrap();
        cluster.stop_when_this_process_exits().unwrap();
        Running(cluster)
    }

    struct RemoveOnDrop(PathBuf);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn psql(cluster: &Cluster, sql: &str) -> String {
        let beside = cluster.bin_dir.join("psql");
        let program = if is_executable(&beside) {
            beside
        } else {
            PathBuf::from("psql")
        };
        let out = Command::new(program)
            .arg(cluster.database_url("postgres"))
            .args(["-Atc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn postmaster_pid(cluster: &Cluster) -> String {
        let text = fs::read_to_string(cluster.pgdata.join("postmaster.pid")).unwrap();
        text.lines().next().unwrap().trim().to_owned()
    }

    fn fake_bin(dir: &Path, programs: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        for program in programs {
            let path = dir.join(program);
            fs::write(&path, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn fnv1a64_matches_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        assert_eq!(hex_hash(Path::new("a")), "af63dc4c8601ec8c");
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
        assert!(matches!(err, EmbeddedError::NoServerPrograms));
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
    fn socket_dir_falls_back_to_tmp_for_long_or_odd_paths() {
        let short = Path::new("/srv/leavemsg/pg");
        assert_eq!(
            preferred_socket_dir(short),
            Some(PathBuf::from("/srv/leavemsg/run"))
        );
        // 82-byte parent: ".../run/.s.PGSQL.5432" is exactly 100 bytes.
        let parent = format!("/{}", "x".repeat(81));
        assert!(preferred_socket_dir(&Path::new(&parent).join("pg")).is_some());
        let long = Path::new(&format!("{parent}y")).join("pg");
        assert_eq!(preferred_socket_dir(&long), None);
        let fallback = fallback_socket_dir(&long);
        assert_eq!(
            fallback,
            PathBuf::from(format!("/tmp/leavemsg-{}", hex_hash(&long)))
        );
        assert!(fallback.as_os_str().len() + 14 <= MAX_SOCKET_PATH);
        assert_eq!(preferred_socket_dir(Path::new("/a,b/pg")), None);
    }

    #[test]
    fn url_percent_encodes_socket_and_database() {
        let cluster = Cluster {
            bin_dir: PathBuf::new(),
            pgdata: PathBuf::new(),
            socket_dir: PathBuf::from("/tmp/a b+c%/run"),
            user: None,
            started_here: false,
        };
        assert_eq!(
            cluster.database_url("my db"),
            "postgres://leavemsg@localhost/my%20db?host=%2Ftmp%2Fa%20b%2Bc%25%2Frun&port=5432"
        );
    }

    #[test]
    fn config_values_are_quoted() {
        assert_eq!(conf_quote(r"/a'b\c"), r"/a''b\\c");
    }

    #[test]
    fn meaningful_line_prefers_errors_and_skips_pg_ctl_noise() {
        let log = "LOG:  starting\nFATAL:  lock file \"postmaster.pid\" already exists\nHINT:  Is another postmaster running?\n";
        assert_eq!(
            last_meaningful_line(log).as_deref(),
            Some("FATAL:  lock file \"postmaster.pid\" already exists")
        );
        let pg_ctl = "waiting for server to start.... stopped waiting\npg_ctl: could not start server\nExamine the log output.\n";
        assert_eq!(last_meaningful_line(pg_ctl), None);
        assert_eq!(last_meaningful_line("a\nb\n\n").as_deref(), Some("b"));
    }

    #[test]
    fn passwd_lines_are_parsed() {
        let text =
            "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104::/var/lib/postgresql:/bin/bash\n";
        assert_eq!(parse_passwd(text, "postgres"), Some((101, 104)));
        assert_eq!(parse_passwd(text, "post"), None);
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
        let dir = open_tempdir();
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
    fn starts_serves_reuses_and_stops() {
        if !have_postgres() {
            return;
        }
        let dir = open_tempdir();
        let data = dir.path().join("data");
        let cluster = start_guarded(&data);
        assert!(cluster.started_here());
        assert_eq!((cluster.port(), cluster.superuser()), (5432, "leavemsg"));
        assert_eq!(
            cluster.cluster_dir(),
            data.canonicalize().unwrap().join("pg")
        );
        assert_eq!(
            cluster.socket_dir(),
            data.canonicalize().unwrap().join("run")
        );
        let socket_meta = fs::metadata(cluster.socket_dir()).unwrap();
        assert_eq!(socket_meta.mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&data).unwrap().mode() & 0o777, 0o755);
        assert_eq!(psql(&cluster, "select 1"), "1");
        assert_eq!(psql(&cluster, "select current_user"), "leavemsg");
        assert_eq!(psql(&cluster, "show listen_addresses"), "");
        assert!(!is_stale(
            &cluster.pgdata.join("postmaster.pid"),
            &cluster.pgdata
        ));

        let again = Cluster::start(&data).unwrap();
        assert!(!again.started_here());
        assert_eq!(again.socket_dir(), cluster.socket_dir());

        cluster.stop().unwrap();
        assert!(!cluster.is_running().unwrap());
        cluster.stop().unwrap();
        let restarted = start_guarded(&data);
        assert!(restarted.started_here());
        assert_eq!(psql(&restarted, "select 2"), "2");
    }

    #[test]
    fn clears_half_created_folder_and_reports_start_failure() {
        if !have_postgres() {
            return;
        }
        let dir = open_tempdir();
        let leftover = dir.path().join("pg/leftover");
        fs::create_dir_all(leftover.parent().unwrap()).unwrap();
        fs::write(&leftover, "from an interrupted initdb").unwrap();
        let cluster = start_guarded(dir.path());
        assert!(!leftover.exists());
        cluster.stop().unwrap();

        let conf = cluster.pgdata.join("postgresql.conf");
        let mut file = OpenOptions::new().append(true).open(conf).unwrap();
        file.write_all(b"shared_buffers = 'plenty'\n").unwrap();
        let err = Cluster::start(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, EmbeddedError::Start { .. }), "{text}");
        assert!(
            !text.contains('\n') && text.contains("postgresql.conf"),
            "{text}"
        );
    }

    #[test]
    fn concurrent_starts_share_one_cluster() {
        if !have_postgres() {
            return;
        }
        let dir = open_tempdir();
        let data = dir.path().join("data");
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let data = data.clone();
                std::thread::spawn(move || Cluster::start(&data))
            })
            .collect();
        let clusters: Vec<Running> = threads
            .into_iter()
            .map(|t| Running(t.join().unwrap().unwrap()))
            .collect();
        assert_eq!(clusters.iter().filter(|c| c.started_here()).count(), 1);
        assert_eq!(psql(&clusters[0], "select 1"), "1");
    }

    #[test]
    fn comes_back_after_sigkill_with_reused_pid() {
        if !have_postgres() {
            return;
        }
        let dir = open_tempdir();
        let cluster = start_guarded(dir.path());
        let pid = postmaster_pid(&cluster);
        let killed = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(killed.success());
        let pid_file = cluster.pgdata.join("postmaster.pid");
        assert!((0..100).any(|_| {
            sleep(Duration::from_millis(100));
            is_stale(&pid_file, &cluster.pgdata)
        }));
        // As if the dead postmaster's pid now belonged to an unrelated process: this one.
        let text = fs::read_to_string(&pid_file).unwrap();
        let rest = text.split_once('\n').map_or("", |(_, rest)| rest);
        fs::write(&pid_file, format!("{}\n{rest}", std::process::id())).unwrap();

        let again = start_guarded(dir.path());
        assert!(again.started_here());
        assert_eq!(psql(&again, "select 1"), "1");
    }

    #[test]
    fn long_data_path_uses_tmp_socket() {
        if !have_postgres() {
            return;
        }
        let dir = open_tempdir();
        let data = dir
            .path()
            .join("a".repeat(60))
            .join("b".repeat(60))
            .join("data");
        assert!(data.as_os_str().len() > 110);
        let cluster = start_guarded(&data);
        assert!(
            cluster
                .socket_dir()
                .to_string_lossy()
                .starts_with("/tmp/leavemsg-")
        );
        assert_eq!(psql(&cluster, "select 1"), "1");
    }

    #[test]
    fn unreachable_data_dir_falls_back_to_var_lib() {
        if !is_root() || !have_postgres() {
            return;
        }
        let dir = open_tempdir();
        let private = dir.path().join("private");
        fs::create_dir(&private).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
        let data = private.join("data");
        fs::create_dir(&data).unwrap();
        let home = Path::new(FALLBACK_ROOT).join(hex_hash(&data.canonicalize().unwrap()));
        let _cleanup = RemoveOnDrop(home.clone());

        let cluster = start_guarded(&data);
        assert_eq!(cluster.cluster_dir(), home.join("pg"));
        assert_eq!(fs::read_link(data.join("pg")).unwrap(), home.join("pg"));
        assert_eq!(psql(&cluster, "select 1"), "1");
        cluster.stop().unwrap();
        let again = start_guarded(&data);
        assert!(again.started_here());
        assert_eq!(again.cluster_dir(), home.join("pg"));
    }

    #[test]
    fn unreachable_real_cluster_folder_is_an_error() {
        if !is_root() || !have_postgres() {
            return;
        }
        let dir = open_tempdir();
        let private = dir.path().join("private");
        fs::create_dir_all(private.join("data/pg")).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
        let err = Cluster::start(&private.join("data")).unwrap_err();
        assert!(matches!(err, EmbeddedError::Unreachable { .. }), "{err}");
        assert!(!err.to_string().contains('\n'));
    }

    /// Run in a child process by `guardian_stops_cluster_when_owner_is_killed`.
    #[test]
    #[ignore = "helper run in a child process"]
    fn guardian_child() {
        let Some(dir) = std::env::var_os("LEAVEMSG_TEST_GUARDIAN_DIR") else {
            return;
        };
        let cluster = Cluster::start(Path::new(&dir)).unwrap();
        cluster.stop_when_this_process_exits().unwrap();
        println!("READY");
        sleep(Duration::from_secs(120));
    }

    #[test]
    fn guardian_stops_cluster_when_owner_is_killed() {
        if !have_postgres() {
            return;
        }
        let dir = open_tempdir();
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("{module}::guardian_child"),
                "--ignored",
                "--nocapture",
            ])
            .env("LEAVEMSG_TEST_GUARDIAN_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("READY"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(ready, "child did not start its cluster");
        let pid_file = dir.path().canonicalize().unwrap().join("pg/postmaster.pid");
        let stopped = (0..300).any(|_| {
            sleep(Duration::from_millis(100));
            !pid_file.exists()
        });
        if !stopped && let Ok(cluster) = Cluster::start(dir.path()) {
            let _ = cluster.stop();
        }
        assert!(stopped, "the guardian did not stop the cluster");
    }
}
