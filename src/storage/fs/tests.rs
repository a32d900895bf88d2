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
/// own like a new tag's `current/link`, from 16 tasks at once on a 2-worker runtime; then the
/// same links written again (their directories exist: tag moves). Prints writes per second and
/// the peak thread count of the process for each pass. A measurement, not a check:
/// `cargo test --lib storage::fs::tests::bench_concurrent_link_puts -- --ignored --nocapture`
/// (the store is made under `TMPDIR`, /tmp by default; `WHARF_BENCH_PER_FILE=1` makes the
/// committer's batches flush per file and per directory instead of with `syncfs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it with --ignored --nocapture"]
async fn bench_concurrent_link_puts() {
    let n: usize = std::env::var("WHARF_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), true).unwrap();
    if std::env::var_os("WHARF_BENCH_PER_FILE").is_some() {
        d.committer().flush_per_file(); // fdatasync per file and fsync per directory, no syncfs
    }
    bench_pass(&d, n, 0, "new tags").await;
    bench_pass(&d, n, 1, "tag moves").await;
}

/// One pass of [`bench_concurrent_link_puts`]: link `i` gets `link(i + offset)`.
async fn bench_pass(d: &FsDriver, n: usize, offset: usize, what: &str) {
    let tasks = 16;
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
    let path = |i: usize| p(&format!("repositories/bench/_manifests/tags/t{i}/current/link"));
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
                    d.put_content(&path(i), link(i + offset)).await.unwrap();
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
        assert_eq!(d.get_content(&path(i)).await.unwrap(), link(i + offset));
    }
    println!(
        "{what}: {n} durable 71-byte link puts from {tasks} tasks: {:.2} s, {:.0} writes/s, peak threads {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        peak.load(Ordering::Relaxed)
    );
}

