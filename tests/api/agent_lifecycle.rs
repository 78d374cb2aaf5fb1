//! CONTRACT §1: agents can leave. `agent list`, `agent disable`, `agent rotate-key` (and
//! `agent enable`) through the real binary, against two server instances on one database: a
//! change made by the command line takes effect on both as soon as the command has exited.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const API: &str = "/api/v1/messages";

/// Runs a command that must fail with one line on stderr; returns that line.
fn refused(url: &str, args: &[&str]) -> String {
    let out = run_leavemsg(url, args);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        stdout_of(&out)
    );
    let err = stderr_of(&out);
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    err.trim().to_owned()
}

fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or_default().to_owned()
}

/// `agent create` through the binary; returns the key.
fn create_agent(url: &str, name: &str, admin: bool) -> String {
    let mut args = vec!["agent", "create", "--name", name];
    if admin {
        args.push("--admin");
    }
    let key = last_line(&ok(url, &args));
    assert!(key.starts_with("lmk_"), "{key}");
    key
}

fn two_instances(url: &str) -> (ServerProcess, ServerProcess) {
    let env = [
        ("DATABASE_URL", url),
        ("LEAVEMSG_RATE_PER_TOKEN", "0"),
        ("LEAVEMSG_RATE_PER_IP", "0"),
    ];
    (ServerProcess::start(&env), ServerProcess::start(&env))
}

