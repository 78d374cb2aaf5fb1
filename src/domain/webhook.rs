//! What a webhook subscription is made of (CONTRACT §7.1), parsed once for the command line and
//! the admin API alike: the endpoint's address, the event types it wants, a delivery's status,
//! and an event's `webhook-id`.

use std::fmt;

use uuid::Uuid;

use super::FieldError;

/// The event types, in CONTRACT §7's order.
pub const EVENT_TYPES: [&str; 7] = [
    "message.stored",
    "message.claimed",
    "message.assigned",
    "message.released",
    "message.attempted",
    "message.processed",
    "message.erased",
];

/// Where an endpoint's events are POSTed: an absolute `http` or `https` URL with a host, at
/// most [`EndpointUrl::MAX_CHARS`] characters once normalised (that form is what is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    pub const MAX_CHARS: usize = 2000;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let url = url::Url::parse(raw.trim()).map_err(|e| {
            FieldError::new("url", &format!("is not an absolute http(s) address: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(FieldError::new(
                "url",
                "must be an http:// or https:// address with a host",
            ));
        }
        // The normalised form is ASCII (punycode, percent-encoding): bytes are characters.
        if url.as_str().len() > Self::MAX_CHARS {
            return Err(FieldError::new(
                "url",
                &format!("must be at most {} characters long", Self::MAX_CHARS),
            ));
        }
        Ok(EndpointUrl(url.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The event types an endpoint subscribes to, each one of [`EVENT_TYPES`], without repeats, in
/// the order given; empty: every type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTypes(Vec<&'static str>);

impl EventTypes {
    /// `field` is how the caller's input names the list (`events` in the API, `--event` on the
    /// command line), for the refusal.
    pub fn parse<S: AsRef<str>>(field: &str, raw: &[S]) -> Result<Self, FieldError> {
        let mut wanted = Vec::new();
        for name in raw {
            let name = name.as_ref();
            let known = EVENT_TYPES.iter().find(|t| **t == name).ok_or_else(|| {
                FieldError::new(
                    field,
                    &format!(
                        "must name event types ({}); {name:?} is not one",
                        EVENT_TYPES.join(", ")
                    ),
                )
            })?;
            if !wanted.contains(known) {
                wanted.push(*known);
            }
        }
        Ok(EventTypes(wanted))
    }

    pub fn as_slice(&self) -> &[&'static str] {
        &self.0
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|t| (*t).to_owned()).collect()
    }
}

/// Where one event stands with one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// To be tried (again).
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up after the maximum age; `webhook redeliver` queues it again.
    Failed,
}

impl DeliveryStatus {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match raw {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "failed" => Ok(DeliveryStatus::Failed),
            _ => Err(FieldError::new(
                "status",
                "must be pending, delivered or failed",
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// An event's `webhook-id`: `evt_` and the 32 hex digits of its uid, the same on every try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId(Uuid);

impl EventId {
    /// What an event's `webhook-id` looks like, for the API's description of it.
    pub const PATTERN: &str = "^evt_[0-9a-fA-F]{32}$";

    /// `evt_` and 32 hex digits; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        let hex = raw.trim().strip_prefix("evt_")?;
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Uuid::try_parse(hex).ok().map(EventId)
    }

    pub fn from_uuid(uid: Uuid) -> Self {
        EventId(uid)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "evt_{}", self.0.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_http_or_https_with_a_host() {
        let url = EndpointUrl::parse(" https://CRM.example.com/hooks/leavemsg ").unwrap();
        assert_eq!(url.as_str(), "https://crm.example.com/hooks/leavemsg");
        assert!(EndpointUrl::parse("http://127.0.0.1:8080/x").is_ok());
        for (bad, says) in [
            ("ftp://example.com/x", "url must be an http"),
            ("mailto:a@example.com", "url must be an http"),
            ("not a url", "url is not an absolute"),
            ("/relative/path", "url is not an absolute"),
            ("", "url is not an absolute"),
        ] {
            let refusal = EndpointUrl::parse(bad).unwrap_err().to_string();
            assert!(refusal.starts_with(says), "{bad:?}: {refusal}");
        }
    }

    #[test]
    fn endpoint_urls_are_at_most_2000_characters() {
        let base = "https://example.com/";
        let longest = format!("{base}{}", "a".repeat(2000 - base.len()));
        assert!(EndpointUrl::parse(&longest).is_ok());
        let refusal = EndpointUrl::parse(&format!("{longest}a"))
            .unwrap_err()
            .to_string();
        assert_eq!(refusal, "url must be at most 2000 characters long");
        // Counted as stored: a space becomes %20.
        let spaced = format!("{base}{}", " x".repeat(700));
        assert!(EndpointUrl::parse(&spaced).is_err());
    }

    #[test]
    fn event_types_are_known_ones_without_repeats() {
        let types = EventTypes::parse(
            "events",
            &["message.processed", "message.stored", "message.processed"],
        )
        .unwrap();
        assert_eq!(types.as_slice(), ["message.processed", "message.stored"]);
        assert!(
            EventTypes::parse::<&str>("events", &[])
                .unwrap()
                .as_slice()
                .is_empty()
        );
        assert_eq!(
            EventTypes::parse("events", &EVENT_TYPES)
                .unwrap()
                .as_slice(),
            EVENT_TYPES
        );
        let refusal = EventTypes::parse("--event", &["message.stored", "message.sent"])
            .unwrap_err()
            .to_string();
        assert!(
            refusal.starts_with("--event must name event types (message.stored, "),
            "{refusal}"
        );
        assert!(
            refusal.ends_with("\"message.sent\" is not one"),
            "{refusal}"
        );
        assert!(EventTypes::parse("events", &["Message.Stored"]).is_err());
    }

    #[test]
    fn delivery_statuses_round_trip() {
        for s in ["pending", "delivered", "failed"] {
            assert_eq!(DeliveryStatus::parse(s).unwrap().as_str(), s);
        }
        for bad in ["", "Failed", "assigned", "all"] {
            assert!(DeliveryStatus::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_ids_are_evt_and_32_hex_digits() {
        let uid = Uuid::new_v4();
        let id = EventId::from_uuid(uid);
        assert_eq!(id.to_string(), format!("evt_{}", uid.simple()));
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        assert_eq!(
            EventId::parse(&id.to_string().to_ascii_uppercase().replace("EVT_", "evt_")),
            Some(id)
        );
        for bad in [
            "evt_nope".to_owned(),
            uid.simple().to_string(),
            format!("evt_{}", uid.hyphenated()),
            format!("evt_{}0", uid.simple()),
            format!("msg_{}", uid.simple()),
        ] {
            assert_eq!(EventId::parse(&bad), None, "{bad}");
        }
    }
}
