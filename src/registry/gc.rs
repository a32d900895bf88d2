//! Mark-and-sweep garbage collection, and purging of abandoned uploads.
//!
//! Mark: from every revision of every repository (or, with `delete_untagged`, from every tag),
//! through index children (nested), configs and layers, and the referrers of every kept manifest.
//! A manifest with a `subject` is kept only while its subject is kept, unless a tag names it.
//! Sweep, in this order so that a run killed at any point leaves every kept image pullable and
//! the next run finishes the job: unkept manifests (their tags, referrer entries and revision
//! links), layer links to blobs being removed, the blobs themselves, stale upload sessions.
//! Nothing is removed when a manifest cannot be read: we never sweep without knowing what it uses.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use super::digest::{Algorithm, Digest};
use super::manifests::parse_manifest;
use super::names::{RepoName, Tag, UploadId};
use super::{Registry, paths};
use crate::error::{Error, Result};
use crate::storage::StoragePath;

#[derive(Clone, Debug)]
pub struct GcOptions {
    pub dry_run: bool,
    pub delete_untagged: bool,
    /// Upload sessions started longer ago than this are removed.
    pub upload_max_age: Duration,
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
}

impl GcReport {
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|(_, s)| s).sum()
    }
}

/// A repository's manifests as the mark phase sees them.
struct RepoManifests {
    revisions: BTreeSet<Digest>,
    tags: BTreeMap<String, Digest>,
}

/// Test hook for crash tests: with `WHARF_FAILPOINT_GC_ABORT_AFTER=N`, the process aborts
/// (as if killed) just before its N+1-th removal. Read once; unset in production.
fn crash_point() -> Option<usize> {
    static AFTER: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *AFTER.get_or_init(|| std::env::var("WHARF_FAILPOINT_GC_ABORT_AFTER").ok()?.parse().ok())
}

struct Removals(usize);

impl Removals {
    fn step(&mut self) {
        if crash_point().is_some_and(|n| self.0 >= n) {
            eprintln!("failpoint: aborting garbage collection after {} removals", self.0);
            std::process::abort();
        }
        self.0 += 1;
    }
}

impl Registry {
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
        let mut revisions = BTreeSet::new();
        for d in self.list_digests(&paths::manifests_dir(repo).join("revisions")).await? {
            if self.read_link(&paths::revision_link(repo, &d)).await?.as_ref() == Some(&d) {
                revisions.insert(d);
            }
        }
        let mut tags = BTreeMap::new();
        for tag in self.all_tags(repo).await? {
            if let Some(d) = self.read_link(&paths::tag_current(repo, &tag)).await? {
                tags.insert(tag.as_str().to_owned(), d);
            }
        }
        Ok(RepoManifests { revisions, tags })
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
                        self.driver.delete(&paths::upload_dir(&repo, &id)).await?;
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
        let repos = self.all_repositories().await?;

        // ---- mark
        let mut marked_blobs: HashSet<Digest> = HashSet::new();
        let mut kept: BTreeMap<RepoName, HashSet<Digest>> = BTreeMap::new();
        let mut all: BTreeMap<RepoName, RepoManifests> = BTreeMap::new();
        for repo in &repos {
            let rm = self.repo_manifests(repo).await?;
            let mut keep: HashSet<Digest> = HashSet::new();
            let mut queue: Vec<Digest> = Vec::new();
            // Parse every revision once: we need subjects to choose roots, and an unreadable
            // manifest stops the run before anything is removed.
            let mut subjects: BTreeMap<Digest, Option<Digest>> = BTreeMap::new();
            let mut uses: BTreeMap<Digest, (Vec<Digest>, Vec<Digest>)> = BTreeMap::new();
            for d in &rm.revisions {
                let bytes = match self.driver.get_content(&paths::blob_data(d)).await {
                    Ok(b) => b,
                    Err(e) if e.is_not_found() => {
                        // A revision whose bytes are gone cannot be served; it is removed below.
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let info = parse_manifest(&bytes, None).map_err(|e| {
                    Error::Internal(format!("{repo}: cannot parse manifest {d} ({e}); nothing was removed"))
                })?;
                subjects.insert(d.clone(), info.subject.clone());
                uses.insert(d.clone(), (info.blobs, info.children));
            }
            let tagged: HashSet<&Digest> = rm.tags.values().collect();
            for d in subjects.keys() {
                let is_referrer = subjects[d].is_some();
                let root = tagged.contains(d) || (!opts.delete_untagged && !is_referrer);
                if root {
                    queue.push(d.clone());
                }
            }
            while let Some(d) = queue.pop() {
                if !keep.insert(d.clone()) {
                    continue;
                }
                marked_blobs.insert(d.clone());
                if let Some((blobs, children)) = uses.get(&d) {
                    marked_blobs.extend(blobs.iter().cloned());
                    for c in children {
                        // Children are kept even if their bytes are missing (they may be pushed later).
                        marked_blobs.insert(c.clone());
                        queue.push(c.clone());
                    }
                }
                for r in self.list_digests(&paths::referrers_dir(repo, &d)).await? {
                    if subjects.get(&r).is_some_and(|s| s.as_ref() == Some(&d)) {
                        queue.push(r);
                    }
                }
            }
            kept.insert(repo.clone(), keep);
            all.insert(repo.clone(), rm);
        }
        report.marked_blobs = marked_blobs.len();

        // ---- sweep 1: manifests (tags first, then referrer entries, then revision links)
        let verb = if opts.dry_run {
            "eligible for deletion"
        } else {
            "deleted"
        };
        let mut removals = Removals(0);
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
                        && let Ok(info) = parse_manifest(&b, None)
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

        // ---- sweep 2: layer links to blobs that are going away
        for repo in &repos {
            for d in self.list_digests(&paths::repo(repo).join("_layers")).await? {
                if !marked_blobs.contains(&d) {
                    log(format!("{repo}: layer link {d} {verb}"));
                    if !opts.dry_run {
                        removals.step();
                        self.driver.delete(&paths::layer_link(repo, &d).parent()).await?;
                    }
                    report.layer_links.push((repo.clone(), d));
                }
            }
        }

        // ---- sweep 3: blobs
        let blobs_root = paths::blobs_root();
        for alg in self.driver.list(&blobs_root).await.unwrap_or_default() {
            let Ok(alg) = alg.parse::<Algorithm>() else { continue };
            let alg_dir = blobs_root.join(alg.as_str());
            for hh in self.driver.list(&alg_dir).await.unwrap_or_default() {
                for hex in self.driver.list(&alg_dir.join(&hh)).await.unwrap_or_default() {
                    let Ok(d) = format!("{}:{hex}", alg.as_str()).parse::<Digest>() else {
                        continue;
                    };
                    if marked_blobs.contains(&d) {
                        continue;
                    }
                    let size = match self.driver.stat(&paths::blob_data(&d)).await {
                        Ok(fi) => fi.size,
                        Err(e) if e.is_not_found() => 0,
                        Err(e) => return Err(e.into()),
                    };
                    log(format!("blob {d} ({size} bytes) {verb}"));
                    if !opts.dry_run {
                        removals.step();
                        self.driver.delete(&paths::blob_dir(&d)).await?;
                    }
                    report.blobs.push((d, size));
                }
            }
        }

        // ---- sweep 4: abandoned uploads
        for (repo, id) in self.purge_uploads(opts.upload_max_age, opts.dry_run).await? {
            log(format!("{repo}: upload {id} {verb}"));
            report.uploads.push((repo, id));
        }
        Ok(report)
    }
}
