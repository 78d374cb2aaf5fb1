//! The command-line commands other than the server itself.

use crate::cli::{AgentCommand, ChannelCommand, Cli, Command};
use crate::credentials::AgentKey;
use crate::domain::{AgentName, ChannelId, PhoneNo, WebOrigin};
use crate::probe;
use crate::settings::Settings;
use crate::startup::Application;
use crate::store::{self, Database, Store};

/// Runs one command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Before anything that opens the database: a health check must not start the embedded
    // cluster, nor wait for a database at all.
    if let Command::Probe {
        listen,
        timeout_secs,
    } = cli.command
    {
        let url = probe::probe(listen, std::time::Duration::from_secs(timeout_secs)).await?;
        println!("ready: {url} answered 200");
        return Ok(());
    }
    if let Command::Serve(serve) = cli.command {
        let settings = Settings::new(&cli.global, serve);
        let listen = settings.listen;
        let app = Application::build(settings).await?;
        tracing::info!(%listen, port = app.port(), "leavemsg serving");
        app.run_until_stopped().await?;
        return Ok(());
    }
    let database = Database::open(&cli.global.database()).await?;
    let result = run_on(&database, cli.command).await;
    database.close(std::time::Duration::ZERO).await;
    result
}

async fn run_on(database: &Database, command: Command) -> anyhow::Result<()> {
    let pool = &database.pool;
    if let Command::Migrate = command {
        store::migrate(pool).await?;
        println!("database is up to date");
        return Ok(());
    }
    store::require_migrated(pool).await?;
    let store = Store::new(pool.clone());
    match command {
        Command::Serve(_) | Command::Migrate | Command::Probe { .. } => {
            unreachable!("handled above")
        }
        Command::Channel(ChannelCommand::Create {
            name,
            origins,
            cross_site,
            prompt,
        }) => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 200 {
                anyhow::bail!("--name must be 1 to 200 characters");
            }
            let origins = origins
                .iter()
                .map(|o| WebOrigin::parse(o).map(WebOrigin::into_string))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--{e}"))?;
            let prompt = prompt.as_deref().map(str::trim).filter(|p| !p.is_empty());
            let new = store::channels::NewChannel {
                name,
                origins: &origins,
                cross_site,
                prompt,
            };
            let id = store.create_channel(&new).await?;
            println!("created web channel {name:?}");
            println!("{id}");
        }
        Command::Channel(ChannelCommand::List) => {
            let channels = store.channels().await?;
            println!(
                "{:<36}  {:<8}  {:<10}  NAME / ORIGINS",
                "CONFIGURATION ID", "STATE", "COOKIE"
            );
            for c in channels {
                let state = if c.enabled { "enabled" } else { "disabled" };
                let cookie = if c.cross_site {
                    "cross-site"
                } else {
                    "same-site"
                };
                let origins = if c.origins.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.origins.join(", "))
                };
                println!(
                    "{:<36}  {state:<8}  {cookie:<10}  {}{origins}",
                    c.id, c.name
                );
            }
        }
        Command::Channel(ChannelCommand::Disable { id }) => {
            let id = ChannelId::parse(&id).map_err(|e| anyhow::anyhow!("{e}"))?;
            if !store.disable_channel(id).await? {
                anyhow::bail!("no web channel has Configuration ID {id}");
            }
            println!("disabled web channel {id}: its tokens no longer work");
        }
        Command::Agent(AgentCommand::Create { name, admin }) => {
            let name = AgentName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let name = name.as_str();
            let key = AgentKey::generate();
            let new = store::agents::NewAgent {
                name,
                is_admin: admin,
                key_id: key.id(),
                key_hash: &key.secret_hash(),
            };
            store.create_agent(&new).await?;
            let role = if admin { "admin" } else { "agent" };
            println!("created {role} {name:?}; this API key is shown once, keep it safe:");
            println!("{}", key.expose());
        }
        Command::Purge { older_than } => {
            let n = store.purge_processed_older_than(older_than).await?;
            println!("deleted {n} processed message(s) older than {older_than} day(s)");
        }
        Command::Erase { phone } => {
            let phone = PhoneNo::parse(&phone).map_err(|e| anyhow::anyhow!("--phone: {e}"))?;
            let n = store.erase_phone(&phone).await?;
            println!("deleted {n} message(s) left with that phone number");
        }
    }
    Ok(())
}
