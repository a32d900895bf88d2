//! Concurrency against the real binary: 64 clients pushing one blob, 64 moving one tag while
//! 64 pull it, 64 tagging one manifest, pushes racing DELETEs, and garbage collection beside pushes and pulls. No 5xx,
//! no torn reads (every body matches its digest), and the final state is one of the allowed
//! outcomes, checked by the store verifier.
mod common;
mod faults_support;
use common::*;
use faults_support::*;

use std::sync::Arc;

const CLIENTS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_pushing_the_same_blob_all_succeed_with_one_copy() {
    let s = Server::start();
    let blob = Arc::new(random_bytes(1_500_000, 11));
    let d = sha256_digest(&blob);
    let base = s.url("");
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (c, blob, d, base) = (client(), blob.clone(), d.clone(), base.clone());
        // most into one repository, some into their own; half monolithic, half chunked
        let repo = if i % 4 == 3 {
            format!("own{i}")
        } else {
            "same".to_owned()
        };
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let r = c
                    .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
                    .body(blob.to_vec())
                    .send()
                    .await
                    .unwrap();
                return (repo, r.status().as_u16());
            }
            let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.unwrap();
            assert_eq!(r.status(), 202);
            let mut loc = r.headers()["location"].to_str().unwrap().to_owned();
            let mid = blob.len() / 2;
            for (a, b) in [(0, mid), (mid, blob.len())] {
                let r = c
                    .patch(format!("{base}{loc}"))
                    .header("content-range", format!("{a}-{}", b - 1))
                    .body(blob[a..b].to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                loc = r.headers()["location"].to_str().unwrap().to_owned();
            }
            let r = c.put(format!("{base}{loc}?digest={d}")).send().await.unwrap();
            (repo, r.status().as_u16())
        }));
    }
    let mut repos = std::collections::BTreeSet::new();
    for t in tasks {
        let (repo, st) = t.await.unwrap();
        assert_eq!(st, 201, "{repo}");
        repos.insert(repo);
    }
    let c = client();
    for repo in &repos {
        let (st, body, dcd) = get(&c, &s.url(&format!("/v2/{repo}/blobs/{d}"))).await;
        assert_eq!(st, 200);
        assert!(body == *blob, "{repo}: bytes differ");
        assert_eq!(dcd.as_deref(), Some(d.as_str()));
    }
    let view = assert_store_ok(&s.root(), true);
    assert_eq!(view.blobs.len(), 1);
    assert!(view.layers.values().all(|l| l.len() == 1 && l.contains(&d)));
    // no session was left behind
    assert!(stored_files(&s.root()).iter().all(|f| !f.contains("/_uploads/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_moved_by_sixty_four_clients_while_sixty_four_pull_it_is_never_torn() {
    let s = Server::start();
    let c = client();
    let (m1, m2) = (make_image(21, 2000), make_image(22, 2000));
    push_image(&c, &s.url(""), "race", "t", &m1).await.unwrap();
    push_image(&c, &s.url(""), "race", "other", &m2).await.unwrap();
    let (m1, m2) = (Arc::new(m1), Arc::new(m2));
    let base = s.url("");
    let mut movers = Vec::new();
    for i in 0..CLIENTS {
        let (c, base, m1, m2) = (client(), base.clone(), m1.clone(), m2.clone());
        movers.push(tokio::spawn(async move {
            for k in 0..8 {
                let m = if (i + k) % 2 == 0 { &m1 } else { &m2 };
                let st = put_manifest(&c, &base, "race", "t", &m.manifest).await.unwrap();
                assert_eq!(st, 201);
            }
        }));
    }
    let mut pullers = Vec::new();
    for _ in 0..CLIENTS {
        let (c, base, m1, m2) = (client(), base.clone(), m1.clone(), m2.clone());
        pullers.push(tokio::spawn(async move {
            let mut seen = [0usize; 2];
            for _ in 0..8 {
                let (st, body, dcd) = get(&c, &format!("{base}/v2/race/manifests/t")).await;
                assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
                let which = if body == m1.manifest {
                    0
                } else if body == m2.manifest {
                    1
                } else {
                    panic!("a torn or foreign manifest: {}", String::from_utf8_lossy(&body));
                };
                assert_eq!(dcd, Some(sha256_digest(&body)), "the digest header names another body");
                seen[which] += 1;
            }
            seen
        }));
    }
    for t in movers {
        t.await.unwrap();
    }
    for t in pullers {
        t.await.unwrap();
    }
    let view = assert_store_ok(&s.root(), true);
    let now = view.tag("race", "t").unwrap();
    assert!(now == m1.digest || now == m2.digest);
    let (st, body, _) = get(&c, &s.url("/v2/race/tags/list")).await;
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["tags"],
        serde_json::json!(["other", "t"])
    );
}

/// Manifest PUTs share the repository's lock: 64 clients tagging one manifest under 8 tags
/// each, in one repository, all succeed, and every tag lands and resolves to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_tagging_one_manifest_in_one_repository_all_land() {
    let s = Server::start();
    let c = client();
    let m = make_image(23, 500);
    push_image(&c, &s.url(""), "tagged", "first", &m).await.unwrap();
    let m = Arc::new(m);
    let base = s.url("");
    let mut taggers = Vec::new();
    for i in 0..CLIENTS {
        let (c, base, m) = (client(), base.clone(), m.clone());
        taggers.push(tokio::spawn(async move {
            for k in 0..8 {
                let tag = format!("t{i}-{k}");
                let st = put_manifest(&c, &base, "tagged", &tag, &m.manifest).await.unwrap();
                assert_eq!(st, 201, "{tag}");
            }
        }));
    }
    for t in taggers {
        t.await.unwrap();
    }
    let view = assert_store_ok(&s.root(), true);
    let (st, body, _) = get(&c, &s.url("/v2/tagged/tags/list?n=10000")).await;
    assert_eq!(st, 200);
    let tags = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["tags"].clone();
    assert_eq!(tags.as_array().map(Vec::len), Some(CLIENTS * 8 + 1));
    for i in 0..CLIENTS {
        for k in 0..8 {
            assert_eq!(view.tag("tagged", &format!("t{i}-{k}")), Some(m.digest.as_str()));
        }
    }
}

