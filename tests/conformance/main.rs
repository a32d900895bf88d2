//! A conformance suite for the OCI Distribution Specification (v1.1.1, plus `?tag=` and
//! `digest-algorithm` from main), written from the spec's sentences. Each check is named after
//! the requirement it tests, grouped in the spec's four workflows: pull, push, content discovery,
//! content management.
//!
//! cargo test --test conformance                          start Wharf and test it
//! cargo test --test conformance -- --url http://HOST:PORT [--user U --password P]
//!                                   [--known-failures FILE] [--junit FILE] [--name NAME]
//!
//! A check is skipped only where the registry answers with the status the spec gives for an
//! unsupported feature (deletion disabled: 400/405). With --known-failures, the run succeeds when
//! the failing checks are exactly those listed in FILE (one `name  # reason` per line).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

// ---------------------------------------------------------------- plumbing

enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

type CheckResult = Result<(), Outcome>;
type CheckFn = for<'a> fn(&'a Ctx) -> Pin<Box<dyn Future<Output = CheckResult> + 'a>>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Outcome::Fail(format!($($msg)+)));
        }
    };
}

fn fail<T>(msg: impl Into<String>) -> Result<T, Outcome> {
    Err(Outcome::Fail(msg.into()))
}

struct Ctx {
    base: String,
    client: reqwest::Client,
    user: Option<(String, String)>,
    /// Every repository this run touches is under this prefix, so runs never collide.
    ns: String,
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl Ctx {
    fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.ns)
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let r = self.client.request(method, url);
        match &self.user {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<Response, Outcome> {
        rb.send()
            .await
            .map_err(|e| Outcome::Fail(format!("request failed: {e}")))
    }

    async fn get(&self, path: &str) -> Result<Response, Outcome> {
        self.send(self.req(Method::GET, path)).await
    }

    /// Push a blob with POST then PUT (the flavour every registry must support).
    async fn push_blob(&self, repo: &str, data: &[u8]) -> Result<String, Outcome> {
        let d = sha256(data);
        let r = self
            .send(self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/")))
            .await?;
        ensure!(r.status() == StatusCode::ACCEPTED, "POST upload: {}", r.status());
        let loc = location(&r)?;
        let r = self
            .send(
                self.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
                    .header("content-type", "application/octet-stream")
                    .body(data.to_vec()),
            )
            .await?;
        ensure!(r.status() == StatusCode::CREATED, "PUT upload: {}", r.status());
        Ok(d)
    }

    async fn put_manifest(&self, repo: &str, reference: &str, ct: &str, body: &[u8]) -> Result<Response, Outcome> {
        self.send(
            self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
                .header("content-type", ct)
                .body(body.to_vec()),
        )
        .await
    }

    async fn put_manifest_ok(&self, repo: &str, reference: &str, ct: &str, body: &[u8]) -> Result<Response, Outcome> {
        let r = self.put_manifest(repo, reference, ct, body).await?;
        if r.status() != StatusCode::CREATED {
            let st = r.status();
            return fail(format!(
                "PUT manifest {repo}:{reference}: {st} {}",
                r.text().await.unwrap_or_default()
            ));
        }
        Ok(r)
    }

    /// Push a config and layers, and return an image manifest using them (not pushed yet).
    async fn image(&self, repo: &str, seed: u64, layers: usize) -> Result<Value, Outcome> {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":{seed}}}"#
        );
        let cd = self.push_blob(repo, config.as_bytes()).await?;
        let mut descs = Vec::new();
        for i in 0..layers {
            let data = noise(2048 + i, seed * 100 + i as u64);
            let d = self.push_blob(repo, &data).await?;
            descs.push(json!({"mediaType": OCI_LAYER, "digest": d, "size": data.len()}));
        }
        Ok(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": config.len()}, "layers": descs}))
    }

    /// Push an image manifest and return (digest, bytes).
    async fn pushed_image(&self, repo: &str, tag: &str, seed: u64) -> Result<(String, Vec<u8>), Outcome> {
        let m = to_bytes(&self.image(repo, seed, 1).await?);
        self.put_manifest_ok(repo, tag, OCI_MANIFEST, &m).await?;
        Ok((sha256(&m), m))
    }

    async fn delete(&self, path: &str) -> Result<Response, Outcome> {
        let r = self.send(self.req(Method::DELETE, path)).await?;
        if r.status() == StatusCode::METHOD_NOT_ALLOWED || r.status() == StatusCode::BAD_REQUEST {
            // the spec's answers when deletion is disabled
            return Err(Outcome::Skip(format!("deletion unsupported ({})", r.status())));
        }
        Ok(r)
    }
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn location(r: &Response) -> Result<String, Outcome> {
    header(r, "location").ok_or_else(|| Outcome::Fail(format!("no Location header ({})", r.status())))
}

fn with_query(loc: &str, q: &str) -> String {
    if loc.contains('?') {
        format!("{loc}&{q}")
    } else {
        format!("{loc}?{q}")
    }
}

/// The spec's error body: `{"errors":[{"code": ..}]}` with codes of [A-Z_]; returns the codes.
async fn error_codes(r: Response) -> Result<Vec<String>, Outcome> {
    let body = r.bytes().await.map_err(|e| Outcome::Fail(e.to_string()))?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| Outcome::Fail(format!("error body is not JSON: {:?}", String::from_utf8_lossy(&body))))?;
    let errors = v["errors"]
        .as_array()
        .ok_or_else(|| Outcome::Fail(format!("no errors array: {v}")))?;
    let codes: Vec<String> = errors
        .iter()
        .filter_map(|e| e["code"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        !codes.is_empty() && codes.len() == errors.len(),
        "every error needs a code: {v}"
    );
    ensure!(
        codes
            .iter()
            .all(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_')),
        "codes must be [A-Z_]: {v}"
    );
    Ok(codes)
}

async fn expect_error(r: Response, status: StatusCode, code: &str) -> CheckResult {
    ensure!(r.status() == status, "expected {status} {code}, got {}", r.status());
    let codes = error_codes(r).await?;
    ensure!(codes.iter().any(|c| c == code), "expected code {code}, got {codes:?}");
    Ok(())
}

async fn body_of(r: Response) -> Result<Vec<u8>, Outcome> {
    r.bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| Outcome::Fail(e.to_string()))
}

// ---------------------------------------------------------------- pull

fn pull_checks() -> Vec<(&'static str, CheckFn)> {
    vec![
        ("pull.base-endpoint-returns-200", |c| {
            Box::pin(async move {
                let r = c.get("/v2/").await?;
                ensure!(r.status() == StatusCode::OK, "GET /v2/: {}", r.status());
                Ok(())
            })
        }),
        ("pull.manifest-by-tag-returns-200-and-the-manifest", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-tag");
                let (_, m) = c.pushed_image(&repo, "v1", 1).await?;
                let r = c.get(&format!("/v2/{repo}/manifests/v1")).await?;
                ensure!(r.status() == StatusCode::OK, "{}", r.status());
                ensure!(body_of(r).await? == m, "the manifest bytes differ from those pushed");
                Ok(())
            })
        }),
        ("pull.manifest-by-digest-returns-200-and-the-manifest", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-digest");
                let (d, m) = c.pushed_image(&repo, "v1", 2).await?;
                let r = c.get(&format!("/v2/{repo}/manifests/{d}")).await?;
                ensure!(r.status() == StatusCode::OK, "{}", r.status());
                ensure!(body_of(r).await? == m, "the manifest bytes differ from those pushed");
                Ok(())
            })
        }),
        ("pull.manifest-content-type-matches-the-pushed-type", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-ct");
                c.pushed_image(&repo, "v1", 3).await?;
                let r = c.get(&format!("/v2/{repo}/manifests/v1")).await?;
                let ct = header(&r, "content-type").unwrap_or_default();
                ensure!(
                    ct.split(';').next().unwrap().trim() == OCI_MANIFEST,
                    "Content-Type {ct:?}"
                );
                Ok(())
            })
        }),
        ("pull.manifest-docker-content-digest-matches-the-manifest", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-dcd");
                let (d, _) = c.pushed_image(&repo, "v1", 4).await?;
                let r = c.get(&format!("/v2/{repo}/manifests/v1")).await?;
                ensure!(
                    header(&r, "docker-content-digest").as_deref() == Some(d.as_str()),
                    "Docker-Content-Digest {:?}",
                    header(&r, "docker-content-digest")
                );
                Ok(())
            })
        }),
        ("pull.manifest-head-returns-200-with-digest-and-length", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-head");
                let (d, m) = c.pushed_image(&repo, "v1", 5).await?;
                for reference in ["v1", d.as_str()] {
                    let r = c
                        .send(c.req(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}")))
                        .await?;
                    ensure!(r.status() == StatusCode::OK, "HEAD {reference}: {}", r.status());
                    ensure!(
                        header(&r, "docker-content-digest").as_deref() == Some(d.as_str()),
                        "HEAD digest"
                    );
                    ensure!(
                        header(&r, "content-length") == Some(m.len().to_string()),
                        "HEAD Content-Length {:?}",
                        header(&r, "content-length")
                    );
                }
                Ok(())
            })
        }),
        ("pull.unknown-manifest-returns-404-manifest-unknown", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-unknown");
                c.pushed_image(&repo, "v1", 6).await?;
                expect_error(
                    c.get(&format!("/v2/{repo}/manifests/nope")).await?,
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                )
                .await?;
                let r = c
                    .send(c.req(Method::HEAD, &format!("/v2/{repo}/manifests/{}", sha256(b"x"))))
                    .await?;
                ensure!(r.status() == StatusCode::NOT_FOUND, "HEAD unknown: {}", r.status());
                Ok(())
            })
        }),
        ("pull.nonexistent-repository-returns-404", |c| {
            Box::pin(async move {
                let r = c.get(&format!("/v2/{}/manifests/v1", c.repo("never-pushed"))).await?;
                ensure!(r.status() == StatusCode::NOT_FOUND, "{}", r.status());
                let codes = error_codes(r).await?;
                ensure!(
                    codes.iter().any(|c| c == "NAME_UNKNOWN" || c == "MANIFEST_UNKNOWN"),
                    "{codes:?}"
                );
                Ok(())
            })
        }),
        ("pull.blob-returns-200-and-digest-matching-the-body", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-blob");
                let data = noise(100_000, 7);
                let d = c.push_blob(&repo, &data).await?;
                let r = c.get(&format!("/v2/{repo}/blobs/{d}")).await?;
                ensure!(r.status() == StatusCode::OK, "{}", r.status());
                if let Some(h) = header(&r, "docker-content-digest") {
                    ensure!(h == d, "Docker-Content-Digest {h} != {d}");
                }
                ensure!(body_of(r).await? == data, "blob bytes differ");
                Ok(())
            })
        }),
        ("pull.blob-head-returns-200-with-length-and-digest", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-blob-head");
                let data = noise(4321, 8);
                let d = c.push_blob(&repo, &data).await?;
                let r = c.send(c.req(Method::HEAD, &format!("/v2/{repo}/blobs/{d}"))).await?;
                ensure!(r.status() == StatusCode::OK, "{}", r.status());
                ensure!(
                    header(&r, "content-length").as_deref() == Some("4321"),
                    "Content-Length {:?}",
                    header(&r, "content-length")
                );
                ensure!(
                    header(&r, "docker-content-digest").as_deref() == Some(d.as_str()),
                    "Docker-Content-Digest {:?}",
                    header(&r, "docker-content-digest")
                );
                Ok(())
            })
        }),
        ("pull.unknown-blob-returns-404-blob-unknown", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-blob-unknown");
                c.push_blob(&repo, b"something").await?;
                let d = sha256(b"never pushed");
                expect_error(
                    c.get(&format!("/v2/{repo}/blobs/{d}")).await?,
                    StatusCode::NOT_FOUND,
                    "BLOB_UNKNOWN",
                )
                .await?;
                let r = c.send(c.req(Method::HEAD, &format!("/v2/{repo}/blobs/{d}"))).await?;
                ensure!(r.status() == StatusCode::NOT_FOUND, "HEAD: {}", r.status());
                Ok(())
            })
        }),
        ("pull.blob-range-request-returns-206-with-content-range", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-range");
                let data = noise(10_000, 9);
                let d = c.push_blob(&repo, &data).await?;
                let r = c
                    .send(
                        c.req(Method::GET, &format!("/v2/{repo}/blobs/{d}"))
                            .header("range", "bytes=100-199"),
                    )
                    .await?;
                ensure!(r.status() == StatusCode::PARTIAL_CONTENT, "{}", r.status());
                ensure!(
                    header(&r, "content-range").as_deref() == Some("bytes 100-199/10000"),
                    "Content-Range {:?}",
                    header(&r, "content-range")
                );
                ensure!(body_of(r).await? == data[100..200], "range bytes differ");
                Ok(())
            })
        }),
        ("pull.blob-unsatisfiable-range-returns-416", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-range-416");
                let d = c.push_blob(&repo, &noise(100, 10)).await?;
                let r = c
                    .send(
                        c.req(Method::GET, &format!("/v2/{repo}/blobs/{d}"))
                            .header("range", "bytes=500-"),
                    )
                    .await?;
                ensure!(r.status() == StatusCode::RANGE_NOT_SATISFIABLE, "{}", r.status());
                Ok(())
            })
        }),
        (
            "pull.repository-blobs-are-not-readable-through-another-repository",
            |c| {
                Box::pin(async move {
                    let d = c.push_blob(&c.repo("pull-scope-a"), &noise(500, 11)).await?;
                    c.push_blob(&c.repo("pull-scope-b"), b"b's own").await?;
                    let r = c.get(&format!("/v2/{}/blobs/{d}", c.repo("pull-scope-b"))).await?;
                    ensure!(
                        r.status() == StatusCode::NOT_FOUND,
                        "a blob of repository a was served through b: {}",
                        r.status()
                    );
                    Ok(())
                })
            },
        ),
    ]
}

