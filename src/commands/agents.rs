//! `leavemsg agent …`: agents and their API keys.
//!
//! A disabled agent comes back only through `agent enable`, which gives it a new key: the key
//! it had when it was disabled is never accepted again, and `rotate-key` refuses a disabled
//! agent rather than hand out a key that would not let it in.

use anyhow::bail;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::cli::AgentCommand;
use crate::credentials::AgentKey;
use crate::domain::AgentName;
use crate::store::Store;
use crate::store::agents::{Disabled, KeyChange, NewAgent, NewKey};

pub async fn run(store: &Store, command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Create { name, admin } => {
            let name = AgentName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let name = name.as_str();
            let key = AgentKey::generate();
            let new = NewAgent {
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
        AgentCommand::List => list(store).await?,
        AgentCommand::Disable { name } => {
            let name = agent_name(&name)?;
            match store.disable_agent(&name).await? {
                Disabled::NoSuchAgent => bail!("{}", no_such_agent(&name)),
                Disabled::Done { already, released } => {
                    let name = name.as_str();
                    if already {
                        println!("agent {name:?} was disabled already");
                    } else {
                        println!("disabled agent {name:?}: its key no longer works");
                    }
                    println!("{released} message(s) assigned to it went back to pending");
                }
            }
        }
        AgentCommand::Enable { name } => {
            let name = agent_name(&name)?;
            let key = AgentKey::generate();
            let hash = key.secret_hash();
            let new = NewKey {
                key_id: key.id(),
                key_hash: &hash,
            };
            match store.enable_agent(&name, &new).await? {
                KeyChange::NoSuchAgent => bail!("{}", no_such_agent(&name)),
                KeyChange::Refused => bail!(
                    "agent {:?} is enabled; `leavemsg agent rotate-key` gives it a new key",
                    name.as_str()
                ),
                KeyChange::Done => {
                    println!(
                        "enabled agent {:?} with a new API key (its old key stays refused); \
                         it is shown once, keep it safe:",
                        name.as_str()
                    );
                    println!("{}", key.expose());
                }
            }
        }
        AgentCommand::RotateKey { name } => {
            let name = agent_name(&name)?;
            let key = AgentKey::generate();
            let hash = key.secret_hash();
            let new = NewKey {
                key_id: key.id(),
                key_hash: &hash,
            };
            match store.rotate_agent_key(&name, &new).await? {
                KeyChange::NoSuchAgent => bail!("{}", no_such_agent(&name)),
                KeyChange::Refused => bail!(
                    "agent {:?} is disabled; `leavemsg agent enable` gives it a new key and \
                     lets it in again",
                    name.as_str()
                ),
                KeyChange::Done => {
                    println!(
                        "new API key for agent {:?}; the old one no longer works. It is shown \
                         once, keep it safe:",
                        name.as_str()
                    );
                    println!("{}", key.expose());
                }
            }
        }
    }
    Ok(())
}

async fn list(store: &Store) -> anyhow::Result<()> {
    let agents = store.agents().await?;
    let width = agents
        .iter()
        .map(|a| a.name.chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    println!(
        "{:<width$}  {:<5}  {:<8}  {:<20}  LAST SEEN",
        "NAME", "ROLE", "STATE", "CREATED"
    );
    for a in agents {
        let role = if a.is_admin { "admin" } else { "agent" };
        let state = if a.enabled { "enabled" } else { "disabled" };
        let seen = a.last_seen_at.map_or_else(|| "never".to_owned(), time);
        println!(
            "{:<width$}  {role:<5}  {state:<8}  {:<20}  {seen}",
            a.name,
            time(a.created_at)
        );
    }
    Ok(())
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn agent_name(name: &str) -> anyhow::Result<AgentName> {
    AgentName::parse(name).map_err(|e| anyhow::anyhow!("NAME: {e}"))
}

fn no_such_agent(name: &AgentName) -> String {
    format!("no agent is named {:?}", name.as_str())
}
