//! Pull-through cache over real HTTP: a second Wharf is the upstream (bearer tokens from its
//! built-in token server, or Basic), the cache Wharf points at it. Transfers are counted at the
//! upstream, from its /metrics.
mod auth_support;
mod common;
use auth_support::*;
use common::*;

use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;

const SERVICE: &str = "upstream-test";

/// An upstream Wharf on a fixed loopback port (so it can be restarted where the cache expects
/// it), requiring bearer tokens from its own /token for every request.
struct Upstream {
    s: Server,
    dir: tempfile::TempDir,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_key(dir: &std::path::Path) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(dir.join("token.key"), kp.serialize_pem()).unwrap();
}

fn start_token_upstream(expiration: &str) -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path());
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, htpasswd(&[("mirror", "mpw"), ("pusher", "ppw")])).unwrap();
    let toml = format!(
        "[auth.token]\nservice = \"{SERVICE}\"\nissuer = \"upstream\"\nsigningkey = {:?}\nhtpasswd = {:?}\nexpiration = \"{expiration}\"\n[http.debug]\naddr = \"127.0.0.1:0\"\n",
        dir.path().join("token.key").display().to_string(),
        users.display().to_string()
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let s = Server::start_with(&toml, &[("WHARF_HTTP_ADDR", &addr)]);
    Upstream { s, dir, port }
}

