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
//! - [`CatalogIndex`]: every repository name of a filesystem store, sorted in the catalog's
//!   order, so a catalog page is a binary search past `last` and a filtered slice instead of a
//!   directory walk. See below for why it is never stale for a repository any Wharf creates.
//!
//! # The catalog index and its generation marker
//!
//! Directory times cannot validate the catalog (a repository is created deep in the tree, and
//! only its own parent's time changes), so the store holds a generation marker instead:
//! `wharf-catalog` at the storage root ([`super::paths::catalog_marker`]), beside Wharf's other
//! root objects and outside Distribution's `docker/` tree, so neither `registry:2`, Wharf's
//! catalog walk nor garbage collection (which walk `docker/registry/v2/repositories` and
//! `blobs`) ever meets it. Its content is a random token (a v4 UUID); a missing or empty marker
//! reads as "no token", which is a token like any other.
//!
//! - **Writers.** A manifest PUT (push or pull-through cache: both go through
//!   `store_manifest`, the only code that creates `_manifests/`) stats the repository's
//!   `_manifests/` first. If it is absent, or was modified less than [`catalog_young`] ago
//!   (a concurrent PUT may be creating the repository right now and not have written its
//!   token yet), the PUT makes sure a fresh token is written *after* its writes, whether or
//!   not they succeeded, and *before* it answers, then drops this process's index. Concurrent
//!   PUTs of one process share that write ([`CatalogIndex::renewal`]): a PUT waits for a
//!   token write that *began* after its writes, and writes one itself only if none did (in
//!   the argument below, "it wrote a fresh token" reads "a fresh token write began after...
//!   and ended before it acknowledged").
//! - **Readers.** A catalog request reads the token and uses the cached index only if it was
//!   built under that very token and less than the catalog index age (`Timeouts::catalog_index_max_age`) ago. Otherwise, under a
//!   rebuild lock (so concurrent misses walk once), it notes the time, reads the token again,
//!   walks `repositories/`, and caches the names under the token it read *before* the walk,
//!   aged from the moment before that read.
//!
//! Why no Wharf replica ever serves a page that misses a repository whose manifest PUT was
//! acknowledged (by any replica) before the request began: say the index was built under token T,
//! read at time `r`, and the walk that followed missed repository R. Then R's `_manifests/`
//! was created after `r` (the walk lists every directory after reading T). Take the PUT whose
//! answer came before the request:
//!
//! 1. It found `_manifests/` absent, or young: it wrote a fresh token after it had created
//!    (or seen) `_manifests/`, so after `r`, and before it acknowledged, so before this request
//!    read the token. Tokens are random and never reused, so the request reads a token other
//!    than T and rebuilds. The interleaving "reader reads T, writer creates R, writer writes
//!    T', reader finishes its walk without R" only caches the walk under T, which no request
//!    after T' matches.
//! 2. It found `_manifests/` older than [`catalog_young`] (= the largest maximum age plus a
//!    second for the coarse file clock): `_manifests/` was created after `r` and at least that
//!    long before the PUT, so the index is older than the catalog index age (`Timeouts::catalog_index_max_age`) when the request
//!    comes, and it is rebuilt. This case needs the wall clock not to step forward meanwhile.
//!
//! A writer that dies between creating `_manifests/` and writing the token never acknowledged,
//! so it breaks nothing above: a later PUT to that repository finds it young (case 1) or old
//! (case 2), and other readers see it within the age bound. A marker lost in a machine crash
//! (it is written without fsync) only reads as an old token or "none" after the reboot, when
//! no process holds an index built before the crash.
//!
//! No Wharf code removes a repository: DELETE, garbage collection and pull-through eviction
//! delete tags, revision links, layer links, referrer entries and uploads, never `_manifests/`,
//! so an emptied repository stays in the catalog, as with `registry:2` (and as the walk shows
//! it). Code that ever removes `_manifests/` must call `Registry::catalog_changed` after it.
//!
//! Writers that are not Wharf (Distribution sharing the directory, rsync, an operator's
//! `rm -rf`) write no token: their changes show once the index is the catalog index age (`Timeouts::catalog_index_max_age`) old
//! (5 s), which bounds the staleness they can see. Object stores keep the walk per page.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

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
/// Repository names the catalog index holds at most (about 50 bytes each); a larger store is
/// walked per page, as on object stores.
const CATALOG_BUDGET: usize = 200_000;

/// A repository whose `_manifests/` changed less than this ago may still be being created by a
/// PUT that has not written its token yet: longer than any process's catalog index age (the
/// default, or this one's `max_age`, from `Timeouts::catalog_index_max_age`), plus a second for
/// the coarse clock that stamps file times.
pub fn catalog_young(max_age: Duration) -> Duration {
    crate::hooks::CATALOG_INDEX_MAX_AGE.max(max_age) + Duration::from_secs(1)
}

