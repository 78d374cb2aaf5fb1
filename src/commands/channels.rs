//! `leavemsg channel …`: web channel configurations.

use anyhow::bail;

use crate::cli::ChannelCommand;
use crate::domain::{ChannelId, EmailAddress, WebOrigin, notify_list};
use crate::store::Store;
use crate::store::channels::{CallbackSettings, Channel, ChannelUpdate, NewChannel};

pub async fn run(store: &Store, command: ChannelCommand) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Create {
            name,
            origins,
            cross_site,
            prompt,
            callbacks,
            notify_emails,
        } => {
            let name = channel_name(&name)?;
            let origins = web_origins(&origins)?;
            let notify_emails = notify_addresses(&notify_emails)?;
            let new = NewChannel {
                name,
                origins: &origins,
                cross_site,
                prompt: prompt.as_deref().and_then(non_blank),
                callbacks: callbacks.into(),
                notify_emails: &notify_emails,
            };
            let id = store.create_channel(&new).await?;
            println!("created web channel {name:?}");
            println!("{id}");
        }
        ChannelCommand::List => {
            let channels = store.channels().await?;
            println!(
                "{:<36}  {:<8}  {:<10}  NAME / ORIGINS / PROMPT / CALLBACKS / NOTIFY",
                "CONFIGURATION ID", "STATE", "COOKIE"
            );
            for c in channels {
                print_channel(&c);
            }
        }
        ChannelCommand::Disable { id } => {
            let id = configuration_id(&id)?;
            if !store.disable_channel(id).await? {
                bail!("no web channel has Configuration ID {id}");
            }
            println!("disabled web channel {id}: its tokens no longer work");
        }
        ChannelCommand::Update {
            id,
            name,
            prompt,
            origins,
            no_origins,
            cross_site,
            max_attempts,
            retry_minutes,
            sla_minutes,
            notify_emails,
            no_notify_email,
        } => {
            let id = configuration_id(&id)?;
            let name = name.as_deref().map(channel_name).transpose()?;
            let origins = match (no_origins, origins.is_empty()) {
                (true, _) => Some(Vec::new()),
                (false, false) => Some(web_origins(&origins)?),
                (false, true) => None,
            };
            let notify_emails = match (no_notify_email, notify_emails.is_empty()) {
                (true, _) => Some(Vec::new()),
                (false, false) => Some(notify_addresses(&notify_emails)?),
                (false, true) => None,
            };
            let change = ChannelUpdate {
                name,
                prompt: prompt.as_deref().map(non_blank),
                origins: origins.as_deref(),
                cross_site,
                max_attempts,
                retry_minutes,
                sla_minutes,
                notify_emails: notify_emails.as_deref(),
            };
            if change.name.is_none()
                && change.prompt.is_none()
                && change.origins.is_none()
                && change.cross_site.is_none()
                && change.max_attempts.is_none()
                && change.retry_minutes.is_none()
                && change.sla_minutes.is_none()
                && change.notify_emails.is_none()
            {
                bail!(
                    "nothing to change: give at least one of --name, --prompt, --origin, \
                     --no-origins, --cross-site, --max-attempts, --retry-minutes, --sla-minutes, \
                     --notify-email, --no-notify-email"
                );
            }
            let Some(channel) = store.update_channel(id, &change).await? else {
                bail!("no web channel has Configuration ID {id}");
            };
            println!("updated web channel {id}; every instance uses its new settings now:");
            print_channel(&channel);
        }
    }
    Ok(())
}

fn configuration_id(id: &str) -> anyhow::Result<ChannelId> {
    ChannelId::parse(id).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A channel's name, trimmed: 1 to 200 characters.
fn channel_name(name: &str) -> anyhow::Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        bail!("--name must be 1 to 200 characters");
    }
    Ok(name)
}

/// Origins as channels store them (lower-case scheme and host, no default port, no slash).
fn web_origins(origins: &[String]) -> anyhow::Result<Vec<String>> {
    origins
        .iter()
        .map(|o| WebOrigin::parse(o).map(WebOrigin::into_string))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--{e}"))
}

/// Addresses to notify, as channels store them (trimmed, repeats dropped).
fn notify_addresses(addresses: &[String]) -> anyhow::Result<Vec<String>> {
    Ok(notify_list(addresses)
        .map_err(|e| anyhow::anyhow!("--notify-email: {e}"))?
        .into_iter()
        .map(EmailAddress::into_string)
        .collect())
}

/// A prompt, trimmed; `None` when blank (the default prompt).
fn non_blank(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|t| !t.is_empty())
}

/// One channel: its id, state and cookie, then its name and origins; its prompt on a line of
/// its own (quoted, so that line breaks and control characters show as escapes); its callback
/// settings on another, named as their flags are; the addresses it notifies on a last one.
fn print_channel(c: &Channel) {
    let state = if c.enabled { "enabled" } else { "disabled" };
    let cookie = if c.cross_site {
        "cross-site"
    } else {
        "same-site"
    };
    let origins = if c.origins.is_empty() {
        " (no origins)".to_owned()
    } else {
        format!(" ({})", c.origins.join(", "))
    };
    println!(
        "{:<36}  {state:<8}  {cookie:<10}  {}{origins}",
        c.id, c.name
    );
    match &c.prompt {
        Some(prompt) => println!("{:<62}prompt: {prompt:?}", ""),
        None => println!("{:<62}prompt: (default)", ""),
    }
    let CallbackSettings {
        max_attempts,
        retry_minutes,
        sla_minutes,
    } = c.callbacks;
    println!(
        "{:<62}callbacks: max-attempts {max_attempts}, retry-minutes {retry_minutes}, \
         sla-minutes {sla_minutes}",
        ""
    );
    if c.notify_emails.is_empty() {
        println!("{:<62}notify-email: (none)", "");
    } else {
        println!("{:<62}notify-email: {}", "", c.notify_emails.join(", "));
    }
}
