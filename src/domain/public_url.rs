use std::net::SocketAddr;

use super::{FieldError, WebOrigin};

/// The service's address as people reach it (`LEAVEMSG_PUBLIC_URL`): an http(s) URL whose
/// origin is the service's own, with an optional path prefix, kept without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    url: String,
    /// Its origin when the operator gave it; `None` for the default made up from the listen
    /// address, which is no origin a browser would send (0.0.0.0, port 0).
    origin: Option<WebOrigin>,
}

impl PublicUrl {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim().trim_end_matches('/');
        let after_scheme = trimmed.find("://").map_or(0, |i| i + 3);
        let (origin, path) = match trimmed[after_scheme..].find(['/', '?', '#']) {
            Some(i) => trimmed.split_at(after_scheme + i),
            None => (trimmed, ""),
        };
        let bad = || {
            FieldError::new(
                "public URL",
                "must look like https://messages.example.com (a path is allowed; no query)",
            )
        };
        if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let origin = WebOrigin::parse(origin).map_err(|_| bad())?;
        Ok(PublicUrl {
            url: format!("{}{path}", origin.as_str()),
            origin: Some(origin),
        })
    }

    /// The default: `http://` and the address the server listens on.
    pub fn from_listen(listen: SocketAddr) -> Self {
        PublicUrl {
            url: format!("http://{listen}"),
            origin: None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The origin that counts as the service's own, when the operator set the URL.
    pub fn own_origin(&self) -> Option<&WebOrigin> {
        self.origin.as_ref()
    }

    pub fn is_https(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// Whether the operator set it.
    pub fn is_explicit(&self) -> bool {
        self.origin.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_path_and_normalizes_the_origin() {
        for (raw, url, origin) in [
            (
                "https://M.Example.com/",
                "https://m.example.com",
                "https://m.example.com",
            ),
            (
                "https://example.com:443/msg/",
                "https://example.com/msg",
                "https://example.com",
            ),
            (
                "http://10.0.0.5:8080",
                "http://10.0.0.5:8080",
                "http://10.0.0.5:8080",
            ),
        ] {
            let p = PublicUrl::parse(raw).unwrap();
            assert_eq!(p.as_str(), url);
            assert_eq!(p.own_origin().unwrap().as_str(), origin);
            assert!(p.is_explicit());
        }
    }

    #[test]
    fn refuses_what_is_not_an_http_address() {
        for raw in [
            "",
            "example.com",
            "ftp://example.com",
            "https://example.com/?a=1",
            "https://example.com/#x",
            "https://user@example.com",
            "https://example.com/a b",
        ] {
            assert!(PublicUrl::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn defaults_to_the_listen_address() {
        let p = PublicUrl::from_listen("[::1]:8080".parse().unwrap());
        assert_eq!(p.as_str(), "http://[::1]:8080");
        assert!(!p.is_explicit());
    }
}
