//! CONTRACT §3: the CSV export.

use crate::helpers::*;

#[tokio::test]
async fn export_has_a_header_quotes_and_neutralises_formulas() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let (channel, token) = app.channel_and_token().await;
    let first = app
        .store_message(&token, "+1 555 0107", "=HYPERLINK(\"http://x\")")
        .await;
    let second = app
        .store_message(&token, "123456", "line one\nline two, with \"quotes\"")
        .await;
    app.store_message(&token, "999 888", "@SUM(1)").await;

    let resp = app
        .agent_get(&key, "/api/v1/messages/export.csv?phoneNo=15550107")
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("messages.csv")
    );
    let text = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "id",
            "channelId",
            "userId",
            "userName",
            "phoneNo",
            "leaveMessage",
            "clientIp",
            "userAgent",
            "receivedAt",
            "status",
            "assignedTo",
            "assignedAt",
            "processedAt",
            "outcome",
            "note",
            "callbackAfter",
            "dueAt",
            "overdueAt",
            "overdue",
            "attempts",
            "maxAttempts"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "the filter applies");
    assert_eq!(&rows[0][0], first.to_string());
    assert_eq!(&rows[0][1], channel);
    assert_eq!(&rows[0][4], "'+1 555 0107");
    assert_eq!(&rows[0][5], "'=HYPERLINK(\"http://x\")");
    assert_eq!(&rows[0][9], "pending");
    assert!(rows[0][8].ends_with('Z'));

    let all = app
        .agent_get(&key, "/api/v1/messages/export.csv")
        .await
        .text()
        .await
        .unwrap();
    let rows = records(all.as_bytes());
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[1][0], second.to_string());
    assert_eq!(&rows[1][5], "line one\nline two, with \"quotes\"");
    assert_eq!(&rows[2][5], "'@SUM(1)");

    let resp = app
        .agent_get(&key, "/api/v1/messages/export.csv?status=bogus")
        .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_large_export_streams_every_row_in_order() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let (channel, _) = app.channel_and_token().await;
    let rows = 50_000;
    sqlx::query(
        "INSERT INTO leave_message (channel_id, user_id, user_name, phone_no, phone_digits, message,
                                    client_ip, received_at, submission_key)
         SELECT $1::uuid, 'u', 'n', '123456', '123456', 'bulk ' || g, '127.0.0.1',
                now() - interval '1 day' + g * interval '1 millisecond',
                sha256(g::text::bytea)
         FROM generate_series(1, $2) AS g",
    )
    .bind(&channel)
    .bind(rows)
    .execute(&app.pool)
    .await
    .unwrap();
    let resp = app.agent_get(&key, "/api/v1/messages/export.csv").await;
    assert!(
        resp.headers().get("content-length").is_none(),
        "the export is streamed"
    );
    let text = resp.text().await.unwrap();
    let records = records(text.as_bytes());
    assert_eq!(records.len(), rows as usize);
    assert_eq!(&records[0][5], "bulk 1");
    assert_eq!(&records[rows as usize - 1][5], format!("bulk {rows}"));
}

/// `rows` messages of about 250 bytes of CSV each, straight into the table.
async fn bulk_messages(app: &TestApp, rows: i32) {
    let (channel, _) = app.channel_and_token().await;
    sqlx::query(
        "INSERT INTO leave_message (channel_id, user_id, user_name, phone_no, phone_digits, message,
                                    client_ip, received_at, submission_key)
         SELECT $1::uuid, 'u', 'n', '123456', '123456', 'bulk ' || g || ' ' || repeat('x', 200),
                '127.0.0.1', now() - interval '1 day' + g * interval '1 millisecond',
                sha256(g::text::bytea)
         FROM generate_series(1, $2) AS g",
    )
    .bind(&channel)
    .bind(rows)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// An export read more slowly than the statement timeout allows a query to run is still
/// complete: the rows are read page by page, not by one long statement.
#[tokio::test]
async fn a_slowly_read_export_is_complete() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    // 15 MB: more than loopback socket buffers hold, so the server has to wait for this reader.
    let rows = 60_000;
    bulk_messages(&app, rows).await;
    let mut resp = app.agent_get(&key, "/api/v1/messages/export.csv").await;
    assert_eq!(resp.status(), 200);
    let slow_until = std::time::Instant::now() + leavemsg::store::STATEMENT_TIMEOUT * 2;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("the export ends cleanly") {
        body.extend_from_slice(&chunk);
        if std::time::Instant::now() < slow_until {
            // About 2 MB/s.
            tokio::time::sleep(std::time::Duration::from_micros(chunk.len() as u64 / 2)).await;
        }
    }
    let records = records(body.as_slice());
    assert_eq!(records.len(), rows as usize);
    assert!(records[rows as usize - 1][5].starts_with(&format!("bulk {rows} ")));
}

