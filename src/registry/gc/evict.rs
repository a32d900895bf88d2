//! Pull-through cache eviction: which cached tags (and manifests cached by digest that no tag
//! reaches) age or the size budget lets go, and so what the cached repositories keep.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt, stream};

use super::mark::RepoGraph;
use super::{GcOptions, GcReport, IO_PARALLEL};
use crate::error::{Error, Result};
use crate::registry::digest::Digest;
use crate::registry::eviction::Eviction;
use crate::registry::names::{RepoName, Tag};
use crate::registry::{Registry, paths};
use crate::storage::StoragePath;

/// Why a cached tag (or a manifest cached by digest) was evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictReason {
    /// Older than `evictafter`.
    Age,
    /// Among the least recently used while the cache exceeded `maxsize`.
    Size,
}

/// One evicted cache entry.
#[derive(Clone, Debug)]
pub struct Evicted {
    pub repo: RepoName,
    /// The tag, or `None` for a manifest cached by digest that no tag reached.
    pub tag: Option<String>,
    pub digest: Digest,
    /// Since its link was last written (fetched, or found current upstream).
    pub age: Duration,
    pub reason: EvictReason,
}

/// A duration as the configuration writes ages: whole hours ("744h") from an hour on.
pub(super) fn in_hours(d: Duration) -> String {
    if d >= Duration::from_secs(3600) {
        format!("{}h", d.as_secs() / 3600)
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// Tags eviction removes, with what they pointed at, by repository.
pub(super) type EvictedTags = BTreeMap<RepoName, Vec<(String, Digest)>>;

/// What a cached repository keeps and eviction may drop: a tag, or (without
/// `--delete-untagged`) a manifest cached by digest that no tag reaches.
pub(super) struct CacheEntry {
    /// Index of its repository in the cached repositories' graphs.
    pub(super) graph: usize,
    pub(super) tag: Option<String>,
    pub(super) digest: Digest,
    /// When its link was last written.
    pub(super) used: SystemTime,
    /// How long ago that was (zero for the future).
    pub(super) age: Duration,
    /// Its repository's age limit (`None`: never by age).
    pub(super) limit: Option<Duration>,
    pub(super) evicted: Option<EvictReason>,
}

/// An entry eviction considers, before its link is looked at: (graph, tag, digest, the link
/// whose modification time says when it was last used).
pub(super) type Wanted = (usize, Option<String>, Digest, StoragePath);

/// The entries of the cached repositories: every tag, and unless `delete_untagged` the
/// manifests cached by digest (no subject) that no tag reaches through index children.
pub(super) fn cache_entries(graphs: &[(RepoName, RepoGraph)], delete_untagged: bool) -> Vec<Wanted> {
    let mut wanted = Vec::new();
    for (i, (repo, g)) in graphs.iter().enumerate() {
        let mut reached = HashSet::new();
        for (tag, d) in &g.manifests.tags {
            let Some(t) = Tag::parse(tag) else { continue };
            g.manifests_from(d, &mut reached);
            wanted.push((i, Some(tag.clone()), d.clone(), paths::tag_current(repo, &t)));
        }
        if !delete_untagged {
            for (d, subject) in &g.subjects {
                if subject.is_none() && !reached.contains(d) {
                    wanted.push((i, None, d.clone(), paths::revision_link(repo, d)));
                }
            }
        }
    }
    wanted
}

/// Evict by age: every entry older than its repository's limit.
pub(super) fn evict_by_age(entries: &mut [CacheEntry]) {
    for e in entries {
        if e.limit.is_some_and(|limit| e.age > limit) {
            e.evicted = Some(EvictReason::Age);
        }
    }
}

/// The blobs each entry needs that count against the budget: its manifests, their configs and
/// layers, less the `pinned` blobs ordinary repositories keep.
pub(super) fn budget_needs(
    entries: &[CacheEntry],
    graphs: &[(RepoName, RepoGraph)],
    pinned: &HashSet<Digest>,
) -> Vec<Vec<Digest>> {
    entries
        .iter()
        .map(|e| {
            let g = &graphs[e.graph].1;
            g.blobs_from(&e.digest)
                .into_iter()
                .filter(|b| !pinned.contains(b))
                .collect()
        })
        .collect()
}

/// Evict by size: the least recently used entries not yet evicted, while the blobs the kept
/// entries need (`needs[i]` for `entries[i]`, each blob counted once) exceed `budget`. Returns
/// the total before and after.
pub(super) fn evict_by_size(
    entries: &mut [CacheEntry],
    needs: &[Vec<Digest>],
    sizes: &HashMap<Digest, u64>,
    budget: u64,
) -> (u64, u64) {
    let mut users: HashMap<&Digest, usize> = HashMap::new();
    for (e, need) in entries.iter().zip(needs) {
        if e.evicted.is_none() {
            for b in need {
                *users.entry(b).or_default() += 1;
            }
        }
    }
    let mut total: u64 = users.keys().map(|b| sizes[*b]).sum();
    let before = total;
    let mut order: Vec<usize> = (0..entries.len()).filter(|i| entries[*i].evicted.is_none()).collect();
    order.sort_by_key(|i| entries[*i].used);
    for i in order {
        if total <= budget {
            break;
        }
        entries[i].evicted = Some(EvictReason::Size);
        for b in &needs[i] {
            let n = users.get_mut(b).expect("counted");
            *n -= 1;
            if *n == 0 {
                total -= sizes[b];
            }
        }
    }
    (before, total)
}

impl Registry {
    /// Choose what eviction drops from the cached repositories' `graphs`, and return each one's
    /// roots (what it keeps), and the evicted tags, which leave the graphs for the sweep to
    /// delete. `pinned` holds the blobs ordinary repositories keep: they count in no budget.
    pub(super) async fn plan_eviction(
        &self,
        ev: &Eviction,
        graphs: &mut [(RepoName, RepoGraph)],
        pinned: &HashSet<Digest>,
        opts: &GcOptions,
        report: &mut GcReport,
        log: &mut (dyn FnMut(String) + Send),
    ) -> Result<(Vec<Vec<Digest>>, EvictedTags)> {
        let wanted = cache_entries(graphs, opts.delete_untagged);
        let mut entries = self.entries_used(ev, graphs, wanted).await?;
        evict_by_age(&mut entries);
        // The budget: blobs that only cached repositories use, each counted once.
        if let Some(budget) = ev.max_size {
            let needs = budget_needs(&entries, graphs, pinned);
            let sizes = self.blob_sizes(needs.iter().flatten().collect()).await?;
            let (before, total) = evict_by_size(&mut entries, &needs, &sizes, budget);
            report.cache_bytes = Some((before, total));
            log(format!(
                "cached repositories: {before} bytes, budget {budget} bytes: {total} bytes kept (estimate)"
            ));
        }
        Ok(apply_evictions(entries, graphs, opts.dry_run, report, log))
    }

    /// When each entry was last used: its link's modification time.
    async fn entries_used(
        &self,
        ev: &Eviction,
        graphs: &[(RepoName, RepoGraph)],
        wanted: Vec<Wanted>,
    ) -> Result<Vec<CacheEntry>> {
        stream::iter(wanted)
            .map(|(graph, tag, digest, link)| async move {
                let used = match self.driver.stat(&link).await {
                    Ok(fi) => fi.modified,
                    // Gone since it was listed: treat as just used (it is not ours to judge).
                    Err(e) if e.is_not_found() => ev.now,
                    Err(e) => return Err(Error::from(e)),
                };
                Ok::<_, Error>(CacheEntry {
                    graph,
                    tag,
                    digest,
                    used,
                    age: ev.age(used),
                    limit: ev.cached(&graphs[graph].0).flatten(),
                    evicted: None,
                })
            })
            .buffered(IO_PARALLEL)
            .try_collect()
            .await
    }

    /// The stored size of each blob (0 when it is missing).
    async fn blob_sizes(&self, distinct: BTreeSet<&Digest>) -> Result<HashMap<Digest, u64>> {
        stream::iter(distinct)
            .map(|d| async move {
                match self.driver.stat(&paths::blob_data(d)).await {
                    Ok(fi) => Ok((d.clone(), fi.size)),
                    Err(e) if e.is_not_found() => Ok((d.clone(), 0)),
                    Err(e) => Err(Error::from(e)),
                }
            })
            .buffer_unordered(IO_PARALLEL)
            .try_collect()
            .await
    }
}

/// Log and report the evicted entries, take evicted tags out of the graphs (the sweep deletes
/// them), and return each cached repository's roots: the entries kept.
fn apply_evictions(
    entries: Vec<CacheEntry>,
    graphs: &mut [(RepoName, RepoGraph)],
    dry_run: bool,
    report: &mut GcReport,
    log: &mut (dyn FnMut(String) + Send),
) -> (Vec<Vec<Digest>>, EvictedTags) {
    let verb = if dry_run { "eligible for eviction" } else { "evicted" };
    let mut roots: Vec<Vec<Digest>> = vec![Vec::new(); graphs.len()];
    let mut evicted_tags = EvictedTags::new();
    for e in entries {
        let (repo, g) = &mut graphs[e.graph];
        let Some(reason) = e.evicted else {
            roots[e.graph].push(e.digest);
            continue;
        };
        let age = Duration::from_secs(e.age.as_secs());
        let why = match reason {
            EvictReason::Age => format!("older than {}", in_hours(e.limit.unwrap_or_default())),
            EvictReason::Size => "least recently used, over proxy.maxsize".to_owned(),
        };
        let name = match &e.tag {
            Some(tag) => format!("{repo}:{tag} ({})", e.digest),
            None => format!("{repo}@{}", e.digest),
        };
        log(format!(
            "{name} {verb}: last fetched or revalidated {} ago, {why}",
            in_hours(age)
        ));
        if let Some(tag) = &e.tag {
            g.manifests.tags.remove(tag);
            evicted_tags
                .entry(repo.clone())
                .or_default()
                .push((tag.clone(), e.digest.clone()));
        }
        report.evicted.push(Evicted {
            repo: repo.clone(),
            tag: e.tag,
            digest: e.digest,
            age,
            reason,
        });
    }
    (roots, evicted_tags)
}

#[cfg(test)]
mod tests {
    use super::super::mark::testing::*;
    use super::*;

    fn entry(graph: usize, digest: &str, used: u64, age: u64, limit: Option<u64>) -> CacheEntry {
        CacheEntry {
            graph,
            tag: None,
            digest: d(digest),
            used: SystemTime::UNIX_EPOCH + Duration::from_secs(used),
            age: Duration::from_secs(age),
            limit: limit.map(Duration::from_secs),
            evicted: None,
        }
    }

    fn reasons(entries: &[CacheEntry]) -> Vec<Option<EvictReason>> {
        entries.iter().map(|e| e.evicted).collect()
    }

    #[test]
    fn entries_are_tags_and_untagged_manifests_no_tag_reaches() {
        let g = graph(
            &[
                ("index", None, &[], &["child"]),
                ("child", None, &["cfg"], &[]),
                ("by-digest", None, &["cfg2"], &[]),
                ("sig", Some("index"), &[], &[]),
            ],
            &[],
            &[("latest", "index")],
            &[],
        );
        let graphs = vec![(repo(), g)];
        let names = |w: Vec<Wanted>| -> Vec<(Option<String>, Digest)> { w.into_iter().map(|e| (e.1, e.2)).collect() };
        assert_eq!(
            names(cache_entries(&graphs, false)),
            vec![(Some("latest".into()), d("index")), (None, d("by-digest"))]
        );
        assert_eq!(
            names(cache_entries(&graphs, true)),
            vec![(Some("latest".into()), d("index"))]
        );
    }

    #[test]
    fn age_evicts_what_is_older_than_its_limit() {
        let mut entries = vec![
            entry(0, "old", 0, 11, Some(10)),
            entry(0, "exactly", 0, 10, Some(10)),
            entry(0, "unlimited", 0, 1_000_000, None),
        ];
        evict_by_age(&mut entries);
        assert_eq!(reasons(&entries), vec![Some(EvictReason::Age), None, None]);
    }

    #[test]
    fn size_evicts_the_least_recently_used_until_the_budget_holds() {
        let g = graph(
            &[
                ("a", None, &["blob-a", "shared"], &[]),
                ("b", None, &["blob-b", "shared"], &[]),
                ("c", None, &["blob-c", "pinned"], &[]),
                ("aged", None, &["blob-aged"], &[]),
            ],
            &[],
            &[],
            &[],
        );
        let graphs = vec![(repo(), g)];
        let mut entries = vec![
            entry(0, "c", 30, 0, None),
            entry(0, "b", 20, 0, None),
            entry(0, "a", 10, 0, None),
            entry(0, "aged", 0, 0, None),
        ];
        entries[3].evicted = Some(EvictReason::Age);
        let needs = budget_needs(&entries, &graphs, &set(&["pinned"]));
        assert!(
            needs.iter().all(|n| !n.contains(&d("pinned"))),
            "pinned blobs count in no budget"
        );
        let mut sizes: HashMap<Digest, u64> = needs.iter().flatten().map(|b| (b.clone(), 1)).collect();
        sizes.insert(d("shared"), 100);
        // Kept entries need a, b, c, their blobs and `shared` once: 3 + 3 + 100 = 106.
        let (before, after) = evict_by_size(&mut entries, &needs, &sizes, 50);
        // Evicting `a` (oldest) frees 2 (`shared` is still b's); evicting `b` frees 102.
        assert_eq!((before, after), (106, 2));
        assert_eq!(
            reasons(&entries),
            vec![
                None,
                Some(EvictReason::Size),
                Some(EvictReason::Size),
                Some(EvictReason::Age)
            ]
        );
        // Within the budget, nothing goes.
        for e in &mut entries[..3] {
            e.evicted = None;
        }
        assert_eq!(evict_by_size(&mut entries, &needs, &sizes, 106), (106, 106));
        assert_eq!(reasons(&entries)[..3], [None, None, None]);
    }
}
