//! Manifest format: parse, classify and validate a manifest's bytes, as a push (with the
//! request's Content-Type) or as stored bytes. The one classification every reader of a stored
//! manifest shares (GET, garbage collection, the referrers API, the proxy cache).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::signals::audit_signals;
use crate::error::{Error, Result};
use crate::registry::digest::Digest;

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

pub(super) fn invalid(msg: impl Into<String>) -> Error {
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
/// can pull); garbage collection marks every reading of them anyway ([`references`](super::references)).
pub fn read_stored(bytes: &[u8]) -> Result<ManifestInfo> {
    classify(bytes, Mode::Stored)
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
