//! `wharf garbage-collect`: what is kept, what is removed, dry runs, interrupted runs, the lock
//! against a writing server, read-only mode and upload purging. Images are pushed over HTTP;
//! GC runs as the binary users run.
mod common;
mod faults_support;
use common::*;
use faults_support::gc;

use std::time::Duration;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

struct Image {
    digest: String,
    bytes: Vec<u8>,
    config: String,
    layers: Vec<(String, Vec<u8>)>,
}

async fn put_manifest(s: &Server, repo: &str, reference: &str, ct: &str, bytes: &[u8]) -> String {
    s.api().put_manifest_ok(repo, reference, ct, bytes).await.unwrap();
    sha256_digest(bytes)
}

/// Push an image whose layers are `layers` (some may be shared), tagged or by digest.
async fn push_image(
    s: &Server,
    repo: &str,
    tag: Option<&str>,
    seed: u64,
    layers: &[Vec<u8>],
    subject: Option<&Image>,
) -> Image {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let cd = s.api().post_blob(repo, &config).await.unwrap();
    let mut descs = Vec::new();
    let mut pushed = Vec::new();
    for l in layers {
        let d = s.api().post_blob(repo, l).await.unwrap();
        descs.push(
            serde_json::json!({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":d,"size":l.len()}),
        );
        pushed.push((d, l.clone()));
    }
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":config.len()},
        "layers": descs,
    });
    if let Some(sub) = subject {
        m["subject"] = serde_json::json!({"mediaType":OCI_MANIFEST,"digest":sub.digest,"size":sub.bytes.len()});
        m["artifactType"] = serde_json::json!("application/vnd.example.signature");
    }
    let bytes = serde_json::to_vec(&m).unwrap();
    let digest = sha256_digest(&bytes);
    put_manifest(s, repo, tag.unwrap_or(&digest), OCI_MANIFEST, &bytes).await;
    Image {
        digest,
        bytes,
        config: cd,
        layers: pushed,
    }
}

async fn status(s: &Server, path: &str) -> u16 {
    client().get(s.url(path)).send().await.unwrap().status().as_u16()
}

