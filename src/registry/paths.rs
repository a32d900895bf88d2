//! Distribution's on-disk layout, byte for byte (docs/architecture.md §1.2, invariant I11). The
//! only place that builds storage keys; every component comes from a validated newtype.

use super::digest::{Algorithm, Digest};
use super::names::{RepoName, Tag, UploadId};
use crate::storage::StoragePath;

const ROOT: &str = "docker/registry/v2";

fn p(s: String) -> StoragePath {
    StoragePath::from_validated(s)
}

pub fn blobs_root() -> StoragePath {
    p(format!("{ROOT}/blobs"))
}

/// `blobs/<alg>/<hh>/<hex>`: the directory holding a blob's `data`.
pub fn blob_dir(d: &Digest) -> StoragePath {
    p(format!(
        "{ROOT}/blobs/{}/{}/{}",
        d.algorithm().as_str(),
        &d.hex()[..2],
        d.hex()
    ))
}

pub fn blob_data(d: &Digest) -> StoragePath {
    blob_dir(d).join("data")
}

pub fn repositories() -> StoragePath {
    p(format!("{ROOT}/repositories"))
}

pub fn repo(r: &RepoName) -> StoragePath {
    p(format!("{ROOT}/repositories/{}", r.as_str()))
}

/// `_layers/<alg>/<hex>/link`: the blob is visible in this repository.
pub fn layer_link(r: &RepoName, d: &Digest) -> StoragePath {
    repo(r).join(&format!("_layers/{}/{}/link", d.algorithm().as_str(), d.hex()))
}

pub fn manifests_dir(r: &RepoName) -> StoragePath {
    repo(r).join("_manifests")
}

/// `_manifests/revisions/<alg>/<hex>/link`: the manifest exists in this repository.
pub fn revision_link(r: &RepoName, d: &Digest) -> StoragePath {
    repo(r).join(&format!(
        "_manifests/revisions/{}/{}/link",
        d.algorithm().as_str(),
        d.hex()
    ))
}

pub fn tags_dir(r: &RepoName) -> StoragePath {
    repo(r).join("_manifests/tags")
}

pub fn tag_dir(r: &RepoName, t: &Tag) -> StoragePath {
    tags_dir(r).join(t.as_str())
}

pub fn tag_current(r: &RepoName, t: &Tag) -> StoragePath {
    tag_dir(r, t).join("current/link")
}

pub fn tag_index_link(r: &RepoName, t: &Tag, d: &Digest) -> StoragePath {
    tag_dir(r, t).join(&format!("index/{}/{}/link", d.algorithm().as_str(), d.hex()))
}

/// Wharf's addition: `_referrers/<alg>/<subject hex>/` lists the manifests whose subject it is.
pub fn referrers_dir(r: &RepoName, subject: &Digest) -> StoragePath {
    repo(r).join(&format!(
        "_referrers/{}/{}",
        subject.algorithm().as_str(),
        subject.hex()
    ))
}

pub fn referrer_link(r: &RepoName, subject: &Digest, d: &Digest) -> StoragePath {
    referrers_dir(r, subject).join(&format!("{}/{}/link", d.algorithm().as_str(), d.hex()))
}

pub fn upload_dir(r: &RepoName, id: &UploadId) -> StoragePath {
    repo(r).join(&format!("_uploads/{}", id.as_str()))
}

pub fn upload_data(r: &RepoName, id: &UploadId) -> StoragePath {
    upload_dir(r, id).join("data")
}

pub fn upload_startedat(r: &RepoName, id: &UploadId) -> StoragePath {
    upload_dir(r, id).join("startedat")
}

pub fn upload_hashstates(r: &RepoName, id: &UploadId) -> StoragePath {
    upload_dir(r, id).join("hashstates")
}

pub fn upload_hashstate(r: &RepoName, id: &UploadId, alg: Algorithm, offset: u64) -> StoragePath {
    upload_dir(r, id).join(&format!("hashstates/{}/{offset}", alg.as_str()))
}

/// Object stores: the session's state (`registry::objectstore`), rewritten after each request.
pub fn upload_state(r: &RepoName, id: &UploadId) -> StoragePath {
    upload_dir(r, id).join("state.json")
}

/// Object stores: bytes past the last whole part, kept until the next request completes a part.
/// Each request writes a new one (`tail-<uuid>`), named in the state it commits.
pub fn upload_tail(r: &RepoName, id: &UploadId, name: &str) -> StoragePath {
    upload_dir(r, id).join(&format!("tail-{name}"))
}

/// Object stores: garbage collection's lock object; writes are refused while it exists.
pub fn gc_lock() -> StoragePath {
    p("wharf-gc.lock".to_owned())
}

/// Filesystem: the catalog's generation marker, a random token rewritten whenever a Wharf
/// process creates a repository (`registry::cache`). At the storage root like Wharf's other
/// objects, outside Distribution's tree, so no walk of `repositories/` or `blobs/` (Wharf's or
/// `registry:2`'s) ever meets it.
pub fn catalog_marker() -> StoragePath {
    p("wharf-catalog".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_distribution() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        let r = RepoName::parse("library/busybox").unwrap();
        assert_eq!(
            blob_data(&d).as_str(),
            "docker/registry/v2/blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/data"
        );
        assert_eq!(
            layer_link(&r, &d).as_str(),
            "docker/registry/v2/repositories/library/busybox/_layers/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/link"
        );
        let t = Tag::parse("latest").unwrap();
        assert_eq!(
            tag_current(&r, &t).as_str(),
            "docker/registry/v2/repositories/library/busybox/_manifests/tags/latest/current/link"
        );
    }
}