// ---------------------------------------------------------------- push

fn push_checks() -> Vec<(&'static str, CheckFn)> {
    vec![
        ("push.post-returns-202-with-a-location", |c| {
            Box::pin(async move {
                let r = c
                    .send(c.req(Method::POST, &format!("/v2/{}/blobs/uploads/", c.repo("push-post"))))
                    .await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "{}", r.status());
                location(&r)?;
                Ok(())
            })
        }),
        (
            "push.post-then-put-monolithic-returns-201-with-a-pullable-location",
            |c| {
                Box::pin(async move {
                    let repo = c.repo("push-mono");
                    let data = noise(70_000, 20);
                    let d = c.push_blob(&repo, &data).await?;
                    let r = c
                        .send(c.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/")))
                        .await?;
                    let loc = location(&r)?;
                    let r = c
                        .send(
                            c.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
                                .header("content-type", "application/octet-stream")
                                .body(data.clone()),
                        )
                        .await?;
                    ensure!(r.status() == StatusCode::CREATED, "{}", r.status());
                    let blob = location(&r)?;
                    let r = c.get(&blob).await?;
                    ensure!(
                        r.status() == StatusCode::OK && body_of(r).await? == data,
                        "the Location is not the pullable blob"
                    );
                    Ok(())
                })
            },
        ),
        ("push.single-post-returns-201-or-202", |c| {
            Box::pin(async move {
                let repo = c.repo("push-single-post");
                let data = noise(5000, 21);
                let d = sha256(&data);
                let r = c
                    .send(
                        c.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={d}"))
                            .header("content-type", "application/octet-stream")
                            .body(data.clone()),
                    )
                    .await?;
                match r.status() {
                    StatusCode::CREATED => {
                        let blob = location(&r)?;
                        ensure!(
                            body_of(c.get(&blob).await?).await? == data,
                            "the Location is not the blob"
                        );
                    }
                    StatusCode::ACCEPTED => {
                        // "registries that do not support single request monolithic uploads SHOULD return 202"
                        let loc = location(&r)?;
                        let r = c
                            .send(
                                c.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
                                    .body(data.clone()),
                            )
                            .await?;
                        ensure!(r.status() == StatusCode::CREATED, "PUT after 202: {}", r.status());
                    }
                    s => return fail(format!("{s}")),
                }
                Ok(())
            })
        }),
        ("push.chunked-patches-return-202-with-location-and-range", |c| {
            Box::pin(async move {
                let repo = c.repo("push-chunked");
                let data = noise(300_000, 22);
                let d = sha256(&data);
                let r = c
                    .send(
                        c.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                            .header("content-length", "0"),
                    )
                    .await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "POST {}", r.status());
                let mut loc = location(&r)?;
                let mut offset = 0usize;
                for chunk in data.chunks(100_000) {
                    let end = offset + chunk.len() - 1;
                    let r = c
                        .send(
                            c.req(Method::PATCH, &loc)
                                .header("content-type", "application/octet-stream")
                                .header("content-range", format!("{offset}-{end}"))
                                .body(chunk.to_vec()),
                        )
                        .await?;
                    ensure!(
                        r.status() == StatusCode::ACCEPTED,
                        "PATCH {offset}-{end}: {}",
                        r.status()
                    );
                    ensure!(
                        header(&r, "range").as_deref() == Some(format!("0-{end}").as_str()),
                        "Range {:?} after {offset}-{end}",
                        header(&r, "range")
                    );
                    loc = location(&r)?;
                    offset = end + 1;
                }
                let r = c
                    .send(c.req(Method::PUT, &with_query(&loc, &format!("digest={d}"))))
                    .await?;
                ensure!(r.status() == StatusCode::CREATED, "closing PUT: {}", r.status());
                ensure!(
                    body_of(c.get(&format!("/v2/{repo}/blobs/{d}")).await?).await? == data,
                    "blob bytes differ"
                );
                Ok(())
            })
        }),
        ("push.chunked-final-chunk-in-the-closing-put", |c| {
            Box::pin(async move {
                let repo = c.repo("push-final-put");
                let data = noise(150_000, 23);
                let d = sha256(&data);
                let r = c
                    .send(
                        c.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                            .header("content-length", "0"),
                    )
                    .await?;
                let loc = location(&r)?;
                let r = c
                    .send(
                        c.req(Method::PATCH, &loc)
                            .header("content-range", "0-99999")
                            .body(data[..100_000].to_vec()),
                    )
                    .await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "PATCH {}", r.status());
                let loc = location(&r)?;
                let r = c
                    .send(
                        c.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
                            .header("content-range", "100000-149999")
                            .header("content-type", "application/octet-stream")
                            .body(data[100_000..].to_vec()),
                    )
                    .await?;
                ensure!(
                    r.status() == StatusCode::CREATED,
                    "PUT with the last chunk: {}",
                    r.status()
                );
                ensure!(
                    body_of(c.get(&format!("/v2/{repo}/blobs/{d}")).await?).await? == data,
                    "blob bytes differ"
                );
                Ok(())
            })
        }),
        ("push.out-of-order-chunk-returns-416", |c| {
            Box::pin(async move {
                let repo = c.repo("push-416");
                let r = c
                    .send(
                        c.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                            .header("content-length", "0"),
                    )
                    .await?;
                let loc = location(&r)?;
                let r = c
                    .send(
                        c.req(Method::PATCH, &loc)
                            .header("content-range", "0-9")
                            .body(vec![1u8; 10]),
                    )
                    .await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "first chunk: {}", r.status());
                let loc = location(&r)?;
                let r = c
                    .send(
                        c.req(Method::PATCH, &loc)
                            .header("content-range", "20-29")
                            .body(vec![2u8; 10]),
                    )
                    .await?;
                ensure!(
                    r.status() == StatusCode::RANGE_NOT_SATISFIABLE,
                    "out-of-order chunk: {}",
                    r.status()
                );
                Ok(())
            })
        }),
        ("push.upload-status-returns-204-with-location-and-range", |c| {
            Box::pin(async move {
                let repo = c.repo("push-status");
                let r = c
                    .send(
                        c.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                            .header("content-length", "0"),
                    )
                    .await?;
                let loc = location(&r)?;
                let r = c
                    .send(
                        c.req(Method::PATCH, &loc)
                            .header("content-range", "0-99")
                            .body(vec![3u8; 100]),
                    )
                    .await?;
                let loc = location(&r)?;
                let r = c.get(&loc).await?;
                ensure!(r.status() == StatusCode::NO_CONTENT, "{}", r.status());
                location(&r)?;
                ensure!(
                    header(&r, "range").as_deref() == Some("0-99"),
                    "Range {:?}",
                    header(&r, "range")
                );
                Ok(())
            })
        }),
        ("push.upload-cancel-forgets-the-session", |c| {
            Box::pin(async move {
                let repo = c.repo("push-cancel");
                let r = c
                    .send(c.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/")))
                    .await?;
                let loc = location(&r)?;
                let r = c.send(c.req(Method::DELETE, &loc)).await?;
                ensure!(r.status() == StatusCode::NO_CONTENT, "DELETE upload: {}", r.status());
                expect_error(c.get(&loc).await?, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await
            })
        }),
        ("push.unknown-upload-returns-404-blob-upload-unknown", |c| {
            Box::pin(async move {
                let repo = c.repo("push-unknown-upload");
                c.push_blob(&repo, b"x").await?;
                let r = c
                    .get(&format!(
                        "/v2/{repo}/blobs/uploads/{}",
                        "c0ffee00-0000-4000-8000-000000000000"
                    ))
                    .await?;
                expect_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await
            })
        }),
        ("push.digest-mismatch-returns-400-digest-invalid", |c| {
            Box::pin(async move {
                let repo = c.repo("push-bad-digest");
                let r = c
                    .send(c.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/")))
                    .await?;
                let loc = location(&r)?;
                let wrong = sha256(b"not these bytes");
                let r = c
                    .send(
                        c.req(Method::PUT, &with_query(&loc, &format!("digest={wrong}")))
                            .body(b"these bytes".to_vec()),
                    )
                    .await?;
                expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await?;
                let r = c.get(&format!("/v2/{repo}/blobs/{wrong}")).await?;
                ensure!(
                    r.status() == StatusCode::NOT_FOUND,
                    "a blob was stored under the wrong digest"
                );
                Ok(())
            })
        }),
        ("push.zero-byte-blob", |c| {
            Box::pin(async move {
                let repo = c.repo("push-empty");
                let d = c.push_blob(&repo, b"").await?;
                let r = c.get(&format!("/v2/{repo}/blobs/{d}")).await?;
                ensure!(
                    r.status() == StatusCode::OK && body_of(r).await?.is_empty(),
                    "the empty blob does not pull"
                );
                Ok(())
            })
        }),
        ("push.mount-from-another-repository-returns-201", |c| {
            Box::pin(async move {
                let data = noise(9000, 24);
                let d = c.push_blob(&c.repo("push-mount-src"), &data).await?;
                let dst = c.repo("push-mount-dst");
                let r = c
                    .send(c.req(
                        Method::POST,
                        &format!("/v2/{dst}/blobs/uploads/?mount={d}&from={}", c.repo("push-mount-src")),
                    ))
                    .await?;
                ensure!(r.status() == StatusCode::CREATED, "{}", r.status());
                let blob = location(&r)?;
                ensure!(
                    body_of(c.get(&blob).await?).await? == data,
                    "the mounted blob does not pull from its Location"
                );
                Ok(())
            })
        }),
        ("push.mount-without-from-returns-201-or-202", |c| {
            Box::pin(async move {
                let d = c.push_blob(&c.repo("push-mount-any-src"), &noise(900, 25)).await?;
                let r = c
                    .send(c.req(
                        Method::POST,
                        &format!("/v2/{}/blobs/uploads/?mount={d}", c.repo("push-mount-any")),
                    ))
                    .await?;
                ensure!(
                    matches!(r.status(), StatusCode::CREATED | StatusCode::ACCEPTED),
                    "{}",
                    r.status()
                );
                location(&r)?;
                Ok(())
            })
        }),
        ("push.mount-of-an-unknown-blob-returns-202-and-a-session", |c| {
            Box::pin(async move {
                let src = c.repo("push-mount-none-src");
                c.push_blob(&src, b"x").await?;
                let r = c
                    .send(c.req(
                        Method::POST,
                        &format!(
                            "/v2/{}/blobs/uploads/?mount={}&from={src}",
                            c.repo("push-mount-none"),
                            sha256(b"nowhere")
                        ),
                    ))
                    .await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "{}", r.status());
                location(&r)?;
                Ok(())
            })
        }),
        ("push.sha512-blob-with-digest-algorithm", |c| {
            Box::pin(async move {
                let repo = c.repo("push-sha512");
                let data = noise(3000, 26);
                let d = sha512(&data);
                let r = c
                    .send(c.req(
                        Method::POST,
                        &format!("/v2/{repo}/blobs/uploads/?digest-algorithm=sha512"),
                    ))
                    .await?;
                if r.status() == StatusCode::BAD_REQUEST {
                    return Err(Outcome::Skip("sha512 unsupported (400)".into()));
                }
                ensure!(r.status() == StatusCode::ACCEPTED, "POST: {}", r.status());
                let loc = location(&r)?;
                let r = c
                    .send(
                        c.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
                            .body(data.clone()),
                    )
                    .await?;
                ensure!(r.status() == StatusCode::CREATED, "PUT: {}", r.status());
                let r = c.get(&format!("/v2/{repo}/blobs/{d}")).await?;
                ensure!(
                    r.status() == StatusCode::OK && body_of(r).await? == data,
                    "the sha512 blob does not pull"
                );
                Ok(())
            })
        }),
        ("push.manifest-put-returns-201-with-location-and-digest", |c| {
            Box::pin(async move {
                let repo = c.repo("push-manifest");
                let m = to_bytes(&c.image(&repo, 30, 2).await?);
                let r = c.put_manifest_ok(&repo, "v1", OCI_MANIFEST, &m).await?;
                let loc = location(&r)?;
                ensure!(
                    header(&r, "docker-content-digest").as_deref() == Some(sha256(&m).as_str()),
                    "Docker-Content-Digest {:?}",
                    header(&r, "docker-content-digest")
                );
                ensure!(
                    body_of(c.get(&loc).await?).await? == m,
                    "the Location does not pull the manifest"
                );
                Ok(())
            })
        }),
        ("push.manifest-by-digest", |c| {
            Box::pin(async move {
                let repo = c.repo("push-manifest-digest");
                let m = to_bytes(&c.image(&repo, 31, 1).await?);
                let d = sha256(&m);
                let r = c.put_manifest_ok(&repo, &d, OCI_MANIFEST, &m).await?;
                ensure!(
                    header(&r, "docker-content-digest").as_deref() == Some(d.as_str()),
                    "the digest must equal the client's"
                );
                Ok(())
            })
        }),
        ("push.manifest-by-digest-with-tag-parameters-returns-oci-tag", |c| {
            Box::pin(async move {
                let repo = c.repo("push-tag-params");
                let m = to_bytes(&c.image(&repo, 32, 1).await?);
                let d = sha256(&m);
                let r = c
                    .put_manifest_ok(&repo, &format!("{d}?tag=1.0&tag=latest"), OCI_MANIFEST, &m)
                    .await?;
                let tags: BTreeSet<String> = r
                    .headers()
                    .get_all("oci-tag")
                    .iter()
                    .flat_map(|v| {
                        v.to_str()
                            .unwrap_or("")
                            .split(',')
                            .map(|t| t.trim().to_owned())
                            .collect::<Vec<_>>()
                    })
                    .filter(|t| !t.is_empty())
                    .collect();
                ensure!(
                    tags == BTreeSet::from(["1.0".to_owned(), "latest".to_owned()]),
                    "OCI-Tag headers: {tags:?}"
                );
                for t in ["1.0", "latest"] {
                    ensure!(
                        c.get(&format!("/v2/{repo}/manifests/{t}")).await?.status() == StatusCode::OK,
                        "tag {t} was not created"
                    );
                }
                Ok(())
            })
        }),
        ("push.image-index-and-nested-index", |c| {
            Box::pin(async move {
                let repo = c.repo("push-index");
                let (a, am) = c.pushed_image(&repo, "amd64", 33).await?;
                let (b, bm) = c.pushed_image(&repo, "arm64", 34).await?;
                let index = to_bytes(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": a, "size": am.len(), "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": OCI_MANIFEST, "digest": b, "size": bm.len(), "platform": {"architecture": "arm64", "os": "linux"}}]}));
                c.put_manifest_ok(&repo, "multi", OCI_INDEX, &index).await?;
                let outer = to_bytes(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_INDEX, "digest": sha256(&index), "size": index.len()}]}));
                c.put_manifest_ok(&repo, "nested", OCI_INDEX, &outer).await?;
                for (t, want) in [("multi", &index), ("nested", &outer)] {
                    let r = c.get(&format!("/v2/{repo}/manifests/{t}")).await?;
                    ensure!(
                        header(&r, "content-type").unwrap_or_default().starts_with(OCI_INDEX),
                        "{t}: Content-Type"
                    );
                    ensure!(&body_of(r).await? == want, "{t}: bytes differ");
                }
                Ok(())
            })
        }),
        ("push.docker-schema2-manifest-and-manifest-list", |c| {
            Box::pin(async move {
                let repo = c.repo("push-docker");
                let config = br#"{"architecture":"amd64","os":"linux"}"#;
                let cd = c.push_blob(&repo, config).await?;
                let layer = noise(1000, 35);
                let ld = c.push_blob(&repo, &layer).await?;
                let m = to_bytes(&json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": config.len()},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld, "size": layer.len()}]}));
                c.put_manifest_ok(&repo, "v2s2", DOCKER_MANIFEST, &m).await?;
                let list = to_bytes(&json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
                {"mediaType": DOCKER_MANIFEST, "digest": sha256(&m), "size": m.len(), "platform": {"architecture": "amd64", "os": "linux"}}]}));
                c.put_manifest_ok(&repo, "list", DOCKER_LIST, &list).await?;
                for (t, ct, want) in [("v2s2", DOCKER_MANIFEST, &m), ("list", DOCKER_LIST, &list)] {
                    let r = c
                        .send(
                            c.req(Method::GET, &format!("/v2/{repo}/manifests/{t}"))
                                .header("accept", ct),
                        )
                        .await?;
                    ensure!(
                        header(&r, "content-type").unwrap_or_default().starts_with(ct),
                        "{t}: Content-Type {:?}",
                        header(&r, "content-type")
                    );
                    ensure!(&body_of(r).await? == want, "{t}: bytes differ");
                }
                Ok(())
            })
        }),
        ("push.artifact-with-artifact-type-and-empty-config", |c| {
            Box::pin(async move {
                let repo = c.repo("push-artifact");
                let empty = c.push_blob(&repo, b"{}").await?;
                let data = b"{\"sbom\":true}";
                let ld = c.push_blob(&repo, data).await?;
                let m = to_bytes(
                    &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom.v1",
                "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
                "layers": [{"mediaType": "application/spdx+json", "digest": ld, "size": data.len()}]}),
                );
                c.put_manifest_ok(&repo, "sbom", OCI_MANIFEST, &m).await?;
                ensure!(
                    body_of(c.get(&format!("/v2/{repo}/manifests/sbom")).await?).await? == m,
                    "bytes differ"
                );
                Ok(())
            })
        }),
        ("push.image-with-no-layers", |c| {
            Box::pin(async move {
                let repo = c.repo("push-no-layers");
                let m = to_bytes(&c.image(&repo, 36, 0).await?);
                c.put_manifest_ok(&repo, "v1", OCI_MANIFEST, &m).await?;
                Ok(())
            })
        }),
        ("push.descriptors-with-the-data-field", |c| {
            Box::pin(async move {
                let repo = c.repo("push-data-field");
                let empty = c.push_blob(&repo, b"{}").await?;
                let layer = b"tiny layer";
                let ld = c.push_blob(&repo, layer).await?;
                let m = to_bytes(
                    &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.data",
                "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2, "data": "e30="},
                "layers": [{"mediaType": "application/octet-stream", "digest": ld, "size": layer.len(), "data": "dGlueSBsYXllcg=="}]}),
                );
                c.put_manifest_ok(&repo, "data", OCI_MANIFEST, &m).await?;
                ensure!(
                    body_of(c.get(&format!("/v2/{repo}/manifests/data")).await?).await? == m,
                    "bytes differ"
                );
                Ok(())
            })
        }),
        ("push.non-distributable-layers-that-were-never-pushed", |c| {
            Box::pin(async move {
                let repo = c.repo("push-foreign");
                let mut m = c.image(&repo, 37, 1).await?;
                m["layers"].as_array_mut().unwrap().push(
                    json!({"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                "digest": sha256(b"windows base layer"), "size": 18, "urls": ["https://example.com/base.tar.gz"]}),
                );
                c.put_manifest_ok(&repo, "v1", OCI_MANIFEST, &to_bytes(&m)).await?;
                Ok(())
            })
        }),
        ("push.unknown-fields-are-kept-byte-for-byte", |c| {
            Box::pin(async move {
                let repo = c.repo("push-unknown-fields");
                let config = br#"{"architecture":"amd64","os":"linux","x-vendor":{"anything":[1,2,3]}}"#;
                let cd = c.push_blob(&repo, config).await?;
                let text = format!(
                    "{{\n  \"x-extra\": \"kept\",\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\": \"{OCI_CONFIG}\", \"digest\": \"{cd}\", \"size\": {}, \"x-desc\": 1}},\n  \"layers\": []\n}}\n",
                    config.len()
                );
                let r = c.put_manifest_ok(&repo, "v1", OCI_MANIFEST, text.as_bytes()).await?;
                ensure!(
                    header(&r, "docker-content-digest").as_deref() == Some(sha256(text.as_bytes()).as_str()),
                    "digest of other bytes"
                );
                ensure!(
                    body_of(c.get(&format!("/v2/{repo}/manifests/v1")).await?).await? == text.as_bytes(),
                    "bytes differ"
                );
                Ok(())
            })
        }),
        ("push.manifest-with-subject-returns-oci-subject", |c| {
            Box::pin(async move {
                let repo = c.repo("push-subject");
                let (s, sm) = c.pushed_image(&repo, "v1", 38).await?;
                let mut m = c.image(&repo, 39, 0).await?;
                m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": s, "size": sm.len()});
                let r = c
                    .put_manifest_ok(&repo, &sha256(&to_bytes(&m)), OCI_MANIFEST, &to_bytes(&m))
                    .await?;
                ensure!(
                    header(&r, "oci-subject").as_deref() == Some(s.as_str()),
                    "OCI-Subject {:?}",
                    header(&r, "oci-subject")
                );
                Ok(())
            })
        }),
        ("push.manifest-with-a-subject-that-does-not-exist-is-accepted", |c| {
            Box::pin(async move {
                let repo = c.repo("push-subject-missing");
                let mut m = c.image(&repo, 40, 0).await?;
                m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": sha256(b"pushed later"), "size": 123});
                c.put_manifest_ok(&repo, "early", OCI_MANIFEST, &to_bytes(&m)).await?;
                Ok(())
            })
        }),
        ("push.missing-blobs-are-rejected-only-with-manifest-blob-unknown", |c| {
            Box::pin(async move {
                let repo = c.repo("push-missing-blob");
                let mut m = c.image(&repo, 41, 1).await?;
                m["layers"][0]["digest"] = json!(sha256(b"never pushed layer"));
                let r = c.put_manifest(&repo, "v1", OCI_MANIFEST, &to_bytes(&m)).await?;
                if r.status().is_client_error() {
                    let codes = error_codes(r).await?;
                    ensure!(codes.iter().all(|c| c == "MANIFEST_BLOB_UNKNOWN"), "codes {codes:?}");
                } else {
                    ensure!(r.status() == StatusCode::CREATED, "{}", r.status());
                }
                Ok(())
            })
        }),
        ("push.invalid-manifest-returns-400-manifest-invalid", |c| {
            Box::pin(async move {
                let repo = c.repo("push-invalid");
                c.push_blob(&repo, b"x").await?;
                let r = c.put_manifest(&repo, "v1", OCI_MANIFEST, b"{ this is not json").await?;
                expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await
            })
        }),
        ("push.manifests-of-at-least-4-megabytes-are-supported", |c| {
            Box::pin(async move {
                let repo = c.repo("push-4mb");
                let mut m = c.image(&repo, 42, 0).await?;
                m["annotations"] = json!({"pad": ""});
                let base = to_bytes(&m).len();
                // "at least 4 megabytes": exactly 4,000,000 bytes
                m["annotations"] = json!({"pad": "p".repeat(4_000_000 - base)});
                let b = to_bytes(&m);
                ensure!(b.len() == 4_000_000, "test data {}", b.len());
                c.put_manifest_ok(&repo, "big", OCI_MANIFEST, &b).await?;
                Ok(())
            })
        }),
        ("push.manifest-over-the-limit-returns-413", |c| {
            Box::pin(async move {
                let repo = c.repo("push-413");
                let mut m = c.image(&repo, 43, 0).await?;
                m["annotations"] = json!({"pad": "p".repeat(32 << 20)});
                let r = c.put_manifest(&repo, "huge", OCI_MANIFEST, &to_bytes(&m)).await?;
                ensure!(
                    r.status() == StatusCode::PAYLOAD_TOO_LARGE,
                    "a 32 MiB manifest: {}",
                    r.status()
                );
                Ok(())
            })
        }),
    ]
}

