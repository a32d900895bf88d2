//! Wharf on S3 with several replicas over one bucket, over real HTTP against a real S3 server
//! (SeaweedFS in CI: tests/s3/run.sh starts it, sets S3_ENDPOINT and runs these with
//! `--include-ignored`). They are `#[ignore]`d, so a plain `cargo test` lists them as ignored with
//! the reason instead of passing them without running; run without S3_ENDPOINT, they fail.
//!
//! Every test gets its own key prefix (`storage.s3.rootdirectory`), so tests share one bucket.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;

const MIB: usize = 1 << 20;

struct S3 {
    toml: String,
}

/// The S3 settings for a fresh prefix; panics when there is no server.
fn s3(test: &str) -> S3 {
    let endpoint = std::env::var("S3_ENDPOINT")
        .unwrap_or_else(|_| panic!("{test}: S3_ENDPOINT is not set (tests/s3/run.sh starts SeaweedFS and sets it)"));
    let bucket = std::env::var("S3_BUCKET").unwrap_or_else(|_| "wharf-ci".into());
    let prefix = format!("{test}-{}", uuid::Uuid::new_v4().simple());
    S3 {
        toml: format!(
            "[storage.s3]\nbucket = {bucket:?}\nregionendpoint = {endpoint:?}\nforcepathstyle = true\n\
             rootdirectory = {prefix:?}\nchunksize = {}\ngcgrace = \"0s\"\n\
             [storage.delete]\nenabled = true\n[storage.redirect]\ndisable = true\n",
            5 * MIB
        ),
    }
}

fn replica(s3: &S3) -> Server {
    Server::start_with(&s3.toml, &[])
}

