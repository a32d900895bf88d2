//! Content management: checks named `management.<requirement>`, written from the spec's sentences.

use super::discovery::{referrer_setup, referrers};
use super::*;

pub fn checks() -> Vec<(&'static str, CheckFn)> {
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
        (
            "management.deleted-blob-head-returns-404-and-other-repositories-keep-it",
            |c| {
                Box::pin(async move {
                    let (a, b) = (c.repo("mgmt-blob-shared-a"), c.repo("mgmt-blob-shared-b"));
                    let data = noise(700, 81);
                    let d = c.push_blob(&a, &data).await?;
                    c.push_blob(&b, &data).await?;
                    let r = c.delete(&format!("/v2/{a}/blobs/{d}")).await?;
                    ensure!(r.status() == StatusCode::ACCEPTED, "{}", r.status());
                    let r = c.send(c.req(Method::HEAD, &format!("/v2/{a}/blobs/{d}"))).await?;
                    ensure!(r.status() == StatusCode::NOT_FOUND, "HEAD after delete: {}", r.status());
                    let r = c.get(&format!("/v2/{b}/blobs/{d}")).await?;
                    ensure!(
                        r.status() == StatusCode::OK && body_of(r).await? == data,
                        "the other repository lost the blob"
                    );
                    Ok(())
                })
            },
        ),
        ("management.deleted-manifest-leaves-the-tags-list", |c| {
            Box::pin(async move {
                let repo = c.repo("mgmt-tags-list");
                let (d, _) = c.pushed_image(&repo, "gone", 82).await?;
                c.pushed_image(&repo, "stays", 83).await?;
                let r = c.delete(&format!("/v2/{repo}/manifests/{d}")).await?;
                ensure!(r.status() == StatusCode::ACCEPTED, "{}", r.status());
                let (tags, _) = super::discovery::list_page(c, &format!("/v2/{repo}/tags/list")).await?;
                ensure!(tags == ["stays"], "tags after delete: {tags:?}");
                Ok(())
            })
        }),
        ("management.delete-manifest-in-an-unknown-repository-returns-404", |c| {
            Box::pin(async move {
                let r = c
                    .delete(&format!(
                        "/v2/{}/manifests/{}",
                        c.repo("mgmt-never-pushed"),
                        sha256(b"never")
                    ))
                    .await?;
                ensure!(r.status() == StatusCode::NOT_FOUND, "{}", r.status());
                error_codes(r).await?;
                Ok(())
            })
        }),
    ]
}
