//! CONTRACT §1: channels can change. `channel update` through the real binary, against two
//! server instances on one database that have both served the channel before: the form page,
//! CORS (preflights, calls, refusals) and the next token's cookie follow on both as soon as the
//! command has exited.

use serde_json::{Value, json};

use crate::helpers::*;

const OLD: &str = "https://old.example";
const NEW: &str = "https://new.example";

/// The one line a refused command says (exit status 1), or clap's refusal (status 2).
fn refused(url: &str, args: &[&str], status: i32) -> String {
    let out = run_leavemsg(url, args);
    assert_eq!(
        out.status.code(),
        Some(status),
        "{args:?}: {}",
        stdout_of(&out)
    );
    let err = stderr_of(&out);
    if status == 1 {
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    err
}

/// One instance's view, as a browser on a given page sees it.
struct Browser<'a> {
    server: &'a ServerProcess,
    client: reqwest::Client,
}

impl Browser<'_> {
    fn on(server: &ServerProcess) -> Browser<'_> {
        Browser {
            server,
            client: reqwest::Client::new(),
        }
    }

    async fn preflight(&self, origin: &str) -> (u16, Option<String>) {
        let resp = self
            .client
            .request(
                reqwest::Method::OPTIONS,
                self.server.url(&format!("{BASE}/doLeaveMessage")),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), allowed(&resp))
    }

    /// applyToken from `origin` (none: not from a browser); the status, the CORS origin
    /// allowed, the Set-Cookie header and the token.
    async fn apply_token(
        &self,
        origin: Option<&str>,
        channel: &str,
        user: &str,
    ) -> (u16, Option<String>, Option<String>, Option<String>) {
        let mut req = self
            .client
            .post(self.server.url(&format!("{BASE}/applyToken")))
            .json(&json!({"userId": user, "userName": "n", "channelId": channel}));
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let cors = allowed(&resp);
        let cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = resp.json().await.unwrap();
        let token = body["token"].as_str().map(str::to_owned);
        (status, cors, cookie, token)
    }

    async fn leave_message(&self, origin: &str, token: &str, text: &str) -> (u16, Option<String>) {
        let resp = self
            .client
            .post(self.server.url(&format!("{BASE}/doLeaveMessage")))
            .header("origin", origin)
            .header("cookie", format!("ccmessaging-token={token}"))
            .json(&json!({"phoneNo": "123456", "leaveMessage": text}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), allowed(&resp))
    }

    async fn form(&self, channel: &str) -> String {
        let resp = self
            .client
            .get(self.server.url(&format!("/web/{channel}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }
}

fn allowed(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn message_count(url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM leave_message")
        .fetch_one(&pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_update_is_followed_at_once_by_every_instance() {
    let url = fresh_migrated_database().await;
    let out = ok(
        &url,
        &[
            "channel",
            "create",
            "--name",
            "Shop",
            "--origin",
            OLD,
            "--prompt",
            "Old prompt",
        ],
    );
    let channel = out.lines().last().unwrap().to_owned();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("LEAVEMSG_RATE_PER_TOKEN", "0"),
        ("LEAVEMSG_RATE_PER_IP", "0"),
    ];
    let (a, b) = (ServerProcess::start(&env), ServerProcess::start(&env));
    let browsers = [Browser::on(&a), Browser::on(&b)];

    // Both instances serve the channel as it is, and remember what they can: the origin, a
    // token valid from the old site (used on each), the channel's origins.
    let (status, _, _, token) = browsers[0].apply_token(Some(OLD), &channel, "u1").await;
    assert_eq!(status, 200);
    let token = token.unwrap();
    for (i, browser) in browsers.iter().enumerate() {
        assert_eq!(browser.preflight(OLD).await, (204, Some(OLD.to_owned())));
        assert_eq!(browser.preflight(NEW).await.0, 403);
        let (status, cors, cookie, _) = browser.apply_token(Some(OLD), &channel, "u2").await;
        assert_eq!((status, cors.as_deref()), (200, Some(OLD)));
        assert!(cookie.unwrap().contains("SameSite=Lax"));
        let text = format!("before {i}");
        let sent = browser.leave_message(OLD, &token, &text).await;
        assert_eq!(sent, (200, Some(OLD.to_owned())));
        assert_eq!(browser.leave_message(NEW, &token, "refused").await.0, 403);
        let form = browser.form(&channel).await;
        assert!(form.contains("Old prompt"), "{form}");
    }
    assert_eq!(message_count(&url).await, 2);

    let out = ok(
        &url,
        &[
            "channel",
            "update",
            &channel,
            "--name",
            "Shop 2",
            "--origin",
            NEW,
            "--prompt",
            "New prompt",
            "--cross-site",
            "true",
        ],
    );
    assert!(
        out.contains(&channel) && out.contains(NEW) && out.contains("cross-site"),
        "{out}"
    );

    // No waiting: the command has exited, so both instances follow.
    for (i, browser) in browsers.iter().enumerate() {
        // Refusals before the channel is known are readable by the new site, not the old
        // (asked first: a preflight would teach the instance the answer).
        let forged = format!("{token}x");
        assert_eq!(
            browser.leave_message(NEW, &forged, "x").await,
            (401, Some(NEW.to_owned()))
        );
        assert_eq!(browser.leave_message(OLD, &forged, "x").await, (401, None));
        assert_eq!(browser.preflight(OLD).await.0, 403, "instance {i}");
        assert_eq!(
            browser.preflight(NEW).await,
            (204, Some(NEW.to_owned())),
            "instance {i}"
        );
        // The token both remember still works, from the new site only.
        assert_eq!(
            browser.leave_message(OLD, &token, "from old").await,
            (403, None),
            "instance {i}"
        );
        let text = format!("after {i}");
        let sent = browser.leave_message(NEW, &token, &text).await;
        assert_eq!(sent, (200, Some(NEW.to_owned())), "instance {i}");
        let (status, cors, cookie, _) = browser.apply_token(Some(OLD), &channel, "u3").await;
        assert_eq!((status, cors, cookie), (403, None, None), "instance {i}");
        let (status, cors, cookie, _) = browser.apply_token(Some(NEW), &channel, "u3").await;
        assert_eq!((status, cors.as_deref()), (200, Some(NEW)), "instance {i}");
        let cookie = cookie.unwrap();
        assert!(
            cookie.contains("SameSite=None") && cookie.contains("Secure"),
            "{cookie}"
        );
        let form = browser.form(&channel).await;
        assert!(
            form.contains("New prompt") && !form.contains("Old prompt"),
            "{form}"
        );
    }
    assert_eq!(message_count(&url).await, 4);

    let list = ok(&url, &["channel", "list"]);
    assert!(
        list.contains("Shop 2")
            && list.contains(NEW)
            && !list.contains(OLD)
            && list.contains("cross-site")
            && list.contains("prompt: \"New prompt\""),
        "{list}"
    );

    // What an update does not name stays as it was.
    let out = ok(&url, &["channel", "update", &channel, "--no-origins"]);
    assert!(out.contains("(no origins)"), "{out}");
    let out = ok(
        &url,
        &["channel", "update", &channel, "--cross-site", "false"],
    );
    assert!(out.contains("same-site"), "{out}");
    let list = ok(&url, &["channel", "list"]);
    assert!(
        list.contains("Shop 2")
            && list.contains("same-site")
            && list.contains("(no origins)")
            && list.contains("prompt: \"New prompt\""),
        "{list}"
    );
    for (i, browser) in browsers.iter().enumerate() {
        assert_eq!(browser.preflight(NEW).await.0, 403, "instance {i}");
        assert_eq!(
            browser.leave_message(NEW, &token, "gone").await.0,
            403,
            "instance {i}"
        );
        let (status, _, cookie, _) = browser.apply_token(None, &channel, "u4").await;
        assert_eq!(status, 200);
        let cookie = cookie.unwrap();
        assert!(
            cookie.contains("SameSite=Lax") && !cookie.contains("Secure"),
            "{cookie}"
        );
    }

    // An empty prompt brings back the default one; text is shown as text.
    ok(&url, &["channel", "update", &channel, "--prompt", ""]);
    for browser in &browsers {
        let form = browser.form(&channel).await;
        assert!(form.contains("No one can chat right now"), "{form}");
    }
    ok(
        &url,
        &[
            "channel",
            "update",
            &channel,
            "--prompt",
            "<b>Hi</b>\nthere",
        ],
    );
    for browser in &browsers {
        let form = browser.form(&channel).await;
        assert!(form.contains("&lt;b&gt;Hi&lt;/b&gt;"), "{form}");
    }
    let list = ok(&url, &["channel", "list"]);
    assert!(list.contains(r#"prompt: "<b>Hi</b>\nthere""#), "{list}");
    assert_eq!(message_count(&url).await, 4);
}

#[tokio::test]
async fn bad_updates_are_refused_in_one_line_and_change_nothing() {
    let url = fresh_migrated_database().await;
    let out = ok(
        &url,
        &[
            "channel",
            "create",
            "--name",
            "Kept",
            "--origin",
            OLD,
            "--prompt",
            "Kept prompt",
        ],
    );
    let channel = out.lines().last().unwrap().to_owned();
    let before = ok(&url, &["channel", "list"]);

    let err = refused(&url, &["channel", "update", &channel], 1);
    assert!(err.contains("nothing to change"), "{err}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = refused(&url, &["channel", "update", &unknown, "--name", "x"], 1);
    assert!(err.contains("no web channel has Configuration ID"), "{err}");
    let err = refused(&url, &["channel", "update", "not-an-id", "--name", "x"], 1);
    assert!(err.contains("Configuration ID"), "{err}");
    for bad in ["ftp://nope", "https://x.example/path", "null", "https://"] {
        let err = refused(&url, &["channel", "update", &channel, "--origin", bad], 1);
        assert!(err.contains("origin"), "{bad}: {err}");
    }
    // One bad origin among good ones changes nothing either.
    refused(
        &url,
        &[
            "channel", "update", &channel, "--origin", NEW, "--origin", "nope",
        ],
        1,
    );
    let long = "n".repeat(201);
    for bad in ["", "   ", long.as_str()] {
        let err = refused(&url, &["channel", "update", &channel, "--name", bad], 1);
        assert!(err.contains("--name must be 1 to 200 characters"), "{err}");
    }
    let err = refused(
        &url,
        &[
            "channel",
            "update",
            &channel,
            "--origin",
            NEW,
            "--no-origins",
        ],
        2,
    );
    assert!(err.contains("cannot be used with"), "{err}");
    let err = refused(
        &url,
        &["channel", "update", &channel, "--cross-site", "maybe"],
        2,
    );
    assert!(err.contains("--cross-site"), "{err}");
    refused(&url, &["channel", "update", "--name", "x"], 2);

    assert_eq!(ok(&url, &["channel", "list"]), before);
    // 200 characters, however many bytes, is a good name.
    let name = "é".repeat(200);
    let out = ok(&url, &["channel", "update", &channel, "--name", &name]);
    assert!(out.contains(&name), "{out}");
}

/// The callback settings of a channel, as stored.
async fn callback_settings(url: &str, channel: &str) -> (i16, i32, i32) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let settings = sqlx::query_as(
        "SELECT max_attempts, retry_minutes, sla_minutes FROM web_channel WHERE id = $1::uuid",
    )
    .bind(channel)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    settings
}

/// The `channel list` line of a channel's callback settings.
fn listed_callbacks(list: &str, channel: &str) -> String {
    let mut lines = list.lines().skip_while(|l| !l.starts_with(channel));
    lines
        .find_map(|l| l.trim().strip_prefix("callbacks: "))
        .unwrap_or_else(|| panic!("no callbacks line for {channel}:\n{list}"))
        .to_owned()
}

#[tokio::test]
async fn callback_settings_default_are_set_kept_and_listed() {
    let url = fresh_migrated_database().await;
    let plain = ok(&url, &["channel", "create", "--name", "Plain"]);
    let plain = plain.lines().last().unwrap().to_owned();
    assert_eq!(callback_settings(&url, &plain).await, (3, 60, 240));
    let tuned = ok(
        &url,
        &[
            "channel",
            "create",
            "--name",
            "Tuned",
            "--prompt",
            "Kept prompt",
            "--max-attempts",
            "5",
            "--retry-minutes",
            "15",
            "--sla-minutes",
            "30",
        ],
    );
    let tuned = tuned.lines().last().unwrap().to_owned();
    assert_eq!(callback_settings(&url, &tuned).await, (5, 15, 30));
    let list = ok(&url, &["channel", "list"]);
    assert_eq!(
        listed_callbacks(&list, &plain),
        "max-attempts 3, retry-minutes 60, sla-minutes 240"
    );
    assert_eq!(
        listed_callbacks(&list, &tuned),
        "max-attempts 5, retry-minutes 15, sla-minutes 30"
    );

    // An update changes what it names and keeps everything else.
    let out = ok(
        &url,
        &["channel", "update", &tuned, "--retry-minutes", "120"],
    );
    assert!(
        out.contains("callbacks: max-attempts 5, retry-minutes 120, sla-minutes 30"),
        "{out}"
    );
    assert_eq!(callback_settings(&url, &tuned).await, (5, 120, 30));
    assert_eq!(callback_settings(&url, &plain).await, (3, 60, 240));
    let list = ok(&url, &["channel", "list"]);
    assert!(
        list.contains("Tuned") && list.contains(r#"prompt: "Kept prompt""#),
        "{list}"
    );
    // The ends of each range are accepted.
    for (flag, low, high) in [
        ("--max-attempts", "1", "10"),
        ("--retry-minutes", "1", "10080"),
        ("--sla-minutes", "1", "43200"),
    ] {
        for value in [low, high] {
            ok(&url, &["channel", "update", &plain, flag, value]);
        }
    }
    assert_eq!(callback_settings(&url, &plain).await, (10, 10080, 43200));
    ok(
        &url,
        &[
            "channel",
            "create",
            "--name",
            "Lowest",
            "--max-attempts",
            "1",
            "--retry-minutes",
            "1",
            "--sla-minutes",
            "1",
        ],
    );

    // Outside a range, or not a number: clap's refusal (status 2) names the range; nothing
    // changes.
    let before = ok(&url, &["channel", "list"]);
    for (flag, value, range) in [
        ("--max-attempts", "0", "1..=10"),
        ("--max-attempts", "11", "1..=10"),
        ("--max-attempts", "99999", "1..=10"),
        ("--retry-minutes", "0", "1..=10080"),
        ("--retry-minutes", "10081", "1..=10080"),
        ("--sla-minutes", "0", "1..=43200"),
        ("--sla-minutes", "43201", "1..=43200"),
        ("--sla-minutes", "99999999999", "1..=43200"),
    ] {
        for args in [
            vec!["channel", "update", tuned.as_str(), flag, value],
            vec!["channel", "create", "--name", "Refused", flag, value],
        ] {
            let err = refused(&url, &args, 2);
            assert!(err.contains(flag) && err.contains(range), "{args:?}: {err}");
        }
    }
    for (flag, value) in [
        ("--max-attempts", "three"),
        ("--retry-minutes", "1.5"),
        ("--sla-minutes", ""),
        ("--max-attempts", "-1"),
    ] {
        let err = refused(&url, &["channel", "update", &tuned, flag, value], 2);
        assert!(
            err.contains(flag) || err.contains(value),
            "{flag} {value}: {err}"
        );
    }
    assert_eq!(ok(&url, &["channel", "list"]), before);
}
