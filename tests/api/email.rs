//! CONTRACT §7.2: e-mail to the team, sent to a real SMTP server the tests run themselves
//! (Python's aiosmtpd, driven by a small script that appends each e-mail it accepts, decoded by
//! Python's own e-mail parser, as a JSON line to a file).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};

use crate::helpers::*;
use leavemsg::domain::{PublicUrl, SmtpUrl};
use leavemsg::store::channels::NewChannel;

const DEADLINE: Duration = Duration::from_secs(60);

/// The mail server: `PORT FILE plain`, or `PORT FILE smtps|starttls CERT KEY USER PASSWORD`
/// for TLS from the first byte or STARTTLS required, with a login required.
const SMTPD: &str = r#"
import json, ssl, sys, threading
from email import policy
from email.parser import BytesParser
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

port, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
options = {}
if mode != "plain":
    cert, key, user, password = sys.argv[4:8]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, auth_data=auth_data.login.decode())

    options = dict(authenticator=authenticator, auth_required=True)
    if mode == "starttls":
        options.update(tls_context=context, require_starttls=True)
    else:
        # TLS from the first byte: aiosmtpd's own check only knows STARTTLS.
        options.update(ssl_context=context, auth_require_tls=False)

class Record:
    async def handle_DATA(self, server, session, envelope):
        msg = BytesParser(policy=policy.default).parsebytes(envelope.content)
        body = msg.get_body(preferencelist=("plain",))
        entry = {
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "login": session.auth_data if session.authenticated else None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "content_type": msg.get_content_type(),
            # Lines end in CRLF on the wire; as text, in LF.
            "body": body.get_content().replace("\r\n", "\n") if body is not None else None,
        }
        with open(out, "a") as f:
            f.write(json.dumps(entry) + "\n")
        return "250 OK"

controller = Controller(Record(), hostname="127.0.0.1", port=port, **options)
controller.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// A mail server on a fixed loopback port (it can be stopped and started again there), and
/// what it accepted.
struct MailServer {
    port: u16,
    dir: tempfile::TempDir,
    /// `plain`, or the TLS mode, its certificate and key files, the user and password.
    mode: Vec<String>,
    child: Option<std::process::Child>,
}

impl MailServer {
    /// A mail server not started yet, on a port nothing listens on.
    fn new() -> MailServer {
        require_aiosmtpd();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("smtpd.py"), SMTPD).unwrap();
        MailServer {
            port,
            dir,
            mode: vec!["plain".to_owned()],
            child: None,
        }
    }

    /// A mail server with TLS (`smtps` or `starttls`) for 127.0.0.1 with a certificate signed
    /// by `ca` (its files written with it), and a login required; not started yet.
    fn with_tls(mode: &str, certificate: &str, key: &str, login: (&str, &str)) -> MailServer {
        let mut server = MailServer::new();
        let (cert_file, key_file) = (
            server.dir.path().join("cert.pem"),
            server.dir.path().join("key.pem"),
        );
        std::fs::write(&cert_file, certificate).unwrap();
        std::fs::write(&key_file, key).unwrap();
        server.mode = vec![
            mode.to_owned(),
            cert_file.display().to_string(),
            key_file.display().to_string(),
            login.0.to_owned(),
            login.1.to_owned(),
        ];
        server
    }

    fn started() -> MailServer {
        let mut server = MailServer::new();
        server.start();
        server
    }

    fn url(&self) -> SmtpUrl {
        SmtpUrl::parse(&format!("smtp://127.0.0.1:{}", self.port)).unwrap()
    }

    fn mailbox(&self) -> PathBuf {
        self.dir.path().join("received.jsonl")
    }

    /// Starts it and waits until it accepts connections (the port may take a moment to be
    /// free again after a stop).
    fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let start = Instant::now();
        loop {
            let mut child = std::process::Command::new("python3")
                .arg(self.dir.path().join("smtpd.py"))
                .arg(self.port.to_string())
                .arg(self.mailbox())
                .args(&self.mode)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run python3");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let first = BufReader::new(stdout).lines().next();
                let _ = tx.send(matches!(first, Some(Ok(line)) if line == "ready"));
            });
            if rx.recv_timeout(DEADLINE).unwrap_or(false) {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            assert!(
                start.elapsed() < DEADLINE,
                "the mail server did not start on port {}: {}",
                self.port,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops it (killed: the port refuses connections at once).
    fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Every e-mail accepted so far, in order.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.mailbox())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Fails, saying how to install it, when Python's aiosmtpd is missing: never a silent skip.
fn require_aiosmtpd() {
    let found = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "the e-mail tests run a real SMTP server, Python's aiosmtpd, which is not installed: \
         python3 -m pip install aiosmtpd (.ci/run installs it)"
    );
}

