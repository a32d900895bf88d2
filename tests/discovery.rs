//! Content discovery (spec: "Listing Tags", "Listing Referrers") and the catalog, with `n`,
//! `last` and `Link` pagination edges.
mod common;
use common::*;

use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Push a small manifest (optionally with artifactType, subject, annotations); returns (digest, bytes).
async fn push_manifest(s: &Server, repo: &str, reference: Option<&str>, extra: Value) -> (String, Vec<u8>) {
    let cfg = s.api().post_blob(repo, b"{}").await.unwrap();
    let mut m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2}, "layers": []});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    let body = serde_json::to_vec(&m).unwrap();
    let d = sha256_digest(&body);
    let r = client()
        .put(s.url(&format!("/v2/{repo}/manifests/{}", reference.unwrap_or(&d))))
        .header("content-type", OCI_MANIFEST)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    (d, body)
}

async fn get_json(s: &Server, path: &str) -> (u16, Option<String>, Value) {
    let r = client().get(s.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    let link = r.headers().get("link").map(|v| v.to_str().unwrap().to_owned());
    let body = r.bytes().await.unwrap();
    (status, link, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// Follow `Link: <...>; rel="next"` headers from `first`, collecting `key` from every page.
async fn follow(s: &Server, first: &str, key: &str) -> (Vec<String>, usize) {
    let (mut path, mut all, mut pages) = (first.to_owned(), Vec::new(), 0);
    loop {
        let (status, link, body) = get_json(s, &path).await;
        assert_eq!(status, 200, "{path}");
        all.extend(strings(&body[key]));
        pages += 1;
        let Some(link) = link else { break };
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        path = link[link.find('<').unwrap() + 1..link.find('>').unwrap()].to_owned();
        assert!(pages < 100, "too many pages");
    }
    (all, pages)
}

/// Tags lists are served from an in-memory sorted index; it must follow every change, also
/// ones made by another server sharing the store (which cannot tell this one to forget).
#[tokio::test]
async fn the_tags_list_follows_changes_made_through_another_server() {
    let delete = "[storage.delete]\nenabled = true\n";
    let a = Server::start_with(delete, &[]);
    let root = a.root().display().to_string();
    let b = Server::start_with(delete, &[("WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root)]);
    for t in ["t1", "t2", "t3"] {
        push_manifest(&a, "shared", Some(t), json!({})).await;
    }
    let tags = |v: &Value| strings(&v["tags"]);
    // Let the directory settle, so the index keeps what it reads; then read it twice.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for _ in 0..2 {
        assert_eq!(tags(&get_json(&a, "/v2/shared/tags/list").await.2), ["t1", "t2", "t3"]);
    }
    push_manifest(&b, "shared", Some("t4"), json!({})).await;
    assert_eq!(
        tags(&get_json(&a, "/v2/shared/tags/list").await.2),
        ["t1", "t2", "t3", "t4"]
    );
    assert_eq!(
        tags(&get_json(&a, "/v2/shared/tags/list?n=2&last=t2").await.2),
        ["t3", "t4"]
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(tags(&get_json(&a, "/v2/shared/tags/list?n=1&last=t3").await.2), ["t4"]);
    let r = client().delete(b.url("/v2/shared/manifests/t2")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(tags(&get_json(&a, "/v2/shared/tags/list").await.2), ["t1", "t3", "t4"]);
    push_manifest(&a, "shared", Some("t0"), json!({})).await;
    assert_eq!(tags(&get_json(&a, "/v2/shared/tags/list?n=2").await.2), ["t0", "t1"]);
}

/// The catalog's order: component by component (`a/b` before `a-b`).
fn path_sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    v.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    v
}

async fn catalog_of(s: &Server, query: &str) -> Vec<String> {
    let (status, _, body) = get_json(s, &format!("/v2/_catalog{query}")).await;
    assert_eq!(status, 200);
    strings(&body["repositories"])
}

/// Catalog pages come from an in-memory index; a repository pushed through another server
/// sharing the store must show on the very next request all the same (the store's generation
/// marker). The index's age bound is set to an hour, so nothing but the marker can explain it.
#[tokio::test]
async fn the_catalog_follows_repositories_created_through_another_server() {
    let slow = [("WHARF_TIMEOUTS", "catalog-index=1h")];
    let a = Server::start_with("", &slow);
    let root = a.root().display().to_string();
    let b = Server::start_with(
        "",
        &[slow[0], ("WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY", root.as_str())],
    );
    push_manifest(&a, "one", Some("v1"), json!({})).await;
    assert_eq!(catalog_of(&b, "").await, ["one"]);
    assert_eq!(catalog_of(&a, "").await, ["one"]);
    // Both now serve from their index: a repository made on disk behind their backs (as a
    // foreign writer would) is not seen yet...
    let repos = a.root().join("docker/registry/v2/repositories");
    std::fs::create_dir_all(repos.join("foreign/_manifests")).unwrap();
    assert_eq!(catalog_of(&b, "").await, ["one"]);
    // ...until a Wharf creates a repository: then the next page, on either, is whole.
    push_manifest(&a, "two/deep", Some("v1"), json!({})).await;
    assert_eq!(catalog_of(&b, "").await, ["foreign", "one", "two/deep"]);
    assert_eq!(catalog_of(&b, "?n=1&last=one").await, ["two/deep"]);
    push_manifest(&b, "a-three", Some("v1"), json!({})).await;
    assert_eq!(catalog_of(&a, "?n=2").await, ["a-three", "foreign"]);
    // so does a push by digest, without a tag
    push_manifest(&b, "four", None, json!({"annotations": {"x": "y"}})).await;
    assert_eq!(catalog_of(&a, "?last=foreign").await, ["four", "one", "two/deep"]);
    // pushing into existing repositories changes nothing, and the index keeps serving
    push_manifest(&a, "one", Some("v2"), json!({})).await;
    assert_eq!(
        catalog_of(&b, "").await,
        ["a-three", "foreign", "four", "one", "two/deep"]
    );
}

/// A PUT that finds the repository already there may find it in the making: another server's
/// PUT created `_manifests/` and has not written its token yet (held here at a failpoint). The
/// second PUT renews the token itself, so its answer is never followed by a catalog without
/// the repository.
#[tokio::test]
async fn a_repository_still_being_created_by_another_put_is_listed_once_a_put_into_it_is_answered() {
    let slow = ("WHARF_TIMEOUTS", "catalog-index=1h");
    let a = Server::start_with("", &[slow, ("WHARF_FAILPOINTS", "manifest-before-tag=sleep:4s")]);
    let root = a.root().display().to_string();
    let b = Server::start_with("", &[slow, ("WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY", root.as_str())]);
    push_manifest(&b, "base", Some("v1"), json!({})).await;
    assert_eq!(catalog_of(&b, "").await, ["base"]);
    let cfg = b.api().post_blob("new", b"{}").await.unwrap();
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [], "annotations": {"by": "a"}}))
    .unwrap();
    let url = a.url("/v2/new/manifests/v1");
    let slow_put = tokio::spawn(async move {
        client()
            .put(url)
            .header("content-type", OCI_MANIFEST)
            .body(manifest)
            .send()
            .await
            .unwrap()
            .status()
    });
    let made = a.root().join("docker/registry/v2/repositories/new/_manifests");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !made.exists() {
        assert!(std::time::Instant::now() < end, "server A created no _manifests/");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(catalog_of(&b, "").await, ["base"], "not yet answered: either is right");
    push_manifest(&b, "new", None, json!({"annotations": {"by": "b"}})).await;
    assert!(!slow_put.is_finished(), "A's PUT was to be still in flight");
    assert_eq!(catalog_of(&b, "").await, ["base", "new"]);
    assert_eq!(slow_put.await.unwrap(), 201);
    assert_eq!(catalog_of(&b, "").await, ["base", "new"]);
}

/// Writers other than Wharf (Distribution on the same directory, rsync, `rm -rf`) write no
/// generation token: what they do shows once the index has aged out (here 1 s instead of 5 s).
#[tokio::test]
async fn the_catalog_sees_changes_made_behind_its_back_within_its_age_bound() {
    let s = Server::start_with("", &[("WHARF_TIMEOUTS", "catalog-index=1s")]);
    push_manifest(&s, "app", Some("v1"), json!({})).await;
    assert_eq!(catalog_of(&s, "").await, ["app"]);
    let repos = s.root().join("docker/registry/v2/repositories");
    std::fs::create_dir_all(repos.join("foreign/_manifests/revisions")).unwrap();
    let bound = std::time::Duration::from_secs(2); // the age bound and a second
    assert!(
        catalog_within(&s, &["app", "foreign"], bound).await,
        "a repository made on disk"
    );
    std::fs::remove_dir_all(repos.join("app")).unwrap();
    assert!(
        catalog_within(&s, &["foreign"], bound).await,
        "a repository removed on disk"
    );
}

/// Whether the whole catalog is `want` at some moment within `bound`.
async fn catalog_within(s: &Server, want: &[&str], bound: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + bound;
    loop {
        if catalog_of(s, "").await == want {
            return true;
        }
        if std::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}
impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

// Tests that run on both backends (the filesystem and the in-memory object store).
on_both_backends! {
    #[tokio::test]
    async fn tags_are_listed_sorted_and_paginated_with_link() {
        let s = Server::start();
        let tags = ["v2", "latest", "A", "v10", "1.0", "_x", "v1"];
        for t in tags {
            push_manifest(&s, "app", Some(t), json!({})).await;
        }
        let mut sorted: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        sorted.sort();
        let (status, link, body) = get_json(&s, "/v2/app/tags/list").await;
        assert_eq!(status, 200);
        assert_eq!(body["name"], "app");
        assert_eq!(strings(&body["tags"]), sorted);
        assert!(link.is_none());
        let (paged, pages) = follow(&s, "/v2/app/tags/list?n=2", "tags").await;
        assert_eq!(paged, sorted);
        assert_eq!(pages, 4);
        let (_, link, body) = get_json(&s, "/v2/app/tags/list?n=3").await;
        assert_eq!(strings(&body["tags"]), sorted[..3].to_vec());
        assert!(link.unwrap().contains("/v2/app/tags/list?"));
    }

    #[tokio::test]
    async fn tag_pagination_edges() {
        let s = Server::start();
        for t in ["a", "b", "c"] {
            push_manifest(&s, "r", Some(t), json!({})).await;
        }
        let (status, link, body) = get_json(&s, "/v2/r/tags/list?n=0").await;
        assert_eq!((status, link), (200, None));
        assert_eq!(strings(&body["tags"]), Vec::<String>::new());
        let (_, link, body) = get_json(&s, "/v2/r/tags/list?n=100").await;
        assert_eq!(
            (strings(&body["tags"]), link),
            (vec!["a".into(), "b".into(), "c".into()], None)
        );
        let (_, link, body) = get_json(&s, "/v2/r/tags/list?last=c").await;
        assert_eq!((strings(&body["tags"]), link), (vec![], None));
        let (_, _, body) = get_json(&s, "/v2/r/tags/list?last=zzz&n=2").await;
        assert!(strings(&body["tags"]).is_empty());
        // `last` that is not a tag: the tags lexically after it
        let (_, _, body) = get_json(&s, "/v2/r/tags/list?last=aa").await;
        assert_eq!(strings(&body["tags"]), vec!["b", "c"]);
        let (_, link, body) = get_json(&s, "/v2/r/tags/list?n=2&last=a").await;
        assert_eq!((strings(&body["tags"]), link), (vec!["b".into(), "c".into()], None));
        for bad in ["n=-1", "n=abc"] {
            let r = client()
                .get(s.url(&format!("/v2/r/tags/list?{bad}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{bad}");
        }
    }

    #[tokio::test]
    async fn tags_of_an_unknown_repository_are_name_unknown() {
        let s = Server::start();
        let r = client().get(s.url("/v2/nobody/tags/list")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["NAME_UNKNOWN"]);
    }

    #[tokio::test]
    async fn catalog_lists_repositories_with_pagination() {
        let s = Server::start();
        let repos = ["zeta", "alpha/one", "alpha/two", "beta", "alpha"];
        for r in repos {
            push_manifest(&s, r, Some("v1"), json!({})).await;
        }
        s.api().post_blob("blobs-only", b"no manifest here").await.unwrap(); // not a repository with content to list
        let (status, link, body) = get_json(&s, "/v2/_catalog").await;
        assert_eq!((status, link), (200, None));
        let listed = strings(&body["repositories"]);
        assert_eq!(listed, vec!["alpha", "alpha/one", "alpha/two", "beta", "zeta"]);
        let (paged, pages) = follow(&s, "/v2/_catalog?n=2", "repositories").await;
        assert_eq!(paged, listed);
        assert_eq!(pages, 3);
        // every page size walks the same list (pages end inside and between subtrees)
        for n in 1..=6 {
            let (paged, _) = follow(&s, &format!("/v2/_catalog?n={n}"), "repositories").await;
            assert_eq!(paged, listed, "n={n}");
        }
        let (_, link, body) = get_json(&s, "/v2/_catalog?n=0").await;
        assert!(strings(&body["repositories"]).is_empty() && link.is_none());
        let (_, _, body) = get_json(&s, "/v2/_catalog?last=alpha/two").await;
        assert_eq!(strings(&body["repositories"]), vec!["beta", "zeta"]);
        // `last` a repository with repositories inside it, a name between subtrees, a prefix
        for (last, want) in [
            ("alpha", vec!["alpha/one", "alpha/two", "beta", "zeta"]),
            ("alpha/o", vec!["alpha/one", "alpha/two", "beta", "zeta"]),
            ("alpha-b", vec!["beta", "zeta"]),
            ("b", vec!["beta", "zeta"]),
            ("aaa", vec!["alpha", "alpha/one", "alpha/two", "beta", "zeta"]),
        ] {
            let (_, _, body) = get_json(&s, &format!("/v2/_catalog?last={last}")).await;
            assert_eq!(strings(&body["repositories"]), want, "last={last}");
        }
        let (_, link, body) = get_json(&s, "/v2/_catalog?n=2&last=alpha").await;
        assert_eq!(strings(&body["repositories"]), vec!["alpha/one", "alpha/two"]);
        assert!(link.is_some(), "more remain after alpha/two");
        let (_, link, body) = get_json(&s, "/v2/_catalog?n=50&last=zeta").await;
        assert!(strings(&body["repositories"]).is_empty() && link.is_none());
    }

    /// Catalog pages over nested names, from the in-memory index, are what the walk gives (and
    /// Distribution): every `last`, listed or not, every `n`, `Link` exactly when more remain.
    #[tokio::test]
    async fn catalog_pages_over_nested_names() {
        let s = Server::start();
        let repos = ["a", "a/b", "a-b", "a/b/c", "ns/x", "ns/y/z", "a0", "b"];
        for r in repos {
            push_manifest(&s, r, Some("v1"), json!({})).await;
        }
        s.api().post_blob("blobs/only", b"a layer and no manifest").await.unwrap();
        let all = path_sorted(&repos);
        assert_eq!(all, ["a", "a/b", "a/b/c", "a-b", "a0", "b", "ns/x", "ns/y/z"]);
        let mut lasts: Vec<String> = all.clone();
        lasts.extend(["a/a", "a/b/b", "a/c", "a.", "ns", "ns/y", "zz", "0", "a/b/c/d"].map(String::from));
        for last in &lasts {
            let after: Vec<String> = all
                .iter()
                .filter(|r| r.split('/').cmp(last.split('/')) == std::cmp::Ordering::Greater)
                .cloned()
                .collect();
            let (_, link, body) = get_json(&s, &format!("/v2/_catalog?last={last}")).await;
            assert_eq!(
                (strings(&body["repositories"]), link),
                (after.clone(), None),
                "last={last}"
            );
            for n in 0..=after.len() + 1 {
                let (status, link, body) = get_json(&s, &format!("/v2/_catalog?last={last}&n={n}")).await;
                assert_eq!(status, 200);
                let want: Vec<String> = after.iter().take(n).cloned().collect();
                assert_eq!(strings(&body["repositories"]), want, "last={last} n={n}");
                assert_eq!(link.is_some(), n > 0 && after.len() > n, "last={last} n={n}: {link:?}");
            }
        }
        for n in 1..=9 {
            let (paged, pages) = follow(&s, &format!("/v2/_catalog?n={n}"), "repositories").await;
            assert_eq!(paged, all, "n={n}");
            assert_eq!(pages, all.len().div_ceil(n).max(1), "n={n}");
        }
    }

    #[tokio::test]
    async fn referrers_list_manifests_whose_subject_is_the_digest() {
        let s = Server::start();
        let (subject, subject_bytes) = push_manifest(&s, "app", Some("v1"), json!({})).await;
        let desc = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len()});
        let (sbom, sbom_bytes) = push_manifest(
            &s,
            "app",
            None,
            json!({
            "artifactType": "application/vnd.example.sbom", "subject": desc,
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}}),
        )
        .await;
        let (sig, _) = push_manifest(
            &s,
            "app",
            None,
            json!({"artifactType": "application/vnd.example.sig", "subject": desc}),
        )
        .await;
        // an image manifest without artifactType: its config's mediaType stands in
        let (plain, _) = push_manifest(&s, "app", None, json!({"subject": desc})).await;
        // an index referrer without artifactType: none listed
        let index =
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "subject": desc}))
                .unwrap();
        let r = client()
            .put(s.url(&format!("/v2/app/manifests/{}", sha256_digest(&index))))
            .header("content-type", OCI_INDEX)
            .body(index.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["oci-subject"], subject.as_str());
        // in another repository: not listed here
        push_manifest(&s, "other", Some("x"), json!({})).await;

        let r = client()
            .get(s.url(&format!("/v2/app/referrers/{subject}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], OCI_INDEX);
        assert!(!r.headers().contains_key("oci-filters-applied"));
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["schemaVersion"], 2);
        assert_eq!(body["mediaType"], OCI_INDEX);
        let ms = body["manifests"].as_array().unwrap();
        assert_eq!(ms.len(), 4, "{body}");
        let by = |d: &str| {
            ms.iter()
                .find(|m| m["digest"] == d)
                .unwrap_or_else(|| panic!("{d} missing: {body}"))
                .clone()
        };
        let m = by(&sbom);
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["size"], sbom_bytes.len());
        assert_eq!(m["artifactType"], "application/vnd.example.sbom");
        assert_eq!(
            m["annotations"]["org.opencontainers.image.created"],
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(by(&sig)["artifactType"], "application/vnd.example.sig");
        assert_eq!(by(&plain)["artifactType"], "application/vnd.oci.image.config.v1+json");
        let idx = by(&sha256_digest(&index));
        assert_eq!(idx["mediaType"], OCI_INDEX);
        assert!(idx.get("artifactType").is_none());

        let r = client()
            .get(s.url(&format!(
                "/v2/app/referrers/{subject}?artifactType=application/vnd.example.sig"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let listed: Vec<&str> = body["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        assert_eq!(listed, vec![sig.as_str()]);
    }

    #[tokio::test]
    async fn referrers_of_nothing_are_an_empty_index_and_bad_digests_400() {
        let s = Server::start();
        push_manifest(&s, "app", Some("v1"), json!({})).await;
        for path in [
            format!("/v2/app/referrers/{}", sha256_digest(b"unknown")),
            format!("/v2/nobody/referrers/{}", sha256_digest(b"x")),
        ] {
            let r = client().get(s.url(&path)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert_eq!(body["manifests"], json!([]));
        }
        let r = client()
            .get(s.url("/v2/app/referrers/sha256:123"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }

    #[tokio::test]
    async fn referrers_pushed_before_their_subject_and_removed_by_delete() {
        let s = Server::start_with_delete();
        // the subject's digest is known before it is pushed
        let cfg = s.api().post_blob("app", b"{}").await.unwrap();
        let subject_bytes = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2}, "layers": [],
            "annotations": {"late": "yes"}}))
        .unwrap();
        let subject = sha256_digest(&subject_bytes);
        let desc = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len()});
        let (early, _) = push_manifest(
            &s,
            "app",
            None,
            json!({"artifactType": "application/x.early", "subject": desc}),
        )
        .await;
        let list = |s: &Server| {
            let url = s.url(&format!("/v2/app/referrers/{subject}"));
            async move {
                let body: Value = client().get(url).send().await.unwrap().json_value().await;
                body["manifests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["digest"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(list(&s).await, vec![early.clone()], "listed before the subject exists");
        let r = client()
            .put(s.url("/v2/app/manifests/late"))
            .header("content-type", OCI_MANIFEST)
            .body(subject_bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(list(&s).await, vec![early.clone()], "and after");
        let r = client()
            .delete(s.url(&format!("/v2/app/manifests/{early}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert!(list(&s).await.is_empty(), "a deleted referrer disappears");
    }

    #[tokio::test]
    async fn many_referrers_are_listed_completely() {
        let s = Server::start();
        let (subject, subject_bytes) = push_manifest(&s, "app", Some("v1"), json!({})).await;
        let desc = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len()});
        let mut pushed = Vec::new();
        for i in 0..200 {
            let (d, _) = push_manifest(&s, "app", None, json!({"artifactType": format!("application/x.t{}", i % 4), "subject": desc, "annotations": {"i": i.to_string()}})).await;
            pushed.push(d);
        }
        let body: Value = client()
            .get(s.url(&format!("/v2/app/referrers/{subject}")))
            .send()
            .await
            .unwrap()
            .json_value()
            .await;
        let mut listed: Vec<String> = body["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_owned())
            .collect();
        listed.sort();
        pushed.sort();
        assert_eq!(listed, pushed);
        let body: Value = client()
            .get(s.url(&format!("/v2/app/referrers/{subject}?artifactType=application/x.t1")))
            .send()
            .await
            .unwrap()
            .json_value()
            .await;
        assert_eq!(body["manifests"].as_array().unwrap().len(), 50);
    }

    /// Names that look like a temporary file's are ordinary names: the filesystem store's own
    /// temporary files start with a dot, which no repository name or tag can.
    #[tokio::test]
    async fn names_containing_tmp_are_listed_like_any_other() {
        let s = Server::start();
        for (repo, tag) in [("app.tmp-1", "v1.tmp-x"), ("app", "v2.tmp-0123456789abcdef")] {
            push_manifest(&s, repo, Some(tag), json!({})).await;
        }
        let (_, _, body) = get_json(&s, "/v2/_catalog").await;
        assert_eq!(strings(&body["repositories"]), vec!["app", "app.tmp-1"]);
        let (_, _, body) = get_json(&s, "/v2/app.tmp-1/tags/list").await;
        assert_eq!(strings(&body["tags"]), vec!["v1.tmp-x"]);
        let (_, _, body) = get_json(&s, "/v2/app/tags/list").await;
        assert_eq!(strings(&body["tags"]), vec!["v2.tmp-0123456789abcdef"]);
        let r = client()
            .get(s.url("/v2/app.tmp-1/manifests/v1.tmp-x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