impl Upstream {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A push token for `repo` (as `pusher`).
    async fn token(&self, repo: &str) -> Cred {
        let r = client()
            .get(
                self.s
                    .url(&format!("/token?service={SERVICE}&scope=repository:{repo}:pull,push")),
            )
            .basic_auth("pusher", Some("ppw"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        Cred::Bearer(v["token"].as_str().unwrap().to_owned())
    }

    async fn push(&self, repo: &str, tag: &str, seed: u64) -> String {
        let cred = self.token(repo).await;
        push_image(&client(), &self.url(), repo, tag, &cred, seed)
            .await
            .unwrap()
    }
}

/// The debug listener's URL (`http.debug.addr = "127.0.0.1:0"`), from the server's log.
fn debug_url(s: &Server, path: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let addr = s
            .logs()
            .iter()
            .rev()
            .find(|l| l.contains("debug listener"))
            .and_then(|l| {
                let i = l.find("addr=")?;
                Some(l[i + 5..].split_whitespace().next()?.to_owned())
            });
        if let Some(addr) = addr {
            return format!("http://{addr}{path}");
        }
        assert!(std::time::Instant::now() < deadline, "no debug listener in the log");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `wharf_http_requests_total` of a server for one method, route template and status. With auth
/// on, metrics are served only on the debug listener (the upstream has one).
async fn requests(s: &Server, method: &str, route: &str, status: u16) -> u64 {
    let mut r = client().get(s.url("/metrics")).send().await.unwrap();
    if r.status() == 404 {
        r = client().get(debug_url(s, "/metrics")).send().await.unwrap();
    }
    let text = r.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("wharf_http_requests_total{"))
        .filter(|l| {
            l.contains(&format!("method=\"{method}\""))
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("status=\"{status}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

const BLOB_ROUTE: &str = "/v2/{name}/blobs/{digest}";
const MANIFEST_ROUTE: &str = "/v2/{name}/manifests/{reference}";

fn cache_toml(url: &str, ttl: &str) -> String {
    format!("[proxy]\nremoteurl = \"{url}\"\nusername = \"mirror\"\npassword = \"mpw\"\nttl = \"{ttl}\"\n")
}

async fn get_manifest(base: &str, repo: &str, reference: &str) -> reqwest::Response {
    client()
        .get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
}

/// The manifest's config and layer digests.
fn blobs_of(manifest: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(manifest).unwrap();
    let mut out = vec![v["config"]["digest"].as_str().unwrap().to_owned()];
    out.extend(
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned()),
    );
    out
}

/// GET a blob and hash it as it streams: `Ok(digest)` for a complete 200, `Err(status or
/// transfer error)` otherwise.
async fn pull_blob(base: &str, repo: &str, digest: &str) -> Result<String, String> {
    let r = client()
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("status {}", r.status()));
    }
    let mut h = Sha256::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        h.update(&chunk.map_err(|e| format!("transfer failed: {e}"))?);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

#[tokio::test]
async fn pulls_through_then_serves_the_cache_with_the_upstream_down() {
    let mut up = start_token_upstream("5m");
    let digest = up.push("team/app", "v1", 1).await;
    // registry:2's variables configure it, the TTL comes from the file.
    let url = up.url();
    let cache = Server::start_with(
        "[proxy]\nttl = \"2s\"\n",
        &[
            ("REGISTRY_PROXY_REMOTEURL", &url),
            ("REGISTRY_PROXY_USERNAME", "mirror"),
            ("REGISTRY_PROXY_PASSWORD", "mpw"),
        ],
    );
    let base = cache.url("");

    // Anonymous clients of the cache get what only the mirror's credentials can read upstream.
    let r = get_manifest(&base, "team/app", "v1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert!(r.headers().get("warning").is_none());
    let manifest = r.bytes().await.unwrap();
    assert_eq!(sha256_digest(&manifest), digest);
    let blobs = blobs_of(&manifest);
    for b in &blobs {
        assert_eq!(pull_blob(&base, "team/app", b).await.as_deref(), Ok(b.as_str()));
    }
    // HEAD and Range on stored blobs, and a second pull: served locally.
    let r = client()
        .get(format!("{base}/v2/team/app/blobs/{}", blobs[1]))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().len(), 10);
    let before = requests(&up.s, "GET", BLOB_ROUTE, 200).await;
    assert_eq!(before, 2, "one upstream GET per blob");
    for b in &blobs {
        assert_eq!(pull_blob(&base, "team/app", b).await.as_deref(), Ok(b.as_str()));
    }
    assert_eq!(
        requests(&up.s, "GET", BLOB_ROUTE, 200).await,
        before,
        "cached blobs are not fetched again"
    );

    // Cached content is ordinary content: tags list and catalog show it.
    let tags = client()
        .get(format!("{base}/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    let tags: Value = serde_json::from_slice(&tags.bytes().await.unwrap()).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    assert_eq!(catalog(&client(), &base, &Cred::None).await, vec!["team/app"]);

    // Pushes and deletes are refused with 405 UNSUPPORTED.
    let r = client()
        .post(format!("{base}/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["UNSUPPORTED"]);
    let r = client()
        .put(format!("{base}/v2/team/app/manifests/v2"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // The upstream goes away: everything cached is still served, the tag without a warning
    // while its TTL lasts.
    up.s.kill();
    let r = get_manifest(&base, "team/app", "v1").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("warning").is_none());
    assert_eq!(get_manifest(&base, "team/app", &digest).await.status(), 200);
    for b in &blobs {
        assert_eq!(pull_blob(&base, "team/app", b).await.as_deref(), Ok(b.as_str()));
    }
    // After the TTL the tag cannot be checked: served from the cache, with a 299 warning.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = get_manifest(&base, "team/app", "v1").await;
    assert_eq!(r.status(), 200);
    let warning = r.headers()["warning"].to_str().unwrap().to_owned();
    assert!(warning.starts_with("299 - \"") && warning.ends_with('"'), "{warning}");
    assert!(warning.contains("stale"), "{warning}");
    assert_eq!(r.bytes().await.unwrap(), manifest);
    // What was never cached cannot be served: an upstream error, not a 404 or bad bytes.
    let r = get_manifest(&base, "team/app", "v2").await;
    assert_eq!(r.status(), 502);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["UNAVAILABLE"]);
    let missing = sha256_digest(b"never pushed");
    assert_eq!(
        pull_blob(&base, "team/app", &missing).await,
        Err("status 502 Bad Gateway".to_owned())
    );

    // Back up: the tag is confirmed with a HEAD, the warning goes.
    up.s.restart();
    let r = get_manifest(&base, "team/app", "v1").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("warning").is_none());
    assert_eq!(requests(&up.s, "HEAD", MANIFEST_ROUTE, 200).await, 1);
    assert_eq!(requests(&up.s, "GET", MANIFEST_ROUTE, 200).await, 0);
    // An unknown repository upstream is unknown here too.
    let r = get_manifest(&base, "team/nothing", "v1").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_moved_tag_is_followed_after_the_ttl() {
    let up = start_token_upstream("5m");
    let first = up.push("app", "latest", 10).await;
    let cache = Server::start_with(&cache_toml(&up.url(), "2s"), &[]);
    let base = cache.url("");
    let r = get_manifest(&base, "app", "latest").await;
    assert_eq!(r.headers()["docker-content-digest"], first.as_str());
    let second = up.push("app", "latest", 11).await;
    assert_ne!(first, second);
    // Within the TTL the cache answers alone.
    let r = get_manifest(&base, "app", "latest").await;
    assert_eq!(r.headers()["docker-content-digest"], first.as_str());
    assert_eq!(requests(&up.s, "HEAD", MANIFEST_ROUTE, 200).await, 0);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = get_manifest(&base, "app", "latest").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], second.as_str());
    let m = r.bytes().await.unwrap();
    assert_eq!(sha256_digest(&m), second);
    for b in blobs_of(&m) {
        assert_eq!(pull_blob(&base, "app", &b).await, Ok(b.clone()));
    }
    // The old manifest stays reachable by digest (immutable, never re-checked).
    let gets = requests(&up.s, "GET", MANIFEST_ROUTE, 200).await;
    assert_eq!(get_manifest(&base, "app", &first).await.status(), 200);
    assert_eq!(requests(&up.s, "GET", MANIFEST_ROUTE, 200).await, gets);
}

#[tokio::test]
async fn concurrent_pulls_of_one_uncached_blob_make_one_upstream_transfer() {
    const SIZE: usize = 200 << 20;
    let up = start_token_upstream("5m");
    let blob = random_bytes(SIZE, 42);
    let digest = sha256_digest(&blob);
    let cred = up.token("big").await;
    let r = cred
        .apply(client().post(format!("{}/v2/big/blobs/uploads/?digest={digest}", up.url())))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let cache = Server::start_with(&cache_toml(&up.url(), "5m"), &[]);
    let base = cache.url("");
    let pulls: Vec<_> = (0..20)
        .map(|_| {
            let (base, digest) = (base.clone(), digest.clone());
            tokio::spawn(async move { pull_blob(&base, "big", &digest).await })
        })
        .collect();
    for p in pulls {
        assert_eq!(p.await.unwrap(), Ok(digest.clone()));
    }
    assert_eq!(
        requests(&up.s, "GET", BLOB_ROUTE, 200).await,
        1,
        "one upstream transfer"
    );
    assert_eq!(requests(&cache, "GET", BLOB_ROUTE, 200).await, 20);
    // The cache held a window of the blob at a time, not the blob.
    let rss = cache.peak_rss_kib();
    assert!(rss < 150 * 1024, "cache peak RSS {rss} KiB");
}

#[tokio::test]
async fn a_corrupted_upstream_blob_is_not_cached() {
    let up = start_token_upstream("5m");
    let digest = up.push("app", "v1", 7).await;
    let cache = Server::start_with(&cache_toml(&up.url(), "5m"), &[]);
    let base = cache.url("");
    let r = get_manifest(&base, "app", "v1").await;
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let layer = blobs_of(&r.bytes().await.unwrap())[1].clone();
    // Other bytes of the same length in the upstream's store: it serves them as they are.
    let hex = layer.strip_prefix("sha256:").unwrap();
    let file =
        up.s.root()
            .join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let len = std::fs::metadata(&file).unwrap().len() as usize;
    std::fs::write(&file, random_bytes(len, 999)).unwrap();
    for _ in 0..2 {
        let got = pull_blob(&base, "app", &layer).await;
        assert!(got.as_ref().is_err_and(|e| e.starts_with("transfer failed")), "{got:?}");
    }
    // Nothing was stored, and nothing is served.
    let stored = files_under(&cache.root());
    assert!(!stored.iter().any(|f| f.contains(hex)), "{stored:?}");
    let r = client()
        .head(format!("{base}/v2/app/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    // (a HEAD asks the upstream, which still claims the blob)
    assert_eq!(r.status(), 200);
    assert_eq!(requests(&up.s, "GET", BLOB_ROUTE, 200).await, 2);
    // A Range request waits for the (failing) transfer and gets an error status.
    let r = client()
        .get(format!("{base}/v2/app/blobs/{layer}"))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);

    // A manifest whose bytes do not match the digest asked for is refused, and not cached.
    let other = up.push("app", "v2", 8).await;
    let hex = other.strip_prefix("sha256:").unwrap();
    let file =
        up.s.root()
            .join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] = b' ';
    std::fs::write(&file, bytes).unwrap();
    for _ in 0..2 {
        let r = get_manifest(&base, "app", &other).await;
        assert_eq!(r.status(), 502);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["UNAVAILABLE"]);
    }
    assert!(!files_under(&cache.root()).iter().any(|f| f.contains(hex)));
}

#[tokio::test]
async fn upstream_tokens_are_cached_and_renewed() {
    // Tokens last 3 s upstream: one fetch serves several requests, a later one fetches anew.
    let up = start_token_upstream("3s");
    up.push("app", "v1", 3).await;
    up.push("app", "v2", 4).await;
    async fn tokens(up: &Upstream) -> u64 {
        requests(&up.s, "GET", "/token", 200).await
    }
    let pushes = tokens(&up).await;
    let cache = Server::start_with(&cache_toml(&up.url(), "5m"), &[]);
    let base = cache.url("");
    for tag in ["v1", "v2"] {
        let m = get_manifest(&base, "app", tag).await.bytes().await.unwrap();
        for b in blobs_of(&m) {
            assert_eq!(pull_blob(&base, "app", &b).await, Ok(b.clone()));
        }
    }
    assert_eq!(tokens(&up).await - pushes, 1, "one token for six requests");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(
        get_manifest(&base, "app", &up.push("app", "v3", 5).await)
            .await
            .status(),
        200
    );
    let pushes = pushes + 1;
    assert_eq!(tokens(&up).await - pushes, 2, "an expired token is renewed");

    // The mirror's credentials are needed: without them the upstream refuses the cache.
    let anon = Server::start_with(&format!("[proxy]\nremoteurl = \"{}\"\n", up.url()), &[]);
    let r = get_manifest(&anon.url(""), "app", "v1").await;
    assert_eq!(r.status(), 502);
}

#[tokio::test]
async fn a_refused_token_is_renewed() {
    let mut up = start_token_upstream("5m");
    up.push("app", "v1", 8).await;
    let cache = Server::start_with(&cache_toml(&up.url(), "5m"), &[]);
    let base = cache.url("");
    assert_eq!(get_manifest(&base, "app", "v1").await.status(), 200);
    // The upstream restarts with another signing key: the cached token (valid for minutes) is
    // refused with 401, and a new one is fetched.
    write_key(up.dir.path());
    up.s.restart();
    let d = up.push("app", "v2", 9).await;
    assert_eq!(requests(&up.s, "GET", "/token", 200).await, 1, "the push's token");
    let r = get_manifest(&base, "app", &d).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        requests(&up.s, "GET", MANIFEST_ROUTE, 401).await,
        1,
        "the old token was tried"
    );
    assert_eq!(requests(&up.s, "GET", "/token", 200).await, 2, "and renewed");
}

#[tokio::test]
async fn several_upstreams_by_prefix_beside_local_repositories() {
    let tok = start_token_upstream("5m");
    // A second upstream with Basic authentication.
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, htpasswd(&[("bob", "bpw")])).unwrap();
    let basic = Server::start_with(
        &format!(
            "[auth.htpasswd]\nrealm = \"r\"\npath = {:?}\n",
            users.display().to_string()
        ),
        &[],
    );
    let on_basic = push_image(
        &client(),
        &basic.url(""),
        "lib/app",
        "v1",
        &Cred::basic("bob", "bpw"),
        21,
    )
    .await
    .unwrap();
    let on_token = tok.push("lib/app", "v1", 22).await;
    let cache = Server::start_with(
        &format!(
            "[[proxy.upstream]]\nprefix = \"tok/\"\nurl = \"{}\"\nusername = \"mirror\"\npassword = \"mpw\"\n\
             [[proxy.upstream]]\nprefix = \"basic/\"\nurl = \"{}\"\nusername = \"bob\"\npassword = \"bpw\"\nttl = \"1s\"\n",
            tok.url(),
            basic.url("")
        ),
        &[],
    );
    let base = cache.url("");
    // The prefix is stripped: tok/lib/app is the token upstream's lib/app.
    for (repo, want) in [("tok/lib/app", &on_token), ("basic/lib/app", &on_basic)] {
        let r = get_manifest(&base, repo, "v1").await;
        assert_eq!(r.status(), 200, "{repo}");
        assert_eq!(r.headers()["docker-content-digest"], want.as_str());
        for b in blobs_of(&r.bytes().await.unwrap()) {
            assert_eq!(pull_blob(&base, repo, &b).await, Ok(b.clone()));
        }
    }
    // Other repositories are ordinary: pushes work there, and are refused under a prefix.
    assert!(
        push_image(&client(), &base, "local/app", "v1", &Cred::None, 23)
            .await
            .is_ok()
    );
    assert_eq!(
        push_image(&client(), &base, "tok/lib/mine", "v1", &Cred::None, 24).await,
        Err(405)
    );
    assert_eq!(get_manifest(&base, "local/app", "v1").await.status(), 200);
    // A repository without a prefix that is unknown locally is simply unknown.
    assert_eq!(get_manifest(&base, "lib/app", "v1").await.status(), 404);
    let mut repos = catalog(&client(), &base, &Cred::None).await;
    repos.sort();
    assert_eq!(repos, vec!["basic/lib/app", "local/app", "tok/lib/app"]);
}

/// A minimal upstream that can be told to rate-limit: one image manifest under `app:v1`.
async fn fake_upstream(limited: std::sync::Arc<std::sync::atomic::AtomicBool>) -> (String, Vec<u8>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use std::sync::atomic::Ordering;
    let config = b"{}".to_vec();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(&config), "size": 2},
        "layers": []
    }))
    .unwrap();
    let digest = sha256_digest(&manifest);
    let body = manifest.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (limited, body, digest) = (limited.clone(), body.clone(), digest.clone());
        async move {
            if limited.load(Ordering::SeqCst) {
                return StatusCode::TOO_MANY_REQUESTS.into_response();
            }
            if req.uri().path() != "/v2/app/manifests/v1" {
                return StatusCode::NOT_FOUND.into_response();
            }
            let headers = [
                ("content-type", OCI_MANIFEST.to_owned()),
                ("docker-content-digest", digest),
            ];
            if req.method() == axum::http::Method::HEAD {
                (headers, axum::body::Body::empty()).into_response()
            } else {
                (headers, body).into_response()
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, manifest)
}