/// A server that e-mails through `mail`, with its public URL set, and retries `retry_base`
/// apart (doubling).
async fn app_mailing_to(mail: &MailServer, retry_base: Duration) -> TestApp {
    let smtp = mail.url();
    spawn_app_with(move |s| {
        s.email.smtp = Some(smtp);
        s.public_url = PublicUrl::parse("https://calls.example.com/desk").unwrap();
        s.webhooks.retry_base = retry_base;
    })
    .await
}

/// A channel named `name` that notifies `addresses`, with a token on it.
async fn notifying_channel(app: &TestApp, name: &str, addresses: &[&str]) -> (String, String) {
    let addresses: Vec<String> = addresses.iter().map(|a| (*a).to_owned()).collect();
    let channel = app
        .store
        .create_channel(&NewChannel {
            name,
            origins: &[],
            cross_site: false,
            prompt: None,
            callbacks: Default::default(),
            notify_emails: &addresses,
        })
        .await
        .unwrap()
        .to_string();
    let token = app.token_for(&channel, "visitor-1").await;
    (channel, token)
}

/// (status, tries, last_error) of each e-mail delivery, by message id.
async fn email_deliveries(app: &TestApp) -> Vec<(i64, String, i32, Option<String>)> {
    sqlx::query_as(
        "SELECT e.message_id, d.status, d.tries, d.last_error
         FROM email_delivery d JOIN outbox_event e ON e.id = d.event_id ORDER BY e.message_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// Waits until the e-mail about `message` has the status `status`.
async fn wait_for_status(app: &TestApp, message: i64, status: &str) {
    let reached = wait_until(DEADLINE, || async {
        email_deliveries(app)
            .await
            .iter()
            .any(|(m, s, _, _)| *m == message && s == status)
    })
    .await;
    assert!(
        reached,
        "the e-mail about message {message} is not {status}: {:?}",
        email_deliveries(app).await
    );
}

/// Waits until a try of the e-mail about `message` has failed (it waits for its retry).
async fn wait_for_a_failed_try(app: &TestApp, message: i64) {
    let failed = wait_until(DEADLINE, || async {
        email_deliveries(app)
            .await
            .iter()
            .any(|(m, s, _, e)| *m == message && s == "pending" && e.is_some())
    })
    .await;
    assert!(failed, "no failed try: {:?}", email_deliveries(app).await);
}

/// Moves time: every pending e-mail is due now.
async fn due_now(app: &TestApp) {
    sqlx::query("UPDATE email_delivery SET next_at = now() WHERE status = 'pending'")
        .execute(&app.pool)
        .await
        .unwrap();
}

fn utc_minutes(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[tokio::test]
async fn a_stored_message_is_e_mailed_once_to_every_address_of_its_channel() {
    let mail = MailServer::started();
    let app = app_mailing_to(&mail, Duration::from_secs(1)).await;
    let (_, token) = notifying_channel(
        &app,
        "Sales",
        &["sales-team@example.com", "duty.manager@example.org"],
    )
    .await;
    let callback_after = (Utc::now() + chrono::Duration::hours(5))
        .trunc_subsecs(0)
        .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap());
    let resp = app
        .leave_message(
            &token,
            &json!({
                "phoneNo": "+1 555 0107",
                "leaveMessage": "Please call about my order 7781",
                "callbackAfter": callback_after.to_rfc3339(),
            }),
        )
        .await;
    assert_eq!(reply(resp).await.1["resultCode"], "0");
    let (id, due): (i64, DateTime<Utc>) = sqlx::query_as("SELECT id, due_at FROM leave_message")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    wait_for_status(&app, id, "delivered").await;

    let got = mail.received();
    assert_eq!(got.len(), 1, "one e-mail for one message: {got:#?}");
    let email = &got[0];
    let mut rcpt: Vec<&str> = email["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    rcpt.sort_unstable();
    assert_eq!(rcpt, ["duty.manager@example.org", "sales-team@example.com"]);
    assert!(
        email["to"]
            .as_str()
            .unwrap()
            .contains("sales-team@example.com")
            && email["to"]
                .as_str()
                .unwrap()
                .contains("duty.manager@example.org"),
        "{email}"
    );
    assert_eq!(email["mail_from"], "leavemsg@localhost");
    assert_eq!(email["from"], "leavemsg@localhost");
    assert_eq!(email["subject"], "Call back request: +1 555 0107 (Sales)");
    assert_eq!(email["content_type"], "text/plain");
    let body = email["body"].as_str().unwrap();
    assert_eq!(due, callback_after.with_timezone(&Utc));
    for needle in [
        "Phone:      +1 555 0107\n".to_owned(),
        "Channel:    Sales\n".to_owned(),
        "  Please call about my order 7781\n".to_owned(),
        format!("Call back:  not before {}\n", utc_minutes(due)),
        format!("Due:        {}\n", utc_minutes(due)),
        format!("Message id: {id}\n"),
        "Claim it in the console: https://calls.example.com/desk/console\n".to_owned(),
    ] {
        assert!(body.contains(&needle), "the body lacks {needle:?}:\n{body}");
    }
    let uid: uuid::Uuid = sqlx::query_scalar("SELECT uid FROM outbox_event")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        email["message_id"],
        format!("<{}.stored@localhost>", uid.simple())
    );
    // No webhook endpoint: the event is there for the e-mail only.
    let hooks: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_delivery")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(hooks, 0);
    assert_eq!(
        email_deliveries(&app).await,
        [(id, "delivered".to_owned(), 1, None)]
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let delivered: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("leavemsg_email_deliveries_total{result=\"delivered\"} "))
        .unwrap_or_else(|| panic!("no e-mail counter:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(delivered >= 1.0, "{metrics}");
    for result in ["retry", "failed"] {
        let line = format!("leavemsg_email_deliveries_total{{result=\"{result}\"}}");
        assert!(metrics.contains(&line), "/metrics lacks {line}");
    }
}

#[tokio::test]
async fn a_mail_server_that_is_down_delays_the_e_mail_and_loses_nothing() {
    // Retries an hour apart: a failed try waits until the test moves its time.
    let mut mail = MailServer::new();
    let app = app_mailing_to(&mail, Duration::from_secs(3600)).await;
    let (_, token) = notifying_channel(&app, "Support", &["support@example.com"]).await;

    // Not started yet.
    let first = app
        .store_message(&token, "020 7946 0958", "first, server not started")
        .await;
    wait_for_a_failed_try(&app, first).await;
    assert!(mail.received().is_empty());
    mail.start();
    due_now(&app).await;
    wait_for_status(&app, first, "delivered").await;
    let got = mail.received();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0]["body"]
            .as_str()
            .unwrap()
            .contains("first, server not started")
    );
    assert_eq!(email_deliveries(&app).await[0].2, 2, "two tries");

    // Stopped while the next message arrives, then started again on the same port.
    mail.stop();
    let second = app
        .store_message(&token, "020 7946 0959", "second, server stopped")
        .await;
    wait_for_a_failed_try(&app, second).await;
    mail.start();
    due_now(&app).await;
    wait_for_status(&app, second, "delivered").await;
    let got = mail.received();
    let bodies: Vec<&str> = got.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies.len(), 2, "each e-mail once: {bodies:#?}");
    assert!(bodies[1].contains("second, server stopped"), "{bodies:#?}");
    assert_eq!(
        got[1]["subject"],
        "Call back request: 020 7946 0959 (Support)"
    );
    // Intake never waited: both messages were answered while the server was down.
    assert_eq!(app.message_count().await, 2);
}

#[tokio::test]
async fn an_erased_message_is_never_e_mailed() {
    let mut mail = MailServer::new();
    let app = app_mailing_to(&mail, Duration::from_secs(3600)).await;
    let (_, token) = notifying_channel(&app, "Support", &["support@example.com"]).await;
    let id = app
        .store_message(&token, "+44 20 7946 0958", "erase me before the e-mail")
        .await;
    wait_for_a_failed_try(&app, id).await;
    let out = ok(&app.database_url, &["erase", "--phone", "442079460958"]);
    assert!(out.contains('1'), "{out}");
    mail.start();
    due_now(&app).await;
    wait_for_status(&app, id, "dropped").await;
    assert!(mail.received().is_empty(), "{:#?}", mail.received());
}

#[tokio::test]
async fn without_addresses_or_endpoints_nothing_is_written_to_the_outbox() {
    // No mail server is set: e-mails wait, and what is written can be counted.
    let app = spawn_app().await;
    let (quiet, quiet_token) = app.channel_and_token().await;
    app.store_message(&quiet_token, "123456", "no one listens")
        .await;
    let count = |table: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table}"
            )))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(count("outbox_event").await, 0);

    // Another channel notifies by e-mail, and an endpoint takes only processed messages:
    // the quiet channel's messages still write nothing.
    let (_, token) = notifying_channel(&app, "Loud", &["team@example.com"]).await;
    app.store
        .create_webhook(&leavemsg::store::webhooks::NewEndpoint {
            url: &leavemsg::domain::EndpointUrl::parse("http://127.0.0.1:9/never").unwrap(),
            channel: None,
            events: &leavemsg::domain::EventTypes::parse("events", &["message.processed"]).unwrap(),
            secret: &leavemsg::credentials::WebhookSecret::generate(),
        })
        .await
        .unwrap();
    app.store_message(&quiet_token, "123456", "still no one")
        .await;
    assert_eq!(count("outbox_event").await, 0);
    let loud = app.store_message(&token, "123456", "the team hears").await;
    let events: Vec<(String, i64, Option<Value>)> =
        sqlx::query_as("SELECT type, message_id, data FROM outbox_event")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].0.as_str(), events[0].1),
        ("message.stored", loud)
    );
    assert_eq!(
        events[0].2.as_ref().unwrap()["leave_message"],
        "the team hears"
    );
    assert_eq!(count("webhook_delivery").await, 0);
    assert_eq!(
        count("outbox_stored").await,
        0,
        "no endpoint takes message.stored"
    );
    assert_eq!(
        email_deliveries(&app).await,
        [(loud, "pending".to_owned(), 0, None)]
    );
    // A bulk statement on the quiet channel writes nothing either.
    app.insert_messages(&quiet, 3).await;
    assert_eq!(count("outbox_event").await, 1);
    assert_eq!(count("email_delivery").await, 1);
    assert_eq!(count("outbox_stored").await, 0);
}

