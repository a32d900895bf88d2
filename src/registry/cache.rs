//! In-memory caches that are always correct, and bounded.
//!
//! - [`ManifestCache`]: parsed manifests by digest. A digest names immutable bytes, so an
//!   entry can never be stale; the cache is bounded by the bytes it holds (a manifest may be up
//!   to 4 MiB), and starts over when full.
//! - [`TagIndex`]: each repository's tag names, sorted, so a page of the tags list is a binary
//!   search and a slice, O(log tags + page), instead of a directory listing of every tag. An
//!   entry is used only while the tags directory's modification time is the one seen when the
//!   names were read, and only if that time lay safely before the read (directory times tick in
//!   coarse steps, so a change in the same tick as the read could otherwise go unnoticed). Any
//!   writer, this process or another sharing the store, changes that time when it adds or
//!   removes a tag, so the index never serves a stale page; this process also drops the entry
//!   itself whenever it changes a tag.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::digest::Digest;
use super::manifests::StoredManifest;
use super::names::RepoName;

/// Bytes of manifests held in memory at most.
const MANIFEST_BUDGET: usize = 16 << 20;
/// Tag names held in memory at most, over all repositories.
const TAG_BUDGET: usize = 200_000;
/// A tags directory must have been unchanged this long before its listing was read for the
/// listing to be reused (several ticks of the kernel's coarse file-time clock).
const SETTLED: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct ManifestCache {
    inner: Mutex<(HashMap<Digest, Arc<StoredManifest>>, usize)>,
}

impl ManifestCache {
    pub fn get(&self, d: &Digest) -> Option<Arc<StoredManifest>> {
        self.inner.lock().expect("manifest cache poisoned").0.get(d).cloned()
    }

    pub fn insert(&self, m: Arc<StoredManifest>) {
        let size = m.bytes.len();
        if size > MANIFEST_BUDGET / 16 {
            return; // a few huge manifests must not push out thousands of ordinary ones
        }
        let mut g = self.inner.lock().expect("manifest cache poisoned");
        let (map, bytes) = &mut *g;
        if *bytes + size > MANIFEST_BUDGET {
            map.clear();
            *bytes = 0;
        }
        if map.insert(m.digest.clone(), m).is_none() {
            *bytes += size;
        }
    }
}

struct TagEntry {
    /// The tags directory's modification time when the names were read.
    stamp: SystemTime,
    tags: Arc<Vec<String>>,
}

#[derive(Default)]
pub struct TagIndex {
    inner: Mutex<(HashMap<RepoName, TagEntry>, usize)>,
}

impl TagIndex {
    /// The sorted tags of `repo`, if they were read while the directory had modification time
    /// `stamp` (and it had settled by then).
    pub fn get(&self, repo: &RepoName, stamp: SystemTime) -> Option<Arc<Vec<String>>> {
        let g = self.inner.lock().expect("tag index poisoned");
        g.0.get(repo).filter(|e| e.stamp == stamp).map(|e| e.tags.clone())
    }

    /// Remember `tags` (sorted), read at `read_at` from a directory whose modification time
    /// was `stamp` before the read began.
    pub fn insert(&self, repo: &RepoName, stamp: SystemTime, read_at: SystemTime, tags: Arc<Vec<String>>) {
        let settled = read_at.duration_since(stamp).is_ok_and(|age| age >= SETTLED);
        if !settled || tags.len() > TAG_BUDGET / 4 {
            return;
        }
        let mut g = self.inner.lock().expect("tag index poisoned");
        let (map, count) = &mut *g;
        if *count + tags.len() > TAG_BUDGET {
            map.clear();
            *count = 0;
        }
        *count += tags.len();
        if let Some(old) = map.insert(repo.clone(), TagEntry { stamp, tags }) {
            *count -= old.tags.len();
        }
    }

    /// Forget `repo`'s tags (this process changed them).
    pub fn invalidate(&self, repo: &RepoName) {
        let mut g = self.inner.lock().expect("tag index poisoned");
        let (map, count) = &mut *g;
        if let Some(old) = map.remove(repo) {
            *count -= old.tags.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_index_needs_a_settled_matching_stamp() {
        let idx = TagIndex::default();
        let repo = RepoName::parse("a/b").unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let tags = Arc::new(vec!["x".to_owned()]);
        // read in the same tick as the change: not kept
        idx.insert(&repo, t0, t0 + Duration::from_millis(5), tags.clone());
        assert!(idx.get(&repo, t0).is_none());
        idx.insert(&repo, t0, t0 + Duration::from_secs(1), tags.clone());
        assert_eq!(idx.get(&repo, t0).as_deref(), Some(&vec!["x".to_owned()]));
        // the directory changed since
        assert!(idx.get(&repo, t0 + Duration::from_millis(1)).is_none());
        idx.invalidate(&repo);
        assert!(idx.get(&repo, t0).is_none());
    }

    #[test]
    fn manifest_cache_holds_a_bounded_number_of_bytes() {
        let cache = ManifestCache::default();
        let manifest = |i: u32, len: usize| {
            let bytes = bytes::Bytes::from(vec![b' '; len]);
            Arc::new(StoredManifest {
                digest: format!("sha256:{:064x}", i).parse().unwrap(),
                media_type: String::new(),
                bytes,
                artifact_type: None,
                annotations: None,
                subject: None,
            })
        };
        for i in 0..100 {
            cache.insert(manifest(i, 1 << 20));
            assert!(cache.inner.lock().unwrap().1 <= MANIFEST_BUDGET);
        }
        assert!(cache.get(&manifest(99, 1).digest).is_some());
        cache.insert(manifest(1000, 4 << 20)); // too large to keep
        assert!(cache.get(&manifest(1000, 1).digest).is_none());
    }
}
