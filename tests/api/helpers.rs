//! Test harness: each test gets a fresh database and its own server on a free port.
//!
//! Without `DATABASE_URL` the databases live on a private PostgreSQL cluster that this test
//! process starts under `target/` (the same embedded cluster code the service uses) and that
//! stops when the process exits. With `DATABASE_URL` they are created on that server, which
//! needs the CREATEDB privilege.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use embedded_pg::Cluster;
use leavemsg::settings::Settings;
use leavemsg::startup::Application;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Where test databases are created: a URL whose database part is replaced per test.
struct TestServer {
    admin_url: String,
    _cluster: Option<Cluster>,
}

fn test_server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        leavemsg::telemetry::init_with_default(leavemsg::settings::LogFormat::Text, "warn");
        match std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            Some(url) => TestServer {
                admin_url: url,
                _cluster: None,
            },
            None => {
                let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-cluster");
                let cluster = leavemsg::store::embedded_cluster(&dir)
                    .start()
                    .unwrap_or_else(|e| panic!("{e}"));
                cluster
                    .stop_when_this_process_exits()
                    .unwrap_or_else(|e| panic!("{e}"));
                TestServer {
                    admin_url: cluster_url(&cluster, "postgres"),
                    _cluster: Some(cluster),
                }
            }
        }
    })
}

/// A URL for `database` on `cluster`, for what takes a URL string (the service's settings,
/// the commands' DATABASE_URL).
pub fn cluster_url(cluster: &Cluster, database: &str) -> String {
    socket_url(
        cluster.socket_dir(),
        cluster.port(),
        cluster.superuser(),
        database,
    )
}

/// sqlx writes the socket folder into the URL's host, percent-encoded, and reads a host
/// starting with `/` back as a socket folder (`socket_urls_round_trip` checks it).
fn socket_url(socket_dir: &Path, port: u16, user: &str, database: &str) -> String {
    PgConnectOptions::new_without_pgpass()
        .socket(socket_dir)
        .port(port)
        .username(user)
        .database(database)
        .to_url_lossy()
        .to_string()
}

#[test]
fn socket_urls_round_trip() {
    let socket = Path::new("/tmp/a b+c%?#/run");
    let url = socket_url(socket, 5433, "leavemsg", "my db");
    for (url, database) in [
        (url.clone(), "my db"),
        (with_database(&url, "other"), "other"),
    ] {
        let back: PgConnectOptions = url.parse().expect("a URL sqlx reads");
        assert_eq!(back.get_socket(), Some(&socket.to_path_buf()), "{url}");
        assert_eq!(back.get_port(), 5433, "{url}");
        assert_eq!(back.get_username(), "leavemsg", "{url}");
        assert_eq!(back.get_database(), Some(database), "{url}");
    }
}

/// A fresh, empty database; returns its URL.
pub async fn fresh_database() -> String {
    let server = test_server();
    let admin: PgConnectOptions = server.admin_url.parse().expect("admin url");
    let mut conn = admin.connect().await.expect("connect to the test server");
    drop_stale_test_databases(&mut conn).await;
    let name = format!(
        "lmtest_{}_{}",
        chrono::Utc::now().timestamp(),
        uuid::Uuid::new_v4().simple()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    with_database(&server.admin_url, &name)
}

/// A fresh, empty database stored in `encoding` (e.g. `SQL_ASCII`), with the C locale that
/// any encoding accepts; returns its URL.
pub async fn fresh_database_encoded(encoding: &str) -> String {
    let server = test_server();
    let admin: PgConnectOptions = server.admin_url.parse().expect("admin url");
    let mut conn = admin.connect().await.expect("connect to the test server");
    let name = format!(
        "lmtest_{}_{}",
        chrono::Utc::now().timestamp(),
        uuid::Uuid::new_v4().simple()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{name}\" ENCODING '{encoding}' TEMPLATE template0 \
         LC_COLLATE 'C' LC_CTYPE 'C'"
    )))
    .execute(&mut conn)
    .await
    .expect("create test database");
    conn.close().await.ok();
    with_database(&server.admin_url, &name)
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| i + authority_start);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{name}{query}", &base[..authority_end])
}

/// Test databases from runs more than a day old are dropped, so the server does not fill up.
async fn drop_stale_test_databases(conn: &mut PgConnection) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    let cutoff = chrono::Utc::now().timestamp() - 86_400;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'lmtest\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let stamp = name.split('_').nth(1).and_then(|s| s.parse::<i64>().ok());
        if stamp.is_some_and(|s| s < cutoff) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\""
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

