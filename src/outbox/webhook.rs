//! One try of one webhook delivery: the Standard Webhooks request (CONTRACT §7.1).

use std::time::Duration;

use crate::credentials::WebhookSecret;
use crate::store::webhooks::Delivery;
use crate::wire::Message;

/// The HTTP client every endpoint worker shares: rustls, the system's roots, `timeout` per try,
/// no redirects (a receiver that moved answers 3xx, which is retried until it is fixed).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("leavemsg/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot build the webhook client; using the defaults");
            reqwest::Client::new()
        })
}

/// `webhook-id`: `evt_` and the event's uid in hex, the same on every try.
pub fn webhook_id(delivery: &Delivery) -> String {
    format!("evt_{}", delivery.uid.simple())
}

/// The JSON body: `{"type", "timestamp", "data"}`; `data` is the message after the change
/// (with `attempt` for message.attempted), or only its ids once it was erased or purged.
/// Serialized straight from the row, with no intermediate JSON tree.
pub fn body(delivery: &Delivery) -> Vec<u8> {
    let data = match &delivery.message {
        Some(row) => Data::Message {
            message: Box::new(Message::from(row.clone())),
            attempt: delivery.attempt.as_ref(),
        },
        // Erased or purged: nothing of the message is left but its ids.
        None => Data::Erased {
            id: delivery.message_id,
            channel_id: delivery.channel_id,
        },
    };
    let body = Body {
        kind: &delivery.event_type,
        timestamp: delivery
            .at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        data,
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(serde::Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: Data<'a>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Message {
        #[serde(flatten)]
        message: Box<Message>,
        #[serde(skip_serializing_if = "Option::is_none")]
        attempt: Option<&'a serde_json::Value>,
    },
    Erased {
        id: i64,
        #[serde(rename = "channelId")]
        channel_id: uuid::Uuid,
    },
}

/// Sends one try; `Err` says why it did not count as delivered (never the secret).
pub async fn send(client: &reqwest::Client, delivery: &Delivery) -> Result<(), String> {
    let Some(secret) = WebhookSecret::parse(&delivery.secret) else {
        return Err("the endpoint's secret does not parse".to_owned());
    };
    let id = webhook_id(delivery);
    let body = body(delivery);
    let timestamp = chrono::Utc::now().timestamp();
    let signature = secret.sign(&id, timestamp, &body);
    let response = client
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            // Without the URL: it may hold credentials, and this text is logged and listed.
            let e = e.without_url();
            if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                format!("request failed: {e}")
            }
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", status.as_u16()))
    }
}
