//! Content discovery: checks named `discovery.<requirement>`, written from the spec's sentences.

use super::*;

pub async fn list_page(c: &Ctx, path: &str) -> Result<(Vec<String>, Option<String>), Outcome> {
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

pub async fn referrers(
    c: &Ctx,
    repo: &str,
    d: &str,
    filter: Option<&str>,
) -> Result<(reqwest::header::HeaderMap, Value), Outcome> {
    let q = filter.map(|f| format!("?artifactType={f}")).unwrap_or_default();
    let r = c.get(&format!("/v2/{repo}/referrers/{d}{q}")).await?;
    if r.status() == StatusCode::NOT_FOUND {
        // "If the registry supports the referrers API, the registry MUST NOT return a 404":
        // a 404 is how a registry says it has none.
        return Err(Outcome::Skip("referrers API unsupported (404)".into()));
    }
    ensure!(r.status() == StatusCode::OK, "referrers: {}", r.status());
    let headers = r.headers().clone();
    let v: Value = serde_json::from_slice(&body_of(r).await?).map_err(|e| Outcome::Fail(e.to_string()))?;
    Ok((headers, v))
}

pub fn hdr(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

pub async fn referrer_setup(c: &Ctx, repo: &str) -> Result<(String, Vec<String>), Outcome> {
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

pub fn checks() -> Vec<(&'static str, CheckFn)> {
    vec![
        ("discovery.tags-list-returns-every-tag-sorted", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-tags");
                // "lexical order (i.e. case-insensitive alphanumeric order)": tags whose order
                // does not depend on how case is folded
                let (_, m) = c.pushed_image(&repo, "b", 60).await?;
                for t in ["a", "c", "latest", "1.0", "b.1", "b-1"] {
                    c.put_manifest_ok(&repo, t, OCI_MANIFEST, &m).await?;
                }
                let (tags, _) = list_page(c, &format!("/v2/{repo}/tags/list")).await?;
                ensure!(tags == ["1.0", "a", "b", "b-1", "b.1", "c", "latest"], "tags {tags:?}");
                Ok(())
            })
        }),
        (
            "discovery.tags-list-n-returns-n-tags-and-link-or-last-reaches-the-rest",
            |c| {
                Box::pin(async move {
                    let repo = c.repo("disc-tags-n");
                    let (_, m) = c.pushed_image(&repo, "t1", 61).await?;
                    for t in ["t2", "t3", "t4", "t5"] {
                        c.put_manifest_ok(&repo, t, OCI_MANIFEST, &m).await?;
                    }
                    // "Otherwise, the response MUST include <int> results"; a Link, if any, is rel="next"
                    let (tags, link) = list_page(c, &format!("/v2/{repo}/tags/list?n=2")).await?;
                    ensure!(tags == ["t1", "t2"], "first page {tags:?}");
                    let next = match link {
                        Some(link) => {
                            ensure!(link.contains("rel=\"next\""), "Link {link}");
                            let (a, b) = (link.find('<'), link.find('>'));
                            ensure!(matches!((a, b), (Some(a), Some(b)) if a < b), "Link {link}");
                            link[a.unwrap() + 1..b.unwrap()].to_owned()
                        }
                        None => format!("/v2/{repo}/tags/list?n=2&last=t2"),
                    };
                    let (tags, _) = list_page(c, &next).await?;
                    ensure!(tags == ["t3", "t4"], "second page ({next}) {tags:?}");
                    Ok(())
                })
            },
        ),
        ("discovery.tags-list-n-zero-returns-an-empty-list-and-no-link", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-tags-n0");
                c.pushed_image(&repo, "v1", 67).await?;
                let (tags, link) = list_page(c, &format!("/v2/{repo}/tags/list?n=0")).await?;
                ensure!(tags.is_empty(), "n=0 listed {tags:?}");
                ensure!(link.is_none(), "n=0 sent Link {link:?}");
                Ok(())
            })
        }),
        (
            "discovery.tags-list-n-beyond-the-count-returns-every-tag-and-no-link",
            |c| {
                Box::pin(async move {
                    let repo = c.repo("disc-tags-nbig");
                    let (_, m) = c.pushed_image(&repo, "a", 68).await?;
                    c.put_manifest_ok(&repo, "b", OCI_MANIFEST, &m).await?;
                    let (tags, link) = list_page(c, &format!("/v2/{repo}/tags/list?n=1000")).await?;
                    ensure!(tags == ["a", "b"], "{tags:?}");
                    ensure!(link.is_none(), "Link {link:?} with no more tags");
                    Ok(())
                })
            },
        ),
        ("discovery.tags-list-last-at-or-beyond-the-end-returns-no-tags", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-tags-end");
                let (_, m) = c.pushed_image(&repo, "a", 69).await?;
                c.put_manifest_ok(&repo, "b", OCI_MANIFEST, &m).await?;
                for last in ["b", "zzz"] {
                    let (tags, link) = list_page(c, &format!("/v2/{repo}/tags/list?n=10&last={last}")).await?;
                    ensure!(tags.is_empty(), "last={last}: {tags:?}");
                    ensure!(link.is_none(), "last={last}: Link {link:?}");
                }
                Ok(())
            })
        }),
        ("discovery.tags-list-body-names-the-repository", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-tags-name");
                c.pushed_image(&repo, "v1", 74).await?;
                let r = c.get(&format!("/v2/{repo}/tags/list")).await?;
                ensure!(r.status() == StatusCode::OK, "{}", r.status());
                let v: Value = serde_json::from_slice(&body_of(r).await?).map_err(|e| Outcome::Fail(e.to_string()))?;
                ensure!(v["name"] == repo.as_str() && v["tags"] == json!(["v1"]), "{v}");
                Ok(())
            })
        }),
        (
            "discovery.tags-list-of-an-unknown-repository-returns-404-name-unknown",
            |c| {
                Box::pin(async move {
                    let r = c.get(&format!("/v2/{}/tags/list", c.repo("disc-never-pushed"))).await?;
                    expect_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await
                })
            },
        ),
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
                if r.status() == StatusCode::NOT_FOUND {
                    return Err(Outcome::Skip("referrers API unsupported (404)".into()));
                }
                ensure!(r.status() == StatusCode::BAD_REQUEST, "{}", r.status());
                Ok(())
            })
        }),
        ("discovery.referrers-of-an-index-carry-its-artifact-type-or-none", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-referrers-index");
                let (s, sm) = c.pushed_image(&repo, "subject", 75).await?;
                let (child, cm) = c.pushed_image(&repo, "child", 76).await?;
                let subject = json!({"mediaType": OCI_MANIFEST, "digest": s, "size": sm.len()});
                let children = json!([{"mediaType": OCI_MANIFEST, "digest": child, "size": cm.len()}]);
                let plain = to_bytes(
                    &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
                    "subject": subject, "annotations": {"org.example.kind": "plain"}}),
                );
                let typed = to_bytes(
                    &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
                    "artifactType": "application/vnd.example.bundle", "subject": subject}),
                );
                for b in [&plain, &typed] {
                    c.put_manifest_ok(&repo, &sha256(b), OCI_INDEX, b).await?;
                }
                let (_, v) = referrers(c, &repo, &s, None).await?;
                let list = v["manifests"].as_array().cloned().unwrap_or_default();
                ensure!(list.len() == 2, "{v}");
                for d in &list {
                    ensure!(d["mediaType"] == OCI_INDEX, "descriptor {d}");
                    if d["digest"] == sha256(&plain).as_str() {
                        // "If the artifactType is empty or missing in an index, the artifactType MUST be omitted"
                        ensure!(
                            d.get("artifactType").is_none(),
                            "index without artifactType listed as {d}"
                        );
                        ensure!(
                            d["annotations"]["org.example.kind"] == "plain",
                            "annotations not copied: {d}"
                        );
                    } else {
                        ensure!(d["digest"] == sha256(&typed).as_str(), "unexpected {d}");
                        ensure!(d["artifactType"] == "application/vnd.example.bundle", "{d}");
                    }
                }
                Ok(())
            })
        }),
        ("discovery.referrers-of-a-subject-not-pushed-yet-are-listed", |c| {
            Box::pin(async move {
                let repo = c.repo("disc-referrers-early");
                let later = c.image(&repo, 77, 0).await?;
                let later_bytes = to_bytes(&later);
                let s = sha256(&later_bytes);
                let mut m = c.image(&repo, 78, 0).await?;
                m["artifactType"] = json!("application/vnd.example.early");
                m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": s, "size": later_bytes.len()});
                let b = to_bytes(&m);
                c.put_manifest_ok(&repo, &sha256(&b), OCI_MANIFEST, &b).await?;
                let (_, v) = referrers(c, &repo, &s, None).await?;
                ensure!(
                    v["manifests"][0]["digest"] == sha256(&b).as_str(),
                    "before the subject: {v}"
                );
                c.put_manifest_ok(&repo, "later", OCI_MANIFEST, &later_bytes).await?;
                let (_, v) = referrers(c, &repo, &s, None).await?;
                ensure!(
                    v["manifests"].as_array().map(Vec::len) == Some(1),
                    "after the subject: {v}"
                );
                Ok(())
            })
        }),
        ("discovery.referrers-list-only-the-same-repository", |c| {
            Box::pin(async move {
                let (repo, other) = (c.repo("disc-referrers-ns-a"), c.repo("disc-referrers-ns-b"));
                let (s, sm) = c.pushed_image(&repo, "v1", 79).await?;
                let mut m = c.image(&other, 80, 0).await?;
                m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": s, "size": sm.len()});
                let b = to_bytes(&m);
                c.put_manifest_ok(&other, &sha256(&b), OCI_MANIFEST, &b).await?;
                let (_, v) = referrers(c, &repo, &s, None).await?;
                ensure!(
                    v["manifests"].as_array().is_some_and(|a| a.is_empty()),
                    "another repository's referrer: {v}"
                );
                Ok(())
            })
        }),
    ]
}
