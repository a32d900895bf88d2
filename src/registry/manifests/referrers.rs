//! Referrers: manifests with a `subject` are indexed under `_referrers/<subject>/` so the
//! referrers API never scans the repository.

use std::collections::BTreeMap;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::registry::digest::{Algorithm, Digest};
use crate::registry::names::RepoName;
use crate::registry::{Registry, paths};

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

impl Registry {
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