/// Settings for a test server: loopback, port 0, limits off unless a test sets them.
pub fn test_settings(database_url: String) -> Settings {
    use clap::Parser;
    let cli = leavemsg::cli::Cli::try_parse_from([
        "leavemsg",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate-per-token",
        "0",
        "--rate-per-ip",
        "0",
    ])
    .expect("test settings");
    let leavemsg::cli::Command::Serve(serve) = cli.command else {
        unreachable!("parsed as serve")
    };
    let mut settings = Settings::new(&cli.global, serve);
    settings.database.url = Some(database_url);
    settings.database.max_connections = 8;
    settings
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub pool: PgPool,
    pub database_url: String,
    pub client: reqwest::Client,
    pub handle: actix_web::dev::ServerHandle,
    pub live: leavemsg::live::Live,
    /// The store on the test's database, for setting up what the interfaces cannot.
    pub store: leavemsg::store::Store,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let database_url = fresh_database().await;
    spawn_app_on(database_url, configure).await
}

/// A server on an existing database (a second instance, or a database the test controls).
pub async fn spawn_app_on(database_url: String, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(database_url.clone());
    configure(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("build application");
    let port = app.port();
    let handle = app.handle();
    let live = app.live();
    tokio::spawn(app.run_until_stopped());
    let pool = PgPool::connect(&database_url).await.expect("test pool");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        database_url,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        store: leavemsg::store::Store::new(pool.clone()),
        handle,
        live,
        pool,
    }
}

pub const BASE: &str = "/service-cloud/rest/webadapter/v1/webadapterfacade";

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn facade(&self, call: &str) -> String {
        self.url(&format!("{BASE}/{call}"))
    }

    /// A channel straight in the database, with these origins and cross-site choice.
    pub async fn create_channel_with(&self, origins: &[&str], cross_site: bool) -> String {
        let origins: Vec<String> = origins.iter().map(ToString::to_string).collect();
        let id = self
            .store
            .create_channel(&leavemsg::store::channels::NewChannel {
                name: "Test channel",
                origins: &origins,
                cross_site,
                prompt: None,
                callbacks: Default::default(),
                notify_emails: &[],
            })
            .await
            .expect("create channel");
        id.to_string()
    }

    pub async fn create_channel(&self) -> String {
        self.create_channel_with(&[], false).await
    }

    pub async fn apply_token_raw(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.facade("applyToken"))
            .json(body)
            .send()
            .await
            .expect("applyToken request")
    }

    /// A valid token for `user_id` on `channel`.
    pub async fn token_for(&self, channel: &str, user_id: &str) -> String {
        let resp = self
            .apply_token_raw(&json!({
                "userId": user_id, "userName": "Visitor", "channelId": channel, "locale": "en"
            }))
            .await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("applyToken json");
        assert_eq!(body["resultCode"], "0", "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// A new channel and a token on it.
    pub async fn channel_and_token(&self) -> (String, String) {
        let channel = self.create_channel().await;
        let token = self.token_for(&channel, "visitor-1").await;
        (channel, token)
    }

    /// doLeaveMessage with the token in the cookie, as a browser sends it.
    pub async fn leave_message(&self, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.facade("doLeaveMessage"))
            .header("cookie", format!("ccmessaging-token={token}"))
            .json(body)
            .send()
            .await
            .expect("doLeaveMessage request")
    }

    /// Another session holding `leave_message` exclusively: every write waits until the
    /// transaction ends (or the statement timeout). Roll it back to release the table.
    pub async fn lock_message_table(&self) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut blocker = self.pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE leave_message IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *blocker)
            .await
            .unwrap();
        blocker
    }

    pub async fn message_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM leave_message")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Sends exactly these bytes and returns the status and body of the response.
    pub async fn raw_request(&self, bytes: &[u8]) -> (u16, String) {
        raw_request(self.port, bytes).await
    }
}

