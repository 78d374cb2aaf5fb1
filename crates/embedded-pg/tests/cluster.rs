//! Real clusters in temporary folders, started with the PostgreSQL server programs installed
//! on this machine. As root (which PostgreSQL refuses) they run as an unprivileged OS user.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use embedded_pg::{Cluster, ClusterBuilder, Error};

/// Where socket folders go when the data folder's path is too long; removed after each test.
const SOCKET_PREFIX: &str = "/tmp/embedded-pg-test-";

fn builder(data: &Path) -> ClusterBuilder {
    Cluster::builder(data)
        .superuser("tester")
        .socket_fallback_prefix(SOCKET_PREFIX)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A temp folder others may search, so the server's OS user can reach it when run as root.
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Stops the cluster and removes a fallback socket folder even when the test fails.
struct Running(Cluster);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.stop();
        if self
            .0
            .socket_dir()
            .to_string_lossy()
            .starts_with(SOCKET_PREFIX)
        {
            let _ = fs::remove_dir_all(self.0.socket_dir());
        }
    }
}

impl std::ops::Deref for Running {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.0
    }
}

/// Starts a cluster that stops when this test process exits, whatever happens. The suite's
/// setup installs the server programs: a missing install fails here with the crate's message.
fn start_guarded(builder: ClusterBuilder) -> Running {
    let cluster = builder.start().unwrap_or_else(|e| panic!("{e}"));
    cluster.stop_when_this_process_exits().unwrap();
    Running(cluster)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `sql`'s output on the maintenance database, with the installation's psql.
fn psql(cluster: &Cluster, sql: &str) -> String {
    let out = psql_command(cluster).args(["-Atc", sql]).output().unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn psql_command(cluster: &Cluster) -> Command {
    let beside = cluster.bin_dir().join("psql");
    let mut cmd = Command::new(if beside.exists() {
        beside
    } else {
        PathBuf::from("psql")
    });
    cmd.arg("-X")
        .arg("-h")
        .arg(cluster.socket_dir())
        .arg("-p")
        .arg(cluster.port().to_string())
        .arg("-U")
        .arg(cluster.superuser())
        .arg("-d")
        .arg("postgres");
    cmd
}

fn postmaster_pid(cluster: &Cluster) -> String {
    let text = fs::read_to_string(cluster.cluster_dir().join("postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().to_owned()
}

/// Whether the process is gone (or a zombie nobody reaped yet).
fn process_gone(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

#[test]
fn starts_serves_reuses_and_stops() {
    let dir = open_tempdir();
    let data = dir.path().join("data");
    let cluster = start_guarded(builder(&data));
    assert!(cluster.started_here());
    assert_eq!((cluster.port(), cluster.superuser()), (5432, "tester"));
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
    assert_eq!(psql(&cluster, "select current_user"), "tester");
    assert_eq!(psql(&cluster, "show listen_addresses"), "");
    let conf = fs::read_to_string(cluster.cluster_dir().join("embedded-pg.conf")).unwrap();
    assert!(
        conf.starts_with("# Written by embedded-pg at every start"),
        "{conf}"
    );

    // A second start reuses the running server and leaves its lock file alone.
    let pid = postmaster_pid(&cluster);
    let again = builder(&data).start().unwrap();
    assert!(!again.started_here());
    assert_eq!(again.socket_dir(), cluster.socket_dir());
    assert_eq!(postmaster_pid(&again), pid);
    assert!(again.is_running().unwrap());

    cluster.stop().unwrap();
    assert!(!cluster.is_running().unwrap());
    cluster.stop().unwrap();
    let restarted = start_guarded(builder(&data));
    assert!(restarted.started_here());
    assert_eq!(psql(&restarted, "select 2"), "2");
}

#[test]
fn as_root_the_server_runs_as_an_unprivileged_user() {
    let dir = open_tempdir();
    let cluster = start_guarded(builder(dir.path()));
    let status = fs::read_to_string(format!("/proc/{}/status", postmaster_pid(&cluster)));
    let server_uid = status.ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next()?.parse::<u32>().ok())
    });
    let owner = fs::metadata(cluster.cluster_dir()).unwrap().uid();
    if is_root() {
        let name = cluster.os_user().expect("an OS user as root");
        let user = nix::unistd::User::from_name(name).unwrap().unwrap();
        assert_ne!(user.uid.as_raw(), 0);
        assert_eq!(owner, user.uid.as_raw());
        if let Some(uid) = server_uid {
            assert_eq!(uid, user.uid.as_raw());
        }
    } else {
        assert_eq!(cluster.os_user(), None);
        assert_eq!(owner, nix::unistd::geteuid().as_raw());
    }
}

#[test]
fn creates_databases_by_any_name_and_counts_clients() {
    let dir = open_tempdir();
    let cluster = start_guarded(builder(dir.path()));
    let name = "odd \"name\"; 'quoted' \\ DROP DATABASE postgres";
    cluster.ensure_database(name).unwrap();
    cluster.ensure_database(name).unwrap();
    let sql = "select count(*) from pg_database where datname like 'odd %'";
    assert_eq!(psql(&cluster, sql), "1");
    cluster.ensure_database("plain").unwrap();
    assert_eq!(psql(&cluster, "select count(*) from pg_database"), "5");

    assert_eq!(cluster.connected_clients().unwrap(), 0);
    let mut holder = psql_command(&cluster)
        .args(["-c", "select pg_sleep(30)"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let counted = (0..100).any(|_| {
        sleep(Duration::from_millis(100));
        cluster.connected_clients().unwrap() == 1
    });
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(counted, "the other client was not counted");
}

#[test]
fn clears_half_created_folder_and_reports_start_failure() {
    let dir = open_tempdir();
    let leftover = dir.path().join("pg/leftover");
    fs::create_dir_all(leftover.parent().unwrap()).unwrap();
    fs::write(&leftover, "from an interrupted initdb").unwrap();
    let cluster = start_guarded(builder(dir.path()));
    assert!(!leftover.exists());
    cluster.stop().unwrap();

    let conf = cluster.cluster_dir().join("postgresql.conf");
    let mut file = OpenOptions::new().append(true).open(conf).unwrap();
    file.write_all(b"shared_buffers = 'plenty'\n").unwrap();
    let err = builder(dir.path()).start().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Start { .. }), "{text}");
    assert!(
        !text.contains('\n') && text.contains("postgresql.conf"),
        "{text}"
    );
}

#[test]
fn concurrent_starts_share_one_cluster() {
    let dir = open_tempdir();
    let data = dir.path().join("data");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let data = data.clone();
            std::thread::spawn(move || builder(&data).start())
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
    let dir = open_tempdir();
    let cluster = start_guarded(builder(dir.path()));
    let pid = postmaster_pid(&cluster);
    let killed = Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(killed.success());
    assert!((0..100).any(|_| {
        sleep(Duration::from_millis(100));
        process_gone(&pid)
    }));
    // As if the dead postmaster's pid now belonged to an unrelated process: this one.
    let pid_file = cluster.cluster_dir().join("postmaster.pid");
    let text = fs::read_to_string(&pid_file).unwrap();
    let rest = text.split_once('\n').map_or("", |(_, rest)| rest);
    fs::write(&pid_file, format!("{}\n{rest}", std::process::id())).unwrap();

    let again = start_guarded(builder(dir.path()));
    assert!(again.started_here());
    assert_eq!(psql(&again, "select 1"), "1");
}

#[test]
fn long_data_path_uses_short_socket_folder() {
    let dir = open_tempdir();
    let data = dir
        .path()
        .join("a".repeat(60))
        .join("b".repeat(60))
        .join("data");
    assert!(data.as_os_str().len() > 110);
    let cluster = start_guarded(builder(&data));
    assert!(
        cluster
            .socket_dir()
            .to_string_lossy()
            .starts_with(SOCKET_PREFIX)
    );
    assert_eq!(psql(&cluster, "select 1"), "1");
}

#[test]
fn unreachable_data_dir_falls_back_to_the_fallback_root() {
    if !is_root() {
        return;
    }
    let dir = open_tempdir();
    let private = dir.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let data = private.join("data");
    fs::create_dir(&data).unwrap();
    let fallback = open_tempdir();
    let root = fallback.path().join("clusters");
    let _cleanup = RemoveOnDrop(root.clone());
    let with_fallback = || builder(&data).fallback_root(&root);

    let cluster = start_guarded(with_fallback());
    let home = cluster.cluster_dir().parent().unwrap().to_owned();
    assert_eq!(home.parent(), Some(root.as_path()));
    assert_eq!(home.file_name().unwrap().len(), 16, "a hash names it");
    assert_eq!(fs::read_link(data.join("pg")).unwrap(), home.join("pg"));
    assert_eq!(psql(&cluster, "select 1"), "1");
    cluster.stop().unwrap();
    let again = start_guarded(with_fallback());
    assert!(again.started_here());
    assert_eq!(again.cluster_dir(), home.join("pg"));
}

#[test]
fn unreachable_real_cluster_folder_is_an_error() {
    if !is_root() {
        return;
    }
    let dir = open_tempdir();
    let private = dir.path().join("private");
    fs::create_dir_all(private.join("data/pg")).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let err = builder(&private.join("data")).start().unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(!err.to_string().contains('\n'));
}

/// Run in a child process by `guardian_stops_cluster_when_owner_is_killed`.
#[test]
#[ignore = "helper run in a child process"]
fn guardian_child() {
    let Some(dir) = std::env::var_os("EMBEDDED_PG_TEST_GUARDIAN_DIR") else {
        return;
    };
    let cluster = builder(Path::new(&dir)).start().unwrap();
    cluster.stop_when_this_process_exits().unwrap();
    println!("READY");
    sleep(Duration::from_secs(120));
}

#[test]
fn guardian_stops_cluster_when_owner_is_killed() {
    let dir = open_tempdir();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "guardian_child", "--ignored", "--nocapture"])
        .env("EMBEDDED_PG_TEST_GUARDIAN_DIR", dir.path())
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
    if !stopped && let Ok(cluster) = builder(dir.path()).start() {
        let _ = cluster.stop();
    }
    assert!(stopped, "the guardian did not stop the cluster");
}