/// Regression: a blob push racing a DELETE of the same blob answered 500 (the filesystem
/// driver's link write found its directory removed under it: ENOENT; the delete could fail the
/// same way with ENOTEMPTY). Allowed outcomes only, and every tag that remains resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_racing_deletes_end_in_an_allowed_state() {
    let s = Server::start_with_delete();
    let c = client();
    let img = Arc::new(make_image(31, 3000));
    let other = Arc::new(make_image(32, 3000));
    push_image(&c, &s.url(""), "del", "seed", &img).await.unwrap();
    let base = s.url("");
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (c, base, img, other) = (client(), base.clone(), img.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for k in 0..6 {
                let st = match i % 4 {
                    // push the image (blobs, then the manifest under a tag of its own)
                    0 => {
                        for b in std::iter::once(&img.config).chain(&img.layers) {
                            let st = Api::new(&base)
                                .with_client(&c)
                                .post_blob_status("del", b)
                                .await
                                .unwrap();
                            assert_eq!(st, 201);
                        }
                        put_manifest(&c, &base, "del", &format!("t{i}-{k}"), &img.manifest)
                            .await
                            .unwrap()
                    }
                    // delete the manifest by digest (and with it every tag on it)
                    1 => c
                        .delete(format!("{base}/v2/del/manifests/{}", img.digest))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16(),
                    // delete its layer from the repository
                    2 => {
                        let d = sha256_digest(&img.layers[0]);
                        c.delete(format!("{base}/v2/del/blobs/{d}"))
                            .send()
                            .await
                            .unwrap()
                            .status()
                            .as_u16()
                    }
                    // an unrelated image in the same repository, which nothing deletes
                    _ => {
                        let tag = format!("o{i}-{k}");
                        push_image(&c, &base, "del", &tag, &other).await.unwrap();
                        let (st, body, _) = get(&c, &format!("{base}/v2/del/manifests/{tag}")).await;
                        assert!(st == 200 && body == other.manifest, "{st}");
                        201
                    }
                };
                statuses.push((i % 4, st));
            }
            statuses
        }));
    }
    for t in tasks {
        for (kind, st) in t.await.unwrap() {
            let allowed: &[u16] = match kind {
                0 => &[201, 400], // 400 MANIFEST_BLOB_UNKNOWN: its layer was deleted in between
                1 | 2 => &[202, 404],
                _ => &[201],
            };
            assert!(allowed.contains(&st), "kind {kind}: {st}");
        }
    }
    // every tag that exists points at a manifest of the repository, which serves its bytes
    let view = assert_store_ok(&s.root(), false);
    for (tag, d) in &view.tags["del"] {
        let (st, body, _) = get(&c, &s.url(&format!("/v2/del/manifests/{tag}"))).await;
        assert_eq!(st, 200, "{tag}");
        assert_eq!(&sha256_digest(&body), d);
    }
    // the image nobody deleted is whole under all its tags
    for (tag, d) in &view.tags["del"] {
        if d == &other.digest {
            assert_pulls(&c, &s, "del", tag, &other).await;
        }
    }
}