pub async fn raw_request(port: u16, bytes: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // The server may answer (413, 401) before reading everything; a write error then is fine.
    let _ = stream.write_all(bytes).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response));
    let _ = read.await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `count` messages on `channel` stored by one statement on `executor` (a pool, or an open
/// transaction); returns their ids, ascending.
pub async fn insert_messages<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    channel: &str,
    count: i32,
) -> Vec<i64> {
    let batch = uuid::Uuid::new_v4().to_string();
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO leave_message (channel_id, user_id, user_name, phone_no, phone_digits,
                                    message, client_ip, submission_key)
         SELECT $1::uuid, 'v', 'n', '123456', '123456', 'bulk ' || g, '192.0.2.1',
                sha256(($2 || g::text)::bytea)
         FROM generate_series(1, $3) g
         RETURNING id",
    )
    .bind(channel)
    .bind(&batch)
    .bind(count)
    .fetch_all(executor)
    .await
    .expect("insert messages");
    ids.sort_unstable();
    ids
}

/// How many webhook delivery rows there are: events other than message.stored, and stored
/// messages whose first try failed (the others are sent from `outbox_stored` without one).
pub async fn delivery_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhook_delivery")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Every endpoint's deliveries of `status`, as the admin API lists them: delivery rows, and
/// the stored messages sent from each endpoint's place in `outbox_stored` (which have none).
pub async fn deliveries_with(
    store: &leavemsg::store::Store,
    status: leavemsg::domain::DeliveryStatus,
) -> Vec<leavemsg::store::webhooks::DeliveryRow> {
    let mut all = Vec::new();
    for endpoint in store.webhook_ids().await.expect("endpoints") {
        if let Some(rows) = store
            .deliveries(endpoint, Some(status), 500)
            .await
            .expect("deliveries")
        {
            all.extend(rows);
        }
    }
    all
}

/// The vendor reply fields of a doLeaveMessage response.
pub async fn reply(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json body");
    (status, body)
}

/// Retries `check` until it returns true or `deadline` passes.
pub async fn wait_until<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

impl TestApp {
    /// A new agent; returns its API key.
    pub async fn create_agent(&self, name: &str, is_admin: bool) -> String {
        let key = leavemsg::credentials::AgentKey::generate();
        self.store
            .create_agent(&leavemsg::store::agents::NewAgent {
                name,
                is_admin,
                key_id: key.id(),
                key_hash: &key.secret_hash(),
            })
            .await
            .expect("create agent");
        key.expose()
    }

    pub async fn agent_get(&self, key: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("agent GET")
    }

    pub async fn agent_post(
        &self,
        key: &str,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("agent POST")
    }

    /// `count` messages on `channel` stored by one SQL statement (as a bulk import would);
    /// returns their ids, ascending.
    pub async fn insert_messages(&self, channel: &str, count: i32) -> Vec<i64> {
        insert_messages(&self.pool, channel, count).await
    }

    /// Stores a message through the visitor interface; returns its id.
    pub async fn store_message(&self, token: &str, phone: &str, text: &str) -> i64 {
        let resp = self
            .leave_message(token, &json!({"phoneNo": phone, "leaveMessage": text}))
            .await;
        assert_eq!(resp.status(), 200);
        sqlx::query_scalar("SELECT max(id) FROM leave_message WHERE message = $1")
            .bind(text)
            .fetch_one(&self.pool)
            .await
            .expect("stored id")
    }
}

/// Reads a server-sent event stream as text, chunk by chunk.
pub struct EventReader {
    response: reqwest::Response,
    pub text: String,
}

/// One server-sent event as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:`; `None` for a block without one (a position, or `: connected`).
    pub kind: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub comments: Vec<String>,
}

impl SseEvent {
    /// The message's own id, from its JSON.
    pub fn message_id(&self) -> Option<i64> {
        let data: Value = serde_json::from_str(self.data.as_deref()?).ok()?;
        data["id"].as_i64()
    }
}

impl EventReader {
    pub async fn open(app: &TestApp, key: &str) -> EventReader {
        let response = app.agent_get(key, "/api/v1/messages/stream").await;
        EventReader::from_response(response)
    }

    /// A stream opened with `Last-Event-ID: last_event_id`, as a reconnecting client opens it.
    pub async fn resume(app: &TestApp, key: &str, last_event_id: &[u8]) -> EventReader {
        let response = app
            .client
            .get(app.url("/api/v1/messages/stream"))
            .bearer_auth(key)
            .header(
                "last-event-id",
                reqwest::header::HeaderValue::from_bytes(last_event_id).expect("a header value"),
            )
            .send()
            .await
            .expect("stream request");
        EventReader::from_response(response)
    }

