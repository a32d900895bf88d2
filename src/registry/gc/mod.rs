//! Mark-and-sweep garbage collection, and purging of abandoned uploads.
//!
//! Mark: from every revision of every repository (or, with `delete_untagged`, from every tag),
//! through index children (nested), configs and layers, and the referrers of every kept manifest.
//! A manifest with a `subject` is kept only while its subject is kept, unless a tag names it.
//! Sweep, in this order so that a run killed at any point leaves every kept image pullable and
//! the next run finishes the job: unkept manifests (their tags, referrer entries and revision
//! links), layer links to blobs being removed, the blobs themselves, stale upload sessions.
//! Nothing is removed when a manifest cannot be read: we never sweep without knowing what it uses.
//!
//! Pull-through cache eviction ([`GcOptions::evict`]): in cached repositories the roots are the
//! entries (tags, and manifests cached by digest that no tag reaches) that neither age nor the
//! size budget evicts; evicted tags are deleted at the start of the sweep.
//!
//! Split by phase: [`mark`] (what is kept), [`evict`] (what the pull-through cache lets go),
//! [`sweep`] (removal, in the order above). This module reads the stored graph and runs them.

mod evict;
mod mark;
mod sweep;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt, stream};

use crate::storage::fence::{Fence, FenceError, FenceRole};

use evict::EvictedTags;
pub use evict::{EvictReason, Evicted};
use mark::{RepoGraph, RepoManifests, RepoMark, every_reading};
use sweep::Sweep;

use super::digest::{Algorithm, Digest};
use super::manifests::ManifestInfo;
use super::names::RepoName;
use super::{Registry, paths};
use crate::error::{Error, Result};
use crate::registry::eviction::Eviction;
use crate::storage::StoragePath;

#[derive(Clone, Debug)]
pub struct GcOptions {
    pub dry_run: bool,
    pub delete_untagged: bool,
    /// Upload sessions started longer ago than this are removed.
    pub upload_max_age: Duration,
    /// Object stores, where replicas keep writing: blobs modified at or after this time are
    /// never removed (nor their layer links), since a push may be linking them right now.
    pub sweep_before: Option<SystemTime>,
    /// Pull-through cache: evict cached tags by age or to fit a size budget (`proxy.evictafter`,
    /// `proxy.maxsize`). Only the proxy's repositories are ever evicted from.
    pub evict: Option<Eviction>,
}

/// What a run removed (or, in a dry run, would remove).
#[derive(Debug, Default)]
pub struct GcReport {
    pub marked_blobs: usize,
    pub manifests: Vec<(RepoName, Digest)>,
    pub tags: Vec<(RepoName, String)>,
    pub layer_links: Vec<(RepoName, Digest)>,
    pub blobs: Vec<(Digest, u64)>,
    pub uploads: Vec<(RepoName, String)>,
    pub evicted: Vec<Evicted>,
    /// With `proxy.maxsize`: the estimated content of the cached repositories before and
    /// after eviction by size (blobs that only cached repositories use, each counted once).
    pub cache_bytes: Option<(u64, u64)>,
}

impl GcReport {
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|(_, s)| s).sum()
    }
}

/// Reads in flight at once within a repository, and repositories marked at once.
const IO_PARALLEL: usize = 32;
const REPO_PARALLEL: usize = 8;

impl Registry {
    /// Refuse writes while a garbage collection holds the fence where writers must check it
    /// (object stores; on the filesystem the server's shared flock keeps GC away instead).
    pub(crate) async fn check_gc_lock(&self) -> Result<()> {
        if self.driver.fenced(&paths::gc_lock()).await? {
            return Err(Error::Unsupported(
                "garbage collection is running on this storage; pushes and deletes resume when it ends".into(),
            ));
        }
        Ok(())
    }

    /// Take the storage's fence against writers as `role` (see `storage::fence`).
    pub async fn fence(&self, role: FenceRole) -> std::result::Result<Fence, FenceError> {
        self.driver.fence(role, &paths::gc_lock()).await
    }

