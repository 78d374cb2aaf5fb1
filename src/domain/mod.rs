//! Values that enter from outside, parsed once into types that cannot hold bad data.

mod callback_after;
mod email_address;
mod message_id;
mod message_text;
mod note;
mod phone_no;
mod public_url;
mod smtp_url;
mod status;
mod trusted_proxies;
mod visitor;
mod web_origin;
mod webhook;

pub use callback_after::CallbackAfter;
pub use email_address::{EmailAddress, MAX_NOTIFY_EMAILS, Sender, notify_list};
pub use message_id::MessageId;
pub use message_text::MessageText;
pub use note::Note;
pub use phone_no::PhoneNo;
pub use public_url::PublicUrl;
pub use smtp_url::{SmtpSecurity, SmtpUrl};
pub use status::{AttemptResult, Outcome, Status};
pub use trusted_proxies::TrustedProxies;
pub use visitor::{AgentName, ChannelId, UserId, UserName};
pub use web_origin::WebOrigin;
pub use webhook::{DeliveryStatus, EVENT_TYPES, EndpointUrl, EventId, EventTypes};

/// Why a field was refused; the text names the field and the rule, for the visitor's `resultDesc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(String);

impl FieldError {
    pub fn new(field: &str, rule: &str) -> Self {
        FieldError(format!("{field} {rule}"))
    }
}

/// True for characters a stored text may not hold: NUL and every other control character
/// (C0, DEL, C1) except tab, CR and LF.
pub fn is_forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\r' | '\n')
}

/// True for characters that show nothing by themselves: whitespace, zero-width spaces and
/// joiners, the word joiner and invisible operators, the byte order mark, the Mongolian vowel
/// separator, the soft hyphen, the directional marks, filler and variation-selector characters.
/// A text made only of them is blank: it would be stored, and shown to an agent, as nothing.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2060}'..='\u{2064}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
        )
}

/// True for the bidirectional embedding, override and isolate controls (U+202A-U+202E,
/// U+2066-U+2069). They reorder the text shown after them, so an agent could read something
/// other than what was sent (a reversed phone number, a name that hides its real letters).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// True for a text with nothing visible in it (see [`is_invisible`]).
pub fn is_blank(text: &str) -> bool {
    text.chars().all(is_invisible)
}

/// The refusal of a text holding a [`is_bidi_control`] character.
pub fn bidi_refusal(field: &str) -> FieldError {
    FieldError::new(
        field,
        "must not contain bidirectional override or isolate characters",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_blank_and_visible_ones_are_not() {
        assert!(is_blank(""));
        assert!(is_blank(" \t\r\n\u{a0}\u{3000}"));
        assert!(is_blank(
            "\u{200b}\u{200c}\u{200d}\u{2060}\u{feff}\u{180e}\u{ad}"
        ));
        assert!(is_blank("\u{200e}\u{200f}\u{fe0f}\u{3164}"));
        for visible in ["a", ".", "😀", "\u{5d0}", "-"] {
            assert!(!is_blank(visible), "{visible:?}");
        }
    }

    #[test]
    fn bidi_controls_are_the_embeddings_overrides_and_isolates() {
        let controls: Vec<char> = ('\u{2000}'..='\u{20ff}')
            .filter(|c| is_bidi_control(*c))
            .collect();
        assert_eq!(
            controls,
            [
                '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
                '\u{2068}', '\u{2069}'
            ]
        );
        // The plain marks only nudge neutral characters; they are invisible, not refused.
        assert!(!is_bidi_control('\u{200e}') && !is_bidi_control('\u{200f}'));
    }
}