#[tokio::test]
async fn a_rate_limiting_upstream_gets_the_cached_tag_served_with_a_warning() {
    let limited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (url, manifest) = fake_upstream(limited.clone()).await;
    let cache = Server::start_with(&format!("[proxy]\nremoteurl = \"{url}\"\nttl = \"1s\"\n"), &[]);
    let base = cache.url("");
    let r = get_manifest(&base, "app", "v1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), manifest);
    limited.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = get_manifest(&base, "app", "v1").await;
    assert_eq!(r.status(), 200);
    let warning = r.headers()["warning"].to_str().unwrap().to_owned();
    assert!(
        warning.starts_with("299 - \"") && warning.contains("rate-limiting"),
        "{warning}"
    );
    assert_eq!(r.bytes().await.unwrap(), manifest);
    // Nothing cached to stand in: the client is told to slow down.
    let r = get_manifest(&base, "app", "v2").await;
    assert_eq!(r.status(), 429);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["TOOMANYREQUESTS"]);
    // The limit lifts: the tag is confirmed, no warning.
    limited.store(false, std::sync::atomic::Ordering::SeqCst);
    let r = get_manifest(&base, "app", "v1").await;
    assert!(r.headers().get("warning").is_none());
}

/// Issue 17, item 3: a cached repository serves a blob only when its own upstream has it for
/// that repository. Bytes stored for any other reason (a private push, another upstream
/// repository) are neither served nor revealed through it; once the upstream confirms the
/// blob, the stored copy is linked and served without a second transfer.
#[tokio::test]
async fn a_cached_repository_serves_only_blobs_its_upstream_confirms() {
    let mut up = start_token_upstream("5m");
    up.push("lib/app", "v1", 41).await;
    up.push("lib/other", "v1", 42).await;
    // A blob the upstream has in lib/app (and not in lib/other); someone also pushed it here.
    let shared = random_bytes(3000, 77);
    let shared_d = sha256_digest(&shared);
    let cred = up.token("lib/app").await;
    let r = cred
        .apply(client().post(format!("{}/v2/lib/app/blobs/uploads/?digest={shared_d}", up.url())))
        .body(shared.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, htpasswd(&[("owner", "opw")])).unwrap();
    let cache = Server::start_with(
        &format!(
            "[auth.htpasswd]\nrealm = \"cache\"\npath = {:?}\n\
             [[auth.access]]\nrepositories = [\"up/**\"]\nanonymous = true\nusers = [\"*\"]\nactions = [\"pull\"]\n\
             [[auth.access]]\nrepositories = [\"private/**\"]\nusers = [\"owner\"]\nactions = [\"*\"]\n\
             [[proxy.upstream]]\nprefix = \"up/\"\nurl = \"{}\"\nusername = \"mirror\"\npassword = \"mpw\"\n",
            users.display().to_string(),
            up.url()
        ),
        &[],
    );
    let base = cache.url("");
    let owner = Cred::basic("owner", "opw");
    // The owner's private content on the cache server: an image, a loose blob, the shared blob.
    let private_manifest = push_image(&client(), &base, "private/secret", "v1", &owner, 43)
        .await
        .unwrap();
    let r = owner
        .apply(client().get(format!("{base}/v2/private/secret/manifests/v1")))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let mut private_blobs = blobs_of(&r.bytes().await.unwrap());
    for bytes in [random_bytes(3000, 66), shared.clone()] {
        let d = sha256_digest(&bytes);
        let r = owner
            .apply(client().post(format!("{base}/v2/private/secret/blobs/uploads/?digest={d}")))
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        private_blobs.push(d);
    }
    private_blobs.pop(); // (the shared one: checked below)
    let anon_private = client()
        .get(format!("{base}/v2/private/secret/blobs/{}", private_blobs[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(anon_private.status(), 401, "anonymous callers may not pull private/");

    // What an anonymous caller gets through the cache for a digest stored nowhere...
    let nowhere = sha256_digest(b"stored nowhere");
    let r = client()
        .get(format!("{base}/v2/up/lib/app/blobs/{nowhere}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UNKNOWN"]);
    // ... is exactly what it gets for the private ones: GET, Range GET, HEAD, concurrent GETs.
    for d in &private_blobs {
        let url = format!("{base}/v2/up/lib/app/blobs/{d}");
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404, "GET {d}");
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UNKNOWN"]);
        let r = client().get(&url).header("range", "bytes=0-9").send().await.unwrap();
        assert_eq!(r.status(), 404, "Range GET {d}");
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UNKNOWN"]);
        let r = client().head(&url).send().await.unwrap();
        assert_eq!(r.status(), 404, "HEAD {d}: no existence oracle");
        let gets: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let r = client().get(&url).send().await.unwrap();
                    (r.status().as_u16(), error_codes(&r.bytes().await.unwrap()))
                })
            })
            .collect();
        for g in gets {
            assert_eq!(
                g.await.unwrap(),
                (404, vec!["BLOB_UNKNOWN".to_owned()]),
                "concurrent GET {d}"
            );
        }
    }
    // The private manifest is not served by digest either.
    let r = get_manifest(&base, "up/lib/app", &private_manifest).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["MANIFEST_UNKNOWN"]);
    // Nothing was linked into the cached repository, so nothing can be mounted out of it.
    let cached_links = |root: &std::path::Path| -> Vec<String> {
        files_under(root)
            .into_iter()
            .filter(|f| f.contains("repositories/up/"))
            .collect()
    };
    for d in &private_blobs {
        let hex = d.strip_prefix("sha256:").unwrap();
        assert!(
            !cached_links(&cache.root()).iter().any(|f| f.contains(hex)),
            "{d} was linked into up/lib/app"
        );
        let r = owner
            .apply(client().post(format!(
                "{base}/v2/private/other/blobs/uploads/?mount={d}&from=up/lib/app"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{d} is not mountable from up/lib/app");
    }

    // The upstream has the shared blob in lib/app: confirmed with a HEAD, then the stored copy
    // is linked and served; no transfer, one copy on disk.
    let heads = requests(&up.s, "HEAD", BLOB_ROUTE, 200).await;
    let r = client()
        .head(format!("{base}/v2/up/lib/app/blobs/{shared_d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], shared.len().to_string().as_str());
    assert_eq!(pull_blob(&base, "up/lib/app", &shared_d).await, Ok(shared_d.clone()));
    assert_eq!(
        requests(&up.s, "HEAD", BLOB_ROUTE, 200).await,
        heads + 1,
        "one confirmation"
    );
    assert_eq!(requests(&up.s, "GET", BLOB_ROUTE, 200).await, 0, "no transfer");
    let hex = shared_d.strip_prefix("sha256:").unwrap();
    let copies: Vec<String> = files_under(&cache.root())
        .into_iter()
        .filter(|f| f.contains(hex) && f.ends_with("/data"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(
        cached_links(&cache.root())
            .iter()
            .any(|f| f.contains(&format!("up/lib/app/_layers/sha256/{hex}/link"))),
        "the confirmed blob is linked"
    );
    // Confirmed for lib/app is not confirmed for lib/other, although both come from one
    // upstream and the store has the bytes.
    for head in [true, false] {
        let url = format!("{base}/v2/up/lib/other/blobs/{shared_d}");
        let r = if head { client().head(&url) } else { client().get(&url) }
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "lib/other (head: {head})");
    }

    // The upstream goes away: what was confirmed is still served; what never was is not.
    up.s.kill();
    assert_eq!(pull_blob(&base, "up/lib/app", &shared_d).await, Ok(shared_d.clone()));
    for d in private_blobs.iter().chain([&nowhere]) {
        let url = format!("{base}/v2/up/lib/app/blobs/{d}");
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 502, "GET {d} with the upstream down");
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["UNAVAILABLE"]);
        assert_eq!(client().head(&url).send().await.unwrap().status(), 502, "HEAD {d}");
    }
    assert!(!cached_links(&cache.root()).iter().any(|f| {
        private_blobs
            .iter()
            .any(|d| f.contains(d.strip_prefix("sha256:").unwrap()))
    }));
}

/// Issue 17, item 3: concurrent pulls share one transfer per digest, but a transfer through
/// one cached repository does not make the blob another's: a request for the same digest
/// through a repository whose upstream lacks it, made while the transfer runs, is 404.
#[tokio::test]
async fn a_transfer_through_one_cached_repository_does_not_serve_the_blob_to_another() {
    use axum::http::{Method, StatusCode};
    use axum::response::IntoResponse;
    let blob = random_bytes(5000, 51);
    let digest = sha256_digest(&blob);
    // The upstream has the blob in `a` only; its GET waits until the test releases it.
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let app = axum::Router::new().fallback({
        let (blob, digest) = (blob.clone(), digest.clone());
        move |req: axum::extract::Request| {
            let (blob, digest, mut release, seen) = (blob.clone(), digest.clone(), release_rx.clone(), seen_tx.clone());
            async move {
                let _ = seen.send(format!("{} {}", req.method(), req.uri().path()));
                if req.uri().path() != format!("/v2/a/blobs/{digest}") {
                    return StatusCode::NOT_FOUND.into_response();
                }
                let headers = [
                    ("docker-content-digest", digest),
                    ("content-length", blob.len().to_string()),
                ];
                if req.method() == Method::HEAD {
                    return (headers, axum::body::Body::empty()).into_response();
                }
                let _ = release.wait_for(|r| *r).await;
                (headers, blob).into_response()
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cache = Server::start_with(&format!("[proxy]\nremoteurl = \"{url}\"\n"), &[]);
    let base = cache.url("");

    let a = tokio::spawn({
        let (base, digest) = (base.clone(), digest.clone());
        async move { pull_blob(&base, "a", &digest).await }
    });
    // The transfer for `a` is running (and held) once the upstream has its GET.
    let want = format!("GET /v2/a/blobs/{digest}");
    while seen_rx.recv().await.unwrap() != want {}
    let b = tokio::spawn({
        let base = base.clone();
        let digest = digest.clone();
        async move {
            let r = client()
                .get(format!("{base}/v2/b/blobs/{digest}"))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap())
        }
    });
    // (give `b` the time to join the transfer; either way its answer must be the same)
    tokio::time::sleep(Duration::from_millis(300)).await;
    release_tx.send(true).unwrap();
    assert_eq!(a.await.unwrap(), Ok(digest.clone()));
    let (status, body) = b.await.unwrap();
    assert_eq!(status, 404, "`b` was served the blob its upstream lacks");
    assert_eq!(error_codes(&body), vec!["BLOB_UNKNOWN"]);
    let r = client()
        .head(format!("{base}/v2/b/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let hex = digest.strip_prefix("sha256:").unwrap();
    let links: Vec<String> = files_under(&cache.root())
        .into_iter()
        .filter(|f| f.contains(hex) && f.ends_with("/link"))
        .collect();
    assert_eq!(links.len(), 1, "linked into `a` only: {links:?}");
    assert!(links[0].contains("repositories/a/_layers/"), "{links:?}");
}
