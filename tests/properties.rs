//! Property tests: every parser facing the outside, fed what machines come up with.

use std::net::IpAddr;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use leavemsg::agent::cursor;
use leavemsg::credentials::SigningKey;
use leavemsg::domain::TrustedProxies;
use leavemsg::domain::{
    CallbackAfter, ChannelId, MessageText, PhoneNo, UserId, is_bidi_control, is_blank,
};
use leavemsg::store::listing::Position;
use leavemsg::visitor::client_ip::resolve;
use leavemsg::visitor::leave_message::parse_body;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn phone_parsing_never_panics_and_keeps_its_promises(raw in "\\PC{0,40}|[+0-9 .()\\-]{0,40}") {
        if let Ok(phone) = PhoneNo::parse(&raw) {
            let given = phone.as_str();
            prop_assert_eq!(given, raw.trim());
            prop_assert!((3..=32).contains(&given.chars().count()));
            prop_assert!(phone.digits().len() >= 3);
            prop_assert!(phone.digits().bytes().all(|b| b.is_ascii_digit()));
            let digits_in_given: String = given.chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(phone.digits(), digits_in_given.as_str());
        }
    }

    #[test]
    fn well_formed_phone_numbers_are_accepted(
        plus in proptest::bool::ANY,
        groups in proptest::collection::vec("[0-9]{1,4}", 1..6),
        sep in "[ .\\-]",
    ) {
        let number = format!("{}{}", if plus { "+" } else { "" }, groups.join(&sep));
        let digits: usize = groups.iter().map(String::len).sum();
        let ok = digits >= 3 && number.chars().count() <= 32;
        prop_assert_eq!(PhoneNo::parse(&number).is_ok(), ok, "{}", number);
    }

    #[test]
    fn message_parsing_never_panics_and_keeps_its_promises(
        // The third alternative mixes invisible and bidirectional characters with a visible one.
        raw in "\\PC{0,60}|(?s).{0,60}|[ a\u{ad}\u{200b}-\u{200f}\u{202a}-\u{202e}\u{2060}\u{2066}-\u{2069}\u{feff}]{0,12}"
    ) {
        match MessageText::parse(&raw) {
            Ok(text) => {
                let kept = text.as_str();
                prop_assert_eq!(kept, raw.trim());
                prop_assert!(!kept.is_empty() && kept.chars().count() <= MessageText::MAX_CHARS);
                prop_assert!(kept.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\r' | '\n')));
                prop_assert!(!is_blank(kept), "{:?} has nothing visible", kept);
                prop_assert!(!kept.chars().any(is_bidi_control), "{:?}", kept);
            }
            Err(e) => prop_assert!(e.to_string().starts_with("leaveMessage ")),
        }
    }

    #[test]
    fn tokens_round_trip_and_any_change_is_refused(
        // Valid userIds: no controls or format characters (bidirectional controls are among
        // them), and a visible character at each end (not a mark or a filler).
        user in "[^\\p{Cc}\\p{Cf}\\p{Mn}\\s\u{115f}\u{1160}\u{3164}\u{ffa0}][^\\p{Cc}\\p{Cf}]{0,30}[^\\p{Cc}\\p{Cf}\\p{Mn}\\s\u{115f}\u{1160}\u{3164}\u{ffa0}]|[^\\p{Cc}\\p{Cf}\\p{Mn}\\s\u{115f}\u{1160}\u{3164}\u{ffa0}]",
        ttl in 60i64..604_800,
        flip in any::<prop::sample::Index>(),
    ) {
        let key = SigningKey::generate();
        let now = Utc::now();
        let user_id = UserId::parse(&user).unwrap();
        let issued = key.issue(ChannelId::new_random(), user_id, now, Duration::seconds(ttl));
        let verified = key.verify(&issued.token, now).unwrap();
        prop_assert_eq!(&verified.claims, &issued.claims);
        prop_assert!(key.verify(&issued.token, issued.claims.expires_at).is_err());

        let mut chars: Vec<char> = issued.token.chars().collect();
        let i = flip.index(chars.len());
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let changed: String = chars.into_iter().collect();
        prop_assert!(key.verify(&changed, now).is_err());
    }

    #[test]
    fn arbitrary_strings_are_never_tokens(junk in "\\PC{0,600}") {
        prop_assert!(SigningKey::generate().verify(&junk, Utc::now()).is_err());
    }

    #[test]
    fn client_ip_is_always_one_the_request_named(
        peer in any::<IpAddr>(),
        hops in proptest::collection::vec(any::<IpAddr>(), 0..5),
        junk in "\\PC{0,30}",
        real in proptest::option::of(any::<IpAddr>()),
        trust_peer in proptest::bool::ANY,
        trust_hops in proptest::collection::vec(proptest::bool::ANY, 5),
    ) {
        let mut trusted_list: Vec<String> = hops
            .iter()
            .zip(&trust_hops)
            .filter(|(_, t)| **t)
            .map(|(h, _)| h.to_string())
            .collect();
        if trust_peer {
            trusted_list.push(peer.to_string());
        }
        let trusted = TrustedProxies::parse(&trusted_list.join(",")).unwrap();
        let chain = hops.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
        let real_text = real.map(|r| r.to_string());
        let got = resolve(peer, Some(&chain), real_text.as_deref(), &trusted);
        let named: Vec<IpAddr> = std::iter::once(peer)
            .chain(hops.iter().copied())
            .chain(real)
            .map(|ip| ip.to_canonical())
            .collect();
        prop_assert!(named.contains(&got));
        // With an X-Forwarded-For header, X-Real-IP (which the client may have written) is
        // never believed: the answer is the peer or a hop of the chain.
        let peer_or_hops: Vec<IpAddr> = std::iter::once(peer)
            .chain(hops.iter().copied())
            .map(|ip| ip.to_canonical())
            .collect();
        prop_assert!(peer_or_hops.contains(&got));
        if !trusted.contains(peer) {
            prop_assert_eq!(got, peer.to_canonical());
        }
        // Garbage in the headers never panics and never yields an address nobody named.
        let got = resolve(peer, Some(&junk), Some(&junk), &trusted);
        prop_assert!(named.contains(&got) || junk.contains(&got.to_string()));
        let got = resolve(peer, Some(&junk), real_text.as_deref(), &trusted);
        prop_assert!(got == peer.to_canonical() || junk.contains(&got.to_string()));
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused(micros in -62_000_000_000_000_000i64..250_000_000_000_000_000, id in any::<i64>(), junk in "\\PC{0,120}") {
        if let Some(received_at) = DateTime::from_timestamp_micros(micros) {
            let position = Position { received_at, id };
            prop_assert_eq!(cursor::decode(&cursor::encode(position)), Some(position));
        }
        let _ = cursor::decode(&junk);
    }

    #[test]
    fn leave_message_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_body(&body, Utc::now());
    }

    #[test]
    fn json_shaped_bodies_are_judged_by_their_fields(phone in "\\PC{0,40}", text in "\\PC{0,80}", extra in "\\PC{0,20}") {
        let body = serde_json::json!({"phoneNo": phone, "leaveMessage": text, "x": extra}).to_string();
        let expected = PhoneNo::parse(&phone).is_ok() && MessageText::parse(&text).is_ok();
        prop_assert_eq!(parse_body(body.as_bytes(), Utc::now()).is_ok(), expected);
    }

    #[test]
    fn callback_after_never_panics_and_stays_within_thirty_days(
        // Any text; and texts shaped like RFC 3339 times, valid or nearly, that may land
        // anywhere from the past to far ahead.
        raw in "\\PC{0,80}|(?s).{0,80}|[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:?[0-9]{2})?|202[5-7]-(0[1-9]|1[0-2])-[0-2][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]Z",
        // 2025 and 2026, so that some of the times shaped above are within 30 days.
        now in 1_735_689_600i64..1_798_761_600,
    ) {
        let now = DateTime::from_timestamp(now, 0).unwrap();
        match CallbackAfter::parse(&raw, now) {
            Ok(parsed) => {
                prop_assert!(parsed.at() >= now, "{} before {}", parsed.at(), now);
                prop_assert!(parsed.at() <= now + Duration::days(30), "{} beyond 30 days", parsed.at());
                prop_assert!(DateTime::parse_from_rfc3339(&raw).is_ok(), "{:?} accepted", raw);
            }
            Err(e) => prop_assert!(e.to_string().starts_with("callbackAfter "), "{}", e),
        }
    }

    #[test]
    fn a_time_with_any_offset_is_the_same_instant_or_now_or_refused(
        now in NOW_RANGE,
        ahead_ms in -100i64 * 86_400_000..100 * 86_400_000,
        offset_minutes in -1439i32..=1439,
        separator in "[Tt ]",
    ) {
        let now = DateTime::from_timestamp(now, 0).unwrap();
        let at = now + Duration::milliseconds(ahead_ms);
        let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
        let text = at
            .with_timezone(&offset)
            .format(&format!("%Y-%m-%d{separator}%H:%M:%S%.f%:z"))
            .to_string();
        let parsed = CallbackAfter::parse(&text, now).map(CallbackAfter::at);
        if at > now + Duration::days(30) {
            prop_assert_eq!(
                parsed.clone().unwrap_err().to_string(),
                "callbackAfter must be at most 30 days ahead"
            );
        } else {
            prop_assert_eq!(parsed.clone(), Ok(at.max(now)), "{}", text);
        }
        // The same through a request body.
        let body = serde_json::json!({"phoneNo": "123456", "leaveMessage": "hi", "callbackAfter": text}).to_string();
        let from_body = parse_body(body.as_bytes(), now).map(|b| b.callback_after.map(CallbackAfter::at));
        prop_assert_eq!(from_body.ok(), parsed.ok().map(Some));
    }
}

/// Unix seconds of "now" for the callbackAfter properties: 2000 to 2100.
const NOW_RANGE: std::ops::Range<i64> = 946_684_800..4_102_444_800;
