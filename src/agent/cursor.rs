//! The opaque `nextCursor` of the message list: a position `(received_at, id)` in list order.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;

use crate::store::listing::Position;

const VERSION: &str = "1";

pub fn encode(position: Position) -> String {
    let plain = format!(
        "{VERSION}:{}:{}",
        position.received_at.timestamp_micros(),
        position.id
    );
    URL_SAFE_NO_PAD.encode(plain)
}

pub fn decode(cursor: &str) -> Option<Position> {
    if cursor.len() > 100 {
        return None;
    }
    let plain = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let mut parts = plain.split(':');
    if parts.next()? != VERSION {
        return None;
    }
    let micros: i64 = parts.next()?.parse().ok()?;
    let id: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Position {
        received_at: DateTime::from_timestamp_micros(micros)?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_microsecond() {
        let position = Position {
            received_at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            id: 42,
        };
        assert_eq!(decode(&encode(position)), Some(position));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "x",
            "MTox",
            &URL_SAFE_NO_PAD.encode("2:1:1"),
            &URL_SAFE_NO_PAD.encode("1:a:1"),
            &URL_SAFE_NO_PAD.encode("1:1:1:1"),
            &"A".repeat(200),
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
