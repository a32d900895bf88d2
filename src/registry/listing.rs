//! Tags list and catalog, with `n`/`last` pagination.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::cache::{self, Indexed};
use super::names::RepoName;
use super::{Registry, paths};
use crate::error::{Error, Result};
use crate::storage::StoragePath;

/// One page: the entries, and whether more remain after them.
pub struct Page {
    pub items: Vec<String>,
    pub more: bool,
}

/// Take up to `n` items strictly after `last`, from `items` sorted by `cmp`.
fn paginate(items: Vec<String>, last: Option<&str>, n: Option<usize>, cmp: fn(&str, &str) -> Ordering) -> Page {
    let mut rest: Vec<String> = match last {
        Some(l) => items.into_iter().filter(|i| cmp(i, l) == Ordering::Greater).collect(),
        None => items,
    };
    let more = n.is_some_and(|n| n > 0 && rest.len() > n);
    if let Some(n) = n {
        rest.truncate(n);
    }
    Page { items: rest, more }
}

/// Distribution's catalog order: component by component, so `a/b` sorts before `a-b`.
pub fn path_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// The names of the sorted catalog index after `last` (in `path_order`, so a name need not
/// exist to be a `last`) that `keep` accepts, at most `want` of them: O(log names + page) when
/// `keep` accepts most names.
fn index_page(
    names: &[String],
    last: Option<&str>,
    want: Option<usize>,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> Vec<String> {
    let from = last.map_or(0, |l| names.partition_point(|r| path_order(r, l) != Ordering::Greater));
    let mut out = Vec::new();
    for r in &names[from..] {
        if want.is_some_and(|w| out.len() >= w) {
            break;
        }
        if keep(r) {
            out.push(r.clone());
        }
    }
    out
}

impl Registry {
    pub async fn list_tags(&self, repo: &RepoName, last: Option<&str>, n: Option<usize>) -> Result<Page> {
        if !self.repo_exists(repo).await? {
            return Err(Error::NameUnknown(repo.clone()));
        }
        if self.driver.capabilities().object_store {
            // Object stores have no directory times to validate an index with: list every time.
            let tags = self
                .all_tags(repo)
                .await?
                .into_iter()
                .map(|t| t.as_str().to_owned())
                .collect();
            return Ok(paginate(tags, last, n, |a, b| a.cmp(b)));
        }
        let tags = self.sorted_tags(repo).await?;
        // The page is a slice of the sorted index: O(log tags + page).
        let from = last.map_or(0, |l| tags.partition_point(|t| t.as_str() <= l));
        let rest = &tags[from..];
        let take = n.map_or(rest.len(), |n| n.min(rest.len()));
        Ok(Page {
            items: rest[..take].to_vec(),
            more: n.is_some_and(|n| n > 0 && rest.len() > n),
        })
    }

    /// A filesystem repository's tags, sorted, from the tag index while the tags directory is
    /// unchanged (see `cache::TagIndex`), else from a fresh listing.
    async fn sorted_tags(&self, repo: &RepoName) -> Result<Arc<Vec<String>>> {
        let dir = paths::tags_dir(repo);
        let read_at = SystemTime::now();
        let stamp = match self.driver.stat(&dir).await {
            Ok(fi) => fi.modified,
            Err(e) if e.is_not_found() => return Ok(Arc::default()),
            Err(e) => return Err(e.into()),
        };
        if let Some(tags) = self.tag_index.get(repo, stamp) {
            return Ok(tags);
        }
        let tags: Arc<Vec<String>> = Arc::new(
            self.all_tags(repo)
                .await?
                .into_iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
        );
        self.tag_index.insert(repo, stamp, read_at, tags.clone());
        Ok(tags)
    }

    pub async fn catalog(&self, last: Option<&str>, n: Option<usize>) -> Result<Page> {
        self.catalog_filtered(last, n, &|_| true).await
    }

    /// The catalog restricted to the names `keep` accepts (filtered before pagination, so
    /// pages stay full).
    ///
    /// Filesystem stores: a binary search and a filtered slice of the catalog index
    /// (`cache::CatalogIndex`), O(log repositories + page) while it is valid. Object stores,
    /// stores with more names than the index holds, and a store whose generation marker cannot
    /// be read: the walk below, per page.
    pub async fn catalog_filtered(
        &self,
        last: Option<&str>,
        n: Option<usize>,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Page> {
        // One name more than the page needs says whether more remain.
        let want = n.map(|n| n.saturating_add(1));
        let mut repos = if !self.driver.capabilities().object_store
            && let Some(names) = self.catalog_names().await?
        {
            index_page(&names, last, want, keep)
        } else {
            self.walk_catalog(last, want, keep).await?
        };
        let more = n.is_some_and(|n| n > 0 && repos.len() > n);
        if let Some(n) = n {
            repos.truncate(n);
        }
        Ok(Page { items: repos, more })
    }

    /// The catalog index, valid now (see `cache` for why it is never stale for a repository a
    /// Wharf process created); rebuilt by a whole walk when the marker changed or it aged out.
    /// `None`: walk per page instead.
    async fn catalog_names(&self) -> Result<Option<Arc<Vec<String>>>> {
        let max_age = self.opts.hooks.timeouts.catalog_index_max_age;
        let Some(token) = self.catalog_token().await else {
            return Ok(None);
        };
        if let Some(hit) = self.catalog_index.get(&token, max_age) {
            return Ok(hit.names());
        }
        let _rebuilding = self.catalog_index.rebuilding().await;
        // Another request may have rebuilt it while this one waited: read the token afresh.
        let read_at = Instant::now();
        let Some(token) = self.catalog_token().await else {
            return Ok(None);
        };
        if let Some(hit) = self.catalog_index.get(&token, max_age) {
            return Ok(hit.names());
        }
        let budget = self.catalog_index.budget();
        let mut names = self
            .walk_catalog(None, Some(budget.saturating_add(1)), &|_| true)
            .await?;
        let indexed = if names.len() > budget {
            Indexed::TooMany
        } else {
            names.sort_by(|a, b| path_order(a, b)); // the walk's order already; cheap to make sure
            Indexed::Names(Arc::new(names))
        };
        self.catalog_index.insert(token, read_at, indexed.clone());
        Ok(indexed.names())
    }

    /// The generation marker's token (`Some(None)` when there is no marker), or `None` when it
    /// cannot be read.
    async fn catalog_token(&self) -> Option<Option<Bytes>> {
        match self.driver.get_content(&paths::catalog_marker()).await {
            Ok(b) if b.is_empty() => Some(None),
            Ok(b) => Some(Some(b)),
            Err(e) if e.is_not_found() => Some(None),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the catalog's generation marker: walking the store per page");
                None
            }
        }
    }

    /// Filesystem: whether a manifest PUT into `repo` may be creating the repository (or one is
    /// being created by a concurrent PUT that has not written its token yet). One stat.
    pub(super) async fn catalog_may_grow(&self, repo: &RepoName) -> bool {
        if self.driver.capabilities().object_store {
            return false;
        }
        match self.driver.stat(&paths::manifests_dir(repo)).await {
            // (a time in the future counts as young)
            Ok(fi) => SystemTime::now()
                .duration_since(fi.modified)
                .ok()
                .is_none_or(|age| age < cache::catalog_young(self.opts.hooks.timeouts.catalog_index_max_age)),
            Err(_) => true,
        }
    }

    /// The set of repositories changed (filesystem): write a fresh generation token, after the
    /// change is visible and before it is acknowledged, and drop this process's index.
    pub(super) async fn catalog_changed(&self) -> Result<()> {
        if let Some(renewal) = self.catalog_index.renewal().await {
            let token = uuid::Uuid::new_v4().simple().to_string();
            self.driver
                .put_content_volatile(&paths::catalog_marker(), Bytes::from(token))
                .await?;
            renewal.done();
        }
        self.catalog_index.invalidate();
        Ok(())
    }

    /// Repository names after `last`, in path order, that `keep` accepts: at most `want` of
    /// them (all with `None`).
    ///
    /// A depth-first walk over `repositories/` with each directory's children in byte order
    /// yields names in `path_order` (a parent before its children), so the walk skips every
    /// subtree that lies wholly at or before `last` and stops once it has `want` names (one
    /// more than the page needs): a page costs O(page) directory listings, not O(registry).
    async fn walk_catalog(
        &self,
        last: Option<&str>,
        want: Option<usize>,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<String>> {
        let last: Option<Vec<&str>> = last.map(|l| l.split('/').collect());
        let mut repos = Vec::new();
        // (directory, repository name so far, its entries when already listed); popped in path
        // order. A directory's children are listed in one batch (`list_many`), as many as the
        // page can still take, so a page costs a few driver calls, not one per repository.
        let mut stack: Vec<(StoragePath, String, Option<Vec<String>>)> =
            vec![(paths::repositories(), String::new(), None)];
        while let Some((dir, name, listed)) = stack.pop() {
            if want.is_some_and(|w| repos.len() >= w) {
                break;
            }
            let mut children = match listed {
                Some(c) => c,
                None => match self.driver.list(&dir).await {
                    Ok(c) => c,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e.into()),
                },
            };
            let after_last = last
                .as_ref()
                .is_none_or(|l| name.split('/').cmp(l.iter().copied()) == Ordering::Greater);
            if !name.is_empty() && after_last && children.iter().any(|c| c == "_manifests") && keep(&name) {
                repos.push(name.clone());
            }
            children.retain(|c| !c.starts_with('_'));
            children.sort();
            let mut next: Vec<(StoragePath, String)> = Vec::new();
            let parts: Vec<&str> = if name.is_empty() {
                Vec::new()
            } else {
                name.split('/').collect()
            };
            for c in children {
                if let Some(l) = &last {
                    // Skip a subtree wholly at or before `last`: its prefix sorts before `last`
                    // and is not one of `last`'s own prefixes. (Checked first: it allocates
                    // nothing, and on later pages most children fail it.)
                    let prefix = || parts.iter().copied().chain(std::iter::once(c.as_str()));
                    let len = parts.len() + 1;
                    let is_prefix_of_last = l.len() >= len && l[..len].iter().copied().eq(prefix());
                    if !is_prefix_of_last && prefix().lt(l.iter().copied()) {
                        continue;
                    }
                }
                let child = if name.is_empty() {
                    c.clone()
                } else {
                    format!("{name}/{c}")
                };
                // Only names that are valid repository names can be repositories.
                if RepoName::parse(&child).is_err() {
                    continue;
                }
                next.push((dir.join(&c), child));
            }
            let batch = want
                .map_or(next.len(), |w| w.saturating_sub(repos.len()))
                .min(next.len());
            let paths: Vec<StoragePath> = next[..batch].iter().map(|(p, _)| p.clone()).collect();
            let listings = self.driver.list_many(&paths).await;
            let unlisted = next.split_off(batch);
            for (p, child) in unlisted.into_iter().rev() {
                stack.push((p, child, None));
            }
            for ((p, child), listing) in next.into_iter().zip(listings).rev() {
                match listing {
                    Ok(entries) => stack.push((p, child, Some(entries))),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(repos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fs::FsDriver;

    /// A filesystem registry over `dirs` (relative to `repositories/`), created as directories.
    fn registry_with(dirs: &[&str]) -> (tempfile::TempDir, Registry) {
        let tmp = tempfile::tempdir().unwrap();
        for d in dirs {
            std::fs::create_dir_all(tmp.path().join("docker/registry/v2/repositories").join(d)).unwrap();
        }
        let driver = Arc::new(FsDriver::new(tmp.path(), false).unwrap());
        let opts = super::super::Options {
            delete_enabled: false,
            redirect: false,
            hooks: Default::default(),
        };
        (tmp, Registry::new(driver, opts))
    }

    const TREE: &[&str] = &[
        "a/_manifests",
        "a/b/_manifests",
        "a/b/c/_manifests",
        "a/b0/_manifests",
        "a-b/_manifests",
        "a0/_manifests",
        "a/_uploads/x",
        "ns/x/_manifests",   // `ns` is a namespace, no repository
        "ns/y/z/_manifests", // and so is `ns/y`
        "ns/_layers/sha256",
        "blobs-only/_layers/sha256",
        "Upper/_manifests", // not a repository name
        "ok/Bad/_manifests",
        "_hidden/_manifests",
        "a/_manifests/tags/t/_manifests", // inside a repository's own directories
        "b.c/_manifests",
        "b.c/d_e/_manifests",
        "z/_manifests",
    ];

    #[tokio::test]
    async fn index_pages_are_the_walks_pages() {
        let (_tmp, reg) = registry_with(TREE);
        let all = reg.walk_catalog(None, None, &|_| true).await.unwrap();
        let want = [
            "a", "a/b", "a/b/c", "a/b0", "a-b", "a0", "b.c", "b.c/d_e", "ns/x", "ns/y/z", "z",
        ];
        assert_eq!(all, want);
        let names = reg.catalog_names().await.unwrap().expect("an index");
        assert_eq!(names[..], want);
        let mut lasts: Vec<Option<&str>> = vec![None, Some(""), Some("a/a"), Some("a/b/b"), Some("a/")];
        lasts.extend(["a.", "ns", "ns/y", "ns/y/z/zz", "zz", "A", "_", "a/b/c/d", "b", "b.c/"].map(Some));
        lasts.extend(want.iter().map(|w| Some(*w)));
        let keeps: [&(dyn Fn(&str) -> bool + Sync); 3] = [&|_| true, &|r| !r.starts_with("a/"), &|r| r.len() % 2 == 1];
        for last in &lasts {
            for (k, keep) in keeps.iter().enumerate() {
                for want in [None, Some(0), Some(1), Some(2), Some(3), Some(5), Some(100)] {
                    let walked = reg.walk_catalog(*last, want, *keep).await.unwrap();
                    assert_eq!(
                        index_page(&names, *last, want, *keep),
                        walked,
                        "last={last:?} keep#{k} want={want:?}"
                    );
                }
            }
        }
        // and whole pages, `more` included
        for n in [0, 1, 2, 4, 11, 12] {
            let (mut last, mut seen) = (None::<String>, Vec::new());
            loop {
                let page = reg.catalog(last.as_deref(), Some(n)).await.unwrap();
                assert!(page.items.len() <= n);
                seen.extend(page.items.iter().cloned());
                if !page.more {
                    break;
                }
                last = page.items.last().cloned();
            }
            assert_eq!(seen, if n == 0 { vec![] } else { all.clone() }, "n={n}");
        }
    }

    #[tokio::test]
    async fn the_index_follows_the_marker_and_too_many_names_are_walked() {
        let (tmp, reg) = registry_with(&["a/_manifests", "c/_manifests"]);
        assert_eq!(reg.catalog(None, None).await.unwrap().items, ["a", "c"]);
        // made behind the index's back: unseen until the marker changes (or the index ages)
        let repos = tmp.path().join("docker/registry/v2/repositories");
        std::fs::create_dir_all(repos.join("b/_manifests")).unwrap();
        assert_eq!(reg.catalog(None, None).await.unwrap().items, ["a", "c"]);
        std::fs::write(tmp.path().join("wharf-catalog"), "another").unwrap();
        assert_eq!(reg.catalog(None, None).await.unwrap().items, ["a", "b", "c"]);
        std::fs::create_dir_all(repos.join("d/_manifests")).unwrap();
        std::fs::remove_file(tmp.path().join("wharf-catalog")).unwrap();
        assert_eq!(reg.catalog(None, None).await.unwrap().items, ["a", "b", "c", "d"]);
        // a PUT that may create a repository renews the marker
        let repo = RepoName::parse("e").unwrap();
        assert!(reg.catalog_may_grow(&repo).await);
        std::fs::create_dir_all(repos.join("e/_manifests")).unwrap();
        assert!(reg.catalog_may_grow(&repo).await, "young");
        reg.catalog_changed().await.unwrap();
        assert_eq!(reg.catalog(Some("c"), Some(5)).await.unwrap().items, ["d", "e"]);
        let old = SystemTime::now()
            - cache::catalog_young(crate::hooks::CATALOG_INDEX_MAX_AGE)
            - std::time::Duration::from_secs(1);
        std::fs::File::open(repos.join("e/_manifests"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(!reg.catalog_may_grow(&repo).await, "old");

        let (_tmp, mut reg) = registry_with(TREE);
        reg.catalog_index = cache::CatalogIndex::with_budget(3);
        assert!(reg.catalog_names().await.unwrap().is_none(), "too many names to index");
        let page = reg.catalog(Some("a/b"), Some(3)).await.unwrap();
        assert_eq!((page.items, page.more), (s(&["a/b/c", "a/b0", "a-b"]), true));
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn pages() {
        let all = s(&["a", "b", "c"]);
        let p = paginate(all.clone(), None, Some(2), |a, b| a.cmp(b));
        assert_eq!((p.items, p.more), (s(&["a", "b"]), true));
        let p = paginate(all.clone(), Some("b"), Some(2), |a, b| a.cmp(b));
        assert_eq!((p.items, p.more), (s(&["c"]), false));
        let p = paginate(all.clone(), Some("bb"), None, |a, b| a.cmp(b));
        assert_eq!(p.items, s(&["c"]));
        let p = paginate(all.clone(), None, Some(0), |a, b| a.cmp(b));
        assert_eq!((p.items.len(), p.more), (0, false));
        let p = paginate(all, Some("z"), Some(5), |a, b| a.cmp(b));
        assert!(p.items.is_empty() && !p.more);
        assert_eq!(path_order("a/b", "a-b"), Ordering::Less);
    }
}
