use super::{FieldError, bidi_refusal, is_bidi_control, is_blank, is_forbidden_control};

/// The text of a left message: trimmed, 1-2000 Unicode scalar values, something visible in
/// it, no control characters except tab, CR and LF, no bidirectional overrides or isolates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    pub const MAX_CHARS: usize = 2000;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let field = "leaveMessage";
        let trimmed = raw.trim();
        if is_blank(trimmed) {
            return Err(FieldError::new(field, "must not be blank"));
        }
        if trimmed.chars().any(is_forbidden_control) {
            return Err(FieldError::new(
                field,
                "must not contain NUL or other control characters (tab, CR and LF are allowed)",
            ));
        }
        if trimmed.chars().any(is_bidi_control) {
            return Err(bidi_refusal(field));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                field,
                "must be at most 2000 characters long",
            ));
        }
        Ok(MessageText(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_keeps_inner_whitespace() {
        let text = MessageText::parse("  call me\r\n\tafter 5  ").unwrap();
        assert_eq!(text.as_str(), "call me\r\n\tafter 5");
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(MessageText::parse(&"é".repeat(2000)).is_ok());
        assert!(MessageText::parse(&"😀".repeat(2000)).is_ok());
        assert!(MessageText::parse(&"a".repeat(2001)).is_err());
    }

    #[test]
    fn refuses_blank_and_control_characters() {
        for raw in [
            "",
            " \n\t ",
            "a\u{0}b",
            "bell\u{7}",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}x",
        ] {
            let err = MessageText::parse(raw).unwrap_err();
            assert!(
                err.to_string().starts_with("leaveMessage "),
                "{raw:?}: {err}"
            );
        }
    }

    #[test]
    fn invisible_characters_alone_are_blank() {
        for raw in [
            "\u{200b}",
            " \u{200b}\u{200c}\u{200d} ",
            "\u{2060}\u{feff}",
            "\u{180e}\u{ad}",
            "\u{3000}\u{a0}",
        ] {
            assert_eq!(
                MessageText::parse(raw).unwrap_err().to_string(),
                "leaveMessage must not be blank",
                "{raw:?}"
            );
        }
        // Beside visible text they are kept: a joiner is part of many emoji and scripts.
        let family = "call 👨\u{200d}👩\u{200d}👧";
        assert_eq!(MessageText::parse(family).unwrap().as_str(), family);
    }

    #[test]
    fn refuses_bidirectional_overrides_and_isolates() {
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}',
        ] {
            let raw = format!("call me {c}back");
            assert_eq!(
                MessageText::parse(&raw).unwrap_err().to_string(),
                "leaveMessage must not contain bidirectional override or isolate characters",
                "{raw:?}"
            );
        }
        assert!(MessageText::parse("\u{202e}").is_err());
        // Right-to-left text itself is welcome.
        assert!(MessageText::parse("اتصل بي من فضلك").is_ok());
    }

    #[test]
    fn keeps_hostile_text_as_text() {
        let raw = "<script>alert(1)</script>'; DROP TABLE leave_message; --";
        assert_eq!(MessageText::parse(raw).unwrap().as_str(), raw);
    }
}
