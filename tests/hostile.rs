//! The hostile-input matrix, over real HTTP (raw TCP where a normal client would refuse or
//! normalise the request): each attack gets the right status and spec error code, nothing is
//! stored, and the server keeps serving. Token attacks that need a signing key beside the
//! built-in issuer (expired, alg none, HMAC key confusion, untrusted keys) are in
//! tests/auth_token.rs; here the token cases also check that nothing was stored.
mod auth_support;
mod common;
mod faults_support;
use auth_support::{Cred, htpasswd};
use common::*;
use faults_support::*;

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SAFETY: Duration = Duration::from_secs(30);

/// A server with one image (`ok:v1`) and deletes on; the timeouts short, so slow-client
/// attacks are cut quickly.
async fn server_with_image() -> (Server, Image) {
    let s = Server::start_with(
        "[storage.delete]\nenabled = true\n",
        &[("WHARF_TIMEOUTS", "header=1s,body-idle=1s")],
    );
    let img = make_image(1, 3000);
    push_image(&client(), &s.url(""), "ok", "v1", &img).await.unwrap();
    (s, img)
}

/// Nothing under the data directory changed, nothing appeared beside it, and the image still pulls.
async fn assert_untouched(s: &Server, before: &[String], img: &Image, what: &str) {
    assert_eq!(stored_files(&s.root()), before, "{what}: the store changed");
    let mut beside: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(
        beside,
        ["config.toml", "data"],
        "{what}: files appeared beside the store"
    );
    assert_pulls(&client(), s, "ok", "v1", img).await;
}

