//! Every command and flag. Each setting is a flag, an environment variable, or a line in `.env`,
//! in that order of precedence.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::Duration;
use clap::{Args, Parser, Subcommand};

use crate::domain::{PublicUrl, Sender, SmtpUrl, TrustedProxies};
use crate::settings::{EmailSettings, LogFormat, Settings, WebhookSettings};
use crate::store::DatabaseConfig;
use crate::store::channels::CallbackSettings;

#[derive(Debug, Parser)]
#[command(
    name = "leavemsg",
    version,
    about = "Takes \"leave a message / call me back\" requests from a contact center's web channel and hands them to agents.",
    long_about = "Takes \"leave a message / call me back\" requests from a contact center's web channel \
(a CC-Messaging compatible applyToken/doLeaveMessage interface) and hands them to agents.\n\n\
Without DATABASE_URL every command uses a private PostgreSQL cluster under LEAVEMSG_DATA_DIR, \
created on first use from the PostgreSQL server programs installed on this machine.\n\n\
Settings come from flags, then environment variables, then a .env file in the current folder. \
The server's own settings are listed by `leavemsg serve --help`."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command uses: where the database is, and how to log.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database and logging (every command)")]
pub struct GlobalArgs {
    /// PostgreSQL to use, e.g. postgres://user:pass@host/db?sslmode=verify-full. Unset: the
    /// embedded cluster.
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

    /// When leavemsg runs as root: the existing unprivileged OS user the embedded PostgreSQL
    /// runs as (leavemsg never creates users). Unset: `postgres`. Not used when not root.
    #[arg(long, env = "LEAVEMSG_PG_OS_USER", value_name = "USER", global = true)]
    pub pg_os_user: Option<String>,

    /// Log format.
    #[arg(
        long,
        env = "LEAVEMSG_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

impl GlobalArgs {
    /// The database every command uses.
    pub fn database(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.database_url.clone().filter(|u| !u.trim().is_empty()),
            data_dir: self.data_dir.clone(),
            pg_os_user: self.pg_os_user.clone().filter(|u| !u.is_empty()),
            max_connections: 16,
        }
    }
}

