//! CONTRACT §1: `DATABASE_URL`'s `sslmode` and `sslrootcert`, as libpq reads them, against a
//! PostgreSQL that takes TCP connections over TLS only, with a certificate from a CA made here.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use embedded_pg::Cluster;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::helpers::*;

/// The name the server's certificate holds; it holds no IP address, so that connecting to
/// 127.0.0.1 shows what `verify-full` checks and `verify-ca` does not.
const CERT_NAME: &str = "localhost";

/// A PostgreSQL cluster of its own that listens on 127.0.0.1 and refuses TCP connections
/// without TLS (pg_hba.conf: `hostssl ... trust`, `hostnossl ... reject`), stopped on drop.
struct TlsServer {
    cluster: Cluster,
    port: u16,
    /// The CA that signed the server's certificate, and another one (PEM files).
    ca: PathBuf,
    wrong_ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
    }
}

impl TlsServer {
    async fn start() -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        // The cluster's OS user (when tests run as root) must be able to reach the folder.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The socket's port number is the TCP port too once the server listens on TCP.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let builder = leavemsg::store::embedded_cluster(&dir.path().join("data")).port(port);
        let first = start_blocking(builder.clone()).await;

        let (ca, server_cert, server_key) = certificates("leavemsg test CA", CERT_NAME);
        let (wrong_ca, _, _) = certificates("another CA", CERT_NAME);
        let pem_dir = dir.path().join("pem");
        std::fs::create_dir(&pem_dir).unwrap();
        let ca_file = pem_dir.join("ca.pem");
        let wrong_ca_file = pem_dir.join("wrong-ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        std::fs::write(&wrong_ca_file, wrong_ca).unwrap();

        // The server reads its certificate and key (server.crt, server.key: the defaults) from
        // its data folder; the key must belong to the server's OS user and be private to it.
        let pgdata = first.cluster_dir().to_owned();
        let owner = std::fs::metadata(&pgdata).unwrap();
        for (name, text, mode) in [
            ("server.crt", &server_cert, 0o644),
            ("server.key", &server_key, 0o600),
        ] {
            let path = pgdata.join(name);
            std::fs::write(&path, text).unwrap();
            std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        // Written over initdb's file, which keeps its owner.
        std::fs::write(
            pgdata.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 0.0.0.0/0 reject\n",
        )
        .unwrap();
        // postgresql.auto.conf is read after the cluster's own settings, so these override its
        // `listen_addresses = ''`; both need a restart.
        let mut admin = socket_options(&first, "postgres").connect().await.unwrap();
        for setting in ["listen_addresses = '127.0.0.1'", "ssl = on"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("ALTER SYSTEM SET {setting}")))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        admin.close().await.unwrap();
        tokio::task::spawn_blocking(move || first.stop())
            .await
            .unwrap()
            .unwrap();
        let cluster = start_blocking(builder).await;
        TlsServer {
            cluster,
            port,
            ca: ca_file,
            wrong_ca: wrong_ca_file,
            _dir: dir,
        }
    }

    /// A new database on this server; returns its name.
    async fn database(&self, name: &str) -> String {
        let mut admin = socket_options(&self.cluster, "postgres")
            .connect()
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        name.to_owned()
    }

    /// A TCP URL for `database` at `host` with these parameters (`&`-separated).
    fn url(&self, host: &str, database: &str, params: &str) -> String {
        format!(
            "postgres://{}@{host}:{}/{database}?{params}",
            self.cluster.superuser(),
            self.port
        )
    }
}

