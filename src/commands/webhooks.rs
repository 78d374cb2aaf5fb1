//! `leavemsg webhook …`: endpoints that get a signed POST for every change of a message
//! (CONTRACT §7.1), and the deliveries that gave up.

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::cli::WebhookCommand;
use crate::credentials::WebhookSecret;
use crate::domain::{ChannelId, EndpointUrl, EventId, EventTypes};
use crate::store::Store;
use crate::store::webhooks::{NewEndpoint, Subscribed};

pub async fn run(store: &Store, command: WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Add {
            url,
            channel,
            events,
        } => {
            let url = EndpointUrl::parse(&url).map_err(|e| anyhow::anyhow!("--{e}"))?;
            let channel = channel
                .map(|c| ChannelId::parse(&c).map_err(|e| anyhow::anyhow!("--channel: {e}")))
                .transpose()?;
            let events =
                EventTypes::parse("--event", &events).map_err(|e| anyhow::anyhow!("{e}"))?;
            let secret = WebhookSecret::generate();
            let added = store
                .create_webhook(&NewEndpoint {
                    url: &url,
                    channel,
                    events: &events,
                    secret: &secret,
                })
                .await?;
            let endpoint = match added {
                Subscribed::Added(endpoint) => endpoint,
                Subscribed::NoSuchChannel => {
                    bail!("--channel: no channel has that Configuration ID")
                }
            };
            println!("added webhook endpoint {}", endpoint.id);
            println!("its signing secret is shown once, keep it safe:");
            println!("{}", secret.expose());
        }
        WebhookCommand::List => list(store).await?,
        WebhookCommand::Remove { id } => {
            let id = endpoint_id(&id)?;
            if !store.remove_webhook(id).await? {
                bail!("no webhook endpoint has the id {id}");
            }
            println!("removed webhook endpoint {id}");
        }
        WebhookCommand::Failed { id } => {
            let id = id.as_deref().map(endpoint_id).transpose()?;
            let failed = store.failed_deliveries(id).await?;
            println!(
                "ENDPOINT                              EVENT                                 TYPE               MESSAGE  TRIES  FAILED AT             LAST ERROR"
            );
            for f in failed {
                println!(
                    "{}  {}  {:<17}  {:>7}  {:>5}  {:<20}  {}",
                    f.endpoint_id,
                    EventId::from_uuid(f.uid),
                    f.event_type,
                    f.message_id,
                    f.tries,
                    f.failed_at.map_or_else(String::new, time),
                    f.last_error.unwrap_or_default()
                );
            }
        }
        WebhookCommand::Redeliver { event_id, endpoint } => {
            let event = EventId::parse(&event_id).with_context(|| {
                format!(
                    "EVENT_ID: {event_id:?} is not an event's webhook-id (evt_ and 32 hex digits)"
                )
            })?;
            let endpoint = endpoint.as_deref().map(endpoint_id).transpose()?;
            let queued = store.redeliver(event, endpoint).await?;
            if queued == 0 {
                bail!("no delivered or failed delivery of {event_id} to redeliver");
            }
            println!("queued {queued} delivery(ies) of {event_id} again");
        }
    }
    Ok(())
}

async fn list(store: &Store) -> anyhow::Result<()> {
    println!(
        "ID                                    CHANNEL                               EVENTS  PENDING  FAILED  CREATED               URL"
    );
    for w in store.webhooks().await? {
        let channel = w
            .channel_id
            .map_or_else(|| "all".to_owned(), |c| c.to_string());
        let events = if w.events.is_empty() {
            "all".to_owned()
        } else {
            w.events.join(",")
        };
        println!(
            "{}  {channel:<36}  {events}  {:>7}  {:>6}  {:<20}  {}",
            w.id,
            w.pending,
            w.failed,
            time(w.created_at),
            w.url
        );
    }
    Ok(())
}

fn endpoint_id(text: &str) -> anyhow::Result<Uuid> {
    Uuid::try_parse(text.trim())
        .map_err(|_| anyhow::anyhow!("{text:?} is not a webhook endpoint id (see `webhook list`)"))
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
