//! CONTRACT §7.1, last paragraph: the admin API for webhook endpoints and their deliveries,
//! under the same rules as `leavemsg webhook …`; 403 for agents who are not admins, 401
//! without a valid key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use leavemsg::credentials::WebhookSecret;
use leavemsg::domain::DeliveryStatus;

const DEADLINE: Duration = Duration::from_secs(60);
const WEBHOOKS: &str = "/api/v1/webhooks";

/// One call, with `key` as the bearer key if given; the status and the body's text.
async fn call(
    app: &TestApp,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Adds an endpoint through the API as `admin`; returns the answer's JSON.
async fn add(app: &TestApp, admin: &str, body: Value) -> Value {
    let (status, text) = call(app, Some(admin), Method::POST, WEBHOOKS, Some(body)).await;
    assert_eq!(status, 201, "{text}");
    json_of(&text)
}

/// Retries a second apart (then 2, 4, … s).
async fn fast_retries() -> TestApp {
    spawn_app_with(|s| s.webhooks.retry_base = Duration::from_secs(1)).await
}

/// What the tables hold, as text: to show that a refused call changed nothing.
async fn snapshot(app: &TestApp) -> String {
    let endpoints: Vec<(String,)> = sqlx::query_as(
        "SELECT concat_ws('|', id, url, channel_id, events, secret, created_at)
         FROM webhook_endpoint ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let deliveries: Vec<(String,)> = sqlx::query_as(
        "SELECT concat_ws('|', endpoint_id, event_id, status, tries, next_at, last_error,
                          done_at, since)
         FROM webhook_delivery ORDER BY endpoint_id, event_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    format!("{endpoints:?}\n{deliveries:?}")
}

/// Moves a delivery to `failed`, an hour ago, as the dispatcher does when it gives up.
async fn make_failed(app: &TestApp, endpoint: &str) {
    sqlx::query(
        "UPDATE webhook_delivery
         SET status = 'failed', done_at = now() - interval '1 hour', tries = 7,
             last_error = 'answered 500', next_at = now() + interval '1 day'
         WHERE endpoint_id = $1::uuid",
    )
    .bind(endpoint)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn admins_add_list_and_remove_endpoints_and_see_the_secret_only_once() {
    let app = spawn_app().await;
    let admin = app.create_agent("lead", true).await;
    let channel = app.create_channel().await;

    let one = add(
        &app,
        &admin,
        json!({
            "url": " https://CRM.example.com/hooks/leavemsg ",
            "channelId": channel,
            "events": ["message.stored", "message.processed", "message.stored"],
        }),
    )
    .await;
    let id = one["id"].as_str().unwrap().to_owned();
    assert_eq!(one["url"], json!("https://crm.example.com/hooks/leavemsg"));
    assert_eq!(one["channelId"], json!(channel));
    assert_eq!(
        one["events"],
        json!(["message.stored", "message.processed"])
    );
    assert_eq!((&one["pending"], &one["failed"]), (&json!(0), &json!(0)));
    assert!(chrono::DateTime::parse_from_rfc3339(one["createdAt"].as_str().unwrap()).is_ok());
    let secret = one["secret"].as_str().unwrap().to_owned();
    assert!(WebhookSecret::parse(&secret).is_some(), "{secret}");
    // The secret shown is the one deliveries are signed with.
    let stored: String =
        sqlx::query_scalar("SELECT secret FROM webhook_endpoint WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, secret);

    let two = add(
        &app,
        &admin,
        json!({"url": "http://127.0.0.1:9/all", "channelId": null}),
    )
    .await;
    assert_eq!(two["channelId"], Value::Null, "null: every channel");
    assert_eq!(two["events"], json!([]), "empty: every type");
    assert_ne!(two["secret"], one["secret"]);

    let (status, text) = call(&app, Some(&admin), Method::GET, WEBHOOKS, None).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("whsec_") && !text.contains("secret"),
        "{text}"
    );
    let list = json_of(&text);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let mut shown = one.clone();
    shown.as_object_mut().unwrap().remove("secret");
    assert_eq!(
        items[0], shown,
        "the list shows what the answer did, but the secret"
    );
    assert_eq!(items[1]["id"], two["id"]);
    // The command line sees the same endpoints.
    let cli = ok(&app.database_url, &["webhook", "list"]);
    assert!(
        cli.contains(&id) && cli.contains(two["id"].as_str().unwrap()),
        "{cli}"
    );

    let path = format!("{WEBHOOKS}/{id}");
    let (status, text) = call(&app, Some(&admin), Method::DELETE, &path, None).await;
    assert_eq!((status, text.as_str()), (204, ""));
    let (status, text) = call(&app, Some(&admin), Method::DELETE, &path, None).await;
    assert_eq!(status, 404, "{text}");
    assert_eq!(json_of(&text)["error"], json!("not_found"));
    let (status, text) = call(
        &app,
        Some(&admin),
        Method::DELETE,
        &format!("{WEBHOOKS}/12"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        json_of(&text)["message"]
            .as_str()
            .unwrap()
            .starts_with("id "),
        "{text}"
    );
    let list = json_of(
        &call(&app, Some(&admin), Method::GET, WEBHOOKS, None)
            .await
            .1,
    );
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], two["id"]);
}

#[tokio::test]
async fn adding_refuses_what_the_command_line_refuses_and_names_the_field() {
    let app = spawn_app().await;
    let admin = app.create_agent("lead", true).await;
    let ok_url = "https://example.com/hook";
    let too_long = format!("https://example.com/{}", "a".repeat(2000));
    for (body, says) in [
        (json!({}), "url is required"),
        (json!({"url": null}), "url is required"),
        (json!({"url": 5}), "url must be a string"),
        (
            json!({"url": "ftp://example.com/x"}),
            "url must be an http:// or https:// address",
        ),
        (json!({"url": "not a url"}), "url is not an absolute"),
        (json!({"url": "/relative"}), "url is not an absolute"),
        (
            json!({"url": too_long}),
            "url must be at most 2000 characters",
        ),
        (
            json!({"url": ok_url, "events": ["message.stored", "message.sent"]}),
            "events must name event types (message.stored, message.claimed",
        ),
        (
            json!({"url": ok_url, "events": "message.stored"}),
            "events must be a list",
        ),
        (
            json!({"url": ok_url, "events": [1]}),
            "events must be a list",
        ),
        (
            json!({"url": ok_url, "channelId": "x"}),
            "channelId is not a Configuration ID",
        ),
        (
            json!({"url": ok_url, "channelId": 7}),
            "channelId must be a string",
        ),
        (
            json!({"url": ok_url, "channelId": "8c0f4d7e-1111-4222-8333-944455556666"}),
            "channelId: no channel has the Configuration ID 8c0f4d7e-1111-4222-8333-944455556666",
        ),
    ] {
        let (status, text) = call(
            &app,
            Some(&admin),
            Method::POST,
            WEBHOOKS,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {text}");
        let answer = json_of(&text);
        assert_eq!(answer["error"], json!("bad_request"), "{text}");
        assert!(
            answer["message"].as_str().unwrap().starts_with(says),
            "{body}: {text}"
        );
    }
    let resp = app
        .client
        .post(app.url(WEBHOOKS))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"url\":")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let endpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoint")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(endpoints, 0);
}

#[tokio::test]
async fn agents_who_are_not_admins_get_403_and_no_key_gets_401_and_nothing_changes() {
    let app = spawn_app().await;
    let admin = app.create_agent("lead", true).await;
    let agent = app.create_agent("alice", false).await;
    // Refused at first: the message.stored becomes a delivery row, which is then made failed.
    let receiver = Receiver::answering(&[500]).await;
    let endpoint = add(&app, &admin, json!({"url": receiver.url})).await;
    let id = endpoint["id"].as_str().unwrap();
    let (channel, _) = app.channel_and_token().await;
    app.insert_messages(&channel, 1).await;
    assert!(wait_until(DEADLINE, || async { delivery_rows(&app).await == 1 }).await);
    make_failed(&app, id).await;
    let uid: uuid::Uuid = sqlx::query_scalar("SELECT uid FROM outbox_event")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let event = format!("evt_{}", uid.simple());
    let before = snapshot(&app).await;

    let calls = [
        (Method::GET, WEBHOOKS.to_owned(), None),
        (
            Method::POST,
            WEBHOOKS.to_owned(),
            Some(json!({"url": "https://example.com/hook"})),
        ),
        // What an admin would be told is wrong with it is not told.
        (Method::POST, WEBHOOKS.to_owned(), Some(json!({"url": 5}))),
        (Method::DELETE, format!("{WEBHOOKS}/{id}"), None),
        (Method::DELETE, format!("{WEBHOOKS}/not-an-id"), None),
        (
            Method::GET,
            format!("{WEBHOOKS}/{id}/deliveries?status=failed"),
            None,
        ),
        (
            Method::GET,
            format!("{WEBHOOKS}/{id}/deliveries?status=bad&limit=0"),
            None,
        ),
        (
            Method::POST,
            format!("{WEBHOOKS}/{id}/deliveries/{event}/redeliver"),
            None,
        ),
        (
            Method::POST,
            format!("{WEBHOOKS}/{id}/deliveries/evt_nope/redeliver"),
            None,
        ),
    ];
    for (method, path, body) in &calls {
        let (status, text) = call(&app, Some(&agent), method.clone(), path, body.clone()).await;
        assert_eq!(status, 403, "{method} {path}: {text}");
        let answer = json_of(&text);
        assert_eq!(answer["error"], json!("forbidden"), "{text}");
        assert!(!text.contains(&receiver.url), "{text}");

        for key in [None, Some("lm_nosuchkey_0000000000000000000000000000")] {
            let (status, text) = call(&app, key, method.clone(), path, body.clone()).await;
            assert_eq!(status, 401, "{method} {path} with {key:?}: {text}");
            assert_eq!(json_of(&text)["error"], json!("unauthorized"));
        }
    }
    assert_eq!(
        snapshot(&app).await,
        before,
        "refused calls changed nothing"
    );
    // The same calls by an admin do change things: the snapshot could tell.
    let (status, text) = call(
        &app,
        Some(&admin),
        Method::POST,
        &format!("{WEBHOOKS}/{id}/deliveries/{event}/redeliver"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_ne!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_failed_delivery_is_listed_and_redelivered_through_the_api() {
    let app = fast_retries().await;
    let admin = app.create_agent("lead", true).await;
    let statuses = Arc::new(Mutex::new(vec![500; 1000]));
    let receiver = Receiver::start(Answer::Statuses(statuses.clone())).await;
    let endpoint = add(
        &app,
        &admin,
        json!({"url": receiver.url, "events": ["message.stored"]}),
    )
    .await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let secret = WebhookSecret::parse(endpoint["secret"].as_str().unwrap()).unwrap();
    let (_, token) = app.channel_and_token().await;
    let message = app.store_message(&token, "123456", "nobody home").await;
    let first = receiver.wait_for(1).await;
    let webhook_id = first[0].header("webhook-id").to_owned();
    // The failed first try becomes a delivery row, retried.
    assert!(wait_until(DEADLINE, || async { delivery_rows(&app).await == 1 }).await);
    // A day and more since it was queued: its next failure is its last.
    sqlx::query("UPDATE webhook_delivery SET since = now() - interval '2 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(
        wait_until(DEADLINE, || async {
            sqlx::query_scalar::<_, String>("SELECT status FROM webhook_delivery")
                .fetch_one(&app.pool)
                .await
                .unwrap()
                == "failed"
        })
        .await
    );
    let tries = receiver.got().len();

    let deliveries = format!("{WEBHOOKS}/{id}/deliveries");
    let (status, text) = call(
        &app,
        Some(&admin),
        Method::GET,
        &format!("{deliveries}?status=failed"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("whsec_") && !text.contains(secret.expose()),
        "{text}"
    );
    let failed = json_of(&text)["items"].as_array().unwrap().clone();
    assert_eq!(failed.len(), 1, "{text}");
    let item = &failed[0];
    assert_eq!(item["eventId"], json!(webhook_id));
    assert_eq!(item["type"], json!("message.stored"));
    assert_eq!(item["messageId"], json!(message));
    assert_eq!(item["status"], json!("failed"));
    assert_eq!(item["tries"], json!(tries));
    assert!(
        item["lastError"].as_str().unwrap().contains("500"),
        "{item}"
    );
    assert_eq!(item["nextAt"], Value::Null);
    assert!(
        item["doneAt"].is_string() && item["at"].is_string(),
        "{item}"
    );
    for (filter, expected) in [
        ("?status=pending", 0),
        ("?status=delivered", 0),
        ("", 1),
        ("?status=", 1),
    ] {
        let (status, text) = call(
            &app,
            Some(&admin),
            Method::GET,
            &format!("{deliveries}{filter}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{filter}: {text}");
        assert_eq!(
            json_of(&text)["items"].as_array().unwrap().len(),
            expected,
            "{filter}: {text}"
        );
    }
    let list = json_of(
        &call(&app, Some(&admin), Method::GET, WEBHOOKS, None)
            .await
            .1,
    );
    assert_eq!(
        (&list["items"][0]["pending"], &list["items"][0]["failed"]),
        (&json!(0), &json!(1))
    );

    statuses.lock().unwrap().clear();
    let redeliver = format!("{deliveries}/{webhook_id}/redeliver");
    let (status, text) = call(&app, Some(&admin), Method::POST, &redeliver, None).await;
    assert_eq!(status, 200, "{text}");
    let queued = json_of(&text);
    assert_eq!(queued["eventId"], json!(webhook_id));
    assert_eq!(queued["status"], json!("pending"));
    assert_eq!(queued["tries"], json!(0));
    assert!(queued["nextAt"].is_string(), "{queued}");
    assert_eq!(queued["doneAt"], Value::Null);

    let got = receiver.wait_for(tries + 1).await;
    let again = &got[tries];
    assert_eq!(again.header("webhook-id"), webhook_id);
    let timestamp: i64 = again.header("webhook-timestamp").parse().unwrap();
    assert_eq!(
        again.header("webhook-signature"),
        secret.sign(&webhook_id, timestamp, &again.body),
        "signed with the secret the API showed"
    );
    assert!(
        wait_until(DEADLINE, || async {
            let (_, text) = call(
                &app,
                Some(&admin),
                Method::GET,
                &format!("{deliveries}?status=delivered"),
                None,
            )
            .await;
            json_of(&text)["items"].as_array().unwrap().len() == 1
        })
        .await
    );
    let (_, text) = call(&app, Some(&admin), Method::GET, &deliveries, None).await;
    let delivered = &json_of(&text)["items"][0];
    assert_eq!(delivered["status"], json!("delivered"));
    assert_eq!(delivered["tries"], json!(1));
    assert_eq!(delivered["lastError"], Value::Null);
    assert_eq!(delivered["nextAt"], Value::Null);

    // Pending again, not due for a day: a redelivery has nothing to do.
    sqlx::query("UPDATE webhook_delivery SET status = 'pending', done_at = NULL, next_at = now() + interval '1 day'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, text) = call(&app, Some(&admin), Method::POST, &redeliver, None).await;
    assert_eq!(status, 409, "{text}");
    let conflict = json_of(&text);
    assert_eq!(
        (&conflict["error"], &conflict["status"]),
        (&json!("conflict"), &json!("pending"))
    );

    let other_event = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let other_endpoint = uuid::Uuid::new_v4();
    for (method, path, expected, says) in [
        (
            Method::POST,
            format!("{deliveries}/{other_event}/redeliver"),
            404,
            "no webhook endpoint",
        ),
        (
            Method::POST,
            format!("{WEBHOOKS}/{other_endpoint}/deliveries/{webhook_id}/redeliver"),
            404,
            "no webhook endpoint",
        ),
        (
            Method::POST,
            format!("{deliveries}/evt_nope/redeliver"),
            400,
            "eventId must be",
        ),
        (
            Method::POST,
            format!("{WEBHOOKS}/nope/deliveries/{webhook_id}/redeliver"),
            400,
            "id is not",
        ),
        (
            Method::GET,
            format!("{WEBHOOKS}/{other_endpoint}/deliveries"),
            404,
            "no webhook endpoint has id",
        ),
        (
            Method::GET,
            format!("{deliveries}?status=sent"),
            400,
            "status must be pending, delivered or failed",
        ),
        (
            Method::GET,
            format!("{deliveries}?limit=0"),
            400,
            "limit must be",
        ),
        (
            Method::GET,
            format!("{deliveries}?limit=501"),
            400,
            "limit must be",
        ),
        (
            Method::GET,
            format!("{deliveries}?limit=ten"),
            400,
            "limit must be",
        ),
    ] {
        let (status, text) = call(&app, Some(&admin), method.clone(), &path, None).await;
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(
            json_of(&text)["message"]
                .as_str()
                .unwrap()
                .starts_with(says),
            "{path}: {text}"
        );
    }
}

#[tokio::test]
async fn deliveries_are_listed_newest_first_and_bounded() {
    let app = spawn_app().await;
    let admin = app.create_agent("lead", true).await;
    let receiver = Receiver::answering(&[]).await;
    let endpoint = add(&app, &admin, json!({"url": receiver.url})).await;
    let id = endpoint["id"].as_str().unwrap();
    let (channel, _) = app.channel_and_token().await;
    let messages = app.insert_messages(&channel, 5).await;
    receiver.wait_for(5).await;
    assert!(
        wait_until(DEADLINE, || async {
            deliveries_with(&app.store, DeliveryStatus::Delivered)
                .await
                .len()
                == 5
        })
        .await
    );
    let newest_first: Vec<i64> = messages.iter().rev().copied().collect();
    let ids = |text: &str| -> Vec<i64> {
        json_of(text)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["messageId"].as_i64().unwrap())
            .collect()
    };
    let deliveries = format!("{WEBHOOKS}/{id}/deliveries");
    let (status, text) = call(&app, Some(&admin), Method::GET, &deliveries, None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(ids(&text), newest_first);
    let (_, text) = call(
        &app,
        Some(&admin),
        Method::GET,
        &format!("{deliveries}?limit=2"),
        None,
    )
    .await;
    assert_eq!(ids(&text), newest_first[..2]);
    let (_, text) = call(
        &app,
        Some(&admin),
        Method::GET,
        &format!("{deliveries}?limit=500&status=delivered"),
        None,
    )
    .await;
    assert_eq!(ids(&text), newest_first);
}

#[tokio::test]
async fn openapi_describes_the_admin_calls_their_answers_and_inputs() {
    let app = spawn_app().await;
    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &spec["paths"];
    let codes = |path: &str, method: &str| -> Vec<String> {
        let op = &paths[path][method];
        assert_eq!(
            op["security"],
            json!([{"agent_key": []}]),
            "{method} {path}"
        );
        op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for (path, method, expected) in [
        (WEBHOOKS, "get", &["200", "401", "403"][..]),
        (WEBHOOKS, "post", &["201", "400", "401", "403", "408"][..]),
        (
            "/api/v1/webhooks/{id}",
            "delete",
            &["204", "400", "401", "403", "404"][..],
        ),
        (
            "/api/v1/webhooks/{id}/deliveries",
            "get",
            &["200", "400", "401", "403", "404"][..],
        ),
        (
            "/api/v1/webhooks/{id}/deliveries/{eventId}/redeliver",
            "post",
            &["200", "400", "401", "403", "404", "409"][..],
        ),
    ] {
        let documented = codes(path, method);
        for code in expected.iter().chain(&["429", "503"]) {
            assert!(
                documented.iter().any(|c| c == code),
                "{method} {path}: {code} in {documented:?}"
            );
        }
        for param in paths[path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            match param["name"].as_str().unwrap() {
                "id" => assert_eq!(param["schema"]["format"], json!("uuid"), "{path}"),
                "eventId" => assert_eq!(param["schema"]["pattern"], json!("^evt_[0-9a-fA-F]{32}$")),
                "limit" => assert_eq!(
                    (&param["schema"]["minimum"], &param["schema"]["maximum"]),
                    (&json!(1), &json!(500))
                ),
                "status" => assert_eq!(
                    param["schema"]["pattern"],
                    json!("^(pending|delivered|failed)$")
                ),
                other => panic!("undescribed parameter {other} of {path}"),
            }
        }
    }
    let schemas = &spec["components"]["schemas"];
    let body = &schemas["NewWebhook"];
    assert_eq!(body["required"], json!(["url"]));
    assert_eq!(body["properties"]["url"]["maxLength"], json!(2000));
    assert_eq!(body["properties"]["channelId"]["format"], json!("uuid"));
    assert_eq!(
        body["properties"]["events"]["items"]["enum"],
        json!(leavemsg::domain::EVENT_TYPES)
    );
    // The secret is in the answer to POST, and in no other schema.
    let added = schemas["AddedWebhookEndpoint"].to_string();
    assert!(added.contains("\"secret\""), "{added}");
    for name in [
        "WebhookEndpoint",
        "WebhookEndpoints",
        "WebhookDelivery",
        "WebhookDeliveries",
    ] {
        let schema = schemas[name].to_string();
        assert!(
            schema != "null" && !schema.contains("secret\""),
            "{name}: {schema}"
        );
    }
    // Every operation has its own id.
    let mut ids: Vec<&str> = paths
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ops| ops.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "duplicate operationId: {ids:?}");
}
