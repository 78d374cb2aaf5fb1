//! Every command and flag. Each setting is a flag, an environment variable, or a line in `.env`,
//! in that order of precedence.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::Duration;
use clap::{Args, Parser, Subcommand};

use crate::domain::TrustedProxies;
use crate::settings::{LogFormat, Settings};
use crate::store::DatabaseConfig;

#[derive(Debug, Parser)]
#[command(
    name = "leavemsg",
    version,
    about = "Takes \"leave a message / call me back\" requests from a contact center's web channel and hands them to agents.",
    long_about = "Takes \"leave a message / call me back\" requests from a contact center's web channel \
(a CC-Messaging compatible applyToken/doLeaveMessage interface) and hands them to agents.\n\n\
Without DATABASE_URL every command uses a private PostgreSQL cluster under LEAVEMSG_DATA_DIR, \
created on first use from the PostgreSQL server programs installed on this machine.\n\n\
Settings come from flags, then environment variables, then a .env file in the current folder."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// PostgreSQL to use, e.g. postgres://user:pass@host/db. Unset: the embedded cluster.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Where the embedded PostgreSQL keeps its cluster (used only without DATABASE_URL).
    #[arg(
        long,
        env = "LEAVEMSG_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Address and port the HTTP server binds.
    #[arg(
        long,
        env = "LEAVEMSG_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Comma-separated CIDRs of proxies whose X-Forwarded-For / X-Real-IP are believed.
    #[arg(long, env = "LEAVEMSG_TRUSTED_PROXIES", default_value = "", global = true,
          value_parser = TrustedProxies::parse)]
    pub trusted_proxies: TrustedProxies,

    /// Lifetime of a ccmessaging-token, in seconds (60 to 604800).
    #[arg(long, env = "LEAVEMSG_TOKEN_TTL_SECS", default_value_t = 3600, global = true,
          value_parser = clap::value_parser!(u32).range(60..=604_800))]
    pub token_ttl_secs: u32,

    /// Add `Secure` to the token cookie. Default: false when listening on loopback, else true.
    #[arg(long, env = "LEAVEMSG_COOKIE_SECURE", global = true)]
    pub cookie_secure: Option<bool>,

    /// doLeaveMessage calls a minute per token; 0 means no limit.
    #[arg(
        long,
        env = "LEAVEMSG_RATE_PER_TOKEN",
        default_value_t = 10,
        global = true
    )]
    pub rate_per_token: u32,

    /// doLeaveMessage and applyToken calls a minute per client IP; 0 means no limit.
    #[arg(
        long,
        env = "LEAVEMSG_RATE_PER_IP",
        default_value_t = 120,
        global = true
    )]
    pub rate_per_ip: u32,

    /// After the first message of a batch arrives, wait this many milliseconds for more before
    /// writing (0: write at once; batches still form while the previous one commits).
    #[arg(
        long,
        env = "LEAVEMSG_BATCH_WINDOW_MS",
        default_value_t = 0,
        global = true,
        value_parser = clap::value_parser!(u32).range(0..=1000)
    )]
    pub batch_window_ms: u32,

    /// Log format.
    #[arg(
        long,
        env = "LEAVEMSG_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

