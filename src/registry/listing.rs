//! Tags list and catalog, with `n`/`last` pagination.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

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

impl Registry {
    pub async fn list_tags(&self, repo: &RepoName, last: Option<&str>, n: Option<usize>) -> Result<Page> {
        if !self.repo_exists(repo).await? {
            return Err(Error::NameUnknown(repo.to_string()));
        }
        if self.driver.multipart().is_some() {
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
    /// A depth-first walk over `repositories/` with each directory's children in byte order
    /// yields names in `path_order` (a parent before its children), so the walk skips every
    /// subtree that lies wholly at or before `last` and stops once it has one name more than the
    /// page needs: a page costs O(page) directory listings, not O(registry).
    pub async fn catalog_filtered(
        &self,
        last: Option<&str>,
        n: Option<usize>,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Page> {
        let last: Option<Vec<&str>> = last.map(|l| l.split('/').collect());
        let want = n.map(|n| n.saturating_add(1));
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
        let more = n.is_some_and(|n| n > 0 && repos.len() > n);
        if let Some(n) = n {
            repos.truncate(n);
        }
        Ok(Page { items: repos, more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
