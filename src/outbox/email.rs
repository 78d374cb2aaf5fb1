//! E-mail to the team (CONTRACT §7.2): one plain-text e-mail per stored message of a channel
//! with `--notify-email` addresses, sent through `LEAVEMSG_SMTP_URL`. One worker per instance
//! takes due e-mail deliveries from the outbox (leased in the database, as webhook deliveries
//! are), sends up to [`PER_SERVER`] at a time, and records each result; failures are retried
//! with the webhooks' backoff and give up after their maximum age.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{POLL, WebhookSettings, backoff};
use crate::domain::{PublicUrl, Sender, SmtpSecurity, SmtpUrl};
use crate::store::email::EmailDelivery;
use crate::store::{MessageRow, Store};

/// At most this many e-mails in flight to the mail server, per instance.
pub const PER_SERVER: i64 = 4;
/// How long one e-mail may take, from connecting to the server's answer to the end of data.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// What sends the e-mails: the mail server's client, the sender, and the console's address.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Sender,
    console_url: String,
}

/// How one try ended.
enum Outcome {
    Sent,
    /// Nothing to send; the reason is recorded.
    Dropped(&'static str),
    Failed(String),
}

impl Mailer {
    /// A client for `smtp` (its TLS settings are made here, once); `Err` says what is wrong
    /// with them, never the password.
    pub fn new(smtp: &SmtpUrl, from: Sender, public_url: &PublicUrl) -> Result<Mailer, String> {
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned())
                .map_err(|e| format!("cannot set up TLS for the mail server: {e}"))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host())
            .port(smtp.port())
            .timeout(Some(SEND_TIMEOUT));
        builder = match smtp.security() {
            SmtpSecurity::Plain => builder.tls(Tls::None),
            SmtpSecurity::StartTls => builder.tls(Tls::Required(tls(smtp.host())?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls(smtp.host())?)),
        };
        if let Some((user, password)) = smtp.credentials() {
            builder = builder.credentials(Credentials::new(user.to_owned(), password.to_owned()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            console_url: format!("{}/console", public_url.as_str()),
        })
    }

    async fn send(&self, delivery: &EmailDelivery) -> Outcome {
        let Some(message) = &delivery.message else {
            return Outcome::Dropped("not sent: the message was erased before it was e-mailed");
        };
        let to: Vec<Mailbox> = delivery
            .to
            .iter()
            .filter_map(|a| a.parse::<Mailbox>().ok())
            .collect();
        if to.is_empty() {
            return Outcome::Dropped("not sent: the channel has no address to notify any more");
        }
        let email = match compose(delivery, message, &self.from, to, &self.console_url) {
            Ok(email) => email,
            Err(e) => return Outcome::Failed(format!("cannot write the e-mail: {e}")),
        };
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(email)).await {
            Ok(Ok(_)) => Outcome::Sent,
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(_) => Outcome::Failed("timed out".to_owned()),
        }
    }
}

/// The e-mail about one stored message. Its Message-ID is made from the event, so the rare
/// repeat (an instance that died after sending, before recording it) is recognizably the same.
fn compose(
    delivery: &EmailDelivery,
    message: &MessageRow,
    from: &Sender,
    to: Vec<Mailbox>,
    console_url: &str,
) -> Result<Message, lettre::error::Error> {
    let mut builder = Message::builder()
        .from(from.mailbox().clone())
        .subject(subject(&message.phone_no, &delivery.channel_name))
        .message_id(Some(format!(
            "<{}.stored@{}>",
            delivery.uid.simple(),
            from.domain()
        )))
        .header(ContentType::TEXT_PLAIN);
    for mailbox in to {
        builder = builder.to(mailbox);
    }
    builder.body(body(message, &delivery.channel_name, console_url))
}