/// The server's own settings: `leavemsg serve --help`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ServeArgs {
    /// Address and port the HTTP server binds.
    #[arg(long, env = "LEAVEMSG_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The service's address as people reach it, e.g. https://messages.example.com behind a
    /// reverse proxy. Its origin counts as the service's own (the form's calls are accepted
    /// whatever Host the proxy sends). Default: http:// + the listen address.
    #[arg(long, env = "LEAVEMSG_PUBLIC_URL", value_name = "URL", value_parser = PublicUrl::parse)]
    pub public_url: Option<PublicUrl>,

    /// Comma-separated CIDRs of proxies whose X-Forwarded-For / X-Real-IP are believed.
    #[arg(long, env = "LEAVEMSG_TRUSTED_PROXIES", default_value = "",
          value_parser = TrustedProxies::parse)]
    pub trusted_proxies: TrustedProxies,

    /// Add `Secure` to the token cookie. Default: true when LEAVEMSG_PUBLIC_URL is https,
    /// false when it is http; without it, false when listening on loopback, else true.
    #[arg(long, env = "LEAVEMSG_COOKIE_SECURE")]
    pub cookie_secure: Option<bool>,

    /// Lifetime of a ccmessaging-token, in seconds (60 to 604800).
    #[arg(long, env = "LEAVEMSG_TOKEN_TTL_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u32).range(60..=604_800))]
    pub token_ttl_secs: u32,

    /// doLeaveMessage calls a minute per token; 0 means no limit.
    #[arg(long, env = "LEAVEMSG_RATE_PER_TOKEN", default_value_t = 10)]
    pub rate_per_token: u32,

    /// doLeaveMessage and applyToken calls a minute per client IP; 0 means no limit.
    #[arg(long, env = "LEAVEMSG_RATE_PER_IP", default_value_t = 120)]
    pub rate_per_ip: u32,

    /// After the first message of a batch arrives, wait this many milliseconds for more before
    /// writing (0: write at once; batches still form while the previous one commits).
    #[arg(
        long,
        env = "LEAVEMSG_BATCH_WINDOW_MS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=1000)
    )]
    pub batch_window_ms: u32,
    /// How long one webhook delivery may take, in seconds.
    #[arg(
        long,
        env = "LEAVEMSG_WEBHOOK_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=60)
    )]
    pub webhook_timeout_secs: u32,
    /// The first webhook retry's delay, in seconds; each next one doubles, up to an hour.
    #[arg(
        long,
        env = "LEAVEMSG_WEBHOOK_RETRY_BASE_SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=3600)
    )]
    pub webhook_retry_base_secs: u32,
    /// After this many seconds undelivered, a webhook delivery gives up (see `webhook failed`).
    #[arg(
        long,
        env = "LEAVEMSG_WEBHOOK_MAX_AGE_SECS",
        default_value_t = 86400,
        value_parser = clap::value_parser!(u32).range(10..=604_800)
    )]
    pub webhook_max_age_secs: u32,
    /// Mail server for e-mail to the team (channels' --notify-email): smtp://host:25 (no
    /// TLS), smtp://host:587?tls=required (STARTTLS) or smtps://user:password@host:465 (TLS);
    /// user and password percent-encoded. Unset: no e-mail is sent. Retries follow the webhook
    /// retry settings.
    #[arg(long, env = "LEAVEMSG_SMTP_URL", value_name = "URL", hide_env_values = true,
          value_parser = |s: &str| SmtpUrl::parse(s).map_err(|e| e.to_string()))]
    pub smtp_url: Option<SmtpUrl>,
    /// Sender of notification e-mails: an address, or Name <address>.
    #[arg(long, env = "LEAVEMSG_SMTP_FROM", value_name = "ADDRESS", default_value = Sender::DEFAULT,
          value_parser = |s: &str| Sender::parse(s).map_err(|e| e.to_string()))]
    pub smtp_from: Sender,
}