    fn from_response(response: reqwest::Response) -> EventReader {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventReader {
            response,
            text: String::new(),
        }
    }

    /// Reads until `needle` has arrived; false if it has not within `deadline`.
    pub async fn wait_for(&mut self, needle: &str, deadline: Duration) -> bool {
        let start = Instant::now();
        // In the complete events only: a chunk can end in the middle of one.
        while !self.complete().contains(needle) {
            let left = deadline.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return false,
            }
        }
        true
    }

    /// Reads until the opening replay has arrived (the `: connected` comment).
    pub async fn wait_connected(&mut self) {
        assert!(
            self.wait_for(": connected\n", Duration::from_secs(60))
                .await,
            "the stream never said it was connected: {}",
            self.text
        );
    }

    /// Reads until `count` message events have arrived; false if not within `deadline`.
    pub async fn wait_for_messages(&mut self, count: usize, deadline: Duration) -> bool {
        let start = Instant::now();
        while self.messages().len() < count {
            let left = deadline.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return false,
            }
        }
        true
    }

    /// Every complete event (and comment-only block) read so far, in order.
    pub fn events(&self) -> Vec<SseEvent> {
        let complete = self.text.rfind("\n\n").map_or("", |end| &self.text[..end]);
        complete
            .split("\n\n")
            .map(|block| {
                let mut event = SseEvent {
                    kind: None,
                    id: None,
                    data: None,
                    comments: Vec::new(),
                };
                for line in block.lines() {
                    if let Some(comment) = line.strip_prefix(':') {
                        event.comments.push(comment.trim().to_owned());
                    } else if let Some(kind) = line.strip_prefix("event: ") {
                        event.kind = Some(kind.to_owned());
                    } else if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.to_owned());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data = Some(data.to_owned());
                    }
                }
                event
            })
            .collect()
    }

    /// The events before the `: connected` comment (the replay; not the `retry:` block nor
    /// comments), and the block that says it.
    pub fn opening(&self) -> (Vec<SseEvent>, SseEvent) {
        let mut events = self.events();
        let at = events
            .iter()
            .position(|e| e.comments.iter().any(|c| c == "connected"))
            .unwrap_or_else(|| panic!("not connected yet: {}", self.text));
        let connected = events.remove(at);
        events.truncate(at);
        events.retain(|e| e.kind.is_some() || e.id.is_some() || e.data.is_some());
        (events, connected)
    }

    /// The ids of the `message` events read so far, from their JSON, in order.
    pub fn message_ids(&self) -> Vec<i64> {
        self.messages()
            .iter()
            .map(|m| m["id"].as_i64().expect("a message id"))
            .collect()
    }

    /// The text of the events read completely so far, each with its closing blank line (the
    /// last one may still be arriving: a chunk can end in the middle of an event).
    fn complete(&self) -> &str {
        self.text
            .rfind("\n\n")
            .map_or("", |end| &self.text[..end + 2])
    }

    /// The `data:` payloads of the complete `message` events read so far.
    pub fn messages(&self) -> Vec<Value> {
        self.complete()
            .split("\n\n")
            .filter(|event| event.lines().any(|l| l == "event: message"))
            .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|data| serde_json::from_str(data).expect("event data is JSON"))
            .collect()
    }
}

pub const BIN: &str = env!("CARGO_BIN_EXE_leavemsg");

/// The `leavemsg serve` binary in a process of its own, on a free port, its log captured.
pub struct ServerProcess {
    child: std::process::Child,
    pub port: u16,
    log: Arc<Mutex<String>>,
    /// Set once the log's pipe has closed (everything it wrote has been read).
    drained: Arc<std::sync::atomic::AtomicBool>,
}