#[test]
fn a_server_that_is_shutting_down_is_not_reused() {
    let dir = open_tempdir();
    let cluster = start_guarded(builder(dir.path()));
    // A client keeps a smart shutdown waiting, so the server stays in "stopping" for a while.
    let mut client = psql_command(&cluster)
        .args(["-c", "select pg_sleep(3)"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!((0..100).any(|_| {
        sleep(Duration::from_millis(100));
        cluster.connected_clients().unwrap() == 1
    }));
    let mut pg_ctl = Command::new(cluster.bin_dir().join("pg_ctl"));
    pg_ctl
        .arg("stop")
        .arg("-D")
        .arg(cluster.cluster_dir())
        .args(["-m", "smart", "-W"])
        .current_dir("/");
    if let Some(name) = cluster.os_user() {
        use std::os::unix::process::CommandExt;
        let user = nix::unistd::User::from_name(name).unwrap().unwrap();
        pg_ctl.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    assert!(pg_ctl.status().unwrap().success());
    let pid_file = cluster.cluster_dir().join("postmaster.pid");
    assert!((0..50).any(|_| {
        sleep(Duration::from_millis(20));
        fs::read_to_string(&pid_file).is_ok_and(|t| t.contains("stopping"))
    }));

    let again = start_guarded(builder(dir.path()));
    assert!(again.started_here(), "the stopping server was reused");
    assert_eq!(psql(&again, "select 1"), "1");
    client.wait().unwrap();
}

#[test]
fn stop_unless_in_use_stops_only_an_unused_server() {
    let dir = open_tempdir();
    let cluster = start_guarded(builder(dir.path()));
    // An idle client: psql connected and waiting for input, which ends when its stdin closes.
    let mut holder = psql_command(&cluster)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let counted = (0..100).any(|_| {
        sleep(Duration::from_millis(100));
        cluster.connected_clients().unwrap() == 1
    });
    let kept = cluster.stop_unless_in_use();
    let still_running = cluster.is_running();
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert!(counted, "the other client was not counted");
    assert!(!kept.unwrap(), "stopped while a client was connected");
    assert!(still_running.unwrap());

    // The client's server process may take a moment to go.
    assert!((0..100).any(|_| {
        sleep(Duration::from_millis(100));
        cluster.connected_clients().unwrap() == 0
    }));
    assert!(cluster.stop_unless_in_use().unwrap());
    assert!(!cluster.is_running().unwrap());
    assert!(
        cluster.stop_unless_in_use().unwrap(),
        "not running is stopped"
    );
}

/// A data folder whose `<data>/run/.s.PGSQL.5432` is too long for a unix socket path.
fn long_data_dir(dir: &Path) -> PathBuf {
    let data = dir.join("a".repeat(60)).join("b".repeat(60)).join("data");
    assert!(data.as_os_str().len() > 110);
    data
}

/// The socket folder the crate once derived from the cluster folder alone (FNV-1a 64 of its
/// path), which anyone could compute and create first.
fn predictable_socket_dir(data: &Path) -> PathBuf {
    fs::create_dir_all(data).unwrap();
    let pgdata = data.canonicalize().unwrap().join("pg");
    let hash = pgdata
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    PathBuf::from(format!("{SOCKET_PREFIX}{hash:016x}"))
}

#[test]
fn a_socket_folder_planted_by_another_user_is_not_used() {
    if !is_root() {
        return;
    }
    let dir = open_tempdir();
    let data = long_data_dir(dir.path());
    let planted = predictable_socket_dir(&data);
    let _cleanup = RemoveOnDrop(planted.clone());
    fs::create_dir(&planted).unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o777)).unwrap();
    // nobody: a user other than the server's.
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();

    let cluster = start_guarded(builder(&data));
    assert_ne!(cluster.socket_dir(), planted);
    let meta = fs::metadata(&planted).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (65534, 0o777));
    assert_eq!(psql(&cluster, "select 1"), "1");
}

