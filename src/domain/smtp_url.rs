use super::FieldError;

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: plain text, no TLS (a relay on the same host or network).
    Plain,
    /// `smtp://…?tls=required`: STARTTLS, and the e-mail is not sent without it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
}

/// The mail server (`LEAVEMSG_SMTP_URL`): `smtp://host[:25]`, `smtp://host[:587]?tls=required`
/// or `smtps://[user:pass@]host[:465]`; credentials percent-decoded from the userinfo. Its
/// `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    host: String,
    port: u16,
    security: SmtpSecurity,
    credentials: Option<(String, String)>,
}

impl SmtpUrl {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bad = |rule: &str| FieldError::new("SMTP URL", rule);
        let forms = "must look like smtp://host:25, smtp://host:587?tls=required or \
                     smtps://user:password@host:465";
        let url = url::Url::parse(raw.trim()).map_err(|_| bad(forms))?;
        let tls: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let security = match (url.scheme(), tls.as_slice()) {
            ("smtp", []) => SmtpSecurity::Plain,
            ("smtp", [(k, v)]) if k == "tls" && v == "required" => SmtpSecurity::StartTls,
            ("smtps", []) => SmtpSecurity::Tls,
            ("smtp" | "smtps", _) => {
                return Err(bad(
                    "takes no query but tls=required, and that only with smtp:// (STARTTLS)",
                ));
            }
            _ => return Err(bad(forms)),
        };
        let host = match url.host() {
            // smtp is no scheme the URL standard knows: its host comes as written.
            Some(url::Host::Domain(d))
                if !d.is_empty()
                    && d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) =>
            {
                d.to_ascii_lowercase()
            }
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(bad(forms)),
        };
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err(bad("takes no path"));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
                .map_err(|_| bad("has user or password that is not UTF-8 once percent-decoded"))
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(password)) if !user.is_empty() => Some((decode(user)?, decode(password)?)),
            _ => {
                return Err(bad(
                    "needs both a user and a password, or neither (user:password@host)",
                ));
            }
        };
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::Plain => 25,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
        });
        Ok(SmtpUrl {
            host,
            port,
            security,
            credentials,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// The user and password to log in with, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }
}

/// The URL without its password: `smtps://user@host:465`.
impl std::fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.security {
            SmtpSecurity::Tls => "smtps",
            SmtpSecurity::Plain | SmtpSecurity::StartTls => "smtp",
        };
        let user = self
            .credentials
            .as_ref()
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let query = if self.security == SmtpSecurity::StartTls {
            "?tls=required"
        } else {
            ""
        };
        write!(f, "{scheme}://{user}{host}:{}{query}", self.port)
    }
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SmtpUrl").field(&self.to_string()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_with_their_default_ports() {
        for (raw, host, port, security) in [
            (
                "smtp://mail.internal",
                "mail.internal",
                25,
                SmtpSecurity::Plain,
            ),
            (
                "smtp://127.0.0.1:2525",
                "127.0.0.1",
                2525,
                SmtpSecurity::Plain,
            ),
            (
                "smtp://Mail.Example.com?tls=required",
                "mail.example.com",
                587,
                SmtpSecurity::StartTls,
            ),
            (
                "smtp://mail.example.com:2587/?tls=required",
                "mail.example.com",
                2587,
                SmtpSecurity::StartTls,
            ),
            (
                "smtps://mail.example.com",
                "mail.example.com",
                465,
                SmtpSecurity::Tls,
            ),
            ("smtps://[::1]:4650", "::1", 4650, SmtpSecurity::Tls),
        ] {
            let url = SmtpUrl::parse(raw).unwrap();
            assert_eq!(
                (url.host(), url.port(), url.security()),
                (host, port, security),
                "{raw}"
            );
            assert_eq!(url.credentials(), None);
        }
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_shown() {
        let url =
            SmtpUrl::parse("smtps://alerts%40example.com:p%40ss%3Aw%2Frd@mail.example.com:465")
                .unwrap();
        assert_eq!(url.credentials(), Some(("alerts@example.com", "p@ss:w/rd")));
        let shown = format!("{url} {url:?}");
        assert!(
            !shown.contains("p@ss") && !shown.contains("p%40ss"),
            "{shown}"
        );
        assert_eq!(
            url.to_string(),
            "smtps://alerts@example.com@mail.example.com:465"
        );
        let starttls = SmtpUrl::parse("smtp://u:secret@m.example.com?tls=required").unwrap();
        assert_eq!(
            starttls.to_string(),
            "smtp://u@m.example.com:587?tls=required"
        );
        assert!(!format!("{starttls:?}").contains("secret"));
    }

    #[test]
    fn anything_else_is_refused() {
        for (raw, says) in [
            ("mail.example.com", "must look like"),
            ("http://mail.example.com", "must look like"),
            ("smtp://", "must look like"),
            ("smtp://mail%20host", "must look like"),
            ("smtp://mail host", "must look like"),
            ("smtp://m.example.com?tls=opportunistic", "tls=required"),
            ("smtps://m.example.com?tls=required", "tls=required"),
            ("smtp://m.example.com?x=1", "tls=required"),
            ("smtp://m.example.com/helo", "no path"),
            ("smtp://user@m.example.com", "both a user and a password"),
            ("smtp://:pw@m.example.com", "both a user and a password"),
            ("smtp://u:%ff@m.example.com", "not UTF-8"),
        ] {
            let err = SmtpUrl::parse(raw).unwrap_err().to_string();
            assert!(err.contains(says), "{raw}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
    }
}
