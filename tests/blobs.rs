//! Blob pull, existence check and delete (spec: "Pulling blobs", "Checking if content exists",
//! "Deleting Blobs"), and repository scoping of blobs.
mod common;
use common::*;

async fn push(s: &Server, repo: &str, data: &[u8]) -> String {
    let d = sha256_digest(data);
    let r = client()
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    d
}

#[tokio::test]
async fn a_repository_serves_only_blobs_pushed_or_mounted_into_it() {
    let s = Server::start();
    let data = random_bytes(5_000, 3);
    let d = push(&s, "team-a/secret", &data).await;
    for path in [format!("/v2/team-b/app/blobs/{d}"), format!("/v2/team-a/blobs/{d}")] {
        let r = client().get(s.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UNKNOWN"]);
        let r = client().head(s.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "HEAD {path}");
    }
    // stored once, whatever the number of repositories
    push(&s, "team-b/app", &data).await;
    let copies = files_under(&s.root())
        .iter()
        .filter(|p| p.starts_with("docker/registry/v2/blobs/"))
        .count();
    assert_eq!(copies, 1);
    assert_eq!(
        client()
            .get(s.url(&format!("/v2/team-b/app/blobs/{d}")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn sha512_blobs_are_addressed_by_their_sha512_digest() {
    let s = Server::start();
    let data = random_bytes(70_000, 5);
    let d = format!("sha512:{}", hex::encode(<sha2::Sha512 as sha2::Digest>::digest(&data)));
    let r = client()
        .post(s.url(&format!("/v2/r/blobs/uploads/?digest={d}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let r = client().get(s.url(&format!("/v2/r/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    assert!(
        files_under(&s.root())
            .iter()
            .any(|p| p.starts_with("docker/registry/v2/blobs/sha512/"))
    );
}

// Tests that run on both backends (the filesystem and the in-memory object store).
on_both_backends! {
    #[tokio::test]
    async fn get_returns_the_blob_with_digest_length_and_range_headers() {
        let s = Server::start();
        let data = random_bytes(300_000, 1);
        let d = push(&s, "a/b", &data).await;
        let r = client().get(s.url(&format!("/v2/a/b/blobs/{d}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert_eq!(h["docker-content-digest"], d.as_str());
        assert_eq!(h["content-length"], "300000");
        assert_eq!(h["accept-ranges"], "bytes");
        assert_eq!(h["content-type"], "application/octet-stream");
        assert_eq!(h["etag"], format!("\"{d}\"").as_str());
        assert_eq!(h["docker-distribution-api-version"], "registry/2.0");
        assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    }

    #[tokio::test]
    async fn head_reports_existence_and_size_without_a_body() {
        let s = Server::start();
        let data = random_bytes(12_345, 2);
        let d = push(&s, "r", &data).await;
        let r = client().head(s.url(&format!("/v2/r/blobs/{d}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], "12345");
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        assert!(r.bytes().await.unwrap().is_empty());
        let missing = sha256_digest(b"never pushed");
        let r = client()
            .head(s.url(&format!("/v2/r/blobs/{missing}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }

    #[tokio::test]
    async fn unknown_blob_is_404_blob_unknown() {
        let s = Server::start();
        let missing = sha256_digest(b"never pushed");
        let r = client()
            .get(s.url(&format!("/v2/nobody/blobs/{missing}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UNKNOWN"]);
    }

    #[tokio::test]
    async fn range_requests_follow_rfc_9110() {
        let s = Server::start();
        let data = random_bytes(10_000_000, 4); // several mmap windows
        let d = push(&s, "r", &data).await;
        let url = s.url(&format!("/v2/r/blobs/{d}"));
        let cases: [(&str, usize, usize); 5] = [
            ("bytes=0-99", 0, 100),
            ("bytes=4194300-4194310", 4_194_300, 4_194_311), // across a window boundary
            ("bytes=9999990-", 9_999_990, 10_000_000),
            ("bytes=-10", 9_999_990, 10_000_000),
            ("bytes=9999990-20000000", 9_999_990, 10_000_000),
        ];
        for (range, start, end) in cases {
            let r = client().get(&url).header("range", range).send().await.unwrap();
            assert_eq!(r.status(), 206, "{range}");
            assert_eq!(
                r.headers()["content-range"],
                format!("bytes {}-{}/10000000", start, end - 1).as_str(),
                "{range}"
            );
            assert_eq!(r.headers()["content-length"], (end - start).to_string().as_str());
            assert_eq!(r.bytes().await.unwrap().to_vec(), data[start..end].to_vec(), "{range}");
        }
        let r = client()
            .get(&url)
            .header("range", "bytes=10000000-")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()["content-range"], "bytes */10000000");
        // multi-range: the whole blob with 200 (RFC 9110 lets a server ignore Range)
        let r = client()
            .get(&url)
            .header("range", "bytes=0-1,5-6")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 10_000_000);
    }

    #[tokio::test]
    async fn a_zero_byte_blob_pushes_and_pulls() {
        let s = Server::start();
        let d = push(&s, "empty", b"").await;
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let r = client()
            .get(s.url(&format!("/v2/empty/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], "0");
        assert!(r.bytes().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn delete_is_405_unsupported_unless_enabled() {
        let s = Server::start();
        let d = push(&s, "r", b"keep me").await;
        let r = client()
            .delete(s.url(&format!("/v2/r/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["UNSUPPORTED"]);
        assert_eq!(
            client()
                .get(s.url(&format!("/v2/r/blobs/{d}")))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }

    #[tokio::test]
    async fn delete_unlinks_the_blob_from_the_repository() {
        let s = Server::start_with_delete();
        let d = push(&s, "r", b"delete me").await;
        push(&s, "other", b"delete me").await;
        let r = client()
            .delete(s.url(&format!("/v2/r/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let r = client().get(s.url(&format!("/v2/r/blobs/{d}"))).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UNKNOWN"]);
        // another repository's link is untouched
        assert_eq!(
            client()
                .get(s.url(&format!("/v2/other/blobs/{d}")))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let r = client()
            .delete(s.url(&format!("/v2/r/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["BLOB_UNKNOWN"]);
    }

    #[tokio::test]
    async fn malformed_digests_are_400_digest_invalid() {
        let s = Server::start();
        for d in [
            "sha256:abc",
            "sha256:ZZ",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "nodigest",
        ] {
            let r = client().get(s.url(&format!("/v2/r/blobs/{d}"))).send().await.unwrap();
            assert_eq!(r.status(), 400, "{d}");
            assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["DIGEST_INVALID"], "{d}");
        }
    }
}