/// `Call back request: <phone> (<channel name>)`, on one line whatever the name holds.
pub fn subject(phone: &str, channel: &str) -> String {
    one_line(&format!("Call back request: {phone} ({channel})"))
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Times as people read them in an e-mail, in UTC like the rest of the service.
fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The plain-text body: who to call, what they wrote, when, and where to act on it.
pub fn body(message: &MessageRow, channel: &str, console_url: &str) -> String {
    let callback = message.callback_after.map_or_else(
        || "as soon as possible".to_owned(),
        |at| format!("not before {}", when(at)),
    );
    let text: String = message
        .leave_message
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect();
    format!(
        "A visitor asked to be called back.\n\
         \n\
         Phone:      {phone}\n\
         Name:       {name}\n\
         Channel:    {channel}\n\
         Call back:  {callback}\n\
         Due:        {due}\n\
         Received:   {received}\n\
         Message id: {id}\n\
         \n\
         Message:\n\
         {text}\
         \n\
         Claim it in the console: {console_url}\n",
        phone = message.phone_no,
        name = one_line(&message.user_name),
        channel = one_line(channel),
        due = when(message.due_at),
        received = when(message.received_at),
        id = message.id,
    )
}

/// Runs until aborted: takes due e-mails, sends them, records each result.
pub async fn worker(store: Store, mailer: Mailer, settings: WebhookSettings) {
    // Long enough that a try still under way is never taken by another instance.
    let lease = SEND_TIMEOUT + Duration::from_secs(30);
    loop {
        let batch = match store.take_email_deliveries(PER_SERVER, lease).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take e-mail deliveries");
                tokio::time::sleep(POLL * 4).await;
                continue;
            }
        };
        if batch.is_empty() {
            tokio::time::sleep(POLL).await;
            continue;
        }
        let tries = batch.into_iter().map(|delivery| {
            let (store, mailer) = (store.clone(), &mailer);
            async move {
                let outcome = mailer.send(&delivery).await;
                record(&store, &settings, &delivery, outcome).await;
            }
        });
        futures_util::future::join_all(tries).await;
    }
}

async fn record(
    store: &Store,
    settings: &WebhookSettings,
    delivery: &EmailDelivery,
    outcome: Outcome,
) {
    let event = delivery.event_id;
    let result = match outcome {
        Outcome::Sent => {
            crate::counters::email_delivery("delivered");
            store.email_delivered(event).await
        }
        Outcome::Dropped(why) => {
            tracing::info!(
                event,
                message_id = delivery.message_id,
                why,
                "e-mail dropped"
            );
            store.email_dropped(event, why).await
        }
        Outcome::Failed(error) => {
            let wait = backoff(settings.retry_base, delivery.tries);
            match store
                .email_retry_later(event, &error, wait, settings.max_age)
                .await
            {
                Ok(gave_up) => {
                    crate::counters::email_delivery(if gave_up { "failed" } else { "retry" });
                    if gave_up {
                        tracing::warn!(event, %error, "e-mail delivery gave up");
                    } else {
                        tracing::info!(event, %error, retry_in = ?wait, "e-mail delivery failed; will retry");
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        // The lease runs out and the e-mail is tried again: at least once, never lost.
        tracing::warn!(event, error = %e, "cannot record an e-mail delivery's result");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(callback_after: Option<DateTime<Utc>>) -> MessageRow {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        MessageRow {
            id: 42,
            channel_id: uuid::Uuid::nil(),
            user_id: "u".to_owned(),
            user_name: "Ann\nLee".to_owned(),
            phone_no: "+1 555 0107".to_owned(),
            leave_message: "Please call\nabout my order".to_owned(),
            client_ip: "192.0.2.1".to_owned(),
            user_agent: None,
            received_at: at("2026-12-01T09:14:03Z"),
            status: "pending".to_owned(),
            assigned_to: None,
            assigned_at: None,
            processed_at: None,
            outcome: None,
            note: None,
            callback_after,
            due_at: callback_after.unwrap_or(at("2026-12-01T09:14:03Z")),
            overdue_at: at("2026-12-01T13:14:03Z"),
            overdue: false,
            attempts: 0,
            max_attempts: 3,
        }
    }

    #[test]
    fn the_body_says_who_what_when_and_where() {
        let body = body(&message(None), "Sales", "https://m.example.com/console");
        assert_eq!(
            body,
            "A visitor asked to be called back.\n\
             \n\
             Phone:      +1 555 0107\n\
             Name:       Ann Lee\n\
             Channel:    Sales\n\
             Call back:  as soon as possible\n\
             Due:        2026-12-01 09:14 UTC\n\
             Received:   2026-12-01 09:14 UTC\n\
             Message id: 42\n\
             \n\
             Message:\n\
             \x20 Please call\n\
             \x20 about my order\n\
             \n\
             Claim it in the console: https://m.example.com/console\n"
        );
        let later = DateTime::parse_from_rfc3339("2026-12-02T15:30:00+01:00")
            .unwrap()
            .with_timezone(&Utc);
        let body = super::body(&message(Some(later)), "Sales", "x");
        assert!(
            body.contains("Call back:  not before 2026-12-02 14:30 UTC\n"),
            "{body}"
        );
        assert!(
            body.contains("Due:        2026-12-02 14:30 UTC\n"),
            "{body}"
        );
    }

    #[test]
    fn the_subject_is_one_line() {
        assert_eq!(
            subject("+1 555 0107", "Sales\r\nBcc: x@example.com"),
            "Call back request: +1 555 0107 (Sales  Bcc: x@example.com)"
        );
    }
}
