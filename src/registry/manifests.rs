//! Manifests: exact bytes stored content-addressed beside the blobs, linked into a repository by
//! a revision link; tags are `current/link` files replaced atomically; manifests with a
//! `subject` are indexed under `_referrers/` so the referrers API never scans the repository.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::Registry;
use super::digest::{Algorithm, Digest};
use super::names::{RepoName, Tag};
use super::paths;
use crate::error::{Error, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// Layers a registry is not expected to hold (pushed elsewhere or never).
const NON_DISTRIBUTABLE: &[&str] = &[
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
];

/// The fields of any manifest or index that the registry needs; everything else is kept only
/// in the stored bytes, which are served back exactly.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
}

/// A descriptor as the referrers API lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What a parsed, validated manifest refers to.
#[derive(Debug, PartialEq)]
pub struct ManifestInfo {
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    /// config and layers: blobs that must be in the repository
    pub blobs: Vec<Digest>,
    /// index children: manifests that must be in the repository
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
    pub is_index: bool,
}

/// A stored manifest: its exact bytes and what the registry reads from them. Immutable for a
/// digest, so it is cached by digest.
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub subject: Option<Digest>,
}

pub struct PutOutcome {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::ManifestInvalid(msg.into())
}

/// Manifests nested deeper than this are refused: clients (Go's encoding/json stops at 10000,
/// and many parse recursively) must be able to read whatever Wharf accepts and serves.
pub const MAX_JSON_DEPTH: usize = 64;

/// Whether the JSON text's arrays and objects nest deeper than `limit` (strings are skipped,
/// with their escapes). One pass over the bytes, no recursion: safe on any input.
pub fn nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Strip parameters (`; charset=…`) and whitespace from a Content-Type.
fn bare_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

/// How a manifest body is being read: as a push (with the request's Content-Type, refusing
/// anything two readers could read differently), or as stored bytes (by the body alone, and
/// never refused for what an older Wharf or registry:2 accepted).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode<'a> {
    Push(Option<&'a str>),
    Stored,
}

/// Parse and validate a pushed manifest. `content_type` is the request's, if any.
///
/// One reading, everywhere: a manifest is accepted only if its body alone reads as the type it
/// is accepted as, so that every later reader (GET's Content-Type, garbage collection, the
/// referrers API, the proxy cache, and registry:2 on the same volume), which sees only the
/// stored bytes ([`read_stored`]), reads the same manifest. Hence refused with
/// `MANIFEST_INVALID` (as registry:2 since CVE-2021-41190 does): an image type carrying
/// `manifests`, an index type carrying `config` or `layers`, a `mediaType` that disagrees with
/// the Content-Type, a Docker type named only by the Content-Type (without its `mediaType`
/// field the body reads as OCI), and keys that case-insensitive JSON readers (Go's
/// encoding/json, which registry:2, containerd and docker use) take for a field we read under
/// another spelling (`"Manifests"`, `"Digest"`) or twice.
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<ManifestInfo> {
    let info = classify(bytes, Mode::Push(content_type))?;
    audit_signals(bytes)?;
    let alone = classify(bytes, Mode::Push(None));
    if alone.as_ref().ok() != Some(&info) {
        let read_as = match &alone {
            Ok(a) => a.media_type.clone(),
            Err(e) => format!("invalid ({e})"),
        };
        return Err(invalid(format!(
            "conflicting type signals: pushed as {:?}, but the body alone reads as {read_as}; \
             set the payload's mediaType",
            info.media_type
        )));
    }
    Ok(info)
}

/// Read a stored manifest, by its bytes alone: what GET serves it as, what the referrers API
/// lists, what garbage collection starts from. For everything [`parse_manifest`] accepts this
/// is the reading it was accepted as. Bodies an older Wharf or another registry accepted with
/// conflicting signals are read as an image when they carry image fields (the reading a client
/// can pull); garbage collection marks every reading of them anyway ([`references`]).
pub fn read_stored(bytes: &[u8]) -> Result<ManifestInfo> {
    classify(bytes, Mode::Stored)
}

