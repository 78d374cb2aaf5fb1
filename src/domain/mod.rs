//! Values that enter from outside, parsed once into types that cannot hold bad data.

mod message_id;
mod message_text;
mod note;
mod phone_no;
mod status;
mod trusted_proxies;
mod visitor;
mod web_origin;

pub use message_id::MessageId;
pub use message_text::MessageText;
pub use note::Note;
pub use phone_no::PhoneNo;
pub use status::{Outcome, Status};
pub use trusted_proxies::TrustedProxies;
pub use visitor::{AgentName, ChannelId, UserId, UserName};
pub use web_origin::WebOrigin;

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