async fn start_blocking(builder: embedded_pg::ClusterBuilder) -> Cluster {
    tokio::task::spawn_blocking(move || builder.start())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn socket_options(cluster: &Cluster, database: &str) -> PgConnectOptions {
    PgConnectOptions::new_without_pgpass()
        .socket(cluster.socket_dir())
        .port(cluster.port())
        .username(cluster.superuser())
        .database(database)
}

/// Runs `leavemsg ARGS` with `DATABASE_URL` and `envs` only: no .env, no inherited
/// PostgreSQL or certificate-store variables.
fn leavemsg(url: &str, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir.path());
    for variable in [
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "RUST_LOG",
    ] {
        cmd.env_remove(variable);
    }
    cmd.env("DATABASE_URL", url)
        .env("LEAVEMSG_LOG_FORMAT", "text")
        .envs(envs.iter().copied());
    cmd.output().expect("run leavemsg")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Succeeds; its stdout.
fn succeeds(url: &str, envs: &[(&str, &str)], args: &[&str]) -> String {
    let out = leavemsg(url, envs, args);
    assert!(
        out.status.success(),
        "leavemsg {args:?} with {url} failed: {}",
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn last_line(stdout: &str) -> String {
    stdout.lines().last().unwrap_or_default().to_owned()
}

/// Fails, saying so in exactly one line; that line.
fn fails_in_one_line(url: &str, envs: &[(&str, &str)], args: &[&str]) -> String {
    let out = leavemsg(url, envs, args);
    let err = stderr(&out);
    assert!(!out.status.success(), "leavemsg {args:?} with {url} worked");
    assert_eq!(err.trim().lines().count(), 1, "{url}:\n{err}");
    err.trim().to_owned()
}

#[tokio::test]
async fn sslmode_and_sslrootcert_work_as_with_libpq_against_a_tls_only_server() {
    let server = TlsServer::start().await;
    let db = server.database("tls_modes").await;
    let ca = format!("sslrootcert={}", server.ca.display());
    let wrong_ca = format!("sslrootcert={}", server.wrong_ca.display());

    // The server takes no connection without TLS: what follows is over TLS or nothing.
    let refused = fails_in_one_line(
        &server.url("127.0.0.1", &db, "sslmode=disable"),
        &[],
        &["migrate"],
    );
    assert!(
        refused.contains("no encryption")
            && refused.contains("refuses this connection without TLS"),
        "{refused}"
    );

    // require: encrypted, certificate not checked.
    let require = server.url("127.0.0.1", &db, "sslmode=require");
    assert_eq!(
        last_line(&succeeds(&require, &[], &["migrate"])),
        "database is up to date"
    );
    let channel = last_line(&succeeds(
        &require,
        &[],
        &["channel", "create", "--name", "Over TLS"],
    ));
    assert_eq!(channel.len(), 36, "a Configuration ID: {channel}");
    // prefer (also the default when sslmode is not given) takes TLS when the server offers it.
    for params in ["sslmode=prefer", ""] {
        let url = server.url("127.0.0.1", &db, params);
        assert!(succeeds(&url, &[], &["channel", "list"]).contains(&channel));
    }

    // verify-full: the CA and the name.
    let full = server.url(CERT_NAME, &db, &format!("sslmode=verify-full&{ca}"));
    assert!(succeeds(&full, &[], &["channel", "list"]).contains(&channel));

    // verify-full against another CA: one line that names the certificate problem.
    let other_ca = server.url(CERT_NAME, &db, &format!("sslmode=verify-full&{wrong_ca}"));
    let said = fails_in_one_line(&other_ca, &[], &["migrate"]);
    assert_eq!(
        said,
        format!(
            "leavemsg: cannot connect to PostgreSQL at {CERT_NAME}:{} (sslmode=verify-full): the \
             server's TLS certificate is not signed by a trusted CA: set sslrootcert to the CA \
             certificate (PEM) that signed it",
            server.port
        )
    );
    // ... and with `require`, which a CA file turns into verify-ca, as in libpq.
    let said = fails_in_one_line(
        &server.url(CERT_NAME, &db, &format!("sslmode=require&{wrong_ca}")),
        &[],
        &["channel", "list"],
    );
    assert!(
        said.contains("(sslmode=verify-ca)") && said.contains("not signed by a trusted CA"),
        "{said}"
    );

    // verify-full checks the name, verify-ca does not: the certificate names localhost only.
    let by_address = server.url("127.0.0.1", &db, &format!("sslmode=verify-full&{ca}"));
    let said = fails_in_one_line(&by_address, &[], &["channel", "list"]);
    assert!(
        said.contains("the server's TLS certificate is not valid for the name 127.0.0.1"),
        "{said}"
    );
    let ca_only = server.url("127.0.0.1", &db, &format!("sslmode=verify-ca&{ca}"));
    succeeds(&ca_only, &[], &["channel", "list"]);

    // sslrootcert=system: the system's CAs (here SSL_CERT_FILE, which stands for the system
    // store), and verify-full.
    let system = server.url(CERT_NAME, &db, "sslrootcert=system");
    let ca_path = server.ca.to_str().unwrap();
    succeeds(&system, &[("SSL_CERT_FILE", ca_path)], &["channel", "list"]);
    let wrong_path = server.wrong_ca.to_str().unwrap();
    let said = fails_in_one_line(
        &system,
        &[("SSL_CERT_FILE", wrong_path)],
        &["channel", "list"],
    );
    assert!(
        said.contains("(sslmode=verify-full)") && said.contains("not signed by a trusted CA"),
        "{said}"
    );
    let weaker = server.url(CERT_NAME, &db, "sslmode=require&sslrootcert=system");
    let said = fails_in_one_line(&weaker, &[], &["channel", "list"]);
    assert!(
        said.contains("sslrootcert=system needs sslmode=verify-full"),
        "{said}"
    );

    // A CA file that is not there is named before any connection is tried.
    let missing = server.url(
        CERT_NAME,
        &db,
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    );
    let said = fails_in_one_line(&missing, &[], &["channel", "list"]);
    assert!(said.contains("sslrootcert /nonexistent/ca.pem"), "{said}");
}

#[tokio::test]
async fn every_connection_of_a_running_service_is_encrypted() {
    let server = TlsServer::start().await;
    let db = server.database("tls_serve").await;
    let url = server.url(
        CERT_NAME,
        &db,
        &format!("sslmode=verify-full&sslrootcert={}", server.ca.display()),
    );
    let service = ServerProcess::start(&[("DATABASE_URL", &url)]);
    let channel = last_line(&succeeds(
        &url,
        &[],
        &["channel", "create", "--name", "Encrypted"],
    ));
    let key = last_line(&succeeds(
        &url,
        &[],
        &["agent", "create", "--name", "watcher"],
    ));

    // A live stream (its own LISTEN connection), then a message (the writer's connection).
    let client = reqwest::Client::new();
    let mut stream = client
        .get(service.url("/api/v1/messages/stream"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let token: Value = client
        .post(service.url(&format!("{BASE}/applyToken")))
        .json(&json!({"userId": "v1", "userName": "n", "channelId": channel}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().expect("a token").to_owned();
    let answer: Value = client
        .post(service.url(&format!("{BASE}/doLeaveMessage")))
        .header("cookie", format!("ccmessaging-token={token}"))
        .json(&json!({"phoneNo": "5550100", "leaveMessage": "call me over TLS"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["resultCode"], "0", "{answer}");
    let mut seen = String::new();
    let arrived = tokio::time::timeout(Duration::from_secs(30), async {
        while !seen.contains("5550100") {
            match stream.chunk().await.unwrap() {
                Some(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                None => break,
            }
        }
    })
    .await;
    assert!(arrived.is_ok() && seen.contains("5550100"), "{seen}");

    // The server's view, from a TLS connection of the test's own.
    let watch: PgConnectOptions = server
        .url("127.0.0.1", &db, "sslmode=require")
        .parse()
        .unwrap();
    let mut watch = watch.connect().await.unwrap();
    let query = "SELECT count(*), count(*) FILTER (WHERE s.ssl), \
                 count(*) FILTER (WHERE a.query ILIKE 'LISTEN%') \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.application_name = 'leavemsg' AND a.datname = $1";
    // At least the listener's and the writer's connections (the pool's may be the listener's).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let counts: (i64, i64, i64) = loop {
        let counts: (i64, i64, i64) = sqlx::query_as(query)
            .bind(db.as_str())
            .fetch_one(&mut watch)
            .await
            .unwrap();
        if (counts.0 >= 2 && counts.2 >= 1) || std::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let settled = counts.0 >= 2 && counts.2 >= 1;
    let (all, encrypted, listening) = counts;
    assert!(
        settled,
        "connections (all, TLS, LISTEN): {counts:?}\n{}",
        service.log()
    );
    assert_eq!(encrypted, all, "a connection without TLS: {counts:?}");
    assert!(listening >= 1);
    let versions: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT s.version FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'leavemsg' AND a.datname = $1",
    )
    .bind(db.as_str())
    .fetch_all(&mut watch)
    .await
    .unwrap();
    assert!(
        versions.iter().all(|v| v.starts_with("TLSv1.")),
        "{versions:?}"
    );
    watch.close().await.unwrap();
}
