//! The filesystem's append writer for upload data: plain appends, with writeback started in
//! steps so the closing `fdatasync` has little left to flush.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use super::super::{BlobWriter, DriverError};

/// With fsync on, writeback of an upload's data is started every this many bytes, so the disk
/// works while the body is still arriving and the closing `fdatasync` has little left to flush.
const WRITEBACK_STEP: u64 = 8 << 20;

pub(super) struct FsWriter {
    pub(super) file: File,
    pub(super) size: u64,
    pub(super) path: PathBuf,
    pub(super) fsync: bool,
    /// Offset up to which writeback has been started.
    pub(super) flushed: u64,
}

impl FsWriter {
    /// Start writeback of `[flushed, size)` without waiting for it (`sync_file_range(2)` with
    /// `SYNC_FILE_RANGE_WRITE`), then wait for the step before it, so at most two steps of dirty
    /// pages are in flight: the disk writes while the network and the hasher work, and memory
    /// stays bounded. Durability still comes from `commit`'s `fdatasync`; this only moves work
    /// earlier.
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        let (from, len) = (self.flushed, self.size - self.flushed);
        // SAFETY: plain syscalls on a file descriptor this writer owns; failures are ignored
        // (the call is advisory and `commit` flushes everything anyway).
        unsafe {
            libc::sync_file_range(fd, from as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
            if from >= WRITEBACK_STEP {
                libc::sync_file_range(
                    fd,
                    (from - WRITEBACK_STEP) as i64,
                    WRITEBACK_STEP as i64,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
            }
        }
        self.flushed = self.size;
    }
}

impl BlobWriter for FsWriter {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), DriverError> {
        self.file
            .write_all(buf)
            .map_err(|e| DriverError::io(self.path.display(), e))?;
        self.size += buf.len() as u64;
        if self.fsync && self.size - self.flushed >= WRITEBACK_STEP {
            self.start_writeback();
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn truncate(&mut self, len: u64) -> Result<(), DriverError> {
        self.file
            .set_len(len)
            .map_err(|e| DriverError::io(self.path.display(), e))?;
        self.size = len;
        self.flushed = self.flushed.min(len);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DriverError> {
        if self.fsync {
            self.file
                .sync_data()
                .map_err(|e| DriverError::io(self.path.display(), e))?;
        }
        Ok(())
    }
}