fn req(method: &str, path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn path_traversal_in_every_path_parameter_is_refused_and_stores_nothing() {
    let (s, img) = server_with_image().await;
    let before = stored_files(&s.root());
    let d = sha256_digest(&img.config);
    let id = {
        let r = client().post(s.url("/v2/ok/blobs/uploads/")).send().await.unwrap();
        r.headers()["location"]
            .to_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let before_with_session = stored_files(&s.root());
    // raw, percent-encoded, double-encoded, mixed, NUL, and absolute forms
    let evil = [
        "..",
        "../..",
        "../../../../etc/passwd",
        "ok/../../..",
        "%2e%2e",
        "%2e%2e%2f%2e%2e",
        "..%2f..%2f..%2fetc",
        "%252e%252e%252f",
        "%25252e%25252e",
        ".%2e/.%2e",
        "ok%2f..%2f..",
        "%00",
        "ok%00",
        "%2fetc%2fpasswd",
        "./ok",
    ];
    let m = img.manifest.clone();
    for e in evil {
        // (method, path, body, codes allowed)
        let cases: Vec<(&str, String, Vec<u8>, &[&str])> = vec![
            // the repository name
            (
                "POST",
                format!("/v2/{e}/blobs/uploads/"),
                vec![],
                &["NAME_INVALID", "UNSUPPORTED"],
            ),
            (
                "GET",
                format!("/v2/{e}/tags/list"),
                vec![],
                &["NAME_INVALID", "UNSUPPORTED"],
            ),
            (
                "GET",
                format!("/v2/{e}/manifests/v1"),
                vec![],
                &["NAME_INVALID", "UNSUPPORTED"],
            ),
            (
                "PUT",
                format!("/v2/{e}/manifests/v1"),
                m.clone(),
                &["NAME_INVALID", "UNSUPPORTED"],
            ),
            (
                "GET",
                format!("/v2/{e}/blobs/{d}"),
                vec![],
                &["NAME_INVALID", "UNSUPPORTED"],
            ),
            (
                "PATCH",
                format!("/v2/{e}/blobs/uploads/{id}"),
                b"x".to_vec(),
                &["NAME_INVALID", "UNSUPPORTED"],
            ),
            // the reference (tag or digest)
            (
                "PUT",
                format!("/v2/ok/manifests/{e}"),
                m.clone(),
                &[
                    "MANIFEST_INVALID",
                    "NAME_INVALID",
                    "UNSUPPORTED",
                    "DIGEST_INVALID",
                    "BLOB_UPLOAD_UNKNOWN",
                ],
            ),
            (
                "GET",
                format!("/v2/ok/manifests/{e}"),
                vec![],
                &[
                    "MANIFEST_UNKNOWN",
                    "MANIFEST_INVALID",
                    "NAME_INVALID",
                    "UNSUPPORTED",
                    "DIGEST_INVALID",
                    "BLOB_UPLOAD_UNKNOWN",
                ],
            ),
            (
                "PUT",
                format!("/v2/ok/manifests/sha256:{e}"),
                m.clone(),
                &[
                    "DIGEST_INVALID",
                    "NAME_INVALID",
                    "UNSUPPORTED",
                    "MANIFEST_INVALID",
                    "BLOB_UPLOAD_UNKNOWN",
                ],
            ),
            // the digest
            (
                "GET",
                format!("/v2/ok/blobs/sha256:{e}"),
                vec![],
                &["DIGEST_INVALID", "NAME_INVALID", "UNSUPPORTED", "BLOB_UPLOAD_UNKNOWN"],
            ),
            (
                "DELETE",
                format!("/v2/ok/blobs/{e}"),
                vec![],
                &["DIGEST_INVALID", "NAME_INVALID", "UNSUPPORTED", "BLOB_UPLOAD_UNKNOWN"],
            ),
            (
                "GET",
                format!("/v2/ok/referrers/{e}"),
                vec![],
                &["DIGEST_INVALID", "NAME_INVALID", "UNSUPPORTED", "BLOB_UPLOAD_UNKNOWN"],
            ),
            // the upload id
            (
                "PATCH",
                format!("/v2/ok/blobs/uploads/{e}"),
                b"x".to_vec(),
                &["BLOB_UPLOAD_UNKNOWN", "NAME_INVALID", "UNSUPPORTED"],
            ),
            (
                "PUT",
                format!("/v2/ok/blobs/uploads/{e}?digest={d}"),
                vec![],
                &["BLOB_UPLOAD_UNKNOWN", "NAME_INVALID", "UNSUPPORTED"],
            ),
            (
                "GET",
                format!("/v2/ok/blobs/uploads/{id}/{e}"),
                vec![],
                &["BLOB_UPLOAD_UNKNOWN", "NAME_INVALID", "UNSUPPORTED"],
            ),
            // query parameters that name things
            (
                "POST",
                format!("/v2/ok/blobs/uploads/?digest=sha256:{e}"),
                b"x".to_vec(),
                &["DIGEST_INVALID"],
            ),
            (
                "POST",
                format!("/v2/ok/blobs/uploads/?digest={e}"),
                b"x".to_vec(),
                &["DIGEST_INVALID"],
            ),
            (
                "POST",
                format!("/v2/new/blobs/uploads/?mount={d}&from={e}"),
                vec![],
                &["NAME_INVALID"],
            ),
            (
                "POST",
                format!("/v2/new/blobs/uploads/?mount={e}&from=ok"),
                vec![],
                &["DIGEST_INVALID"],
            ),
            (
                "PUT",
                format!("/v2/ok/blobs/uploads/{id}?digest={e}"),
                vec![],
                &["DIGEST_INVALID"],
            ),
            (
                "PUT",
                format!("/v2/ok/manifests/{}?tag={e}", img.digest),
                m.clone(),
                &["MANIFEST_INVALID"],
            ),
        ];
        for (method, path, body, codes) in cases {
            let (st, text) = raw(s.addr, &req(method, &path, "", &body), SAFETY);
            let got = raw_codes(&text);
            assert!(
                (400..500).contains(&st) && got.len() == 1 && codes.contains(&got[0].as_str()),
                "{method} {path}: {st} {got:?} (allowed {codes:?})\n{text}"
            );
            // a name that is refused is refused for being a name: NAME_INVALID whenever the
            // bad part is the repository (never a confused 404 that looked somewhere else)
            if path.starts_with(&format!("/v2/{e}/")) && !e.contains("%2f") && !e.contains('/') {
                assert_eq!(got, ["NAME_INVALID"], "{method} {path}");
            }
        }
    }
    // the listing cursors are compared as strings, never used as paths
    for e in evil {
        for path in [
            format!("/v2/_catalog?last={e}"),
            format!("/v2/ok/tags/list?last={e}&n=5"),
        ] {
            let (st, text) = raw(s.addr, &req("GET", &path, "", b""), SAFETY);
            assert_eq!(st, 200, "{path}: {text}");
        }
    }
    assert_eq!(stored_files(&s.root()), before_with_session, "the store changed");
    // the session is untouched by every attack on it, and still works
    let r = client()
        .put(s.url(&format!("/v2/ok/blobs/uploads/{id}?digest={d}")))
        .body(img.config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_untouched(&s, &before, &img, "path traversal").await;
}

#[tokio::test]
async fn oversized_manifests_are_413_with_or_without_a_content_length() {
    let (s, img) = server_with_image().await;
    let before = stored_files(&s.root());
    let mut big = img.manifest.clone();
    big.pop(); // drop the closing brace: pad inside the object
    big.extend_from_slice(b",\"pad\":\"");
    big.extend(std::iter::repeat_n(b'a', (4 << 20) + 1));
    big.extend_from_slice(b"\"}");
    // declared up front
    let r = client()
        .put(s.url("/v2/ok/manifests/big"))
        .header("content-type", OCI_MANIFEST)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["MANIFEST_INVALID"]);
    // streamed in chunks with no length
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    let r = client()
        .put(s.url("/v2/ok/manifests/big"))
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["MANIFEST_INVALID"]);
    // a chunked manifest body that never ends (it keeps coming) is cut at the limit
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(SAFETY)).unwrap();
    c.write_all(
        b"PUT /v2/ok/manifests/endless HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
    let started = Instant::now();
    let mut answer = Vec::new();
    // Keep sending until the server answers (it reads on past the limit a little, to be polite).
    c.set_nonblocking(true).unwrap();
    while started.elapsed() < SAFETY {
        let _ = c.write_all(chunk.as_bytes());
        let mut buf = [0u8; 4096];
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert_eq!(raw_codes(&text), ["MANIFEST_INVALID"]);
    assert_untouched(&s, &before, &img, "oversized manifests").await;
}

/// Regression: a manifest whose JSON nested 100,000 levels deep (inside a descriptor's unknown
/// field) was accepted, stored and served, though most clients cannot parse it.
#[tokio::test]
async fn deeply_nested_json_is_manifest_invalid() {
    let (s, img) = server_with_image().await;
    let before = stored_files(&s.root());
    let v: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    let config = serde_json::to_string(&v["config"]).unwrap();
    let layers = serde_json::to_string(&v["layers"]).unwrap();
    let nested = |depth: usize, open: &str, close: &str, leaf: &str| {
        let mut s = String::new();
        for _ in 0..depth {
            s.push_str(open);
        }
        s.push_str(leaf);
        for _ in 0..depth {
            s.push_str(close);
        }
        s
    };
    let manifest = |extra: String| {
        let cfg = format!("{},\"x\":{extra}}}", &config[..config.len() - 1]);
        format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{cfg},\"layers\":{layers}}}")
    };
    for (what, body) in [
        (
            "objects in a descriptor",
            manifest(nested(100_000, "{\"a\":", "}", "1")),
        ),
        ("arrays in a descriptor", manifest(nested(100_000, "[", "]", ""))),
        ("just past the limit", manifest(nested(64, "[", "]", ""))),
        (
            "arrays at the top",
            format!("{{\"schemaVersion\":2,\"x\":{}}}", nested(1_000_000, "[", "]", "")),
        ),
        (
            "annotations",
            format!(
                "{{\"schemaVersion\":2,\"annotations\":{}}}",
                nested(100_000, "{\"a\":", "}", "\"b\"")
            ),
        ),
    ] {
        let r = client()
            .put(s.url("/v2/ok/manifests/deep"))
            .header("content-type", OCI_MANIFEST)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{what}");
        assert_eq!(error_codes(&r.bytes().await.unwrap()), ["MANIFEST_INVALID"], "{what}");
    }
    assert_untouched(&s, &before, &img, "nested JSON").await;
    // strings full of brackets are not nesting, and a reasonable depth is fine
    let fine = manifest(format!(
        "{{\"s\":\"{}\",\"n\":{}}}",
        "[{".repeat(1000),
        nested(20, "[", "]", "")
    ));
    let r = client()
        .put(s.url("/v2/ok/manifests/fine"))
        .header("content-type", OCI_MANIFEST)
        .body(fine)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn huge_headers_and_urls_are_refused_and_the_server_keeps_serving() {
    let (s, img) = server_with_image().await;
    let before = stored_files(&s.root());
    let d = sha256_digest(b"x");
    let post = format!("/v2/ok/blobs/uploads/?digest={d}");
    let cases: Vec<(String, Vec<u8>)> = vec![
        (
            "one 1 MiB header".into(),
            req("POST", &post, &format!("X-Big: {}\r\n", "a".repeat(1 << 20)), b"x"),
        ),
        (
            "a thousand headers".into(),
            req(
                "POST",
                &post,
                &(0..1000).map(|i| format!("X-{i}: a\r\n")).collect::<String>(),
                b"x",
            ),
        ),
        (
            "a 1 MiB URL".into(),
            req(
                "POST",
                &format!("/v2/{}/blobs/uploads/", "a/".repeat(1 << 19)),
                "",
                b"x",
            ),
        ),
        (
            "a 1 MiB Authorization".into(),
            req(
                "POST",
                &post,
                &format!("Authorization: Basic {}\r\n", "QUFB".repeat(1 << 18)),
                b"x",
            ),
        ),
    ];
    for (what, r) in cases {
        let (st, text) = raw(s.addr, &r, SAFETY);
        // hyper answers these itself (431 or 414) before any handler runs, or closes
        assert!(
            st == 431 || st == 414 || st == 400 || st == 0,
            "{what}: {st}\n{}",
            &text[..text.len().min(300)]
        );
    }
    // names just over the limit are NAME_INVALID, from the handler
    let (st, text) = raw(
        s.addr,
        &req("GET", &format!("/v2/{}/tags/list", "a".repeat(256)), "", b""),
        SAFETY,
    );
    assert_eq!((st, raw_codes(&text)), (400, vec!["NAME_INVALID".to_owned()]));
    assert_untouched(&s, &before, &img, "huge headers").await;
}

/// Regression: a client dribbling its headers (a slowloris) held its connection forever: the
/// server had no header read timeout.
#[tokio::test]
async fn slowloris_headers_are_cut_off() {
    let (s, img) = server_with_image().await;
    let before = stored_files(&s.root());
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"POST /v2/ok/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // One more header line every 200 ms, for up to 30 s: the server must close before then.
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < SAFETY {
        std::thread::sleep(Duration::from_millis(200));
        if c.write_all(b"X-Slow: 1\r\n").is_err() {
            closed = true;
            break;
        }
        c.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut buf = [0u8; 256];
        match c.read(&mut buf) {
            Ok(_) => {
                closed = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "the server was still reading headers after {:?}",
        started.elapsed()
    );
    // an idle connection that never sends a byte is closed too
    let mut idle = TcpStream::connect(s.addr).unwrap();
    idle.set_read_timeout(Some(SAFETY)).unwrap();
    let mut buf = [0u8; 16];
    assert!(
        idle.read(&mut buf).is_ok(),
        "an idle connection was kept past the safety net"
    );
    assert_untouched(&s, &before, &img, "slowloris").await;
}

/// Send `head` and the first bytes of a body, then go silent; the server must give the request
/// up (an error answer or a closed connection) and keep nothing.
fn stall(s: &Server, head: &str, first: &[u8]) -> String {
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(first).unwrap();
    c.set_read_timeout(Some(SAFETY)).unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    assert!(
        started.elapsed() < SAFETY,
        "{head}: still waiting for the body after {:?}",
        started.elapsed()
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Regression: a manifest PUT whose body stopped arriving (a `Content-Length` that promises
/// more, or a chunked body that never ends) waited forever; only blob uploads had a body idle
/// timeout.
#[tokio::test]
async fn dribbling_and_lying_bodies_time_out_and_store_nothing() {
    let (s, img) = server_with_image().await;
    let before = stored_files(&s.root());
    let half = &img.manifest[..img.manifest.len() / 2];
    let d = sha256_digest(b"0123456789");
    let cases = [
        format!(
            "PUT /v2/ok/manifests/slow HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
            img.manifest.len()
        ),
        format!(
            "PUT /v2/ok/manifests/slow HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            half.len()
        ),
        format!("POST /v2/ok/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"),
        format!("POST /v2/ok/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"),
    ];
    for head in &cases {
        let first: &[u8] = if head.starts_with("PUT") { half } else { b"01234" };
        let answer = stall(&s, head, first);
        // Either an error answer, or the connection closed; never a success.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
            "{head}: {answer}"
        );
    }
    assert_untouched(&s, &before, &img, "stalled bodies").await;

    // A Content-Length shorter than the body: the registry reads what was declared, which does
    // not match the digest; the rest is not a request.
    let body = b"0123456789";
    let r = format!("POST /v2/ok/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    let (st, text) = raw(s.addr, &bytes, SAFETY);
    assert_eq!(
        (st, raw_codes(&text)),
        (400, vec!["DIGEST_INVALID".to_owned()]),
        "{text}"
    );
    // A Content-Length longer than the body, then the client hangs up.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(
        format!("POST /v2/ok/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n").as_bytes(),
    )
    .unwrap();
    c.write_all(body).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut sink = Vec::new();
    c.set_read_timeout(Some(SAFETY)).unwrap();
    let _ = c.read_to_end(&mut sink);
    // A chunk whose Content-Range claims more than it carries (covered in detail in uploads.rs).
    let loc = client()
        .post(s.url("/v2/ok/blobs/uploads/"))
        .send()
        .await
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = client()
        .patch(s.url(&loc))
        .header("content-range", "0-99")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["SIZE_INVALID"]);
    assert_eq!(client().delete(s.url(&loc)).send().await.unwrap().status(), 204);
    assert_untouched(&s, &before, &img, "lying lengths").await;
}

// ---- Slow readers: clients that ask for a large answer and never read it.

/// Pushes a config blob and an image manifest of about 4 MiB (the limit; padded with an
/// annotation) as `big:v1`, and returns the manifest.
async fn push_large_manifest(s: &Server) -> Vec<u8> {
    let c = client();
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec();
    assert_eq!(
        s.api().with_client(&c).post_blob_status("big", &config).await.unwrap(),
        201
    );
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(&config),
            "size": config.len(),
        },
        "layers": [],
        "annotations": {"pad": "x".repeat((4 << 20) - 4096)},
    }))
    .unwrap();
    assert_eq!(put_manifest(&c, &s.url(""), "big", "v1", &m).await.unwrap(), 201);
    m
}

/// `n` connections that each send `pipelined` GETs of `path` and read the first byte of the
/// answer (so the server is known to be sending it), then read nothing more.
fn slow_readers(s: &Server, path: &str, n: usize, pipelined: usize) -> Vec<TcpStream> {
    let get = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {OCI_MANIFEST}\r\n\r\n");
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            c.write_all(get.repeat(pipelined).as_bytes()).unwrap();
            c
        })
        .collect();
    for c in &mut conns {
        c.set_read_timeout(Some(SAFETY)).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).unwrap(), 1, "GET {path}: no answer");
    }
    conns
}

