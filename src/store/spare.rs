//! The spare segment: the next segment file, written full of zeros in the background
//! before it is needed.
//!
//! fdatasync into blocks that were already written costs a fraction of what it costs in
//! freshly allocated ones (no extent conversion to journal), and SYNC_FLUSH pays it on
//! every group commit. So, like RocketMQ's pre-allocated mapped files, the next segment
//! is prepared ahead: `<dir>/spare.tmp` is filled with zeros, fdatasynced, and renamed
//! `<dir>/spare` when complete. A new segment takes `spare` by renaming it into `data/`;
//! when no complete spare is there (the first segment of a new store waits for the one
//! started at open; a roll-over never waits), it is fallocated as before. A crash leaves
//! at most a `spare.tmp` (deleted at open) or a complete `spare` (reused).

use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Zeros written per call.
const CHUNK_BYTES: usize = 1 << 20;

pub(crate) struct Spare {
    dir: PathBuf,
    size_bytes: u64,
    enabled: bool,
    worker: Option<(JoinHandle<Result<()>>, Arc<AtomicBool>)>,
}

impl Spare {
    /// Cleans up what a crash left and starts preparing a spare if none is complete.
    pub fn new(dir: &Path, size_bytes: u64, enabled: bool) -> Spare {
        let _ = std::fs::remove_file(dir.join("spare.tmp"));
        let mut spare = Spare {
            dir: dir.to_path_buf(),
            size_bytes,
            enabled,
            worker: None,
        };
        if !enabled {
            let _ = std::fs::remove_file(dir.join("spare"));
        }
        spare.prepare();
        spare
    }

    fn ready_path(&self) -> PathBuf {
        self.dir.join("spare")
    }

    fn is_complete(&self) -> bool {
        std::fs::metadata(self.ready_path())
            .map(|m| m.len() == self.size_bytes)
            .unwrap_or(false)
    }

    /// Starts the background fill unless a spare is complete or being made.
    pub fn prepare(&mut self) {
        if !self.enabled || self.worker.is_some() || self.is_complete() {
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (dir, size, stop) = (self.dir.clone(), self.size_bytes, Arc::clone(&cancel));
        let spawned = std::thread::Builder::new()
            .name("rmqraft-spare".to_string())
            .spawn(move || fill(&dir, size, &stop));
        match spawned {
            Ok(handle) => self.worker = Some((handle, cancel)),
            Err(e) => log::warn!(
                "store {}: cannot start the spare segment writer: {e}",
                self.dir.display()
            ),
        }
    }

    /// A complete spare moved to `target`, if one is ready. With `wait`, a fill in
    /// progress is awaited first (used only for a new store's first segment).
    pub fn take(&mut self, target: &Path, wait: bool) -> Option<File> {
        if let Some((handle, _)) = &self.worker {
            if !wait && !handle.is_finished() {
                return None;
            }
            let (handle, _) = self.worker.take()?;
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::warn!("store {}: spare segment: {e}", self.dir.display()),
                Err(_) => log::warn!(
                    "store {}: the spare segment writer panicked",
                    self.dir.display()
                ),
            }
        }
        if !self.is_complete() {
            return None;
        }
        if let Err(e) = std::fs::rename(self.ready_path(), target) {
            log::warn!(
                "store {}: cannot use the spare segment: {e}",
                self.dir.display()
            );
            return None;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(target)
            .ok();
        self.prepare();
        file
    }

    /// Stops a fill in progress and waits for its thread.
    pub fn stop(&mut self) {
        if let Some((handle, cancel)) = self.worker.take() {
            cancel.store(true, Ordering::Release);
            let _ = handle.join();
        }
        let _ = std::fs::remove_file(self.dir.join("spare.tmp"));
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        self.stop();
    }
}

fn fill(dir: &Path, size: u64, cancel: &AtomicBool) -> Result<()> {
    let result = fill_tmp(dir, size, cancel);
    if result.is_err() || cancel.load(Ordering::Acquire) {
        // A spare must never hold space the log needs (a full disk, a closing store).
        let _ = std::fs::remove_file(dir.join("spare.tmp"));
    }
    result
}

/// A zeroed buffer aligned for O_DIRECT.
struct AlignedZeros {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedZeros {
    fn new(len: usize) -> Option<AlignedZeros> {
        let layout = std::alloc::Layout::from_size_align(len, 4096).ok()?;
        // SAFETY: the layout has a non-zero size; the memory is zeroed and freed in Drop.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        (!ptr.is_null()).then_some(AlignedZeros { ptr, layout })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `layout.size()` initialized (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedZeros {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

fn open_tmp(tmp: &Path, direct: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(if direct { libc::O_DIRECT } else { 0 })
        .open(tmp)
}

fn fill_tmp(dir: &Path, size: u64, cancel: &AtomicBool) -> Result<()> {
    // The fill must not compete with the hot path: lowest CPU priority, and O_DIRECT so
    // the zeros go to the disk without a copy through the page cache.
    // SAFETY: setpriority on this thread (who 0 = the calling thread under Linux).
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
    let tmp = dir.join("spare.tmp");
    let aligned = size.is_multiple_of(4096);
    let (file, direct) = match open_tmp(&tmp, aligned) {
        Ok(f) => (f, aligned),
        Err(_) => (
            open_tmp(&tmp, false).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?,
            false,
        ),
    };
    let Some(zeros) = AlignedZeros::new(CHUNK_BYTES) else {
        return Err(Error::new(
            crate::error::ErrorKind::Io,
            "cannot allocate the spare's zero buffer",
        ));
    };
    let zeros = zeros.as_slice();
    let mut file = file;
    let mut direct = direct;
    let mut offset = 0u64;
    while offset < size {
        if cancel.load(Ordering::Acquire) {
            return Ok(());
        }
        let n = (size - offset).min(CHUNK_BYTES as u64) as usize;
        match file.write_all_at(&zeros[..n], offset) {
            Ok(()) => offset += n as u64,
            // Some file systems refuse O_DIRECT writes: go on buffered.
            Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&tmp)
                    .map_err(|e| Error::io(format!("reopen {}", tmp.display()), e))?;
                direct = false;
            }
            Err(e) => return Err(Error::io(format!("write {}", tmp.display()), e)),
        }
    }
    file.sync_all()
        .map_err(|e| Error::io(format!("sync {}", tmp.display()), e))?;
    std::fs::rename(&tmp, dir.join("spare"))
        .map_err(|e| Error::io(format!("rename {}", tmp.display()), e))?;
    Ok(())
}
