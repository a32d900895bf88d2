//! Content management (spec: "Deleting tags", "Deleting Manifests"): deletes by digest and by
//! tag, and 405 UNSUPPORTED while deletion is disabled.
mod common;
use common::*;

use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

async fn push_manifest(s: &Server, repo: &str, tags: &[&str], seed: u64) -> String {
    let cfg = format!("{{\"seed\":{seed}}}").into_bytes();
    let cd = sha256_digest(&cfg);
    let r = client()
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={cd}")))
        .body(cfg.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()}, "layers": []})).unwrap();
    for t in tags {
        let r = client()
            .put(s.url(&format!("/v2/{repo}/manifests/{t}")))
            .header("content-type", OCI_MANIFEST)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    sha256_digest(&body)
}

async fn status(s: &Server, method: reqwest::Method, path: &str) -> (u16, Vec<String>) {
    let r = client().request(method, s.url(path)).send().await.unwrap();
    let st = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    (st, if st < 400 { vec![] } else { error_codes(&body) })
}

// Tests that run on both backends (the filesystem and the in-memory object store).
on_both_backends! {
    #[tokio::test]
    async fn deleting_a_manifest_by_digest_removes_every_tag_pointing_at_it() {
        let s = Server::start_with_delete();
        let d = push_manifest(&s, "app", &["v1", "latest"], 1).await;
        let other = push_manifest(&s, "app", &["other"], 2).await;
        let (st, _) = status(&s, reqwest::Method::DELETE, &format!("/v2/app/manifests/{d}")).await;
        assert_eq!(st, 202);
        for r in [d.as_str(), "v1", "latest"] {
            let (st, codes) = status(&s, reqwest::Method::GET, &format!("/v2/app/manifests/{r}")).await;
            assert_eq!((st, codes), (404, vec!["MANIFEST_UNKNOWN".to_owned()]), "{r}");
        }
        assert_eq!(
            status(&s, reqwest::Method::GET, &format!("/v2/app/manifests/{other}"))
                .await
                .0,
            200
        );
        let tags: serde_json::Value = serde_json::from_slice(
            &client()
                .get(s.url("/v2/app/tags/list"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(tags["tags"], json!(["other"]));
    }

    #[tokio::test]
    async fn deleting_a_tag_removes_only_that_tag() {
        let s = Server::start_with_delete();
        let d = push_manifest(&s, "app", &["v1", "latest"], 1).await;
        assert_eq!(status(&s, reqwest::Method::DELETE, "/v2/app/manifests/v1").await.0, 202);
        assert_eq!(status(&s, reqwest::Method::GET, "/v2/app/manifests/v1").await.0, 404);
        assert_eq!(
            status(&s, reqwest::Method::GET, "/v2/app/manifests/latest").await.0,
            200
        );
        assert_eq!(
            status(&s, reqwest::Method::GET, &format!("/v2/app/manifests/{d}"))
                .await
                .0,
            200
        );
    }

    #[tokio::test]
    async fn deleting_unknown_manifests_and_tags_is_404() {
        let s = Server::start_with_delete();
        push_manifest(&s, "app", &["v1"], 1).await;
        let (st, codes) = status(&s, reqwest::Method::DELETE, "/v2/app/manifests/nope").await;
        assert_eq!((st, codes), (404, vec!["MANIFEST_UNKNOWN".to_owned()]));
        let (st, codes) = status(
            &s,
            reqwest::Method::DELETE,
            &format!("/v2/app/manifests/{}", sha256_digest(b"x")),
        )
        .await;
        assert_eq!((st, codes), (404, vec!["MANIFEST_UNKNOWN".to_owned()]));
        let (st, codes) = status(
            &s,
            reqwest::Method::DELETE,
            &format!("/v2/nobody/manifests/{}", sha256_digest(b"x")),
        )
        .await;
        assert_eq!((st, codes), (404, vec!["NAME_UNKNOWN".to_owned()]));
    }

    #[tokio::test]
    async fn deletes_are_405_unsupported_while_disabled() {
        let s = Server::start();
        let d = push_manifest(&s, "app", &["v1"], 1).await;
        for path in [format!("/v2/app/manifests/{d}"), "/v2/app/manifests/v1".to_owned()] {
            let (st, codes) = status(&s, reqwest::Method::DELETE, &path).await;
            assert_eq!((st, codes), (405, vec!["UNSUPPORTED".to_owned()]), "{path}");
        }
        assert_eq!(status(&s, reqwest::Method::GET, "/v2/app/manifests/v1").await.0, 200);
    }
}
