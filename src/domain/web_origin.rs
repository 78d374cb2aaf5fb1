use super::FieldError;

/// A web origin as browsers send it in `Origin`: `scheme://host[:port]`, lower case, without
/// the scheme's default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOrigin(String);

impl WebOrigin {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bad = || {
            FieldError::new(
                "origin",
                "must look like https://www.example.com or http://host:port (no path)",
            )
        };
        let lower = raw.trim().trim_end_matches('/').to_ascii_lowercase();
        let (scheme, rest) = lower.split_once("://").ok_or_else(bad)?;
        let default_port = match scheme {
            "https" => "443",
            "http" => "80",
            _ => return Err(bad()),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (inside, after) = v6.split_once(']').ok_or_else(bad)?;
            if inside.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad());
            }
            (format!("[{inside}]"), after.strip_prefix(':'))
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let host_ok = host.starts_with('[')
            || (!host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
        if !host_ok {
            return Err(bad());
        }
        match port {
            None => Ok(WebOrigin(format!("{scheme}://{host}"))),
            Some(p) if p == default_port => Ok(WebOrigin(format!("{scheme}://{host}"))),
            Some(p) if p.parse::<u16>().is_ok_and(|n| n > 0) => {
                Ok(WebOrigin(format!("{scheme}://{host}:{p}")))
            }
            Some(_) => Err(bad()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_browsers() {
        for (raw, want) in [
            ("https://WWW.Example.com/", "https://www.example.com"),
            ("https://example.com:443", "https://example.com"),
            ("http://localhost:3000", "http://localhost:3000"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ] {
            assert_eq!(WebOrigin::parse(raw).unwrap().as_str(), want);
        }
    }

    #[test]
    fn refuses_paths_userinfo_and_other_schemes() {
        for raw in [
            "example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://",
            "https://exa mple.com",
            "javascript://alert(1)",
        ] {
            assert!(WebOrigin::parse(raw).is_err(), "{raw}");
        }
    }
}
