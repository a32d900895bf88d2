//! Tests of the filesystem driver beyond the shared suite (`storage::testsuite`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::FsDriver;
use crate::storage::{Driver, StoragePath};

fn p(s: &str) -> StoragePath {
    StoragePath::from_validated(s.to_owned())
}

/// A link file's bytes: `sha256:` and 64 hex digits, 71 bytes like Distribution's links.
fn link(i: usize) -> Bytes {
    Bytes::from(format!("sha256:{:064x}", i))
}

/// The process's thread count, from `/proc/self/status` (0 where there is none).
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `WHARF_BENCH_N` (default 2,000) durable 71-byte link writes, each into a directory of its
/// own like a new tag's `current/link`, from 16 tasks at once on a 2-worker runtime; prints
/// writes per second and the peak thread count of the process. A measurement, not a check:
/// `cargo test --lib storage::fs::tests::bench_concurrent_link_puts -- --ignored --nocapture`
/// (the store is made under `TMPDIR`, /tmp by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it with --ignored --nocapture"]
async fn bench_concurrent_link_puts() {
    let n: usize = std::env::var("WHARF_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let tasks = 16;
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), true).unwrap();
    let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(threads())));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(threads(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (d, next) = (d.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let path = p(&format!("repositories/bench/_manifests/tags/t{i}/current/link"));
                    d.put_content(&path, link(i)).await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    for i in [0, n / 2, n - 1] {
        let path = p(&format!("repositories/bench/_manifests/tags/t{i}/current/link"));
        assert_eq!(d.get_content(&path).await.unwrap(), link(i));
    }
    println!(
        "{n} durable 71-byte link puts from {tasks} tasks: {:.2} s, {:.0} writes/s, peak threads {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        peak.load(Ordering::Relaxed)
    );
}