/// Regression, made deterministic: the server sleeps 1 s between a manifest's revision link
/// and its tags (`sleep` failpoint), and a DELETE of the manifest arrives in that window.
/// Before the fix the DELETE removed the revision and the old tags, then the PUT wrote its tag:
/// a tag pointing at a manifest the repository did not have (pulls of it answered 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_inside_a_tagged_manifest_put_never_leaves_a_dangling_tag() {
    let s = Server::start_with(
        "[storage.delete]\nenabled = true\n",
        &[("WHARF_FAILPOINTS", "manifest-before-tag=sleep:1s")],
    );
    let c = client();
    let img = make_image(33, 3000);
    push_image(&c, &s.url(""), "dangle", "a", &img).await.unwrap();
    let put = {
        let (c, base, m) = (c.clone(), s.url(""), img.manifest.clone());
        tokio::spawn(async move { put_manifest(&c, &base, "dangle", "b", &m).await.unwrap() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = c
        .delete(s.url(&format!("/v2/dangle/manifests/{}", img.digest)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(put.await.unwrap(), 201);
    let view = assert_store_ok(&s.root(), false);
    for (tag, d) in &view.tags["dangle"] {
        let (st, body, _) = get(&c, &s.url(&format!("/v2/dangle/manifests/{tag}"))).await;
        assert_eq!((st, sha256_digest(&body)), (200, d.clone()), "{tag}");
    }
    // the DELETE came after the PUT: nothing of the manifest is left in the repository
    assert!(view.tags["dangle"].is_empty(), "{view:?}");
    assert!(view.revisions["dangle"].is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_collection_beside_pushes_refuses_and_beside_pulls_keeps_every_image() {
    let mut s = Server::start_with_delete();
    let c = client();
    let images: Vec<Image> = (0..8).map(|i| make_image(40 + i, 5000)).collect();
    for (i, img) in images.iter().enumerate() {
        push_image(&c, &s.url(""), "gc", &format!("v{i}"), img).await.unwrap();
    }
    // garbage to collect: an image whose manifest is deleted
    let doomed = make_image(60, 5000);
    push_image(&c, &s.url(""), "gc", "doomed", &doomed).await.unwrap();
    let r = c
        .delete(s.url(&format!("/v2/gc/manifests/{}", doomed.digest)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // beside a writing server, garbage-collect refuses and removes nothing, while pushes go on
    let base = s.url("");
    let pushes: Vec<_> = (0..16u64)
        .map(|i| {
            let (c, base) = (client(), base.clone());
            tokio::spawn(async move {
                let img = make_image(100 + i, 4000);
                push_image(&c, &base, "gc", &format!("p{i}"), &img).await.unwrap();
                img
            })
        })
        .collect();
    let before = assert_store_ok(&s.root(), true);
    let (code, out, err) = tokio::task::spawn_blocking({
        let cfg = s.config_path();
        move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
                .args(["garbage-collect", "--config"])
                .arg(cfg)
                .output()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    })
    .await
    .unwrap();
    assert_ne!(code, 0, "garbage-collect ran beside a writing server:\n{out}\n{err}");
    let mut pushed = Vec::new();
    for (i, p) in pushes.into_iter().enumerate() {
        pushed.push((format!("p{i}"), p.await.unwrap()));
    }
    let after = assert_store_ok(&s.root(), true);
    assert!(before.blobs.is_subset(&after.blobs), "something was removed");

    // beside a read-only server it runs, while 64 clients pull every image
    s.set_env("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true");
    s.restart();
    let all: Arc<Vec<(String, Image)>> = Arc::new(
        images
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("v{i}"), m.clone()))
            .chain(pushed)
            .collect(),
    );
    let base = s.url("");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pullers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (c, base, all, stop) = (client(), base.clone(), all.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                let mut k = i;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 4 {
                    let (tag, img) = &all[k % all.len()];
                    let (st, body, _) = get(&c, &format!("{base}/v2/gc/manifests/{tag}")).await;
                    assert!(st == 200 && body == img.manifest, "{tag}: {st}");
                    let l = &img.layers[0];
                    let (st, body, _) = get(&c, &format!("{base}/v2/gc/blobs/{}", sha256_digest(l))).await;
                    assert!(st == 200 && body == *l, "{tag} layer: {st}");
                    n += 1;
                    k += 7;
                }
                n
            })
        })
        .collect();
    let (code, out, err) = tokio::task::spawn_blocking({
        let cfg = s.config_path();
        move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
                .args(["garbage-collect", "--config"])
                .arg(cfg)
                .output()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        code, 0,
        "garbage-collect failed beside a read-only server:\n{out}\n{err}"
    );
    for p in pullers {
        p.await.unwrap();
    }
    let view = assert_store_ok(&s.root(), true);
    assert!(
        !view.blobs.contains(&doomed.digest),
        "the deleted manifest was not collected"
    );
    assert!(!view.blobs.contains(&sha256_digest(&doomed.layers[0])));
    for (tag, img) in all.iter() {
        assert_pulls(&c, &s, "gc", tag, img).await;
    }
}