/// Wait (up to 30 s) until the committer holds `n` writes in its queue.
async fn until_queued(d: &FsDriver, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.committer().queued() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} writes queued",
            d.committer().queued()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_from_many_tasks_all_land_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), true).unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let d = d.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    // new directories, shared directories and one object replaced over and over
                    d.put_content(&p(&format!("r/t{t}/{i}/link")), link(t * 100 + i))
                        .await
                        .unwrap();
                    d.put_content(&p(&format!("shared/{t}-{i}")), link(i)).await.unwrap();
                    d.put_content(&p(&format!("last/{t}")), link(i)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for t in 0..64 {
        for i in 0..20 {
            assert_eq!(
                d.get_content(&p(&format!("r/t{t}/{i}/link"))).await.unwrap(),
                link(t * 100 + i)
            );
            assert_eq!(d.get_content(&p(&format!("shared/{t}-{i}"))).await.unwrap(), link(i));
        }
        assert_eq!(d.get_content(&p(&format!("last/{t}"))).await.unwrap(), link(19));
    }
    assert_eq!(
        d.list(&p("shared")).await.unwrap().len(),
        64 * 20,
        "no temporary file is listed"
    );
    let leftovers = std::fs::read_dir(dir.path().join("shared"))
        .unwrap()
        .filter(|e| super::is_temp(&e.as_ref().unwrap().file_name().to_string_lossy()))
        .count();
    assert_eq!(leftovers, 0, "no temporary file is left");
    let batches = d.committer().batches();
    assert!((1..=64 * 60).contains(&batches), "{batches} batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committer_takes_everything_pending_as_one_batch_of_at_most_max_batch() {
    takes_everything_pending_as_one_batch_of_at_most_max_batch(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_flushed_per_file_take_everything_pending_too() {
    takes_everything_pending_as_one_batch_of_at_most_max_batch(true).await;
}

async fn takes_everything_pending_as_one_batch_of_at_most_max_batch(per_file: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), true).unwrap();
    if per_file {
        d.committer().flush_per_file();
    }
    d.put_content(&p("up/a"), Bytes::from_static(b"moved a")).await.unwrap();
    d.put_content(&p("up/b"), Bytes::from_static(b"moved b")).await.unwrap();
    let before = d.committer().batches();
    d.committer().hold(true);
    let n = super::commit::MAX_BATCH + 10;
    let mut writes: Vec<_> = (0..n)
        .map(|i| {
            let d = d.clone();
            tokio::spawn(async move { d.put_content(&p(&format!("tags/t{i}/current/link")), link(i)).await })
        })
        .collect();
    for name in ["a", "b"] {
        let d = d.clone();
        writes.push(tokio::spawn(async move {
            d.move_(&p(&format!("up/{name}")), &p(&format!("blobs/{name}/data")))
                .await
        }));
    }
    until_queued(&d, n + 2).await;
    d.committer().hold(false);
    for w in writes {
        w.await.unwrap().unwrap();
    }
    assert_eq!(d.committer().batches() - before, 2, "{} writes take two batches", n + 2);
    for i in 0..n {
        assert_eq!(
            d.get_content(&p(&format!("tags/t{i}/current/link"))).await.unwrap(),
            link(i)
        );
    }
    assert_eq!(&d.get_content(&p("blobs/a/data")).await.unwrap()[..], b"moved a");
    assert_eq!(&d.get_content(&p("blobs/b/data")).await.unwrap()[..], b"moved b");
    assert!(d.stat(&p("up/a")).await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_fails_only_its_own_caller() {
    fails_only_its_own_caller(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_flushed_per_file_fails_only_its_own_caller() {
    fails_only_its_own_caller(true).await;
}

async fn fails_only_its_own_caller(per_file: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), true).unwrap();
    if per_file {
        d.committer().flush_per_file();
    }
    d.put_content(&p("file"), Bytes::from_static(b"a file, not a directory"))
        .await
        .unwrap();
    d.put_content(&p("dir/full/x"), Bytes::from_static(b"x")).await.unwrap();
    let before = d.committer().batches();
    d.committer().hold(true);
    let spawn_put = |path: &str, data: Bytes| {
        let (d, path) = (d.clone(), p(path));
        tokio::spawn(async move { d.put_content(&path, data).await })
    };
    let good: Vec<_> = (0..20).map(|i| spawn_put(&format!("good/{i}/link"), link(i))).collect();
    // fails creating its directory (ENOTDIR), renaming over a directory (EISDIR), moving nothing
    let under_a_file = spawn_put("file/sub/link", link(1));
    let over_a_dir = spawn_put("dir/full", link(2));
    let missing = {
        let d = d.clone();
        tokio::spawn(async move { d.move_(&p("nothing/here"), &p("blobs/x/data")).await })
    };
    until_queued(&d, 23).await;
    d.committer().hold(false);
    for g in good {
        g.await.unwrap().unwrap();
    }
    assert!(under_a_file.await.unwrap().is_err());
    assert!(over_a_dir.await.unwrap().is_err());
    assert!(missing.await.unwrap().unwrap_err().is_not_found());
    assert_eq!(d.committer().batches() - before, 1, "the writes shared one batch");
    for i in 0..20 {
        assert_eq!(d.get_content(&p(&format!("good/{i}/link"))).await.unwrap(), link(i));
    }
    assert_eq!(
        &d.get_content(&p("file")).await.unwrap()[..],
        b"a file, not a directory"
    );
    assert_eq!(d.list(&p("dir/full")).await.unwrap(), vec!["x"]);
    let names: Vec<_> = std::fs::read_dir(dir.path().join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["full"], "the failed write left no temporary file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_driver_finishes_the_queued_writes() {
    use futures::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), true).unwrap();
    d.committer().hold(true);
    // handed over, then its caller goes away (as a cancelled request's would)
    assert!(d.put_content(&p("a/link"), link(7)).now_or_never().is_none());
    assert_eq!(d.committer().queued(), 1);
    drop(d);
    assert_eq!(std::fs::read(dir.path().join("a/link")).unwrap(), link(7));
}

/// The committer is a thread of its own: durable writes complete while every thread of tokio's
/// blocking pool is busy.
#[test]
fn durable_writes_do_not_need_the_blocking_pool() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), true).unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    rt.block_on(async {
        let busy = tokio::task::spawn_blocking(move || wait.recv());
        let d2 = d.clone();
        tokio::time::timeout(Duration::from_secs(60), async move {
            d2.put_content(&p("x/link"), link(1)).await.unwrap();
            d2.put_content(&p("up/data"), link(2)).await.unwrap();
            d2.move_(&p("up/data"), &p("blobs/y/data")).await.unwrap();
        })
        .await
        .expect("durable writes finish beside a saturated blocking pool");
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
    });
    assert_eq!(std::fs::read(dir.path().join("x/link")).unwrap(), link(1));
    assert_eq!(std::fs::read(dir.path().join("blobs/y/data")).unwrap(), link(2));
}

