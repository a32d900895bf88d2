//! Helpers for the reliability suite (crash, disk, concurrency and hostile-input tests): a
//! store verifier that walks the filesystem layout, raw HTTP over TCP (requests a normal
//! client would refuse or normalise), small image pushes, and a snapshot of what is stored.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};

use super::common::{Api, Server, random_bytes, sha256_digest};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const V2: &str = "docker/registry/v2";

/// What the verifier found: every repository's tags (tag -> digest) and manifests, and the blobs.
#[derive(Debug, Default)]
pub struct StoreView {
    pub blobs: BTreeSet<String>,
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
    pub revisions: BTreeMap<String, BTreeSet<String>>,
    pub layers: BTreeMap<String, BTreeSet<String>>,
}

impl StoreView {
    pub fn tag(&self, repo: &str, tag: &str) -> Option<&str> {
        self.tags.get(repo)?.get(tag).map(String::as_str)
    }
}

fn read_link(p: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(text.trim().to_owned())
}

fn digest_of(alg: &str, data: &[u8]) -> String {
    match alg {
        "sha512" => format!("sha512:{}", hex::encode(Sha512::digest(data))),
        _ => format!("sha256:{}", hex::encode(Sha256::digest(data))),
    }
}

fn dirs(p: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(p) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Walk `<root>/docker/registry/v2` and check the invariants: every blob's bytes match the
/// digest its path names; every layer and revision link names the digest of its own path and
/// points at stored bytes; every tag's `current` link names a revision of its repository; with
/// `strict`, every revision's config, layers and index children are also present in the
/// repository (every image is pullable; explicit blob deletes make this false, so racing
/// deletes are checked without it). Returns what it saw, or every violation found.
pub fn verify_store(root: &Path, strict: bool) -> Result<StoreView, Vec<String>> {
    let v2 = root.join(V2);
    let mut problems = Vec::new();
    let mut view = StoreView::default();
    for alg in dirs(&v2.join("blobs")) {
        for pre in dirs(&v2.join("blobs").join(&alg)) {
            for hex in dirs(&v2.join("blobs").join(&alg).join(&pre)) {
                let data = v2.join("blobs").join(&alg).join(&pre).join(&hex).join("data");
                let want = format!("{alg}:{hex}");
                match std::fs::read(&data) {
                    Ok(bytes) => {
                        let got = digest_of(&alg, &bytes);
                        if got != want {
                            problems.push(format!("blob {want} holds bytes with digest {got}"));
                        }
                        if !hex.starts_with(&pre) {
                            problems.push(format!("blob {want} filed under {pre}"));
                        }
                        view.blobs.insert(want);
                    }
                    // A directory left without data by an interrupted sweep is not a blob.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => problems.push(format!("blob {want}: {e}")),
                }
            }
        }
    }
    let repos_root = v2.join("repositories");
    let mut repos = Vec::new();
    fn find_repos(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for name in dirs(dir) {
            let p = dir.join(&name);
            if name == "_manifests" || name == "_layers" || name == "_uploads" {
                let rel = dir.strip_prefix(base).unwrap().display().to_string();
                if !out.contains(&rel) {
                    out.push(rel);
                }
            } else if !name.starts_with('_') {
                find_repos(base, &p, out);
            }
        }
    }
    find_repos(&repos_root, &repos_root, &mut repos);
    repos.sort();
    for repo in &repos {
        let r = repos_root.join(repo);
        // links of a kind: <dir>/<alg>/<hex>/link must hold <alg>:<hex>
        let links = |dir: &Path, what: &str, problems: &mut Vec<String>| -> BTreeSet<String> {
            let mut out = BTreeSet::new();
            for alg in dirs(dir) {
                for hex in dirs(&dir.join(&alg)) {
                    let want = format!("{alg}:{hex}");
                    match read_link(&dir.join(&alg).join(&hex).join("link")) {
                        Ok(got) if got == want => {
                            out.insert(want);
                        }
                        Ok(got) => problems.push(format!("{repo}: {what} link {want} holds {got:?}")),
                        Err(e) if e.contains("No such file") => {}
                        Err(e) => problems.push(format!("{repo}: {what} link {want}: {e}")),
                    }
                }
            }
            out
        };
        let layers = links(&r.join("_layers"), "layer", &mut problems);
        let revisions = links(&r.join("_manifests/revisions"), "revision", &mut problems);
        for d in layers.iter().chain(&revisions) {
            if !view.blobs.contains(d) {
                problems.push(format!("{repo}: link to {d}, whose bytes are not stored"));
            }
        }
        let mut tags = BTreeMap::new();
        for tag in dirs(&r.join("_manifests/tags")) {
            let current = r.join("_manifests/tags").join(&tag).join("current/link");
            match read_link(&current) {
                Ok(d) if revisions.contains(&d) => {
                    tags.insert(tag, d);
                }
                Ok(d) => problems.push(format!("{repo}:{tag} points at {d}, not a revision of the repository")),
                Err(e) if e.contains("No such file") => {}
                Err(e) => problems.push(format!("{repo}:{tag}: {e}")),
            }
        }
        if strict {
            for d in &revisions {
                let Some((alg, hex)) = d.split_once(':') else { continue };
                let data = v2.join("blobs").join(alg).join(&hex[..2]).join(hex).join("data");
                let Ok(bytes) = std::fs::read(&data) else { continue };
                let Ok(m) = serde_json::from_slice::<Value>(&bytes) else {
                    continue;
                };
                let mut needs: Vec<(&str, String)> = Vec::new();
                if let Some(c) = m["config"]["digest"].as_str() {
                    needs.push(("blob", c.to_owned()));
                }
                for l in m["layers"].as_array().into_iter().flatten() {
                    if let Some(ld) = l["digest"].as_str() {
                        needs.push(("blob", ld.to_owned()));
                    }
                }
                for c in m["manifests"].as_array().into_iter().flatten() {
                    if let Some(cd) = c["digest"].as_str() {
                        needs.push(("manifest", cd.to_owned()));
                    }
                }
                for (kind, n) in needs {
                    let ok = if kind == "blob" {
                        layers.contains(&n) && view.blobs.contains(&n)
                    } else {
                        revisions.contains(&n)
                    };
                    if !ok {
                        problems.push(format!("{repo}: manifest {d} needs {kind} {n}, which is not pullable"));
                    }
                }
            }
        }
        view.tags.insert(repo.clone(), tags);
        view.revisions.insert(repo.clone(), revisions);
        view.layers.insert(repo.clone(), layers);
    }
    if problems.is_empty() { Ok(view) } else { Err(problems) }
}

/// [`verify_store`], panicking with every violation.
pub fn assert_store_ok(root: &Path, strict: bool) -> StoreView {
    verify_store(root, strict).unwrap_or_else(|p| panic!("store verification failed:\n  {}", p.join("\n  ")))
}

/// Every file under the registry's data (`docker/registry/v2`), relative, sorted: to show that
/// a refused request stored nothing.
pub fn stored_files(root: &Path) -> Vec<String> {
    super::common::files_under(&root.join(V2))
}

/// A small image: config, `layers` layer blobs and the manifest, with their digests.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub digest: String,
}

