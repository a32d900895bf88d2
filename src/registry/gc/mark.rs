//! The mark phase: from a repository's roots, through index children, configs, layers and the
//! referrers of every kept manifest, to the manifests it keeps and the blobs they use.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::error::Result;
use crate::registry::digest::Digest;
use crate::registry::names::RepoName;
use crate::registry::{Registry, paths};

/// What marking one repository found.
pub(super) struct RepoMark {
    pub(super) repo: RepoName,
    pub(super) manifests: RepoManifests,
    pub(super) keep: HashSet<Digest>,
    pub(super) blobs: HashSet<Digest>,
}

/// A repository's manifests as the mark phase sees them.
pub(super) struct RepoManifests {
    pub(super) revisions: BTreeSet<Digest>,
    pub(super) tags: BTreeMap<String, Digest>,
}

/// A repository's manifests, parsed: what each one's subject is and what it uses.
pub(super) struct RepoGraph {
    pub(super) manifests: RepoManifests,
    pub(super) subjects: BTreeMap<Digest, Option<Digest>>,
    /// Blobs (config, layers) and children (of an index) of each readable revision.
    pub(super) uses: BTreeMap<Digest, (Vec<Digest>, Vec<Digest>)>,
}

impl RepoGraph {
    /// The roots when nothing is evicted: tagged manifests, and unless `delete_untagged` every
    /// manifest without a subject.
    pub(super) fn default_roots(&self, delete_untagged: bool) -> Vec<Digest> {
        let tagged: HashSet<&Digest> = self.manifests.tags.values().collect();
        self.subjects
            .iter()
            .filter(|(d, subject)| tagged.contains(d) || (!delete_untagged && subject.is_none()))
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Manifests reached from `root` through index children, `root` included.
    pub(super) fn manifests_from(&self, root: &Digest, out: &mut HashSet<Digest>) {
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
    pub(super) fn blobs_from(&self, root: &Digest) -> HashSet<Digest> {
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

impl Registry {
    /// Mark one repository: the manifests it keeps and the blobs they use.
    pub(super) async fn mark_repo(&self, repo: &RepoName, delete_untagged: bool) -> Result<RepoMark> {
        let graph = self.load_repo(repo).await?;
        let roots = graph.default_roots(delete_untagged);
        self.mark_from(repo, graph, roots).await
    }

    /// Mark from `roots` (manifests whose bytes are missing are no roots): what is kept, and the
    /// blobs it uses.
    pub(super) async fn mark_from(&self, repo: &RepoName, graph: RepoGraph, roots: Vec<Digest>) -> Result<RepoMark> {
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
}