impl Settings {
    /// The server's settings from the global and `serve` flags.
    pub fn new(global: &GlobalArgs, serve: ServeArgs) -> Settings {
        let public_url = serve
            .public_url
            .unwrap_or_else(|| PublicUrl::from_listen(serve.listen));
        let cookie_secure = serve.cookie_secure.unwrap_or(if public_url.is_explicit() {
            public_url.is_https()
        } else {
            !serve.listen.ip().is_loopback()
        });
        Settings {
            database: global.database(),
            cookie_secure,
            listen: serve.listen,
            public_url,
            trusted_proxies: serve.trusted_proxies,
            token_ttl: Duration::seconds(i64::from(serve.token_ttl_secs)),
            rate_per_token: serve.rate_per_token,
            rate_per_ip: serve.rate_per_ip,
            log_format: global.log_format,
            batch_window: std::time::Duration::from_millis(u64::from(serve.batch_window_ms)),
            webhooks: WebhookSettings {
                timeout: std::time::Duration::from_secs(u64::from(serve.webhook_timeout_secs)),
                retry_base: std::time::Duration::from_secs(u64::from(
                    serve.webhook_retry_base_secs,
                )),
                max_age: std::time::Duration::from_secs(u64::from(serve.webhook_max_age_secs)),
            },
            email: EmailSettings {
                smtp: serve.smtp_url,
                from: serve.smtp_from,
            },
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (applies pending migrations first).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage web channel configurations.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Manage agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Manage webhook endpoints: signed events for every change of a message.
    #[command(subcommand)]
    Webhook(WebhookCommand),
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
    /// Ask a running server whether it is ready (GET /readyz): exit 0 if it answers 200, else
    /// non-zero with one line. Opens no database; for container health checks.
    Probe {
        /// The server's listen address; an unspecified one (0.0.0.0, ::) is asked on loopback.
        #[arg(long, env = "LEAVEMSG_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Give up after this many seconds (1-60).
        #[arg(long, default_value_t = 3,
              value_parser = clap::value_parser!(u64).range(1..=60))]
        timeout_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Subscribe an endpoint; prints its id, then its signing secret alone on the last line.
    Add {
        /// Where events are POSTed (http:// or https://).
        #[arg(long)]
        url: String,
        /// Only this channel's events (its Configuration ID); default: every channel's.
        #[arg(long, value_name = "ID")]
        channel: Option<String>,
        /// Only this event type (repeatable): message.stored, message.claimed,
        /// message.assigned, message.released, message.attempted, message.processed,
        /// message.erased. Default: every type.
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
    },
    /// List endpoints with their pending and failed deliveries (never a secret).
    List,
    /// Unsubscribe an endpoint; its undelivered events are dropped.
    Remove {
        /// The endpoint's id (from `webhook list`).
        id: String,
    },
    /// List deliveries that gave up, newest first.
    Failed {
        /// Only this endpoint's.
        id: Option<String>,
    },
    /// Queue a delivered or failed event again (its webhook-id, as `webhook failed` shows it).
    Redeliver {
        /// The event's webhook-id (evt_…).
        event_id: String,
        /// Only to this endpoint; default: every endpoint it went to.
        #[arg(long, value_name = "ID")]
        endpoint: Option<String>,
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
        #[command(flatten)]
        callbacks: CallbackArgs,
        /// An address that gets one e-mail per stored message (through LEAVEMSG_SMTP_URL).
        /// Repeat for several (at most 20).
        #[arg(long = "notify-email", value_name = "ADDR")]
        notify_emails: Vec<String>,
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
        /// Call attempts a message gets (1-10): the last unsuccessful one closes it as no_answer.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i16).range(1..=10))]
        max_attempts: Option<i16>,
        /// Minutes after an unsuccessful attempt until the message is due again (1-10080).
        #[arg(long, value_name = "M", value_parser = clap::value_parser!(i32).range(1..=10_080))]
        retry_minutes: Option<i32>,
        /// Service level: minutes after it is due until a message not processed is overdue
        /// (1-43200).
        #[arg(long, value_name = "M", value_parser = clap::value_parser!(i32).range(1..=43_200))]
        sla_minutes: Option<i32>,
        /// An address that gets one e-mail per stored message; repeat for several (at most
        /// 20). The list given replaces the channel's list.
        #[arg(
            long = "notify-email",
            value_name = "ADDR",
            conflicts_with = "no_notify_email"
        )]
        notify_emails: Vec<String>,
        /// Send no more e-mail about this channel's messages (e-mails not yet sent are not
        /// sent either).
        #[arg(long)]
        no_notify_email: bool,
    },
}

/// A new channel's callback settings (CONTRACT §3.1).
#[derive(Debug, Clone, Copy, Args)]
pub struct CallbackArgs {
    /// Call attempts a message gets (1-10): the last unsuccessful one closes it as no_answer.
    #[arg(long, value_name = "N", default_value_t = CallbackSettings::DEFAULT.max_attempts,
          value_parser = clap::value_parser!(i16).range(1..=10))]
    pub max_attempts: i16,
    /// Minutes after an unsuccessful attempt until the message is due again (1-10080).
    #[arg(long, value_name = "M", default_value_t = CallbackSettings::DEFAULT.retry_minutes,
          value_parser = clap::value_parser!(i32).range(1..=10_080))]
    pub retry_minutes: i32,
    /// Service level: minutes after it is due until a message not processed is overdue
    /// (1-43200).
    #[arg(long, value_name = "M", default_value_t = CallbackSettings::DEFAULT.sla_minutes,
          value_parser = clap::value_parser!(i32).range(1..=43_200))]
    pub sla_minutes: i32,
}