#[test]
fn a_symlink_planted_as_the_socket_folder_is_not_followed() {
    let dir = open_tempdir();
    let target = open_tempdir();
    let target_meta = || {
        let meta = fs::metadata(target.path()).unwrap();
        (meta.uid(), meta.mode() & 0o777)
    };
    let before = target_meta();

    // In the preferred place, <data>/run.
    let data = dir.path().join("short");
    fs::create_dir(&data).unwrap();
    std::os::unix::fs::symlink(target.path(), data.join("run")).unwrap();
    let cluster = start_guarded(builder(&data));
    assert_ne!(
        cluster.socket_dir(),
        data.canonicalize().unwrap().join("run")
    );
    assert_eq!(psql(&cluster, "select 1"), "1");
    assert_eq!(target_meta(), before);
    cluster.stop().unwrap();

    // Where a fallback folder's name could once be predicted.
    let data = long_data_dir(dir.path());
    let planted = predictable_socket_dir(&data);
    let _cleanup = RemoveOnDrop(planted.clone());
    std::os::unix::fs::symlink(target.path(), &planted).unwrap();
    let cluster = start_guarded(builder(&data));
    assert_ne!(cluster.socket_dir(), planted);
    assert_eq!(psql(&cluster, "select 1"), "1");
    assert_eq!(target_meta(), before);
    assert!(fs::symlink_metadata(&planted).unwrap().is_symlink());
}

