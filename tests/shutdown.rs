//! Graceful shutdown (issue 8): SIGTERM stops accepting, lets requests in flight finish up to
//! `http.draintimeout`, cuts the rest cleanly and exits 0; an upload cut that way resumes after
//! a restart on the same storage.
mod common;
mod ops_support;
use common::*;
use ops_support::*;

use std::time::{Duration, Instant};

use futures::StreamExt;

fn env<'a>(root: &'a str, drain: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("WHARF_HTTP_ADDR", "127.0.0.1:0"),
        ("WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY", root),
        ("WHARF_HTTP_DRAINTIMEOUT", drain),
    ]
}

async fn push(base: &str, repo: &str, data: &[u8]) -> String {
    let d = sha256_digest(data);
    let r = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    d
}

/// Bytes the server holds for an upload session (from `Range: 0-<last>`).
async fn upload_offset(base: &str, location: &str) -> u64 {
    let r = client().get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let range = r.headers()["range"].to_str().unwrap().to_owned();
    range.rsplit('-').next().unwrap().parse::<u64>().unwrap() + 1
}

fn wait_exit_async(
    mut p: Proc,
    timeout: Duration,
) -> tokio::task::JoinHandle<(Proc, Option<std::process::ExitStatus>)> {
    tokio::task::spawn_blocking(move || {
        let st = p.wait_exit(timeout);
        (p, st)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_a_large_upload_and_download_and_the_upload_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let root_s = root.to_str().unwrap();
    let drain = Duration::from_secs(3);
    let p = Proc::start(&["serve"], &env(root_s, "3s"));
    let base = p.url("");

    // A 64 MiB blob whose download stalls after the first chunk.
    let big = random_bytes(64 << 20, 9);
    let big_digest = push(&base, "sig/down", &big).await;
    let resp = client()
        .get(format!("{base}/v2/sig/down/blobs/{big_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut download = resp.bytes_stream();
    let mut downloaded: Vec<u8> = download.next().await.unwrap().unwrap().to_vec();

    // A 40 MiB upload that stalls after 8 MiB.
    let data = random_bytes(40 << 20, 10);
    let r = client()
        .post(format!("{base}/v2/sig/up/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let patch_url = format!("{base}{location}");
    let patch = tokio::spawn(async move { client().patch(patch_url).body(body).send().await });
    let sent = 8 << 20;
    for chunk in data[..sent].chunks(1 << 20) {
        tx.send(Ok(chunk.to_vec())).await.unwrap();
    }
    let mut received = 0;
    for _ in 0..400 {
        received = upload_offset(&base, &location).await;
        if received == sent as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(received, sent as u64, "the server did not receive the first 8 MiB");

    let t0 = Instant::now();
    p.signal("TERM");
    // New connections are refused at once (the listener is closed).
    let mut refused = false;
    for _ in 0..100 {
        if client().get(format!("{base}/v2/")).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting connections after SIGTERM");
    let (p, status) = wait_exit_async(p, Duration::from_secs(30)).await.unwrap();
    let took = t0.elapsed();
    let status = status.expect("the server did not exit");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        p.logs().join("\n")
    );
    // It waited for the requests in flight, then cut them: the whole drain fits in the timeout
    // (plus process start-up noise on a loaded machine).
    assert!(
        took >= drain / 2,
        "exited after {took:?}: did it wait for the requests in flight?"
    );
    assert!(took < drain + Duration::from_secs(4), "exited after {took:?}");
    let logs = p.logs().join("\n");
    assert!(logs.contains("drain timeout reached"), "{logs}");

    // The download was cut cleanly: an error before the end, never a short body taken as whole.
    let mut cut = false;
    while let Some(chunk) = download.next().await {
        match chunk {
            Ok(c) => downloaded.extend_from_slice(&c),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    if cut {
        assert!(downloaded.len() < big.len());
        assert_eq!(
            &downloaded[..],
            &big[..downloaded.len()],
            "the bytes received are right"
        );
    } else {
        assert_eq!(
            sha256_digest(&downloaded),
            big_digest,
            "a download that ends must be whole"
        );
    }

    // The upload request did not succeed ...
    drop(tx);
    match patch.await.unwrap() {
        Err(_) => {}
        Ok(r) => assert_ne!(r.status(), 202, "the cut PATCH must not look accepted"),
    }
    // ... and resumes after a restart from what the server kept.
    let p = Proc::start(&["serve"], &env(root_s, "3s"));
    let base = p.url("");
    let kept = upload_offset(&base, &location).await;
    assert_eq!(kept, sent as u64, "the upload kept the bytes it had received");
    let rest = &data[kept as usize..];
    let r = client()
        .patch(format!("{base}{location}"))
        .header("content-range", format!("{kept}-{}", data.len() - 1))
        .header("content-type", "application/octet-stream")
        .body(rest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let d = sha256_digest(&data);
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = client()
        .put(format!("{base}{location}{sep}digest={d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let got = client()
        .get(format!("{base}/v2/sig/up/blobs/{d}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_digest(&got), d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_finish_in_time_complete() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let p = Proc::start(&["serve"], &env(root.to_str().unwrap(), "20s"));
    let base = p.url("");
    let blob = random_bytes(16 << 20, 11);
    let d = push(&base, "slow/read", &blob).await;
    let resp = client()
        .get(format!("{base}/v2/slow/read/blobs/{d}"))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut got = stream.next().await.unwrap().unwrap().to_vec();
    let t0 = Instant::now();
    p.signal("TERM");
    let exit = wait_exit_async(p, Duration::from_secs(30));
    // A slow reader: about a second for the rest.
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("the download is not cut within the drain timeout"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sha256_digest(&got), d);
    let (p, status) = exit.await.unwrap();
    assert!(status.expect("exited").success(), "{}", p.logs().join("\n"));
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "it exits once the download is done"
    );
    let logs = p.logs().join("\n");
    assert!(!logs.contains("drain timeout reached"), "{logs}");
    assert!(
        logs.lines().any(|l| l.contains("wharf::access")
            && l.contains("GET")
            && l.contains("outcome=\"complete\"")
            && l.contains("/blobs/")),
        "{logs}"
    );
}