/// Regression (issue 17): 300 clients that GET a 4 MiB manifest and never read the reply pinned
/// 1.26 GB, since each request read its own copy of the manifest and held it until sent. Now
/// every request sends slices of one shared copy: the server's memory (peak and current) grows
/// by less than 64 MiB.
#[tokio::test]
async fn slow_readers_of_a_large_manifest_cannot_pin_memory() {
    let s = Server::start();
    let m = push_large_manifest(&s).await;
    // One whole GET first, so what a first GET allocates for good is in the baseline.
    let (st, body, _) = get(&client(), &s.url("/v2/big/manifests/v1")).await;
    assert_eq!((st, body.len()), (200, m.len()));
    let (rss0, peak0) = (s.rss_kib(), s.peak_rss_kib());
    let conns = slow_readers(&s, "/v2/big/manifests/v1", 300, 1);
    let (rss1, peak1) = (s.rss_kib(), s.peak_rss_kib());
    eprintln!(
        "300 slow readers of a {} byte manifest: RSS {rss0} -> {rss1} KiB (+{} MiB), peak {peak0} -> {peak1} KiB (+{} MiB)",
        m.len(),
        rss1.saturating_sub(rss0) / 1024,
        peak1.saturating_sub(peak0) / 1024
    );
    const LIMIT_KIB: u64 = 64 << 10;
    assert!(
        peak1.saturating_sub(peak0) < LIMIT_KIB && rss1.saturating_sub(rss0) < LIMIT_KIB,
        "300 slow readers grew the server: RSS {rss0} -> {rss1} KiB, peak {peak0} -> {peak1} KiB"
    );
    drop(conns);
    let (st, body, _) = get(&client(), &s.url("/v2/big/manifests/v1")).await;
    assert_eq!((st, body.len()), (200, m.len()));
}

/// Regression (issue 17): a connection whose client stopped reading was kept forever, with the
/// answer it was being sent. Now a write that makes no progress for `http.sendtimeout` closes
/// the connection: a manifest and a blob GET whose readers stall are cut, and the server keeps
/// serving.
#[tokio::test]
async fn a_reader_that_stalls_past_the_send_timeout_is_disconnected() {
    let s = Server::start_with("", &[("WHARF_HTTP_SENDTIMEOUT", "1s")]);
    let m = push_large_manifest(&s).await;
    let blob = random_bytes(32 << 20, 17);
    assert_eq!(
        s.api()
            .with_client(&client())
            .post_blob_status("big", &blob)
            .await
            .unwrap(),
        201
    );
    let cut = |s: &Server| s.logs().iter().filter(|l| l.contains("has read nothing for")).count();
    // The kernel's socket buffers can take a whole 4 MiB answer, so the manifest is asked for
    // ten times on one connection (pipelined): 40 MiB of answers, which no buffer holds.
    let cases = [
        ("/v2/big/manifests/v1".to_owned(), 10, 10 * m.len()),
        (format!("/v2/big/blobs/{}", sha256_digest(&blob)), 1, blob.len()),
    ];
    for (path, pipelined, len) in cases {
        let before = cut(&s);
        let mut c = slow_readers(&s, &path, 1, pipelined).pop().unwrap();
        assert!(
            wait_for(SAFETY, || cut(&s) > before),
            "GET {path}: the stalled connection was not closed within {SAFETY:?}"
        );
        // Reading now drains what the kernel still held for us, then meets the end: the
        // connection was closed short of the answer, not left open.
        let mut rest = Vec::new();
        match c.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.len() < len, "GET {path}: the whole answer came"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("GET {path}: the connection is still open ({e})"),
        }
    }
    let (st, body, _) = get(&client(), &s.url("/v2/big/manifests/v1")).await;
    assert_eq!((st, body.len()), (200, m.len()));
}

