//! Disk faults on a real filesystem: the store on a small tmpfs that fills up during pushes,
//! then gets space back; and the store on a read-only mount. Mounting needs root (CI runs as
//! root); without it each test says so loudly and skips.
mod common;
mod faults_support;
use common::*;
use faults_support::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted over a directory for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(at.to_owned())),
            Ok(o) => {
                eprintln!(
                    "\n*** SKIPPING a disk-fault test: cannot mount a tmpfs (needs root): {}\n",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("\n*** SKIPPING a disk-fault test: cannot run mount: {e}\n");
                None
            }
        }
    }

    fn remount(&self, options: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        // The mount point is the server's storage root inside its temporary directory. If the
        // server was dropped first, its TempDir could not remove a directory that was still a
        // mount point: remove the whole temporary directory now, so no run leaves it in /tmp.
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A server whose store is a fresh tmpfs of `size`, or None when mounting is not possible.
fn server_on_tmpfs(size: &str, delete: bool) -> Option<(Server, Tmpfs)> {
    let mut s = if delete {
        Server::start_with_delete()
    } else {
        Server::start()
    };
    s.kill();
    let _ = std::fs::remove_dir_all(s.root());
    let m = Tmpfs::mount(&s.root(), size)?;
    s.restart();
    Some((s, m))
}

async fn assert_error_body(r: reqwest::Response, what: &str) -> u16 {
    let st = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    assert!(
        (500..600).contains(&st),
        "{what}: {st} {}",
        String::from_utf8_lossy(&body)
    );
    let codes = error_codes(&body);
    assert_eq!(codes.len(), 1, "{what}");
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_5xx_keeps_what_was_stored_and_recovers() {
    let Some((s, disk)) = server_on_tmpfs("8m", true) else {
        return;
    };
    let c = client();
    let img = make_image(1, 100_000);
    push_image(&c, &s.url(""), "ok", "v1", &img).await.unwrap();

    // a monolithic push bigger than the disk
    let big = random_bytes(12 << 20, 2);
    let d = sha256_digest(&big);
    let r = c
        .post(s.url(&format!("/v2/ok/blobs/uploads/?digest={d}")))
        .body(big.clone())
        .send()
        .await;
    match r {
        Ok(r) => {
            assert_error_body(r, "monolithic push on a full disk").await;
        }
        // The server answered before the client finished sending, and the client saw the
        // connection close instead; what matters below is that nothing was kept.
        Err(e) => eprintln!("monolithic push on a full disk: the client saw {e}"),
    }
    assert_eq!(get(&c, &s.url(&format!("/v2/ok/blobs/{d}"))).await.0, 404);
    assert!(
        stored_files(&s.root()).iter().all(|f| !f.contains("/_uploads/")),
        "the failed push left its bytes behind"
    );
    assert_pulls(&c, &s, "ok", "v1", &img).await;

    // a chunked push: 1 MiB chunks until the disk is full; the failed chunk is rolled back
    let r = c.post(s.url("/v2/ok/blobs/uploads/")).send().await.unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let chunk = 1 << 20;
    let mut offset = 0;
    loop {
        assert!(offset < big.len(), "the disk never filled up");
        let r = c
            .patch(s.url(&loc))
            .header("content-range", format!("{offset}-{}", offset + chunk - 1))
            .body(big[offset..offset + chunk].to_vec())
            .send()
            .await
            .unwrap();
        if r.status() == 202 {
            offset += chunk;
            continue;
        }
        assert_error_body(r, "a chunk on a full disk").await;
        break;
    }
    let r = c.get(s.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"].to_str().unwrap(), format!("0-{}", offset - 1));
    // a manifest on a full disk: refused, and the tag does not move
    let img2 = make_image(3, 10);
    let r = c
        .put(s.url("/v2/ok/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(img2.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "its blobs are unknown: checked before anything is written"
    );
    // fill what is left, then push a manifest whose blobs exist
    let filler = s.root().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 8 << 20]);
    let mut img3 = make_image(4, 10);
    img3.config = img.config.clone();
    img3.layers = img.layers.clone();
    img3.manifest = {
        let mut v: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
        v["annotations"] = serde_json::json!({"x": "y".repeat(5000)});
        serde_json::to_vec(&v).unwrap()
    };
    let r = c
        .put(s.url("/v2/ok/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(img3.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_error_body(r, "a manifest on a full disk").await;
    assert_pulls(&c, &s, "ok", "v1", &img).await;
    assert_store_ok(&s.root(), true);

    // space returns: the upload resumes where it stopped, and everything works again
    std::fs::remove_file(&filler).unwrap();
    disk.remount("size=64m");
    let r = c
        .patch(s.url(&loc))
        .header("content-range", format!("{offset}-{}", big.len() - 1))
        .body(big[offset..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c.put(s.url(&format!("{loc}?digest={d}"))).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(get(&c, &s.url(&format!("/v2/ok/blobs/{d}"))).await.1 == big);
    assert_eq!(
        put_manifest(&c, &s.url(""), "ok", "v1", &img3.manifest).await.unwrap(),
        201
    );
    let img3 = Image {
        digest: sha256_digest(&img3.manifest),
        ..img3
    };
    assert_pulls(&c, &s, "ok", "v1", &img3).await;
    assert_store_ok(&s.root(), true);
    drop(s);
}

/// Regression for two bugs: on a read-only mount a server in read-only mode answered /readyz
/// 503 (its storage probe insisted on writing), so a load balancer took away the replica that
/// was serving pulls fine; and without the maintenance flag the server refused to start
/// (it could not open its lock file) instead of serving the pulls it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_serves_pulls() {
    let Some((mut s, disk)) = server_on_tmpfs("32m", false) else {
        return;
    };
    let c = client();
    let img = make_image(5, 200_000);
    push_image(&c, &s.url(""), "ok", "v1", &img).await.unwrap();
    s.kill();
    disk.remount("ro");
    for readonly in ["true", "false"] {
        // with the maintenance flag, and without it (the server finds out for itself)
        s.set_env("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", readonly);
        s.restart();
        assert_pulls(&c, &s, "ok", "v1", &img).await;
        let r = c
            .get(s.url(&format!("/v2/ok/blobs/{}", sha256_digest(&img.layers[0]))))
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap(), img.layers[0][10..20]);
        let (st, body, _) = get(&c, &s.url("/v2/_catalog")).await;
        assert_eq!((st, body), (200, br#"{"repositories":["ok"]}"#.to_vec()));
        // writes are refused cleanly
        let r = c.post(s.url("/v2/ok/blobs/uploads/")).send().await.unwrap();
        assert_eq!(r.status(), 405, "readonly={readonly}");
        assert_eq!(error_codes(&r.bytes().await.unwrap()), ["UNSUPPORTED"]);
        // and the server reports itself ready: pulls are what it can serve
        let r = c.get(s.url("/readyz")).send().await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "readonly={readonly}: {}",
            String::from_utf8_lossy(&r.bytes().await.unwrap())
        );
    }
    drop(s);
}