/// Parsed manifests by digest, bounded at [`MANIFEST_BUDGET`] bytes; and every manifest some
/// request still holds, however large, so that concurrent requests for one digest share one
/// copy of its bytes (a slow reader of a 4 MiB manifest must not cost 4 MiB per connection).
#[derive(Default)]
pub struct ManifestCache {
    inner: Mutex<(HashMap<Digest, Arc<StoredManifest>>, usize)>,
    /// Manifests too large for the budget, while any request holds them (a response being
    /// sent holds its manifest until the last byte is written: see `http::manifests`).
    live: Mutex<HashMap<Digest, Weak<StoredManifest>>>,
    /// One load at a time per digest, so concurrent misses read and parse a manifest once.
    loading: Mutex<HashMap<Digest, Weak<tokio::sync::Mutex<()>>>>,
}

/// Dead entries of the live and loading maps are swept once they hold this many.
const SWEEP_AT: usize = 256;

impl ManifestCache {
    pub fn get(&self, d: &Digest) -> Option<Arc<StoredManifest>> {
        if let Some(m) = self.inner.lock().expect("manifest cache poisoned").0.get(d).cloned() {
            return Some(m);
        }
        let live = self.live.lock().expect("manifest cache poisoned");
        live.get(d).and_then(Weak::upgrade)
    }

