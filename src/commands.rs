//! The command-line commands other than the server itself.

mod agents;
mod channels;
mod webhooks;

use crate::cli::{Cli, Command};
use crate::domain::PhoneNo;
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
        Command::Channel(command) => channels::run(&store, command).await?,
        Command::Agent(command) => agents::run(&store, command).await?,
        Command::Webhook(command) => webhooks::run(&store, command).await?,
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
