//! The mark phase, pure: from a repository's stored graph ([`RepoGraph`]: its manifests, what
//! each one uses by every reading of its bytes, its tags and its referrer links) and its roots,
//! through index children, configs, layers and the referrers of every kept manifest, to the
//! manifests it keeps and the blobs they use ([`RepoMark::new`]). The parent module reads the
//! graph from storage; nothing here does I/O.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::error::Result;
use crate::registry::digest::Digest;
use crate::registry::manifests::{ManifestInfo, read_stored, references};
use crate::registry::names::RepoName;

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
    /// The referrer links under `_referrers/<subject>/`, for every subject a revision names.
    pub(super) referrers: BTreeMap<Digest, Vec<Digest>>,
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

/// What a stored manifest uses, by every reading of its bytes, not only the one GET serves: a
/// manifest another registry (or an older Wharf) stored with conflicting type signals keeps
/// everything any of its readers may pull. Blobs and children sorted, without duplicates.
pub(super) fn every_reading(bytes: &[u8]) -> Result<ManifestInfo> {
    let mut info = read_stored(bytes)?;
    let all = references(bytes)?;
    info.blobs.extend(all.blobs);
    info.children.extend(all.children);
    info.blobs.sort();
    info.blobs.dedup();
    info.children.sort();
    info.children.dedup();
    Ok(info)
}

impl RepoMark {
    /// Mark `graph` from `roots` (manifests whose bytes are missing are no roots): what is
    /// kept, and the blobs it uses. A referrer is kept while its subject is, if its referrer
    /// link is there and its bytes name that subject.
    pub(super) fn new(repo: RepoName, graph: RepoGraph, roots: Vec<Digest>) -> RepoMark {
        let RepoGraph {
            manifests: rm,
            subjects,
            uses,
            referrers,
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
            for r in referrers.get(&d).into_iter().flatten() {
                if subjects.get(r).is_some_and(|s| s.as_ref() == Some(&d)) {
                    queue.push(r.clone());
                }
            }
        }
        RepoMark {
            repo,
            manifests: rm,
            keep,
            blobs,
        }
    }
}

/// Test graphs: manifests named by short strings (their digest is the string's sha256).
#[cfg(test)]
pub(super) mod testing {
    use super::*;
    use crate::registry::digest::Algorithm;

    pub(crate) fn d(name: &str) -> Digest {
        Digest::of(Algorithm::Sha256, name.as_bytes())
    }

    pub(crate) fn set(names: &[&str]) -> HashSet<Digest> {
        names.iter().map(|n| d(n)).collect()
    }

