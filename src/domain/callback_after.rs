use chrono::{DateTime, Duration, Utc};

use super::FieldError;

/// The visitor's "do not call me before" (doLeaveMessage's optional `callbackAfter`): an
/// RFC 3339 time with an offset, at most 30 days ahead. A time in the past counts as now, so
/// the value held is always within [now, now + 30 days] of when it was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackAfter(DateTime<Utc>);

impl CallbackAfter {
    pub const FIELD: &str = "callbackAfter";
    /// How far ahead a visitor may ask to be called.
    pub const MAX_AHEAD_DAYS: i64 = 30;
    /// Longest text looked at: the longest RFC 3339 time chrono keeps in full
    /// (`2026-12-01T18:00:00.123456789+05:30`) is 35 characters; longer ones are refused
    /// unread, and their text is never echoed back.
    const MAX_LEN: usize = 64;

    /// Parses `raw` as given at `now`. Only a time with an offset (`Z` or `±hh:mm`) is one:
    /// a local time without an offset would be read in a time zone the visitor did not choose.
    pub fn parse(raw: &str, now: DateTime<Utc>) -> Result<Self, FieldError> {
        let not_a_time = || {
            FieldError::new(
                Self::FIELD,
                "must be an RFC 3339 time with an offset, e.g. 2026-12-01T18:00:00+01:00",
            )
        };
        if raw.len() > Self::MAX_LEN {
            return Err(not_a_time());
        }
        let at = DateTime::parse_from_rfc3339(raw)
            .map_err(|_| not_a_time())?
            .with_timezone(&Utc);
        if at > now + Duration::days(Self::MAX_AHEAD_DAYS) {
            return Err(FieldError::new(
                Self::FIELD,
                "must be at most 30 days ahead",
            ));
        }
        Ok(CallbackAfter(at.max(now)))
    }

    /// The time, in UTC.
    pub fn at(self) -> DateTime<Utc> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_future_time_is_kept_in_utc_whatever_its_offset() {
        for (given, expected) in [
            ("2026-12-01T18:00:00+01:00", "2026-12-01T17:00:00Z"),
            ("2026-12-01T17:00:00Z", "2026-12-01T17:00:00Z"),
            ("2026-12-01t17:00:00z", "2026-12-01T17:00:00Z"),
            ("2026-12-01 17:00:00Z", "2026-12-01T17:00:00Z"),
            ("2026-12-01T22:30:00.250+05:30", "2026-12-01T17:00:00.250Z"),
            ("2026-12-01T07:00:00-10:00", "2026-12-01T17:00:00Z"),
        ] {
            let parsed = CallbackAfter::parse(given, now()).unwrap();
            assert_eq!(parsed.at(), utc(expected), "{given}");
        }
    }

    #[test]
    fn a_past_time_counts_as_now() {
        for past in [
            "2026-12-01T09:59:59Z",
            "2026-12-01T10:00:00+00:01",
            "1970-01-01T00:00:00Z",
            "0001-01-01T00:00:00+23:59",
        ] {
            assert_eq!(
                CallbackAfter::parse(past, now()).unwrap().at(),
                now(),
                "{past}"
            );
        }
        assert_eq!(
            CallbackAfter::parse("2026-12-01T10:00:00Z", now())
                .unwrap()
                .at(),
            now()
        );
    }

    #[test]
    fn thirty_days_ahead_is_the_limit() {
        let limit = "2026-12-31T10:00:00Z";
        assert_eq!(CallbackAfter::parse(limit, now()).unwrap().at(), utc(limit));
        for beyond in [
            "2026-12-31T10:00:00.000001Z",
            "2026-12-31T11:00:01+01:00",
            "2026-12-31T10:00:01Z",
            "9999-12-31T23:59:59Z",
        ] {
            let err = CallbackAfter::parse(beyond, now()).unwrap_err().to_string();
            assert!(err.starts_with("callbackAfter "), "{beyond}: {err}");
        }
        assert_eq!(
            CallbackAfter::parse("2026-12-31T10:00:01Z", now())
                .unwrap_err()
                .to_string(),
            "callbackAfter must be at most 30 days ahead"
        );
    }

    #[test]
    fn anything_but_a_time_with_an_offset_is_refused_by_name() {
        let long = format!("2026-12-01T17:00:00.{}Z", "1".repeat(100));
        for bad in [
            "",
            " ",
            "now",
            "tomorrow evening",
            "2026-12-01",
            "17:00",
            "2026-12-01T17:00:00",
            "2026-12-01T17:00Z",
            "2026-12-01T17:00:00+0100",
            "2026-12-01T17:00:00+24:00",
            "2026-12-01T17:00:00 CET",
            "2026-02-30T17:00:00Z",
            "2026-12-01T25:00:00Z",
            " 2026-12-01T17:00:00Z",
            "2026-12-01T17:00:00Z ",
            "1764608400",
            "２０２６-12-01T17:00:00Z",
            long.as_str(),
        ] {
            let err = CallbackAfter::parse(bad, now()).unwrap_err().to_string();
            assert_eq!(
                err,
                "callbackAfter must be an RFC 3339 time with an offset, e.g. \
                 2026-12-01T18:00:00+01:00",
                "{bad:?}"
            );
        }
    }
}
