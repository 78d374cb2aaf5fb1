use super::{FieldError, is_forbidden_control};

/// An agent's note on a message: trimmed, 1-2000 characters, no control characters other than
/// tab, CR and LF. A blank note is no note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note(String);

impl Note {
    pub const MAX_CHARS: usize = 2000;

    /// `Ok(None)` for a missing or blank note.
    pub fn parse_optional(raw: Option<&str>) -> Result<Option<Self>, FieldError> {
        let Some(note) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        if note.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                "note",
                &format!("must be at most {} characters long", Self::MAX_CHARS),
            ));
        }
        if note.chars().any(is_forbidden_control) {
            return Err(FieldError::new(
                "note",
                "must not contain control characters other than tab, CR and LF",
            ));
        }
        Ok(Some(Note(note.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_none_and_rules_are_named() {
        assert_eq!(Note::parse_optional(None), Ok(None));
        assert_eq!(Note::parse_optional(Some("  \n ")), Ok(None));
        let note = Note::parse_optional(Some(" called twice\tno answer ")).unwrap();
        assert_eq!(note.unwrap().as_str(), "called twice\tno answer");
        let long = "x".repeat(Note::MAX_CHARS + 1);
        assert_eq!(
            Note::parse_optional(Some(&long)).unwrap_err().to_string(),
            "note must be at most 2000 characters long"
        );
        assert!(Note::parse_optional(Some(&"é".repeat(Note::MAX_CHARS))).is_ok());
        assert!(
            Note::parse_optional(Some("a\u{7}b"))
                .unwrap_err()
                .to_string()
                .contains("control characters")
        );
    }
}