// ---- Upload sessions: a client hoarding them.

/// A client whose connections come from `addr` (any 127.x.y.z reaches the server on 127.0.0.1).
fn client_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr.parse::<std::net::IpAddr>().unwrap())
        .timeout(SAFETY)
        .build()
        .unwrap()
}

/// POST a new session; (status, Location, Retry-After, body).
async fn open_session(c: &reqwest::Client, s: &Server, repo: &str) -> (u16, String, Option<String>, Vec<u8>) {
    let r = c
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    let (status, location, retry) = (
        r.status().as_u16(),
        header("location").unwrap_or_default(),
        header("retry-after"),
    );
    (status, location, retry, r.bytes().await.unwrap().to_vec())
}

fn assert_refused(answer: &(u16, String, Option<String>, Vec<u8>), what: &str) {
    assert_eq!(answer.0, 429, "{what}: {}", String::from_utf8_lossy(&answer.3));
    assert_eq!(error_codes(&answer.3), ["TOOMANYREQUESTS"], "{what}");
    assert!(
        answer
            .2
            .as_deref()
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|n| n > 0)),
        "{what}: Retry-After {:?}",
        answer.2
    );
}

/// Regression (issue 17): one client opened 5,924 upload sessions in 10 s, each kept for a
/// week. Now a client (here: an address) may hold `uploads.maxperclient` open sessions and a
/// repository `uploads.maxperrepository`; beyond, opening one answers 429 TOOMANYREQUESTS with
/// a Retry-After and stores nothing. Finishing or cancelling a session frees its place, other
/// clients are not refused because of the first, and one-request pushes need no session.
#[tokio::test]
async fn open_upload_sessions_are_capped_per_client_and_per_repository() {
    let s = Server::start_with(
        "",
        &[
            ("WHARF_UPLOADS_MAXPERCLIENT", "3"),
            ("WHARF_UPLOADS_MAXPERREPOSITORY", "5"),
        ],
    );
    let (one, two) = (client_from("127.0.0.1"), client_from("127.0.0.2"));
    let mut open = Vec::new();
    for _ in 0..3 {
        let (st, loc, _, _) = open_session(&one, &s, "a").await;
        assert_eq!(st, 202);
        open.push(loc);
    }
    let before = stored_files(&s.root());
    assert_refused(&open_session(&one, &s, "a").await, "a 4th session of one client");
    assert_refused(
        &open_session(&one, &s, "b").await,
        "a 4th session in another repository",
    );
    assert_eq!(stored_files(&s.root()), before, "a refused session stored something");
    // A one-request push opens no session: not refused.
    assert_eq!(
        s.api()
            .with_client(&one)
            .post_blob_status("a", b"monolithic")
            .await
            .unwrap(),
        201
    );

    // Cancelling one frees its place.
    assert_eq!(
        one.delete(s.url(&open.pop().unwrap())).send().await.unwrap().status(),
        204
    );
    let (st, loc, _, _) = open_session(&one, &s, "a").await;
    assert_eq!(st, 202, "after a cancel");
    open.push(loc);
    assert_refused(&open_session(&one, &s, "a").await, "full again");
    // Finishing one frees its place.
    let data = b"finished".to_vec();
    let url = format!("{}?digest={}", s.url(&open.pop().unwrap()), sha256_digest(&data));
    assert_eq!(one.put(url).body(data).send().await.unwrap().status(), 201);
    let (st, loc, _, _) = open_session(&one, &s, "a").await;
    assert_eq!(st, 202, "after a finished upload");
    open.push(loc);
    // So does a session discarded on a digest mismatch.
    let url = format!("{}?digest={}", s.url(&open.pop().unwrap()), sha256_digest(b"other"));
    assert_eq!(one.put(url).body("bytes").send().await.unwrap().status(), 400);
    let (st, loc, _, _) = open_session(&one, &s, "a").await;
    assert_eq!(st, 202, "after a discarded upload");
    open.push(loc);

    // Another client is not refused because of the first...
    for _ in 0..2 {
        assert_eq!(open_session(&two, &s, "a").await.0, 202, "another client");
    }
    // ...until the repository holds its cap (3 + 2), whoever asks; other repositories still take them.
    assert_refused(&open_session(&two, &s, "a").await, "a 6th session in one repository");
    assert_eq!(open_session(&two, &s, "b").await.0, 202, "another repository");
    // The open sessions still work.
    for loc in &open {
        assert_eq!(one.get(s.url(loc)).send().await.unwrap().status(), 204);
    }
    // A session that ended behind this server's back (another replica on the store finished
    // it, an operator removed it) stops counting once the cap is reached: the sessions counted
    // are then checked in storage (at most once a second per client, hence the retries).
    assert_refused(&open_session(&one, &s, "b").await, "still full");
    let id = open[0].rsplit('/').next().unwrap();
    std::fs::remove_dir_all(s.root().join("docker/registry/v2/repositories/a/_uploads").join(id)).unwrap();
    let started = Instant::now();
    loop {
        let answer = open_session(&one, &s, "b").await;
        if answer.0 == 202 {
            break;
        }
        assert_refused(&answer, "while a session gone from storage still counts");
        assert!(started.elapsed() < SAFETY, "a session gone from storage still counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Regression (issue 17): abandoned sessions stayed until the 168 h purge. registry:2's
/// `storage.maintenance.uploadpurging` keys set how soon: with `age = 2s` and `interval = 1s`
/// an abandoned session is removed from storage within seconds, and its place under the cap
/// is free again.
#[tokio::test]
async fn abandoned_upload_sessions_are_purged_after_the_configured_age_and_free_their_place() {
    let s = Server::start_with(
        "",
        &[
            ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "2s"),
            ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL", "1s"),
            ("WHARF_UPLOADS_MAXPERCLIENT", "1"),
        ],
    );
    let c = client();
    let (st, loc, _, _) = open_session(&c, &s, "a").await;
    assert_eq!(st, 202);
    assert_refused(&open_session(&c, &s, "a").await, "a 2nd session");
    let id = loc.rsplit('/').next().unwrap().to_owned();
    let dir = s.root().join("docker/registry/v2/repositories/a/_uploads").join(&id);
    assert!(dir.exists(), "{dir:?}");
    // The purger removes, then logs: wait for both.
    let purged = || {
        !dir.exists()
            && s.logs()
                .iter()
                .any(|l| l.contains("purged abandoned upload") && l.contains(&id))
    };
    assert!(wait_for(SAFETY, purged), "the abandoned session was not purged");
    assert_eq!(
        open_session(&c, &s, "a").await.0,
        202,
        "the purged session still counted"
    );
    let r = c.get(s.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["BLOB_UPLOAD_UNKNOWN"]);
}

#[tokio::test]
async fn an_upload_id_from_another_repository_is_unknown_there() {
    let (s, img) = server_with_image().await;
    let c = client();
    let loc = c.post(s.url("/v2/ok/blobs/uploads/")).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let id = loc.rsplit('/').next().unwrap().to_owned();
    let before = stored_files(&s.root());
    let d = sha256_digest(b"abc");
    for (m, path) in [
        ("GET", format!("/v2/other/blobs/uploads/{id}")),
        ("PATCH", format!("/v2/other/blobs/uploads/{id}")),
        ("PUT", format!("/v2/other/blobs/uploads/{id}?digest={d}")),
        ("DELETE", format!("/v2/other/blobs/uploads/{id}")),
        ("PATCH", format!("/v2/ok/sub/blobs/uploads/{id}")),
    ] {
        let (st, text) = raw(s.addr, &req(m, &path, "", b"abc"), SAFETY);
        assert_eq!(
            (st, raw_codes(&text)),
            (404, vec!["BLOB_UPLOAD_UNKNOWN".to_owned()]),
            "{m} {path}"
        );
    }
    assert_eq!(stored_files(&s.root()), before);
    // the session in its own repository is intact
    let r = c
        .put(s.url(&format!("{loc}?digest={d}")))
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_pulls(&c, &s, "ok", "v1", &img).await;
}

const RULES: &str = r#"
[[auth.access]]
repositories = ["alice/**"]
users = ["alice"]
actions = ["pull", "push"]

[[auth.access]]
repositories = ["bob/**"]
users = ["bob"]
actions = ["pull", "push"]
"#;

#[tokio::test]
async fn a_manifest_cannot_reference_blobs_of_a_repository_the_caller_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, htpasswd(&[("alice", "pa"), ("bob", "pb")])).unwrap();
    let s = Server::start_with(
        &format!(
            "[auth.htpasswd]\nrealm = \"r\"\npath = {:?}\n{RULES}",
            users.display().to_string()
        ),
        &[],
    );
    let c = client();
    let (alice, bob) = (Cred::basic("alice", "pa"), Cred::basic("bob", "pb"));
    let secret = make_image(7, 5000);
    let push = |cred: &Cred, repo: &str, data: &[u8]| {
        cred.apply(c.post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={}", sha256_digest(data)))))
            .body(data.to_vec())
    };
    for b in std::iter::once(&secret.config).chain(&secret.layers) {
        assert_eq!(push(&bob, "bob/secret", b).send().await.unwrap().status(), 201);
    }
    let put = bob
        .apply(c.put(s.url("/v2/bob/secret/manifests/v1")))
        .header("content-type", OCI_MANIFEST)
        .body(secret.manifest.clone());
    assert_eq!(put.send().await.unwrap().status(), 201);
    let before = stored_files(&s.root());

    // alice's manifest names bob's config and layer, which she has no right to read
    let r = alice
        .apply(c.put(s.url("/v2/alice/app/manifests/stolen")))
        .header("content-type", OCI_MANIFEST)
        .body(secret.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // one error per blob she cannot use: the config and the layer
    assert_eq!(
        error_codes(&r.bytes().await.unwrap()),
        ["MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"]
    );
    // a mount from bob's repository, or from anywhere, becomes a plain upload (202, not 201)
    let layer = sha256_digest(&secret.layers[0]);
    for q in [format!("mount={layer}&from=bob/secret"), format!("mount={layer}")] {
        let r = alice
            .apply(c.post(s.url(&format!("/v2/alice/app/blobs/uploads/?{q}"))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{q}");
    }
    // nor can she read them by digest, through her repository or his
    assert_eq!(
        alice
            .apply(c.get(s.url(&format!("/v2/alice/app/blobs/{layer}"))))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = alice
        .apply(c.get(s.url(&format!("/v2/bob/secret/blobs/{layer}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["DENIED"]);
    // and her push of the manifest still fails afterwards: nothing was linked into her repository
    let r = alice
        .apply(c.put(s.url("/v2/alice/app/manifests/stolen")))
        .header("content-type", OCI_MANIFEST)
        .body(secret.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // nothing but the two empty upload sessions the mounts opened
    let now: Vec<String> = stored_files(&s.root())
        .into_iter()
        .filter(|f| !f.starts_with("repositories/alice/app/_uploads/"))
        .collect();
    assert_eq!(now, before);
    // the bytes are hers to push: once she uploads them herself, the same manifest is accepted
    for b in std::iter::once(&secret.config).chain(&secret.layers) {
        assert_eq!(push(&alice, "alice/app", b).send().await.unwrap().status(), 201);
    }
    let r = alice
        .apply(c.put(s.url("/v2/alice/app/manifests/own")))
        .header("content-type", OCI_MANIFEST)
        .body(secret.manifest.clone());
    assert_eq!(r.send().await.unwrap().status(), 201);
}

#[tokio::test]
async fn forged_replayed_and_foreign_tokens_store_nothing() {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let dir = tempfile::tempdir().unwrap();
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = dir.path().join("token.key");
    std::fs::write(&key, kp.serialize_pem()).unwrap();
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, htpasswd(&[("alice", "pa"), ("bob", "pb")])).unwrap();
    let s = Server::start_with(
        &format!(
            "[auth.token]\nservice = \"svc\"\nissuer = \"iss\"\nsigningkey = {:?}\nhtpasswd = {:?}\n{RULES}",
            key.display().to_string(),
            users.display().to_string()
        ),
        &[],
    );
    let c = client();
    let get_token = |user: &str, pass: &str, scope: &str| {
        let rb = c
            .get(s.url(&format!("/token?service=svc&scope={scope}")))
            .basic_auth(user, Some(pass));
        async move {
            let v: serde_json::Value =
                serde_json::from_slice(&rb.send().await.unwrap().bytes().await.unwrap()).unwrap();
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let alices = get_token("alice", "pa", "repository:alice/app:pull,push").await;
    let before = stored_files(&s.root());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signer = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
    let sign =
        |claims: serde_json::Value| jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &signer).unwrap();
    let access = serde_json::json!([{"type": "repository", "name": "bob/app", "actions": ["pull", "push"]}]);
    let b64 =
        |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    // alice's real token, with its payload rewritten to grant bob/app (signature kept)
    let parts: Vec<&str> = alices.split('.').collect();
    let mut payload: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["access"] = access.clone();
    let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
    let forged = [
        ("alice's token replayed against bob/app", alices.clone()),
        ("tampered payload", tampered),
        (
            "right key, another service",
            sign(
                serde_json::json!({"iss": "iss", "aud": "other", "sub": "alice", "exp": now + 300, "nbf": now - 5, "access": access}),
            ),
        ),
        (
            "right key, another issuer",
            sign(
                serde_json::json!({"iss": "evil", "aud": "svc", "sub": "alice", "exp": now + 300, "nbf": now - 5, "access": access}),
            ),
        ),
        (
            "right key, expired",
            sign(
                serde_json::json!({"iss": "iss", "aud": "svc", "sub": "alice", "exp": now - 120, "nbf": now - 600, "access": access}),
            ),
        ),
    ];
    let img = make_image(9, 1000);
    for (what, tok) in &forged {
        let cred = Cred::Bearer(tok.clone());
        let d = sha256_digest(&img.config);
        let r = cred
            .apply(c.post(s.url(&format!("/v2/bob/app/blobs/uploads/?digest={d}"))))
            .body(img.config.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(error_codes(&r.bytes().await.unwrap()), ["UNAUTHORIZED"], "{what}");
        let r = cred
            .apply(c.put(s.url("/v2/bob/app/manifests/v1")))
            .header("content-type", OCI_MANIFEST)
            .body(img.manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let r = cred
            .apply(c.post(s.url("/v2/bob/app/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
    }
    assert_eq!(stored_files(&s.root()), before, "a refused token stored something");
    // the same push with a genuine token for bob/app works: the refusals were about the tokens
    let good = sign(
        serde_json::json!({"iss": "iss", "aud": "svc", "sub": "bob", "exp": now + 300, "nbf": now - 5, "access": access}),
    );
    let cred = Cred::Bearer(good);
    let d = sha256_digest(&img.config);
    let r = cred
        .apply(c.post(s.url(&format!("/v2/bob/app/blobs/uploads/?digest={d}"))))
        .body(img.config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Arithmetic on client numbers: a `Content-Range` whose length does not fit in 64 bits (it
/// wrapped to 0, so an empty body was a 202), one that disagrees with `Content-Length` or with
/// the body, and numbers past u64 in every numeric parameter are refused with the spec's error
/// body, and the session keeps its offset.
#[tokio::test]
async fn content_range_arithmetic_cannot_overflow_or_disagree_with_the_body() {
    let (s, img) = server_with_image().await;
    let c = client();
    let loc = c.post(s.url("/v2/ok/blobs/uploads/")).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let ten = vec![5u8; 10];
    let r = c
        .patch(s.url(&loc))
        .header("content-range", "0-9")
        .body(ten.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let max = u64::MAX;
    // (Content-Range, body): every one must be 416 with the current offset, and keep nothing
    let cases: Vec<(String, Vec<u8>)> = vec![
        (format!("0-{max}"), vec![]),
        (format!("10-{max}"), vec![]),
        (format!("10-{max}"), vec![1; 3]),
        (format!("bytes 10-{max}/*"), vec![]),
        ("10-19".into(), vec![1; 3]),
        ("10-19".into(), vec![1; 11]),
        ("10-10".into(), vec![]),
    ];
    for (range, body) in &cases {
        let r = c
            .patch(s.url(&loc))
            .header("content-range", range)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416, "{range} with {} bytes", body.len());
        assert_eq!(r.headers()["range"], "0-9", "{range}");
        assert_eq!(r.headers()["location"].to_str().unwrap(), loc);
        let codes = error_codes(&r.bytes().await.unwrap());
        assert!(
            codes == ["SIZE_INVALID"] || codes == ["BLOB_UPLOAD_INVALID"],
            "{range}: {codes:?}"
        );
        // the same on the closing PUT
        let d = sha256_digest(&[ten.as_slice(), body].concat());
        let r = c
            .put(s.url(&format!("{loc}?digest={d}")))
            .header("content-range", range)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416, "closing PUT {range} with {} bytes", body.len());
        let st = c.get(s.url(&loc)).send().await.unwrap();
        assert_eq!(st.status(), 204);
        assert_eq!(st.headers()["range"], "0-9", "after {range}: the offset did not move");
    }
    // Content-Length disagreeing with Content-Range, refused before the body is read (raw TCP:
    // reqwest would not send a lying Content-Length)
    let (code, text) = raw(
        s.addr,
        format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Range: 10-19\r\nContent-Length: 4\r\n\r\nabcd")
            .as_bytes(),
        SAFETY,
    );
    assert_eq!(code, 416, "{text}");
    assert_eq!(raw_codes(&text), ["SIZE_INVALID"]);
    // numbers past u64 are malformed, not wrapped
    for range in ["0-18446744073709551616", "18446744073709551616-18446744073709551617"] {
        let r = c
            .patch(s.url(&loc))
            .header("content-range", range)
            .body(vec![1])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{range}");
        assert_eq!(error_codes(&r.bytes().await.unwrap()), ["BLOB_UPLOAD_INVALID"]);
    }
    // the session still completes from where it was
    let rest = vec![6u8; 5];
    let all = [ten.as_slice(), &rest].concat();
    let r = c
        .put(s.url(&format!("{loc}?digest={}", sha256_digest(&all))))
        .header("content-range", "10-14")
        .body(rest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        get(&c, &s.url(&format!("/v2/ok/blobs/{}", sha256_digest(&all))))
            .await
            .1,
        all
    );
    // the other client numbers: Range on blob GET, n on listings
    let cfg = sha256_digest(&img.config);
    for range in [
        format!("bytes=0-{max}"),
        format!("bytes=-{max}"),
        "bytes=0-18446744073709551616".to_owned(),
        "bytes=-18446744073709551616".to_owned(),
    ] {
        let r = c
            .get(s.url(&format!("/v2/ok/blobs/{cfg}")))
            .header("range", &range)
            .send()
            .await
            .unwrap();
        assert!(r.status() == 200 || r.status() == 206, "{range}: {}", r.status());
        assert_eq!(r.bytes().await.unwrap(), img.config, "{range}");
    }
    let r = c
        .get(s.url(&format!("/v2/ok/blobs/{cfg}")))
        .header("range", format!("bytes={max}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    for q in [
        format!("n={max}"),
        format!("n={max}&last=a"),
        "n=18446744073709551616".into(),
        "n=-1".into(),
    ] {
        for path in ["/v2/_catalog", "/v2/ok/tags/list"] {
            let r = c.get(s.url(&format!("{path}?{q}"))).send().await.unwrap();
            let status = r.status();
            let body = r.bytes().await.unwrap();
            assert!(status == 200 || status == 400, "{path}?{q}: {status}");
            if status == 400 {
                assert!(!error_codes(&body).is_empty(), "{path}?{q}: no error body");
            }
        }
    }
}

/// A reference that is neither a valid tag nor a valid digest names no manifest: GET, HEAD and
/// DELETE answer 404 MANIFEST_UNKNOWN (registry:2's 404; the OCI conformance suite's
/// `.INVALID_MANIFEST_NAME`), and only a PUT is refused as invalid (400). With auth on, the
/// caller is challenged first, as for any other reference.
#[tokio::test]
async fn a_reference_neither_tag_nor_digest_is_unknown_to_reads_and_invalid_to_puts() {
    let (s, img) = server_with_image().await;
    let c = client();
    let long = "t".repeat(129);
    for reference in [".INVALID_MANIFEST_NAME", "-dash", "sha256:nothex", "sha256:", &long] {
        let path = format!("/v2/ok/manifests/{reference}");
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let r = c.request(method.clone(), s.url(&path)).send().await.unwrap();
            assert_eq!(r.status(), 404, "{method} {reference}");
            assert_eq!(
                error_codes(&r.bytes().await.unwrap()),
                ["MANIFEST_UNKNOWN"],
                "{method} {reference}"
            );
        }
        let r = c.head(s.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "HEAD {reference}");
        let r = c
            .put(s.url(&path))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(img.manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "PUT {reference}");
        let codes = error_codes(&r.bytes().await.unwrap());
        assert!(
            codes == ["MANIFEST_INVALID"] || codes == ["DIGEST_INVALID"],
            "PUT {reference}: {codes:?}"
        );
    }
    assert_pulls(&c, &s, "ok", "v1", &img).await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, htpasswd(&[("alice", "pw-a")])).unwrap();
    let s = Server::start_with(
        &format!(
            "[auth.htpasswd]\nrealm = \"r\"\npath = {:?}\n",
            file.display().to_string()
        ),
        &[],
    );
    let r = c
        .get(s.url("/v2/ok/manifests/.INVALID_MANIFEST_NAME"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "an anonymous caller is challenged before anything else"
    );
    let r = c
        .get(s.url("/v2/ok/manifests/.INVALID_MANIFEST_NAME"))
        .basic_auth("alice", Some("pw-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Class: manifests with conflicting type signals (`mediaType` field, Content-Type, the presence
/// of `config`/`layers` versus `manifests`, Docker versus OCI, keys Go's case-insensitive JSON
/// reading takes for the fields we read). Regression: an image without `mediaType` carrying a
/// stray `"manifests": []` was accepted as an image (its Content-Type), then served as an index
/// and walked as one by garbage collection, which deleted the layers of the tagged image. Every
/// such body is now refused with 400 MANIFEST_INVALID and stores nothing, while the consistent
/// bodies real clients send (with or without `mediaType`) are accepted as before.
#[tokio::test]
async fn manifests_with_conflicting_type_signals_are_manifest_invalid_and_store_nothing() {
    let (s, img) = server_with_image().await;
    let before = stored_files(&s.root());
    let v: Value = serde_json::from_slice(&img.manifest).unwrap();
    let (config, layers) = (v["config"].clone(), v["layers"].clone());
    let child = json!({"mediaType": OCI_MANIFEST, "digest": img.digest, "size": img.manifest.len()});
    let image = |extra: Value| {
        let mut m = json!({"schemaVersion": 2, "config": config, "layers": layers});
        for (k, x) in extra.as_object().unwrap() {
            m[k] = x.clone();
        }
        serde_json::to_vec(&m).unwrap()
    };
    let index = |extra: Value| {
        let mut m = json!({"schemaVersion": 2, "manifests": [child]});
        for (k, x) in extra.as_object().unwrap() {
            m[k] = x.clone();
        }
        serde_json::to_vec(&m).unwrap()
    };
    let text = |t: String| t.into_bytes();
    let cfg = serde_json::to_string(&config).unwrap();
    let lay = serde_json::to_string(&layers).unwrap();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "image without mediaType, stray manifests: [] (the issue)",
            OCI_MANIFEST,
            image(json!({"manifests": []})),
        ),
        (
            "image without mediaType, with index children",
            OCI_MANIFEST,
            image(json!({"manifests": [child]})),
        ),
        (
            "OCI image mediaType with manifests",
            OCI_MANIFEST,
            image(json!({"mediaType": OCI_MANIFEST, "manifests": []})),
        ),
        (
            "Docker image with manifests",
            DOCKER_MANIFEST,
            image(json!({"mediaType": DOCKER_MANIFEST, "manifests": []})),
        ),
        ("index Content-Type, image body", OCI_INDEX, image(json!({}))),
        (
            "index Content-Type, image body with manifests",
            OCI_INDEX,
            image(json!({"manifests": [child]})),
        ),
        (
            "index with layers",
            OCI_INDEX,
            index(json!({"mediaType": OCI_INDEX, "layers": layers})),
        ),
        ("index with config", OCI_INDEX, index(json!({"config": config}))),
        (
            "Docker list with config and layers",
            DOCKER_LIST,
            index(json!({"mediaType": DOCKER_LIST, "config": config, "layers": layers})),
        ),
        (
            "no Content-Type to decide: both shapes",
            "application/octet-stream",
            image(json!({"manifests": [child]})),
        ),
        (
            "mediaType index, Content-Type image",
            OCI_MANIFEST,
            index(json!({"mediaType": OCI_INDEX})),
        ),
        (
            "mediaType image, Content-Type index",
            OCI_INDEX,
            image(json!({"mediaType": OCI_MANIFEST})),
        ),
        (
            "OCI mediaType, Docker Content-Type",
            DOCKER_MANIFEST,
            image(json!({"mediaType": OCI_MANIFEST})),
        ),
        (
            "Docker mediaType, OCI Content-Type",
            OCI_MANIFEST,
            image(json!({"mediaType": DOCKER_MANIFEST})),
        ),
        (
            "Docker image named only by its Content-Type (the body reads as OCI)",
            DOCKER_MANIFEST,
            image(json!({})),
        ),
        (
            "Docker list named only by its Content-Type",
            DOCKER_LIST,
            index(json!({})),
        ),
        (
            "Docker list mediaType, OCI index Content-Type",
            OCI_INDEX,
            index(json!({"mediaType": DOCKER_LIST})),
        ),
        (
            "image mediaType in an index-shaped body, no Content-Type",
            "application/json",
            index(json!({"mediaType": OCI_MANIFEST})),
        ),
        (
            "schemaVersion 1 with a schema 2 body",
            OCI_MANIFEST,
            image(json!({"schemaVersion": 1})),
        ),
        (
            "schemaVersion as a string",
            OCI_MANIFEST,
            image(json!({"schemaVersion": "2"})),
        ),
        (
            "Manifests, read as manifests by Go",
            OCI_MANIFEST,
            image(json!({"Manifests": [child]})),
        ),
        (
            "MediaType, read as mediaType by Go",
            OCI_MANIFEST,
            image(json!({"MediaType": OCI_INDEX})),
        ),
        ("Layers beside layers", OCI_MANIFEST, image(json!({"Layers": []}))),
        ("Config in an index", OCI_INDEX, index(json!({"Config": config}))),
        (
            "long s: ſchemaVersion",
            OCI_MANIFEST,
            image(json!({"ſchemaVersion": 1})),
        ),
        (
            "descriptor Digest beside digest",
            OCI_MANIFEST,
            text(format!(
                r#"{{"schemaVersion":2,"config":{cfg},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","Digest":"{}","size":1}}]}}"#,
                sha256_digest(&img.layers[0]),
                sha256_digest(b"elsewhere")
            )),
        ),
        (
            "duplicate mediaType keys",
            OCI_MANIFEST,
            text(format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","mediaType":"{OCI_INDEX}","config":{cfg},"layers":{lay}}}"#
            )),
        ),
        (
            "duplicate manifests keys in an index",
            OCI_INDEX,
            text(format!(r#"{{"schemaVersion":2,"manifests":[],"manifests":[{child}]}}"#)),
        ),
    ];
    for (what, ct, body) in &cases {
        for reference in ["conflict".to_owned(), sha256_digest(body)] {
            let r = client()
                .put(s.url(&format!("/v2/ok/manifests/{reference}")))
                .header("content-type", *ct)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.bytes().await.unwrap();
            assert_eq!(status, 400, "{what}: {}", String::from_utf8_lossy(&body));
            assert_eq!(error_codes(&body), ["MANIFEST_INVALID"], "{what}");
        }
    }
    assert_untouched(&s, &before, &img, "manifests with conflicting type signals").await;

    // What real clients send is accepted, and served as the type it was accepted as.
    let fine: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "OCI image without mediaType (umoci)",
            OCI_MANIFEST,
            image(json!({})),
            OCI_MANIFEST,
        ),
        (
            "OCI image, mediaType",
            OCI_MANIFEST,
            image(json!({"mediaType": OCI_MANIFEST})),
            OCI_MANIFEST,
        ),
        (
            "OCI image, manifests: null",
            OCI_MANIFEST,
            image(json!({"manifests": null})),
            OCI_MANIFEST,
        ),
        (
            "Docker image",
            DOCKER_MANIFEST,
            image(json!({"mediaType": DOCKER_MANIFEST})),
            DOCKER_MANIFEST,
        ),
        ("OCI index without mediaType", OCI_INDEX, index(json!({})), OCI_INDEX),
        (
            "OCI index, mediaType",
            OCI_INDEX,
            index(json!({"mediaType": OCI_INDEX})),
            OCI_INDEX,
        ),
        (
            "Docker list",
            DOCKER_LIST,
            index(json!({"mediaType": DOCKER_LIST})),
            DOCKER_LIST,
        ),
        (
            "image, generic Content-Type",
            "application/octet-stream",
            image(json!({})),
            OCI_MANIFEST,
        ),
        (
            "index, no useful Content-Type",
            "application/json",
            index(json!({})),
            OCI_INDEX,
        ),
        (
            "index with an annotation named Config",
            OCI_INDEX,
            index(json!({"annotations": {"Config": "x"}})),
            OCI_INDEX,
        ),
    ];
    for (i, (what, ct, body, served)) in fine.iter().enumerate() {
        let tag = format!("fine{i}");
        let r = client()
            .put(s.url(&format!("/v2/ok/manifests/{tag}")))
            .header("content-type", *ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{what}: {}", r.text().await.unwrap());
        let r = client()
            .get(s.url(&format!("/v2/ok/manifests/{tag}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], *served, "{what}");
    }
}

/// Class: names that collide with storage's own files. Regression: the filesystem driver hid
/// every entry named `<anything>.tmp-<32 hex>` (its temporary files before c608796), so a
/// repository or tag of that shape, valid by the spec's grammar, was missing from the catalog
/// and the tags list, and garbage collection, which walks the same listings, deleted its
/// manifests and layers. Every valid name, including ones shaped like the layout's own files
/// (`link`, `data`, `current`, `_uploads`, ...), is listed, pulls, and survives GC.
#[tokio::test]
async fn names_that_collide_with_storage_files_are_listed_pulled_and_kept_by_gc() {
    let hex32 = "0123456789abcdef0123456789abcdef";
    let s = Server::start();
    let repos = [
        format!("app.tmp-{hex32}"),
        format!("ns/link.tmp-{hex32}/x"),
        format!("data.tmp-{hex32}"),
        "data".to_owned(),
        "current/link".to_owned(),
        "hashstates/sha256".to_owned(),
        "wharf-catalog".to_owned(),
        "wharf.lock".to_owned(),
        "blobs/repositories".to_owned(),
    ];
    let tags = [
        format!("v1.tmp-{hex32}"),
        format!("link.tmp-{hex32}"),
        format!("startedat.tmp-{hex32}"),
        "_manifests".to_owned(),
        "_uploads".to_owned(),
        "_layers".to_owned(),
        "_referrers".to_owned(),
        "current".to_owned(),
        "link".to_owned(),
        "index".to_owned(),
        "data".to_owned(),
        format!("{hex32}{hex32}"),
    ];
    let c = client();
    let mut images = Vec::new();
    for (i, repo) in repos.iter().enumerate() {
        for (j, tag) in tags.iter().enumerate() {
            let img = make_image((i * 100 + j) as u64 + 7, 500);
            push_image(&c, &s.url(""), repo, tag, &img).await.unwrap();
            images.push((repo.clone(), tag.clone(), img));
        }
    }
    let check = |s: &Server| {
        let (s, images) = (s.url(""), &images);
        let mut want_repos = repos.to_vec();
        want_repos.sort();
        let mut want_tags = tags.to_vec();
        want_tags.sort();
        async move {
            let c = client();
            let cat: Value = serde_json::from_slice(
                &c.get(format!("{s}/v2/_catalog"))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap(),
            )
            .unwrap();
            let got: Vec<String> = serde_json::from_value(cat["repositories"].clone()).unwrap();
            assert_eq!(got, want_repos, "catalog");
            for repo in &want_repos {
                let t: Value = serde_json::from_slice(
                    &c.get(format!("{s}/v2/{repo}/tags/list"))
                        .send()
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap(),
                )
                .unwrap();
                let got: Vec<String> = serde_json::from_value(t["tags"].clone()).unwrap();
                assert_eq!(got, want_tags, "tags of {repo}");
            }
            images.len()
        }
    };
    assert_eq!(check(&s).await, repos.len() * tags.len());
    for (repo, tag, img) in &images {
        assert_pulls(&c, &s, repo, tag, img).await;
    }
    let mut s = s;
    s.kill();
    for args in [&["--delete-untagged"][..], &[][..]] {
        let (code, out, err) = gc(&s, args, &[]);
        assert_eq!(code, 0, "garbage-collect {args:?}:\n{out}\n{err}");
        assert!(
            out.contains("0 blobs (0 bytes) and 0 manifests deleted, 0 tags, 0 layer links"),
            "GC {args:?} removed something of a tagged image:\n{out}"
        );
    }
    assert_store_ok(&s.root(), true);
    s.restart();
    check(&s).await;
    for (repo, tag, img) in &images {
        assert_pulls(&c, &s, repo, tag, img).await;
    }
}

/// Uploads whose clients go silent mid-body hold no thread: with four times as many stalled
/// PATCHes as the blocking pool has threads, pushes and pulls still go through, the server's
/// thread count stays bounded, and every stalled session resumes to a correct blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_upload_bodies_hold_no_thread_and_pushes_go_on() {
    const STALLED: usize = 64;
    let s = Server::start();
    let api = Api::new(s.url(""));
    let data: Vec<Vec<u8>> = (0..STALLED).map(|i| random_bytes(600_000, 100 + i as u64)).collect();
    let mut socks = Vec::new();
    let mut sessions = Vec::new();
    for d in &data {
        let loc = api.start_upload("stall").await.unwrap();
        let mut sock = TcpStream::connect(s.addr).unwrap();
        let head = format!(
            "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            d.len()
        );
        sock.write_all(head.as_bytes()).unwrap();
        sock.write_all(&d[..300_000]).unwrap();
        socks.push(sock);
        sessions.push(loc);
    }
    // While all of them are silent, a whole push and its pull complete.
    let img = make_image(7, 50_000);
    push_image(&client(), &s.url(""), "free", "v1", &img).await.unwrap();
    let (st, body, _) = get(&client(), &s.url("/v2/free/manifests/v1")).await;
    assert_eq!((st, body), (200, img.manifest.clone()));
    let threads: usize = std::fs::read_to_string(format!("/proc/{}/status", s.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(threads <= 40, "{threads} threads with {STALLED} stalled uploads");
    // The clients come back: each sends the rest of its body, and each blob is whole.
    for (sock, d) in socks.iter_mut().zip(&data) {
        sock.write_all(&d[300_000..]).unwrap();
    }
    for (mut sock, loc) in socks.into_iter().zip(&sessions) {
        sock.set_read_timeout(Some(SAFETY)).unwrap();
        let mut answer = [0u8; 12];
        sock.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 202", "{loc}");
    }
    for (loc, d) in sessions.iter().zip(&data) {
        let digest = sha256_digest(d);
        let r = client()
            .put(s.url(&format!("{loc}?digest={digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{loc}");
        let (st, body, _) = get(&client(), &s.url(&format!("/v2/stall/blobs/{digest}"))).await;
        assert_eq!((st, body.len()), (200, d.len()), "{loc}");
        assert_eq!(sha256_digest(&body), digest);
    }
}
