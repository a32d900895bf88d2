//! Push: checks named `push.<requirement>`, written from the spec's sentences.

use super::*;

pub fn checks() -> Vec<(&'static str, CheckFn)> {
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
                let loc = c.start_upload(&repo).await?;
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
                let loc = c.start_upload(&repo).await?;
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
                let loc = c.start_upload(&repo).await?;
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
                let got = header(&r, "oci-subject");
                if got.is_none() {
                    // required of "a registry implementation that supports the referrers API"
                    super::discovery::referrers(c, &repo, &s, None).await?;
                }
                ensure!(got.as_deref() == Some(s.as_str()), "OCI-Subject {got:?}");
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
        (
            "push.streamed-patch-without-content-range-returns-202-with-range",
            |c| {
                Box::pin(async move {
                    let repo = c.repo("push-streamed");
                    let data = noise(200_000, 44);
                    let loc = c.start_upload(&repo).await?;
                    let r = c.patch(&loc, None, &data[..120_000]).await?;
                    ensure!(r.status() == StatusCode::ACCEPTED, "first PATCH: {}", r.status());
                    ensure!(
                        header(&r, "range").as_deref() == Some("0-119999"),
                        "Range {:?}",
                        header(&r, "range")
                    );
                    let r = c.patch(&location(&r)?, None, &data[120_000..]).await?;
                    ensure!(r.status() == StatusCode::ACCEPTED, "second PATCH: {}", r.status());
                    ensure!(
                        header(&r, "range").as_deref() == Some("0-199999"),
                        "Range {:?}",
                        header(&r, "range")
                    );
                    let d = sha256(&data);
                    let r = c
                        .send(c.req(Method::PUT, &with_query(&location(&r)?, &format!("digest={d}"))))
                        .await?;
                    ensure!(r.status() == StatusCode::CREATED, "closing PUT: {}", r.status());
                    ensure!(
                        body_of(c.get(&format!("/v2/{repo}/blobs/{d}")).await?).await? == data,
                        "bytes differ"
                    );
                    Ok(())
                })
            },
        ),
        ("push.first-chunk-not-starting-at-zero-returns-416", |c| {
            Box::pin(async move {
                // "The first chunk's range MUST begin with 0"
                let loc = c.start_upload(&c.repo("push-first-chunk")).await?;
                let r = c.patch(&loc, Some("5-9".into()), b"12345").await?;
                ensure!(r.status() == StatusCode::RANGE_NOT_SATISFIABLE, "{}", r.status());
                Ok(())
            })
        }),
        ("push.final-chunk-out-of-order-in-the-closing-put-returns-416", |c| {
            Box::pin(async move {
                let repo = c.repo("push-final-416");
                let data = noise(30, 45);
                let loc = c.start_upload(&repo).await?;
                let r = c.patch(&loc, Some("0-9".into()), &data[..10]).await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "first chunk: {}", r.status());
                let d = sha256(&data);
                let r = c
                    .send(
                        c.req(Method::PUT, &with_query(&location(&r)?, &format!("digest={d}")))
                            .header("content-type", "application/octet-stream")
                            .header("content-range", "20-29")
                            .body(data[20..].to_vec()),
                    )
                    .await?;
                ensure!(r.status() == StatusCode::RANGE_NOT_SATISFIABLE, "{}", r.status());
                let r = c.get(&format!("/v2/{repo}/blobs/{d}")).await?;
                ensure!(r.status() == StatusCode::NOT_FOUND, "a blob was stored: {}", r.status());
                Ok(())
            })
        }),
        ("push.upload-status-after-416-gives-the-offset-to-resume-from", |c| {
            Box::pin(async move {
                let repo = c.repo("push-resume");
                let data = noise(20, 46);
                let loc = c.start_upload(&repo).await?;
                let r = c.patch(&loc, Some("0-9".into()), &data[..10]).await?;
                let loc = location(&r)?;
                let r = c.patch(&loc, Some("15-19".into()), &data[15..]).await?;
                ensure!(
                    r.status() == StatusCode::RANGE_NOT_SATISFIABLE,
                    "out of order: {}",
                    r.status()
                );
                let r = c.get(&loc).await?;
                ensure!(r.status() == StatusCode::NO_CONTENT, "status: {}", r.status());
                ensure!(
                    header(&r, "range").as_deref() == Some("0-9"),
                    "Range {:?}",
                    header(&r, "range")
                );
                let r = c.patch(&location(&r)?, Some("10-19".into()), &data[10..]).await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "resumed chunk: {}", r.status());
                let d = sha256(&data);
                let r = c
                    .send(c.req(Method::PUT, &with_query(&location(&r)?, &format!("digest={d}"))))
                    .await?;
                ensure!(r.status() == StatusCode::CREATED, "closing PUT: {}", r.status());
                ensure!(
                    body_of(c.get(&format!("/v2/{repo}/blobs/{d}")).await?).await? == data,
                    "bytes differ"
                );
                Ok(())
            })
        }),
        ("push.chunk-shorter-than-its-content-range-is-refused", |c| {
            Box::pin(async move {
                // SIZE_INVALID: "provided length did not match content length"
                let repo = c.repo("push-size-invalid");
                let loc = c.start_upload(&repo).await?;
                let r = c.patch(&loc, Some("0-99".into()), b"12345").await?;
                ensure!(
                    r.status() == StatusCode::BAD_REQUEST || r.status() == StatusCode::RANGE_NOT_SATISFIABLE,
                    "a 5-byte chunk announced as 0-99: {}",
                    r.status()
                );
                if r.status() == StatusCode::BAD_REQUEST {
                    let codes = error_codes(r).await?;
                    ensure!(
                        codes.iter().any(|c| c == "SIZE_INVALID" || c == "BLOB_UPLOAD_INVALID"),
                        "{codes:?}"
                    );
                }
                Ok(())
            })
        }),
        ("push.closing-put-without-a-digest-returns-400", |c| {
            Box::pin(async move {
                let repo = c.repo("push-no-digest");
                let loc = c.start_upload(&repo).await?;
                let r = c
                    .send(
                        c.req(Method::PUT, &loc)
                            .header("content-type", "application/octet-stream")
                            .body(b"abc".to_vec()),
                    )
                    .await?;
                ensure!(r.status() == StatusCode::BAD_REQUEST, "{}", r.status());
                let codes = error_codes(r).await?;
                ensure!(
                    codes
                        .iter()
                        .any(|c| c == "DIGEST_INVALID" || c == "BLOB_UPLOAD_INVALID"),
                    "{codes:?}"
                );
                Ok(())
            })
        }),
        ("push.malformed-or-unsupported-digest-returns-400", |c| {
            Box::pin(async move {
                // main: "if the client provided digest is invalid or uses an unsupported algorithm,
                // the registry SHOULD respond with a response code 400 Bad Request"
                let repo = c.repo("push-malformed-digest");
                for d in ["sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256:NOTHEX"] {
                    let loc = c.start_upload(&repo).await?;
                    let r = c
                        .send(
                            c.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
                                .header("content-type", "application/octet-stream")
                                .body(Vec::new()),
                        )
                        .await?;
                    ensure!(r.status() == StatusCode::BAD_REQUEST, "digest={d}: {}", r.status());
                    error_codes(r).await?;
                }
                Ok(())
            })
        }),
        ("push.manifest-digest-in-the-url-must-match-the-body", |c| {
            Box::pin(async move {
                let repo = c.repo("push-manifest-digest");
                let m = to_bytes(&c.image(&repo, 47, 0).await?);
                let wrong = sha256(b"some other manifest");
                let r = c.put_manifest(&repo, &wrong, OCI_MANIFEST, &m).await?;
                expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await?;
                let r = c.get(&format!("/v2/{repo}/manifests/{wrong}")).await?;
                ensure!(
                    r.status() == StatusCode::NOT_FOUND,
                    "stored under the wrong digest: {}",
                    r.status()
                );
                Ok(())
            })
        }),
        ("push.invalid-repository-name-returns-400-name-invalid", |c| {
            Box::pin(async move {
                // <name> "MUST match the following regular expression"; code-8 NAME_INVALID
                for name in [
                    format!("{}/UpperCase", c.ns),
                    format!("{}/trailing-", c.ns),
                    format!("{}//double", c.ns),
                ] {
                    let r = c
                        .send(
                            c.req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
                                .header("content-length", "0"),
                        )
                        .await?;
                    expect_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID")
                        .await
                        .map_err(|e| match e {
                            Outcome::Fail(why) => Outcome::Fail(format!("{name}: {why}")),
                            o => o,
                        })?;
                }
                Ok(())
            })
        }),
        ("push.invalid-tag-is-refused-with-400", |c| {
            Box::pin(async move {
                // a tag "MUST be at most 128 characters in length and MUST match" [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
                let repo = c.repo("push-bad-tag");
                let m = to_bytes(&c.image(&repo, 48, 0).await?);
                for tag in ["-leading-dash".to_owned(), ".dot".to_owned(), "t".repeat(129)] {
                    let r = c.put_manifest(&repo, &tag, OCI_MANIFEST, &m).await?;
                    ensure!(r.status() == StatusCode::BAD_REQUEST, "tag {tag:.20}: {}", r.status());
                    error_codes(r).await?;
                }
                let longest = "t".repeat(128);
                c.put_manifest_ok(&repo, &longest, OCI_MANIFEST, &m).await?;
                Ok(())
            })
        }),
        ("push.manifest-content-type-parameters-are-ignored", |c| {
            Box::pin(async move {
                // "The registry SHOULD ignore parameters on the Content-Type header"
                let repo = c.repo("push-ct-params");
                let m = to_bytes(&c.image(&repo, 49, 0).await?);
                c.put_manifest_ok(&repo, "v1", &format!("{OCI_MANIFEST}; charset=utf-8"), &m)
                    .await?;
                let r = c.get(&format!("/v2/{repo}/manifests/v1")).await?;
                let ct = header(&r, "content-type").unwrap_or_default();
                ensure!(
                    ct.split(';').next().unwrap_or("").trim() == OCI_MANIFEST,
                    "Content-Type {ct:?}"
                );
                ensure!(body_of(r).await? == m, "bytes differ");
                Ok(())
            })
        }),
        ("push.manifest-by-sha512-digest", |c| {
            Box::pin(async move {
                // a manifest addressed by a digest of another registered algorithm
                let repo = c.repo("push-manifest-sha512");
                let m = to_bytes(&c.image(&repo, 51, 0).await?);
                let d = sha512(&m);
                let r = c.put_manifest_ok(&repo, &d, OCI_MANIFEST, &m).await?;
                ensure!(
                    header(&r, "docker-content-digest").as_deref() == Some(d.as_str()),
                    "Docker-Content-Digest {:?}",
                    header(&r, "docker-content-digest")
                );
                let r = c.get(&format!("/v2/{repo}/manifests/{d}")).await?;
                ensure!(r.status() == StatusCode::OK, "GET by sha512: {}", r.status());
                ensure!(body_of(r).await? == m, "bytes differ");
                Ok(())
            })
        }),
    ]
}
