//! Parse `/v2/...` paths into a typed route. Repository names contain `/`, so the path is
//! matched by its suffix (as olareg and Distribution's regexes do) and the name is validated
//! against the spec grammar before anything touches storage.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::Method;

use crate::auth::Access;
use crate::auth::scope::{DELETE, PULL, PUSH};
use crate::error::{Error, Named, Result};
pub use crate::registry::content::Reference;
use crate::registry::digest::Digest;
use crate::registry::names::{RepoName, Tag, UploadId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum V2Route {
    Base,
    Catalog,
    Tags {
        name: RepoName,
    },
    Manifest {
        name: RepoName,
        reference: Reference,
    },
    /// `/v2/<name>/manifests/<reference>` where the reference is neither a valid tag nor a valid
    /// digest. No such manifest can exist, so reads and deletes answer 404 MANIFEST_UNKNOWN (as
    /// registry:2 does); only a PUT is told its tag or digest is invalid (400).
    BadReference {
        name: RepoName,
        reference: String,
    },
    Blob {
        name: RepoName,
        digest: Digest,
    },
    UploadStart {
        name: RepoName,
    },
    Upload {
        name: RepoName,
        id: UploadId,
    },
    Referrers {
        name: RepoName,
        digest: Digest,
    },
}

impl V2Route {
    /// A short route template for logs and metrics (never contains user input).
    pub fn kind(&self) -> &'static str {
        match self {
            V2Route::Base => "base",
            V2Route::Catalog => "catalog",
            V2Route::Tags { .. } => "tags",
            V2Route::Manifest { .. } | V2Route::BadReference { .. } => "manifest",
            V2Route::Blob { .. } => "blob",
            V2Route::UploadStart { .. } => "upload_start",
            V2Route::Upload { .. } => "upload",
            V2Route::Referrers { .. } => "referrers",
        }
    }
}

impl V2Route {
    /// The route's template, the label of its metrics (never contains user input).
    pub fn template(&self) -> &'static str {
        match self {
            V2Route::Base => "/v2/",
            V2Route::Catalog => "/v2/_catalog",
            V2Route::Tags { .. } => "/v2/{name}/tags/list",
            V2Route::Manifest { .. } | V2Route::BadReference { .. } => "/v2/{name}/manifests/{reference}",
            V2Route::Blob { .. } => "/v2/{name}/blobs/{digest}",
            V2Route::UploadStart { .. } => "/v2/{name}/blobs/uploads/",
            V2Route::Upload { .. } => "/v2/{name}/blobs/uploads/{uuid}",
            V2Route::Referrers { .. } => "/v2/{name}/referrers/{digest}",
        }
    }

    /// The repository the request is about, if any.
    pub fn name(&self) -> Option<&RepoName> {
        match self {
            V2Route::Base | V2Route::Catalog => None,
            V2Route::Tags { name }
            | V2Route::Manifest { name, .. }
            | V2Route::BadReference { name, .. }
            | V2Route::Blob { name, .. }
            | V2Route::UploadStart { name }
            | V2Route::Upload { name, .. }
            | V2Route::Referrers { name, .. } => Some(name),
        }
    }

    /// The accesses a request needs (Distribution's `appendAccessRecords`): reads need `pull`,
    /// writes `pull` and `push`, deletes `delete`, the catalog `registry:catalog:*`, and `/v2/`
    /// nothing but an authenticated caller. A mount's source is checked by the handler, which
    /// falls back to a plain upload when the caller may not pull from it.
    pub fn required_access(&self, method: &Method) -> Vec<Access> {
        let name = match (self, self.name()) {
            (V2Route::Catalog, _) => return vec![Access::catalog()],
            (_, None) => return Vec::new(),
            (_, Some(name)) => name.as_str(),
        };
        match *method {
            Method::DELETE => vec![Access::repository(name, DELETE)],
            Method::POST | Method::PUT | Method::PATCH => {
                vec![Access::repository(name, PULL), Access::repository(name, PUSH)]
            }
            _ => vec![Access::repository(name, PULL)],
        }
    }
}