impl From<CallbackArgs> for CallbackSettings {
    fn from(a: CallbackArgs) -> Self {
        CallbackSettings {
            max_attempts: a.max_attempts,
            retry_minutes: a.retry_minutes,
            sla_minutes: a.sla_minutes,
        }
    }
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
        let mut argv = vec!["leavemsg", "serve"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        Settings::new(&cli.global, serve)
    }

    #[test]
    fn cookie_secure_defaults_follow_the_public_url_then_the_listen_address() {
        assert!(!parse(&["--listen", "127.0.0.1:8080"]).cookie_secure);
        assert!(!parse(&["--listen", "[::1]:8080"]).cookie_secure);
        assert!(parse(&["--listen", "0.0.0.0:8080"]).cookie_secure);
        assert!(!parse(&["--listen", "0.0.0.0:8080", "--cookie-secure", "false"]).cookie_secure);
        // Behind a TLS-terminating proxy on the same machine.
        let https = [
            "--listen",
            "127.0.0.1:8080",
            "--public-url",
            "https://m.example.com",
        ];
        assert!(parse(&https).cookie_secure);
        let http = [
            "--listen",
            "0.0.0.0:8080",
            "--public-url",
            "http://intranet:8080",
        ];
        assert!(!parse(&http).cookie_secure);
    }

    #[test]
    fn public_url_defaults_to_the_listen_address() {
        let s = parse(&["--listen", "0.0.0.0:9000"]);
        assert_eq!(s.public_url.as_str(), "http://0.0.0.0:9000");
        let s = parse(&["--public-url", "https://M.Example.com/"]);
        assert_eq!(s.public_url.as_str(), "https://m.example.com");
        assert!(Cli::try_parse_from(["leavemsg", "serve", "--public-url", "ftp://x"]).is_err());
    }

    #[test]
    fn flags_parse_and_bad_values_are_refused() {
        let s = parse(&["--trusted-proxies", "10.0.0.0/8", "--token-ttl-secs", "60"]);
        assert!(!s.trusted_proxies.is_empty());
        assert_eq!(s.token_ttl, Duration::seconds(60));
        for bad in [
            vec!["leavemsg", "serve", "--token-ttl-secs", "5"],
            vec!["leavemsg", "serve", "--trusted-proxies", "nonsense"],
            vec!["leavemsg", "serve", "--listen", "localhost"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err());
        }
    }

    #[test]
    fn e_mail_is_off_without_a_mail_server_and_bad_settings_are_refused() {
        let s = parse(&[]);
        assert_eq!(s.email.smtp, None);
        assert_eq!(s.email.from.to_string(), "leavemsg@localhost");
        let s = parse(&[
            "--smtp-url",
            "smtps://u:secret@mail.example.com",
            "--smtp-from",
            "Call backs <cb@example.com>",
        ]);
        let smtp = s.email.smtp.clone().unwrap();
        assert_eq!((smtp.host(), smtp.port()), ("mail.example.com", 465));
        assert!(!format!("{s:?}").contains("secret"));
        for bad in [
            ["--smtp-url", "http://mail.example.com"],
            ["--smtp-from", "not an address"],
        ] {
            let mut argv = vec!["leavemsg", "serve"];
            argv.extend(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_flags_belong_to_serve_only() {
        assert!(Cli::try_parse_from(["leavemsg", "--listen", "0.0.0.0:1", "serve"]).is_err());
        assert!(Cli::try_parse_from(["leavemsg", "migrate", "--rate-per-ip", "1"]).is_err());
        // The global ones go before or after the command.
        let cli = Cli::try_parse_from(["leavemsg", "migrate", "--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(cli.global.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn blank_database_url_means_embedded() {
        let cli = Cli::try_parse_from(["leavemsg", "--database-url", " ", "migrate"]).unwrap();
        assert!(cli.global.database().url.is_none());
    }
}
