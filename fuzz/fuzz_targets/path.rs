//! The PATCH attribute-path parser: no panic on any input; the length limit answers TooLong.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scimbridge::scim::filter::{FilterError, MAX_INPUT_LEN};
use scimbridge::scim::path::parse_path;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let r = parse_path(s);
        if s.len() > MAX_INPUT_LEN {
            assert!(matches!(r, Err(FilterError::TooLong { .. })));
        }
    }
});