#[tokio::test]
async fn without_fsync_writes_go_straight_to_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), false).unwrap();
    assert!(d.inner.committer.is_none());
    d.put_content(&p("a/b/link"), link(3)).await.unwrap();
    d.move_(&p("a/b/link"), &p("c/d/link")).await.unwrap();
    assert_eq!(d.get_content(&p("c/d/link")).await.unwrap(), link(3));
    assert!(d.move_(&p("a/b/link"), &p("c/e")).await.unwrap_err().is_not_found());
}

/// The identity the committer compares: inode and ctime of the file at `path`.
fn ident(path: &std::path::Path) -> (u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).unwrap();
    (md.ino(), md.ctime(), md.ctime_nsec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_contents_leaves_a_file_it_made_durable_with_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), true).unwrap();
    let (a, b) = (
        p("r/_manifests/revisions/sha256/x/link"),
        p("r/_manifests/tags/t/current/link"),
    );
    d.put_content(&a, link(1)).await.unwrap();
    d.ensure_contents(vec![(b.clone(), link(2))]).await.unwrap();
    let (was_a, was_b) = (ident(&dir.path().join(a.as_str())), ident(&dir.path().join(b.as_str())));
    let before = d.committer().batches();
    d.ensure_contents(vec![(a.clone(), link(1)), (b.clone(), link(2))])
        .await
        .unwrap();
    assert_eq!(d.committer().batches(), before, "nothing left to make durable");
    assert_eq!(ident(&dir.path().join(a.as_str())), was_a);
    assert_eq!(ident(&dir.path().join(b.as_str())), was_b);
    // one of the two changed: only it is written, in one batch
    d.ensure_contents(vec![(a.clone(), link(1)), (b.clone(), link(3))])
        .await
        .unwrap();
    assert_eq!(d.committer().batches(), before + 1);
    assert_eq!(ident(&dir.path().join(a.as_str())), was_a);
    assert_ne!(ident(&dir.path().join(b.as_str())), was_b);
    assert_eq!(d.get_content(&b).await.unwrap(), link(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_contents_rewrites_a_file_replaced_or_changed_behind_the_committer() {
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), true).unwrap();
    let a = p("r/current/link");
    let full = dir.path().join(a.as_str());
    d.put_content(&a, link(1)).await.unwrap();
    // replaced by another writer (registry:2 on the same volume, say) with the same bytes: that
    // file was never made durable by this committer
    let tmp = dir.path().join("r/current/other");
    std::fs::write(&tmp, link(1)).unwrap();
    std::fs::rename(&tmp, &full).unwrap();
    let before = d.committer().batches();
    d.ensure_contents(vec![(a.clone(), link(1))]).await.unwrap();
    assert_eq!(d.committer().batches(), before + 1, "rewritten");
    // changed in place to the same length: other bytes
    let mut other = link(1).to_vec();
    other[70] = b'f';
    std::fs::write(&full, &other).unwrap();
    d.ensure_contents(vec![(a.clone(), link(1))]).await.unwrap();
    assert_eq!(d.committer().batches(), before + 2, "rewritten");
    assert_eq!(d.get_content(&a).await.unwrap(), link(1));
    // a file the committer never wrote (an existing store opened again) is written once, then known
    let d = FsDriver::new(dir.path(), true).unwrap();
    let before = d.committer().batches();
    d.ensure_contents(vec![(a.clone(), link(1))]).await.unwrap();
    d.ensure_contents(vec![(a.clone(), link(1))]).await.unwrap();
    assert_eq!(d.committer().batches(), before + 1);
    // deleted: written again
    d.delete(&p("r")).await.unwrap();
    d.ensure_contents(vec![(a.clone(), link(1))]).await.unwrap();
    assert_eq!(d.committer().batches(), before + 2);
    assert_eq!(d.get_content(&a).await.unwrap(), link(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_contents_of_many_new_files_takes_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let d = FsDriver::new(dir.path(), true).unwrap();
    let items: Vec<_> = (0..40)
        .map(|i| (p(&format!("tags/t{i}/current/link")), link(i)))
        .collect();
    let before = d.committer().batches();
    d.ensure_contents(items.clone()).await.unwrap();
    assert_eq!(d.committer().batches(), before + 1);
    for (path, data) in items {
        assert_eq!(d.get_content(&path).await.unwrap(), data);
    }
}