// ---------------------------------------------------------------- content discovery

async fn list_page(c: &Ctx, path: &str) -> Result<(Vec<String>, Option<String>), Outcome> {
    let r = c.get(path).await?;
    ensure!(r.status() == StatusCode::OK, "{path}: {}", r.status());
    let link = header(&r, "link");
    let v: Value = serde_json::from_slice(&body_of(r).await?).map_err(|e| Outcome::Fail(e.to_string()))?;
    let tags = v["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok((tags, link))
}

async fn referrers(
    c: &Ctx,
    repo: &str,
    d: &str,
    filter: Option<&str>,
) -> Result<(reqwest::header::HeaderMap, Value), Outcome> {
    let q = filter.map(|f| format!("?artifactType={f}")).unwrap_or_default();
    let r = c.get(&format!("/v2/{repo}/referrers/{d}{q}")).await?;
    ensure!(r.status() == StatusCode::OK, "referrers: {}", r.status());
    let headers = r.headers().clone();
    let v: Value = serde_json::from_slice(&body_of(r).await?).map_err(|e| Outcome::Fail(e.to_string()))?;
    Ok((headers, v))
}

fn hdr(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn referrer_setup(c: &Ctx, repo: &str) -> Result<(String, Vec<String>), Outcome> {
    let (s, sm) = c.pushed_image(repo, "subject", 50).await?;
    let desc = json!({"mediaType": OCI_MANIFEST, "digest": s, "size": sm.len()});
    let empty = c.push_blob(repo, b"{}").await?;
    let mut out = Vec::new();
    for (i, t) in ["application/vnd.example.sbom", "application/vnd.example.sig"]
        .iter()
        .enumerate()
    {
        let m = to_bytes(
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": t,
            "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2}, "layers": [],
            "subject": desc, "annotations": {"org.example.n": i.to_string()}}),
        );
        c.put_manifest_ok(repo, &sha256(&m), OCI_MANIFEST, &m).await?;
        out.push(sha256(&m));
    }
    Ok((s, out))
}