#[test]
fn starts_with_a_long_data_path_share_one_cluster() {
    let dir = open_tempdir();
    let data = long_data_dir(dir.path());
    let first = start_guarded(builder(&data));
    assert!(first.started_here());
    let second = builder(&data).start().unwrap();
    assert!(!second.started_here(), "a second server was started");
    assert_eq!(second.socket_dir(), first.socket_dir());
    assert_eq!(psql(&second, "select 1"), "1");
    // And after a stop, the next start uses the recorded folder again.
    first.stop().unwrap();
    let third = start_guarded(builder(&data));
    assert!(third.started_here());
    assert_eq!(third.socket_dir(), first.socket_dir());
    assert_eq!(psql(&third, "select 1"), "1");
}

/// The major version in the cluster's PG_VERSION.
fn pg_version(cluster: &Cluster) -> String {
    fs::read_to_string(cluster.cluster_dir().join("PG_VERSION"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_cluster_of_a_version_not_installed_is_refused_in_one_line() {
    let dir = open_tempdir();
    let cluster = start_guarded(builder(dir.path()));
    let installed = pg_version(&cluster);
    cluster.stop().unwrap();
    let version_file = cluster.cluster_dir().join("PG_VERSION");

    // Older than anything installed, then newer.
    for made_by in ["9.6", "9", "99"] {
        fs::write(&version_file, format!("{made_by}\n")).unwrap();
        let err = builder(dir.path()).start().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::VersionMismatch { .. }), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.contains(&format!("made by PostgreSQL {made_by} but"))
                && text.contains(&format!("PostgreSQL {installed}"))
                && text.contains("pg_upgrade")
                && text.contains(&cluster.cluster_dir().display().to_string()),
            "{text}"
        );
        assert!(!cluster.is_running().unwrap());
    }
    // Nothing was changed: with its own version back, the cluster starts as before.
    fs::write(&version_file, format!("{installed}\n")).unwrap();
    let again = start_guarded(builder(dir.path()));
    assert!(again.started_here());
    assert_eq!(psql(&again, "select 1"), "1");
}

/// A fake install tree under `root`: the real programs of `bin_dir` as version `version`,
/// beside a newer version 99 whose pg_ctl only answers `--version` and whose initdb fails.
fn fake_install_tree(root: &Path, bin_dir: &Path, version: &str) -> (PathBuf, PathBuf) {
    let same = root.join(format!("usr/lib/postgresql/{version}/bin"));
    fs::create_dir_all(&same).unwrap();
    for entry in fs::read_dir(bin_dir).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), same.join(entry.file_name())).unwrap();
    }
    let newer = root.join("usr/lib/postgresql/99/bin");
    fs::create_dir_all(&newer).unwrap();
    for (name, script) in [
        (
            "pg_ctl",
            "[ \"$1\" = --version ] && echo 'pg_ctl (PostgreSQL) 99.1' && exit 0; exit 1",
        ),
        ("initdb", "echo 'initdb: not a real one' >&2; exit 1"),
    ] {
        let path = newer.join(name);
        fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    (same, newer)
}

