//! The SCIM filter parser: no panic on any input; the length limit answers TooLong.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scimbridge::scim::filter::{parse_filter, FilterError, MAX_INPUT_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let r = parse_filter(s);
        if s.len() > MAX_INPUT_LEN {
            assert!(matches!(r, Err(FilterError::TooLong { .. })));
        }
    }
});
