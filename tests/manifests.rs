//! Manifests (spec: "Pulling manifests", "Pushing Manifests", "Pushing Manifests with Subject"):
//! OCI image manifest and index, Docker schema 2 manifest and list, artifacts; exact bytes; every
//! error the issue lists; concurrent tag updates.
mod common;
use common::*;

use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Push a config and one layer, and return an image manifest (as JSON) that uses them.
async fn image(s: &Server, repo: &str, seed: u64, media_type: Option<&str>) -> Value {
    let config = s
        .api()
        .post_blob_desc(
            repo,
            format!(r#"{{"architecture":"amd64","os":"linux","n":{seed}}}"#).as_bytes(),
        )
        .await
        .unwrap();
    let layer = s.api().post_blob_desc(repo, &random_bytes(1000, seed)).await.unwrap();
    let docker = media_type == Some(DOCKER_MANIFEST);
    let (cfg_type, layer_type) = if docker {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let mut m = json!({
        "schemaVersion": 2,
        "config": {"mediaType": cfg_type, "digest": config["digest"], "size": config["size"]},
        "layers": [{"mediaType": layer_type, "digest": layer["digest"], "size": layer["size"]}],
    });
    if let Some(t) = media_type {
        m["mediaType"] = json!(t);
    }
    m
}

async fn put(s: &Server, repo: &str, reference: &str, ct: &str, body: &[u8]) -> reqwest::Response {
    client()
        .put(s.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("content-type", ct)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn put_ok(s: &Server, repo: &str, reference: &str, ct: &str, body: &[u8]) -> String {
    let r = put(s, repo, reference, ct, body).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    sha256_digest(body)
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

async fn codes(r: reqwest::Response) -> Vec<String> {
    error_codes(&r.bytes().await.unwrap())
}

// Tests that run on both backends (the filesystem and the in-memory object store).
on_both_backends! {
    #[tokio::test]
    async fn put_answers_201_with_location_and_digest_of_the_exact_bytes() {
        let s = Server::start();
        let m = image(&s, "app", 1, Some(OCI_MANIFEST)).await;
        // unusual whitespace and key order, and an unknown field: stored and served as sent
        let text = format!(
            "{{\n  \"layers\": {},\n   \"x-unknown\": {{\"keep\": true}},\"schemaVersion\":2, \"mediaType\": \"{OCI_MANIFEST}\", \"config\": {}\n}}\n",
            m["layers"], m["config"]
        );
        let d = sha256_digest(text.as_bytes());
        let r = put(&s, "app", "v1", OCI_MANIFEST, text.as_bytes()).await;
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["location"], format!("/v2/app/manifests/{d}").as_str());
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        assert!(!r.headers().contains_key("oci-subject"));
        for reference in ["v1", d.as_str()] {
            let r = client()
                .get(s.url(&format!("/v2/app/manifests/{reference}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
            assert_eq!(r.headers()["docker-content-digest"], d.as_str());
            assert_eq!(r.headers()["content-length"], text.len().to_string().as_str());
            assert_eq!(r.headers()["etag"], format!("\"{d}\"").as_str());
            assert_eq!(r.text().await.unwrap(), text);
        }
    }

    #[tokio::test]
    async fn all_four_manifest_types_and_artifacts_round_trip() {
        let s = Server::start();
        let oci = bytes(&image(&s, "r", 1, Some(OCI_MANIFEST)).await);
        let docker = bytes(&image(&s, "r", 2, Some(DOCKER_MANIFEST)).await);
        let oci_d = put_ok(&s, "r", "oci", OCI_MANIFEST, &oci).await;
        let docker_d = put_ok(&s, "r", "docker", DOCKER_MANIFEST, &docker).await;
        let index = bytes(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": oci_d, "size": oci.len(), "platform": {"architecture": "amd64", "os": "linux"}}]}));
        let list = bytes(&json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": docker_d, "size": docker.len(), "platform": {"architecture": "arm64", "os": "linux"}}]}));
        put_ok(&s, "r", "index", OCI_INDEX, &index).await;
        put_ok(&s, "r", "list", DOCKER_LIST, &list).await;
        // an artifact with artifactType and the empty config, and one with a custom config type
        let empty = s.api().post_blob_desc("r", b"{}").await.unwrap();
        let data = s.api().post_blob_desc("r", b"sbom contents").await.unwrap();
        let artifact = bytes(
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom.v1",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty["digest"], "size": 2, "data": "e30="},
            "layers": [{"mediaType": "application/spdx+json", "digest": data["digest"], "size": data["size"]}]}),
        );
        let custom = bytes(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.example.config.v1+json", "digest": empty["digest"], "size": 2},
            "layers": []}));
        put_ok(&s, "r", "artifact", OCI_MANIFEST, &artifact).await;
        put_ok(&s, "r", "custom", OCI_MANIFEST, &custom).await;
        for (tag, ct, body) in [
            ("oci", OCI_MANIFEST, &oci),
            ("docker", DOCKER_MANIFEST, &docker),
            ("index", OCI_INDEX, &index),
            ("list", DOCKER_LIST, &list),
            ("artifact", OCI_MANIFEST, &artifact),
            ("custom", OCI_MANIFEST, &custom),
        ] {
            let r = client()
                .get(s.url(&format!("/v2/r/manifests/{tag}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{tag}");
            assert_eq!(r.headers()["content-type"], ct, "{tag}");
            assert_eq!(r.bytes().await.unwrap().to_vec(), *body, "{tag}");
        }
    }

    #[tokio::test]
    async fn a_manifest_without_media_type_takes_the_content_type() {
        let s = Server::start();
        let m = bytes(&image(&s, "r", 1, None).await); // as umoci writes them
        put_ok(&s, "r", "v1", OCI_MANIFEST, &m).await;
        let r = client().head(s.url("/v2/r/manifests/v1")).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
    }

    #[tokio::test]
    async fn push_by_digest_must_match_the_bytes() {
        let s = Server::start();
        let m = bytes(&image(&s, "r", 1, Some(OCI_MANIFEST)).await);
        let d = sha256_digest(&m);
        let r = put(&s, "r", &d, OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        let wrong = sha256_digest(b"other");
        let r = put(&s, "r", &wrong, OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 400);
        assert_eq!(codes(r).await, vec!["DIGEST_INVALID"]);
        assert_eq!(
            client()
                .get(s.url(&format!("/v2/r/manifests/{wrong}")))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }

    #[tokio::test]
    async fn missing_blobs_are_manifest_blob_unknown_one_entry_per_digest() {
        let s = Server::start();
        let mut m = image(&s, "r", 1, Some(OCI_MANIFEST)).await;
        let (a, b) = (sha256_digest(b"missing a"), sha256_digest(b"missing b"));
        m["layers"] = json!([
            m["layers"][0],
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": a, "size": 9},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": b, "size": 9},
        ]);
        let r = put(&s, "r", "v1", OCI_MANIFEST, &bytes(&m)).await;
        assert_eq!(r.status(), 400);
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2, "{body}");
        let mut named: Vec<&str> = errors.iter().map(|e| e["detail"]["digest"].as_str().unwrap()).collect();
        named.sort();
        let mut want = vec![a.as_str(), b.as_str()];
        want.sort();
        assert_eq!(named, want);
        assert!(errors.iter().all(|e| e["code"] == "MANIFEST_BLOB_UNKNOWN"));
        assert_eq!(
            client().get(s.url("/v2/r/manifests/v1")).send().await.unwrap().status(),
            404
        );
    }

    #[tokio::test]
    async fn a_blob_pushed_only_to_another_repository_counts_as_missing() {
        let s = Server::start();
        let m = bytes(&image(&s, "elsewhere", 1, Some(OCI_MANIFEST)).await);
        let r = put(&s, "here", "v1", OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 400);
        assert!(codes(r).await.iter().all(|c| c == "MANIFEST_BLOB_UNKNOWN"));
    }

    #[tokio::test]
    async fn an_index_needs_its_children_in_the_repository() {
        let s = Server::start();
        let child = sha256_digest(b"not a pushed manifest");
        let index = bytes(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": 10}]}));
        let r = put(&s, "r", "v1", OCI_INDEX, &index).await;
        assert_eq!(r.status(), 400);
        assert_eq!(codes(r).await, vec!["MANIFEST_BLOB_UNKNOWN"]);
    }

    #[tokio::test]
    async fn non_distributable_layers_need_not_be_pushed() {
        let s = Server::start();
        let mut m = image(&s, "r", 1, Some(OCI_MANIFEST)).await;
        let foreign = sha256_digest(b"never pushed");
        m["layers"] = json!([m["layers"][0],
            {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": foreign, "size": 12,
             "urls": ["https://example.com/layer"]}]);
        put_ok(&s, "r", "v1", OCI_MANIFEST, &bytes(&m)).await;
    }

    #[tokio::test]
    async fn a_subject_that_does_not_exist_yet_is_accepted_with_oci_subject() {
        let s = Server::start();
        let mut m = image(&s, "r", 1, Some(OCI_MANIFEST)).await;
        let subject = sha256_digest(b"a manifest pushed later");
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": 100});
        let r = put(&s, "r", "sig", OCI_MANIFEST, &bytes(&m)).await;
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["oci-subject"], subject.as_str());
    }

    #[tokio::test]
    async fn invalid_manifests_are_manifest_invalid() {
        let s = Server::start();
        let m = image(&s, "r", 1, Some(OCI_MANIFEST)).await;
        let schema1 =
            br#"{"schemaVersion":1,"name":"r","tag":"v1","architecture":"amd64","fsLayers":[],"history":[]}"#.to_vec();
        let cases: Vec<(&str, &str, Vec<u8>)> = vec![
            ("invalid JSON", OCI_MANIFEST, b"{not json".to_vec()),
            ("mediaType disagrees with Content-Type", DOCKER_MANIFEST, bytes(&m)),
            (
                "schema 1 by content",
                "application/vnd.docker.distribution.manifest.v1+json",
                schema1.clone(),
            ),
            (
                "schema 1 signed",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                schema1,
            ),
            (
                "no config",
                OCI_MANIFEST,
                bytes(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []})),
            ),
            (
                "bad descriptor digest",
                OCI_MANIFEST,
                bytes(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "x", "digest": "sha256:nothex", "size": 1}, "layers": []})),
            ),
            (
                "unknown type",
                "application/vnd.example.unknown+json",
                bytes(&json!({"schemaVersion": 2, "mediaType": "application/vnd.example.unknown+json"})),
            ),
        ];
        for (what, ct, body) in cases {
            let r = put(&s, "r", "v1", ct, &body).await;
            assert_eq!(r.status(), 400, "{what}");
            assert_eq!(codes(r).await, vec!["MANIFEST_INVALID"], "{what}");
        }
        assert_eq!(
            client().get(s.url("/v2/r/manifests/v1")).send().await.unwrap().status(),
            404
        );
    }

    #[tokio::test]
    async fn larger_than_4_mib_is_413() {
        let s = Server::start();
        let mut m = image(&s, "r", 1, Some(OCI_MANIFEST)).await;
        m["annotations"] = json!({"padding": "x".repeat(4 << 20)});
        let r = put(&s, "r", "big", OCI_MANIFEST, &bytes(&m)).await;
        assert_eq!(r.status(), 413);
        assert_eq!(codes(r).await, vec!["MANIFEST_INVALID"]);
    }

    #[tokio::test]
    async fn invalid_tags_and_names_are_refused() {
        let s = Server::start();
        let m = bytes(&image(&s, "r", 1, Some(OCI_MANIFEST)).await);
        for tag in ["-bad", ".bad", &"t".repeat(129)] {
            let r = put(&s, "r", tag, OCI_MANIFEST, &m).await;
            assert_eq!(r.status(), 400, "{tag}");
            assert_eq!(codes(r).await, vec!["MANIFEST_INVALID"]);
        }
        put_ok(&s, "r", &"t".repeat(128), OCI_MANIFEST, &m).await;
        let r = put(&s, "Bad", "v1", OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 400);
        assert_eq!(codes(r).await, vec!["NAME_INVALID"]);
    }

    #[tokio::test]
    async fn unknown_manifest_and_unknown_repository() {
        let s = Server::start();
        let m = bytes(&image(&s, "r", 1, Some(OCI_MANIFEST)).await);
        put_ok(&s, "r", "v1", OCI_MANIFEST, &m).await;
        let r = client().get(s.url("/v2/r/manifests/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(codes(r).await, vec!["MANIFEST_UNKNOWN"]);
        let d = sha256_digest(b"x");
        let r = client()
            .get(s.url(&format!("/v2/r/manifests/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(codes(r).await, vec!["MANIFEST_UNKNOWN"]);
        let r = client().get(s.url("/v2/nobody/manifests/v1")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(codes(r).await, vec!["NAME_UNKNOWN"]);
        let r = client().head(s.url("/v2/r/manifests/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        // the manifest of another repository is not visible here
        let r = client()
            .get(s.url(&format!("/v2/other/manifests/{}", sha256_digest(&m))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }

    #[tokio::test]
    async fn head_and_if_none_match() {
        let s = Server::start();
        let m = bytes(&image(&s, "r", 1, Some(OCI_MANIFEST)).await);
        let d = put_ok(&s, "r", "v1", OCI_MANIFEST, &m).await;
        let r = client().head(s.url("/v2/r/manifests/v1")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], m.len().to_string().as_str());
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
        assert!(r.bytes().await.unwrap().is_empty());
        let r = client()
            .get(s.url("/v2/r/manifests/v1"))
            .header("if-none-match", format!("\"{d}\""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304);
        let r = client()
            .get(s.url("/v2/r/manifests/v1"))
            .header("if-none-match", "\"sha256:other\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    #[tokio::test]
    async fn concurrent_puts_of_one_tag_end_with_one_intact_winner_and_readers_never_miss() {
        let s = Server::start();
        let mut manifests = Vec::new();
        for i in 0..32 {
            manifests.push(bytes(&image(&s, "race", i, Some(OCI_MANIFEST)).await));
        }
        put_ok(&s, "race", "latest", OCI_MANIFEST, &manifests[0]).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (url, stop, all) = (s.url("/v2/race/manifests/latest"), stop.clone(), manifests.clone());
            readers.push(tokio::spawn(async move {
                let c = client();
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), 200, "a reader saw the tag missing");
                    let body = r.bytes().await.unwrap().to_vec();
                    assert!(all.contains(&body), "a reader saw bytes that were never pushed");
                    reads += 1;
                }
                reads
            }));
        }
        let mut writers = Vec::new();
        for m in manifests.clone() {
            let url = s.url("/v2/race/manifests/latest");
            writers.push(tokio::spawn(async move {
                client()
                    .put(url)
                    .header("content-type", OCI_MANIFEST)
                    .body(m)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        for w in writers {
            assert_eq!(w.await.unwrap(), 201);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            assert!(r.await.unwrap() > 0);
        }
        let r = client().get(s.url("/v2/race/manifests/latest")).send().await.unwrap();
        let d = r.headers()["docker-content-digest"].to_str().unwrap().to_owned();
        let body = r.bytes().await.unwrap().to_vec();
        assert!(manifests.contains(&body));
        assert_eq!(sha256_digest(&body), d, "the served bytes are intact");
    }

    #[tokio::test]
    async fn push_by_digest_with_tag_parameters_creates_the_tags() {
        let s = Server::start();
        let m = bytes(&image(&s, "r", 1, Some(OCI_MANIFEST)).await);
        let d = sha256_digest(&m);
        let r = put(&s, "r", &format!("{d}?tag=1.2.3&tag=1.2&tag=latest"), OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 201);
        let mut tags: Vec<String> = r
            .headers()
            .get_all("oci-tag")
            .iter()
            .flat_map(|v| {
                v.to_str()
                    .unwrap()
                    .split(',')
                    .map(|t| t.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        tags.sort();
        assert_eq!(tags, vec!["1.2", "1.2.3", "latest"]);
        for t in ["1.2.3", "1.2", "latest"] {
            let r = client()
                .get(s.url(&format!("/v2/r/manifests/{t}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{t}");
            assert_eq!(r.bytes().await.unwrap().to_vec(), m);
        }
        let r = put(&s, "r", &format!("{d}?tag=-bad"), OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 400);
        let many: String = (0..101).map(|i| format!("tag=t{i}&")).collect();
        let r = put(&s, "r", &format!("{d}?{many}"), OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 414);
    }
}
