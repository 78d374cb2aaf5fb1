use super::FieldError;

/// A contact number as the visitor typed it (trimmed), with its digits kept for searching.
///
/// Accepted: 3-32 characters; digits, an optional leading `+`, and the separators
/// space `-` `.` `(` `)`; at least 3 digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNo {
    as_given: String,
    digits: String,
}

impl PhoneNo {
    pub const MIN_CHARS: usize = 3;
    pub const MAX_CHARS: usize = 32;
    pub const MIN_DIGITS: usize = 3;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let field = "phoneNo";
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(FieldError::new(field, "must not be blank"));
        }
        let chars = trimmed.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            return Err(FieldError::new(
                field,
                "must be 3 to 32 characters long (digits, an optional leading +, spaces and - . ( ))",
            ));
        }
        let body = trimmed.strip_prefix('+').unwrap_or(trimmed);
        if !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
        {
            return Err(FieldError::new(
                field,
                "may contain only digits, an optional leading +, spaces and - . ( )",
            ));
        }
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < Self::MIN_DIGITS {
            return Err(FieldError::new(field, "must contain at least 3 digits"));
        }
        Ok(PhoneNo {
            as_given: trimmed.to_owned(),
            digits,
        })
    }

    /// The number as given, trimmed.
    pub fn as_str(&self) -> &str {
        &self.as_given
    }

    /// Only the digits: `+1 (555) 010-7` gives `15550107`.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// A form for logs: only the last two digits are shown.
    pub fn redacted(&self) -> String {
        let tail = &self.digits[self.digits.len() - 2..];
        format!("***{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_vendor_example_and_common_forms() {
        for (raw, digits) in [
            ("123456", "123456"),
            ("+1 555 0107", "15550107"),
            ("  +44 (20) 7946-0958 ", "442079460958"),
            ("555.0107", "5550107"),
            ("911", "911"),
            ("+123", "123"),
        ] {
            let phone = PhoneNo::parse(raw).unwrap();
            assert_eq!(phone.digits(), digits, "{raw}");
            assert_eq!(phone.as_str(), raw.trim());
        }
    }

    #[test]
    fn refuses_what_is_not_a_phone_number() {
        for raw in [
            "",
            "   ",
            "12",
            "+12",
            "1-2",
            "abc",
            "12a45",
            "++123",
            "123+",
            "1234\u{0}5",
            "١٢٣٤٥", // Arabic-Indic digits are not accepted: agents dial ASCII digits
            "123456789012345678901234567890123",
            "(((---)))",
        ] {
            assert!(PhoneNo::parse(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn error_names_the_field() {
        let err = PhoneNo::parse("call me").unwrap_err();
        assert!(err.to_string().starts_with("phoneNo "), "{err}");
    }

    #[test]
    fn length_limit_counts_trimmed_characters() {
        let thirty_two = "1".repeat(32);
        assert!(PhoneNo::parse(&format!("  {thirty_two}  ")).is_ok());
        assert!(PhoneNo::parse(&"1".repeat(33)).is_err());
    }

    #[test]
    fn redaction_keeps_only_two_digits() {
        assert_eq!(PhoneNo::parse("+1 555 0107").unwrap().redacted(), "***07");
    }
}
