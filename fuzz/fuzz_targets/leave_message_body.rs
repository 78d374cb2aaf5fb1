//! doLeaveMessage body handling: any bytes must produce either two valid fields or a
//! description of what is wrong, never a panic, and accepted fields keep their promises.
#![no_main]

use leavemsg::visitor::leave_message::parse_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match parse_body(body) {
        Ok((phone, text)) => {
            assert!(phone.digits().len() >= 3);
            assert!((3..=32).contains(&phone.as_str().chars().count()));
            assert!(!text.as_str().is_empty() && text.as_str().chars().count() <= 2000);
            assert!(!text.as_str().contains('\0'));
        }
        Err(why) => assert!(!why.is_empty()),
    }
});
