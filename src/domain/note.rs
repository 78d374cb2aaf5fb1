use super::{FieldError, bidi_refusal, is_bidi_control, is_blank, is_forbidden_control};

/// An agent's note on a message: trimmed, 1-2000 characters, no control characters other than
/// tab, CR and LF, no bidirectional overrides or isolates. A blank note (nothing visible in it)
/// is no note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note(String);

impl Note {
    pub const MAX_CHARS: usize = 2000;

    /// `Ok(None)` for a missing or blank note.
    pub fn parse_optional(raw: Option<&str>) -> Result<Option<Self>, FieldError> {
        let Some(note) = raw.map(str::trim).filter(|n| !is_blank(n)) else {
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
        if note.chars().any(is_bidi_control) {
            return Err(bidi_refusal("note"));
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

    #[test]
    fn invisible_only_is_no_note_and_bidirectional_controls_are_refused() {
        assert_eq!(Note::parse_optional(Some("\u{200b}\u{200c}")), Ok(None));
        assert_eq!(
            Note::parse_optional(Some("no \u{202e}rewsna"))
                .unwrap_err()
                .to_string(),
            "note must not contain bidirectional override or isolate characters"
        );
    }
}
