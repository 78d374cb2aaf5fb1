//! The unlucky and the hostile against a real server process: killed mid-load, asked to stop
//! mid-request, held open by slow clients, and read through its logs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// A migrated database with a channel; returns its URL and the channel id.
async fn prepared_database() -> (String, String) {
    let url = fresh_database().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    leavemsg::store::migrate(&pool).await.unwrap();
    let channel = leavemsg::store::Store::new(pool.clone())
        .create_channel(&leavemsg::store::channels::NewChannel {
            name: "process tests",
            origins: &[],
            cross_site: false,
            prompt: None,
            callbacks: Default::default(),
            notify_emails: &[],
        })
        .await
        .unwrap();
    pool.close().await;
    (url, channel.to_string())
}

fn unlimited(url: &str) -> Vec<(&str, &str)> {
    vec![
        ("DATABASE_URL", url),
        ("LEAVEMSG_RATE_PER_TOKEN", "0"),
        ("LEAVEMSG_RATE_PER_IP", "0"),
    ]
}

async fn token(server: &ServerProcess, channel: &str, user: &str) -> String {
    let resp = reqwest::Client::new()
        .post(server.url(&format!("{BASE}/applyToken")))
        .json(&json!({"userId": user, "userName": "n", "channelId": channel}))
        .send()
        .await
        .unwrap();
    resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn killed_mid_load_every_acknowledged_message_is_stored_exactly_once() {
    let (url, channel) = prepared_database().await;
    let server = ServerProcess::start(&unlimited(&url));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..16 {
        let token = token(&server, &channel, &format!("visitor-{w}")).await;
        let endpoint = server.url(&format!("{BASE}/doLeaveMessage"));
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..100_000 {
                let text = format!("w{w}-m{i}");
                let sent = client
                    .post(&endpoint)
                    .header("cookie", format!("ccmessaging-token={token}"))
                    .json(&json!({"phoneNo": "123456", "leaveMessage": text}))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == 200 => {
                        // Acknowledged only if the whole success body arrived.
                        if resp
                            .text()
                            .await
                            .is_ok_and(|b| b.contains("\"resultCode\":\"0\""))
                        {
                            acked.lock().unwrap().push(text);
                        }
                    }
                    Ok(resp) => panic!("unexpected answer {} under load", resp.status()),
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    let enough = wait_until(Duration::from_secs(120), || async {
        acked.lock().unwrap().len() >= 300
    })
    .await;
    assert!(enough, "the load did not get going");
    let mut server = server;
    server.signal("KILL");
    server.wait(Duration::from_secs(60));
    for w in workers {
        w.await.unwrap();
    }

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT message, count(*) FROM leave_message GROUP BY message")
            .fetch_all(&pool)
            .await
            .unwrap();
    let duplicates: Vec<_> = stored.iter().filter(|(_, n)| *n > 1).collect();
    assert!(duplicates.is_empty(), "stored twice: {duplicates:?}");
    let stored: HashSet<String> = stored.into_iter().map(|(m, _)| m).collect();
    let acked = acked.lock().unwrap().clone();
    let lost: Vec<&String> = acked.iter().filter(|m| !stored.contains(*m)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // A message whose answer was cut off by the kill may be stored without acknowledgement.
    assert!(stored.len() >= acked.len());

    // Restarted, the service takes messages again with the tokens issued before.
    let restarted = ServerProcess::start(&unlimited(&url));
    let token = token(&restarted, &channel, "after-restart").await;
    let resp = reqwest::Client::new()
        .post(restarted.url(&format!("{BASE}/doLeaveMessage")))
        .header("cookie", format!("ccmessaging-token={token}"))
        .json(&json!({"phoneNo": "123456", "leaveMessage": "after the crash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_cleanly() {
    let (url, channel) = prepared_database().await;
    let mut server = ServerProcess::start(&unlimited(&url));
    let token = token(&server, &channel, "v").await;
    let body = r#"{"phoneNo":"123456","leaveMessage":"sent across a shutdown"}"#;
    let (first, rest) = body.split_at(20);
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let head = format!(
        "POST {BASE}/doLeaveMessage HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         cookie: ccmessaging-token={token}\r\ncontent-length: {}\r\n\r\n{first}",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // An agent's live stream is open too; it must not hold the shutdown up.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let key = leavemsg::credentials::AgentKey::generate();
    leavemsg::store::Store::new(pool.clone())
        .create_agent(&leavemsg::store::agents::NewAgent {
            name: "watcher",
            is_admin: false,
            key_id: key.id(),
            key_hash: &key.secret_hash(),
        })
        .await
        .unwrap();
    let mut stream = reqwest::Client::new()
        .get(server.url("/api/v1/messages/stream"))
        .bearer_auth(key.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    server.signal("TERM");
    // The stream ends at once, while the request above is still in flight (had it stayed
    // open, the server would have cut both off at its shutdown timeout).
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the live stream was not ended by SIGTERM");
    // Shutdown has begun once new connections are refused.
    let port = server.port;
    let closed = wait_until(Duration::from_secs(60), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await;
    assert!(
        closed,
        "the server kept accepting connections after SIGTERM"
    );

    conn.write_all(rest.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "{response}\nserver log:\n{}",
        server.log()
    );
    assert!(response.contains(r#""resultDesc":"Save leaveMessage success!""#));
    let exit = server.wait(Duration::from_secs(60));
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(0),
        "log:\n{}",
        server.log()
    );

    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM leave_message WHERE message = 'sent across a shutdown'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn slow_clients_cannot_hold_connections() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;

    // Headers that never end: the connection is closed after the header timeout.
    let mut slow_head = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    slow_head
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // A body that never ends: answered 408, nothing stored.
    let mut slow_body = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let head = format!(
        "POST {BASE}/doLeaveMessage HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         cookie: ccmessaging-token={token}\r\ncontent-length: 100\r\n\r\n{{\"phoneNo\":"
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();

    let mut buf = Vec::new();
    let ended =
        tokio::time::timeout(Duration::from_secs(60), slow_head.read_to_end(&mut buf)).await;
    assert!(
        ended.is_ok(),
        "a client that never finishes its headers kept its connection"
    );
    let mut buf = Vec::new();
    let ended =
        tokio::time::timeout(Duration::from_secs(60), slow_body.read_to_end(&mut buf)).await;
    assert!(
        ended.is_ok(),
        "a client that never finishes its body kept its connection"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""returnCode":"3""#), "{text}");
    assert_eq!(app.message_count().await, 0);
}

#[tokio::test]
async fn logs_never_hold_phone_numbers_messages_tokens_or_keys() {
    let (url, channel) = prepared_database().await;
    let mut env = unlimited(&url);
    env.push(("LEAVEMSG_LOG_FORMAT", "json"));
    env.push(("RUST_LOG", "debug"));
    let mut server = ServerProcess::start(&env);
    let client = reqwest::Client::new();
    let phone = "+1 (555) 867-5309";
    let digits = "15558675309";
    let text = "Secret-ish message text 7f3a9c";
    let note = "Agent note 41d2e8";

    let token = token(&server, &channel, "log-visitor").await;
    let leave = |body: Value, token: String| {
        client
            .post(server.url(&format!("{BASE}/doLeaveMessage")))
            .header("cookie", format!("ccmessaging-token={token}"))
            .json(&body)
            .send()
    };
    assert_eq!(
        leave(
            json!({"phoneNo": phone, "leaveMessage": text}),
            token.clone()
        )
        .await
        .unwrap()
        .status(),
        200
    );
    leave(
        json!({"phoneNo": format!("{phone}x"), "leaveMessage": text}),
        token.clone(),
    )
    .await
    .unwrap();
    leave(
        json!({"phoneNo": phone, "leaveMessage": format!("{text}\u{0}")}),
        token.clone(),
    )
    .await
    .unwrap();
    leave(
        json!({"phoneNo": phone, "leaveMessage": text}),
        format!("{token}tampered"),
    )
    .await
    .unwrap();

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let key = leavemsg::credentials::AgentKey::generate();
    leavemsg::store::Store::new(pool.clone())
        .create_agent(&leavemsg::store::agents::NewAgent {
            name: "logger",
            is_admin: true,
            key_id: key.id(),
            key_hash: &key.secret_hash(),
        })
        .await
        .unwrap();
    let key = key.expose();
    let api = server.url("/api/v1/messages");
    let list = client
        .get(format!("{api}?phoneNo={digits}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let id = list.json::<Value>().await.unwrap()["items"][0]["id"]
        .as_i64()
        .unwrap();
    client
        .post(format!("{api}/{id}/claim"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let resp = client
        .post(format!("{api}/{id}/process"))
        .bearer_auth(&key)
        .json(&json!({"outcome": "called_back", "note": note}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    client
        .get(format!("{api}/export.csv?phoneNo={digits}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    client
        .get(format!("{api}?phoneNo=%2B1%20555"))
        .bearer_auth(format!("{key}x"))
        .send()
        .await
        .unwrap();

    server.signal("TERM");
    server.wait(Duration::from_secs(60));
    let log = server.log();
    assert!(log.contains("request finished"), "the log is empty?\n{log}");
    let secret = key.splitn(3, '_').nth(2).unwrap();
    for (what, needle) in [
        ("phone number", phone),
        ("phone digits", digits),
        ("message text", text),
        ("note", note),
        ("token", token.as_str()),
        ("agent key", key.as_str()),
        ("agent key secret", secret),
    ] {
        assert!(!log.contains(needle), "the log holds a {what}:\n{log}");
    }
    // JSON logs: one object a line, request lines carrying their request id.
    let mut token_lines = Vec::new();
    let mut leave_lines = Vec::new();
    let mut process_lines = Vec::new();
    for line in log.lines() {
        let parsed: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if parsed["message"] == "request finished" {
            assert!(
                parsed["span"]["request_id"]
                    .as_str()
                    .is_some_and(|id| id.len() == 32),
                "{line}"
            );
        }
        let route = parsed["span"]["route"].as_str().unwrap_or_default();
        if route.ends_with("/applyToken") {
            token_lines.push(parsed);
        } else if route.ends_with("/doLeaveMessage") {
            leave_lines.push(parsed);
        } else if route.ends_with("/process") {
            process_lines.push(parsed);
        }
    }
    // One line per request, saying what it did: the token issued, the four doLeaveMessage
    // requests (one stored, three refused) and the agent's processing of the stored message.
    assert_eq!(token_lines.len(), 1, "{log}");
    assert_eq!(token_lines[0]["span"]["channel"], json!(channel), "{log}");
    assert_eq!(leave_lines.len(), 4, "{log}");
    let stored: Vec<_> = leave_lines
        .iter()
        .filter(|line| line["span"]["message_id"] == json!(id))
        .collect();
    assert_eq!(stored.len(), 1, "{log}");
    assert_eq!(stored[0]["span"]["channel"], json!(channel), "{log}");
    assert_eq!(process_lines.len(), 1, "{log}");
    assert_eq!(process_lines[0]["span"]["message_id"], json!(id), "{log}");
    assert!(process_lines[0]["span"]["action"].is_string(), "{log}");
}
