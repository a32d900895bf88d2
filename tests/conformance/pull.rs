//! Pull: checks named `pull.<requirement>`, written from the spec's sentences.

use super::*;

pub fn checks() -> Vec<(&'static str, CheckFn)> {
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
        (
            "pull.manifest-by-a-reference-neither-tag-nor-digest-returns-404-manifest-unknown",
            |c| {
                Box::pin(async move {
                    // The OCI conformance suite's `.INVALID_MANIFEST_NAME`: no manifest can have such a
                    // reference, so it is unknown (only a PUT is told its tag is invalid).
                    let repo = c.repo("pull-invalid-ref");
                    c.pushed_image(&repo, "v1", 7).await?;
                    for reference in [".INVALID_MANIFEST_NAME", "sha256:not-hex", "-dash-first"] {
                        let path = format!("/v2/{repo}/manifests/{reference}");
                        expect_error(c.get(&path).await?, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await?;
                        let r = c.send(c.req(Method::HEAD, &path)).await?;
                        ensure!(r.status() == StatusCode::NOT_FOUND, "HEAD {reference}: {}", r.status());
                    }
                    Ok(())
                })
            },
        ),
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
        ("pull.blob-suffix-and-open-ranges-return-206", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-range-forms");
                let data = noise(5000, 12);
                let d = c.push_blob(&repo, &data).await?;
                for (range, want, cr) in [
                    ("bytes=-100", &data[4900..], "bytes 4900-4999/5000"),
                    ("bytes=4000-", &data[4000..], "bytes 4000-4999/5000"),
                    ("bytes=4990-9999", &data[4990..], "bytes 4990-4999/5000"),
                ] {
                    let r = c
                        .send(
                            c.req(Method::GET, &format!("/v2/{repo}/blobs/{d}"))
                                .header("range", range),
                        )
                        .await?;
                    ensure!(r.status() == StatusCode::PARTIAL_CONTENT, "{range}: {}", r.status());
                    ensure!(
                        header(&r, "content-range").as_deref() == Some(cr),
                        "{range}: Content-Range {:?}",
                        header(&r, "content-range")
                    );
                    ensure!(body_of(r).await? == want, "{range}: bytes differ");
                }
                Ok(())
            })
        }),
        ("pull.blob-get-content-length-is-the-blob-size", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-blob-length");
                let data = noise(12_345, 13);
                let d = c.push_blob(&repo, &data).await?;
                let r = c.get(&format!("/v2/{repo}/blobs/{d}")).await?;
                ensure!(r.status() == StatusCode::OK, "{}", r.status());
                ensure!(
                    header(&r, "content-length").as_deref() == Some("12345"),
                    "Content-Length {:?}",
                    header(&r, "content-length")
                );
                Ok(())
            })
        }),
        ("pull.manifest-get-content-length-and-etag-or-digest", |c| {
            Box::pin(async move {
                let repo = c.repo("pull-manifest-length");
                let (d, m) = c.pushed_image(&repo, "v1", 14).await?;
                let r = c.get(&format!("/v2/{repo}/manifests/{d}")).await?;
                ensure!(
                    header(&r, "content-length") == Some(m.len().to_string()),
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
        ("pull.manifest-by-a-digest-of-another-repository-returns-404", |c| {
            Box::pin(async move {
                let (d, _) = c.pushed_image(&c.repo("pull-ns-a"), "v1", 15).await?;
                c.pushed_image(&c.repo("pull-ns-b"), "v1", 16).await?;
                let r = c.get(&format!("/v2/{}/manifests/{d}", c.repo("pull-ns-b"))).await?;
                expect_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await
            })
        }),
    ]
}
