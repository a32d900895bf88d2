//! Eviction of pull-through cache content by `wharf garbage-collect` (issue 10, item 6): by age
//! (`evictafter`) and by a size budget (`proxy.maxsize`), only in cached repositories, with dry
//! runs. An upstream Wharf and a cache Wharf over real HTTP; a tag's age is its link's mtime,
//! which the tests set into the past.
mod auth_support;
mod common;
use auth_support::*;
use common::*;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// An image as the upstream holds it: manifest digest and bytes, and its blobs' digests.
struct Pulled {
    digest: String,
    blobs: Vec<String>,
}

/// Pull `repo:tag` through `base` (manifest, then every blob, each checked against its digest).
async fn pull(base: &str, repo: &str, tag: &str) -> Pulled {
    let r = client()
        .get(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "pull {repo}:{tag}");
    let manifest = r.bytes().await.unwrap();
    let v: Value = serde_json::from_slice(&manifest).unwrap();
    let mut blobs = vec![v["config"]["digest"].as_str().unwrap().to_owned()];
    blobs.extend(
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned()),
    );
    for b in &blobs {
        let r = client()
            .get(format!("{base}/v2/{repo}/blobs/{b}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "blob {b} of {repo}");
        assert_eq!(&sha256_digest(&r.bytes().await.unwrap()), b, "blob {b} is byte-exact");
    }
    Pulled {
        digest: sha256_digest(&manifest),
        blobs,
    }
}

fn v2(s: &Server) -> PathBuf {
    s.root().join("docker/registry/v2")
}

fn blob_file(s: &Server, d: &str) -> PathBuf {
    let hex = d.strip_prefix("sha256:").unwrap();
    v2(s).join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
}

fn tag_link(s: &Server, repo: &str, tag: &str) -> PathBuf {
    v2(s).join(format!("repositories/{repo}/_manifests/tags/{tag}/current/link"))
}

fn revision_link(s: &Server, repo: &str, d: &str) -> PathBuf {
    v2(s).join(format!(
        "repositories/{repo}/_manifests/revisions/sha256/{}/link",
        d.strip_prefix("sha256:").unwrap()
    ))
}

/// Every blob of the image (manifest included) is in the store, or none is.
fn stored(s: &Server, img: &Pulled) -> Vec<bool> {
    std::iter::once(&img.digest)
        .chain(&img.blobs)
        .map(|d| blob_file(s, d).exists())
        .collect()
}

/// Set a tag link's mtime `ago` into the past: as if last fetched or revalidated then.
fn age_tag(s: &Server, repo: &str, tag: &str, ago: Duration) {
    let f = std::fs::File::options()
        .write(true)
        .open(tag_link(s, repo, tag))
        .unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

fn gc(s: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("garbage-collect")
        .arg("--config")
        .arg(s.config_path())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "garbage-collect {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// The lines of GC output naming evictions (`verb`: "evicted" or "eligible for eviction").
fn evictions(out: &str, verb: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains(&format!(" {verb}: ")))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect()
}

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn old_cached_tags_are_evicted_with_their_blobs_and_pushed_repositories_are_untouched() {
    let up = Server::start();
    let upstream = up.url("");
    let mut digests = Vec::new();
    for (repo, seed) in [
        ("lib/old", 1),
        ("lib/fresh", 2),
        ("lib/pinned", 4),
        ("lib/stale-pin", 5),
    ] {
        digests.push(
            push_image(&client(), &upstream, repo, "v1", &Cred::None, seed)
                .await
                .unwrap(),
        );
    }
    let mut cache = Server::start_with(
        &format!("[[proxy.upstream]]\nprefix = \"up/\"\nurl = \"{upstream}\"\nevictafter = \"720h\"\n"),
        &[],
    );
    let base = cache.url("");
    let old = pull(&base, "up/lib/old", "v1").await;
    let fresh = pull(&base, "up/lib/fresh", "v1").await;
    // Pulled by digest only (no tag in the cache): the revision link's age counts.
    let pinned = pull(&base, "up/lib/pinned", &digests[2]).await;
    let stale_pin = pull(&base, "up/lib/stale-pin", &digests[3]).await;
    // An ordinary repository beside the cache, with a tag as old as the evicted one.
    push_image(&client(), &base, "local/app", "v1", &Cred::None, 3)
        .await
        .unwrap();
    let local = pull(&base, "local/app", "v1").await;
    cache.kill();
    age_tag(&cache, "up/lib/old", "v1", 31 * DAY);
    age_tag(&cache, "local/app", "v1", 31 * DAY);
    age_tag(&cache, "up/lib/fresh", "v1", 29 * DAY);
    std::fs::File::options()
        .write(true)
        .open(revision_link(&cache, "up/lib/stale-pin", &stale_pin.digest))
        .unwrap()
        .set_modified(SystemTime::now() - 40 * DAY)
        .unwrap();

    // A dry run says what would go, and removes nothing.
    let out = gc(&cache, &["--dry-run"]);
    let stale_name = format!("up/lib/stale-pin@{}", stale_pin.digest);
    assert_eq!(
        evictions(&out, "eligible for eviction"),
        vec!["up/lib/old:v1", stale_name.as_str()],
        "{out}"
    );
    assert!(
        out.contains("2 cached entries eligible for eviction (2 by age, 0 by size)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("blob {} ", old.blobs[1])),
        "the sweep is predicted too:\n{out}"
    );
    assert!(tag_link(&cache, "up/lib/old", "v1").exists());
    assert_eq!(stored(&cache, &old), vec![true; 3]);

    let out = gc(&cache, &[]);
    assert_eq!(
        evictions(&out, "evicted"),
        vec!["up/lib/old:v1", stale_name.as_str()],
        "{out}"
    );
    assert_eq!(stored(&cache, &stale_pin), vec![false; 3], "{out}");
    assert_eq!(
        stored(&cache, &pinned),
        vec![true; 3],
        "a recent pull by digest is kept"
    );
    assert!(
        out.contains("last fetched or revalidated 744h ago, older than 720h"),
        "{out}"
    );
    assert!(!tag_link(&cache, "up/lib/old", "v1").exists(), "the tag is gone");
    assert_eq!(
        stored(&cache, &old),
        vec![false; 3],
        "its manifest and blobs are freed:\n{out}"
    );
    assert!(
        !revision_link(&cache, "up/lib/old", &old.digest).exists(),
        "the untagged manifest left behind is swept"
    );
    assert_eq!(stored(&cache, &fresh), vec![true; 3]);
    assert_eq!(
        stored(&cache, &local),
        vec![true; 3],
        "ordinary repositories are never evicted"
    );
    assert!(tag_link(&cache, "local/app", "v1").exists());
    // A second run finds nothing more to evict.
    assert!(evictions(&gc(&cache, &[]), "evicted").is_empty());

    cache.restart();
    let base = cache.url("");
    assert_eq!(pull(&base, "up/lib/fresh", "v1").await.digest, fresh.digest);
    assert_eq!(pull(&base, "up/lib/pinned", &pinned.digest).await.digest, pinned.digest);
    assert_eq!(
        pull(&base, "up/lib/stale-pin", &stale_pin.digest).await.digest,
        stale_pin.digest
    );
    assert_eq!(pull(&base, "local/app", "v1").await.digest, local.digest);
    // The evicted image is fetched from the upstream again.
    assert_eq!(pull(&base, "up/lib/old", "v1").await.digest, old.digest);
    assert_eq!(stored(&cache, &old), vec![true; 3]);
}

#[tokio::test]
async fn over_the_size_budget_the_least_recently_used_tags_go_first() {
    let up = Server::start();
    let upstream = up.url("");
    for (repo, seed) in [("a", 11), ("b", 12), ("c", 13)] {
        push_image(&client(), &upstream, repo, "v1", &Cred::None, seed)
            .await
            .unwrap();
    }
    // One image is some 2.4 kB (a 2000-byte layer, config and manifest): two fit in 5000 bytes.
    // Single-upstream mode (every repository is cached); the budget is given to GC's environment.
    let mut cache = Server::start_with(&format!("[proxy]\nremoteurl = \"{upstream}\"\n"), &[]);
    let base = cache.url("");
    let a = pull(&base, "a", "v1").await;
    let b = pull(&base, "b", "v1").await;
    let c = pull(&base, "c", "v1").await;
    cache.kill();
    // Last used: c longest ago, then a; b just now.
    age_tag(&cache, "c", "v1", 3 * DAY);
    age_tag(&cache, "a", "v1", 2 * DAY);

    let gc_env = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("garbage-collect")
            .arg("--config")
            .arg(cache.config_path())
            .args(args)
            .env_remove("RUST_LOG")
            .env("REGISTRY_PROXY_MAXSIZE", "5000")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = gc_env(&["--dry-run"]);
    assert_eq!(evictions(&out, "eligible for eviction"), vec!["c:v1"], "{out}");
    assert_eq!(stored(&cache, &c), vec![true; 3]);
    let out = gc_env(&[]);
    assert_eq!(evictions(&out, "evicted"), vec!["c:v1"], "{out}");
    assert!(out.contains("(0 by age, 1 by size)"), "{out}");
    assert!(out.contains("least recently used"), "{out}");
    assert_eq!(stored(&cache, &c), vec![false; 3], "{out}");
    assert_eq!(stored(&cache, &a), vec![true; 3]);
    assert_eq!(stored(&cache, &b), vec![true; 3]);
    // Within the budget now: nothing more goes.
    assert!(evictions(&gc_env(&[]), "evicted").is_empty());

    // Without the budget (the variable is only given to GC above), nothing is evicted at all.
    let out = gc(&cache, &[]);
    assert!(!out.contains("cached entries"), "{out}");
    assert_eq!(stored(&cache, &a), vec![true; 3]);

    cache.restart();
    let base = cache.url("");
    assert_eq!(pull(&base, "c", "v1").await.digest, c.digest, "re-fetched upstream");
    assert_eq!(pull(&base, "b", "v1").await.digest, b.digest);
}
