//! Crash tests: the real binary is stopped with SIGKILL at chosen points of its write paths
//! (`WHARF_FAILPOINTS` pauses it exactly there; see src/hooks.rs) and at random moments during
//! concurrent pushes. After each restart: every acknowledged (201) blob and manifest is served
//! byte-exact, nothing unacknowledged is visible under a tag, an unacknowledged blob is not
//! visible under its digest, anything visible is whole and matches its digest, uploads resume
//! or are cleanly unknown, the store verifier finds no broken invariant, and a garbage
//! collection afterwards leaves every tagged image pullable.
mod common;
mod faults_support;
use common::*;
use faults_support::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A server with deletes on, holding `ok:v1` (acknowledged before any failpoint is armed).
async fn setup() -> (Server, Image) {
    let s = Server::start_with_delete();
    let img = make_image(1, 5000);
    push_image(&client(), &s.url(""), "ok", "v1", &img).await.unwrap();
    (s, img)
}

/// Restart the server on the same store with `failpoints` armed ("" disarms them).
fn restart_with(s: &mut Server, failpoints: &str) {
    s.set_env("WHARF_FAILPOINTS", failpoints);
    s.restart();
}

/// Wait until the server reports it paused at `name`, then SIGKILL it there.
fn kill_at(s: &mut Server, name: &str) {
    let line = format!("failpoint {name} paused");
    assert!(
        wait_for(Duration::from_secs(60), || s.logs().iter().any(|l| l.contains(&line))),
        "the server never reached failpoint {name}; log:\n{}",
        s.logs().join("\n")
    );
    s.kill();
}

/// Run `request` in the background (its answer never comes: the server is killed meanwhile).
fn in_background<F: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static>(
    request: F,
) -> tokio::task::JoinHandle<Option<u16>> {
    tokio::spawn(async move { request.await.ok().map(|r| r.status().as_u16()) })
}

