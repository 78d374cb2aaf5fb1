//! One typed set of settings, read once and passed down.

use std::net::SocketAddr;

use chrono::Duration;

use crate::cli::{LogFormat, SettingsArgs};
use crate::domain::TrustedProxies;
use crate::store::DatabaseConfig;

#[derive(Clone)]
pub struct Settings {
    pub database: DatabaseConfig,
    pub listen: SocketAddr,
    pub trusted_proxies: TrustedProxies,
    pub token_ttl: Duration,
    pub cookie_secure: bool,
    pub rate_per_token: u32,
    pub rate_per_ip: u32,
    pub log_format: LogFormat,
    /// How long a writer gathers a batch after its first message (zero: not at all).
    pub batch_window: std::time::Duration,
}

impl std::fmt::Debug for Settings {
    // The database URL may hold a password: DatabaseConfig's Debug hides it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database", &self.database)
            .field("listen", &self.listen)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("token_ttl", &self.token_ttl)
            .field("cookie_secure", &self.cookie_secure)
            .field("rate_per_token", &self.rate_per_token)
            .field("rate_per_ip", &self.rate_per_ip)
            .field("log_format", &self.log_format)
            .field("batch_window", &self.batch_window)
            .finish()
    }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

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
