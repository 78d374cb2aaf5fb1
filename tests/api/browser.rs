//! CONTRACT §4: the pages, driven in headless Chromium the way people use them.
//! Needs Debian's `chromium` and `chromium-driver` (the README's prerequisites; .ci/run
//! installs them). Screenshots go to target/screenshots/.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

/// One chromedriver for the test process, stopped when the process exits (its guardian shell
/// waits for our end of a pipe to close).
fn chromedriver() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect(
                "the browser tests need chromedriver: apt-get install chromium chromium-driver",
            );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child: Child = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#""$0" --port="$1" >/dev/null 2>&1 & pid=$!; read _; kill $pid"#)
            .arg(driver)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .spawn()
            .expect("start chromedriver");
        // Keep the pipe open for the life of the process.
        Box::leak(Box::new(child));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        port
    })
}

async fn browser() -> Client {
    let port = chromedriver();
    let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("the browser tests need chromium: apt-get install chromium chromium-driver");
    let profile = tempfile::tempdir().unwrap().keep();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": binary,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", "--window-size=1100,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session")
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_path(name), png).unwrap();
}

/// Waits until the element's text satisfies `check`; returns the text.
async fn text_when(client: &Client, css: &str, check: impl Fn(&str) -> bool) -> String {
    text_within(client, css, WAIT, check).await
}

