//! S3-compatible object storage on `object_store` (AWS S3, SeaweedFS, any service speaking the S3
//! API with SigV4). Keys are Distribution's layout under `storage.s3.rootdirectory`, so a bucket
//! written by `registry:2` is served as is.
//!
//! The same driver also runs on object_store's `InMemory` store (`storage.inmemory`, as
//! Distribution's `inmemory` driver): multipart uploads and conditional writes included, no
//! presigned URLs. Tests use it to drive the object-store code paths without an S3 service.
//!
//! What differs from the filesystem, and how the rest of Wharf copes:
//! - no append and no rename: upload data goes through [`Multipart`](super::Multipart) (parts by upload id, so any
//!   replica continues a session) and finished objects are written in place or copied server-side;
//! - no directories: a "directory" exists while some key has it as a prefix; `list` uses the
//!   delimiter listing, and deleting a directory deletes every key under it;
//! - conditional writes (`If-None-Match: *`, `If-Match: <etag>`) stand in for locks where
//!   replicas must agree (upload session state, the garbage-collection lock).

mod backend;
mod driver;
mod multipart;

use std::sync::Arc;
use std::time::Duration;

use object_store::ClientOptions;
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::path::Path;

use super::{DriverError, StoragePath};
use crate::config::S3Config;
use backend::Backend;
use multipart::COPY_OBJECT_LIMIT;

/// How long a presigned redirect URL stays valid (Distribution uses 20 minutes).
const REDIRECT_TTL: Duration = Duration::from_secs(20 * 60);

#[derive(Clone)]
pub struct S3Driver {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Backend>,
    /// `s3` or `inmemory`.
    name: &'static str,
    /// Key prefix without leading or trailing `/` (may be empty).
    prefix: String,
    part_size: usize,
    conditional: bool,
    bucket: String,
    /// Objects above this size are copied by streaming (CopyObject's limit; lowered in tests).
    copy_limit: u64,
}

impl S3Driver {
    pub fn new(c: &S3Config) -> Result<Self, DriverError> {
        // The environment's AWS_* settings first (credentials, session token), then the config.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&c.bucket)
            .with_region(&c.region)
            .with_virtual_hosted_style_request(false)
            // Parts are already hashed once for the digest; signing them too would hash every
            // byte a second time. UNSIGNED-PAYLOAD is part of SigV4 and accepted by S3.
            .with_unsigned_payload(true)
            .with_client_options(
                ClientOptions::new()
                    // A blob GET streams for as long as the client reads; only connecting and
                    // silences are bounded.
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_read_timeout(Duration::from_secs(120))
                    .with_pool_idle_timeout(Duration::from_secs(50))
                    .with_allow_http(c.regionendpoint.starts_with("http://") || !c.secure),
            );
        if !c.accesskey.is_empty() {
            b = b.with_access_key_id(&c.accesskey).with_secret_access_key(&c.secretkey);
        }
        let endpoint = if !c.regionendpoint.is_empty() {
            Some(c.regionendpoint.trim_end_matches('/').to_owned())
        } else if !c.secure {
            Some(format!("http://s3.{}.amazonaws.com", c.region))
        } else {
            None
        };
        if let Some(ep) = endpoint {
            if c.forcepathstyle {
                b = b.with_endpoint(&ep);
            } else {
                // Virtual-hosted style: object_store wants the bucket in the endpoint's host.
                let (scheme, host) = ep.split_once("://").unwrap_or(("https", &ep));
                b = b
                    .with_endpoint(format!("{scheme}://{}.{host}", c.bucket))
                    .with_virtual_hosted_style_request(true);
            }
            if ep.starts_with("http://") {
                b = b.with_allow_http(true);
            }
        } else if !c.forcepathstyle {
            b = b.with_virtual_hosted_style_request(true);
        }
        let store = b.build().map_err(|e| DriverError::Backend {
            path: format!("s3://{}", c.bucket),
            message: e.to_string(),
        })?;
        Ok(S3Driver {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                name: "s3",
                prefix: c.rootdirectory.trim_matches('/').to_owned(),
                part_size: c.chunksize as usize,
                conditional: c.conditionalwrites,
                bucket: c.bucket.clone(),
                copy_limit: COPY_OBJECT_LIMIT,
            }),
        })
    }

    /// An empty store in this process's memory (`storage.inmemory`), gone when it exits.
    pub fn in_memory() -> Self {
        S3Driver {
            inner: Arc::new(Inner {
                store: Arc::new(InMemory::new()),
                name: "inmemory",
                prefix: String::new(),
                // The smallest part S3 accepts, so tests cross part boundaries with small blobs.
                part_size: 5 << 20,
                conditional: true,
                bucket: String::new(),
                copy_limit: COPY_OBJECT_LIMIT,
            }),
        }
    }

    #[cfg(test)]
    pub(crate) fn set_copy_limit(&mut self, limit: u64) {
        Arc::get_mut(&mut self.inner).expect("not shared yet").copy_limit = limit;
    }

    /// Where the store is, for logs: `s3://bucket/prefix` (or `inmemory`).
    pub fn describe(&self) -> String {
        if self.inner.name == "inmemory" {
            return "inmemory".to_owned();
        }
        format!("s3://{}/{}", self.inner.bucket, self.inner.prefix)
    }

    fn key(&self, p: &StoragePath) -> Path {
        let s = if self.inner.prefix.is_empty() {
            p.as_str().to_owned()
        } else if p.as_str().is_empty() {
            self.inner.prefix.clone()
        } else {
            format!("{}/{}", self.inner.prefix, p.as_str())
        };
        // Components come from validated names (no empty segments, no `..`), so this cannot fail.
        Path::parse(&s).unwrap_or_else(|_| Path::from(s.as_str()))
    }

    fn err(&self, p: &StoragePath, e: object_store::Error) -> DriverError {
        match e {
            object_store::Error::NotFound { .. } => DriverError::NotFound(p.clone()),
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                DriverError::Conflict(p.clone())
            }
            e => DriverError::Backend {
                path: p.to_string(),
                message: e.to_string(),
            },
        }
    }
}

fn to_io(e: object_store::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
