//! doLeaveMessage body handling: any bytes must produce either valid fields or a description
//! of what is wrong, never a panic, and accepted fields keep their promises.
#![no_main]

use chrono::{DateTime, Duration};
use leavemsg::visitor::leave_message::parse_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // A fixed "now", so that a finding replays the same way.
    let now = DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time");
    match parse_body(body, now) {
        Ok(accepted) => {
            let (phone, text) = (&accepted.phone, &accepted.text);
            assert!(phone.digits().len() >= 3);
            assert!((3..=32).contains(&phone.as_str().chars().count()));
            assert!(!text.as_str().is_empty() && text.as_str().chars().count() <= 2000);
            assert!(!text.as_str().contains('\0'));
            if let Some(at) = accepted.callback_after.map(|c| c.at()) {
                assert!(at >= now && at <= now + Duration::days(30));
            }
        }
        Err(why) => assert!(!why.is_empty()),
    }
});
