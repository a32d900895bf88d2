//! Filesystem driver (docs/architecture.md §2: invariants I1, I2, I8). Small objects are written
//! to a temp file in the same directory, flushed, renamed into place, then the directory is
//! fsync'd; large objects are moved into place by rename(2) after the writer's `commit` fsync'd
//! them. With fsync on, these durable writes (and the directories they create) go through the
//! driver's committer (`commit.rs`, two threads of its own), which makes the writes of
//! concurrent requests durable together, one batch at a time, with shared flushes; everything
//! else blocking (reads, listings, deletes, the fsync-off path) runs on tokio's blocking pool.
//! Reads of large objects use mmap in bounded windows, so serving a 5 GiB blob keeps the
//! resident set small.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

mod commit;
#[cfg(test)]
mod tests;
mod writer;

use super::fence::{Fence, FenceError, FenceRole};
use super::{BlobWriter, ByteStream, Driver, DriverError, FileInfo, StoragePath};
use commit::{Committer, Op};
use writer::FsWriter;

/// Bytes mapped per window when streaming a blob (and the largest frame handed to hyper).
const WINDOW: u64 = 2 << 20;
/// Objects below this size are read into memory instead of being mapped.
const SMALL: u64 = 64 << 10;
/// How often a write or delete is retried when a concurrent delete or write got in its way.
const RACE_RETRIES: u32 = 8;

#[derive(Clone)]
pub struct FsDriver {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    fsync: bool,
    /// Makes `put_content` and `move_` durable in batches; `None` with fsync off. Dropped with
    /// the last clone of the driver, which lets it finish what is queued and joins its threads.
    committer: Option<Committer>,
}