impl ServerProcess {
    /// Starts `leavemsg serve` with these settings (and no inherited DATABASE_URL) and waits
    /// until its log says which port it bound.
    pub fn start(envs: &[(&str, &str)]) -> ServerProcess {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(BIN)
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .env("LEAVEMSG_LISTEN", "127.0.0.1:0")
            .envs(envs.iter().copied())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start leavemsg serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let drained = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let at_end = drained.clone();
        // Keeps draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let port = line
                    .contains("leavemsg serving")
                    .then(|| line.split("port").nth(1))
                    .flatten()
                    .map(|rest| {
                        rest.chars()
                            .skip_while(|c| !c.is_ascii_digit())
                            .take_while(char::is_ascii_digit)
                            .collect::<String>()
                    });
                if let Some(port) = port.and_then(|p| p.parse::<u16>().ok()) {
                    let _ = tx.send(port);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            at_end.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let Ok(port) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!(
                "the server did not say which port it bound; its log:\n{}",
                log.lock().unwrap()
            );
        };
        ServerProcess {
            child,
            port,
            log,
            drained,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; `None` (and the process killed) if it has not by `deadline`.
    pub fn wait(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Its last lines may still be in the pipe: read them (a process it started, such
                // as an embedded cluster, may hold the pipe open, hence the bound).
                let read = Instant::now();
                while !self.drained.load(std::sync::atomic::Ordering::SeqCst)
                    && read.elapsed() < Duration::from_secs(10)
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `leavemsg` binary with `args` on `database_url`, in an empty folder (no `.env`)
/// and with nothing else inherited that names a database.
pub fn run_leavemsg(database_url: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::process::Command::new(BIN)
        .args(args)
        .current_dir(dir.path())
        .env("DATABASE_URL", database_url)
        .env("LEAVEMSG_LOG_FORMAT", "text")
        .output()
        .expect("run leavemsg")
}

/// A fresh database with every migration applied; returns its URL.
pub async fn fresh_migrated_database() -> String {
    let url = fresh_database().await;
    let pool = PgPool::connect(&url).await.expect("connect");
    leavemsg::store::migrate(&pool).await.expect("migrate");
    pool.close().await;
    url
}

/// A finished command's standard output, as text.
pub fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A finished command's standard error, as text.
pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `leavemsg ARGS` on the database at `url`, which must succeed; returns its stdout.
pub fn ok(url: &str, args: &[&str]) -> String {
    let out = run_leavemsg(url, args);
    assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
    stdout_of(&out)
}

/// How long a [`Receiver`] waits for the requests a test expects.
const RECEIVER_DEADLINE: Duration = Duration::from_secs(60);

// A webhook receiver: a small HTTP/1.1 server on loopback that records what it gets and
// answers as it is told.

/// What a receiver got: one request.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How a receiver answers: a status per request in turn (then 200), or never.
#[derive(Clone)]
pub enum Answer {
    Statuses(Arc<Mutex<Vec<u16>>>),
    Hang,
}

pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(answer: Answer) -> Receiver {
        Receiver::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), answer)
    }

    /// A receiver on a listener bound already (a port chosen earlier).
    pub fn start_on(listener: TcpListener, answer: Answer) -> Receiver {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let record = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (record, answer) = (record.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    // Requests on one connection, one after another (keep-alive).
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut headers = Vec::new();
                        loop {
                            let mut h = String::new();
                            stream.read_line(&mut h).await.unwrap();
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            let (n, v) = h.split_once(':').unwrap();
                            headers.push((n.trim().to_owned(), v.trim().to_owned()));
                        }
                        let length: usize = headers
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                            .map_or(0, |(_, v)| v.parse().unwrap());
                        let mut body = vec![0; length];
                        stream.read_exact(&mut body).await.unwrap();
                        record.lock().unwrap().push(Received { headers, body });
                        let status = match &answer {
                            Answer::Hang => {
                                std::future::pending::<()>().await;
                                unreachable!()
                            }
                            Answer::Statuses(s) => {
                                let mut s = s.lock().unwrap();
                                if s.is_empty() { 200 } else { s.remove(0) }
                            }
                        };
                        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                        if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { url, got }
    }

    pub async fn answering(statuses: &[u16]) -> Receiver {
        Receiver::start(Answer::Statuses(Arc::new(Mutex::new(statuses.to_vec())))).await
    }

    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let arrived = wait_until(RECEIVER_DEADLINE, || async { self.got().len() >= n }).await;
        let got = self.got();
        assert!(arrived, "expected {n} requests, got {}: {got:?}", got.len());
        got
    }
}

/// A new CA called `ca_name` (PEM), and a certificate for `name` it signed with that
/// certificate's key (PEM). `name` may be a host name or an IP address.
pub fn certificates(ca_name: &str, name: &str) -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec![name.to_owned()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, name);
    let server = server.signed_by(&key, &ca).unwrap();
    (ca.pem(), server.pem(), key.serialize_pem())
}