/// Stop the server, collect garbage (removing untagged manifests and every abandoned upload),
/// start again, and check that every tagged image still pulls whole.
async fn gc_then_pull(s: &mut Server, tagged: &[(&str, &str, &Image)]) {
    s.kill();
    let (code, out, err) = gc(s, &["--delete-untagged", "--upload-max-age", "0s"], &[]);
    assert_eq!(code, 0, "garbage-collect failed:\n{out}\n{err}");
    restart_with(s, "");
    let c = client();
    for (repo, tag, img) in tagged {
        assert_pulls(&c, s, repo, tag, img).await;
    }
    assert_store_ok(&s.root(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monolithic_push_killed_after_its_bytes_are_durable_leaves_no_trace() {
    let (mut s, img) = setup().await;
    restart_with(&mut s, "upload-data-written=pause");
    let blob = random_bytes(300_000, 2);
    let d = sha256_digest(&blob);
    let c = client();
    let pending = in_background(
        c.post(s.url(&format!("/v2/ok/blobs/uploads/?digest={d}")))
            .body(blob.clone())
            .send(),
    );
    kill_at(&mut s, "upload-data-written");
    assert_eq!(pending.await.unwrap(), None, "the push was not acknowledged");
    restart_with(&mut s, "");
    assert_eq!(get(&c, &s.url(&format!("/v2/ok/blobs/{d}"))).await.0, 404);
    assert_pulls(&c, &s, "ok", "v1", &img).await;
    assert!(!assert_store_ok(&s.root(), true).blobs.contains(&d));
    // pushed again, it is whole
    assert_eq!(
        s.api().with_client(&c).post_blob_status("ok", &blob).await.unwrap(),
        201
    );
    assert!(get(&c, &s.url(&format!("/v2/ok/blobs/{d}"))).await.1 == blob);
    gc_then_pull(&mut s, &[("ok", "v1", &img)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_push_killed_mid_chunk_resumes_from_the_offset_it_reports() {
    let (mut s, img) = setup().await;
    // the second PATCH pauses after its bytes are durable, before its hash state is saved
    restart_with(&mut s, "upload-data-written=pause@2");
    let blob = random_bytes(900_000, 3);
    let d = sha256_digest(&blob);
    let c = client();
    let r = c.post(s.url("/v2/ok/blobs/uploads/")).send().await.unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let path = loc.clone();
    let r = c
        .patch(s.url(&path))
        .header("content-range", "0-299999")
        .body(blob[..300_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let pending = in_background(
        c.patch(s.url(&path))
            .header("content-range", "300000-599999")
            .body(blob[300_000..600_000].to_vec())
            .send(),
    );
    kill_at(&mut s, "upload-data-written");
    assert_eq!(pending.await.unwrap(), None);
    restart_with(&mut s, "");
    // the session is known, at the first chunk's end or the second's (the bytes were durable)
    let r = c.get(s.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let range = r.headers()["range"].to_str().unwrap().to_owned();
    let offset: usize = range.strip_prefix("0-").unwrap().parse::<usize>().unwrap() + 1;
    assert!(offset == 300_000 || offset == 600_000, "{range}");
    // the client resumes from there, and the blob is whole
    let r = c
        .patch(s.url(&path))
        .header("content-range", format!("{offset}-{}", blob.len() - 1))
        .body(blob[offset..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c.put(s.url(&format!("{path}?digest={d}"))).send().await.unwrap();
    assert_eq!(
        r.status(),
        201,
        "{}",
        String::from_utf8_lossy(&r.bytes().await.unwrap())
    );
    assert!(get(&c, &s.url(&format!("/v2/ok/blobs/{d}"))).await.1 == blob);
    assert_store_ok(&s.root(), true);
    gc_then_pull(&mut s, &[("ok", "v1", &img)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_killed_between_blob_commit_and_link_is_not_visible() {
    let (mut s, img) = setup().await;
    restart_with(&mut s, "blob-after-commit=pause");
    let blob = random_bytes(200_000, 4);
    let d = sha256_digest(&blob);
    let c = client();
    let pending = in_background(
        c.post(s.url(&format!("/v2/ok/blobs/uploads/?digest={d}")))
            .body(blob.clone())
            .send(),
    );
    kill_at(&mut s, "blob-after-commit");
    assert_eq!(pending.await.unwrap(), None);
    restart_with(&mut s, "");
    // the bytes are in the content store, verified, but no repository serves them
    let view = assert_store_ok(&s.root(), true);
    assert!(view.blobs.contains(&d));
    assert!(view.layers.values().all(|l| !l.contains(&d)));
    let r = c.head(s.url(&format!("/v2/ok/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // a manifest cannot use them until they are pushed (and linked)
    let mut img2 = make_image(5, 100);
    img2.layers = vec![blob.clone()];
    let img2 = rebuild(img2);
    assert_eq!(
        s.api()
            .with_client(&c)
            .post_blob_status("ok", &img2.config)
            .await
            .unwrap(),
        201
    );
    assert_eq!(
        put_manifest(&c, &s.url(""), "ok", "v2", &img2.manifest).await.unwrap(),
        400
    );
    assert_eq!(
        s.api().with_client(&c).post_blob_status("ok", &blob).await.unwrap(),
        201
    );
    assert_eq!(
        put_manifest(&c, &s.url(""), "ok", "v2", &img2.manifest).await.unwrap(),
        201
    );
    assert_pulls(&c, &s, "ok", "v2", &img2).await;
    gc_then_pull(&mut s, &[("ok", "v1", &img), ("ok", "v2", &img2)]).await;
}

/// Recompute an image's manifest after its layers changed.
fn rebuild(img: Image) -> Image {
    let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": sha256_digest(b), "size": b.len()});
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &img.config),
        "layers": img.layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    }))
    .unwrap();
    Image {
        digest: sha256_digest(&manifest),
        manifest,
        ..img
    }
}

/// Push `img`'s blobs, then PUT its manifest under `tag` with the server paused at `point`
/// and killed there. Returns with the server restarted, failpoints off.
async fn kill_during_manifest_put(s: &mut Server, img: &Image, tag: &str, point: &str) {
    let c = client();
    for b in std::iter::once(&img.config).chain(&img.layers) {
        assert_eq!(s.api().with_client(&c).post_blob_status("ok", b).await.unwrap(), 201);
    }
    restart_with(s, &format!("{point}=pause"));
    let pending = in_background(
        c.put(s.url(&format!("/v2/ok/manifests/{tag}")))
            .header("content-type", OCI_MANIFEST)
            .body(img.manifest.clone())
            .send(),
    );
    kill_at(s, point);
    assert_eq!(pending.await.unwrap(), None);
    restart_with(s, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_put_killed_before_its_tag_leaves_the_tags_as_they_were() {
    let (mut s, img) = setup().await;
    let c = client();
    let img2 = make_image(6, 4000);
    // a new tag: absent after the crash
    kill_during_manifest_put(&mut s, &img2, "fresh", "manifest-before-tag").await;
    let (st, body, _) = get(&c, &s.url("/v2/ok/manifests/fresh")).await;
    assert_eq!(st, 404);
    assert_eq!(error_codes(&body), ["MANIFEST_UNKNOWN"]);
    // by digest it is absent or whole (it was fully written; only the answer was lost)
    let (st, body, _) = get(&c, &s.url(&format!("/v2/ok/manifests/{}", img2.digest))).await;
    assert!(st == 404 || (st == 200 && body == img2.manifest), "{st}");
    // an existing tag moved by the PUT: still on its old manifest
    kill_during_manifest_put(&mut s, &img2, "v1", "manifest-before-tag").await;
    assert_pulls(&c, &s, "ok", "v1", &img).await;
    let view = assert_store_ok(&s.root(), true);
    assert_eq!(view.tag("ok", "v1"), Some(img.digest.as_str()));
    assert_eq!(view.tag("ok", "fresh"), None);
    // the client retries, and the move happens
    assert_eq!(
        put_manifest(&c, &s.url(""), "ok", "v1", &img2.manifest).await.unwrap(),
        201
    );
    assert_pulls(&c, &s, "ok", "v1", &img2).await;
    gc_then_pull(&mut s, &[("ok", "v1", &img2)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_move_killed_halfway_keeps_the_old_target() {
    let (mut s, img) = setup().await;
    let c = client();
    let img2 = make_image(7, 4000);
    kill_during_manifest_put(&mut s, &img2, "v1", "tag-link-write").await;
    assert_pulls(&c, &s, "ok", "v1", &img).await;
    let (st, body, _) = get(&c, &s.url("/v2/ok/tags/list")).await;
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["tags"],
        serde_json::json!(["v1"])
    );
    assert_eq!(
        assert_store_ok(&s.root(), true).tag("ok", "v1"),
        Some(img.digest.as_str())
    );
    // GC after the crash: the half-moved tag's extra index entry does not keep or break anything
    gc_then_pull(&mut s, &[("ok", "v1", &img)]).await;
    assert_eq!(
        get(&c, &s.url(&format!("/v2/ok/manifests/{}", img2.digest))).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_collection_killed_mid_sweep_then_rerun_leaves_every_tagged_image_whole() {
    let (mut s, img) = setup().await;
    let c = client();
    // two images that go away (untagged, and deleted), one that shares v1's config and stays
    let gone1 = make_image(8, 3000);
    let gone2 = make_image(9, 3000);
    let mut kept = make_image(10, 3000);
    kept.config = img.config.clone();
    let kept = rebuild(kept);
    push_image(&c, &s.url(""), "ok", "gone1", &gone1).await.unwrap();
    push_image(&c, &s.url(""), "ok", "gone2", &gone2).await.unwrap();
    push_image(&c, &s.url(""), "other", "kept", &kept).await.unwrap();
    for g in [&gone1, &gone2] {
        let r = c
            .delete(s.url(&format!("/v2/ok/manifests/{}", g.digest)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    s.kill();
    // pause at the fourth removal, and kill the collector there
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("garbage-collect")
        .arg("--config")
        .arg(s.config_path())
        .env("WHARF_FAILPOINTS", "gc-sweep=pause@4")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut reached = false;
    for line in stderr.lines() {
        if line.unwrap().contains("failpoint gc-sweep paused") {
            reached = true;
            break;
        }
    }
    assert!(reached, "garbage-collect never reached its sweep");
    child.kill().unwrap();
    child.wait().unwrap();
    // between the runs, every kept image is whole
    assert_store_ok(&s.root(), true);
    restart_with(&mut s, "");
    assert_pulls(&c, &s, "ok", "v1", &img).await;
    assert_pulls(&c, &s, "other", "kept", &kept).await;
    gc_then_pull(&mut s, &[("ok", "v1", &img), ("other", "kept", &kept)]).await;
    let view = assert_store_ok(&s.root(), true);
    for g in [&gone1, &gone2] {
        assert!(!view.blobs.contains(&g.digest));
        assert!(!view.blobs.contains(&sha256_digest(&g.layers[0])));
    }
}

/// Pushes of several images at once, killed at a pseudo-random moment, many times over one
/// store: every acknowledged manifest (and so its blobs) must survive each crash whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_killed_at_random_moments_lose_nothing_acknowledged() {
    let mut s = Server::start_with_delete();
    let mut acked: Vec<(String, Image)> = Vec::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rand = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    const RUNS: u64 = 8;
    for run in 0..RUNS {
        let c = client();
        let base = s.url("");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for k in 0..4u64 {
            let (c, base, tx) = (c.clone(), base.clone(), tx.clone());
            let seed = 100 + run * 10 + k;
            tasks.push(tokio::spawn(async move {
                // each task pushes images one after another until the server dies
                for i in 0..50u64 {
                    let img = make_image(seed * 1000 + i, 20_000 + (i as usize % 3) * 50_000);
                    let tag = format!("r{run}-k{k}-i{i}");
                    if push_image(&c, &base, "rand", &tag, &img).await.is_err() {
                        return;
                    }
                    let _ = tx.send((tag, img));
                }
            }));
        }
        drop(tx);
        tokio::time::sleep(Duration::from_millis(50 + rand(400))).await;
        s.kill();
        for t in tasks {
            let _ = t.await;
        }
        while let Some(a) = rx.recv().await {
            acked.push(a);
        }
        restart_with(&mut s, "");
        let c = client();
        for (tag, img) in &acked {
            assert_pulls(&c, &s, "rand", tag, img).await;
        }
        // whatever else is there is whole and consistent
        assert_store_ok(&s.root(), true);
    }
    assert!(!acked.is_empty(), "no push was acknowledged in {RUNS} runs");
    let tagged: Vec<(&str, &str, &Image)> = acked.iter().map(|(t, i)| ("rand", t.as_str(), i)).collect();
    gc_then_pull(&mut s, &tagged).await;
}