/// A database error part way through an export cuts the download off: the client sees a
/// broken body, never a clean end of a short file.
#[tokio::test]
async fn an_export_cut_off_by_a_database_error_ends_visibly() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    // 20 MB: the server is still reading pages when the table goes away.
    bulk_messages(&app, 80_000).await;
    let mut resp = app.agent_get(&key, "/api/v1/messages/export.csv").await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("a first chunk");
    assert!(first.starts_with(b"\"id\",\"channelId\","));
    // Between pages the export holds no lock on the table; were it one long statement, the
    // rename would wait for it, so it gives up after a while instead of hanging the suite.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '60s'")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE leave_message RENAME TO leave_message_gone")
        .execute(&mut *tx)
        .await
        .expect("the export holds no lock on the table between pages");
    tx.commit().await.unwrap();
    let mut received = first.len();
    let ended = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(received),
            Err(e) => break Err(e),
        }
    };
    assert!(
        ended.is_err(),
        "the body ended cleanly after {received} bytes"
    );
}

/// Cells stay text in a spreadsheet whichever list separator it splits on; `raw=true` gives
/// the exact texts for machine imports. Every field is quoted.
#[tokio::test]
async fn formulas_after_a_separator_are_neutralised_and_raw_is_exact() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    app.store_message(&token, "+1 555 0107", "call me;=1+1,@SUM(A1)")
        .await;

    let safe = app
        .agent_get(&key, "/api/v1/messages/export.csv")
        .await
        .text()
        .await
        .unwrap();
    let line = safe.lines().nth(1).expect("a row");
    assert!(line.starts_with('"') && line.ends_with('"'), "{line}");
    assert!(line.contains("\"'+1 555 0107\""), "{line}");
    assert!(line.contains("\"call me;'=1+1,'@SUM(A1)\""), "{line}");

    let raw = app
        .agent_get(&key, "/api/v1/messages/export.csv?raw=true")
        .await
        .text()
        .await
        .unwrap();
    let rows = records(raw.as_bytes());
    assert_eq!(&rows[0][4], "+1 555 0107");
    assert_eq!(&rows[0][5], "call me;=1+1,@SUM(A1)");

    let resp = app
        .agent_get(&key, "/api/v1/messages/export.csv?raw=maybe")
        .await;
    assert_eq!(resp.status(), 400);
}

/// Slow exports cannot take the service's database connections from visitors: at most two
/// run at once per agent and four in all; past that the answer is 429, and a slot is free
/// again once its reader leaves.
///
/// Multi-threaded: the in-process server's queries run on the test's runtime, and four exports
/// filling their sockets would otherwise compete on one thread with this client's requests,
/// which a busy machine can delay past the server's 10 s allowance for a request head (408).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_bounded_per_agent_and_in_all() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let bob = app.create_agent("bob", false).await;
    let carol = app.create_agent("carol", false).await;
    // 15 MB each: an export nobody reads stays open.
    bulk_messages(&app, 60_000).await;
    let mut open = Vec::new();
    for key in [&alice, &alice] {
        let resp = export(&app, key).await;
        assert_eq!(resp.status(), 200);
        open.push(resp);
    }
    let (status, body) = reply(export(&app, &alice).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_requests"))
    );
    for key in [&bob, &bob] {
        let resp = export(&app, key).await;
        assert_eq!(resp.status(), 200);
        open.push(resp);
    }
    let resp = export(&app, &carol).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));

    // Visitors are served meanwhile.
    let (channel, _) = app.channel_and_token().await;
    app.token_for(&channel, "visitor-during-exports").await;

    // A reader that leaves frees its slot.
    drop(open.remove(0));
    let freed = wait_until(std::time::Duration::from_secs(60), || async {
        export(&app, &carol).await.status() == 200
    })
    .await;
    assert!(freed, "a slot was not freed after its reader left");
}

async fn export(app: &TestApp, key: &str) -> reqwest::Response {
    app.agent_get(key, "/api/v1/messages/export.csv").await
}

/// The data rows of a CSV text (after its header).
fn records(csv_text: impl std::io::Read) -> Vec<csv::StringRecord> {
    csv::Reader::from_reader(csv_text)
        .records()
        .map(Result::unwrap)
        .collect()
}
