//! Blob uploads (spec: "Pushing blobs": monolithic POST+PUT, single POST, chunked, mount, status,
//! cancel) and their failure modes: out-of-order chunks, wrong digests, restarts, races, drops.
mod common;
use common::*;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

async fn get_blob(s: &Server, repo: &str, d: &str) -> (u16, Vec<u8>) {
    let r = client()
        .get(s.url(&format!("/v2/{repo}/blobs/{d}")))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

fn stored_blobs(s: &Server) -> Vec<String> {
    files_under(&s.root())
        .into_iter()
        .filter(|p| p.starts_with("docker/registry/v2/blobs/"))
        .collect()
}

#[tokio::test]
async fn single_post_with_digest_and_body_answers_201() {
    let s = Server::start();
    let data = random_bytes(50_000, 2);
    let d = sha256_digest(&data);
    let r = client()
        .post(s.url(&format!("/v2/r/blobs/uploads/?digest={d}")))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(loc(&r), format!("/v2/r/blobs/{d}"));
    assert_eq!(get_blob(&s, "r", &d).await, (200, data));
    assert!(
        !files_under(&s.root()).iter().any(|p| p.contains("_uploads/")),
        "no session is left behind"
    );
}

#[tokio::test]
async fn wrong_digest_on_put_is_400_and_stores_nothing() {
    let s = Server::start();
    let data = random_bytes(10_000, 5);
    let wrong = sha256_digest(b"something else");
    let l = start_session(&s, "r").await;
    let r = client()
        .put(s.url(&format!("{l}?digest={wrong}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["DIGEST_INVALID"]);
    assert!(stored_blobs(&s).is_empty(), "nothing stored: {:?}", stored_blobs(&s));
    assert_eq!(get_blob(&s, "r", &wrong).await.0, 404);
    assert_eq!(get_blob(&s, "r", &sha256_digest(&data)).await.0, 404);
    // the single-POST form too
    let r = client()
        .post(s.url(&format!("/v2/r/blobs/uploads/?digest={wrong}")))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["DIGEST_INVALID"]);
    assert!(stored_blobs(&s).is_empty());
    assert!(
        !files_under(&s.root()).iter().any(|p| p.contains("_uploads/")),
        "no upload left behind"
    );
}

#[tokio::test]
async fn status_and_cancel() {
    let s = Server::start();
    let l = start_session(&s, "r").await;
    let r = client().get(s.url(&l)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(loc(&r), l);
    assert_eq!(r.headers()["range"], "0-0");
    assert!(r.headers().contains_key("docker-upload-uuid"));
    client().patch(s.url(&l)).body(vec![0u8; 1234]).send().await.unwrap();
    let r = client().get(s.url(&l)).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-1233");
    let r = client().delete(s.url(&l)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    for req in [
        client().get(s.url(&l)),
        client().patch(s.url(&l)).body(vec![1u8]),
        client().delete(s.url(&l)),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UPLOAD_UNKNOWN"]);
    }
    assert!(
        !files_under(&s.root()).iter().any(|p| p.contains("_uploads/")),
        "cancel removes the session"
    );
}

#[tokio::test]
async fn a_chunked_upload_survives_a_server_restart() {
    let mut s = Server::start();
    let data = random_bytes(3_000_000, 8);
    let d = sha256_digest(&data);
    let l = start_session(&s, "r").await;
    let r = client()
        .patch(s.url(&l))
        .header("content-range", "0-1999999")
        .body(data[..2_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    s.restart(); // SIGKILL, then start again on the same storage
    let r = client().get(s.url(&l)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-1999999");
    let r = client()
        .patch(s.url(&l))
        .header("content-range", "2000000-2999999")
        .body(data[2_000_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = client().put(s.url(&format!("{l}?digest={d}"))).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(get_blob(&s, "r", &d).await, (200, data));
}

/// A session holds no hash state until its first chunk (as registry:2's POST writes none): one
/// opened just before a restart is still known, empty, and takes its chunks after it.
#[tokio::test]
async fn a_session_opened_before_a_restart_takes_its_chunks_after_it() {
    let mut s = Server::start();
    let data = random_bytes(300_000, 11);
    let d = sha256_digest(&data);
    let l = start_session(&s, "r").await;
    s.restart();
    let r = client().get(s.url(&l)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-0");
    let r = s
        .api()
        .patch(&l, Some("0-99999".into()), &data[..100_000])
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-99999");
    let r = client()
        .put(s.url(&format!("{l}?digest={d}")))
        .body(data[100_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(get_blob(&s, "r", &d).await, (200, data));
    // a session id nobody opened is still unknown, for every verb
    let unknown = "/v2/r/blobs/uploads/9d5e3b9e-7c1e-4d53-9f5e-2a6b1c0d4e8f";
    let r = s.api().patch(unknown, Some("0-2".into()), b"abc").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UPLOAD_UNKNOWN"]);
    let r = client()
        .put(s.url(&format!("{unknown}?digest={}", sha256_digest(b"abc"))))
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UPLOAD_UNKNOWN"]);
}

#[tokio::test]
async fn two_clients_uploading_the_same_blob_at_once_both_succeed_with_one_copy() {
    let s = Server::start();
    let data = random_bytes(4_000_000, 9);
    let d = sha256_digest(&data);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (url, data, d) = (s.url("/v2/same/blobs/uploads/"), data.clone(), d.clone());
        let base = s.url("");
        tasks.push(tokio::spawn(async move {
            let c = client();
            if i % 2 == 0 {
                let r = c.post(format!("{url}?digest={d}")).body(data).send().await.unwrap();
                r.status().as_u16()
            } else {
                let r = c.post(&url).send().await.unwrap();
                let l = loc(&r);
                let r = c.patch(format!("{base}{l}")).body(data).send().await.unwrap();
                let r = c.put(format!("{base}{}?digest={d}", loc(&r))).send().await.unwrap();
                r.status().as_u16()
            }
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    assert_eq!(stored_blobs(&s).len(), 1, "one copy: {:?}", stored_blobs(&s));
    assert_eq!(get_blob(&s, "same", &d).await, (200, data));
}

/// Send an HTTP/1.1 request by hand (so paths are not normalised) and return status and body.
async fn raw_request(s: &Server, head: &str, body: &[u8]) -> (u16, String) {
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

// Filesystem only: on an object store the status GET may answer before the server has seen the
// drop, with the offset committed before the PATCH began (0), and the resume then races it.
#[tokio::test]
async fn a_connection_dropped_mid_patch_leaves_a_usable_session() {
    let s = Server::start();
    let data = random_bytes(2_000_000, 10);
    let d = sha256_digest(&data);
    let l = start_session(&s, "r").await;
    {
        let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let head = format!(
            "PATCH {l} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            data.len()
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&data[..700_000]).await.unwrap();
        sock.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    } // dropped: the server sees the body end early
    // The session is consistent: the status says how much arrived; resume from there.
    let mut offset = None;
    for _ in 0..50 {
        let r = client().get(s.url(&l)).send().await.unwrap();
        if r.status() == 204 {
            let range = r.headers()["range"].to_str().unwrap().to_owned();
            let end: usize = range.trim_start_matches("0-").parse().unwrap();
            offset = Some(if end == 0 { 0 } else { end + 1 });
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let offset = offset.expect("the session stays known");
    assert!(offset <= 700_000, "no more than was sent: {offset}");
    let r = client()
        .patch(s.url(&l))
        .header("content-range", format!("{offset}-{}", data.len() - 1))
        .body(data[offset..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "resume at {offset}");
    let r = client().put(s.url(&format!("{l}?digest={d}"))).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(get_blob(&s, "r", &d).await, (200, data));
}

#[tokio::test]
async fn hostile_repository_names_are_name_invalid_and_create_nothing() {
    let s = Server::start();
    let before = files_under(&s.root());
    let names = [
        "../x",
        "a/../../b",
        "%2e%2e/x",
        "a/%2e%2e/b",
        "UPPER",
        "a//b",
        "/leading",
        "a/",
        "_x",
        &"a".repeat(256),
    ];
    for name in names {
        for (method, suffix) in [
            ("POST", "/blobs/uploads/"),
            ("GET", "/tags/list"),
            ("PUT", "/manifests/latest"),
        ] {
            let head = format!(
                "{method} /v2/{name}{suffix} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let (status, body) = raw_request(&s, &head, b"").await;
            assert_eq!(status, 400, "{method} {name}: {body}");
            assert!(body.contains("NAME_INVALID"), "{method} {name}: {body}");
        }
    }
    assert_eq!(files_under(&s.root()), before, "nothing was created on disk");
    assert!(!s.root().parent().unwrap().join("x").exists());
}

/// 5 GiB generated on the fly, pushed in one PATCH and pulled back, with the server's peak RSS
/// under 64 MiB: no request or response body is held whole in memory.
#[tokio::test]
async fn a_5_gib_blob_streams_through_with_bounded_memory() {
    const SIZE: u64 = 5 << 30;
    const CHUNK: usize = 1 << 20;
    let s = Server::start();
    let free = fs_free_bytes(&s.root());
    if free < SIZE + (2 << 30) {
        panic!(
            "this test needs {} GiB free under {}, found {}",
            (SIZE >> 30) + 2,
            s.root().display(),
            free
        );
    }
    let l = start_session(&s, "big").await;
    // generate, hash and send at once
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let producer = tokio::task::spawn_blocking(move || {
        let block = random_bytes(CHUNK, 11);
        let mut h = Sha256::new();
        for i in 0..(SIZE / CHUNK as u64) {
            let mut c = block.clone();
            c[..8].copy_from_slice(&i.to_le_bytes()); // every chunk differs
            h.update(&c);
            if tx.blocking_send(Ok(c)).is_err() {
                break;
            }
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    });
    let stream = tokio_stream_from(rx);
    let r = client()
        .patch(s.url(&l))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let d = producer.await.unwrap();
    let r = client()
        .put(s.url(&format!("{}?digest={d}", loc(&r))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // pull it back, hashing as it arrives
    let r = client().get(s.url(&format!("/v2/big/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], SIZE.to_string().as_str());
    let mut body = r.bytes_stream();
    let mut h = Sha256::new();
    let mut n = 0u64;
    use futures::StreamExt;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!(n, SIZE);
    assert_eq!(format!("sha256:{}", hex::encode(h.finalize())), d);
    let peak = s.peak_rss_kib();
    eprintln!("server peak RSS after a 5 GiB push and pull: {} MiB", peak / 1024);
    assert!(peak < 64 * 1024, "server peak RSS {peak} KiB >= 64 MiB");
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn fs_free_bytes(p: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .arg("-B1")
        .arg("--output=avail")
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// A session that moves between two servers on one store (replicas, or a load balancer that
/// does not stick): each server keeps the hasher of the chunk it wrote last in memory, and must
/// notice when the other one has appended, cancelled or completed the session since.
#[tokio::test]
async fn a_session_moving_between_two_servers_on_one_store_stays_whole() {
    let a = Server::start();
    let root = a.root().display().to_string();
    let b = Server::start_with("", &[("WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root)]);
    let data = random_bytes(5_000_000, 21);
    let d = sha256_digest(&data);
    let l = start_session(&a, "moving").await;
    // chunks alternate a, b, a, b; the close goes to a, whose remembered state is two chunks old
    let bounds = [0, 1_000_000, 2_500_000, 3_000_000, 5_000_000];
    for (i, w) in bounds.windows(2).enumerate() {
        let s = if i % 2 == 0 { &a } else { &b };
        let r = client()
            .patch(s.url(&l))
            .header("content-range", format!("{}-{}", w[0], w[1] - 1))
            .body(data[w[0]..w[1]].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk {i}");
        assert_eq!(r.headers()["range"], format!("0-{}", w[1] - 1).as_str());
    }
    let r = client().put(a.url(&format!("{l}?digest={d}"))).send().await.unwrap();
    assert_eq!(
        r.status(),
        201,
        "{}",
        String::from_utf8_lossy(&r.bytes().await.unwrap())
    );
    assert_eq!(get_blob(&b, "moving", &d).await, (200, data.clone()));

    // a session cancelled through b is unknown to a, although a wrote its last chunk
    let l = start_session(&a, "moving").await;
    let r = client()
        .patch(a.url(&l))
        .header("content-range", "0-999")
        .body(data[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(client().delete(b.url(&l)).send().await.unwrap().status(), 204);
    let r = client()
        .patch(a.url(&l))
        .header("content-range", "1000-1999")
        .body(data[1000..2000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UPLOAD_UNKNOWN"]);

    // a session completed through b is unknown to a
    let small = &data[..3000];
    let l = start_session(&a, "moving").await;
    let r = client()
        .patch(a.url(&l))
        .header("content-range", "0-1999")
        .body(small[..2000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let ds = sha256_digest(small);
    let r = client()
        .put(b.url(&format!("{l}?digest={ds}")))
        .header("content-range", "2000-2999")
        .body(small[2000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client()
        .patch(a.url(&l))
        .header("content-range", "3000-3999")
        .body(data[3000..4000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

// Tests that run on both backends (the filesystem and the in-memory object store).
on_both_backends! {
    #[tokio::test]
    async fn post_opens_a_session_with_location_uuid_and_range() {
        let s = Server::start();
        let r = client().post(s.url("/v2/a/b/blobs/uploads/")).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let l = loc(&r);
        let uuid = r.headers()["docker-upload-uuid"].to_str().unwrap().to_owned();
        assert_eq!(l, format!("/v2/a/b/blobs/uploads/{uuid}"));
        assert!(uuid::Uuid::parse_str(&uuid).is_ok());
        assert_eq!(r.headers()["range"], "0-0");
        assert_eq!(r.headers()["content-length"], "0");
    }

    #[tokio::test]
    async fn monolithic_post_then_put() {
        let s = Server::start();
        let data = random_bytes(1_000_000, 1);
        let d = sha256_digest(&data);
        let l = start_session(&s, "r").await;
        let r = client()
            .put(s.url(&format!("{l}?digest={d}")))
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(loc(&r), format!("/v2/r/blobs/{d}"));
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        assert_eq!(get_blob(&s, "r", &d).await, (200, data));
        // the session is gone once closed
        let r = client().get(s.url(&l)).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UPLOAD_UNKNOWN"]);
    }

    #[tokio::test]
    async fn chunked_upload_with_content_range_and_a_last_chunk_in_the_put() {
        let s = Server::start();
        let data = random_bytes(1_000_003, 3);
        let d = sha256_digest(&data);
        let mut l = start_session(&s, "chunky").await;
        let chunks: Vec<&[u8]> = data.chunks(100_000).collect();
        let (last, body) = chunks.split_last().unwrap();
        let mut offset = 0;
        for c in body {
            let r = client()
                .patch(s.url(&l))
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{}-{}", offset, offset + c.len() - 1))
                .body(c.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            offset += c.len();
            assert_eq!(r.headers()["range"], format!("0-{}", offset - 1).as_str());
            assert!(r.headers().contains_key("docker-upload-uuid"));
            l = loc(&r);
        }
        let r = client()
            .put(s.url(&format!("{l}?digest={d}")))
            .header("content-range", format!("{}-{}", offset, offset + last.len() - 1))
            .body(last.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(get_blob(&s, "chunky", &d).await, (200, data));
    }

    #[tokio::test]
    async fn streamed_patch_without_content_range() {
        let s = Server::start();
        let data = random_bytes(3_000_000, 4);
        let d = sha256_digest(&data);
        let l = start_session(&s, "r").await;
        let stream = futures::stream::iter(
            data.chunks(65_536)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        let r = client()
            .patch(s.url(&l))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(r.headers()["range"], "0-2999999");
        let r = client()
            .put(s.url(&format!("{}?digest={d}", loc(&r))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(get_blob(&s, "r", &d).await, (200, data));
    }

    #[tokio::test]
    async fn out_of_order_chunk_is_416_with_the_current_range() {
        let s = Server::start();
        let l = start_session(&s, "r").await;
        let r = client()
            .patch(s.url(&l))
            .header("content-range", "0-9")
            .body(vec![1u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        for bad in ["5-14", "20-29", "0-9"] {
            let r = client()
                .patch(s.url(&l))
                .header("content-range", bad)
                .body(vec![2u8; 10])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 416, "{bad}");
            assert_eq!(r.headers()["range"], "0-9");
            assert_eq!(loc(&r), l);
            assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UPLOAD_INVALID"]);
        }
        // status after a 416 tells where to resume
        let r = client().get(s.url(&l)).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()["range"], "0-9");
        assert_eq!(loc(&r), l);
    }

    #[tokio::test]
    async fn a_chunk_shorter_than_its_content_range_is_rejected_and_discarded() {
        let s = Server::start();
        let l = start_session(&s, "r").await;
        let r = client()
            .patch(s.url(&l))
            .header("content-range", "0-99")
            .body(vec![7u8; 60])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()["range"], "0-0");
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["SIZE_INVALID"]);
        let r = client().get(s.url(&l)).send().await.unwrap();
        assert_eq!(r.headers()["range"], "0-0", "the offset did not move");
        // the session still works
        let data = vec![9u8; 100];
        let r = client()
            .patch(s.url(&l))
            .header("content-range", "0-99")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let d = sha256_digest(&data);
        assert_eq!(
            client()
                .put(s.url(&format!("{l}?digest={d}")))
                .send()
                .await
                .unwrap()
                .status(),
            201
        );
        assert_eq!(get_blob(&s, "r", &d).await, (200, data));
    }

    #[tokio::test]
    async fn malformed_content_range_is_rejected() {
        let s = Server::start();
        let l = start_session(&s, "r").await;
        let r = client()
            .patch(s.url(&l))
            .header("content-range", "nine-ten")
            .body(vec![1u8; 2])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UPLOAD_INVALID"]);
    }

    #[tokio::test]
    async fn put_without_or_with_a_malformed_digest_is_digest_invalid() {
        let s = Server::start();
        let l = start_session(&s, "r").await;
        for q in ["", "?digest=", "?digest=sha256:123", "?digest=blake3:abc"] {
            let r = client()
                .put(s.url(&format!("{l}{q}")))
                .body(vec![1u8])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{q}");
            assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["DIGEST_INVALID"], "{q}");
        }
    }

    #[tokio::test]
    async fn unknown_or_foreign_upload_ids_are_blob_upload_unknown() {
        let s = Server::start();
        let l = start_session(&s, "mine").await;
        let id = l.rsplit('/').next().unwrap();
        let paths = [
            format!("/v2/mine/blobs/uploads/{}", uuid::Uuid::new_v4()),
            format!("/v2/theirs/blobs/uploads/{id}"),
            "/v2/mine/blobs/uploads/not-a-uuid".to_owned(),
        ];
        for p in paths {
            let r = client().get(s.url(&p)).send().await.unwrap();
            assert_eq!(r.status(), 404, "{p}");
            assert_eq!(
                error_codes(&r.bytes().await.unwrap()),
                vec!["BLOB_UPLOAD_UNKNOWN"],
                "{p}"
            );
        }
    }

    #[tokio::test]
    async fn mount_from_another_repository() {
        let s = Server::start();
        let data = random_bytes(40_000, 6);
        let d = sha256_digest(&data);
        let r = client()
            .post(s.url(&format!("/v2/src/blobs/uploads/?digest={d}")))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = client()
            .post(s.url(&format!("/v2/dst/blobs/uploads/?mount={d}&from=src")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(loc(&r), format!("/v2/dst/blobs/{d}"));
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        assert_eq!(get_blob(&s, "dst", &d).await, (200, data.clone()));
        // without `from`: mounted when stored anywhere
        let r = client()
            .post(s.url(&format!("/v2/third/blobs/uploads/?mount={d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(get_blob(&s, "third", &d).await, (200, data));
        // not mountable (the source lacks it): a session is opened instead
        let missing = sha256_digest(b"nowhere");
        let r = client()
            .post(s.url(&format!("/v2/dst/blobs/uploads/?mount={missing}&from=src")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert!(loc(&r).starts_with("/v2/dst/blobs/uploads/"));
        let r = client()
            .post(s.url(&format!("/v2/dst/blobs/uploads/?mount={missing}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }

    #[tokio::test]
    async fn digest_algorithm_sha512_sessions() {
        let s = Server::start();
        let data = random_bytes(200_000, 7);
        let d = format!("sha512:{}", hex::encode(<sha2::Sha512 as sha2::Digest>::digest(&data)));
        let r = client()
            .post(s.url("/v2/r/blobs/uploads/?digest-algorithm=sha512"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let l = loc(&r);
        client()
            .patch(s.url(&l))
            .header("content-range", "0-99999")
            .body(data[..100_000].to_vec())
            .send()
            .await
            .unwrap();
        let r = client()
            .put(s.url(&format!("{l}?digest={d}")))
            .body(data[100_000..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(get_blob(&s, "r", &d).await, (200, data.clone()));
        // a sha256 session closed with a sha512 digest still verifies
        let l = start_session(&s, "r2").await;
        let r = client()
            .put(s.url(&format!("{l}?digest={d}")))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = client()
            .post(s.url("/v2/r/blobs/uploads/?digest-algorithm=md5"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["DIGEST_INVALID"]);
    }
}