async fn get(server: &ServerProcess, key: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn post(server: &ServerProcess, key: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(server.url(path))
        .bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The status each instance answers `key` with on the list call.
async fn statuses(servers: [&ServerProcess; 2], key: &str) -> [u16; 2] {
    let mut out = [0; 2];
    for (i, server) in servers.into_iter().enumerate() {
        out[i] = get(server, key, API).await.status().as_u16();
    }
    out
}

/// Stores a message through `server`'s visitor interface; returns its id.
async fn leave_message(server: &ServerProcess, url: &str, channel: &str, text: &str) -> i64 {
    let client = reqwest::Client::new();
    let resp = client
        .post(server.url(&format!("{BASE}/applyToken")))
        .json(&json!({"userId": text, "userName": "n", "channelId": channel}))
        .send()
        .await
        .unwrap();
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = client
        .post(server.url(&format!("{BASE}/doLeaveMessage")))
        .header("ccmessaging-token", token)
        .json(&json!({"phoneNo": "123456", "leaveMessage": text}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT id FROM leave_message WHERE message = $1")
        .bind(text)
        .fetch_one(&pool)
        .await
        .unwrap()
}

/// An open live stream, read until it ends.
struct Stream(reqwest::Response);

impl Stream {
    async fn open(server: &ServerProcess, key: &str) -> Stream {
        let mut resp = get(server, key, &format!("{API}/stream")).await;
        assert_eq!(resp.status(), 200);
        let mut seen = String::new();
        while !seen.contains(": connected") {
            let chunk = tokio::time::timeout(Duration::from_secs(60), resp.chunk())
                .await
                .expect("the stream said nothing")
                .unwrap()
                .expect("the stream ended at once");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        Stream(resp)
    }

    /// Whether the stream ends within `deadline`; every message event it sends meanwhile is
    /// returned too.
    async fn ends_within(mut self, deadline: Duration) -> (bool, String) {
        let mut seen = String::new();
        let ended = tokio::time::timeout(deadline, async {
            while let Ok(Some(chunk)) = self.0.chunk().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .is_ok();
        (ended, seen)
    }
}

async fn history(url: &str, id: i64) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let rows: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT agent, action, from_status, to_status, reason FROM leave_message_event
         WHERE message_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(agent, action, from, to, reason)| {
            let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
            format!("{agent} {action} {from}->{to}{reason}")
        })
        .collect()
}

#[tokio::test]
async fn a_disabled_agent_is_refused_everywhere_at_once_and_its_messages_are_pending_again() {
    let url = fresh_migrated_database().await;
    let channel = last_line(&ok(&url, &["channel", "create", "--name", "Web"]));
    let alice = create_agent(&url, "alice", false);
    let boss = create_agent(&url, "boss", true);
    let carol = create_agent(&url, "carol", false);
    let (a, b) = two_instances(&url);

    let m1 = leave_message(&a, &url, &channel, "first").await;
    let m2 = leave_message(&b, &url, &channel, "second").await;
    let m3 = leave_message(&a, &url, &channel, "third").await;
    let m4 = leave_message(&b, &url, &channel, "fourth").await;
    // alice holds two messages (claimed through each instance) and has processed one.
    assert_eq!(
        post(&a, &alice, &format!("{API}/{m1}/claim"), None).await.0,
        200
    );
    assert_eq!(
        post(&b, &alice, &format!("{API}/{m2}/claim"), None).await.0,
        200
    );
    assert_eq!(
        post(&a, &alice, &format!("{API}/{m3}/claim"), None).await.0,
        200
    );
    let (status, _) = post(
        &b,
        &alice,
        &format!("{API}/{m3}/process"),
        Some(json!({"outcome": "called_back"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(statuses([&a, &b], &alice).await, [200, 200]);
    let streams = [
        Stream::open(&a, &alice).await,
        Stream::open(&b, &alice).await,
    ];
    let boss_stream = Stream::open(&a, &boss).await;

    let out = ok(&url, &["agent", "disable", "alice"]);
    assert!(out.contains("disabled agent \"alice\""), "{out}");
    assert!(out.contains("2 message(s)"), "{out}");

    // No waiting: the command has exited, so both instances refuse the key.
    assert_eq!(statuses([&a, &b], &alice).await, [401, 401]);
    assert_eq!(statuses([&a, &b], &boss).await, [200, 200]);
    // Her open live streams end, on both instances, before another message reaches them;
    // the admin's stays open.
    let m5 = leave_message(&a, &url, &channel, "fifth").await;
    for stream in streams {
        let (ended, seen) = stream.ends_within(Duration::from_secs(60)).await;
        assert!(ended, "a disabled agent's live stream stayed open");
        assert!(
            !seen.contains(&format!("\"id\":{m5}")),
            "a message reached a disabled agent's stream: {seen}"
        );
    }
    let (ended, seen) = boss_stream.ends_within(Duration::from_secs(3)).await;
    assert!(!ended, "another agent's stream ended too: {seen}");

    // Her assigned messages are pending again, each with a history row saying why.
    for id in [m1, m2] {
        let (status, m) = post(&a, &boss, &format!("{API}/{id}/claim"), None).await;
        assert_eq!(status, 200, "message {id} is not pending: {m}");
        assert_eq!(
            history(&url, id).await,
            [
                "alice claim pending->assigned",
                "alice release assigned->pending (agent_disabled)",
                "boss claim pending->assigned",
            ]
        );
    }
    // What she did stays hers: the processed message and its history keep her name.
    let m = get(&b, &boss, &format!("{API}/{m3}")).await;
    let m: Value = m.json().await.unwrap();
    assert_eq!(
        (m["status"].as_str(), m["assignedTo"].as_str()),
        (Some("processed"), Some("alice"))
    );
    assert_eq!(
        history(&url, m3).await,
        [
            "alice claim pending->assigned",
            "alice process assigned->processed"
        ]
    );
    let list = get(&a, &boss, &format!("{API}?agent=alice")).await;
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // Nobody can give her work.
    let (status, body) = post(
        &a,
        &boss,
        &format!("{API}/{m4}/assign"),
        Some(json!({"agent": "alice"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("disabled"),
        "{body}"
    );

    // The list: every agent, its role and state, when created and last seen; never a key.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let seen = wait_until(Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT last_seen_at IS NOT NULL FROM agent WHERE name = 'boss'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    })
    .await;
    assert!(seen, "an agent's use was never recorded");
    let list = ok(&url, &["agent", "list"]);
    let line = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{list}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let header: Vec<&str> = list.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ROLE", "STATE", "CREATED", "LAST", "SEEN"]);
    let (alice_row, boss_row, carol_row) = (line("alice"), line("boss"), line("carol"));
    assert_eq!(alice_row[1..3], ["agent", "disabled"]);
    assert_eq!(boss_row[1..3], ["admin", "enabled"]);
    assert_eq!(carol_row[1..3], ["agent", "enabled"]);
    for row in [&alice_row, &boss_row, &carol_row] {
        assert!(
            chrono::DateTime::parse_from_rfc3339(&row[3]).is_ok(),
            "{row:?}"
        );
    }
    assert!(
        chrono::DateTime::parse_from_rfc3339(&boss_row[4]).is_ok(),
        "{boss_row:?}"
    );
    assert_eq!(carol_row[4], "never");
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT key_hash FROM agent")
        .fetch_all(&pool)
        .await
        .unwrap();
    for key in [&alice, &boss, &carol] {
        let (id, secret) = key["lmk_".len()..].split_once('_').unwrap();
        assert!(!list.contains(id) && !list.contains(secret), "{list}");
    }
    for hash in hashes {
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!list.contains(&hex[..16]), "{list}");
    }

    // Again: nothing more to do, said so.
    let out = ok(&url, &["agent", "disable", "alice"]);
    assert!(
        out.contains("disabled already") && out.contains("0 message(s)"),
        "{out}"
    );
    // A disabled agent gets no key by rotation; `enable` gives it a new one.
    let err = refused(&url, &["agent", "rotate-key", "alice"]);
    assert!(
        err.contains("disabled") && err.contains("agent enable"),
        "{err}"
    );
    let out = ok(&url, &["agent", "enable", "alice"]);
    let new_key = last_line(&out);
    assert!(new_key.starts_with("lmk_") && new_key != alice, "{out}");
    assert_eq!(statuses([&a, &b], &new_key).await, [200, 200]);
    assert_eq!(statuses([&a, &b], &alice).await, [401, 401]);
    let err = refused(&url, &["agent", "enable", "alice"]);
    assert!(err.contains("is enabled"), "{err}");
}

#[tokio::test]
async fn a_rotated_key_replaces_the_old_one_at_once_on_every_instance() {
    let url = fresh_migrated_database().await;
    let old = create_agent(&url, "bob", false);
    let (a, b) = two_instances(&url);
    assert_eq!(statuses([&a, &b], &old).await, [200, 200]);
    // Keys with ids no agent has are remembered as unknown by both instances.
    for server in [&a, &b] {
        let unknown = format!("lmk_0123456789ab_{}", "x".repeat(43));
        assert_eq!(get(server, &unknown, API).await.status(), 401);
    }
    let stream = Stream::open(&b, &old).await;

    let out = ok(&url, &["agent", "rotate-key", "bob"]);
    let new = last_line(&out);
    assert!(new.starts_with("lmk_") && new != old, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("lmk_")).count(),
        1,
        "{out}"
    );

    assert_eq!(statuses([&a, &b], &old).await, [401, 401]);
    assert_eq!(statuses([&a, &b], &new).await, [200, 200]);
    // Twice, so a key refused once is not remembered as unknown, nor the new one as bad.
    assert_eq!(statuses([&a, &b], &old).await, [401, 401]);
    assert_eq!(statuses([&a, &b], &new).await, [200, 200]);
    let (ended, _) = stream.ends_within(Duration::from_secs(60)).await;
    assert!(ended, "a stream opened with the old key stayed open");
    let _ = Stream::open(&a, &new).await;

    // The list shows nothing of either key.
    let list = ok(&url, &["agent", "list"]);
    for key in [&old, &new] {
        let (id, secret) = key["lmk_".len()..].split_once('_').unwrap();
        assert!(!list.contains(id) && !list.contains(secret), "{list}");
    }
}

#[tokio::test]
async fn agent_commands_refuse_unknown_and_malformed_names_in_one_line() {
    let url = fresh_migrated_database().await;
    create_agent(&url, "dora", false);
    for command in ["disable", "rotate-key", "enable"] {
        let err = refused(&url, &["agent", command, "nobody"]);
        assert_eq!(err, "leavemsg: no agent is named \"nobody\"", "{command}");
        for bad in ["", "   ", "a\u{202e}b", &"n".repeat(101)] {
            let err = refused(&url, &["agent", command, bad]);
            assert!(
                err.starts_with("leavemsg: NAME: agent"),
                "{command} {bad:?}: {err}"
            );
        }
        let out = run_leavemsg(&url, &["agent", command]);
        assert_eq!(out.status.code(), Some(2), "{command}: a name is required");
    }
    // Names are matched as agent create stored them (trimmed).
    let out = ok(&url, &["agent", "rotate-key", "  dora "]);
    assert!(last_line(&out).starts_with("lmk_"), "{out}");
    // Nothing changed for anyone on the refusals.
    let list = ok(&url, &["agent", "list"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains("enabled"), "{list}");
}

/// A claim that is under way while the agent is disabled: disabling waits for it, then
/// releases what it assigned; and a claim after the disabling assigns nothing.
#[tokio::test]
async fn a_claim_racing_a_disable_leaves_nothing_with_the_disabled_agent() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    app.create_agent("erin", false).await;
    let first = app.store_message(&token, "123456", "raced").await;
    let second = app.store_message(&token, "123456", "after").await;

    // A claim in flight: it has locked the agent's row for share and assigned the message,
    // but not committed yet (what the claim statement does, held open).
    let mut claim = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM agent WHERE name = 'erin' AND enabled FOR SHARE")
        .execute(&mut *claim)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE leave_message SET status = 'assigned', assigned_to = 'erin', assigned_at = now()
         WHERE id = $1",
    )
    .bind(first)
    .execute(&mut *claim)
    .await
    .unwrap();

    let url = app.database_url.clone();
    let disable = std::thread::spawn(move || run_leavemsg(&url, &["agent", "disable", "erin"]));
    let waiting = wait_until(Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                            WHERE datname = current_database() AND wait_event_type = 'Lock'
                              AND query LIKE '%FROM agent%')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
    })
    .await;
    assert!(waiting, "disable did not wait for the claim under way");
    claim.commit().await.unwrap();
    let out = disable.join().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("1 message(s)"),
        "{}",
        stdout_of(&out)
    );

    let status: String = sqlx::query_scalar("SELECT status FROM leave_message WHERE id = $1")
        .bind(first)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "pending");
    let erin = leavemsg::domain::AgentName::parse("erin").unwrap();
    let second = leavemsg::domain::MessageId::from_i64(second);
    assert!(app.store.claim(second, &erin).await.unwrap().is_none());
    assert!(app.store.claim_next(&erin, None).await.unwrap().is_none());
    assert_eq!(app.message_count().await, 2);
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM leave_message WHERE status = 'pending'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(pending, 2);
}