/// The image pulls byte-exact: manifest by digest, config and every layer.
async fn assert_pulls(s: &Server, repo: &str, img: &Image) {
    let c = client();
    let m = c
        .get(s.url(&format!("/v2/{repo}/manifests/{}", img.digest)))
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200, "manifest {} of {repo}", img.digest);
    assert_eq!(m.bytes().await.unwrap().to_vec(), img.bytes);
    assert_eq!(status(s, &format!("/v2/{repo}/blobs/{}", img.config)).await, 200);
    for (d, data) in &img.layers {
        let r = c.get(s.url(&format!("/v2/{repo}/blobs/{d}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "layer {d} of {repo}");
        assert_eq!(r.bytes().await.unwrap().to_vec(), *data, "layer {d} is byte-exact");
    }
}

fn blob_file(s: &Server, d: &str) -> std::path::PathBuf {
    let hex = d.strip_prefix("sha256:").unwrap();
    s.root()
        .join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
}

fn gc_ok(s: &Server, args: &[&str]) -> String {
    let (code, out, err) = gc(s, args, &[]);
    assert_eq!(code, 0, "garbage-collect {args:?} failed:\n{out}\n{err}");
    out
}

async fn delete(s: &Server, path: &str) {
    let r = client().delete(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 202, "DELETE {path}");
}

#[tokio::test]
async fn shared_layers_are_kept_and_a_deleted_images_own_layers_swept() {
    let mut s = Server::start_with_delete();
    let base = random_bytes(20_000, 1);
    let (own1, own2) = (random_bytes(10_000, 2), random_bytes(10_000, 3));
    let one = push_image(&s, "app", Some("one"), 1, &[base.clone(), own1.clone()], None).await;
    let two = push_image(&s, "app", Some("two"), 2, &[base.clone(), own2.clone()], None).await;
    delete(&s, &format!("/v2/app/manifests/{}", one.digest)).await;
    s.kill();
    let out = gc_ok(&s, &[]);
    assert!(
        out.contains(&format!("blob {} (10000 bytes) deleted", sha256_digest(&own1))),
        "{out}"
    );
    s.restart();
    assert_pulls(&s, "app", &two).await;
    assert!(
        blob_file(&s, &sha256_digest(&base)).exists(),
        "the shared base layer is kept"
    );
    assert!(
        !blob_file(&s, &sha256_digest(&own1)).exists(),
        "the deleted image's own layer is swept"
    );
    assert!(
        !blob_file(&s, &one.config).exists(),
        "the deleted image's config is swept"
    );
    assert!(
        !blob_file(&s, &one.digest).exists(),
        "the deleted manifest's bytes are swept"
    );
    assert_eq!(
        status(&s, &format!("/v2/app/blobs/{}", sha256_digest(&own1))).await,
        404
    );
}

#[tokio::test]
async fn a_moved_tag_keeps_the_old_manifest_unless_delete_untagged() {
    let mut s = Server::start();
    let old = push_image(&s, "app", Some("latest"), 1, &[random_bytes(5_000, 10)], None).await;
    let new = push_image(&s, "app", Some("latest"), 2, &[random_bytes(5_000, 11)], None).await;
    s.kill();
    gc_ok(&s, &[]);
    s.restart();
    assert_pulls(&s, "app", &old).await;
    assert_pulls(&s, "app", &new).await;
    s.kill();
    let out = gc_ok(&s, &["--delete-untagged"]);
    assert!(out.contains(&format!("app: manifest {} deleted", old.digest)), "{out}");
    s.restart();
    assert_eq!(status(&s, &format!("/v2/app/manifests/{}", old.digest)).await, 404);
    assert!(!blob_file(&s, &old.layers[0].0).exists());
    assert_pulls(&s, "app", &new).await;
    let tag = client().get(s.url("/v2/app/manifests/latest")).send().await.unwrap();
    assert_eq!(tag.bytes().await.unwrap().to_vec(), new.bytes);
}

#[tokio::test]
async fn untagged_children_of_a_tagged_index_are_kept() {
    let mut s = Server::start();
    let amd = push_image(&s, "multi", None, 1, &[random_bytes(3_000, 20)], None).await;
    let arm = push_image(&s, "multi", None, 2, &[random_bytes(3_000, 21)], None).await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": amd.bytes.len(), "platform": {"architecture":"amd64","os":"linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": arm.bytes.len(), "platform": {"architecture":"arm64","os":"linux"}},
        ]
    }))
    .unwrap();
    let index_digest = put_manifest(&s, "multi", "v1", OCI_INDEX, &index).await;
    // an unrelated untagged image, which -m removes
    let stray = push_image(&s, "multi", None, 3, &[random_bytes(3_000, 22)], None).await;
    s.kill();
    let out = gc_ok(&s, &["-m"]);
    assert!(
        out.contains(&format!("multi: manifest {} deleted", stray.digest)),
        "{out}"
    );
    assert!(!out.contains(&amd.digest) && !out.contains(&arm.digest), "{out}");
    s.restart();
    assert_pulls(&s, "multi", &amd).await;
    assert_pulls(&s, "multi", &arm).await;
    assert_eq!(status(&s, &format!("/v2/multi/manifests/{index_digest}")).await, 200);
    assert_eq!(status(&s, &format!("/v2/multi/manifests/{}", stray.digest)).await, 404);
}

