use std::fmt;

use serde::Deserialize;

use super::FieldError;

/// A stored message's id: a positive whole number (the `leave_message.id` sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(i64);

impl MessageId {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        raw.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(MessageId)
            .ok_or_else(|| FieldError::new(&format!("{raw:?}"), "is not a message id"))
    }

    /// An id read back from the database.
    pub fn from_i64(id: i64) -> Self {
        MessageId(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// From a path segment or any string: the same rule and error text as [`MessageId::parse`].
impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        MessageId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_whole_numbers_are_ids() {
        assert_eq!(MessageId::parse("42").map(MessageId::get), Ok(42));
        for bad in ["0", "-1", "1.5", "x", "", "99999999999999999999"] {
            let err = MessageId::parse(bad).unwrap_err().to_string();
            assert_eq!(err, format!("{bad:?} is not a message id"));
        }
    }
}