    /// Wait for any other load of `d` to finish, and keep others waiting while the guard is
    /// held: the caller looks in the cache again, then loads and inserts.
    pub async fn loading(&self, d: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.loading.lock().expect("manifest cache poisoned");
            match map.get(d).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    if map.len() >= SWEEP_AT {
                        map.retain(|_, w| w.strong_count() > 0);
                    }
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(d.clone(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }

    /// Remember a manifest just read; returns the copy to use (an equal one another request
    /// holds already, if any, so only one stays in memory).
    pub fn insert(&self, m: Arc<StoredManifest>) -> Arc<StoredManifest> {
        let size = m.bytes.len();
        if size > MANIFEST_BUDGET / 16 {
            // A few huge manifests must not push out thousands of ordinary ones: kept only
            // while some request holds them.
            let mut live = self.live.lock().expect("manifest cache poisoned");
            if let Some(held) = live.get(&m.digest).and_then(Weak::upgrade) {
                return held;
            }
            if live.len() >= SWEEP_AT {
                live.retain(|_, w| w.strong_count() > 0);
            }
            live.insert(m.digest.clone(), Arc::downgrade(&m));
            return m;
        }
        let mut g = self.inner.lock().expect("manifest cache poisoned");
        let (map, bytes) = &mut *g;
        if *bytes + size > MANIFEST_BUDGET {
            map.clear();
            *bytes = 0;
        }
        if map.insert(m.digest.clone(), m.clone()).is_none() {
            *bytes += size;
        }
        m
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

/// What the catalog index holds.
#[derive(Clone)]
pub enum Indexed {
    /// Every repository name, sorted by `listing::path_order`.
    Names(Arc<Vec<String>>),
    /// More names than [`CATALOG_BUDGET`]: walk per page.
    TooMany,
}

impl Indexed {
    /// The names, or `None` when there are too many to index.
    pub fn names(self) -> Option<Arc<Vec<String>>> {
        match self {
            Indexed::Names(n) => Some(n),
            Indexed::TooMany => None,
        }
    }
}

struct CatalogEntry {
    /// The marker's content when the walk began (`None`: no marker).
    token: Option<Bytes>,
    /// Taken before the token was read.
    read_at: Instant,
    indexed: Indexed,
}

/// The filesystem catalog, validated by the store's generation marker (see the module docs).
pub struct CatalogIndex {
    inner: Mutex<Option<CatalogEntry>>,
    /// Held while the index is rebuilt, so concurrent misses walk the store once.
    rebuild: tokio::sync::Mutex<()>,
    budget: usize,
    /// Held while this process writes a fresh token; with the two counters, concurrent PUTs
    /// share token writes ([`CatalogIndex::renewal`]).
    renewing: tokio::sync::Mutex<()>,
    /// Token writes begun by this process (each one's number, from 1).
    renewals_begun: AtomicU64,
    /// The number of the last of them that completed.
    renewal_done: AtomicU64,
}

/// A caller's share of the token writes: see [`CatalogIndex::renewal`].
pub struct Renewal<'a> {
    index: &'a CatalogIndex,
    _writing: tokio::sync::MutexGuard<'a, ()>,
    number: u64,
}

impl Renewal<'_> {
    /// The token write this renewal stands for succeeded.
    pub fn done(self) {
        self.index.renewal_done.store(self.number, Ordering::SeqCst);
    }
}

impl Default for CatalogIndex {
    fn default() -> Self {
        CatalogIndex::with_budget(CATALOG_BUDGET)
    }
}

impl CatalogIndex {
    pub fn with_budget(budget: usize) -> Self {
        CatalogIndex {
            inner: Mutex::new(None),
            rebuild: tokio::sync::Mutex::new(()),
            budget,
            renewing: tokio::sync::Mutex::new(()),
            renewals_begun: AtomicU64::new(0),
            renewal_done: AtomicU64::new(0),
        }
    }

    /// A caller that needs a fresh token written after now (its change is visible) and before
    /// it answers: `None` once a token write that began after this call completed (a
    /// concurrent PUT's), else `Some`, and the caller writes the token and calls
    /// [`Renewal::done`]. Writes are one at a time, so a burst of PUTs writes about two tokens
    /// however many there are.
    pub async fn renewal(&self) -> Option<Renewal<'_>> {
        // Every write numbered above `seen` begins after this load.
        let seen = self.renewals_begun.load(Ordering::SeqCst);
        let writing = self.renewing.lock().await;
        if self.renewal_done.load(Ordering::SeqCst) > seen {
            return None;
        }
        let number = self.renewals_begun.fetch_add(1, Ordering::SeqCst) + 1;
        Some(Renewal {
            index: self,
            _writing: writing,
            number,
        })
    }

    /// Names held at most.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The index, if it was built under `token` less than `max_age` ago.
    pub fn get(&self, token: &Option<Bytes>, max_age: Duration) -> Option<Indexed> {
        let g = self.inner.lock().expect("catalog index poisoned");
        g.as_ref()
            .filter(|e| &e.token == token && e.read_at.elapsed() < max_age)
            .map(|e| e.indexed.clone())
    }

    /// Remember a walk that began after `read_at`, when the marker held `token`.
    pub fn insert(&self, token: Option<Bytes>, read_at: Instant, indexed: Indexed) {
        let mut g = self.inner.lock().expect("catalog index poisoned");
        // Never replace a newer walk with an older one (two rebuilds cannot overlap, but keep
        // the rule local).
        if g.as_ref().is_some_and(|e| e.read_at > read_at) {
            return;
        }
        *g = Some(CatalogEntry {
            token,
            read_at,
            indexed,
        });
    }

    /// Forget the index (this process changed the set of repositories).
    pub fn invalidate(&self) {
        *self.inner.lock().expect("catalog index poisoned") = None;
    }

    /// Serialize rebuilds.
    pub async fn rebuilding(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.rebuild.lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_index_needs_the_same_token_and_a_young_entry() {
        let idx = CatalogIndex::default();
        let names = |v: &[&str]| Indexed::Names(Arc::new(v.iter().map(|s| s.to_string()).collect()));
        let t1 = Some(Bytes::from_static(b"one"));
        let t2 = Some(Bytes::from_static(b"two"));
        let day = Duration::from_secs(86_400);
        assert!(idx.get(&None, day).is_none());
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        idx.insert(t1.clone(), Instant::now(), names(&["a"]));
        assert!(matches!(idx.get(&t1, day), Some(Indexed::Names(n)) if n[..] == ["a"]));
        assert!(idx.get(&t2, day).is_none(), "another token");
        assert!(idx.get(&None, day).is_none(), "the marker went missing");
        assert!(idx.get(&t1, Duration::ZERO).is_none(), "too old");
        // an older walk does not replace a newer one
        idx.insert(t2.clone(), before, names(&["b"]));
        assert!(idx.get(&t2, day).is_none());
        idx.insert(None, Instant::now(), Indexed::TooMany);
        assert!(matches!(idx.get(&None, day), Some(Indexed::TooMany)));
        idx.invalidate();
        assert!(idx.get(&None, day).is_none());
        let short = Duration::from_millis(10);
        assert!(catalog_young(short) > crate::hooks::CATALOG_INDEX_MAX_AGE);
        assert!(catalog_young(day) > day);
    }

    #[tokio::test]
    async fn concurrent_renewals_share_one_token_write() {
        let idx = Arc::new(CatalogIndex::default());
        // A write is under way when ten more callers arrive: they all wait for it, then
        // exactly one of them writes (the first write began before they asked).
        let first = idx.renewal().await.expect("nothing written yet");
        let mut waiters = Vec::new();
        for _ in 0..10 {
            let idx = idx.clone();
            waiters.push(tokio::spawn(async move {
                match idx.renewal().await {
                    Some(r) => {
                        tokio::task::yield_now().await;
                        r.done();
                        true
                    }
                    None => false,
                }
            }));
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        first.done();
        let mut wrote = 0;
        for w in waiters {
            wrote += w.await.unwrap() as usize;
        }
        assert_eq!(wrote, 1, "one shared write for the ten");
        // a later caller asks after every write began: it writes again
        let r = idx.renewal().await.expect("a later change needs its own write");
        // ... and when that write fails (dropped without done), the next caller writes
        drop(r);
        let r = idx.renewal().await.expect("a failed write stands for nobody");
        r.done();
        assert!(idx.renewal().await.is_some(), "sequential callers each write");
    }

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
        // Too large to keep, but shared while held: a second copy read meanwhile is dropped.
        let held = cache.insert(manifest(1000, 4 << 20));
        let again = cache.insert(manifest(1000, 4 << 20));
        assert!(Arc::ptr_eq(&held, &again));
        assert!(Arc::ptr_eq(&cache.get(&held.digest).unwrap(), &held));
        drop((held, again));
        assert!(cache.get(&manifest(1000, 1).digest).is_none());
    }
}