#[tokio::test]
async fn referrers_live_and_die_with_their_subject() {
    let mut s = Server::start_with_delete();
    let kept = push_image(&s, "app", Some("kept"), 1, &[random_bytes(2_000, 30)], None).await;
    let gone = push_image(&s, "app", Some("gone"), 2, &[random_bytes(2_000, 31)], None).await;
    let sig_kept = push_image(&s, "app", None, 3, &[random_bytes(500, 32)], Some(&kept)).await;
    let sig_gone = push_image(&s, "app", None, 4, &[random_bytes(500, 33)], Some(&gone)).await;
    delete(&s, &format!("/v2/app/manifests/{}", gone.digest)).await;
    s.kill();
    gc_ok(&s, &[]);
    s.restart();
    assert_pulls(&s, "app", &kept).await;
    assert_pulls(&s, "app", &sig_kept).await;
    assert_eq!(status(&s, &format!("/v2/app/manifests/{}", sig_gone.digest)).await, 404);
    assert!(
        !blob_file(&s, &sig_gone.layers[0].0).exists(),
        "the removed referrer's blobs are swept"
    );
    let idx: serde_json::Value = client()
        .get(s.url(&format!("/v2/app/referrers/{}", kept.digest)))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(idx["manifests"][0]["digest"], sig_kept.digest.as_str());
    // With -m, an untagged referrer of a tagged image is kept too.
    s.kill();
    gc_ok(&s, &["-m"]);
    s.restart();
    assert_pulls(&s, "app", &sig_kept).await;
}

/// The lines a run prints about removals, with the verb stripped, sorted.
fn removals(out: &str, verb: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.ends_with(verb))
        .map(|l| l.trim_end_matches(verb).trim().to_owned())
        .collect();
    v.sort();
    v
}

async fn messy_store(s: &Server) -> (Image, Image) {
    let keep = push_image(
        s,
        "a",
        Some("v1"),
        1,
        &[random_bytes(4_000, 40), random_bytes(4_000, 41)],
        None,
    )
    .await;
    push_image(s, "a", Some("v1"), 2, &[random_bytes(4_000, 42)], None).await; // moves v1
    let keep = {
        let k = push_image(
            s,
            "a",
            Some("v2"),
            1,
            &keep.layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>(),
            None,
        )
        .await;
        assert_eq!(k.digest, keep.digest);
        k
    };
    let other = push_image(s, "b/c", Some("x"), 3, &[random_bytes(4_000, 43)], None).await;
    push_image(s, "b/c", None, 4, &[random_bytes(4_000, 44)], Some(&other)).await;
    push_image(s, "b/c", None, 5, &[random_bytes(4_000, 45)], None).await;
    s.api().post_blob("b/c", &random_bytes(4_000, 46)).await.unwrap(); // a blob no manifest uses
    (keep, other)
}

#[tokio::test]
async fn a_dry_run_removes_nothing_and_predicts_the_real_run() {
    let mut s = Server::start();
    let (keep, other) = messy_store(&s).await;
    s.kill();
    let before = files_under(&s.root());
    let dry = gc_ok(&s, &["-m", "--dry-run"]);
    assert_eq!(files_under(&s.root()), before, "a dry run changes nothing");
    let real = gc_ok(&s, &["-m"]);
    let predicted = removals(&dry, "eligible for deletion");
    assert!(!predicted.is_empty(), "{dry}");
    assert_eq!(predicted, removals(&real, "deleted"), "dry:\n{dry}\nreal:\n{real}");
    let summary = |out: &str| out.lines().last().unwrap().replace("eligible for deletion", "deleted");
    assert_eq!(summary(&dry), summary(&real));
    s.restart();
    assert_pulls(&s, "a", &keep).await;
    assert_pulls(&s, "b/c", &other).await;
}

#[tokio::test]
async fn a_run_killed_halfway_then_rerun_leaves_every_kept_image_whole() {
    let mut s = Server::start();
    let (keep, other) = messy_store(&s).await;
    s.kill();
    let (code, out, err) = gc(&s, &["-m"], &[("WHARF_FAILPOINT_GC_ABORT_AFTER", "3")]);
    assert_ne!(code, 0, "the failpoint aborts the run: {out}{err}");
    s.restart();
    assert_pulls(&s, "a", &keep).await;
    assert_pulls(&s, "b/c", &other).await;
    s.kill();
    gc_ok(&s, &["-m"]);
    let again = gc_ok(&s, &["-m", "--dry-run"]);
    assert!(
        removals(&again, "eligible for deletion").is_empty(),
        "nothing unreferenced remains:\n{again}"
    );
    s.restart();
    assert_pulls(&s, "a", &keep).await;
    assert_pulls(&s, "b/c", &other).await;
}

