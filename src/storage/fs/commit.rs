//! Group commit: the filesystem driver's durable writes (`put_content` and `move_` with fsync
//! on, and the directories they create) go to a committer of the driver's own, which takes
//! everything pending (at most [`MAX_BATCH`] writes) as one batch and makes it durable with
//! shared flushes (docs/architecture.md §1.3, invariants I2 and I8):
//!
//! 1. create the missing directories of every write, noting the parent of each one created;
//! 2. write every temporary file and start its writeback (`sync_file_range`);
//! 3. flush the temporary files: one `syncfs(2)` for the batch;
//! 4. rename each into place (a move renames its upload data);
//! 5. flush the directories whose entries changed (parents of created directories included):
//!    one `syncfs(2)` again;
//!
//! and only then answers each caller of the batch. So a caller is answered only after the batch
//! holding its write is durable: the bytes before the name appears, the name before the answer.
//! A batch of one write (and every batch on Linux before 5.8, whose `syncfs` does not report
//! write-back errors) flushes as the driver always did, `fdatasync` of the file and fsync of
//! each changed directory, so a lone write waits for nothing but itself. If a `syncfs` fails (it
//! reports any write-back error of the filesystem), the step is done per file and per directory
//! instead, which tells whose write failed. A write that fails at any step, or whose directory
//! (or an ancestor's) fsync failed, is done again on its own the way the driver did every write
//! before (temp file, fsync, rename, fsync of the directory), and that answer is its caller's: one
//! bad path fails only its own caller. A directory whose fsync failed is fsync'd again with the
//! next batch, so a write of the next batch in a directory this one created is not answered
//! before that directory is durable.
//!
//! Why `syncfs` and not an `fdatasync` per file and an fsync per directory: issued one after the
//! other from one thread, each of those waits for a flush of the device of its own (and on ext4
//! an fsync of a directory forces a journal commit), which made a batch slower than the same
//! writes done by a thread each; one `syncfs` is one journal commit and one device flush. Its
//! cost is that it also waits for whatever else is dirty on the filesystem (upload data is
//! written back as it arrives, so little of it is).
//!
//! Two threads do this, neither of them tokio's blocking pool (so durable writes go on when that
//! pool is saturated): the committer takes a batch and shares steps 1-2 with a helper, each doing
//! half, so the kernel's work of creating directories and files runs on two cores. Batches
//! follow one another: each is cut when the one before is answered, so the writes that arrive
//! meanwhile share the next one. The queue holds only writes whose callers are waiting for them
//! (or were cancelled after handing them over, which then complete like a blocking task would),
//! so its memory is bounded by what the callers hold. Dropping the committer lets it finish what
//! is queued, then joins both threads.
//!
//! The committer also remembers (a bounded map, [`Durable`]) the identity of each file it made
//! durable: device, inode and ctime, which a rename or any later replacement changes. A write of
//! content a file already holds, whose identity is the one remembered, has nothing left to make
//! durable (`FsDriver::ensure_contents`): a tag PUT of a manifest already in the repository does
//! not rewrite its revision link.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::{self, File, Metadata, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{atomic_write, make_dirs, move_file, sync_dir, temp_name};
use crate::storage::{DriverError, StoragePath};

/// The most writes one batch takes; more wait for the next one.
pub(super) const MAX_BATCH: usize = 256;
/// The most file identities [`Durable`] remembers (about 40 bytes each); when full it forgets
/// them all, and the next write of each is done again.
const DURABLE_CAP: usize = 16 << 10;

/// What identifies one version of a file: a rename or replacement changes its ctime (or inode).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Ident {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl Ident {
    fn of(md: &Metadata) -> Self {
        Ident {
            dev: md.dev(),
            ino: md.ino(),
            ctime: md.ctime(),
            ctime_nsec: md.ctime_nsec(),
        }
    }
}

/// The files the committer made durable (by a hash of their path), with their identity then.
struct Durable {
    known: Mutex<HashMap<u64, Ident>>,
    hasher: RandomState,
}

