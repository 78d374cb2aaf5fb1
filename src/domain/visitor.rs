use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::{FieldError, bidi_refusal, is_bidi_control, is_blank};

/// A web channel's Configuration ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelId(Uuid);

impl ChannelId {
    pub fn new_random() -> Self {
        ChannelId(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Uuid::parse_str(raw.trim())
            .map(ChannelId)
            .map_err(|_| FieldError::new("channelId", "is not a Configuration ID"))
    }

    pub fn from_uuid(id: Uuid) -> Self {
        ChannelId(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for ChannelId {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The visitor's userId from applyToken: 1-32 characters, something visible, no control
/// characters, no bidirectional overrides or isolates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        bounded_text("userId", raw, Self::MAX_CHARS).map(UserId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The visitor's userName from applyToken: 1-64 characters, something visible, no control
/// characters, no bidirectional overrides or isolates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        bounded_text("userName", raw, Self::MAX_CHARS).map(UserName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn bounded_text(field: &str, raw: &str, max_chars: usize) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    if is_blank(trimmed) {
        return Err(FieldError::new(field, "must not be blank"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    if trimmed.chars().any(is_bidi_control) {
        return Err(bidi_refusal(field));
    }
    if trimmed.chars().count() > max_chars {
        return Err(FieldError(format!(
            "{field} must be at most {max_chars} characters long"
        )));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_id_round_trips() {
        let id = ChannelId::new_random();
        assert_eq!(ChannelId::parse(&id.to_string()).unwrap(), id);
        assert!(ChannelId::parse("not-a-channel").is_err());
    }

    #[test]
    fn user_id_is_1_to_32_characters() {
        assert!(UserId::parse("visitor-1").is_ok());
        assert!(UserId::parse(&"ü".repeat(32)).is_ok());
        assert!(UserId::parse(&"u".repeat(33)).is_err());
        assert!(UserId::parse("  ").is_err());
        assert!(UserId::parse("a\nb").is_err());
    }

    #[test]
    fn user_name_refuses_control_characters() {
        assert!(UserName::parse("Ada Lovelace").is_ok());
        assert!(UserName::parse("Ada\u{0}").is_err());
        let err = UserName::parse(&"n".repeat(65)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "userName must be at most 64 characters long"
        );
    }

    #[test]
    fn user_fields_refuse_invisible_only_and_bidirectional_controls() {
        assert_eq!(
            UserName::parse("\u{200b}\u{feff}").unwrap_err().to_string(),
            "userName must not be blank"
        );
        assert_eq!(
            UserId::parse(" \u{2060} ").unwrap_err().to_string(),
            "userId must not be blank"
        );
        assert_eq!(
            UserName::parse("Ada \u{202e}ecalevoL")
                .unwrap_err()
                .to_string(),
            "userName must not contain bidirectional override or isolate characters"
        );
        assert_eq!(
            UserId::parse("v\u{2066}1").unwrap_err().to_string(),
            "userId must not contain bidirectional override or isolate characters"
        );
        assert!(UserName::parse("Zoë\u{200d}").is_ok());
    }
}

/// An agent's name: 1-100 characters, something visible, no control characters, no
/// bidirectional overrides or isolates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentName(String);

impl AgentName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        bounded_text("agent", raw, Self::MAX_CHARS).map(AgentName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod agent_name_tests {
    use super::*;

    #[test]
    fn agent_names_refuse_control_characters_and_blanks() {
        assert_eq!(AgentName::parse(" alice ").unwrap().as_str(), "alice");
        for bad in [
            "",
            "  ",
            "a\u{0}b",
            "tab\there",
            &"n".repeat(101),
            "\u{200b}",
            "\u{ad}\u{180e}",
            "ali\u{202e}ce",
            "bob\u{2069}",
        ] {
            assert!(AgentName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
