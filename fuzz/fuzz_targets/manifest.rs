//! Manifest parsing: no panic on any bytes and content type; the nesting limit agrees with
//! what the parser accepted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::registry::manifests::{MAX_JSON_DEPTH, nesting_exceeds, parse_manifest};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(0);
    let (ct, body) = data.split_at(split);
    let ct = std::str::from_utf8(ct).ok();
    let ok = parse_manifest(body, ct).is_ok();
    let _ = parse_manifest(body, None);
    if ok {
        assert!(!nesting_exceeds(body, MAX_JSON_DEPTH));
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok());
    }
});