impl Durable {
    fn key(&self, full: &Path) -> u64 {
        self.hasher.hash_one(full)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Ident>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, full: &Path, ident: Ident) {
        let key = self.key(full);
        let mut known = self.lock();
        if known.len() >= DURABLE_CAP && !known.contains_key(&key) {
            known.clear();
        }
        known.insert(key, ident);
    }

    fn get(&self, full: &Path) -> Option<Ident> {
        self.lock().get(&self.key(full)).copied()
    }
}

/// One durable write.
pub(super) enum Op {
    /// Replace the small object at `full` with `data` (`put_content`).
    Put { full: PathBuf, data: Bytes },
    /// Rename `src` (the object `from`) to `dst` (`move_`).
    Move {
        from: StoragePath,
        src: PathBuf,
        dst: PathBuf,
    },
}

impl Op {
    /// The directory the write puts a name into.
    fn dir(&self) -> &Path {
        match self {
            Op::Put { full, .. } => full,
            Op::Move { dst, .. } => dst,
        }
        .parent()
        .expect("storage paths have a parent")
    }

    /// The write done on its own, as the driver did every write before group commit.
    fn run_alone(&self) -> Result<(), DriverError> {
        match self {
            Op::Put { full, data } => atomic_write(full, data, true).map_err(|e| DriverError::io(full.display(), e)),
            Op::Move { from, src, dst } => move_file(from, src, dst, true),
        }
    }
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<(), DriverError>>,
}

struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    durable: Durable,
    /// Batches committed so far (for tests and curiosity).
    batches: AtomicU64,
}