    /// One stored manifest: its name, subject, blobs (config, layers) and index children.
    pub(crate) type M<'a> = (&'a str, Option<&'a str>, &'a [&'a str], &'a [&'a str]);

    /// A graph of readable `manifests`, `tags` (tag, manifest) and referrer `links` (subject,
    /// referrers). Revisions also list `gone`: manifests whose bytes are missing.
    pub(crate) fn graph(manifests: &[M], gone: &[&str], tags: &[(&str, &str)], links: &[(&str, &[&str])]) -> RepoGraph {
        let names = |ns: &[&str]| ns.iter().map(|n| d(n)).collect::<Vec<_>>();
        RepoGraph {
            manifests: RepoManifests {
                revisions: manifests.iter().map(|m| d(m.0)).chain(names(gone)).collect(),
                tags: tags.iter().map(|(t, m)| (t.to_string(), d(m))).collect(),
            },
            subjects: manifests.iter().map(|m| (d(m.0), m.1.map(d))).collect(),
            uses: manifests.iter().map(|m| (d(m.0), (names(m.2), names(m.3)))).collect(),
            referrers: links.iter().map(|(s, rs)| (d(s), names(rs))).collect(),
        }
    }

    pub(crate) fn repo() -> RepoName {
        RepoName::parse("cache/app").unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn mark(g: RepoGraph, delete_untagged: bool) -> RepoMark {
        let roots = g.default_roots(delete_untagged);
        RepoMark::new(repo(), g, roots)
    }

    #[test]
    fn every_reading_of_a_manifest_is_marked() {
        let (c, l, n, x, y, s) = (d("c"), d("l"), d("n"), d("x"), d("y"), d("s"));
        // An image (the reading GET serves) that also carries `manifests` (an index reading),
        // a non-distributable layer, and keys only case-insensitive readers take for fields.
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":1}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{n}","size":1}},
                      {{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{l}","size":1}}],
            "manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{x}","size":1}}],
            "Layers":[{{"digest":"{y}","size":1}}],
            "SUBJECT":{{"digest":"{s}","size":1}}}}"#
        );
        let served = read_stored(body.as_bytes()).unwrap();
        assert!(!served.is_index && served.children.is_empty() && !served.blobs.contains(&y));
        let info = every_reading(body.as_bytes()).unwrap();
        for b in [&c, &l, &n, &y, &s] {
            assert!(info.blobs.contains(b), "{b} not among {:?}", info.blobs);
        }
        assert_eq!(info.children, vec![x.clone()]);
        let mut sorted = info.blobs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(info.blobs, sorted, "sorted, no duplicates");
        assert!(every_reading(b"{").is_err(), "an unreadable manifest stops the run");
    }

    #[test]
    fn an_index_keeps_its_children_and_what_they_use() {
        let g = graph(
            &[
                ("index", None, &[], &["amd64", "arm64"]),
                ("amd64", None, &["cfg-a", "layer-a", "shared"], &[]),
                ("nested", None, &["cfg-n"], &[]),
                ("outer", None, &[], &["index", "nested"]),
                ("other", None, &["cfg-o"], &[]),
            ],
            &[],
            &[("v1", "outer")],
            &[],
        );
        let m = mark(g, true);
        // arm64's bytes are missing: kept (it may be pushed later), and marked as a blob.
        assert_eq!(m.keep, set(&["outer", "index", "nested", "amd64", "arm64"]));
        assert_eq!(
            m.blobs,
            set(&[
                "outer", "index", "nested", "amd64", "arm64", "cfg-a", "layer-a", "shared", "cfg-n"
            ])
        );
    }

    #[test]
    fn roots_are_tags_and_without_delete_untagged_every_manifest_without_a_subject() {
        let manifests: &[M] = &[
            ("tagged", None, &["cfg-t"], &[]),
            ("untagged", None, &["cfg-u"], &[]),
            ("sig", Some("gone"), &["cfg-s"], &[]),
        ];
        let g = graph(manifests, &["bytes-missing"], &[("latest", "tagged")], &[]);
        let mut roots = g.default_roots(false);
        roots.sort();
        let mut want = vec![d("tagged"), d("untagged")];
        want.sort();
        assert_eq!(roots, want);
        assert_eq!(g.default_roots(true), vec![d("tagged")]);
        let m = mark(g, false);
        assert_eq!(m.keep, set(&["tagged", "untagged"]), "a referrer of nothing kept goes");
        assert!(!m.blobs.contains(&d("cfg-s")));
        // Roots whose bytes are missing are no roots.
        let g = graph(manifests, &["bytes-missing"], &[("x", "bytes-missing")], &[]);
        assert!(RepoMark::new(repo(), g, vec![d("bytes-missing")]).keep.is_empty());
    }

    #[test]
    fn referrers_are_kept_while_their_subject_is() {
        let g = graph(
            &[
                ("image", None, &["cfg"], &[]),
                ("sig", Some("image"), &["sig-cfg"], &[]),
                ("sig-of-sig", Some("sig"), &["sig2-cfg"], &[]),
                ("unlinked", Some("image"), &["unlinked-cfg"], &[]),
                ("liar", Some("elsewhere"), &["liar-cfg"], &[]),
                ("dropped", None, &["dropped-cfg"], &[]),
                ("sig-of-dropped", Some("dropped"), &["sd-cfg"], &[]),
                ("tagged-sig", Some("absent"), &["ts-cfg"], &[]),
            ],
            &[],
            &[("v1", "image"), ("sig-tag", "tagged-sig")],
            &[
                // `liar`'s link sits under `image`, but its bytes name another subject.
                ("image", &["sig", "liar"]),
                ("sig", &["sig-of-sig"]),
                ("dropped", &["sig-of-dropped"]),
            ],
        );
        let m = mark(g, true);
        assert_eq!(m.keep, set(&["image", "sig", "sig-of-sig", "tagged-sig"]));
        assert_eq!(
            m.blobs,
            set(&[
                "image",
                "cfg",
                "sig",
                "sig-cfg",
                "sig-of-sig",
                "sig2-cfg",
                "tagged-sig",
                "ts-cfg"
            ])
        );
    }
}
