//! CONTRACT §1: the commands, run as a newcomer runs them.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use sqlx::Connection;

use crate::helpers::*;

/// Runs `leavemsg ARGS` with only the settings given here (no .env, no inherited DATABASE_URL).
fn leavemsg(envs: &[(&str, &str)], args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    leavemsg_in(dir.path(), envs, args)
}

/// The same in the working folder `dir`.
fn leavemsg_in(dir: &std::path::Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("LEAVEMSG_LOG_FORMAT", "text");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run leavemsg")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn last_line(out: &Output) -> String {
    stdout(out).lines().last().unwrap_or_default().to_owned()
}

async fn migrated_database() -> String {
    let url = fresh_database().await;
    let out = leavemsg(&[("DATABASE_URL", &url)], &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    url
}

#[tokio::test]
async fn help_explains_every_command() {
    let out = leavemsg(&[], &["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for word in [
        "serve",
        "migrate",
        "channel",
        "agent",
        "purge",
        "erase",
        "probe",
        "DATABASE_URL",
        "LEAVEMSG_DATA_DIR",
    ] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
    let out = leavemsg(&[], &["channel", "create", "--help"]);
    assert!(stdout(&out).contains("--origin <URL>"));
    assert!(stdout(&out).contains("--cross-site"));
}

/// The server's flags are under `serve` only; every command shows the global ones under a
/// heading of their own.
#[tokio::test]
async fn server_flags_are_under_serve_and_global_ones_have_a_heading() {
    let serve_flags = [
        "--listen",
        "--public-url",
        "--rate-per-token",
        "--rate-per-ip",
        "--cookie-secure",
        "--batch-window-ms",
        "--token-ttl-secs",
        "--trusted-proxies",
    ];
    let serve = stdout(&leavemsg(&[], &["serve", "--help"]));
    let agent = stdout(&leavemsg(&[], &["agent", "create", "--help"]));
    let top = stdout(&leavemsg(&[], &["--help"]));
    for flag in serve_flags {
        assert!(serve.contains(flag), "serve --help lacks {flag}:\n{serve}");
        assert!(
            !agent.contains(flag),
            "agent create --help shows {flag}:\n{agent}"
        );
        assert!(!top.contains(flag), "--help shows {flag}:\n{top}");
    }
    for help in [&serve, &agent, &top] {
        assert!(
            help.contains("Database and logging (every command):"),
            "{help}"
        );
        assert!(help.contains("--database-url"), "{help}");
    }
    // A server flag given to another command is refused, naming it.
    let out = leavemsg(&[], &["migrate", "--listen", "0.0.0.0:1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--listen"), "{}", stderr(&out));
}

#[tokio::test]
async fn commands_refuse_an_unmigrated_database_in_one_line() {
    let url = fresh_database().await;
    let out = leavemsg(&[("DATABASE_URL", &url)], &["channel", "list"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("run `leavemsg migrate`"), "{err}");
}

const NOT_UTF8: &str = "the database's encoding is SQL_ASCII; leavemsg needs UTF8: create it with \
                        ENCODING 'UTF8' (e.g. CREATE DATABASE leavemsg ENCODING 'UTF8' TEMPLATE template0)";

#[tokio::test]
async fn a_database_not_in_utf8_is_refused_in_one_line() {
    let url = fresh_database_encoded("SQL_ASCII").await;
    for args in [&["migrate"][..], &["channel", "list"]] {
        let out = leavemsg(&[("DATABASE_URL", &url)], args);
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert_eq!(err.trim(), format!("leavemsg: {NOT_UTF8}"), "{args:?}");
    }
    // Nothing was migrated into it.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!migrated);
}

#[tokio::test]
async fn the_server_refuses_to_start_on_a_database_not_in_utf8() {
    let url = fresh_database_encoded("SQL_ASCII").await;
    let err = match leavemsg::startup::Application::build(test_settings(url)).await {
        Ok(_) => panic!("the server started on a SQL_ASCII database"),
        Err(e) => format!("{e:#}"),
    };
    assert_eq!(err, NOT_UTF8);
}

#[tokio::test]
async fn channel_create_list_disable() {
    let url = migrated_database().await;
    let env = [("DATABASE_URL", url.as_str())];
    let out = leavemsg(
        &env,
        &[
            "channel",
            "create",
            "--name",
            "Support site",
            "--origin",
            "https://WWW.Example.com/",
            "--cross-site",
            "--prompt",
            "Leave us a message",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = last_line(&out);
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "last line is not the id: {id:?}"
    );

    let out = leavemsg(&env, &["channel", "list"]);
    let list = stdout(&out);
    assert!(
        list.contains(&id)
            && list.contains("Support site")
            && list.contains("https://www.example.com"),
        "{list}"
    );
    assert!(list.contains("enabled") && list.contains("cross-site"));

    let out = leavemsg(
        &env,
        &["channel", "create", "--name", "x", "--origin", "ftp://nope"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("origin"));

    let out = leavemsg(&env, &["channel", "disable", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&leavemsg(&env, &["channel", "list"])).contains("disabled"));
    let out = leavemsg(
        &env,
        &["channel", "disable", &uuid::Uuid::new_v4().to_string()],
    );
    assert!(!out.status.success());
    let out = leavemsg(&env, &["channel", "disable", "not-an-id"]);
    assert!(!out.status.success());
}

#[tokio::test]
async fn agent_create_prints_the_key_once_and_stores_only_its_hash() {
    let url = migrated_database().await;
    let env = [("DATABASE_URL", url.as_str())];
    let out = leavemsg(&env, &["agent", "create", "--name", "alice", "--admin"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = last_line(&out);
    assert!(key.starts_with("lmk_"), "{key}");

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (name, admin, key_id, hash): (String, bool, String, Vec<u8>) =
        sqlx::query_as("SELECT name, is_admin, key_id, key_hash FROM agent")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((name.as_str(), admin), ("alice", true));
    let secret = key.splitn(3, '_').nth(2).unwrap();
    assert!(key.contains(&key_id));
    assert_eq!(hash, Sha256::digest(secret.as_bytes()).to_vec());
    let dump: String = sqlx::query_scalar("SELECT a::text FROM agent a")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!dump.contains(secret), "the secret is stored");

    let out = leavemsg(&env, &["agent", "create", "--name", "alice"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[tokio::test]
async fn purge_and_erase_print_what_they_removed() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    for (phone, text) in [("+1 555 0107", "a"), ("15550107", "b"), ("999 888", "c")] {
        let resp = app
            .leave_message(&token, &json!({"phoneNo": phone, "leaveMessage": text}))
            .await;
        assert_eq!(resp.status(), 200);
    }
    let env = [("DATABASE_URL", app.database_url.as_str())];
    let out = leavemsg(&env, &["erase", "--phone", "+1 (555) 0107"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deleted 2 message(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(app.message_count().await, 1);

    // Purge removes only processed messages older than the cut-off.
    sqlx::query("INSERT INTO agent (name, key_id, key_hash) VALUES ('bob', 'k', sha256('x'))")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE leave_message SET status = 'processed', assigned_to = 'bob', assigned_at = now(),
                processed_by = 'bob', processed_at = now(), outcome = 'called_back',
                received_at = now() - interval '40 days'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let out = leavemsg(&env, &["purge", "--older-than", "60"]);
    assert!(
        stdout(&out).contains("deleted 0 processed message(s)"),
        "{}",
        stdout(&out)
    );
    let out = leavemsg(&env, &["purge", "--older-than", "30"]);
    assert!(
        stdout(&out).contains("deleted 1 processed message(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(app.message_count().await, 0);
}

/// The newcomer's path: no DATABASE_URL, so every command uses the embedded cluster, which
/// the commands create, reuse while the server runs, and stop when the last one exits.
#[tokio::test]
async fn embedded_database_end_to_end() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = data.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    let env = [("LEAVEMSG_DATA_DIR", data_dir)];

    let out = leavemsg(&env, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = leavemsg(&env, &["channel", "create", "--name", "Web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let channel = last_line(&out);
    assert!(
        !postmaster_running(data_dir),
        "a one-off command leaves no server behind"
    );

    let mut server = ServerProcess::start(&env);
    let port = server.port;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}{BASE}");
    let resp = client
        .post(format!("{base}/applyToken"))
        .json(&json!({"userId": "u", "userName": "n", "channelId": channel}))
        .send()
        .await
        .unwrap();
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = client
        .post(format!("{base}/doLeaveMessage"))
        .header("cookie", format!("ccmessaging-token={token}"))
        .json(&json!({"phoneNo": "123456", "leaveMessage": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A command while the server runs reuses its cluster and leaves it running.
    let out = leavemsg(&env, &["channel", "list"]);
    assert!(stdout(&out).contains(&channel), "{}", stderr(&out));
    assert!(postmaster_running(data_dir));
    let resp = client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // SIGTERM: the server exits cleanly and stops the cluster it was the last user of.
    server.signal("TERM");
    let exit = server.wait(Duration::from_secs(60));
    assert_eq!(exit.and_then(|s| s.code()), Some(0));
    assert!(
        !postmaster_running(data_dir),
        "the cluster was left running"
    );

    // Data survives: the next start finds the row.
    let out = leavemsg(&env, &["erase", "--phone", "123456"]);
    assert!(
        stdout(&out).contains("deleted 1 message(s)"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

fn postmaster_running(data_dir: &str) -> bool {
    std::path::Path::new(data_dir)
        .join("pg/postmaster.pid")
        .exists()
}

/// Issue 11 item 12(b): a restart on the same embedded cluster. The old process's "no other
/// client, so stop" must not stop the server under a new process that has just reused it: each
/// new `serve`, started the moment the old one got SIGTERM, comes up and is ready.
#[tokio::test]
async fn a_serve_started_as_the_old_one_stops_comes_up() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = data.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    let env = [("LEAVEMSG_DATA_DIR", data_dir)];
    let client = reqwest::Client::new();

    let mut server = ServerProcess::start(&env);
    for round in 0..8 {
        wait_until_ready(&client, &server, round).await;
        server.signal("TERM");
        let next = ServerProcess::start(&env);
        let exit = server.wait(Duration::from_secs(60));
        assert_eq!(exit.and_then(|s| s.code()), Some(0), "round {round}");
        server = next;
    }
    wait_until_ready(&client, &server, 8).await;
    server.signal("TERM");
    let exit = server.wait(Duration::from_secs(60));
    assert_eq!(exit.and_then(|s| s.code()), Some(0));
    assert!(
        !postmaster_running(data_dir),
        "the last server left the cluster running"
    );
}

/// The same with a one-off command started the moment `serve` got SIGTERM: it must reach the
/// cluster rather than a server that is shutting down.
#[tokio::test]
async fn a_command_run_as_serve_stops_reaches_the_cluster() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = data.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    let env = [("LEAVEMSG_DATA_DIR", data_dir)];
    let client = reqwest::Client::new();

    for round in 0..5 {
        let mut server = ServerProcess::start(&env);
        wait_until_ready(&client, &server, round).await;
        server.signal("TERM");
        let out = leavemsg(&env, &["channel", "list"]);
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
        let exit = server.wait(Duration::from_secs(60));
        assert_eq!(exit.and_then(|s| s.code()), Some(0), "round {round}");
    }
    // Alone, a command stops the cluster when it is done.
    let out = leavemsg(&env, &["channel", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !postmaster_running(data_dir),
        "the last command left the cluster running"
    );
}

/// Waits (up to a minute) until `server` answers /readyz with 200.
async fn wait_until_ready(client: &reqwest::Client, server: &ServerProcess, round: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = client
            .get(server.url("/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string());
        if status == Ok(200) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "round {round}: not ready ({status:?}); its log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `.env` is read from the working folder only, as `--help` says: one in a folder above it
/// changes nothing.
#[tokio::test]
async fn only_the_working_folders_env_file_is_read() {
    let url = migrated_database().await;
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(
        parent.path().join(".env"),
        "LEAVEMSG_LOG_FORMAT=not-a-format\n",
    )
    .unwrap();
    let child = parent.path().join("work");
    std::fs::create_dir(&child).unwrap();
    let run_in = |dir: &std::path::Path| {
        Command::new(BIN)
            .args(["channel", "list"])
            .current_dir(dir)
            .env_remove("LEAVEMSG_LOG_FORMAT")
            .env("DATABASE_URL", &url)
            .output()
            .expect("run leavemsg")
    };
    let below = run_in(&child);
    assert!(below.status.success(), "{}", stderr(&below));
    // In the folder that holds it, the .env is read (and its bad format refused).
    let beside = run_in(parent.path());
    assert_eq!(beside.status.code(), Some(2), "{}", stderr(&beside));
    assert!(
        stderr(&beside).contains("not-a-format"),
        "{}",
        stderr(&beside)
    );
}

/// `leavemsg probe` against a running server: 0, one line, and no database opened (not even
/// the embedded one its working folder would get, nor an unreachable DATABASE_URL).
#[tokio::test]
async fn probe_answers_0_for_a_ready_server_without_opening_a_database() {
    let url = migrated_database().await;
    let server = ServerProcess::start(&[("DATABASE_URL", url.as_str())]);
    let port = server.port.to_string();
    let work = tempfile::tempdir().unwrap();
    for (listen, extra) in [
        (format!("127.0.0.1:{port}"), None),
        // Listening on every interface: asked on loopback.
        (format!("0.0.0.0:{port}"), None),
        (
            format!("127.0.0.1:{port}"),
            Some(("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")),
        ),
    ] {
        let mut env = vec![("LEAVEMSG_LISTEN", listen.as_str())];
        env.extend(extra);
        let out = leavemsg_in(work.path(), &env, &["probe"]);
        assert!(out.status.success(), "{listen}: {}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            format!("ready: http://127.0.0.1:{port}/readyz answered 200")
        );
        assert_eq!(stderr(&out), "", "{listen}");
    }
    let out = leavemsg_in(
        work.path(),
        &[],
        &["probe", "--listen", &format!("127.0.0.1:{port}")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_dir(work.path()).unwrap().next().is_none(),
        "probe left files in its working folder (an embedded cluster?)"
    );
}

/// One line on stderr and a non-zero exit: what a health check shows.
fn assert_probe_fails(out: &Output, expected: &str) {
    assert!(!out.status.success(), "{}", stdout(out));
    let err = stderr(out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(expected), "{err}");
    assert_eq!(stdout(out), "");
}

#[tokio::test]
async fn probe_fails_in_one_line_when_nothing_answers_http() {
    use std::io::Write;
    use std::net::TcpListener;
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = leavemsg(&[], &["probe", "--listen", &format!("127.0.0.1:{port}")]);
    assert_probe_fails(&out, &format!("http://127.0.0.1:{port}/readyz: "));

    // Connected, but no answer: the timeout ends it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = silent.local_addr().unwrap().to_string();
    let out = leavemsg(&[], &["probe", "--listen", &listen, "--timeout-secs", "1"]);
    assert_probe_fails(&out, "no answer within 1 s");
    drop(silent);

    // Something that is not an HTTP server.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = other.local_addr().unwrap().to_string();
    let answering = std::thread::spawn(move || {
        let (mut conn, _) = other.accept().unwrap();
        conn.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
    });
    let out = leavemsg(&[], &["probe", "--listen", &listen]);
    answering.join().unwrap();
    assert_probe_fails(&out, "the answer is not HTTP: \"SSH-2.0-OpenSSH_9.2\"");

    let out = leavemsg(&[("LEAVEMSG_LISTEN", "0.0.0.0:0")], &["probe"]);
    assert_probe_fails(&out, "port 0 means any free port");
    let out = leavemsg(&[], &["probe", "--timeout-secs", "0"]);
    assert!(!out.status.success());
}

/// With its database gone the server answers /readyz with 503, and the probe says so.
#[tokio::test]
async fn probe_fails_when_the_server_cannot_reach_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = crate::database_faults::private_cluster(&dir);
    let url = cluster_url(&cluster.0, "postgres");
    let server = ServerProcess::start(&[("DATABASE_URL", url.as_str())]);
    let listen = format!("127.0.0.1:{}", server.port);
    let probe = || leavemsg(&[("LEAVEMSG_LISTEN", listen.as_str())], &["probe"]);
    let out = probe();
    assert!(out.status.success(), "{}", stderr(&out));

    cluster.0.stop().unwrap();
    let mut last = None;
    let failed = wait_until(Duration::from_secs(60), || {
        let out = probe();
        let failed = !out.status.success();
        last = Some(out);
        async move { failed }
    })
    .await;
    assert!(
        failed,
        "the probe kept succeeding with the database stopped"
    );
    assert_probe_fails(
        &last.unwrap(),
        &format!("http://{listen}/readyz answered 503: not ready"),
    );
    // The server's log is read by a thread of its own: wait for the line rather than expect it
    // to be there the moment the probe has its answer.
    let logged = wait_until(Duration::from_secs(60), || async {
        server.log().contains("not ready: database unreachable")
    })
    .await;
    assert!(logged, "{}", server.log());
}

/// The uid of `user`, or of this process when `None` (`id -u`).
fn uid_of(user: Option<&str>) -> Option<u32> {
    let out = Command::new("id").arg("-u").args(user).output().unwrap();
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// LEAVEMSG_PG_OS_USER: as root, the user the embedded cluster runs as, which must exist and is
/// never created; when not root, not used (the cluster runs as this process's user).
#[tokio::test]
async fn pg_os_user_is_used_as_root_and_a_missing_one_is_named_in_one_line() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = uid_of(None) == Some(0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    let missing = "leavemsg-test-no-such-user";
    let data = data_dir("missing");
    let out = leavemsg(
        &[
            ("LEAVEMSG_DATA_DIR", &data),
            ("LEAVEMSG_PG_OS_USER", missing),
        ],
        &["migrate"],
    );
    if root {
        assert!(!out.status.success(), "{}", stdout(&out));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!(
                "there is no user {missing}: create one with `useradd --system {missing}`"
            )) && err.contains("or set LEAVEMSG_PG_OS_USER to an existing one"),
            "{err}"
        );
        assert_eq!(uid_of(Some(missing)), None, "the user was created");
        assert!(!std::path::Path::new(&data).join("pg").exists());
    } else {
        assert!(
            out.status.success(),
            "not root, the setting is not used: {}",
            stderr(&out)
        );
        assert!(!postmaster_running(&data));
    }

    // An existing unprivileged user: the cluster is made for it (this process's user when
    // not root).
    let data = data_dir("nobody");
    let out = leavemsg(
        &[
            ("LEAVEMSG_DATA_DIR", &data),
            ("LEAVEMSG_PG_OS_USER", "nobody"),
        ],
        &["migrate"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let owner = std::fs::metadata(std::path::Path::new(&data).join("pg"))
        .unwrap()
        .uid();
    let expected = if root {
        uid_of(Some("nobody"))
    } else {
        uid_of(None)
    };
    assert_eq!(Some(owner), expected);
    assert!(!postmaster_running(&data));

    // Not a user name at all: refused whoever runs it, before anything is made.
    let data = data_dir("bad");
    let out = leavemsg(
        &[
            ("LEAVEMSG_DATA_DIR", &data),
            ("LEAVEMSG_PG_OS_USER", "-o nobody"),
        ],
        &["migrate"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("LEAVEMSG_PG_OS_USER is not a user name"),
        "{err}"
    );
    assert!(!std::path::Path::new(&data).exists());
}

/// Output cut short (`leavemsg channel list | head -n 0`): the command ends as other
/// command-line tools do, ended by SIGPIPE, not with a panic and its message.
#[tokio::test]
async fn a_command_whose_output_is_cut_short_ends_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let url = fresh_migrated_database().await;
    ok(&url, &["channel", "create", "--name", "Web"]);
    // A pipe nobody reads any more: the first line printed meets a closed pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["channel", "list"])
        .current_dir(dir.path())
        .env("DATABASE_URL", &url)
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(13),
        "SIGPIPE: {:?} {stderr}",
        out.status
    );
}