pub fn make_image(seed: u64, layer_size: usize) -> Image {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let layers = vec![random_bytes(layer_size, seed)];
    let desc = |mt: &str, b: &[u8]| json!({"mediaType": mt, "digest": sha256_digest(b), "size": b.len()});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    }))
    .unwrap();
    let digest = sha256_digest(&manifest);
    Image {
        config,
        layers,
        manifest,
        digest,
    }
}

pub async fn put_manifest(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
    m: &[u8],
) -> reqwest::Result<u16> {
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", OCI_MANIFEST)
        .body(m.to_vec())
        .send()
        .await?;
    Ok(r.status().as_u16())
}

/// Push an image's blobs and its manifest under `tag`; the first status that is not 201, if any.
pub async fn push_image(c: &reqwest::Client, base: &str, repo: &str, tag: &str, img: &Image) -> Result<(), String> {
    let api = Api::new(base).with_client(c);
    for b in std::iter::once(&img.config).chain(&img.layers) {
        match api.post_blob_status(repo, b).await {
            Ok(201) => {}
            other => return Err(format!("blob push: {other:?}")),
        }
    }
    match put_manifest(c, base, repo, tag, &img.manifest).await {
        Ok(201) => Ok(()),
        other => Err(format!("manifest push: {other:?}")),
    }
}

/// GET a path; (status, body, Docker-Content-Digest).
pub async fn get(c: &reqwest::Client, url: &str) -> (u16, Vec<u8>, Option<String>) {
    let r = c
        .get(url)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let st = r.status().as_u16();
    let dcd = r
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (st, r.bytes().await.unwrap().to_vec(), dcd)
}

/// Pull an image by tag and check every byte: the manifest, then its config and layers.
pub async fn assert_pulls(c: &reqwest::Client, s: &Server, repo: &str, tag: &str, img: &Image) {
    let (st, body, dcd) = get(c, &s.url(&format!("/v2/{repo}/manifests/{tag}"))).await;
    assert_eq!(st, 200, "{repo}:{tag}: {}", String::from_utf8_lossy(&body));
    assert_eq!(body, img.manifest, "{repo}:{tag}: manifest bytes");
    assert_eq!(dcd.as_deref(), Some(img.digest.as_str()));
    for b in std::iter::once(&img.config).chain(&img.layers) {
        let (st, got, _) = get(c, &s.url(&format!("/v2/{repo}/blobs/{}", sha256_digest(b)))).await;
        assert_eq!(st, 200, "{repo}: blob {}", sha256_digest(b));
        assert!(got == *b, "{repo}: blob {} bytes differ", sha256_digest(b));
    }
}

/// One raw HTTP/1.1 exchange over TCP: `request` is sent as is (no normalisation of the path,
/// headers or framing), then the answer is read until the server closes or `wait` passes.
/// Returns (status, headers+body text); status 0 when nothing came back.
pub fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if response_complete(&out) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Whether `out` holds a whole response (headers and a body of its Content-Length).
fn response_complete(out: &[u8]) -> bool {
    let text = String::from_utf8_lossy(out);
    let Some(end) = text.find("\r\n\r\n") else { return false };
    let len = text[..end]
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    out.len() >= end + 4 + len
}

/// The spec error codes of a raw response's JSON body (empty when it has none).
pub fn raw_codes(text: &str) -> Vec<String> {
    let Some((_, body)) = text.split_once("\r\n\r\n") else {
        return Vec::new();
    };
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v["errors"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e["code"].as_str().map(str::to_owned)).collect())
        })
        .unwrap_or_default()
}

/// Run `wharf garbage-collect` on the server's store (the server must not be running, or must
/// be read-only); returns (exit code, stdout, stderr).
pub fn gc(s: &Server, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("garbage-collect")
        .arg("--config")
        .arg(s.config_path())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("WHARF_FAILPOINTS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