#[tokio::test]
async fn gc_refuses_to_run_beside_a_writing_server_and_runs_beside_a_read_only_one() {
    let mut s = Server::start();
    let img = push_image(&s, "app", Some("v1"), 1, &[random_bytes(1_000, 50)], None).await;
    let (code, _, err) = gc(&s, &[], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("read-write") && err.contains("readonly"), "{err}");

    s.set_env("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{\"enabled\": true}");
    s.restart();
    // pulls work, writes answer 405 UNSUPPORTED
    assert_pulls(&s, "app", &img).await;
    let r = client().post(s.url("/v2/app/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["UNSUPPORTED"]);
    let r = client()
        .put(s.url("/v2/app/manifests/v2"))
        .header("content-type", OCI_MANIFEST)
        .body(img.bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    gc_ok(&s, &["-m"]);
    assert_pulls(&s, "app", &img).await;
}

/// Garbage collection removes no repository: one whose every manifest was deleted and swept
/// keeps its `_manifests/` and stays in the catalog, as with registry:2. So a read-only server
/// beside the run, serving the catalog from its in-memory index, stays right, and agrees with
/// a fresh walk afterwards.
#[tokio::test]
async fn a_repository_emptied_by_gc_stays_in_the_catalog() {
    let mut s = Server::start_with_delete();
    push_image(&s, "keep", Some("v1"), 1, &[random_bytes(1_000, 60)], None).await;
    let gone = push_image(&s, "gone", Some("v1"), 2, &[random_bytes(1_000, 61)], None).await;
    delete(&s, "/v2/gone/manifests/v1").await; // the tag: the manifest is left to the collection
    s.set_env("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{\"enabled\": true}");
    s.restart();
    let catalog = |s: &Server| {
        let url = s.url("/v2/_catalog");
        async move { client().get(url).send().await.unwrap().json_value().await["repositories"].clone() }
    };
    let before = catalog(&s).await;
    assert_eq!(before, serde_json::json!(["gone", "keep"]));
    let out = gc_ok(&s, &["-m"]);
    assert!(
        out.contains(&format!("gone: manifest {} deleted", gone.digest)),
        "{out}"
    );
    assert!(!blob_file(&s, &gone.digest).exists(), "the manifest's bytes are swept");
    assert_eq!(catalog(&s).await, before, "beside the run");
    s.restart();
    assert_eq!(catalog(&s).await, before, "a fresh walk");
}

#[tokio::test]
async fn abandoned_uploads_are_purged_by_the_server_and_by_gc() {
    let s = Server::start_with(
        "[storage.maintenance.uploadpurging]\nage = \"1s\"\ninterval = \"1s\"\n",
        &[],
    );
    let r = client().post(s.url("/v2/app/blobs/uploads/")).send().await.unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(status(&s, &loc).await, 204);
    let purged = wait_for(Duration::from_secs(15), || {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &s.url(&loc)])
            .output()
            .map(|o| o.stdout == b"404")
            .unwrap_or(false)
    });
    assert!(purged, "the server purges an upload older than the configured age");

    let mut s = Server::start();
    let r = client().post(s.url("/v2/app/blobs/uploads/")).send().await.unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    s.kill();
    let out = gc_ok(&s, &[]);
    assert!(
        removals(&out, "deleted").is_empty(),
        "a fresh upload is not purged: {out}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let out = gc_ok(&s, &["--upload-max-age", "1s"]);
    assert!(out.contains("app: upload") && out.contains("deleted"), "{out}");
    s.restart();
    assert_eq!(status(&s, &loc).await, 404);
}

trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

/// Write a manifest into the store as registry:2 or an older Wharf would have (bytes, revision
/// link, tag), bypassing today's PUT checks.
fn plant_manifest(s: &Server, repo: &str, tag: &str, bytes: &[u8]) -> String {
    let d = sha256_digest(bytes);
    let hex = d.strip_prefix("sha256:").unwrap();
    let v2 = s.root().join("docker/registry/v2");
    let write = |p: std::path::PathBuf, data: &[u8]| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    write(blob_file(s, &d), bytes);
    let m = v2.join(format!("repositories/{repo}/_manifests"));
    write(m.join(format!("revisions/sha256/{hex}/link")), d.as_bytes());
    write(m.join(format!("tags/{tag}/index/sha256/{hex}/link")), d.as_bytes());
    write(m.join(format!("tags/{tag}/current/link")), d.as_bytes());
    d
}

/// Regression (issue 17): a manifest stored with conflicting type signals (an older Wharf
/// accepted an image without `mediaType` carrying `"manifests": []`) was served as an index
/// and walked as one, so garbage collection deleted the config and layers of the tagged image.
/// Such manifests are now refused at PUT; for those already stored, GET serves the image
/// reading, and garbage collection marks the union of every reading (config, layers and index
/// children, under any spelling a case-insensitive reader matches), whatever `mediaType` says.
#[tokio::test]
async fn gc_never_deletes_a_blob_any_reading_of_a_kept_manifest_references() {
    let mut s = Server::start();
    let desc = |mt: &str, d: &str, size: usize| serde_json::json!({"mediaType": mt, "digest": d, "size": size});
    let layer_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    let config_type = "application/vnd.oci.image.config.v1+json";
    let mut blobs = Vec::new();
    for seed in 60..66 {
        let data = random_bytes(2_000, seed);
        blobs.push((s.api().post_blob("old", &data).await.unwrap(), data));
    }
    let child = push_image(&s, "old", None, 61, &[random_bytes(1_000, 70)], None).await;
    let child2 = push_image(&s, "old", None, 62, &[random_bytes(1_000, 71)], None).await;
    let d = |i: usize| {
        desc(
            if i.is_multiple_of(2) { config_type } else { layer_type },
            &blobs[i].0,
            blobs[i].1.len(),
        )
    };
    // no mediaType, image fields and a stray empty `manifests`: the issue's manifest
    let stray = serde_json::json!({"schemaVersion": 2, "config": d(0), "layers": [d(1)], "manifests": []});
    // an index by its mediaType, with image fields too
    let mixed = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_MANIFEST, &child.digest, child.bytes.len())], "config": d(2), "layers": [d(3)]});
    // an image whose `Manifests` Go's encoding/json reads as `manifests`
    let folded = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": d(4), "layers": [d(5)],
        "Manifests": [desc(OCI_MANIFEST, &child2.digest, child2.bytes.len())]});
    s.kill();
    for (tag, m) in [("stray", &stray), ("mixed", &mixed), ("folded", &folded)] {
        plant_manifest(&s, "old", tag, &serde_json::to_vec(m).unwrap());
    }
    s.restart();
    for (tag, served) in [("stray", OCI_MANIFEST), ("mixed", OCI_INDEX), ("folded", OCI_MANIFEST)] {
        let r = client()
            .get(s.url(&format!("/v2/old/manifests/{tag}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{tag}");
        assert_eq!(
            r.headers()["content-type"],
            served,
            "{tag} is served as the reading a client can pull"
        );
    }
    s.kill();
    let out = gc_ok(&s, &["--delete-untagged"]);
    s.restart();
    for (d, data) in &blobs {
        let r = client().get(s.url(&format!("/v2/old/blobs/{d}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "blob {d} was kept:\n{out}");
        assert_eq!(r.bytes().await.unwrap().to_vec(), *data);
    }
    assert_pulls(&s, "old", &child).await;
    assert_pulls(&s, "old", &child2).await;
    assert!(out.contains("0 blobs (0 bytes) and 0 manifests deleted"), "{out}");
}
