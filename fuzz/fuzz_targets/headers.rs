//! `Range` (blob GET) and `Content-Range` (upload chunks): no panic, ranges stay inside the
//! blob, chunk lengths are positive and do not overflow.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::http::headers::{RangeRequest, parse_content_range, parse_range};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[0] % 64);
    let Ok(s) = std::str::from_utf8(&data[8..]) else { return };
    if let RangeRequest::Partial(a, b) = parse_range(Some(s), size) {
        assert!(a < b && b <= size, "{s:?} on {size}: {a}..{b}");
    }
    if let Ok((start, Some(len))) = parse_content_range(s) {
        assert!(len >= 1);
        assert!(start.checked_add(len - 1).is_some());
    }
});