/// Whether `path` is under `/v2` (and so parsed into a [`V2Route`]).
pub fn is_v2(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// A request's parsed route, added to it as an extension by the observing middleware
/// (`observe.rs`), which labels its metrics and access log line with it, so the dispatcher
/// does not parse the path again.
#[derive(Clone)]
pub struct Parsed(Arc<Result<V2Route>>);

impl Parsed {
    pub fn new(route: Result<V2Route>) -> Self {
        Parsed(Arc::new(route))
    }
}

/// The request's route: the one the observing middleware parsed, else parsed now.
pub fn take(req: &mut Request) -> Result<V2Route> {
    match req
        .extensions_mut()
        .remove::<Parsed>()
        .and_then(|p| Arc::into_inner(p.0))
    {
        Some(route) => route,
        None => parse(req.uri().path()),
    }
}

fn digest(s: &str) -> Result<Digest> {
    s.parse().map_err(Error::DigestInvalid)
}

/// `path` is the raw (still percent-encoded) request path.
pub fn parse(path: &str) -> Result<V2Route> {
    let rest = match path.strip_prefix("/v2") {
        Some("") | Some("/") => return Ok(V2Route::Base),
        Some(r) => r.strip_prefix('/').ok_or_else(|| Error::NotFound(path.to_owned()))?,
        None => return Err(Error::NotFound(path.to_owned())),
    };
    if rest == "_catalog" {
        return Ok(V2Route::Catalog);
    }
    let name = |n: &str| RepoName::parse(n);
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(V2Route::Tags { name: name(n)? });
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(V2Route::UploadStart { name: name(n)? });
    }
    let (head, last) = rest.rsplit_once('/').ok_or_else(|| Error::NotFound(path.to_owned()))?;
    if let Some(n) = head.strip_suffix("/blobs/uploads") {
        let name = name(n)?;
        let id = UploadId::parse(last).ok_or_else(|| Error::BlobUploadUnknown(Named::Unparsed(last.to_owned())))?;
        return Ok(V2Route::Upload { name, id });
    }
    if let Some(n) = head.strip_suffix("/blobs") {
        let name = name(n)?;
        return Ok(V2Route::Blob {
            name,
            digest: digest(last)?,
        });
    }
    if let Some(n) = head.strip_suffix("/manifests") {
        let name = name(n)?;
        let reference = if last.contains(':') {
            last.parse().ok().map(Reference::Digest)
        } else {
            Tag::parse(last).map(Reference::Tag)
        };
        return Ok(match reference {
            Some(reference) => V2Route::Manifest { name, reference },
            None => V2Route::BadReference {
                name,
                reference: last.to_owned(),
            },
        });
    }
    if let Some(n) = head.strip_suffix("/referrers") {
        let name = name(n)?;
        return Ok(V2Route::Referrers {
            name,
            digest: digest(last)?,
        });
    }
    Err(Error::NotFound(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn routes() {
        assert_eq!(parse("/v2/").unwrap(), V2Route::Base);
        assert_eq!(parse("/v2").unwrap(), V2Route::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), V2Route::Catalog);
        assert!(matches!(parse("/v2/a/b/tags/list").unwrap(), V2Route::Tags { name } if name.as_str() == "a/b"));
        assert!(matches!(
            parse("/v2/a/blobs/uploads/").unwrap(),
            V2Route::UploadStart { .. }
        ));
        let id = UploadId::new();
        assert!(matches!(
            parse(&format!("/v2/a/blobs/uploads/{id}")).unwrap(),
            V2Route::Upload { .. }
        ));
        assert!(
            matches!(parse(&format!("/v2/x/y/blobs/{D}")).unwrap(), V2Route::Blob { name, .. } if name.as_str() == "x/y")
        );
        assert!(matches!(
            parse("/v2/a/manifests/latest").unwrap(),
            V2Route::Manifest {
                reference: Reference::Tag(_),
                ..
            }
        ));
        assert!(matches!(
            parse(&format!("/v2/a/manifests/{D}")).unwrap(),
            V2Route::Manifest {
                reference: Reference::Digest(_),
                ..
            }
        ));
        assert!(matches!(
            parse(&format!("/v2/a/referrers/{D}")).unwrap(),
            V2Route::Referrers { .. }
        ));
    }

    #[test]
    fn hostile_names_are_refused() {
        for p in [
            "/v2/../blobs/uploads/",
            "/v2/a/../b/blobs/uploads/",
            "/v2/%2e%2e/blobs/uploads/",
            "/v2/Foo/blobs/uploads/",
            "/v2//a/blobs/uploads/",
            "/v2/a//b/blobs/uploads/",
        ] {
            assert!(matches!(parse(p), Err(Error::NameInvalid(_))), "{p}");
        }
        assert!(matches!(parse("/v2/a/blobs/sha256:xyz"), Err(Error::DigestInvalid(_))));
        assert!(parse("/v2/a/blobs/uploads/../../x").is_err());
        assert!(matches!(
            parse("/v2/a/blobs/uploads/not-a-uuid"),
            Err(Error::BlobUploadUnknown(_))
        ));
        assert!(matches!(parse("/v2/a/nothing"), Err(Error::NotFound(_))));
        for r in [
            ".INVALID_MANIFEST_NAME",
            "sha256:xyz",
            "-x",
            "%2e%2e",
            "a%2Fb",
            &"t".repeat(129),
        ] {
            assert!(
                matches!(parse(&format!("/v2/a/manifests/{r}")), Ok(V2Route::BadReference { reference, .. }) if reference == r),
                "{r}"
            );
        }
    }
}
