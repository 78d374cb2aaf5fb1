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
}
