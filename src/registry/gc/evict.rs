//! Pull-through cache eviction: which cached tags (and manifests cached by digest that no tag
//! reaches) age or the size budget lets go, and so what the cached repositories keep.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt, stream};

use super::mark::RepoGraph;
use super::{GcOptions, GcReport, IO_PARALLEL};
use crate::error::{Error, Result};
use crate::proxy::Eviction;
use crate::registry::digest::Digest;
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
    pub(super) graph: usize,
    pub(super) tag: Option<String>,
    pub(super) digest: Digest,
    /// When its link was last written.
    pub(super) used: SystemTime,
    pub(super) limit: Option<Duration>,
    pub(super) evicted: Option<EvictReason>,
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
        // Entries: every tag, and the manifests cached by digest that no tag reaches.
        let mut wanted: Vec<(usize, Option<String>, Digest, StoragePath)> = Vec::new();
        for (i, (repo, g)) in graphs.iter().enumerate() {
            let mut reached = HashSet::new();
            for (tag, d) in &g.manifests.tags {
                let Some(t) = Tag::parse(tag) else { continue };
                g.manifests_from(d, &mut reached);
                wanted.push((i, Some(tag.clone()), d.clone(), paths::tag_current(repo, &t)));
            }
            if !opts.delete_untagged {
                for (d, subject) in &g.subjects {
                    if subject.is_none() && !reached.contains(d) {
                        wanted.push((i, None, d.clone(), paths::revision_link(repo, d)));
                    }
                }
            }
        }
        let mut entries: Vec<CacheEntry> = stream::iter(wanted)
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
                    limit: None,
                    evicted: None,
                })
            })
            .buffered(IO_PARALLEL)
            .try_collect()
            .await?;
        for e in &mut entries {
            e.limit = ev.cached(&graphs[e.graph].0).flatten();
            if e.limit.is_some_and(|limit| ev.age(e.used) > limit) {
                e.evicted = Some(EvictReason::Age);
            }
        }

        // The budget: blobs that only cached repositories use, each counted once. Evict the least
        // recently used entries while the entries kept need more than the budget.
        if let Some(budget) = ev.max_size {
            let needs: Vec<Vec<Digest>> = entries
                .iter()
                .map(|e| {
                    let g = &graphs[e.graph].1;
                    g.blobs_from(&e.digest)
                        .into_iter()
                        .filter(|b| !pinned.contains(b))
                        .collect()
                })
                .collect();
            let distinct: BTreeSet<&Digest> = needs.iter().flatten().collect();
            let sizes: HashMap<Digest, u64> = stream::iter(distinct)
                .map(|d| async move {
                    match self.driver.stat(&paths::blob_data(d)).await {
                        Ok(fi) => Ok((d.clone(), fi.size)),
                        Err(e) if e.is_not_found() => Ok((d.clone(), 0)),
                        Err(e) => Err(Error::from(e)),
                    }
                })
                .buffer_unordered(IO_PARALLEL)
                .try_collect()
                .await?;
            let mut users: HashMap<&Digest, usize> = HashMap::new();
            for (e, need) in entries.iter().zip(&needs) {
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
            report.cache_bytes = Some((before, total));
            log(format!(
                "cached repositories: {before} bytes, budget {budget} bytes: {total} bytes kept (estimate)"
            ));
        }

        let verb = if opts.dry_run {
            "eligible for eviction"
        } else {
            "evicted"
        };
        let mut roots: Vec<Vec<Digest>> = vec![Vec::new(); graphs.len()];
        let mut evicted_tags = EvictedTags::new();
        for e in entries {
            let (repo, g) = &mut graphs[e.graph];
            let Some(reason) = e.evicted else {
                roots[e.graph].push(e.digest);
                continue;
            };
            let age = Duration::from_secs(ev.age(e.used).as_secs());
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
        Ok((roots, evicted_tags))
    }
}