/// The `notify-email:` line `channel list` or `channel update` shows for a channel.
fn listed_addresses(list: &str, channel: &str) -> String {
    list.lines()
        .skip_while(|l| !l.starts_with(channel))
        .find_map(|l| l.trim().strip_prefix("notify-email: "))
        .unwrap_or_else(|| panic!("no notify-email line for {channel}:\n{list}"))
        .to_owned()
}

async fn stored_addresses(url: &str, channel: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let addresses = sqlx::query_scalar("SELECT notify_emails FROM web_channel WHERE id = $1::uuid")
        .bind(channel)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    addresses
}

#[tokio::test]
async fn the_cli_sets_replaces_clears_and_lists_addresses() {
    let url = fresh_migrated_database().await;
    let out = ok(
        &url,
        &[
            "channel",
            "create",
            "--name",
            "Sales",
            "--notify-email",
            "sales@example.com",
            "--notify-email",
            " Duty.Manager@example.org ",
            "--notify-email",
            "SALES@example.com",
        ],
    );
    let sales = out.lines().last().unwrap().to_owned();
    let plain = ok(&url, &["channel", "create", "--name", "Plain"]);
    let plain = plain.lines().last().unwrap().to_owned();
    assert_eq!(
        stored_addresses(&url, &sales).await,
        ["sales@example.com", "Duty.Manager@example.org"]
    );
    let list = ok(&url, &["channel", "list"]);
    assert_eq!(
        listed_addresses(&list, &sales),
        "sales@example.com, Duty.Manager@example.org"
    );
    assert_eq!(listed_addresses(&list, &plain), "(none)");

    // Replaced by the list given; the rest stays.
    let out = ok(
        &url,
        &[
            "channel",
            "update",
            &sales,
            "--notify-email",
            "night@example.com",
        ],
    );
    assert_eq!(listed_addresses(&out, &sales), "night@example.com");
    assert!(out.contains("Sales"), "{out}");
    assert_eq!(stored_addresses(&url, &sales).await, ["night@example.com"]);
    ok(&url, &["channel", "update", &sales, "--name", "Sales EU"]);
    assert_eq!(stored_addresses(&url, &sales).await, ["night@example.com"]);
    let out = ok(&url, &["channel", "update", &sales, "--no-notify-email"]);
    assert_eq!(listed_addresses(&out, &sales), "(none)");
    assert!(stored_addresses(&url, &sales).await.is_empty());

    // Refused, in one line naming the flag and the value; nothing changes.
    ok(
        &url,
        &[
            "channel",
            "update",
            &sales,
            "--notify-email",
            "a@example.com",
        ],
    );
    let before = ok(&url, &["channel", "list"]);
    for bad in [
        "not-an-address",
        "Team <team@example.com>",
        "a@example.com,b@example.com",
        "team@",
    ] {
        for args in [
            vec!["channel", "update", sales.as_str(), "--notify-email", bad],
            vec![
                "channel",
                "create",
                "--name",
                "Refused",
                "--notify-email",
                bad,
            ],
            vec![
                "channel",
                "update",
                sales.as_str(),
                "--notify-email",
                "ok@example.com",
                "--notify-email",
                bad,
            ],
        ] {
            let out = run_leavemsg(&url, &args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = stderr_of(&out);
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(
                err.contains("--notify-email:") && err.contains(&format!("{:?}", bad.trim())),
                "{args:?}: {err}"
            );
        }
    }
    let many: Vec<String> = (0..21).map(|i| format!("agent{i}@example.com")).collect();
    let mut args = vec!["channel", "update", sales.as_str()];
    for a in &many {
        args.extend(["--notify-email", a.as_str()]);
    }
    let out = run_leavemsg(&url, &args);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("at most 20"),
        "{}",
        stderr_of(&out)
    );
    let out = run_leavemsg(
        &url,
        &[
            "channel",
            "update",
            &sales,
            "--notify-email",
            "b@example.com",
            "--no-notify-email",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("cannot be used with"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(ok(&url, &["channel", "list"]), before);
    assert_eq!(stored_addresses(&url, &sales).await, ["a@example.com"]);
}

#[tokio::test]
async fn the_server_warns_once_without_a_mail_server_and_never_logs_the_password() {
    let url = fresh_migrated_database().await;
    for name in ["One", "Two"] {
        ok(
            &url,
            &[
                "channel",
                "create",
                "--name",
                name,
                "--notify-email",
                "team@example.com",
            ],
        );
    }
    let mut server = ServerProcess::start(&[("DATABASE_URL", url.as_str())]);
    let warned = wait_until(DEADLINE, || async {
        server.log().contains("LEAVEMSG_SMTP_URL is not set")
    })
    .await;
    assert!(warned, "{}", server.log());
    server.signal("TERM");
    assert!(server.wait(DEADLINE).is_some());
    assert_eq!(
        server.log().matches("LEAVEMSG_SMTP_URL is not set").count(),
        1,
        "{}",
        server.log()
    );

    let smtp = "smtps://alerts:s3cr3t%2Fpw@127.0.0.1:1";
    let mut server =
        ServerProcess::start(&[("DATABASE_URL", url.as_str()), ("LEAVEMSG_SMTP_URL", smtp)]);
    let said = wait_until(DEADLINE, || async {
        server.log().contains("goes through this mail server")
    })
    .await;
    assert!(said, "{}", server.log());
    server.signal("TERM");
    assert!(server.wait(DEADLINE).is_some());
    let log = server.log();
    assert!(log.contains("smtps://alerts@127.0.0.1:1"), "{log}");
    assert!(!log.contains("LEAVEMSG_SMTP_URL is not set"), "{log}");
    assert!(!log.contains("s3cr3t"), "the password was logged: {log}");

    let help = std::process::Command::new(BIN)
        .args(["serve", "--help"])
        .env("LEAVEMSG_SMTP_URL", smtp)
        .output()
        .unwrap();
    let help = stdout_of(&help);
    assert!(help.contains("LEAVEMSG_SMTP_URL"), "{help}");
    assert!(!help.contains("s3cr3t"), "{help}");
}

#[tokio::test]
async fn tls_required_never_falls_back_to_plain_text() {
    // This mail server offers no STARTTLS.
    let mail = MailServer::started();
    let smtp = SmtpUrl::parse(&format!("smtp://127.0.0.1:{}?tls=required", mail.port)).unwrap();
    let app = spawn_app_with(move |s| {
        s.email.smtp = Some(smtp);
        s.webhooks.retry_base = Duration::from_secs(3600);
    })
    .await;
    let (_, token) = notifying_channel(&app, "Support", &["support@example.com"]).await;
    let id = app.store_message(&token, "123456", "only over TLS").await;
    wait_for_a_failed_try(&app, id).await;
    let (_, status, tries, error) = email_deliveries(&app).await.remove(0);
    assert_eq!((status.as_str(), tries), ("pending", 1));
    assert!(error.unwrap().to_lowercase().contains("tls"));
    assert!(mail.received().is_empty(), "{:#?}", mail.received());
}

/// A `leavemsg serve` process (its own trust store: `ca_file` only) that e-mails through
/// `smtp_url`, with one message stored on a channel that notifies team@example.com; returns
/// the process and its database's URL.
async fn serve_and_store(smtp_url: &str, ca_file: &std::path::Path) -> (ServerProcess, String) {
    let url = fresh_migrated_database().await;
    let out = ok(
        &url,
        &[
            "channel",
            "create",
            "--name",
            "Secure",
            "--notify-email",
            "team@example.com",
        ],
    );
    let channel = out.lines().last().unwrap().to_owned();
    let server = ServerProcess::start(&[
        ("DATABASE_URL", url.as_str()),
        ("LEAVEMSG_SMTP_URL", smtp_url),
        ("SSL_CERT_FILE", ca_file.to_str().unwrap()),
        ("SSL_CERT_DIR", "/nonexistent"),
    ]);
    let client = reqwest::Client::new();
    let token: Value = client
        .post(server.url(&format!("{BASE}/applyToken")))
        .json(&json!({"userId": "u1", "userName": "n", "channelId": channel}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap();
    let resp = client
        .post(server.url(&format!("{BASE}/doLeaveMessage")))
        .header("cookie", format!("ccmessaging-token={token}"))
        .json(&json!({"phoneNo": "+1 555 0199", "leaveMessage": "over TLS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    (server, url)
}

/// What `mail` received through a server set up by [`serve_and_store`]: one e-mail.
async fn e_mail_through(mail: &MailServer, smtp_url: &str, ca_file: &std::path::Path) -> Value {
    let (server, _) = serve_and_store(smtp_url, ca_file).await;
    let arrived = wait_until(DEADLINE, || async { !mail.received().is_empty() }).await;
    assert!(arrived, "no e-mail; the server's log:\n{}", server.log());
    let log = server.log();
    assert!(!log.contains("p@ss") && !log.contains("p%40ss"), "{log}");
    let got = mail.received();
    assert_eq!(got.len(), 1, "{got:#?}");
    got[0].clone()
}

#[tokio::test]
async fn e_mail_goes_over_tls_or_starttls_with_the_url_s_login() {
    let (ca, certificate, key) = certificates("leavemsg test mail CA", "127.0.0.1");
    let (other_ca, _, _) = certificates("another CA", "127.0.0.1");
    let ca_dir = tempfile::tempdir().unwrap();
    let (ca_file, other_ca_file) = (
        ca_dir.path().join("ca.pem"),
        ca_dir.path().join("other.pem"),
    );
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::write(&other_ca_file, other_ca).unwrap();
    let login = ("alerts@example.com", "p@ss");

    let mut smtps = MailServer::with_tls("smtps", &certificate, &key, login);
    smtps.start();
    let url = format!(
        "smtps://alerts%40example.com:p%40ss@127.0.0.1:{}",
        smtps.port
    );
    let got = e_mail_through(&smtps, &url, &ca_file).await;
    assert_eq!(
        (&got["tls"], &got["login"]),
        (&json!(true), &json!("alerts@example.com"))
    );
    assert_eq!(got["subject"], "Call back request: +1 555 0199 (Secure)");

    let mut starttls = MailServer::with_tls("starttls", &certificate, &key, login);
    starttls.start();
    let url = format!(
        "smtp://alerts%40example.com:p%40ss@127.0.0.1:{}?tls=required",
        starttls.port
    );
    let got = e_mail_through(&starttls, &url, &ca_file).await;
    assert_eq!(
        (&got["tls"], &got["login"]),
        (&json!(true), &json!("alerts@example.com"))
    );

    // A certificate the trust store does not vouch for: nothing is sent, the try fails.
    let mut untrusted = MailServer::with_tls("smtps", &certificate, &key, login);
    untrusted.start();
    let url = format!(
        "smtps://alerts%40example.com:p%40ss@127.0.0.1:{}",
        untrusted.port
    );
    let (server, db) = serve_and_store(&url, &other_ca_file).await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let refused = wait_until(DEADLINE, || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT last_error FROM email_delivery")
            .fetch_optional(&pool)
            .await
            .unwrap()
            .flatten()
            .is_some()
    })
    .await;
    assert!(refused, "{}", server.log());
    let error: String = sqlx::query_scalar("SELECT last_error FROM email_delivery")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(untrusted.received().is_empty());
}