fn discovery_checks() -> Vec<(&'static str, CheckFn)> {
    vec![
        ("discovery.tags-list-returns-every-tag-sorted", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-tags");
                let (_, m) = c.pushed_image(&repo, "b", 60).await?;
                for t in ["a", "c", "B", "1.0"] {
                    c.put_manifest_ok(&repo, t, OCI_MANIFEST, &m).await?;
                }
                let (tags, _) = list_page(c, &format!("/v2/{repo}/tags/list")).await?;
                ensure!(tags == ["1.0", "B", "a", "b", "c"], "tags {tags:?}");
                Ok(())
            })
        }),
        ("discovery.tags-list-n-limits-and-link-points-to-the-next-page", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-tags-n");
                let (_, m) = c.pushed_image(&repo, "t1", 61).await?;
                for t in ["t2", "t3", "t4", "t5"] {
                    c.put_manifest_ok(&repo, t, OCI_MANIFEST, &m).await?;
                }
                let (tags, link) = list_page(c, &format!("/v2/{repo}/tags/list?n=2")).await?;
                ensure!(tags == ["t1", "t2"], "first page {tags:?}");
                let link = link.ok_or_else(|| Outcome::Fail("no Link header while more tags remain".into()))?;
                ensure!(link.contains("rel=\"next\""), "Link {link}");
                let next = &link[link.find('<').unwrap_or(0) + 1..link.find('>').unwrap_or(0)];
                let (tags, _) = list_page(c, next).await?;
                ensure!(tags == ["t3", "t4"], "second page (from Link) {tags:?}");
                Ok(())
            })
        }),
        ("discovery.tags-list-last-returns-tags-after-it", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-tags-last");
                let (_, m) = c.pushed_image(&repo, "a", 62).await?;
                for t in ["b", "c", "d"] {
                    c.put_manifest_ok(&repo, t, OCI_MANIFEST, &m).await?;
                }
                let (tags, _) = list_page(c, &format!("/v2/{repo}/tags/list?n=2&last=b")).await?;
                ensure!(tags == ["c", "d"], "{tags:?}");
                Ok(())
            })
        }),
        ("discovery.referrers-list-manifests-with-that-subject", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-referrers");
                let (s, refs) = referrer_setup(c, &repo).await?;
                let (h, v) = referrers(c, &repo, &s, None).await?;
                ensure!(
                    hdr(&h, "content-type").unwrap_or_default().starts_with(OCI_INDEX),
                    "Content-Type {:?}",
                    hdr(&h, "content-type")
                );
                ensure!(
                    v["schemaVersion"] == 2 && v["mediaType"] == OCI_INDEX,
                    "not an image index: {v}"
                );
                let listed: BTreeSet<String> = v["manifests"]
                    .as_array()
                    .unwrap_or(&vec![])
                    .iter()
                    .filter_map(|m| m["digest"].as_str().map(str::to_owned))
                    .collect();
                ensure!(
                    listed == refs.iter().cloned().collect(),
                    "listed {listed:?}, pushed {refs:?}"
                );
                for m in v["manifests"].as_array().unwrap() {
                    ensure!(m["artifactType"].is_string(), "descriptor without artifactType: {m}");
                    ensure!(
                        m["annotations"]["org.example.n"].is_string(),
                        "descriptor without the manifest's annotations: {m}"
                    );
                    ensure!(m["mediaType"] == OCI_MANIFEST && m["size"].is_u64(), "descriptor {m}");
                }
                Ok(())
            })
        }),
        (
            "discovery.referrers-artifact-type-filter-sets-oci-filters-applied",
            |c| {
                Box::pin(async move {
                    let repo = c.repo("disc-referrers-filter");
                    let (s, refs) = referrer_setup(c, &repo).await?;
                    let (h, v) = referrers(c, &repo, &s, Some("application/vnd.example.sig")).await?;
                    ensure!(
                        hdr(&h, "oci-filters-applied").as_deref() == Some("artifactType"),
                        "OCI-Filters-Applied {:?}",
                        hdr(&h, "oci-filters-applied")
                    );
                    let listed: Vec<&str> = v["manifests"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|m| m["digest"].as_str())
                        .collect();
                    ensure!(listed == [refs[1].as_str()], "filtered {listed:?}");
                    Ok(())
                })
            },
        ),
        (
            "discovery.referrers-of-an-image-without-artifact-type-use-the-config-type",
            |c| {
                Box::pin(async move {
                    let repo = c.repo("disc-referrers-config");
                    let (s, sm) = c.pushed_image(&repo, "subject", 63).await?;
                    let mut m = c.image(&repo, 64, 0).await?;
                    m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": s, "size": sm.len()});
                    let b = to_bytes(&m);
                    c.put_manifest_ok(&repo, &sha256(&b), OCI_MANIFEST, &b).await?;
                    let (_, v) = referrers(c, &repo, &s, None).await?;
                    ensure!(v["manifests"][0]["artifactType"] == OCI_CONFIG, "{v}");
                    Ok(())
                })
            },
        ),
        ("discovery.referrers-with-no-match-return-an-empty-index", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-referrers-empty");
                let (s, _) = c.pushed_image(&repo, "v1", 65).await?;
                let (_, v) = referrers(c, &repo, &s, None).await?;
                ensure!(v["manifests"].as_array().is_some_and(|a| a.is_empty()), "{v}");
                Ok(())
            })
        }),
        ("discovery.referrers-with-an-invalid-digest-return-400", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-referrers-400");
                c.pushed_image(&repo, "v1", 66).await?;
                let r = c.get(&format!("/v2/{repo}/referrers/sha256:not-a-digest")).await?;
                ensure!(r.status() == StatusCode::BAD_REQUEST, "{}", r.status());
                Ok(())
            })
        }),
    ]
}

