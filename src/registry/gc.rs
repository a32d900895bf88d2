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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt, stream};

use super::digest::{Algorithm, Digest};
use super::manifests::{ManifestInfo, read_stored, references};
use super::names::{RepoName, Tag, UploadId};
use super::{Registry, paths};
use crate::error::{Error, Result};
use crate::proxy::Eviction;
use crate::storage::StoragePath;
use crate::storage::fence::{Fence, FenceError, FenceRole};

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

/// What marking one repository found.
struct RepoMark {
    repo: RepoName,
    manifests: RepoManifests,
    keep: HashSet<Digest>,
    blobs: HashSet<Digest>,
}

/// A repository's manifests as the mark phase sees them.
struct RepoManifests {
    revisions: BTreeSet<Digest>,
    tags: BTreeMap<String, Digest>,
}

/// A repository's manifests, parsed: what each one's subject is and what it uses.
struct RepoGraph {
    manifests: RepoManifests,
    subjects: BTreeMap<Digest, Option<Digest>>,
    /// Blobs (config, layers) and children (of an index) of each readable revision.
    uses: BTreeMap<Digest, (Vec<Digest>, Vec<Digest>)>,
}

impl RepoGraph {
    /// The roots when nothing is evicted: tagged manifests, and unless `delete_untagged` every
    /// manifest without a subject.
    fn default_roots(&self, delete_untagged: bool) -> Vec<Digest> {
        let tagged: HashSet<&Digest> = self.manifests.tags.values().collect();
        self.subjects
            .iter()
            .filter(|(d, subject)| tagged.contains(d) || (!delete_untagged && subject.is_none()))
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Manifests reached from `root` through index children, `root` included.
    fn manifests_from(&self, root: &Digest, out: &mut HashSet<Digest>) {
        let mut queue = vec![root.clone()];
        while let Some(d) = queue.pop() {
            if !out.insert(d.clone()) {
                continue;
            }
            if let Some((_, children)) = self.uses.get(&d) {
                queue.extend(children.iter().cloned());
            }
        }
    }

    /// Every blob `root` needs: its manifests, their configs and layers (not referrers).
    fn blobs_from(&self, root: &Digest) -> HashSet<Digest> {
        let mut manifests = HashSet::new();
        self.manifests_from(root, &mut manifests);
        let mut out = manifests.clone();
        for m in &manifests {
            if let Some((used, _)) = self.uses.get(m) {
                out.extend(used.iter().cloned());
            }
        }
        out
    }
}

/// A duration as the configuration writes ages: whole hours ("744h") from an hour on.
fn in_hours(d: Duration) -> String {
    if d >= Duration::from_secs(3600) {
        format!("{}h", d.as_secs() / 3600)
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// Tags eviction removes, with what they pointed at, by repository.
type EvictedTags = BTreeMap<RepoName, Vec<(String, Digest)>>;

/// What a cached repository keeps and eviction may drop: a tag, or (without
/// `--delete-untagged`) a manifest cached by digest that no tag reaches.
struct CacheEntry {
    graph: usize,
    tag: Option<String>,
    digest: Digest,
    /// When its link was last written.
    used: SystemTime,
    limit: Option<Duration>,
    evicted: Option<EvictReason>,
}

/// Test hook for crash tests: with `WHARF_FAILPOINT_GC_ABORT_AFTER=N`, the process aborts
/// (as if killed) just before its N+1-th removal. Read once; unset in production.
fn crash_point() -> Option<usize> {
    static AFTER: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *AFTER.get_or_init(|| std::env::var("WHARF_FAILPOINT_GC_ABORT_AFTER").ok()?.parse().ok())
}

struct Removals(std::sync::atomic::AtomicUsize);

impl Removals {
    fn step(&self) {
        crate::hooks::failpoint("gc-sweep");
        let done = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if crash_point().is_some_and(|n| done >= n) {
            eprintln!("failpoint: aborting garbage collection after {done} removals");
            std::process::abort();
        }
    }
}

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

    /// Mark one repository: the manifests it keeps and the blobs they use.
    async fn mark_repo(&self, repo: &RepoName, delete_untagged: bool) -> Result<RepoMark> {
        let graph = self.load_repo(repo).await?;
        let roots = graph.default_roots(delete_untagged);
        self.mark_from(repo, graph, roots).await
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
                let cannot =
                    |e: Error| Error::Internal(format!("{repo}: cannot parse manifest {d} ({e}); nothing was removed"));
                let mut info = read_stored(&bytes).map_err(cannot)?;
                // Mark every reading, not only the one GET serves: a manifest another registry
                // (or an older Wharf) stored with conflicting type signals keeps everything any
                // of its readers may pull.
                let all = references(&bytes).map_err(cannot)?;
                info.blobs.extend(all.blobs);
                info.children.extend(all.children);
                info.blobs.sort();
                info.blobs.dedup();
                info.children.sort();
                info.children.dedup();
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
        Ok(RepoGraph {
            manifests: rm,
            subjects,
            uses,
        })
    }

    /// Mark from `roots` (manifests whose bytes are missing are no roots): what is kept, and the
    /// blobs it uses.
    async fn mark_from(&self, repo: &RepoName, graph: RepoGraph, roots: Vec<Digest>) -> Result<RepoMark> {
        let RepoGraph {
            manifests: rm,
            subjects,
            uses,
        } = graph;
        let mut queue: Vec<Digest> = roots.into_iter().filter(|d| subjects.contains_key(d)).collect();
        let mut keep: HashSet<Digest> = HashSet::new();
        let mut blobs: HashSet<Digest> = HashSet::new();
        while let Some(d) = queue.pop() {
            if !keep.insert(d.clone()) {
                continue;
            }
            blobs.insert(d.clone());
            if let Some((used, children)) = uses.get(&d) {
                blobs.extend(used.iter().cloned());
                for c in children {
                    // Children are kept even if their bytes are missing (they may be pushed later).
                    blobs.insert(c.clone());
                    queue.push(c.clone());
                }
            }
            for r in self.list_digests(&paths::referrers_dir(repo, &d)).await? {
                if subjects.get(&r).is_some_and(|s| s.as_ref() == Some(&d)) {
                    queue.push(r);
                }
            }
        }
        Ok(RepoMark {
            repo: repo.clone(),
            manifests: rm,
            keep,
            blobs,
        })
    }

    /// Choose what eviction drops from the cached repositories' `graphs`, and return each one's
    /// roots (what it keeps), and the evicted tags, which leave the graphs for the sweep to
    /// delete. `pinned` holds the blobs ordinary repositories keep: they count in no budget.
    async fn plan_eviction(
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

    /// Remove upload sessions started before `now - max_age` (all repositories).
    pub async fn purge_uploads(&self, max_age: Duration, dry_run: bool) -> Result<Vec<(RepoName, String)>> {
        let cutoff = SystemTime::now().checked_sub(max_age).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut purged = Vec::new();
        for repo in self.all_repositories().await? {
            let dir = paths::repo(&repo).join("_uploads");
            let ids = match self.driver.list(&dir).await {
                Ok(ids) => ids,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for id in ids {
                let Some(id) = UploadId::parse(&id) else { continue };
                let started = match self.driver.get_content(&paths::upload_startedat(&repo, &id)).await {
                    Ok(b) => std::str::from_utf8(&b)
                        .ok()
                        .and_then(|s| humantime::parse_rfc3339(s.trim()).ok()),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e.into()),
                };
                // Without a readable start time, fall back to the directory's age.
                let started = match started {
                    Some(t) => t,
                    None => match self.driver.stat(&paths::upload_dir(&repo, &id)).await {
                        Ok(fi) => fi.modified,
                        Err(_) => continue,
                    },
                };
                if started < cutoff {
                    if !dry_run {
                        self.discard_upload(&repo, &id).await?;
                    }
                    if !dry_run {
                        self.upload_limits.ended(id.as_str());
                    }
                    purged.push((repo.clone(), id.to_string()));
                }
            }
        }
        Ok(purged)
    }

    /// Run a garbage collection. `log` receives one line per item, Distribution-style.
    pub async fn garbage_collect(&self, opts: &GcOptions, log: &mut (dyn FnMut(String) + Send)) -> Result<GcReport> {
        let mut report = GcReport::default();
        let started = std::time::Instant::now();
        let phase = |name: &str| tracing::info!(phase = name, elapsed_ms = started.elapsed().as_millis() as u64, "gc");
        let repos = self.all_repositories().await?;
        phase("listed repositories");

        // ---- mark (repositories concurrently; it only reads). Cached repositories, when eviction
        // is configured, are marked last: from what eviction leaves them, and with
        // --delete-untagged's rule (a manifest no kept entry reaches goes).
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
            let (roots, tags) = self
                .plan_eviction(ev, &mut graphs, &pinned, opts, &mut report, &mut *log)
                .await?;
            evicted_tags = tags;
            phase("planned eviction");
            let more: Vec<RepoMark> = stream::iter(graphs.into_iter().zip(roots))
                .map(|((r, g), roots)| async move { self.mark_from(&r, g, roots).await })
                .buffer_unordered(REPO_PARALLEL)
                .try_collect()
                .await?;
            marks.extend(more);
        }
        let mut marked_blobs: HashSet<Digest> = HashSet::new();
        let mut kept: BTreeMap<RepoName, HashSet<Digest>> = BTreeMap::new();
        let mut all: BTreeMap<RepoName, RepoManifests> = BTreeMap::new();
        for m in marks {
            marked_blobs.extend(m.blobs);
            kept.insert(m.repo.clone(), m.keep);
            all.insert(m.repo, m.manifests);
        }
        report.marked_blobs = marked_blobs.len();
        phase("marked");

        // ---- sweep 1: manifests (tags first, then referrer entries, then revision links)
        let verb = if opts.dry_run {
            "eligible for deletion"
        } else {
            "deleted"
        };
        let removals = Removals(Default::default());
        for (repo, tags) in &evicted_tags {
            for (tag, _) in tags {
                if !opts.dry_run
                    && let Some(t) = Tag::parse(tag)
                {
                    removals.step();
                    self.driver.delete(&paths::tag_dir(repo, &t)).await?;
                }
                report.tags.push((repo.clone(), tag.clone()));
            }
        }
        for (repo, rm) in &all {
            let keep = &kept[repo];
            for (tag, d) in &rm.tags {
                if !keep.contains(d) {
                    log(format!("{repo}: tag {tag} ({d}) {verb}"));
                    if !opts.dry_run
                        && let Some(t) = Tag::parse(tag)
                    {
                        removals.step();
                        self.driver.delete(&paths::tag_dir(repo, &t)).await?;
                    }
                    report.tags.push((repo.clone(), tag.clone()));
                }
            }
            for d in rm.revisions.iter().filter(|d| !keep.contains(*d)) {
                log(format!("{repo}: manifest {d} {verb}"));
                if !opts.dry_run {
                    removals.step();
                    if let Ok(b) = self.driver.get_content(&paths::blob_data(d)).await
                        && let Ok(info) = read_stored(&b)
                        && let Some(subject) = info.subject
                    {
                        self.driver
                            .delete(&paths::referrer_link(repo, &subject, d).parent())
                            .await?;
                    }
                    self.driver.delete(&paths::revision_link(repo, d).parent()).await?;
                }
                report.manifests.push((repo.clone(), d.clone()));
            }
        }

        phase("swept manifests");
        // ---- sweep 2: layer links to blobs that are going away
        let lists: Vec<(RepoName, Vec<Digest>)> = stream::iter(repos.iter())
            .map(|repo| async move {
                Ok::<_, Error>((
                    repo.clone(),
                    self.list_digests(&paths::repo(repo).join("_layers")).await?,
                ))
            })
            .buffered(IO_PARALLEL)
            .try_collect()
            .await?;
        let doomed: Vec<(RepoName, Digest)> = lists
            .into_iter()
            .flat_map(|(repo, ds)| ds.into_iter().map(move |d| (repo.clone(), d)))
            .filter(|(_, d)| !marked_blobs.contains(d))
            .collect();
        // Links to blobs too young to remove stay with them.
        let young: HashSet<Digest> = match opts.sweep_before {
            None => HashSet::new(),
            Some(cutoff) => {
                let distinct: BTreeSet<Digest> = doomed.iter().map(|(_, d)| d.clone()).collect();
                stream::iter(distinct)
                    .map(|d| async move {
                        match self.driver.stat(&paths::blob_data(&d)).await {
                            Ok(fi) if fi.modified >= cutoff => Ok(Some(d)),
                            Ok(_) => Ok(None),
                            Err(e) if e.is_not_found() => Ok(None),
                            Err(e) => Err(Error::from(e)),
                        }
                    })
                    .buffer_unordered(IO_PARALLEL)
                    .try_filter_map(|d| async move { Ok(d) })
                    .try_collect()
                    .await?
            }
        };
        let doomed: Vec<(RepoName, Digest)> = doomed.into_iter().filter(|(_, d)| !young.contains(d)).collect();
        let removals_ref = &removals;
        let unlinked: Vec<(RepoName, Digest)> = stream::iter(doomed)
            .map(|(repo, d)| async move {
                if !opts.dry_run {
                    removals_ref.step();
                    self.driver.delete(&paths::layer_link(&repo, &d).parent()).await?;
                }
                Ok::<_, Error>((repo, d))
            })
            .buffered(IO_PARALLEL)
            .try_collect()
            .await?;
        for (repo, d) in unlinked {
            log(format!("{repo}: layer link {d} {verb}"));
            report.layer_links.push((repo, d));
        }
        phase("swept layer links");
        // ---- sweep 3: blobs
        let blobs_root = paths::blobs_root();
        let mut candidates = Vec::new();
        for alg in self.driver.list(&blobs_root).await.unwrap_or_default() {
            let Ok(alg) = alg.parse::<Algorithm>() else { continue };
            let alg_dir = blobs_root.join(alg.as_str());
            for hh in self.driver.list(&alg_dir).await.unwrap_or_default() {
                for hex in self.driver.list(&alg_dir.join(&hh)).await.unwrap_or_default() {
                    if let Ok(d) = format!("{}:{hex}", alg.as_str()).parse::<Digest>()
                        && !marked_blobs.contains(&d)
                    {
                        candidates.push(d);
                    }
                }
            }
        }
        let swept: Vec<(Digest, u64)> = stream::iter(candidates)
            .map(|d| async move {
                let size = match self.driver.stat(&paths::blob_data(&d)).await {
                    Ok(fi) if opts.sweep_before.is_some_and(|cutoff| fi.modified >= cutoff) => return Ok(None),
                    Ok(fi) => fi.size,
                    Err(e) if e.is_not_found() => 0,
                    Err(e) => return Err(Error::from(e)),
                };
                if !opts.dry_run {
                    removals_ref.step();
                    self.driver.delete(&paths::blob_dir(&d)).await?;
                }
                Ok(Some((d, size)))
            })
            .buffered(IO_PARALLEL)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await?;
        for (d, size) in swept {
            log(format!("blob {d} ({size} bytes) {verb}"));
            report.blobs.push((d, size));
        }

        phase("swept blobs");
        // ---- sweep 4: abandoned uploads
        for (repo, id) in self.purge_uploads(opts.upload_max_age, opts.dry_run).await? {
            log(format!("{repo}: upload {id} {verb}"));
            report.uploads.push((repo, id));
        }
        phase("purged uploads");
        self.record_gc_run(opts, &report, started.elapsed()).await;
        Ok(report)
    }
}
