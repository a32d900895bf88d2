//! The sweep phase, in the order that keeps every kept image pullable when a run is killed at
//! any point: evicted tags, unkept manifests (tags, referrer entries, revision links), layer
//! links to blobs being removed, the blobs themselves, stale upload sessions.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt, stream};

use super::{GcOptions, GcReport, IO_PARALLEL, Marked};
use crate::error::{Error, Result};
use crate::registry::digest::{Algorithm, Digest};
use crate::registry::manifests::read_stored;
use crate::registry::names::{RepoName, Tag, UploadId};
use crate::registry::{Registry, paths};

/// Removals so far, for the crash tests' hook (`Hooks::gc_removal`: abort before the N+1-th).
struct Removals<'a>(std::sync::atomic::AtomicUsize, &'a crate::hooks::Hooks);

impl Removals<'_> {
    fn step(&self) {
        let done = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.1.gc_removal(done);
    }
}

/// One sweep: what the mark kept, and how removals are counted (for the crash hook) and logged.
pub(super) struct Sweep<'a> {
    registry: &'a Registry,
    opts: &'a GcOptions,
    marked_blobs: &'a HashSet<Digest>,
    removals: Removals<'a>,
    verb: &'static str,
}

impl<'a> Sweep<'a> {
    pub(super) fn new(
        registry: &'a Registry,
        opts: &'a GcOptions,
        marked_blobs: &'a HashSet<Digest>,
        verb: &'static str,
    ) -> Self {
        Sweep {
            registry,
            opts,
            marked_blobs,
            removals: Removals(Default::default(), &registry.options().hooks),
            verb,
        }
    }

    /// Sweep 1: manifests (evicted tags, then per repository tags, referrer entries, revision links).
    pub(super) async fn manifests(
        &self,
        marked: &Marked,
        report: &mut GcReport,
        log: &mut (dyn FnMut(String) + Send),
    ) -> Result<()> {
        let (evicted_tags, all, kept) = (&marked.evicted_tags, &marked.all, &marked.kept);
        let (opts, verb, removals, this) = (self.opts, self.verb, &self.removals, self.registry);
        for (repo, tags) in evicted_tags {
            for (tag, _) in tags {
                if !opts.dry_run
                    && let Some(t) = Tag::parse(tag)
                {
                    removals.step();
                    this.driver.delete(&paths::tag_dir(repo, &t)).await?;
                }
                report.tags.push((repo.clone(), tag.clone()));
            }
        }
        for (repo, rm) in all {
            let keep = &kept[repo];
            for (tag, d) in &rm.tags {
                if !keep.contains(d) {
                    log(format!("{repo}: tag {tag} ({d}) {verb}"));
                    if !opts.dry_run
                        && let Some(t) = Tag::parse(tag)
                    {
                        removals.step();
                        this.driver.delete(&paths::tag_dir(repo, &t)).await?;
                    }
                    report.tags.push((repo.clone(), tag.clone()));
                }
            }
            for d in rm.revisions.iter().filter(|d| !keep.contains(*d)) {
                log(format!("{repo}: manifest {d} {verb}"));
                if !opts.dry_run {
                    removals.step();
                    if let Ok(b) = this.driver.get_content(&paths::blob_data(d)).await
                        && let Ok(info) = read_stored(&b)
                        && let Some(subject) = info.subject
                    {
                        this.driver
                            .delete(&paths::referrer_link(repo, &subject, d).parent())
                            .await?;
                    }
                    this.driver.delete(&paths::revision_link(repo, d).parent()).await?;
                }
                report.manifests.push((repo.clone(), d.clone()));
            }
        }
        Ok(())
    }

    /// Sweep 2: layer links to blobs that are going away.
    pub(super) async fn layer_links(
        &self,
        repos: &[RepoName],
        report: &mut GcReport,
        log: &mut (dyn FnMut(String) + Send),
    ) -> Result<()> {
        let (opts, verb, marked_blobs, this) = (self.opts, self.verb, self.marked_blobs, self.registry);
        let lists: Vec<(RepoName, Vec<Digest>)> = stream::iter(repos.iter())
            .map(|repo| async move {
                Ok::<_, Error>((
                    repo.clone(),
                    this.list_digests(&paths::repo(repo).join("_layers")).await?,
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
                        match this.driver.stat(&paths::blob_data(&d)).await {
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
        let removals_ref = &self.removals;
        let unlinked: Vec<(RepoName, Digest)> = stream::iter(doomed)
            .map(|(repo, d)| async move {
                if !opts.dry_run {
                    removals_ref.step();
                    this.driver.delete(&paths::layer_link(&repo, &d).parent()).await?;
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
        Ok(())
    }

    /// Sweep 3: blobs no kept manifest uses.
    pub(super) async fn blobs(&self, report: &mut GcReport, log: &mut (dyn FnMut(String) + Send)) -> Result<()> {
        let (opts, verb, marked_blobs, this) = (self.opts, self.verb, self.marked_blobs, self.registry);
        let removals_ref = &self.removals;
        let blobs_root = paths::blobs_root();
        let mut candidates = Vec::new();
        for alg in this.driver.list(&blobs_root).await.unwrap_or_default() {
            let Ok(alg) = alg.parse::<Algorithm>() else { continue };
            let alg_dir = blobs_root.join(alg.as_str());
            for hh in this.driver.list(&alg_dir).await.unwrap_or_default() {
                for hex in this.driver.list(&alg_dir.join(&hh)).await.unwrap_or_default() {
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
                let size = match this.driver.stat(&paths::blob_data(&d)).await {
                    Ok(fi) if opts.sweep_before.is_some_and(|cutoff| fi.modified >= cutoff) => return Ok(None),
                    Ok(fi) => fi.size,
                    Err(e) if e.is_not_found() => 0,
                    Err(e) => return Err(Error::from(e)),
                };
                if !opts.dry_run {
                    removals_ref.step();
                    this.driver.delete(&paths::blob_dir(&d)).await?;
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
        Ok(())
    }

    /// Sweep 4: abandoned uploads.
    pub(super) async fn uploads(&self, report: &mut GcReport, log: &mut (dyn FnMut(String) + Send)) -> Result<()> {
        let opts = self.opts;
        for (repo, id) in self.registry.purge_uploads(opts.upload_max_age, opts.dry_run).await? {
            log(format!("{repo}: upload {id} {}", self.verb));
            report.uploads.push((repo, id));
        }
        Ok(())
    }
}

impl Registry {
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
}