fn loc(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

async fn start_session(s: &Server, repo: &str) -> String {
    let r = client()
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    loc(&r)
}

async fn patch(s: &Server, location: &str, start: usize, data: &[u8]) -> reqwest::Response {
    client()
        .patch(s.url(location))
        .header("content-range", format!("{}-{}", start, start + data.len() - 1))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
}

async fn get_blob(s: &Server, repo: &str, d: &str) -> (u16, Vec<u8>) {
    let r = client()
        .get(s.url(&format!("/v2/{repo}/blobs/{d}")))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// Push a one-layer image; returns (manifest digest, manifest bytes, layer digest).
async fn push_image(s: &Server, repo: &str, tag: &str, seed: u64) -> (String, Vec<u8>, String) {
    let layer = random_bytes(100_000 + seed as usize, seed);
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    let img = s.api().push_image(repo, tag, &config, &[&layer]).await.unwrap();
    (img.digest, img.bytes, img.layers[0].clone())
}

async fn put_manifest(s: &Server, repo: &str, reference: &str, bytes: &[u8]) -> reqwest::Response {
    client()
        .put(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn get_json(url: &str) -> serde_json::Value {
    let b = client().get(url).send().await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&b).unwrap()
}

async fn tag_digest(s: &Server, repo: &str, tag: &str) -> (u16, String) {
    let r = client()
        .head(s.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    let d = r
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), d)
}

#[tokio::test]
#[ignore = "needs S3_ENDPOINT (a SeaweedFS on loopback; see tests/s3/)"]
async fn two_replicas_give_the_same_answers() {
    let s3 = s3("same-answers");
    let (a, b) = (replica(&s3), replica(&s3));
    // a chunked upload alternating replicas: 12 MiB in a 3 MiB, a 7 MiB and a 2 MiB chunk,
    // so parts are cut across requests and tails carried between replicas
    let data = random_bytes(12 * MIB, 1);
    let d = sha256_digest(&data);
    let mut l = start_session(&a, "shared/repo").await;
    for (i, (s, e)) in [(0, 3 * MIB), (3 * MIB, 10 * MIB), (10 * MIB, 12 * MIB)]
        .into_iter()
        .enumerate()
    {
        let via = if i % 2 == 0 { &b } else { &a };
        let r = patch(via, &l, s, &data[s..e]).await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        assert_eq!(r.headers()["range"], format!("0-{}", e - 1).as_str());
        l = loc(&r);
        // the other replica reports the same offset
        let other = if i % 2 == 0 { &a } else { &b };
        let st = client().get(other.url(&l)).send().await.unwrap();
        assert_eq!(st.status(), 204);
        assert_eq!(st.headers()["range"], format!("0-{}", e - 1).as_str());
    }
    let r = client().put(a.url(&format!("{l}?digest={d}"))).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    for s in [&a, &b] {
        let (status, body) = get_blob(s, "shared/repo", &d).await;
        assert_eq!(status, 200);
        assert!(body == data, "blob differs through {}", s.addr);
        // Range passes through to the store
        let r = client()
            .get(s.url(&format!("/v2/shared/repo/blobs/{d}")))
            .header("range", "bytes=5242870-5242889")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(&r.bytes().await.unwrap()[..], &data[5242870..5242890]);
    }
    // manifests, tags and catalog
    let (md, mbytes, _) = push_image(&b, "shared/repo", "v1", 2).await;
    for s in [&a, &b] {
        assert_eq!(tag_digest(s, "shared/repo", "v1").await, (200, md.clone()));
        let r = client()
            .get(s.url("/v2/shared/repo/manifests/v1"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().to_vec(), mbytes);
        let tags: serde_json::Value = get_json(&s.url("/v2/shared/repo/tags/list")).await;
        assert_eq!(tags["tags"], serde_json::json!(["v1"]));
        let cat: serde_json::Value = get_json(&s.url("/v2/_catalog")).await;
        assert_eq!(cat["repositories"], serde_json::json!(["shared/repo"]));
    }
    // a wrong digest stores nothing, through either replica
    let l = start_session(&a, "shared/repo").await;
    let r = patch(&b, &l, 0, &random_bytes(6 * MIB, 3)).await;
    assert_eq!(r.status(), 202);
    let wrong = sha256_digest(b"something else");
    let r = client()
        .put(a.url(&format!("{}?digest={wrong}", loc(&r))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(get_blob(&b, "shared/repo", &wrong).await.0, 404);
    assert_eq!(client().get(b.url(&l)).send().await.unwrap().status(), 404);
}

/// The acceptance test: one replica is killed in the middle of a chunked upload (while it is
/// receiving a chunk), and the other replica finishes the upload from the last committed offset.
#[tokio::test]
#[ignore = "needs S3_ENDPOINT (a SeaweedFS on loopback; see tests/s3/)"]
async fn a_replica_killed_mid_upload_and_the_other_finishes_it() {
    let s3 = s3("kill-replica");
    let (mut a, b) = (replica(&s3), replica(&s3));
    let data = random_bytes(23 * MIB, 4);
    let d = sha256_digest(&data);
    let l = start_session(&a, "crash/me").await;
    let r = patch(&a, &l, 0, &data[..7 * MIB]).await;
    assert_eq!(r.status(), 202);
    let l = loc(&r);

    // A second chunk streams into replica A: 8 MiB arrive (so A uploads a part), then A is killed.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let url = a.url(&l);
    let inflight = tokio::spawn(async move {
        client()
            .patch(url)
            .header("content-range", format!("{}-{}", 7 * MIB, 23 * MIB - 1))
            .body(reqwest::Body::wrap_stream(futures::stream::poll_fn({
                let mut rx = rx;
                move |cx| rx.poll_recv(cx)
            })))
            .send()
            .await
    });
    for c in data[7 * MIB..15 * MIB].chunks(MIB) {
        tx.send(Ok(c.to_vec())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill();
    drop(tx);
    assert!(
        inflight.await.unwrap().is_err(),
        "the killed replica cannot have answered"
    );

    // Replica B knows the session at the last committed offset and takes the rest.
    let st = client().get(b.url(&l)).send().await.unwrap();
    assert_eq!(st.status(), 204);
    assert_eq!(st.headers()["range"], format!("0-{}", 7 * MIB - 1).as_str());
    let r = patch(&b, &l, 7 * MIB, &data[7 * MIB..]).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let r = client()
        .put(b.url(&format!("{}?digest={d}", loc(&r))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (status, body) = get_blob(&b, "crash/me", &d).await;
    assert_eq!(status, 200);
    assert!(body == data, "the finished blob differs from what was sent");
    // and the restarted replica serves it too
    a.restart();
    assert!(get_blob(&a, "crash/me", &d).await.1 == data);
}

/// Tag moves racing through two replicas end with one winner that both replicas report.
#[tokio::test]
#[ignore = "needs S3_ENDPOINT (a SeaweedFS on loopback; see tests/s3/)"]
async fn concurrent_tag_moves_through_two_replicas_end_with_one_winner() {
    let s3 = s3("tag-race");
    let (a, b) = (replica(&s3), replica(&s3));
    let mut images = Vec::new();
    for i in 0..6 {
        images.push(push_image(if i % 2 == 0 { &a } else { &b }, "race/app", &format!("img{i}"), 10 + i).await);
    }
    for round in 0..3 {
        let puts = images.iter().enumerate().map(|(i, (_, bytes, _))| {
            let s = if (i + round) % 2 == 0 { &a } else { &b };
            async move { put_manifest(s, "race/app", "latest", bytes).await.status().as_u16() }
        });
        let statuses = futures::future::join_all(puts).await;
        assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
        let (sa, da) = tag_digest(&a, "race/app", "latest").await;
        let (sb, db) = tag_digest(&b, "race/app", "latest").await;
        assert_eq!((sa, sb), (200, 200));
        assert_eq!(da, db, "the replicas disagree about the tag");
        let winner = images
            .iter()
            .find(|(d, _, _)| *d == da)
            .expect("the winner is one of the pushed manifests");
        // the winner's bytes are intact through both replicas
        for s in [&a, &b] {
            let r = client()
                .get(s.url("/v2/race/app/manifests/latest"))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap();
            assert_eq!(r.bytes().await.unwrap().to_vec(), winner.1);
        }
    }
    let tags: serde_json::Value = get_json(&b.url("/v2/race/app/tags/list")).await;
    assert_eq!(tags["tags"].as_array().unwrap().len(), 7);
}

/// garbage-collect on the bucket while both replicas run: it removes the deleted image's blobs,
/// keeps the other image pullable through both, and refuses pushes while it holds its lock.
#[tokio::test]
#[ignore = "needs S3_ENDPOINT (a SeaweedFS on loopback; see tests/s3/)"]
async fn garbage_collection_on_the_bucket_beside_running_replicas() {
    let s3 = s3("gc");
    let (a, b) = (replica(&s3), replica(&s3));
    let (keep, _, keep_layer) = push_image(&a, "gc/keep", "v1", 21).await;
    let (drop_d, _, drop_layer) = push_image(&b, "gc/drop", "v1", 22).await;
    let r = client()
        .delete(a.url(&format!("/v2/gc/drop/manifests/{drop_d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let gc = |extra: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        c.arg("garbage-collect")
            .args(extra)
            .arg("--config")
            .arg(a.config_path());
        c
    };
    let out = gc(&["--dry-run"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dry = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(dry.contains(&format!("blob {drop_layer} (")), "{dry}");
    assert!(!dry.contains(&keep_layer), "{dry}");

    // S3 keeps modification times in whole seconds, and GC spares blobs as new as its lock:
    // let the pushed blobs be a second older than the lock.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // a run with a grace period holds the lock long enough to see a push refused
    let child = gc(&[])
        .env("WHARF_STORAGE_S3_GCGRACE", "4s")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let r = client()
        .post(b.url(&format!(
            "/v2/gc/other/blobs/uploads/?digest={}",
            sha256_digest(b"during gc")
        )))
        .body("during gc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "a push during garbage collection is refused");
    assert!(error_codes(&r.bytes().await.unwrap()).contains(&"UNSUPPORTED".to_owned()));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let real = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        real.contains(&format!("blob {drop_layer} (")),
        "{real}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for s in [&a, &b] {
        assert_eq!(tag_digest(s, "gc/keep", "v1").await, (200, keep.clone()));
        assert_eq!(get_blob(s, "gc/keep", &keep_layer).await.0, 200);
        // the removed layer cannot be mounted any more: the store no longer has it
        let r = client()
            .post(s.url(&format!("/v2/gc/again/blobs/uploads/?mount={drop_layer}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // pushes work again once the lock is gone
    b.api().post_blob("gc/other", b"after gc").await.unwrap();
}

/// 5 GiB generated on the fly, streamed in one PATCH through a replica to S3, finished, and pulled
/// back through the same replica: its peak RSS stays under 128 MiB (parts are buffered, not blobs).
#[tokio::test]
#[ignore = "needs S3_ENDPOINT (a SeaweedFS on loopback; see tests/s3/)"]
async fn a_5_gib_blob_through_a_replica_with_peak_rss_under_128_mib() {
    const SIZE: u64 = 5 << 30;
    const CHUNK: usize = 1 << 20;
    let s3 = s3("five-gib");
    let a = replica(&s3);
    let l = start_session(&a, "big/blob").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let producer = tokio::task::spawn_blocking(move || {
        let block = random_bytes(CHUNK, 5);
        let mut h = Sha256::new();
        for i in 0..(SIZE / CHUNK as u64) {
            let mut c = block.clone();
            c[..8].copy_from_slice(&i.to_le_bytes());
            h.update(&c);
            if tx.blocking_send(Ok(c)).is_err() {
                break;
            }
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    });
    let started = std::time::Instant::now();
    let r = client()
        .patch(a.url(&l))
        .body(reqwest::Body::wrap_stream(futures::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        })))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let d = producer.await.unwrap();
    let pushed = started.elapsed();
    let r = client()
        .put(a.url(&format!("{}?digest={d}", loc(&r))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let finished = started.elapsed();
    let r = client()
        .get(a.url(&format!("/v2/big/blob/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!(n, SIZE);
    assert_eq!(format!("sha256:{}", hex::encode(h.finalize())), d);
    let total = started.elapsed();
    let peak = a.peak_rss_kib();
    eprintln!(
        "5 GiB via S3: PATCH {:.1}s ({:.0} MiB/s), PUT (server-side copy) {:.1}s, GET {:.1}s ({:.0} MiB/s); replica peak RSS {} MiB",
        pushed.as_secs_f64(),
        5120.0 / pushed.as_secs_f64(),
        (finished - pushed).as_secs_f64(),
        (total - finished).as_secs_f64(),
        5120.0 / (total - finished).as_secs_f64(),
        peak / 1024
    );
    assert!(peak < 128 * 1024, "replica peak RSS {peak} KiB >= 128 MiB");
}