impl From<SettingsArgs> for Settings {
    fn from(args: SettingsArgs) -> Self {
        Settings {
            database: DatabaseConfig {
                url: args.database_url.filter(|u| !u.trim().is_empty()),
                data_dir: args.data_dir,
                max_connections: 16,
            },
            cookie_secure: args
                .cookie_secure
                .unwrap_or(!args.listen.ip().is_loopback()),
            listen: args.listen,
            trusted_proxies: args.trusted_proxies,
            token_ttl: Duration::seconds(i64::from(args.token_ttl_secs)),
            rate_per_token: args.rate_per_token,
            rate_per_ip: args.rate_per_ip,
            log_format: args.log_format,
            batch_window: std::time::Duration::from_millis(u64::from(args.batch_window_ms)),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (applies pending migrations first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage web channel configurations.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Manage agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Delete processed messages older than a number of days; prints how many.
    Purge {
        /// Age in days, counted from when the message was received.
        #[arg(long, value_name = "DAYS")]
        older_than: u32,
    },
    /// Delete every message left with a phone number (privacy requests); prints how many.
    Erase {
        /// The phone number, in any formatting: only its digits are compared.
        #[arg(long, value_name = "NUMBER")]
        phone: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Create a web channel; prints its Configuration ID alone on the last line.
    Create {
        /// Name shown to agents and operators.
        #[arg(long)]
        name: String,
        /// A web origin (e.g. https://www.example.com) whose pages may call the visitor
        /// interface from the browser. Repeat for several.
        #[arg(long = "origin", value_name = "URL")]
        origins: Vec<String>,
        /// Issue the token cookie as SameSite=None; Secure, for sites embedding the
        /// interface cross-site.
        #[arg(long)]
        cross_site: bool,
        /// Text shown above the visitor form.
        #[arg(long, value_name = "TEXT")]
        prompt: Option<String>,
    },
    /// List web channels with every setting.
    List,
    /// Disable a channel: its tokens stop working at once and applyToken is refused.
    Disable {
        /// Configuration ID.
        id: String,
    },
    /// Change a channel's settings; what is not named stays as it was. Every instance follows
    /// at once (the form page, CORS, the next token's cookie).
    Update {
        /// Configuration ID.
        id: String,
        /// New name (1-200 characters).
        #[arg(long)]
        name: Option<String>,
        /// New text above the visitor form; an empty text brings back the default.
        #[arg(long, value_name = "TEXT")]
        prompt: Option<String>,
        /// A web origin whose pages may call the visitor interface; repeat for several. The
        /// list given replaces the channel's list.
        #[arg(long = "origin", value_name = "URL", conflicts_with = "no_origins")]
        origins: Vec<String>,
        /// Remove every origin: only the service's own pages and callers without an Origin
        /// header remain.
        #[arg(long)]
        no_origins: bool,
        /// true: the token cookie is SameSite=None; Secure (for sites embedding the interface
        /// cross-site); false: SameSite=Lax.
        #[arg(long, value_name = "true|false")]
        cross_site: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent; prints its API key alone on the last line (shown once, stored as a hash).
    Create {
        /// Unique agent name.
        #[arg(long)]
        name: String,
        /// May assign messages and act on messages assigned to others.
        #[arg(long)]
        admin: bool,
    },
    /// List agents: name, role, state, when created and last seen (never a key).
    List,
    /// Disable an agent: its key is refused at once on every instance, and the messages
    /// assigned to it go back to pending.
    Disable {
        /// The agent's name.
        name: String,
    },
    /// Enable a disabled agent with a new API key, printed alone on the last line; the key it
    /// had before is never accepted again.
    Enable {
        /// The agent's name.
        name: String,
    },
    /// Give an enabled agent a new API key, printed alone on the last line; the old key is
    /// refused at once on every instance.
    RotateKey {
        /// The agent's name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Settings {
        let mut argv = vec!["leavemsg"];
        argv.extend_from_slice(args);
        argv.push("migrate");
        Cli::try_parse_from(argv).unwrap().settings.into()
    }

    #[test]
    fn cookie_secure_defaults_follow_the_listen_address() {
        assert!(!parse(&["--listen", "127.0.0.1:8080"]).cookie_secure);
        assert!(!parse(&["--listen", "[::1]:8080"]).cookie_secure);
        assert!(parse(&["--listen", "0.0.0.0:8080"]).cookie_secure);
        assert!(!parse(&["--listen", "0.0.0.0:8080", "--cookie-secure", "false"]).cookie_secure);
    }

    #[test]
    fn flags_parse_and_bad_values_are_refused() {
        let s = parse(&["--trusted-proxies", "10.0.0.0/8", "--token-ttl-secs", "60"]);
        assert!(!s.trusted_proxies.is_empty());
        assert_eq!(s.token_ttl, Duration::seconds(60));
        for bad in [
            vec!["leavemsg", "--token-ttl-secs", "5", "serve"],
            vec!["leavemsg", "--trusted-proxies", "nonsense", "serve"],
            vec!["leavemsg", "--listen", "localhost", "serve"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err());
        }
    }

    #[test]
    fn blank_database_url_means_embedded() {
        assert!(parse(&["--database-url", " "]).database.url.is_none());
    }
}
