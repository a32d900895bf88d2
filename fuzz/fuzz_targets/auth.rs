//! Token scopes and `Authorization` headers: no panic; scopes Wharf writes into challenges
//! parse back to what was required.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::auth::scope::{Access, challenge_scope, parse_scopes};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for r in parse_scopes(s) {
        assert!(!r.typ.is_empty() && !r.name.is_empty());
    }
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(s) {
        h.insert(http::header::AUTHORIZATION, v);
        let _ = wharf::auth::credentials(&h);
    }
    // names without whitespace survive a challenge round trip
    let name: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !name.is_empty() {
        let need = [Access::repository(&name, "pull"), Access::repository(&name, "push")];
        let parsed = parse_scopes(&challenge_scope(&need));
        assert!(need.iter().all(|a| parsed.iter().any(|r| r.covers(a))), "{name:?}");
    }
});
