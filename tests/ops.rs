//! Operations over real HTTP (issue 8): Prometheus metrics, request ids, the access log
//! switch, configured response headers, /healthz and /readyz, the debug listener, JSON logs.
mod common;
mod ops_support;
use common::*;
use ops_support::*;

use std::time::Duration;

use serde_json::Value;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

async fn metrics_text(url: &str) -> String {
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_requests_pushes_and_pulls() {
    let s = Server::start();
    let base = s.url("");
    let layer = random_bytes(300_000, 1);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let img = Api::new(&base)
        .push_image("team/app", "v1", config, &[&layer])
        .await
        .unwrap();
    let (manifest, layer_digest) = (img.digest, img.layers[0].clone());
    let c = client();
    let r = c
        .get(s.url("/v2/team/app/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let got = c
        .get(s.url(&format!("/v2/team/app/blobs/{layer_digest}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), layer.len());
    let r = c
        .head(s.url(&format!("/v2/team/app/manifests/{manifest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        c.get(s.url("/v2/team/app/manifests/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let text = metrics_text(&s.url("/metrics")).await;
    assert_eq!(sample(&text, "wharf_pushes_total{kind=\"blob\"}"), 2.0, "{text}");
    assert_eq!(sample(&text, "wharf_pushes_total{kind=\"manifest\"}"), 1.0);
    assert_eq!(
        sample(&text, "wharf_pulls_total{kind=\"manifest\"}"),
        1.0,
        "a HEAD is not a pull"
    );
    assert_eq!(sample(&text, "wharf_pulls_total{kind=\"blob\"}"), 1.0);
    assert_eq!(
        sample(
            &text,
            "wharf_http_requests_total{method=\"POST\",route=\"/v2/{name}/blobs/uploads/\",status=\"201\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "wharf_http_requests_total{method=\"GET\",route=\"/v2/{name}/manifests/{reference}\",status=\"404\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "wharf_http_request_duration_seconds_count{method=\"PUT\",route=\"/v2/{name}/manifests/{reference}\"}"
        ),
        1.0
    );
    assert!(
        sample(
            &text,
            "wharf_http_response_body_bytes_total{method=\"GET\",route=\"/v2/{name}/blobs/{digest}\"}"
        ) >= layer.len() as f64
    );
    assert!(
        sample(
            &text,
            "wharf_http_request_body_bytes_total{method=\"POST\",route=\"/v2/{name}/blobs/uploads/\"}"
        ) >= layer.len() as f64
    );
    assert_eq!(sample(&text, "wharf_uploads_in_progress"), 0.0);
    // the metrics request itself is in flight
    assert_eq!(sample(&text, "wharf_http_requests_in_flight"), 1.0);
    for name in [
        "wharf_storage_errors_total",
        "wharf_gc_runs_total",
        "wharf_gc_last_run_timestamp_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
    }
    assert!(!text.contains("team/app"), "repository names never become labels");
}

#[tokio::test]
async fn uploads_in_progress_counts_a_streaming_upload() {
    let s = Server::start();
    let c = client();
    let r = c.post(s.url("/v2/up/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(futures_stream(rx));
    let url = s.url(&loc);
    let patch = tokio::spawn(async move { client().patch(url).body(body).send().await });
    tx.send(Ok(vec![7u8; 10_000])).await.unwrap();
    let metrics = s.url("/metrics");
    let mut seen = false;
    for _ in 0..200 {
        let text = client().get(&metrics).send().await.unwrap().text().await.unwrap();
        if sample(&text, "wharf_uploads_in_progress") == 1.0 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen, "the PATCH in progress was not counted");
    drop(tx);
    assert_eq!(patch.await.unwrap().unwrap().status(), 202);
    let text = client().get(&metrics).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&text, "wharf_uploads_in_progress"), 0.0);
}

fn futures_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn access_lines(logs: &[String]) -> Vec<String> {
    logs.iter().filter(|l| l.contains("wharf::access")).cloned().collect()
}

#[tokio::test]
async fn request_ids_are_returned_and_logged() {
    let s = Server::start();
    let c = client();
    for probe in ["/readyz", "/metrics"] {
        assert_eq!(c.get(s.url(probe)).send().await.unwrap().status(), 200);
    }
    let r = c.get(s.url("/v2/")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let r = c
        .get(s.url("/v2/"))
        .header("x-request-id", "trace-42.a_b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42.a_b", "a sane client id is kept");
    let r = c
        .get(s.url("/v2/"))
        .header("x-request-id", "bad id\twith junk")
        .send()
        .await
        .unwrap();
    let replaced = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(replaced.len(), 36, "{replaced}");
    // errors carry one too
    let r = c.get(s.url("/v2/x/manifests/none")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let err_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        wait_for(Duration::from_secs(5), || access_lines(&s.logs()).len() >= 4),
        "{:?}",
        s.logs()
    );
    let lines = access_lines(&s.logs());
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("path=/metrics") || l.contains("path=/readyz")),
        "probes and scrapes are logged at debug only: {lines:?}"
    );
    for id in [&id, "trace-42.a_b", &replaced, &err_id] {
        assert!(
            lines.iter().any(|l| l.contains(&format!("request_id={id}"))),
            "{id} not in {lines:?}"
        );
    }
}

#[tokio::test]
async fn the_access_log_can_be_turned_off() {
    let s = Server::start_with("", &[("REGISTRY_LOG_ACCESSLOG_DISABLED", "true")]);
    let r = client().get(s.url("/v2/")).send().await.unwrap();
    assert!(r.headers().contains_key("x-request-id"));
    // a request after it, whose effect we can wait for: the metrics still count
    let text = metrics_text(&s.url("/metrics")).await;
    assert_eq!(
        sample(
            &text,
            "wharf_http_requests_total{method=\"GET\",route=\"/v2/\",status=\"200\"}"
        ),
        1.0
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(access_lines(&s.logs()).is_empty(), "{:?}", s.logs());
}

#[tokio::test]
async fn configured_headers_are_on_every_response() {
    let s = Server::start_with(
        "[http.headers]\nX-Content-Type-Options = [\"nosniff\"]\nX-Frame-Options = [\"DENY\"]\n",
        &[],
    );
    for path in ["/v2/", "/v2/a/manifests/missing", "/healthz"] {
        let r = client().get(s.url(path)).send().await.unwrap();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{path}");
    }
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_storage() {
    let s = Server::start_with(
        "",
        &[
            ("WHARF_HEALTH_STORAGEDRIVER_INTERVAL", "100ms"),
            ("WHARF_HEALTH_STORAGEDRIVER_THRESHOLD", "2"),
        ],
    );
    let c = client();
    let get = |path: &'static str| {
        let c = c.clone();
        let url = s.url(path);
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["checks"]["storage"], "ok");
    assert_eq!(v["checks"]["config"], "ok");
    assert_eq!(get("/debug/health").await, (200, "{}\n".to_owned()));

    // the storage root becomes a file: the probe cannot write any more
    let root = s.root();
    let moved = s.dir.path().join("moved");
    std::fs::rename(&root, &moved).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let mut failing = None;
    for _ in 0..100 {
        let (status, body) = get("/readyz").await;
        if status == 503 {
            failing = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = failing.expect("/readyz stayed 200 with unwritable storage");
    assert!(body.contains("failing"), "{body}");
    let (status, body) = get("/debug/health").await;
    assert_eq!(status, 503);
    assert!(body.contains("storagedriver_"), "{body}");
    assert_eq!(get("/healthz").await.0, 200, "the process is still up");

    std::fs::remove_file(&root).unwrap();
    std::fs::rename(&moved, &root).unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if get("/readyz").await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "/readyz did not recover");
}

#[tokio::test]
async fn metrics_move_to_the_debug_listener() {
    let s = Server::start_with("", &[("REGISTRY_HTTP_DEBUG_ADDR", "127.0.0.1:0")]);
    let mut debug = None;
    assert!(wait_for(Duration::from_secs(10), || {
        debug = s
            .logs()
            .iter()
            .find(|l| l.contains("debug listener"))
            .and_then(|l| Some(l[l.find("addr=")? + 5..].split_whitespace().next()?.to_owned()));
        debug.is_some()
    }));
    let debug = format!("http://{}", debug.unwrap());
    client().get(s.url("/v2/")).send().await.unwrap();
    let text = metrics_text(&format!("{debug}/metrics")).await;
    assert_eq!(
        sample(
            &text,
            "wharf_http_requests_total{method=\"GET\",route=\"/v2/\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        client().get(s.url("/metrics")).send().await.unwrap().status(),
        404,
        "not on the main port when a debug address is set"
    );
    for base in [debug.clone(), s.url("")] {
        let r = client().get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{base}");
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let p = Proc::start(
        &["--log-format", "json", "serve"],
        &[
            ("WHARF_HTTP_ADDR", "127.0.0.1:0"),
            ("WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY", root.to_str().unwrap()),
        ],
    );
    let r = client().get(p.url("/v2/")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(eventually(Duration::from_secs(5), || p
        .logs()
        .iter()
        .any(|l| l.contains(&id))));
    for line in p.logs() {
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["target"] == "wharf::access" {
            assert_eq!(v["fields"]["request_id"], id.as_str());
            assert_eq!(v["fields"]["status"], 200);
            assert_eq!(v["fields"]["path"], "/v2/");
        }
    }
}

/// The image's HEALTHCHECK: `wharf healthcheck` asks /healthz on the configured address.
#[test]
fn the_healthcheck_command_asks_the_configured_server() {
    let s = Server::start();
    let out = wharf_cmd()
        .args(["healthcheck"])
        .env("WHARF_HTTP_ADDR", s.addr.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("healthy"));
    // `:port` (every interface) is asked on loopback
    let out = wharf_cmd()
        .args(["healthcheck"])
        .env("WHARF_HTTP_ADDR", format!(":{}", s.addr.port()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = wharf_cmd()
        .args(["healthcheck", "--timeout", "1"])
        .env("WHARF_HTTP_ADDR", closed.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