/// Every blob and child manifest any reading of a stored manifest names: config, layers (also
/// non-distributable ones), index children and the subject, under the exact keys and under any
/// spelling a case-insensitive reader matches, whatever its `mediaType` says. Garbage
/// collection marks all of them, so it never deletes what some reader of a kept manifest pulls.
pub fn references(bytes: &[u8]) -> Result<References> {
    let tree: Json = serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    let mut out = References::default();
    let Json::Object(top) = &tree else {
        return Err(invalid("a manifest is a JSON object"));
    };
    let digests_of = |d: &Json, into: &mut Vec<Digest>| {
        if let Json::Object(fields) = d {
            for (k, v) in fields {
                if let (true, Json::String(s)) = (fold_eq(k, "digest"), v)
                    && let Ok(d) = s.parse()
                {
                    into.push(d);
                }
            }
        }
    };
    for (k, v) in top {
        let into = if fold_eq(k, "manifests") {
            &mut out.children
        } else if fold_eq(k, "config") || fold_eq(k, "layers") || fold_eq(k, "subject") {
            &mut out.blobs
        } else {
            continue;
        };
        match v {
            Json::Array(items) => items.iter().for_each(|d| digests_of(d, into)),
            other => digests_of(other, into),
        }
    }
    Ok(out)
}

/// What [`references`] finds.
#[derive(Debug, Default)]
pub struct References {
    /// Configs, layers, subjects: blobs (or manifests) that must stay.
    pub blobs: Vec<Digest>,
    /// Index children: manifests that must stay, with what they use.
    pub children: Vec<Digest>,
}

/// Case-insensitive equality as Go's encoding/json matches object keys to fields (Unicode
/// simple folding, so `ſ` matches `s` and the Kelvin sign `k`).
fn fold_eq(a: &str, b: &str) -> bool {
    let fold = |s: &str| -> String {
        s.chars()
            .flat_map(char::to_uppercase)
            .flat_map(char::to_lowercase)
            .collect()
    };
    a == b || fold(a) == fold(b)
}

/// The keys a registry reads from a manifest and from its descriptors.
const TOP_KEYS: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "artifactType",
    "config",
    "layers",
    "manifests",
    "subject",
];
const DESCRIPTOR_KEYS: &[&str] = &["mediaType", "digest", "size"];

/// Refuse keys that readers disagree on: a second occurrence of a field we read (serde would
/// refuse it, Go takes the last), or another spelling of it that Go's case-insensitive
/// matching takes for it while we ignore it.
fn audit_signals(bytes: &[u8]) -> Result<()> {
    let tree: Json = serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    fn check(fields: &[(String, Json)], known: &[&str], at: &str) -> Result<()> {
        for name in known {
            let spellings: Vec<&str> = fields
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| fold_eq(k, name))
                .collect();
            if let Some(other) = spellings.iter().find(|k| *k != name) {
                return Err(invalid(format!(
                    "conflicting type signals: {at}key {other:?} is read as {name:?} by case-insensitive JSON readers"
                )));
            }
            if spellings.len() > 1 {
                return Err(invalid(format!("conflicting type signals: {at}{name:?} appears twice")));
            }
        }
        Ok(())
    }
    let Json::Object(top) = &tree else {
        return Err(invalid("a manifest is a JSON object"));
    };
    check(top, TOP_KEYS, "")?;
    for (k, v) in top {
        let items: Vec<&Json> = match v {
            Json::Array(items) if k == "layers" || k == "manifests" => items.iter().collect(),
            one if k == "config" || k == "subject" => vec![one],
            _ => continue,
        };
        for (i, d) in items.into_iter().enumerate() {
            if let Json::Object(fields) = d {
                check(fields, DESCRIPTOR_KEYS, &format!("{k}[{i}]: "))?;
            }
        }
    }
    Ok(())
}