    /// Every repository directory: those holding manifests, layer links or uploads.
    pub(crate) async fn all_repositories(&self) -> Result<Vec<RepoName>> {
        let mut repos = Vec::new();
        let mut stack: Vec<(StoragePath, String)> = vec![(paths::repositories(), String::new())];
        while let Some((dir, name)) = stack.pop() {
            let children = match self.driver.list(&dir).await {
                Ok(c) => c,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            if !name.is_empty()
                && children
                    .iter()
                    .any(|c| c == "_manifests" || c == "_layers" || c == "_uploads")
                && let Ok(r) = RepoName::parse(&name)
            {
                repos.push(r);
            }
            for c in children.iter().filter(|c| !c.starts_with('_')) {
                let child = if name.is_empty() {
                    c.clone()
                } else {
                    format!("{name}/{c}")
                };
                if RepoName::parse(&child).is_ok() {
                    stack.push((dir.join(c), child));
                }
            }
        }
        repos.sort();
        Ok(repos)
    }

    /// Digests listed under `<dir>/<alg>/<hex>` (revisions, layer links, referrers).
    async fn list_digests(&self, dir: &StoragePath) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        let algs = match self.driver.list(dir).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for alg in algs.iter().filter_map(|a| a.parse::<Algorithm>().ok()) {
            match self.driver.list(&dir.join(alg.as_str())).await {
                Ok(hexes) => out.extend(
                    hexes
                        .iter()
                        .filter_map(|h| format!("{}:{h}", alg.as_str()).parse().ok()),
                ),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    async fn repo_manifests(&self, repo: &RepoName) -> Result<RepoManifests> {
        let candidates = self.list_digests(&paths::manifests_dir(repo).join("revisions")).await?;
        let links: Vec<(Digest, Option<Digest>)> = stream::iter(candidates)
            .map(|d| async move {
                let l = self.read_link(&paths::revision_link(repo, &d)).await?;
                Ok::<_, Error>((d, l))
            })
            .buffer_unordered(IO_PARALLEL)
            .try_collect()
            .await?;
        let revisions = links
            .into_iter()
            .filter(|(d, l)| l.as_ref() == Some(d))
            .map(|(d, _)| d)
            .collect();
        let tags: Vec<(String, Option<Digest>)> = stream::iter(self.all_tags(repo).await?)
            .map(|t| async move {
                let l = self.read_link(&paths::tag_current(repo, &t)).await?;
                Ok::<_, Error>((t.as_str().to_owned(), l))
            })
            .buffer_unordered(IO_PARALLEL)
            .try_collect()
            .await?;
        let tags = tags.into_iter().filter_map(|(t, d)| Some((t, d?))).collect();
        Ok(RepoManifests { revisions, tags })
    }

    /// Read and parse a repository's manifests.
    async fn load_repo(&self, repo: &RepoName) -> Result<RepoGraph> {
        let rm = self.repo_manifests(repo).await?;
        // Parse every revision once: subjects choose the roots, and an unreadable manifest stops
        // the run before anything is removed.
        let parsed: Vec<Option<(Digest, ManifestInfo)>> = stream::iter(rm.revisions.iter())
            .map(|d| async move {
                let bytes = match self.driver.get_content(&paths::blob_data(d)).await {
                    Ok(b) => b,
                    // A revision whose bytes are gone cannot be served; it is removed.
                    Err(e) if e.is_not_found() => return Ok(None),
                    Err(e) => return Err(Error::from(e)),
                };
                let info = every_reading(&bytes).map_err(|e: Error| {
                    Error::internal(format!("{repo}: cannot parse manifest {d} ({e}); nothing was removed"))
                })?;
                Ok(Some((d.clone(), info)))
            })
            .buffer_unordered(IO_PARALLEL)
            .try_collect()
            .await?;
        let mut subjects: BTreeMap<Digest, Option<Digest>> = BTreeMap::new();
        let mut uses: BTreeMap<Digest, (Vec<Digest>, Vec<Digest>)> = BTreeMap::new();
        for (d, info) in parsed.into_iter().flatten() {
            subjects.insert(d.clone(), info.subject);
            uses.insert(d, (info.blobs, info.children));
        }
        // The referrer links of every subject named (only those the mark may follow).
        let named: BTreeSet<&Digest> = subjects.values().flatten().collect();
        let referrers: BTreeMap<Digest, Vec<Digest>> = stream::iter(named)
            .map(|s| async move {
                let links = self.list_digests(&paths::referrers_dir(repo, s)).await?;
                Ok::<_, Error>((s.clone(), links))
            })
            .buffer_unordered(IO_PARALLEL)
            .try_collect()
            .await?;
        Ok(RepoGraph {
            manifests: rm,
            subjects,
            uses,
            referrers,
        })
    }

    /// Mark one repository: the manifests it keeps and the blobs they use.
    async fn mark_repo(&self, repo: &RepoName, delete_untagged: bool) -> Result<RepoMark> {
        let graph = self.load_repo(repo).await?;
        let roots = graph.default_roots(delete_untagged);
        Ok(RepoMark::new(repo.clone(), graph, roots))
    }

    /// Run a garbage collection. `log` receives one line per item, Distribution-style.
    pub async fn garbage_collect(&self, opts: &GcOptions, log: &mut (dyn FnMut(String) + Send)) -> Result<GcReport> {
        let mut report = GcReport::default();
        let started = std::time::Instant::now();
        let phase = |name: &str| tracing::info!(phase = name, elapsed_ms = started.elapsed().as_millis() as u64, "gc");
        let repos = self.all_repositories().await?;
        phase("listed repositories");

        let marked = self.mark_all(&repos, opts, &mut report, &mut *log, &phase).await?;
        report.marked_blobs = marked.blobs.len();
        phase("marked");

        let verb = if opts.dry_run {
            "eligible for deletion"
        } else {
            "deleted"
        };
        let sweep = Sweep::new(self, opts, &marked.blobs, verb);
        sweep.manifests(&marked, &mut report, &mut *log).await?;
        phase("swept manifests");
        sweep.layer_links(&repos, &mut report, &mut *log).await?;
        phase("swept layer links");
        sweep.blobs(&mut report, &mut *log).await?;
        phase("swept blobs");
        sweep.uploads(&mut report, &mut *log).await?;
        phase("purged uploads");
        self.record_gc_run(opts, &report, started.elapsed()).await;
        Ok(report)
    }

    /// The mark phase over every repository (concurrently; it only reads). Cached
    /// repositories, when eviction is configured, are marked last: from what eviction leaves
    /// them, and with --delete-untagged's rule (a manifest no kept entry reaches goes).
    async fn mark_all(
        &self,
        repos: &[RepoName],
        opts: &GcOptions,
        report: &mut GcReport,
        log: &mut (dyn FnMut(String) + Send),
        phase: &(dyn Fn(&str) + Sync),
    ) -> Result<Marked> {
        let (cached, ordinary): (Vec<&RepoName>, Vec<&RepoName>) = match &opts.evict {
            Some(ev) => repos.iter().partition(|r| ev.cached(r).is_some()),
            None => (Vec::new(), repos.iter().collect()),
        };
        let mut marks: Vec<RepoMark> = stream::iter(ordinary)
            .map(|r| self.mark_repo(r, opts.delete_untagged))
            .buffer_unordered(REPO_PARALLEL)
            .try_collect()
            .await?;
        let mut evicted_tags = EvictedTags::new();
        if let Some(ev) = &opts.evict
            && !cached.is_empty()
        {
            let mut graphs: Vec<(RepoName, RepoGraph)> = stream::iter(cached)
                .map(|r| async move { Ok::<_, Error>((r.clone(), self.load_repo(r).await?)) })
                .buffered(REPO_PARALLEL)
                .try_collect()
                .await?;
            let pinned: HashSet<Digest> = marks.iter().flat_map(|m| m.blobs.iter().cloned()).collect();
            let (roots, tags) = self.plan_eviction(ev, &mut graphs, &pinned, opts, report, log).await?;
            evicted_tags = tags;
            phase("planned eviction");
            marks.extend(
                graphs
                    .into_iter()
                    .zip(roots)
                    .map(|((r, g), roots)| RepoMark::new(r, g, roots)),
            );
        }
        let mut marked = Marked {
            evicted_tags,
            ..Marked::default()
        };
        for m in marks {
            marked.blobs.extend(m.blobs);
            marked.kept.insert(m.repo.clone(), m.keep);
            marked.all.insert(m.repo, m.manifests);
        }
        Ok(marked)
    }
}

/// What the mark phase hands the sweep.
#[derive(Default)]
struct Marked {
    /// Every blob (and manifest) a kept manifest uses, in any repository.
    blobs: HashSet<Digest>,
    /// The manifests each repository keeps.
    kept: BTreeMap<RepoName, HashSet<Digest>>,
    /// Each repository's revisions and tags, as listed.
    all: BTreeMap<RepoName, RepoManifests>,
    /// Tags eviction removes (taken out of `all` already).
    evicted_tags: EvictedTags,
}
