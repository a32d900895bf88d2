//! Repository names, tags, upload ids and digests: no panic; what is accepted round-trips and
//! obeys the grammar (no empty, `.` or `..` component can reach a storage path).
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::registry::digest::Digest;
use wharf::registry::names::{RepoName, Tag, UploadId};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = RepoName::parse(s) {
        assert_eq!(n.as_str(), s);
        assert!(s.len() <= 255);
        assert!(s.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    }
    if let Some(t) = Tag::parse(s) {
        assert_eq!(t.as_str(), s);
        assert!(!s.contains('/') && s.len() <= 128);
    }
    if let Some(id) = UploadId::parse(s) {
        assert_eq!(id.as_str(), s);
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
    }
});