/// A JSON document that keeps every key of every object, duplicates and order included (a
/// `serde_json::Value` keeps only the last of duplicate keys).
enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    String(String),
    Other,
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Json, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<Json, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Json>()? {
                    fields.push((k, v));
                }
                Ok(Json::Object(fields))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> std::result::Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = s.next_element::<Json>()? {
                    items.push(v);
                }
                Ok(Json::Array(items))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Json, E> {
                Ok(Json::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Json, E> {
                Ok(Json::String(v))
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_unit<E>(self) -> std::result::Result<Json, E> {
                Ok(Json::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The one classification of a manifest body. The type is the payload's `mediaType`, else
/// (pushes) the request's Content-Type, else the structure: an index if it has `manifests` and
/// no image fields, else an image.
fn classify(bytes: &[u8], mode: Mode) -> Result<ManifestInfo> {
    let push = matches!(mode, Mode::Push(_));
    let ct = match mode {
        Mode::Push(ct) => ct.map(bare_type).filter(|c| !c.is_empty()),
        Mode::Stored => None,
    };
    if let Some(ct) = ct
        && DOCKER_SCHEMA1.contains(&ct)
    {
        return Err(invalid(
            "Docker schema 1 manifests are not supported; push schema 2 or OCI",
        ));
    }
    if nesting_exceeds(bytes, MAX_JSON_DEPTH) {
        return Err(invalid(format!(
            "JSON nested deeper than {MAX_JSON_DEPTH} levels (an OCI manifest needs 4)"
        )));
    }
    let m: AnyManifest = serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    match &m.schema_version {
        Some(v) if v.as_i64() == Some(2) => {}
        Some(v) if v.as_i64() == Some(1) => {
            return Err(invalid(
                "Docker schema 1 manifests are not supported; push schema 2 or OCI",
            ));
        }
        Some(v) => return Err(invalid(format!("unsupported schemaVersion {v}"))),
        None => return Err(invalid("schemaVersion is missing")),
    }
    let ct = ct.filter(|c| *c != "application/octet-stream" && *c != "application/json");
    if let (Some(mt), Some(ct)) = (&m.media_type, ct)
        && mt != ct
    {
        return Err(invalid(format!(
            "the payload's mediaType {mt:?} does not match the Content-Type {ct:?}"
        )));
    }
    let image_fields = m.config.is_some() || m.layers.is_some();
    let media_type = match (m.media_type.as_deref(), ct) {
        (Some(mt), _) => mt.to_owned(),
        (None, Some(ct)) => ct.to_owned(),
        (None, None) if m.manifests.is_some() && !image_fields => OCI_INDEX.to_owned(),
        (None, None) => OCI_MANIFEST.to_owned(),
    };
    let descriptor_digest = |d: &RawDescriptor, field: &str| -> Result<Digest> {
        if d.size < 0 {
            return Err(invalid(format!("{field}: negative size")));
        }
        d.digest.parse().map_err(|e| invalid(format!("{field}: {e}")))
    };
    let subject = m
        .subject
        .as_ref()
        .map(|s| descriptor_digest(s, "subject"))
        .transpose()?;
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let is_index = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            if push && m.manifests.is_some() {
                return Err(invalid(format!(
                    "conflicting type signals: an image manifest ({media_type}) has a manifests field, \
                     which readers take for an index"
                )));
            }
            let config = m
                .config
                .as_ref()
                .ok_or_else(|| invalid("an image manifest needs a config"))?;
            blobs.push(descriptor_digest(config, "config")?);
            let layers = m
                .layers
                .as_ref()
                .ok_or_else(|| invalid("an image manifest needs a layers array"))?;
            for (i, l) in layers.iter().enumerate() {
                let d = descriptor_digest(l, &format!("layers[{i}]"))?;
                if !l.media_type.as_deref().is_some_and(|t| NON_DISTRIBUTABLE.contains(&t)) {
                    blobs.push(d);
                }
            }
            false
        }
        OCI_INDEX | DOCKER_LIST => {
            if push && image_fields {
                return Err(invalid(format!(
                    "conflicting type signals: an index ({media_type}) has config or layers fields, \
                     which readers take for an image"
                )));
            }
            let list = m
                .manifests
                .as_ref()
                .ok_or_else(|| invalid("an index needs a manifests array"))?;
            for (i, c) in list.iter().enumerate() {
                children.push(descriptor_digest(c, &format!("manifests[{i}]"))?);
            }
            true
        }
        other if DOCKER_SCHEMA1.contains(&other) => {
            return Err(invalid(
                "Docker schema 1 manifests are not supported; push schema 2 or OCI",
            ));
        }
        other => return Err(invalid(format!("unsupported manifest media type {other:?}"))),
    };
    // The spec's artifactType rule for referrers: the manifest's own, else an image's config type.
    let artifact_type = m.artifact_type.clone().filter(|a| !a.is_empty()).or_else(|| {
        if is_index {
            None
        } else {
            m.config.as_ref().and_then(|c| c.media_type.clone())
        }
    });
    Ok(ManifestInfo {
        media_type,
        artifact_type,
        annotations: m.annotations,
        blobs,
        children,
        subject,
        is_index,
    })
}

impl Registry {
    /// Whether the repository exists at all (for NAME_UNKNOWN versus MANIFEST_UNKNOWN).
    pub async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        if self.exists(&paths::repo(repo).join("_manifests")).await? {
            return Ok(true);
        }
        // Object stores have no empty directories: once its last manifest is deleted, a
        // repository is known by its layer links (the filesystem keeps `_manifests/` itself).
        Ok(self.driver.capabilities().object_store && self.exists(&paths::repo(repo).join("_layers")).await?)
    }

    async fn manifest_unknown(&self, repo: &RepoName, reference: &str) -> Error {
        match self.repo_exists(repo).await {
            Ok(false) => Error::NameUnknown(repo.to_string()),
            _ => Error::ManifestUnknown(reference.to_owned()),
        }
    }

    pub async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Digest> {
        match self.read_link(&paths::tag_current(repo, tag)).await? {
            Some(d) => Ok(d),
            None => Err(self.manifest_unknown(repo, tag.as_str()).await),
        }
    }

    /// A manifest of the repository, by digest.
    pub async fn get_manifest(&self, repo: &RepoName, d: &Digest) -> Result<Arc<StoredManifest>> {
        if self.read_link(&paths::revision_link(repo, d)).await?.as_ref() != Some(d) {
            return Err(self.manifest_unknown(repo, &d.to_string()).await);
        }
        if let Some(m) = self.manifest_cache.get(d) {
            return Ok(m);
        }
        // Concurrent misses wait for one read (a burst of GETs of a 4 MiB manifest reads it once).
        let _loading = self.manifest_cache.loading(d).await;
        if let Some(m) = self.manifest_cache.get(d) {
            return Ok(m);
        }
        let bytes = match self.driver.get_content(&paths::blob_data(d)).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(Error::ManifestUnknown(d.to_string())),
            Err(e) => return Err(e.into()),
        };
        let m = Arc::new(match read_stored(&bytes) {
            Ok(info) => StoredManifest {
                digest: d.clone(),
                media_type: info.media_type,
                bytes,
                artifact_type: info.artifact_type,
                annotations: info.annotations,
                subject: info.subject,
            },
            // Stored by another registry and not understood: serve the bytes as they are.
            Err(_) => StoredManifest {
                digest: d.clone(),
                media_type: OCI_MANIFEST.into(),
                bytes,
                artifact_type: None,
                annotations: None,
                subject: None,
            },
        });
        Ok(self.manifest_cache.insert(m))
    }

    /// Store a manifest by digest (`url_digest`), and under `tags` (the tag of the URL, or `?tag=`s).
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        tags: &[Tag],
        url_digest: Option<&Digest>,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutOutcome> {
        let alg = url_digest.map_or(Algorithm::Sha256, |d| d.algorithm());
        let digest = Digest::of(alg, &bytes);
        if let Some(expected) = url_digest
            && expected != &digest
        {
            return Err(Error::DigestInvalid(format!(
                "the manifest's digest is {digest}, not {expected}"
            )));
        }
        let info = parse_manifest(&bytes, content_type)?;
        self.check_gc_lock().await?;

        let mut missing = Vec::new();
        for b in &info.blobs {
            if self.read_link(&paths::layer_link(repo, b)).await?.as_ref() != Some(b)
                || self.stat_cas(b).await?.is_none()
            {
                missing.push(b.to_string());
            }
        }
        for c in &info.children {
            if self.read_link(&paths::revision_link(repo, c)).await?.as_ref() != Some(c) {
                missing.push(c.to_string());
            }
        }
        if !missing.is_empty() {
            missing.dedup();
            return Err(Error::ManifestBlobUnknown(missing));
        }

        self.store_manifest(repo, tags, &digest, &info, bytes).await?;
        Ok(PutOutcome {
            digest,
            subject: info.subject,
        })
    }

    /// Write a verified manifest: bytes, revision link, referrer entry, tags. The only code
    /// that creates a repository's `_manifests/`, that is, a repository of the catalog: when
    /// this PUT may be creating one, the catalog's generation marker is renewed after the
    /// writes (even failed ones: they may have created the directory) and before the answer.
    async fn store_manifest(
        &self,
        repo: &RepoName,
        tags: &[Tag],
        digest: &Digest,
        info: &ManifestInfo,
        bytes: Bytes,
    ) -> Result<()> {
        let may_grow = self.catalog_may_grow(repo).await;
        let written = self.write_manifest(repo, tags, digest, info, bytes).await;
        let renewed = if may_grow { self.catalog_changed().await } else { Ok(()) };
        written.and(renewed)
    }

    async fn write_manifest(
        &self,
        repo: &RepoName,
        tags: &[Tag],
        digest: &Digest,
        info: &ManifestInfo,
        bytes: Bytes,
    ) -> Result<()> {
        // Order (invariant I3): bytes, revision link, referrer entry, tag.
        let data = paths::blob_data(digest);
        if self.stat_cas(digest).await?.is_none() {
            self.driver.put_content(&data, bytes).await?;
        }
        // With tags, the revision link and the tags are written under the repository's lock, so
        // a concurrent DELETE of this manifest comes wholly before (the PUT restores the
        // revision) or after (it removes the tags too), never between: a tag never points at a
        // manifest that is not in the repository.
        let _g = if tags.is_empty() {
            None
        } else {
            Some(self.repo_lock(repo).await)
        };
        self.write_link(&paths::revision_link(repo, digest), digest).await?;
        if let Some(subject) = &info.subject {
            self.write_link(&paths::referrer_link(repo, subject, digest), digest)
                .await?;
        }
        crate::hooks::failpoint("manifest-before-tag");
        if !tags.is_empty() {
            self.tag_index.invalidate(repo);
            for tag in tags {
                self.write_link(&paths::tag_index_link(repo, tag, digest), digest)
                    .await?;
                crate::hooks::failpoint("tag-link-write");
                self.write_link(&paths::tag_current(repo, tag), digest).await?;
            }
        }
        Ok(())
    }

    /// Pull-through cache: store a manifest fetched from an upstream (whose digest the caller
    /// verified), under `tag` if given. Unlike a push, the blobs it names need not be here
    /// yet: they are fetched when a client asks for them.
    pub(crate) async fn cache_manifest(
        &self,
        repo: &RepoName,
        tag: Option<&Tag>,
        digest: &Digest,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<()> {
        let info = parse_manifest(&bytes, content_type)?;
        self.check_gc_lock().await?;
        self.store_manifest(
            repo,
            tag.map(std::slice::from_ref).unwrap_or_default(),
            digest,
            &info,
            bytes,
        )
        .await
    }

    /// A tag and when its link was last written: for a pull-through cache, when the tag was
    /// last found current upstream ([`Registry::touch_tag`]).
    pub(crate) async fn tag_with_time(&self, repo: &RepoName, tag: &Tag) -> Result<Option<(Digest, SystemTime)>> {
        let link = paths::tag_current(repo, tag);
        let Some(d) = self.read_link(&link).await? else {
            return Ok(None);
        };
        match self.driver.stat(&link).await {
            Ok(fi) => Ok(Some((d, fi.modified))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Rewrite a tag's link unchanged, recording that the upstream still has it there.
    pub(crate) async fn touch_tag(&self, repo: &RepoName, tag: &Tag, d: &Digest) -> Result<()> {
        let _g = self.repo_lock(repo).await;
        // Only if no newer answer moved the tag meanwhile.
        if self.read_link(&paths::tag_current(repo, tag)).await?.as_ref() == Some(d) {
            self.write_link(&paths::tag_current(repo, tag), d).await?;
        }
        Ok(())
    }

    /// Delete a manifest and every tag pointing at it. Its bytes stay until garbage collection.
    pub async fn delete_manifest(&self, repo: &RepoName, d: &Digest) -> Result<()> {
        self.require_delete()?;
        self.check_gc_lock().await?;
        let m = self.get_manifest(repo, d).await?;
        let _g = self.repo_lock(repo).await;
        self.tag_index.invalidate(repo);
        for tag in self.all_tags(repo).await? {
            if self.read_link(&paths::tag_current(repo, &tag)).await?.as_ref() == Some(d) {
                self.driver.delete(&paths::tag_dir(repo, &tag)).await?;
            }
        }
        if let Some(subject) = &m.subject {
            self.driver
                .delete(&paths::referrer_link(repo, subject, d).parent())
                .await?;
        }
        self.driver.delete(&paths::revision_link(repo, d).parent()).await?;
        Ok(())
    }

    /// Delete a tag only; the manifest stays reachable by digest.
    pub async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<()> {
        self.require_delete()?;
        self.check_gc_lock().await?;
        let _g = self.repo_lock(repo).await;
        self.resolve_tag(repo, tag).await?;
        self.tag_index.invalidate(repo);
        self.driver.delete(&paths::tag_dir(repo, tag)).await?;
        Ok(())
    }

    /// Every tag of a repository, sorted.
    pub(crate) async fn all_tags(&self, repo: &RepoName) -> Result<Vec<Tag>> {
        if self.driver.capabilities().object_store {
            // Object stores: tags are the `<tag>/current/link` keys, since an emptied (deleted)
            // tag's prefix may still be listed for a while by some services.
            let keys = self.driver.list_recursive(&paths::tags_dir(repo)).await?;
            let mut tags: Vec<Tag> = keys
                .iter()
                .filter_map(|k| k.strip_suffix("/current/link"))
                .filter_map(Tag::parse)
                .collect();
            tags.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            return Ok(tags);
        }
        match self.driver.list(&paths::tags_dir(repo)).await {
            Ok(names) => Ok(names.iter().filter_map(|n| Tag::parse(n)).collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Manifests in `repo` whose subject is `subject`, as descriptors, optionally filtered by
    /// artifactType.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let dir = paths::referrers_dir(repo, subject);
        let mut out = Vec::new();
        let algs = match self.driver.list(&dir).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for alg in algs {
            let Ok(alg) = alg.parse::<Algorithm>() else { continue };
            let hexes = match self.driver.list(&dir.join(alg.as_str())).await {
                Ok(h) => h,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let digests: Vec<Digest> = hexes
                .iter()
                .filter_map(|hex| format!("{}:{hex}", alg.as_str()).parse().ok())
                .collect();
            // Look the referrers up concurrently, keeping the directory's (digest) order.
            let mut found = futures::stream::iter(digests)
                .map(|d| async move { self.get_manifest(repo, &d).await })
                .buffered(32);
            while let Some(m) = found.next().await {
                let m = match m {
                    Ok(m) => m,
                    Err(Error::ManifestUnknown(_) | Error::NameUnknown(_)) => continue, // deleted meanwhile
                    Err(e) => return Err(e),
                };
                if m.subject.as_ref() != Some(subject) {
                    continue;
                }
                if artifact_type.is_some_and(|want| m.artifact_type.as_deref() != Some(want)) {
                    continue;
                }
                out.push(Descriptor {
                    media_type: m.media_type.clone(),
                    digest: m.digest.to_string(),
                    size: m.bytes.len() as u64,
                    artifact_type: m.artifact_type.clone(),
                    annotations: m.annotations.clone(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,{extra}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":0}},"layers":[]}}"#
        )
    }

    #[test]
    fn media_type_rules() {
        let m = parse_manifest(image("").as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        let with_type = image(&format!(r#""mediaType":"{OCI_MANIFEST}","#));
        assert!(parse_manifest(with_type.as_bytes(), Some(DOCKER_MANIFEST)).is_err());
        assert!(
            parse_manifest(
                with_type.as_bytes(),
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")
            )
            .is_ok()
        );
        assert!(parse_manifest(b"{", Some(OCI_MANIFEST)).is_err());
        assert!(parse_manifest(br#"{"schemaVersion":1,"name":"x"}"#, None).is_err());
        assert!(parse_manifest(image("").as_bytes(), Some(DOCKER_SCHEMA1[1])).is_err());
        let idx =
            format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1}}]}}"#);
        let m = parse_manifest(idx.as_bytes(), None).unwrap();
        assert!(m.is_index);
        assert_eq!(m.media_type, OCI_INDEX);
        assert_eq!(m.children.len(), 1);
        assert_eq!(m.artifact_type, None);
    }
}
