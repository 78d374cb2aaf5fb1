//! `leavemsg agent …`: agents and their API keys.

use crate::cli::AgentCommand;
use crate::credentials::AgentKey;
use crate::domain::AgentName;
use crate::store::Store;
use crate::store::agents::NewAgent;

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
    }
    Ok(())
}