impl FsDriver {
    /// `root` is created if needed. With `fsync = false`, nothing is flushed (tmpfs, benchmarks).
    pub fn new(root: impl Into<PathBuf>, fsync: bool) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let committer = if fsync {
            Some(Committer::start(root.clone())?)
        } else {
            None
        };
        Ok(FsDriver {
            inner: Arc::new(Inner { root, fsync, committer }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Try to take the store's advisory lock (`<root>/wharf.lock`): servers that write hold it
    /// shared, garbage collection exclusive. `None` when someone holds it in a conflicting mode.
    /// The lock lasts as long as the returned file is open.
    pub fn try_lock(&self, exclusive: bool) -> io::Result<Option<File>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.inner.root.join("wharf.lock"))?;
        let r = if exclusive { f.try_lock() } else { f.try_lock_shared() };
        match r {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn full(&self, p: &StoragePath) -> PathBuf {
        self.inner.root.join(p.as_str())
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, DriverError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| DriverError::io("blocking task", io::Error::other(e)))?
    }
}

impl FsDriver {
    /// Write `data` at `full` through a temp file and rename, without flushes, on the blocking
    /// pool (fsync off, and `put_content_volatile`).
    async fn put_now(&self, full: PathBuf, data: Bytes) -> Result<(), DriverError> {
        self.blocking(move |_| atomic_write(&full, &data, false).map_err(|e| DriverError::io(full.display(), e)))
            .await
    }

    /// The committer (tests, with fsync on).
    #[cfg(test)]
    fn committer(&self) -> &Committer {
        self.inner.committer.as_ref().expect("fsync is on")
    }
}

/// Paths per blocking task of a batched read (`FsDriver::many`): a few tasks share a large
/// batch between the cores, a small one costs a single thread hand-off.
const MANY_PER_TASK: usize = 128;

impl FsDriver {
    /// `op` on each path, in order, `MANY_PER_TASK` paths per blocking task, the tasks run at once.
    async fn many<T, F>(&self, ps: &[StoragePath], op: F) -> Vec<Result<T, DriverError>>
    where
        T: Send + 'static,
        F: Fn(&StoragePath, &Path) -> Result<T, DriverError> + Send + Sync + Copy + 'static,
    {
        let tasks = ps.chunks(MANY_PER_TASK).map(|chunk| {
            let items: Vec<(StoragePath, PathBuf)> = chunk.iter().map(|p| (p.clone(), self.full(p))).collect();
            let n = items.len();
            async move {
                match tokio::task::spawn_blocking(move || items.iter().map(|(p, f)| op(p, f)).collect::<Vec<_>>()).await
                {
                    Ok(results) => results,
                    Err(e) => (0..n)
                        .map(|_| Err(DriverError::io("blocking task", io::Error::other(e.to_string()))))
                        .collect(),
                }
            }
        });
        futures::future::join_all(tasks).await.into_iter().flatten().collect()
    }
}

fn map_err(p: &StoragePath, full: &Path, e: io::Error) -> DriverError {
    if e.kind() == io::ErrorKind::NotFound {
        DriverError::NotFound(p.clone())
    } else {
        DriverError::io(full.display(), e)
    }
}

impl Inner {
    /// `mkdir -p` that fsyncs the parent of every directory it creates (with fsync on).
    fn create_dirs(&self, dir: &Path) -> io::Result<()> {
        make_dirs(dir, self.fsync)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `mkdir -p`; with `sync`, the parent of every directory created is fsync'd.
fn make_dirs(dir: &Path, sync: bool) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dirs(parent, sync)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent()
                && sync
            {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`atomic_write_once`], again when a concurrent delete removed the directory under it (a
/// layer link written while the same link is deleted): the write then simply comes after the
/// delete, instead of failing with ENOENT.
fn atomic_write(full: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let mut attempt = 0;
    loop {
        match atomic_write_once(full, data, sync) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < RACE_RETRIES => attempt += 1,
            other => return other,
        }
    }
}

/// Write to a temporary file and rename it over `full`; with `sync`, the file and then its
/// directory are fsync'd, so the object is durable when this returns. (With fsync on, the
/// driver does this only for a write that failed in a batch of the committer.)
fn atomic_write_once(full: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let dir = full.parent().expect("storage paths have a parent");
    make_dirs(dir, sync)?;
    let name = full.file_name().expect("storage paths have a name").to_string_lossy();
    let tmp = dir.join(temp_name(&name));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, full)?;
        if sync {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Rename `src` (the object `from`) to `dst`, creating `dst`'s directories; with `sync`, the
/// parents of the directories created and `dst`'s directory are fsync'd.
fn move_file(from: &StoragePath, src: &Path, dst: &Path, sync: bool) -> Result<(), DriverError> {
    let dir = dst.parent().expect("storage paths have a parent");
    make_dirs(dir, sync).map_err(|e| DriverError::io(dir.display(), e))?;
    fs::rename(src, dst).map_err(|e| map_err(from, src, e))?;
    if sync {
        sync_dir(dir).map_err(|e| DriverError::io(dir.display(), e))?;
    }
    Ok(())
}

#[async_trait]
impl Driver for FsDriver {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn describe(&self) -> String {
        self.inner.root.display().to_string()
    }

    /// The flock on `<root>/wharf.lock`: shared for writers, exclusive for a collection.
    async fn fence(&self, role: FenceRole, _lock: &StoragePath) -> Result<Fence, FenceError> {
        let held = self
            .try_lock(role != FenceRole::Writer)
            .map_err(|e| DriverError::io(self.inner.root.join("wharf.lock").display(), e))?;
        super::fence::flock(&self.describe(), role, held)
    }

    async fn get_content(&self, p: &StoragePath) -> Result<Bytes, DriverError> {
        let full = self.full(p);
        match tokio::fs::read(&full).await {
            Ok(v) => Ok(Bytes::from(v)),
            Err(e) => Err(map_err(p, &full, e)),
        }
    }

    /// With fsync on, through the committer (durable with the writes of other requests);
    /// without, a plain temp file and rename on the blocking pool.
    async fn put_content(&self, p: &StoragePath, data: Bytes) -> Result<(), DriverError> {
        let full = self.full(p);
        if let Some(c) = &self.inner.committer {
            return c.submit(Op::Put { full, data }).await;
        }
        self.put_now(full, data).await
    }

    /// With fsync on, the items not already held by a file the committer made durable go to
    /// the committer together; without, each is written as by `put_content`.
    async fn ensure_contents(&self, items: Vec<(StoragePath, Bytes)>) -> Result<(), DriverError> {
        let items: Vec<(PathBuf, Bytes)> = items.into_iter().map(|(p, data)| (self.full(&p), data)).collect();
        let Some(c) = &self.inner.committer else {
            for (full, data) in items {
                self.put_now(full, data).await?;
            }
            return Ok(());
        };
        // Only a file the committer remembers can be skipped; reading it costs a thread hand-off,
        // so none when it remembers none of them (a new tag's links).
        let todo = if items.iter().any(|(full, _)| c.may_hold(full)) {
            self.blocking(move |inner| {
                let c = inner.committer.as_ref().expect("fsync is on");
                Ok(items
                    .into_iter()
                    .filter(|(full, data)| !c.holds_durably(full, data))
                    .collect::<Vec<_>>())
            })
            .await?
        } else {
            items
        };
        if todo.is_empty() {
            return Ok(());
        }
        c.submit_all(todo.into_iter().map(|(full, data)| Op::Put { full, data }).collect())
            .await
    }

    async fn put_content_volatile(&self, p: &StoragePath, data: Bytes) -> Result<(), DriverError> {
        self.put_now(self.full(p), data).await
    }

    async fn stat(&self, p: &StoragePath) -> Result<FileInfo, DriverError> {
        let full = self.full(p);
        let md = tokio::fs::metadata(&full).await.map_err(|e| map_err(p, &full, e))?;
        Ok(FileInfo {
            size: md.len(),
            modified: md.modified().map_err(|e| DriverError::io(full.display(), e))?,
            is_dir: md.is_dir(),
        })
    }

    async fn list(&self, p: &StoragePath) -> Result<Vec<String>, DriverError> {
        let full = self.full(p);
        let path = p.clone();
        self.blocking(move |_| list_dir(&path, &full)).await
    }

    async fn list_many(&self, ps: &[StoragePath]) -> Vec<Result<Vec<String>, DriverError>> {
        if ps.is_empty() {
            return Vec::new(); // no thread hand-off for nothing (most directories are leaves)
        }
        let dirs: Vec<(StoragePath, PathBuf)> = ps.iter().map(|p| (p.clone(), self.full(p))).collect();
        let n = dirs.len();
        match self
            .blocking(move |_| Ok(dirs.iter().map(|(p, full)| list_dir(p, full)).collect()))
            .await
        {
            Ok(all) => all,
            Err(e) => (0..n)
                .map(|_| Err(DriverError::io("blocking task", io::Error::other(e.to_string()))))
                .collect(),
        }
    }

    async fn get_content_many(&self, ps: &[StoragePath]) -> Vec<Result<Bytes, DriverError>> {
        self.many(ps, |p, full| match fs::read(full) {
            Ok(v) => Ok(Bytes::from(v)),
            Err(e) => Err(map_err(p, full, e)),
        })
        .await
    }

    async fn stat_many(&self, ps: &[StoragePath]) -> Vec<Result<FileInfo, DriverError>> {
        self.many(ps, |p, full| {
            let md = fs::metadata(full).map_err(|e| map_err(p, full, e))?;
            Ok(FileInfo {
                size: md.len(),
                modified: md.modified().map_err(|e| DriverError::io(full.display(), e))?,
                is_dir: md.is_dir(),
            })
        })
        .await
    }

    async fn reader(&self, p: &StoragePath, range: Option<(u64, u64)>) -> Result<ByteStream, DriverError> {
        let full = self.full(p);
        let path = p.clone();
        let (file, start, end) = self
            .blocking(move |_| {
                let file = File::open(&full).map_err(|e| map_err(&path, &full, e))?;
                let size = file.metadata().map_err(|e| DriverError::io(full.display(), e))?.len();
                let (start, end) = range.unwrap_or((0, size));
                if start > end || end > size {
                    return Err(DriverError::InvalidRange);
                }
                Ok((file, start, end))
            })
            .await?;
        let len = end - start;
        if len <= SMALL {
            // One read for small objects: cheaper than setting up a mapping.
            let bytes = tokio::task::spawn_blocking(move || -> io::Result<Bytes> {
                let mut file = file;
                let mut buf = vec![0u8; len as usize];
                file.seek(SeekFrom::Start(start))?;
                file.read_exact(&mut buf)?;
                Ok(Bytes::from(buf))
            })
            .await
            .map_err(|e| DriverError::io("blocking task", io::Error::other(e)))?
            .map_err(|e| DriverError::io(p, e))?;
            return Ok(futures::stream::once(async move { Ok(bytes) }).boxed());
        }
        let file = Arc::new(file);
        // Windows are aligned to WINDOW (a multiple of the page size) so each mmap offset is valid.
        let stream = futures::stream::unfold(start, move |pos| {
            let file = file.clone();
            async move {
                if pos >= end {
                    return None;
                }
                let window_start = pos - pos % WINDOW;
                let window_end = (window_start + WINDOW).min(end);
                let result = tokio::task::spawn_blocking(move || map_window(&file, window_start, window_end, pos))
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e)));
                Some((result, window_end))
            }
        });
        Ok(stream.boxed())
    }

    async fn append_writer(&self, p: &StoragePath) -> Result<Box<dyn BlobWriter>, DriverError> {
        let full = self.full(p);
        self.blocking(move |inner| {
            let open = |full: &Path| -> io::Result<(File, u64)> {
                inner.create_dirs(full.parent().expect("storage paths have a parent"))?;
                let file = OpenOptions::new().create(true).append(true).open(full)?;
                let size = file.metadata()?.len();
                Ok((file, size))
            };
            let (file, size) = open(&full).map_err(|e| DriverError::io(full.display(), e))?;
            Ok(Box::new(FsWriter {
                file,
                size,
                path: full,
                fsync: inner.fsync,
                flushed: size,
            }) as Box<dyn BlobWriter>)
        })
        .await
    }

    /// With fsync on, through the committer, like `put_content`.
    async fn move_(&self, from: &StoragePath, to: &StoragePath) -> Result<(), DriverError> {
        let (src, dst) = (self.full(from), self.full(to));
        let from = from.clone();
        if let Some(c) = &self.inner.committer {
            return c.submit(Op::Move { from, src, dst }).await;
        }
        self.blocking(move |_| move_file(&from, &src, &dst, false)).await
    }

    async fn list_recursive(&self, p: &StoragePath) -> Result<Vec<String>, DriverError> {
        let full = self.full(p);
        self.blocking(move |_| {
            let mut out = Vec::new();
            let mut stack = vec![(full.clone(), String::new())];
            while let Some((dir, rel)) = stack.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(DriverError::io(dir.display(), e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| DriverError::io(dir.display(), e))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if is_temp(&name) {
                        continue;
                    }
                    let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                    if entry
                        .file_type()
                        .map_err(|e| DriverError::io(dir.display(), e))?
                        .is_dir()
                    {
                        stack.push((entry.path(), child));
                    } else {
                        out.push(child);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, p: &StoragePath) -> Result<(), DriverError> {
        let full = self.full(p);
        self.blocking(move |_| {
            let remove = || match fs::symlink_metadata(&full) {
                Ok(md) if md.is_dir() => fs::remove_dir_all(&full),
                Ok(_) => fs::remove_file(&full),
                Err(e) => Err(e),
            };
            // A writer racing the delete may add a file to the directory being removed
            // (ENOTEMPTY): remove again, so the delete comes after that write.
            let mut result = remove();
            let mut attempt = 0;
            while attempt < RACE_RETRIES && matches!(&result, Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty) {
                attempt += 1;
                result = remove();
            }
            // Deletes are not fsync'd: one lost in a crash leaves unreferenced data, which the
            // next delete or garbage collection removes (Distribution does the same).
            match result {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(DriverError::io(full.display(), e)),
            }
        })
        .await
    }
}

/// Whether a directory entry is one of this driver's own files, hidden from listings: the
/// temporary file of a write in progress (or one a crash left), `.<name>.tmp-<uuid>`. Only dot
/// names: the spec's grammar lets no repository component, tag or digest start with a dot, and
/// no file of Distribution's layout does, so every valid name is listed.
///
/// Versions before c608796 named temporary files `<name>.tmp-<32 hex>`. Those are *not* hidden:
/// `v1.tmp-<32 hex>` is a valid tag and `app.tmp-<32 hex>` a valid repository component, and
/// hiding them lost such images from the catalog, the tags list and garbage collection's mark.
/// A leftover of that kind is harmless where it is: the old driver only ever wrote it beside
/// the file it was replacing, a leaf file of the layout (`link`, `data`, `startedat`,
/// hashstate offsets, the files at the root), so it lies in a directory nothing lists as names
/// (or whose entries are parsed by a grammar it fails: algorithms, digests, offsets, upload
/// ids), and it goes when that directory is deleted (tag deletion, garbage collection).
pub fn is_temp(name: &str) -> bool {
    name.starts_with('.')
}

/// The name of the temporary file a write of `name` goes through (see [`is_temp`]).
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple())
}

/// A directory's entries, sorted, without the temporary files of writes in progress.
fn list_dir(path: &StoragePath, full: &Path) -> Result<Vec<String>, DriverError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(full).map_err(|e| map_err(path, full, e))? {
        let entry = entry.map_err(|e| DriverError::io(full.display(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_temp(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Map `[window_start, window_end)` and hand out the part from `pos`. The mapping is owned by
/// the returned `Bytes` and unmapped when hyper has written it, so at most a few windows are
/// resident at once.
fn map_window(file: &File, window_start: u64, window_end: u64, pos: u64) -> io::Result<Bytes> {
    // SAFETY: blob data files are immutable once renamed into place (invariant I1): nothing in
    // Wharf truncates or rewrites them, and an unlinked file stays mapped until the map drops.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(window_start)
            .len((window_end - window_start) as usize)
            .map(file)?
    };
    let _ = map.advise(memmap2::Advice::Sequential);
    let bytes = Bytes::from_owner(map);
    Ok(bytes.slice((pos - window_start) as usize..))
}