// ---------------------------------------------------------------- content management

fn management_checks() -> Vec<(&'static str, CheckFn)> {
    vec![
        ("management.delete-tag-returns-202-and-the-tag-is-gone", |c| {
            Box::pin(async move {
                let repo = c.repo("mgmt-tag");
                let (d, m) = c.pushed_image(&repo, "gone", 70).await?;
                c.put_manifest_ok(&repo, "stays", OCI_MANIFEST, &m).await?;
                let r = c.delete(&format!("/v2/{repo}/manifests/gone")).await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "{}", r.status());
                ensure!(
                    c.get(&format!("/v2/{repo}/manifests/gone")).await?.status() == StatusCode::NOT_FOUND,
                    "the tag still resolves"
                );
                ensure!(
                    c.get(&format!("/v2/{repo}/manifests/{d}")).await?.status() == StatusCode::OK,
                    "the manifest went with the tag"
                );
                Ok(())
            })
        }),
        (
            "management.delete-manifest-returns-202-and-it-and-its-tags-are-gone",
            |c| {
                Box::pin(async move {
                    let repo = c.repo("mgmt-manifest");
                    let (d, _) = c.pushed_image(&repo, "v1", 71).await?;
                    let r = c.delete(&format!("/v2/{repo}/manifests/{d}")).await?;
                    ensure!(r.status() == StatusCode::ACCEPTED, "{}", r.status());
                    ensure!(
                        c.get(&format!("/v2/{repo}/manifests/{d}")).await?.status() == StatusCode::NOT_FOUND,
                        "the manifest still pulls"
                    );
                    ensure!(
                        c.get(&format!("/v2/{repo}/manifests/v1")).await?.status() == StatusCode::NOT_FOUND,
                        "its tag still resolves"
                    );
                    Ok(())
                })
            },
        ),
        ("management.delete-blob-returns-202-and-it-is-gone", |c| {
            Box::pin(async move {
                let repo = c.repo("mgmt-blob");
                let d = c.push_blob(&repo, &noise(600, 72)).await?;
                let r = c.delete(&format!("/v2/{repo}/blobs/{d}")).await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "{}", r.status());
                ensure!(
                    c.get(&format!("/v2/{repo}/blobs/{d}")).await?.status() == StatusCode::NOT_FOUND,
                    "the blob still pulls"
                );
                Ok(())
            })
        }),
        ("management.delete-unknown-blob-returns-404", |c| {
            Box::pin(async move {
                let repo = c.repo("mgmt-blob-unknown");
                c.push_blob(&repo, b"x").await?;
                let r = c.delete(&format!("/v2/{repo}/blobs/{}", sha256(b"never"))).await?;
                ensure!(r.status() == StatusCode::NOT_FOUND, "{}", r.status());
                Ok(())
            })
        }),
        ("management.delete-unknown-manifest-returns-404", |c| {
            Box::pin(async move {
                let repo = c.repo("mgmt-manifest-unknown");
                c.pushed_image(&repo, "v1", 73).await?;
                let r = c.delete(&format!("/v2/{repo}/manifests/{}", sha256(b"never"))).await?;
                ensure!(r.status() == StatusCode::NOT_FOUND, "{}", r.status());
                Ok(())
            })
        }),
        ("management.deleted-referrers-leave-the-referrers-list", |c| {
            Box::pin(async move {
                let repo = c.repo("mgmt-referrers");
                let (s, refs) = referrer_setup(c, &repo).await?;
                let r = c.delete(&format!("/v2/{repo}/manifests/{}", refs[0])).await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "{}", r.status());
                let (_, v) = referrers(c, &repo, &s, None).await?;
                let listed: Vec<&str> = v["manifests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|m| m["digest"].as_str())
                    .collect();
                ensure!(listed == [refs[1].as_str()], "after delete: {listed:?}");
                Ok(())
            })
        }),
    ]
}

