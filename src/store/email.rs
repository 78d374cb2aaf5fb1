//! E-mail to the team (CONTRACT §7.2): the e-mail deliveries of the outbox. The database writes
//! one with each message.stored event of a channel that has addresses (see the e-mail
//! migration); here the dispatchers take what is due and record how each try went, with the
//! same lease, retry and give-up rules as webhook deliveries.

use uuid::Uuid;

use super::webhooks::message_of;
use super::{MessageRow, Store, StoreError};

/// One e-mail to send, taken by a dispatcher for one try.
#[derive(Debug, Clone)]
pub struct EmailDelivery {
    pub event_id: i64,
    /// The event's uid: the e-mail's Message-ID is made from it, the same on every try.
    pub uid: Uuid,
    pub message_id: i64,
    /// The message as it was stored; `None` once it was erased or purged (nothing is sent).
    pub message: Option<MessageRow>,
    pub channel_name: String,
    /// The addresses the channel has now: an e-mail goes where the channel says when it is
    /// sent, so a corrected address also reaches the e-mails still waiting.
    pub to: Vec<String>,
    /// This try's number, from 1.
    pub tries: i32,
}

impl Store {
    /// Takes up to `limit` due e-mail deliveries for one try each: they are not due again until
    /// `lease` has passed, so no other dispatcher takes them meanwhile (and if this one dies
    /// mid-try, another takes them after it).
    pub async fn take_email_deliveries(
        &self,
        limit: i64,
        lease: std::time::Duration,
    ) -> Result<Vec<EmailDelivery>, StoreError> {
        let rows = sqlx::query!(
            r#"WITH due AS (
                   SELECT d.event_id
                   FROM email_delivery d
                   WHERE d.status = 'pending' AND d.next_at <= now()
                   ORDER BY d.next_at, d.event_id
                   LIMIT $1
                   FOR UPDATE SKIP LOCKED
               ), taken AS (
                   UPDATE email_delivery d
                   SET next_at = clock_timestamp() + make_interval(secs => $2), tries = d.tries + 1
                   FROM due
                   WHERE d.event_id = due.event_id
                   RETURNING d.event_id, d.tries
               )
               SELECT t.event_id AS "event_id!", t.tries AS "tries!", e.uid, e.message_id,
                      e.data, c.name AS channel_name, c.notify_emails
               FROM taken t
               JOIN outbox_event e ON e.id = t.event_id
               JOIN web_channel c ON c.id = e.channel_id
               ORDER BY t.event_id"#,
            limit,
            lease.as_secs_f64(),
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                let message = r.data.map(message_of).transpose()?.map(|(m, _)| m);
                Ok(EmailDelivery {
                    event_id: r.event_id,
                    uid: r.uid,
                    message_id: r.message_id,
                    message,
                    channel_name: r.channel_name,
                    to: r.notify_emails,
                    tries: r.tries,
                })
            })
            .collect()
    }

    /// The mail server accepted the e-mail.
    pub async fn email_delivered(&self, event: i64) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE email_delivery
             SET status = 'delivered', done_at = now(), last_error = NULL
             WHERE event_id = $1 AND status = 'pending'",
            event
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Nothing is to be sent (the message was erased, or the channel has no address left):
    /// done, with the reason.
    pub async fn email_dropped(&self, event: i64, why: &str) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE email_delivery
             SET status = 'dropped', done_at = now(), last_error = left($2, 500)
             WHERE event_id = $1 AND status = 'pending'",
            event,
            why
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A try failed: due again after `retry_in`, or failed for good once the delivery has
    /// waited `max_age` since it was queued (the last try is made at that age), as webhook
    /// deliveries do. Returns true if it gave up.
    pub async fn email_retry_later(
        &self,
        event: i64,
        error: &str,
        retry_in: std::time::Duration,
        max_age: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let gave_up = sqlx::query_scalar!(
            r#"UPDATE email_delivery d
               SET last_error = left($2, 500),
                   status = CASE WHEN now() >= d.since + make_interval(secs => $4)
                                 THEN 'failed' ELSE 'pending' END,
                   done_at = CASE WHEN now() >= d.since + make_interval(secs => $4)
                                  THEN now() END,
                   next_at = least(now() + make_interval(secs => $3),
                                   d.since + make_interval(secs => $4))
               WHERE d.event_id = $1 AND d.status = 'pending'
               RETURNING d.status = 'failed' AS "failed!""#,
            event,
            error,
            retry_in.as_secs_f64(),
            max_age.as_secs_f64(),
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(gave_up.unwrap_or(false))
    }
}