struct State {
    jobs: VecDeque<Job>,
    /// The driver is gone: finish what is queued, then stop.
    closed: bool,
    /// Tests hold the committer to gather writes into one batch.
    held: bool,
    /// Tests make batches flush per file and per directory, as without a `syncfs` to trust.
    per_file: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) struct Committer {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// A committer for the store at `root`.
    pub(super) fn start(root: PathBuf) -> io::Result<Self> {
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
                held: false,
                per_file: false,
            }),
            ready: Condvar::new(),
            durable: Durable {
                known: Mutex::new(HashMap::new()),
                hasher: RandomState::new(),
            },
            batches: AtomicU64::new(0),
        });
        let helper = Helper::start()?;
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("wharf-fs-commit".into())
            .spawn(move || run(&q, &root, helper))?;
        Ok(Committer {
            queue,
            thread: Some(thread),
        })
    }

    /// Hand `op` to the committer; returns once it is durable (or failed).
    pub(super) async fn submit(&self, op: Op) -> Result<(), DriverError> {
        self.submit_all(vec![op]).await
    }

    /// Hand `ops` to the committer at once (so they share a batch unless it is full); returns
    /// once every one is durable, or the first error once every one is done.
    pub(super) async fn submit_all(&self, ops: Vec<Op>) -> Result<(), DriverError> {
        let mut answers = Vec::with_capacity(ops.len());
        {
            let mut st = self.queue.lock();
            for op in ops {
                let (reply, answer) = oneshot::channel();
                st.jobs.push_back(Job { op, reply });
                answers.push(answer);
            }
        }
        self.queue.ready.notify_one();
        let mut result = Ok(());
        for answer in answers {
            let r = answer.await.unwrap_or_else(|_| {
                Err(DriverError::io(
                    "filesystem committer",
                    io::Error::other("the committer stopped before the write was durable"),
                ))
            });
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Whether the committer remembers making a file at `full` durable (a cheap first test
    /// before [`Committer::holds_durably`], without touching the file).
    pub(super) fn may_hold(&self, full: &Path) -> bool {
        self.queue.durable.get(full).is_some()
    }

    /// Whether the file at `full` holds exactly `data` and is the very file the committer made
    /// durable, so that writing `data` there again would change nothing. Blocking: it reads the
    /// file.
    pub(super) fn holds_durably(&self, full: &Path, data: &[u8]) -> bool {
        let Some(known) = self.queue.durable.get(full) else {
            return false;
        };
        let Ok(mut f) = File::open(full) else {
            return false;
        };
        match f.metadata() {
            Ok(md) if md.is_file() && Ident::of(&md) == known && md.len() == data.len() as u64 => {}
            _ => return false,
        }
        let mut held = Vec::with_capacity(data.len());
        f.read_to_end(&mut held).is_ok() && held == data
    }

    #[cfg(test)]
    pub(super) fn batches(&self) -> u64 {
        self.queue.batches.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queue.lock().jobs.len()
    }

    /// Flush batches per file and per directory (as on Linux before 5.8).
    #[cfg(test)]
    pub(super) fn flush_per_file(&self) {
        self.queue.lock().per_file = true;
    }

    /// While held, the committer takes no new batch (tests gather writes into one).
    #[cfg(test)]
    pub(super) fn hold(&self, held: bool) {
        self.queue.lock().held = held;
        self.queue.ready.notify_one();
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        {
            let mut st = self.queue.lock();
            st.closed = true;
            st.held = false;
        }
        self.queue.ready.notify_one();
        // The committer ends once the queue is empty, and joins its helper.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The committer thread: a batch at a time until the driver is dropped and the queue is empty.
fn run(q: &Queue, root: &Path, helper: Helper) {
    // Directories whose fsync failed, fsync'd again with the next batch.
    let mut unsynced = Vec::new();
    loop {
        let (batch, per_file): (Vec<Job>, bool) = {
            let mut st = q.lock();
            loop {
                if !st.jobs.is_empty() && !st.held {
                    break;
                }
                if st.jobs.is_empty() && st.closed {
                    helper.stop();
                    return;
                }
                st = q.ready.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            let n = st.jobs.len().min(MAX_BATCH);
            (st.jobs.drain(..n).collect(), st.per_file)
        };
        q.batches.fetch_add(1, Ordering::Relaxed);
        // A panic (none is expected) drops this batch's answers, so its callers get an error,
        // and the committer goes on with the next batch.
        let carried = std::mem::take(&mut unsynced);
        match std::panic::catch_unwind(AssertUnwindSafe(|| {
            commit(batch, per_file, root, carried.clone(), &helper, &q.durable)
        })) {
            Ok(failed) => unsynced = failed,
            Err(_) => unsynced = carried,
        }
    }
}

/// The committer's second thread: the other half of each batch's steps 1-2.
struct Helper {
    tasks: Option<mpsc::Sender<Vec<Item>>>,
    done: mpsc::Receiver<Option<Prepared>>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    fn start() -> io::Result<Self> {
        let (tasks, todo) = mpsc::channel::<Vec<Item>>();
        let (finished, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wharf-fs-commit-helper".into())
            .spawn(move || {
                for items in todo {
                    // `None`: the task panicked (none is expected), its callers' answers
                    // were dropped with it.
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| prepare(items))).ok();
                    if finished.send(result).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Helper {
            tasks: Some(tasks),
            done,
            thread: Some(thread),
        })
    }

    /// Steps 1-2 for `items`, the second half on the helper thread (all of them here when
    /// there is only one or the helper is gone).
    fn prepare(&self, mut items: Vec<Item>) -> Prepared {
        if items.len() < 2 {
            return prepare(items);
        }
        let second = items.split_off(items.len() / 2);
        let Some(tx) = &self.tasks else {
            items.extend(second);
            return prepare(items);
        };
        if let Err(e) = tx.send(second) {
            items.extend(e.0);
            return prepare(items);
        }
        let mut ours = prepare(items);
        if let Ok(Some(theirs)) = self.done.recv() {
            ours.items.extend(theirs.items);
            ours.dirty.extend(theirs.dirty);
        }
        ours
    }

    fn stop(mut self) {
        self.tasks = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One write of a batch on its way.
struct Item {
    job: Job,
    /// The temporary file of a put, once written.
    tmp: Option<(PathBuf, File)>,
    /// Its name is in place (renamed).
    renamed: bool,
    /// A step failed: the write is done again on its own.
    failed: bool,
    /// A put's file as renamed into place, remembered once it is durable.
    ident: Option<Ident>,
}

/// Items with their directories and temporary files made (steps 1-2).
struct Prepared {
    items: Vec<Item>,
    /// Directories whose entries changed (so far, the parents of the directories created).
    dirty: BTreeSet<PathBuf>,
}

/// Make a batch durable with shared flushes (`per_file`: without `syncfs`), then answer each
/// caller, remembering in `durable` each file a put made durable. `carried` are the directories
/// whose fsync failed in the batch before; returns those whose fsync failed in this one (other
/// than those gone).
fn commit(
    batch: Vec<Job>,
    per_file: bool,
    root: &Path,
    carried: Vec<PathBuf>,
    helper: &Helper,
    durable: &Durable,
) -> Vec<PathBuf> {
    // Opened before anything of the batch is written: `syncfs` on it reports every write-back
    // error of the filesystem since.
    let witness = File::open(root).ok();
    let shared = batch.len() > 1 && !per_file && *SYNCFS_REPORTS_ERRORS;
    let items: Vec<Item> = batch
        .into_iter()
        .map(|job| Item {
            job,
            tmp: None,
            renamed: false,
            failed: false,
            ident: None,
        })
        .collect();
    let Prepared { mut items, mut dirty } = helper.prepare(items);
    // Step 3.
    if !(shared && witness.as_ref().is_some_and(|w| syncfs(w).is_ok())) {
        for it in &mut items {
            if let Some((tmp, f)) = &it.tmp
                && f.sync_data().is_err()
            {
                let _ = fs::remove_file(tmp);
                it.tmp = None;
                it.failed = true;
            }
        }
    }
    // Step 4.
    for it in items.iter_mut().filter(|it| !it.failed) {
        let renamed = match (&it.job.op, it.tmp.take()) {
            (Op::Put { full, .. }, Some((tmp, file))) => match fs::rename(&tmp, full) {
                Ok(()) => {
                    // The identity after the rename (which sets the ctime), read from the file
                    // itself: a concurrent replacement of the name cannot be mistaken for it.
                    it.ident = file.metadata().ok().map(|md| Ident::of(&md));
                    Ok(())
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    Err(e)
                }
            },
            (Op::Move { src, dst, .. }, _) => fs::rename(src, dst),
            (Op::Put { .. }, None) => unreachable!("a put that did not fail has its temporary file"),
        };
        match renamed {
            Ok(()) => {
                it.renamed = true;
                dirty.insert(it.job.op.dir().to_owned());
            }
            Err(_) => it.failed = true,
        }
    }
    // Step 5.
    dirty.extend(carried);
    let failed_dirs = if shared && witness.as_ref().is_some_and(|w| syncfs(w).is_ok()) {
        Vec::new()
    } else {
        sync_dirs(dirty)
    };
    let mut alone = Vec::new();
    for it in items {
        let dir = it.job.op.dir();
        let unsynced: Vec<PathBuf> = failed_dirs
            .iter()
            .filter(|(d, _)| dir.starts_with(d))
            .map(|(d, _)| d.clone())
            .collect();
        if it.failed || !unsynced.is_empty() {
            alone.push((it, unsynced));
        } else {
            if let (Op::Put { full, .. }, Some(ident)) = (&it.job.op, it.ident) {
                durable.record(full, ident);
            }
            let _ = it.job.reply.send(Ok(()));
        }
    }
    for (it, unsynced) in alone {
        let result = redo(&it, &unsynced);
        let _ = it.job.reply.send(result);
    }
    // A directory that is gone holds nothing that needs flushing any more.
    failed_dirs
        .into_iter()
        .filter(|(_, e)| e.kind() != io::ErrorKind::NotFound)
        .map(|(d, _)| d)
        .collect()
}

/// Steps 1-2 for `items`: directories, temporary files, their writeback started.
fn prepare(mut items: Vec<Item>) -> Prepared {
    let mut dirty = BTreeSet::new();
    for it in &mut items {
        it.failed = create_dirs(it.job.op.dir(), &mut dirty).is_err();
    }
    for it in items.iter_mut().filter(|it| !it.failed) {
        if let Op::Put { full, data } = &it.job.op {
            match write_temp(full, data) {
                Ok(tmp) => it.tmp = Some(tmp),
                Err(_) => it.failed = true,
            }
        }
    }
    Prepared { items, dirty }
}

/// Whether `syncfs(2)` reports write-back errors: since Linux 5.8. Before, it returns 0 even
/// when the writes it flushed failed, so batches flush per file and per directory there.
static SYNCFS_REPORTS_ERRORS: LazyLock<bool> = LazyLock::new(|| {
    // SAFETY: `uname` fills the zeroed struct it is given; `release` is NUL-terminated.
    let release = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return false;
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    kernel_at_least(&release, (5, 8))
});

/// Whether a kernel release string (`6.1.0-18-amd64`) is at least `major.minor`.
fn kernel_at_least(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Make everything written to the filesystem of `f` durable (`syncfs(2)`).
fn syncfs(f: &File) -> io::Result<()> {
    // SAFETY: a plain syscall on a descriptor the caller holds open.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// fsync each directory; returns those that failed, with why (a directory a concurrent delete
/// removed fails too: the writes in it are done again).
fn sync_dirs(dirs: BTreeSet<PathBuf>) -> Vec<(PathBuf, io::Error)> {
    dirs.into_iter()
        .filter_map(|d| sync_dir(&d).err().map(|e| (d, e)))
        .collect()
}

/// A write of the batch done again on its own. A put is written anew; a move whose rename was
/// done has its directory (and any directory it created) made durable again. `unsynced` are the
/// ancestors of its directory whose fsync failed in the batch: each is fsync'd again (one that
/// a concurrent delete removed since holds nothing of this write any more).
fn redo(it: &Item, unsynced: &[PathBuf]) -> Result<(), DriverError> {
    match &it.job.op {
        Op::Move { dst, .. } if it.renamed => {
            let dir = dst.parent().expect("storage paths have a parent");
            make_dirs(dir, true)
                .and_then(|()| sync_dir(dir))
                .map_err(|e| DriverError::io(dir.display(), e))?;
        }
        op => op.run_alone()?,
    }
    for d in unsynced {
        match sync_dir(d) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(DriverError::io(d.display(), e)),
            _ => {}
        }
    }
    Ok(())
}

/// `mkdir -p` without flushes; the parent of each directory created goes into `dirty`.
fn create_dirs(dir: &Path, dirty: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, dirty)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                dirty.insert(parent.to_owned());
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Write `data` to a new temporary file beside `full` and start its writeback.
fn write_temp(full: &Path, data: &[u8]) -> io::Result<(PathBuf, File)> {
    let dir = full.parent().expect("storage paths have a parent");
    let name = full.file_name().expect("storage paths have a name").to_string_lossy();
    let tmp = dir.join(temp_name(&name));
    let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    if let Err(e) = f.write_all(data) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // SAFETY: a plain syscall on a descriptor this function owns. It only starts writeback
    // early, on the thread that wrote the file (so the flush of step 3 finds the pages in
    // flight); a failure is ignored, that flush writes them anyway.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
    Ok((tmp, f))
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        use super::kernel_at_least as at_least;
        assert!(at_least("5.8.0", (5, 8)));
        assert!(at_least("6.18.44-fc-v1147", (5, 8)));
        assert!(at_least("5.10", (5, 8)));
        assert!(!at_least("5.4.0-150-generic", (5, 8)));
        assert!(!at_least("4.19.0", (5, 8)));
        assert!(!at_least("", (5, 8)));
    }
}
