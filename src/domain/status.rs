use std::fmt;

use super::FieldError;

/// Where a message is in the agents' work, as the vendor's Message Management page names it:
/// `pending` (to be allocated) → `assigned` (allocated, unprocessed) → `processed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Assigned,
    Processed,
}

impl Status {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match raw {
            "pending" => Ok(Status::Pending),
            "assigned" => Ok(Status::Assigned),
            "processed" => Ok(Status::Processed),
            _ => Err(FieldError::new(
                "status",
                "must be pending, assigned or processed",
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Assigned => "assigned",
            Status::Processed => "processed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What came of a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    CalledBack,
    NoAnswer,
    WrongNumber,
    Spam,
}

impl Outcome {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match raw {
            "called_back" => Ok(Outcome::CalledBack),
            "no_answer" => Ok(Outcome::NoAnswer),
            "wrong_number" => Ok(Outcome::WrongNumber),
            "spam" => Ok(Outcome::Spam),
            _ => Err(FieldError::new(
                "outcome",
                "must be called_back, no_answer, wrong_number or spam",
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::CalledBack => "called_back",
            Outcome::NoAnswer => "no_answer",
            Outcome::WrongNumber => "wrong_number",
            Outcome::Spam => "spam",
        }
    }
}

/// What came of one call attempt (`POST …/{id}/attempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Reached,
    NoAnswer,
    Busy,
    Voicemail,
    WrongNumber,
    Spam,
}

impl AttemptResult {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match raw {
            "reached" => Ok(AttemptResult::Reached),
            "no_answer" => Ok(AttemptResult::NoAnswer),
            "busy" => Ok(AttemptResult::Busy),
            "voicemail" => Ok(AttemptResult::Voicemail),
            "wrong_number" => Ok(AttemptResult::WrongNumber),
            "spam" => Ok(AttemptResult::Spam),
            _ => Err(FieldError::new(
                "result",
                "must be reached, no_answer, busy, voicemail, wrong_number or spam",
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptResult::Reached => "reached",
            AttemptResult::NoAnswer => "no_answer",
            AttemptResult::Busy => "busy",
            AttemptResult::Voicemail => "voicemail",
            AttemptResult::WrongNumber => "wrong_number",
            AttemptResult::Spam => "spam",
        }
    }

    /// The outcome that closes the message, or `None` when the message is to be called again
    /// (unless that was its last attempt: then it closes as [`Outcome::NoAnswer`]).
    pub fn closes_with(&self) -> Option<Outcome> {
        match self {
            AttemptResult::Reached => Some(Outcome::CalledBack),
            AttemptResult::WrongNumber => Some(Outcome::WrongNumber),
            AttemptResult::Spam => Some(Outcome::Spam),
            AttemptResult::NoAnswer | AttemptResult::Busy | AttemptResult::Voicemail => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_outcomes_round_trip_and_refuse_others() {
        for s in ["pending", "assigned", "processed"] {
            assert_eq!(Status::parse(s).unwrap().as_str(), s);
        }
        for o in ["called_back", "no_answer", "wrong_number", "spam"] {
            assert_eq!(Outcome::parse(o).unwrap().as_str(), o);
        }
        for bad in ["", "Pending", "done", "pending "] {
            assert!(Status::parse(bad).is_err());
        }
        for bad in ["", "CALLED_BACK", "voicemail"] {
            assert!(Outcome::parse(bad).is_err());
        }
    }

    #[test]
    fn attempt_results_round_trip_refuse_others_and_say_what_closes() {
        for r in [
            "reached",
            "no_answer",
            "busy",
            "voicemail",
            "wrong_number",
            "spam",
        ] {
            assert_eq!(AttemptResult::parse(r).unwrap().as_str(), r);
        }
        for bad in ["", "Reached", "called_back", "no answer", "busy "] {
            assert!(AttemptResult::parse(bad).is_err());
        }
        assert_eq!(
            AttemptResult::Reached.closes_with(),
            Some(Outcome::CalledBack)
        );
        assert_eq!(
            AttemptResult::WrongNumber.closes_with(),
            Some(Outcome::WrongNumber)
        );
        assert_eq!(AttemptResult::Spam.closes_with(), Some(Outcome::Spam));
        for retry in [
            AttemptResult::NoAnswer,
            AttemptResult::Busy,
            AttemptResult::Voicemail,
        ] {
            assert_eq!(retry.closes_with(), None);
        }
    }
}
