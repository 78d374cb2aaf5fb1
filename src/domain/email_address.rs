use super::FieldError;

/// The most addresses a channel notifies (the table's check holds the same limit).
pub const MAX_NOTIFY_EMAILS: usize = 20;

/// A bare e-mail address a channel notifies (`--notify-email`): `local@domain`, printable
/// ASCII, no display name, no quoted or bracketed parts, as the mail library accepts it. An
/// internationalized domain is given in its ASCII (`xn--`) form. Kept as typed, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let address = raw.trim();
        let bad = || {
            FieldError::new(
                &format!("{address:?}"),
                "is not an e-mail address like team@example.com (no name or <>, ASCII only)",
            )
        };
        let plain = address
            .chars()
            .all(|c| c.is_ascii_graphic() && !"\"(),:;<>[\\]".contains(c));
        let one_at = address.matches('@').count() == 1;
        // Both parts checked by the library that sends the e-mail: what it takes, it can send.
        if address.len() > 254 || !plain || !one_at || address.parse::<lettre::Address>().is_err() {
            return Err(bad());
        }
        Ok(EmailAddress(address.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The sender of notification e-mails (`LEAVEMSG_SMTP_FROM`): an address, optionally with a
/// name, as in `Call backs <leavemsg@example.com>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender(lettre::message::Mailbox);

impl Sender {
    pub const DEFAULT: &str = "leavemsg@localhost";

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        raw.trim()
            .parse::<lettre::message::Mailbox>()
            .ok()
            .filter(|m| m.email.to_string().is_ascii())
            .map(Sender)
            .ok_or_else(|| {
                FieldError::new(
                    "sender",
                    "must be an e-mail address like leavemsg@example.com, or Name <leavemsg@example.com>",
                )
            })
    }

    pub fn mailbox(&self) -> &lettre::message::Mailbox {
        &self.0
    }

    /// The domain of its address (message ids are made in it).
    pub fn domain(&self) -> &str {
        self.0.email.domain()
    }
}

impl std::fmt::Display for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A list of addresses to notify: each parsed, repeats (ignoring case) dropped, at most
/// [`MAX_NOTIFY_EMAILS`].
pub fn notify_list(raw: &[String]) -> Result<Vec<EmailAddress>, FieldError> {
    let mut list: Vec<EmailAddress> = Vec::new();
    for one in raw {
        let address = EmailAddress::parse(one)?;
        if !list
            .iter()
            .any(|a| a.as_str().eq_ignore_ascii_case(address.as_str()))
        {
            list.push(address);
        }
    }
    if list.len() > MAX_NOTIFY_EMAILS {
        return Err(FieldError::new(
            "a channel takes",
            &format!("at most {MAX_NOTIFY_EMAILS} addresses"),
        ));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_are_taken_trimmed() {
        for (raw, kept) in [
            ("team@example.com", "team@example.com"),
            (
                "  Call.Back+sales@Example.COM ",
                "Call.Back+sales@Example.COM",
            ),
            ("ops@localhost", "ops@localhost"),
            (
                "o'brien@xn--bcher-kva.example",
                "o'brien@xn--bcher-kva.example",
            ),
        ] {
            assert_eq!(EmailAddress::parse(raw).unwrap().as_str(), kept, "{raw}");
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_value() {
        for raw in [
            "",
            "team",
            "@example.com",
            "team@",
            "a@b@example.com",
            "Team <team@example.com>",
            "team@example.com, ops@example.com",
            "team @example.com",
            "\"team\"@example.com",
            "team@[192.0.2.1]",
            "équipe@example.com",
            "team@exa mple.com",
            "team@example.com\r\nBcc: x@example.com",
            "team@-example-.com",
        ] {
            let err = EmailAddress::parse(raw).unwrap_err().to_string();
            assert!(err.contains("is not an e-mail address"), "{raw:?}: {err}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(EmailAddress::parse(&long).is_err());
    }

    #[test]
    fn a_sender_may_have_a_name() {
        let s = Sender::parse(Sender::DEFAULT).unwrap();
        assert_eq!(
            (s.to_string().as_str(), s.domain()),
            ("leavemsg@localhost", "localhost")
        );
        let s = Sender::parse("Call backs <cb@example.com>").unwrap();
        assert_eq!(s.mailbox().email.to_string(), "cb@example.com");
        assert_eq!(s.domain(), "example.com");
        for bad in ["", "nobody", "a@b@c", "<>"] {
            assert!(Sender::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_list_drops_repeats_and_has_a_limit() {
        let raw: Vec<String> = ["a@example.com", "A@EXAMPLE.com", "b@example.com"]
            .map(String::from)
            .to_vec();
        let list = notify_list(&raw).unwrap();
        assert_eq!(
            list.iter().map(EmailAddress::as_str).collect::<Vec<_>>(),
            ["a@example.com", "b@example.com"]
        );
        let many: Vec<String> = (0..=MAX_NOTIFY_EMAILS)
            .map(|i| format!("agent{i}@example.com"))
            .collect();
        assert!(
            notify_list(&many)
                .unwrap_err()
                .to_string()
                .contains("at most 20")
        );
        assert!(notify_list(&many[1..]).is_ok());
    }
}