#[test]
fn an_existing_cluster_runs_with_the_installed_programs_of_its_version() {
    let dir = open_tempdir();
    let data = dir.path().join("data");
    let cluster = start_guarded(builder(&data));
    let version = pg_version(&cluster);
    let real_bin = cluster.bin_dir().to_owned();
    cluster.stop().unwrap();

    let tree = open_tempdir();
    let (same, newer) = fake_install_tree(tree.path(), &real_bin, &version);
    // Programs on PATH come before the install folders; the real ones were found there only
    // when PATH holds them.
    let on_path =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d == real_bin));
    let expected = if on_path { real_bin.clone() } else { same };

    let again = start_guarded(builder(&data).install_root(tree.path()));
    assert_eq!(
        again.bin_dir(),
        expected,
        "PostgreSQL 99 is newer but did not make it"
    );
    assert!(again.started_here());
    assert_eq!(psql(&again, "select 1"), "1");
    again.stop().unwrap();

    // The same versions named first by bin_dir: the newer one is still passed over.
    let again = start_guarded(builder(&data).install_root(tree.path()).bin_dir(&newer));
    assert_ne!(again.bin_dir(), newer);
    assert_eq!(psql(&again, "select 1"), "1");
    again.stop().unwrap();

    // A new cluster is made by the first programs found: here the fake newer one.
    let err = builder(&dir.path().join("new"))
        .install_root(tree.path())
        .bin_dir(&newer)
        .start()
        .unwrap_err();
    assert!(matches!(err, Error::Initdb { .. }), "{err}");
    assert!(err.to_string().contains("not a real one"), "{err}");
}

#[test]
fn a_missing_os_user_is_named_in_one_line_and_never_created() {
    let dir = open_tempdir();
    let name = "embedded-pg-test-no-such-user";
    let result = builder(dir.path()).os_user(name).start();
    if is_root() {
        let err = result.expect_err("started without the named OS user");
        let text = err.to_string();
        assert!(matches!(err, Error::OsUser { .. }), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.contains(&format!("no user {name}"))
                && text.contains(&format!("`useradd --system {name}`")),
            "{text}"
        );
        assert!(
            nix::unistd::User::from_name(name).unwrap().is_none(),
            "the user was created"
        );
        assert!(!dir.path().join("pg").exists(), "a cluster was made");
    } else {
        // Not root: the server runs as this process's user, and the setting is not used.
        let cluster = Running(result.unwrap_or_else(|e| panic!("{e}")));
        cluster.stop_when_this_process_exits().unwrap();
        assert_eq!(cluster.os_user(), None);
        assert_eq!(psql(&cluster, "select 1"), "1");
    }
}

#[test]
fn the_named_os_user_runs_the_server_and_root_is_refused() {
    let dir = open_tempdir();
    let refused = builder(&dir.path().join("as-root")).os_user("root").start();
    let cluster = start_guarded(builder(&dir.path().join("as-nobody")).os_user("nobody"));
    let owner = fs::metadata(cluster.cluster_dir()).unwrap().uid();
    if is_root() {
        let err = refused.expect_err("the server would run as root");
        assert!(matches!(err, Error::OsUserIsRoot { .. }), "{err}");
        assert!(!err.to_string().contains('\n'));
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        assert_eq!(cluster.os_user(), Some("nobody"));
        assert_eq!(owner, nobody.uid.as_raw());
    } else {
        let not_root = Running(refused.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(not_root.os_user(), None);
        assert_eq!(cluster.os_user(), None);
        assert_eq!(owner, nix::unistd::geteuid().as_raw());
    }
    assert_eq!(psql(&cluster, "select 1"), "1");
}
