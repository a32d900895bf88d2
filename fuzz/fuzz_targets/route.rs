//! `/v2/` paths: no panic, and a parsed route only carries a valid repository name that is
//! literally a prefix of the path.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::http::route;
use wharf::registry::names::RepoName;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let path = format!("/v2/{s}");
    if let Ok(r) = route::parse(&path) {
        let Some(name) = r.name().map(|n| n.as_str()) else { return };
        assert!(RepoName::parse(name).is_ok());
        assert!(path.starts_with(&format!("/v2/{name}/")));
    }
    let _ = route::parse(s);
});