// ---------------------------------------------------------------- runner

struct Args {
    url: Option<String>,
    user: Option<(String, String)>,
    known: Option<String>,
    junit: Option<String>,
    name: String,
}

fn args() -> Args {
    let mut a = Args {
        url: std::env::var("CONFORMANCE_URL").ok(),
        user: None,
        known: None,
        junit: None,
        name: String::new(),
    };
    let (mut user, mut pass) = (
        std::env::var("CONFORMANCE_USER").ok(),
        std::env::var("CONFORMANCE_PASSWORD").ok(),
    );
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--url" => a.url = it.next(),
            "--user" => user = it.next(),
            "--password" => pass = it.next(),
            "--known-failures" => a.known = it.next(),
            "--junit" => a.junit = it.next(),
            "--name" => a.name = it.next().unwrap_or_default(),
            _ => {} // cargo test passes its own flags (e.g. --nocapture); ignore them
        }
    }
    if let (Some(u), Some(p)) = (user, pass) {
        a.user = Some((u, p));
    }
    if a.name.is_empty() {
        a.name = if a.url.is_some() {
            "registry".into()
        } else {
            "wharf".into()
        };
    }
    a
}

/// Start Wharf (deletes enabled) on a free port with a temporary store.
fn start_wharf(dir: &std::path::Path) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("serve")
        .env("WHARF_HTTP_ADDR", &addr)
        .env("WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY", dir)
        .env("WHARF_STORAGE_DELETE_ENABLED", "true")
        .env("WHARF_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wharf");
    for _ in 0..200 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    (child, format!("http://{addr}"))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = match &a.url {
        Some(u) => (None, u.trim_end_matches('/').to_owned()),
        None => {
            let (c, b) = start_wharf(dir.path());
            (Some(c), b)
        }
    };
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let ctx = Ctx {
        base: base.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
        user: a.user.clone(),
        ns: format!("conformance/{run}"),
    };
    let workflows: [(&str, Vec<(&str, CheckFn)>); 4] = [
        ("pull", pull_checks()),
        ("push", push_checks()),
        ("content discovery", discovery_checks()),
        ("content management", management_checks()),
    ];
    println!("OCI distribution-spec conformance against {base} ({})\n", a.name);
    let mut results: Vec<(&str, &str, Outcome)> = Vec::new();
    for (workflow, checks) in workflows {
        for (name, f) in checks {
            let outcome = match tokio::time::timeout(Duration::from_secs(120), f(&ctx)).await {
                Ok(Ok(())) => Outcome::Pass,
                Ok(Err(o)) => o,
                Err(_) => Outcome::Fail("timed out".into()),
            };
            results.push((workflow, name, outcome));
        }
    }
    if let Some(c) = child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }

    // table per workflow
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut current = "";
    for (workflow, name, outcome) in &results {
        if *workflow != current {
            current = workflow;
            println!("{workflow}");
        }
        match outcome {
            Outcome::Pass => println!("  pass  {name}"),
            Outcome::Skip(why) => println!("  skip  {name}  ({why})"),
            Outcome::Fail(why) => {
                println!("  FAIL  {name}\n          {why}");
                failed.insert(name.to_string());
            }
        }
    }
    println!("\n{:<20} {:>6} {:>6} {:>7}", "workflow", "passed", "failed", "skipped");
    let (mut tp, mut tf, mut ts) = (0, 0, 0);
    for w in ["pull", "push", "content discovery", "content management"] {
        let of = |k: u8| {
            results
                .iter()
                .filter(|(wf, _, o)| {
                    *wf == w
                        && matches!(
                            (k, o),
                            (0, Outcome::Pass) | (1, Outcome::Fail(_)) | (2, Outcome::Skip(_))
                        )
                })
                .count()
        };
        let (p, f, s) = (of(0), of(1), of(2));
        (tp, tf, ts) = (tp + p, tf + f, ts + s);
        println!("{w:<20} {p:>6} {f:>6} {s:>7}");
    }
    println!("{:<20} {tp:>6} {tf:>6} {ts:>7}", "total");

    if let Some(path) = &a.junit {
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"oci-conformance-{}\">\n",
            xml_escape(&a.name)
        );
        for w in ["pull", "push", "content discovery", "content management"] {
            let cases: Vec<_> = results.iter().filter(|(wf, _, _)| *wf == w).collect();
            let nf = cases.iter().filter(|c| matches!(c.2, Outcome::Fail(_))).count();
            let ns = cases.iter().filter(|c| matches!(c.2, Outcome::Skip(_))).count();
            xml += &format!(
                "  <testsuite name=\"{w}\" tests=\"{}\" failures=\"{nf}\" skipped=\"{ns}\">\n",
                cases.len()
            );
            for (_, name, o) in cases {
                xml += &format!("    <testcase classname=\"{w}\" name=\"{name}\">");
                match o {
                    Outcome::Pass => {}
                    Outcome::Fail(why) => xml += &format!("<failure message=\"{}\"/>", xml_escape(why)),
                    Outcome::Skip(why) => xml += &format!("<skipped message=\"{}\"/>", xml_escape(why)),
                }
                xml += "</testcase>\n";
            }
            xml += "  </testsuite>\n";
        }
        xml += "</testsuites>\n";
        std::fs::write(path, xml).expect("write JUnit report");
    }

    let ok = match &a.known {
        None => tf == 0 && (a.url.is_some() || ts == 0),
        Some(file) => {
            let text = std::fs::read_to_string(file).expect("read known failures");
            let known: BTreeSet<String> = text
                .lines()
                .map(|l| l.split('#').next().unwrap().trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect();
            let new: Vec<_> = failed.difference(&known).collect();
            let fixed: Vec<_> = known.difference(&failed).collect();
            for n in &new {
                println!("new failure (not in {file}): {n}");
            }
            for n in &fixed {
                println!("listed in {file} but passed: {n} (update the file)");
            }
            new.is_empty() && fixed.is_empty()
        }
    };
    println!("\n{tp} passed, {tf} failed, {ts} skipped");
    std::process::exit(if ok { 0 } else { 1 });
}