/// [`text_when`] with its own deadline.
async fn text_within(
    client: &Client,
    css: &str,
    deadline: Duration,
    check: impl Fn(&str) -> bool,
) -> String {
    let start = std::time::Instant::now();
    let mut last = None;
    loop {
        if let Ok(el) = client.find(Locator::Css(css)).await
            && let Ok(text) = el.text().await
        {
            if check(&text) {
                return text;
            }
            last = Some(text);
        }
        assert!(
            start.elapsed() < deadline,
            "{css} never showed the expected text; it showed {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_visitor_sees_a_field_error_then_leaves_a_message() {
    let app = spawn_app().await;
    let channel = app
        .store
        .create_channel(&leavemsg::store::channels::NewChannel {
            name: "Web",
            origins: &[],
            cross_site: false,
            prompt: Some("Our lines are busy <b>right now</b>."),
            callbacks: Default::default(),
            notify_emails: &[],
        })
        .await
        .unwrap();
    let c = browser().await;
    c.goto(&app.url(&format!("/web/{channel}"))).await.unwrap();
    let prompt = c
        .find(Locator::Id("prompt"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        prompt, "Our lines are busy <b>right now</b>.",
        "the prompt is shown as text"
    );

    c.find(Locator::Id("phone"))
        .await
        .unwrap()
        .send_keys("call me maybe")
        .await
        .unwrap();
    c.find(Locator::Id("message"))
        .await
        .unwrap()
        .send_keys("Please call about my order")
        .await
        .unwrap();
    let counter = c
        .find(Locator::Id("message-count"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(counter, "26 / 2000 characters");
    c.find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = text_when(&c, "#phone-error", |t| !t.is_empty()).await;
    assert!(
        error.starts_with("Phone number may contain only digits"),
        "{error}"
    );
    let invalid = c
        .find(Locator::Id("phone"))
        .await
        .unwrap()
        .attr("aria-invalid")
        .await
        .unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));
    screenshot(&c, "visitor-form-error").await;
    assert_eq!(app.message_count().await, 0);

    let phone = c.find(Locator::Id("phone")).await.unwrap();
    phone.clear().await.unwrap();
    phone.send_keys("+1 555 0107").await.unwrap();
    // A double click sends one message.
    let send = c.find(Locator::Id("send")).await.unwrap();
    c.execute(
        "document.getElementById('send').click(); document.getElementById('send').click();",
        vec![],
    )
    .await
    .unwrap();
    drop(send);
    let done = text_when(&c, "#result", |t| t.starts_with("Thank you")).await;
    assert!(done.contains("call you back"));
    assert_eq!(
        c.find(Locator::Id("phone-error"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        ""
    );
    screenshot(&c, "visitor-form").await;
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT phone_no, message FROM leave_message")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        rows,
        [(
            "+1 555 0107".to_owned(),
            "Please call about my order".to_owned()
        )]
    );

    // A phone-sized screen still shows the whole form.
    c.set_window_size(390, 844).await.unwrap();
    screenshot(&c, "visitor-form-phone").await;
    c.close().await.unwrap();
}

#[tokio::test]
async fn an_unknown_channel_shows_a_clear_page_with_strict_headers() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url(&format!("/web/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("This message form is not available")
    );
    let channel = app.create_channel().await;
    for path in [format!("/web/{channel}"), "/console".to_owned()] {
        let resp = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self'"),
            "{csp}"
        );
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        let html = resp.text().await.unwrap();
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{path} loads something from elsewhere"
        );
    }
    let resp = app
        .client
        .get(app.url("/assets/visitor.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
}

#[tokio::test]
async fn an_agent_sees_a_hostile_message_arrive_as_text_claims_and_processes_it() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let c = browser().await;
    c.goto(&app.url("/console")).await.unwrap();
    c.find(Locator::Id("api-key"))
        .await
        .unwrap()
        .send_keys("lmk_000000000000_wrongwrongwrongwrongwrongwrongwrongwrongwrong")
        .await
        .unwrap();
    c.find(Locator::Css("#sign-in-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused = text_when(&c, "#notice", |t| !t.is_empty()).await;
    assert!(refused.contains("not accepted"), "{refused}");

    c.find(Locator::Id("api-key"))
        .await
        .unwrap()
        .send_keys(&key)
        .await
        .unwrap();
    c.find(Locator::Css("#sign-in-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&c, "#live", |t| t.ends_with("on")).await;
    let stored: Value = c
        .execute("return sessionStorage.getItem('leavemsg.apiKey')", vec![])
        .await
        .unwrap();
    assert_eq!(stored.as_str(), Some(key.as_str()));
    assert!(
        !c.current_url().await.unwrap().as_str().contains(&key),
        "the key is never in a URL"
    );

    let hostile = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";
    let id = app.store_message(&token, "+44 20 7946 0958", hostile).await;
    let row = format!("tr[data-id=\"{id}\"]");
    let shown = text_when(&c, &format!("{row} td.text"), |t| !t.is_empty()).await;
    assert_eq!(shown, hostile, "the message arrived live, as characters");
    let children: Value = c
        .execute(
            &format!("return document.querySelector('{row} td.text').children.length"),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(children, json!(0), "no element was made from the message");
    let pwned: Value = c
        .execute("return window.pwned === undefined", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, json!(true), "the message's script ran");
    screenshot(&c, "console-arrived").await;

    c.find(Locator::Css(&format!("{row} button")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&c, "#notice", |t| t.contains("is now assigned")).await;
    // Under the "pending" filter an assigned message leaves the list; show assigned ones.
    c.execute(
        "document.getElementById('f-status').value = 'assigned'",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&c, &format!("{row} td:nth-child(6)"), |t| {
        t.starts_with("assigned (alice)")
    })
    .await;
    c.find(Locator::Css(&format!("{row} select")))
        .await
        .unwrap()
        .select_by_value("called_back")
        .await
        .unwrap();
    c.find(Locator::Css(&format!("{row} input")))
        .await
        .unwrap()
        .send_keys("Refund agreed")
        .await
        .unwrap();
    c.find(Locator::XPath(&format!(
        "//tr[@data-id='{id}']//button[text()='Close']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    text_when(&c, "#notice", |t| t.contains("is now processed")).await;
    screenshot(&c, "console-processed").await;

    let (status, outcome, note, by): (String, String, String, String) = sqlx::query_as(
        "SELECT status, outcome, note, processed_by FROM leave_message WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (
            status.as_str(),
            outcome.as_str(),
            note.as_str(),
            by.as_str()
        ),
        ("processed", "called_back", "Refund agreed", "alice")
    );

    // A 409 is explained in words: bob claims a message before alice's click lands.
    let bob = app.create_agent("bob", false).await;
    c.execute(
        "document.getElementById('f-status').value = 'pending'",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let second = app.store_message(&token, "123456", "second message").await;
    let row = format!("tr[data-id=\"{second}\"]");
    text_when(&c, &format!("{row} td.text"), |t| t == "second message").await;
    let resp = app
        .agent_post(&bob, &format!("/api/v1/messages/{second}/claim"), None)
        .await;
    assert_eq!(resp.status(), 200);
    c.find(Locator::Css(&format!("{row} button")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let conflict = text_when(&c, "#notice", |t| t.contains("cannot claim")).await;
    assert!(conflict.contains("assigned to bob"), "{conflict}");
    c.close().await.unwrap();
}

/// Signs in to the console at `app` with `key`.
async fn sign_in(c: &Client, app: &TestApp, key: &str) {
    c.goto(&app.url("/console")).await.unwrap();
    c.find(Locator::Id("api-key"))
        .await
        .unwrap()
        .send_keys(key)
        .await
        .unwrap();
    c.find(Locator::Css("#sign-in-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_console_says_when_live_updates_are_off_and_catches_up_when_they_are_back() {
    // Reconnecting waits out the server's Retry-After and a growing pause.
    const BACK: Duration = Duration::from_secs(120);
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;

    // Every stream this key may hold is taken: the console's is refused, and it says so.
    let mut held = Vec::new();
    for _ in 0..leavemsg::agent::stream::MAX_STREAMS_PER_AGENT {
        held.push(EventReader::open(&app, &key).await);
    }
    let c = browser().await;
    sign_in(&c, &app, &key).await;
    let off = text_when(&c, "#live", |t| t.starts_with("Live updates are off")).await;
    assert!(off.contains("too many live connections"), "{off}");
    screenshot(&c, "console-live-off").await;
    // Stored while refused: shown once the console has a stream (it reads the list again).
    let refused_meanwhile = app.store_message(&token, "123456", "while refused").await;
    drop(held.pop());
    text_within(&c, "#live", BACK, |t| t == "Live updates on").await;
    let row = |id: i64| format!("tr[data-id=\"{id}\"] td.text");
    text_when(&c, &row(refused_meanwhile), |t| t == "while refused").await;
    drop(held);

    // A row the console shows now: marked, to tell a replay (which keeps it) from a reload.
    c.execute(
        &format!(
            "document.querySelector('tr[data-id=\"{refused_meanwhile}\"]').dataset.kept = 'yes'"
        ),
        vec![],
    )
    .await
    .unwrap();

    // The server goes away; a message is stored through another instance meanwhile.
    leavemsg::startup::Application::shutdown(&app.handle, &app.live).await;
    let off = text_when(&c, "#live", |t| t.starts_with("Live updates are off")).await;
    assert!(off.contains("reconnecting"), "{off}");
    let other = spawn_app_on(app.database_url.clone(), |_| {}).await;
    let away_meanwhile = other.store_message(&token, "123456", "while away").await;

    // Back at the same address: the console resumes from the last id it saw and shows it.
    let port = app.port;
    let _back = spawn_app_on(app.database_url.clone(), |s| {
        s.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    })
    .await;
    text_within(&c, &row(away_meanwhile), BACK, |t| t == "while away").await;
    text_when(&c, "#live", |t| t == "Live updates on").await;
    let kept: Value = c
        .execute(
            &format!(
                "return document.querySelector('tr[data-id=\"{refused_meanwhile}\"]').dataset.kept"
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        kept,
        json!("yes"),
        "the list was reloaded instead of resumed"
    );
    let live_class: Value = c
        .execute("return document.getElementById('live').className", vec![])
        .await
        .unwrap();
    assert_eq!(live_class, json!("live"));
    screenshot(&c, "console-live-back").await;
    c.close().await.unwrap();
}

/// Waits until a script returns true.
async fn script_true(client: &Client, script: &str) {
    let start = std::time::Instant::now();
    loop {
        if client.execute(script, vec![]).await.ok() == Some(json!(true)) {
            return;
        }
        assert!(start.elapsed() < WAIT, "never true: {script}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The console reloads its list when its stream connects. A message that arrives live while
/// that reload is on its way (the page was read before the message was stored) stays shown:
/// the reload's answer is held in the page until the message is on screen, then let go.
#[tokio::test]
async fn a_message_arriving_while_the_list_reloads_stays_shown() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let c = browser().await;
    c.goto(&app.url("/console")).await.unwrap();
    // The second read of the list (the stream's reload) is answered by the server at once, and
    // handed to the console only when the test says so.
    c.execute(
        r#"window.listReads = 0; window.held = [];
           const realFetch = window.fetch.bind(window);
           window.fetch = (url, options) => {
             const answer = realFetch(url, options);
             if (!String(url).startsWith("/api/v1/messages?") || ++window.listReads !== 2) {
               return answer;
             }
             return answer.then((r) => new Promise((resolve) => window.held.push(() => resolve(r))));
           };"#,
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Id("api-key"))
        .await
        .unwrap()
        .send_keys(&key)
        .await
        .unwrap();
    c.find(Locator::Css("#sign-in-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&c, "#live", |t| t.ends_with("on")).await;
    script_true(&c, "return window.held.length === 1").await;

    let id = app
        .store_message(&token, "+44 20 7946 0958", "arrived live")
        .await;
    let row = format!("tr[data-id=\"{id}\"]");
    text_when(&c, &format!("{row} td.text"), |t| t == "arrived live").await;
    // The list is busy while a reload is on its way, and no longer once it was applied.
    script_true(
        &c,
        "return document.getElementById('rows').getAttribute('aria-busy') === 'true'",
    )
    .await;
    c.execute("window.held.forEach((release) => release());", vec![])
        .await
        .unwrap();
    script_true(
        &c,
        "return !document.getElementById('rows').hasAttribute('aria-busy')",
    )
    .await;
    let text = c
        .find(Locator::Css(&format!("{row} td.text")))
        .await
        .map_err(|_| "the reload's older page hid the message that arrived meanwhile");
    assert_eq!(text.unwrap().text().await.unwrap(), "arrived live");
}

/// The form's "when can we call you": a day and time in the browser's own zone, sent as
/// callbackAfter with its offset, explained in words; checked before sending.
#[tokio::test]
async fn a_visitor_asks_to_be_called_not_before_a_day_and_time() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let c = browser().await;
    c.goto(&app.url(&format!("/web/{channel}"))).await.unwrap();
    let hint = text_when(&c, "#when-hint", |t| !t.is_empty()).await;
    assert_eq!(hint, "We will call you as soon as someone is free.");
    script_true(&c, "return document.getElementById('when-later').hidden").await;

    c.find(Locator::Id("phone"))
        .await
        .unwrap()
        .send_keys("+1 555 0107")
        .await
        .unwrap();
    c.find(Locator::Id("message"))
        .await
        .unwrap()
        .send_keys("After work, please")
        .await
        .unwrap();
    c.find(Locator::Id("when-later-choice"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    script_true(&c, "return !document.getElementById('when-later').hidden").await;
    text_when(&c, "#when-hint", |t| {
        t.starts_with("Choose a day and a time")
    })
    .await;
    c.find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = text_when(&c, "#when-error", |t| !t.is_empty()).await;
    assert!(
        error.starts_with("Please choose a day and a time"),
        "{error}"
    );

    // Beyond 30 days (typed past the date picker's bounds): said before anything is sent.
    let set_day = |days: i64| {
        format!(
            "const d = new Date(Date.now() + {days} * 86400000);
             const day = `${{d.getFullYear()}}-${{String(d.getMonth() + 1).padStart(2, '0')}}-${{String(d.getDate()).padStart(2, '0')}}`;
             const input = document.getElementById('when-day');
             input.value = day;
             input.dispatchEvent(new Event('input', {{ bubbles: true }}));
             const time = document.getElementById('when-time');
             time.value = '18:00';
             time.dispatchEvent(new Event('input', {{ bubbles: true }}));
             return day;"
        )
    };
    c.execute(&set_day(40), vec![]).await.unwrap();
    c.find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&c, "#when-error", |t| {
        t == "Please choose a time within the next 30 days."
    })
    .await;
    assert_eq!(app.message_count().await, 0);

    let day = c.execute(&set_day(1), vec![]).await.unwrap();
    let day = day.as_str().unwrap().to_owned();
    let hint = text_when(&c, "#when-hint", |t| {
        t.starts_with("We will not call you before")
    })
    .await;
    assert!(hint.contains("your time"), "{hint}");
    screenshot(&c, "visitor-form-later").await;
    c.find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let done = text_when(&c, "#result", |t| t.starts_with("Thank you")).await;
    assert!(done.contains("not before"), "{done}");

    // What was stored is that local time, in the browser's zone.
    let expected: Value = c
        .execute(
            &format!("return new Date('{day}T18:00:00').toISOString()"),
            vec![],
        )
        .await
        .unwrap();
    let expected: chrono::DateTime<chrono::Utc> = expected.as_str().unwrap().parse().unwrap();
    let (after, due): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT callback_after, due_at FROM leave_message")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((after, due), (expected, expected));
    // The form is back to "as soon as possible" for the next message.
    script_true(&c, "return document.getElementById('when-later').hidden").await;
    c.close().await.unwrap();
}

/// CONTRACT §3.1 in the console: counts on top, "attempt 1 of 3", due and overdue in words and
/// colour, one click for a call's result, the history on demand, `tel:` links. Time is moved in
/// the database, never by waiting.
#[tokio::test]
async fn an_agent_records_no_answer_and_the_message_comes_back_when_due() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let id = app
        .store_message(&token, "+44 20 7946 0958", "Call me about the invoice")
        .await;
    let c = browser().await;
    sign_in(&c, &app, &key).await;
    let row = format!("tr[data-id=\"{id}\"]");
    text_when(&c, &format!("{row} td.text"), |t| {
        t == "Call me about the invoice"
    })
    .await;
    text_when(&c, "#q-due", |t| t == "1").await;
    assert_eq!(text_when(&c, "#q-pending", |t| t == "1").await, "1");
    let href = c
        .find(Locator::Css(&format!("{row} td.phone a")))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap();
    assert_eq!(href.as_deref(), Some("tel:+442079460958"));
    text_when(&c, &format!("{row} td.attempt"), |t| t == "Attempt 1 of 3").await;
    text_when(&c, &format!("{row} td.due"), |t| {
        t.starts_with("Due now; overdue in 3 h")
    })
    .await;

    // Claimed: the row stays, with the results to record.
    c.find(Locator::Css(&format!("{row} button")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&c, &format!("{row} td.status"), |t| t == "assigned (alice)").await;
    text_when(&c, "#q-mine", |t| t == "1").await;
    c.find(Locator::Css(&format!("{row} input")))
        .await
        .unwrap()
        .send_keys("Rang 10 times")
        .await
        .unwrap();
    c.find(Locator::Css(&format!(
        "{row} button[data-result=no_answer]"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let said = text_when(&c, "#notice", |t| t.contains("no answer on attempt")).await;
    assert!(said.contains("attempt 1 of 3"), "{said}");
    assert!(said.contains("pending again, due"), "{said}");
    // Not due for an hour: it leaves the list of messages due now.
    script_true(&c, &format!("return !document.querySelector('{row}')")).await;
    text_when(&c, "#q-due", |t| t == "0").await;

    // Scheduled for later, with its history on demand.
    c.execute(
        "document.getElementById('f-status').value = 'later'",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&c, &format!("{row} td.due"), |t| t.starts_with("Due in ")).await;
    text_when(&c, &format!("{row} td.attempt"), |t| t == "Attempt 2 of 3").await;
    let toggle = c
        .find(Locator::Css(&format!("{row} button.history-toggle")))
        .await
        .unwrap();
    toggle.click().await.unwrap();
    let history = text_when(&c, &format!("#history-{id}"), |t| t.contains("Call by")).await;
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 3, "{history}");
    assert!(lines[0].ends_with("Message stored"), "{history}");
    assert!(lines[1].ends_with("Claimed by alice"), "{history}");
    assert!(
        lines[2].ends_with("Call by alice: no answer — “Rang 10 times”"),
        "{history}"
    );
    assert_eq!(
        toggle.attr("aria-expanded").await.unwrap().as_deref(),
        Some("true")
    );
    screenshot(&c, "console-history").await;

    // Back to the list of messages due now; the retry time comes (moved in the database).
    c.execute("document.getElementById('f-status').value = 'due'", vec![])
        .await
        .unwrap();
    c.find(Locator::Css("#filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    script_true(&c, &format!("return !document.querySelector('{row}')")).await;
    sqlx::query("UPDATE leave_message SET due_at = now() - interval '1 minute' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    text_within(
        &c,
        &format!("{row} td.attempt"),
        Duration::from_secs(90),
        |t| t == "Attempt 2 of 3",
    )
    .await;
    text_when(&c, "#q-due", |t| t == "1").await;

    // Past its service level (240 min after due): overdue, in words and in colour.
    sqlx::query("UPDATE leave_message SET due_at = now() - interval '5 hours' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    text_within(&c, &format!("{row} td.due"), Duration::from_secs(90), |t| {
        t.starts_with("Overdue by 1 h")
    })
    .await;
    script_true(
        &c,
        &format!(
            "const row = document.querySelector('{row}');
             return row.classList.contains('overdue')
               && getComputedStyle(row.querySelector('td.due')).color
                  !== getComputedStyle(row.querySelector('td.text')).color"
        ),
    )
    .await;
    text_when(&c, "#q-overdue", |t| t == "1").await;
    // Two more callers, one of them claimed, for the picture of a working console.
    app.store_message(&token, "+1 555 0107", "Is my order shipped?")
        .await;
    let other = app
        .store_message(&token, "020 7946 0000", "Please call after 5pm")
        .await;
    let other_row = format!("tr[data-id=\"{other}\"]");
    text_when(&c, &format!("{other_row} td.text"), |t| {
        t == "Please call after 5pm"
    })
    .await;
    c.find(Locator::Css(&format!("{other_row} button")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&c, &format!("{other_row} td.status"), |t| {
        t == "assigned (alice)"
    })
    .await;
    text_when(&c, "#q-mine", |t| t == "1").await;
    c.set_window_size(1400, 900).await.unwrap();
    screenshot(&c, "console").await;

    // Reached on the second attempt: processed as called back, out of the list.
    c.find(Locator::Css(&format!("{row} button")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The last call's note stays with the message for whoever calls next.
    text_when(&c, &format!("{row} td.status"), |t| {
        t == "assigned (alice) — Rang 10 times"
    })
    .await;
    c.find(Locator::Css(&format!("{row} button[data-result=reached]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&c, "#notice", |t| {
        t.contains("is now processed (called back)")
    })
    .await;
    script_true(&c, &format!("return !document.querySelector('{row}')")).await;
    let (status, outcome, attempts): (String, String, i16) =
        sqlx::query_as("SELECT status, outcome, attempts FROM leave_message WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), outcome.as_str(), attempts),
        ("processed", "called_back", 2)
    );
    c.close().await.unwrap();
}
