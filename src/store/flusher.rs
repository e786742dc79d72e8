//! The engine-wide flusher: one thread takes everything ready from every registered store,
//! writes it and fdatasyncs each touched file once (io_uring: one submission per round with
//! a linked write..write->fdatasync chain per file; else pwritev + fdatasync), then reports
//! each store's new flushed index through its callback, holding no store lock.

use super::format::{
    self, Checkpoint, CHECKPOINT_SLOT_STRIDE, INDEX_HEADER_SIZE, INDEX_RECORD_SIZE,
};
use super::fsutil;
use super::FlushedCallback;
use crate::config::{FlusherKind, SyncMode};
use crate::error::{Error, ErrorKind, Result};
use bytes::{Bytes, BytesMut};
use std::fs::File;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest the flusher sleeps when no store asks for anything.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How often a store whose disk was full tries its pending flush again.
pub(crate) const DISK_FULL_RETRY: Duration = Duration::from_millis(100);
/// Files in one round above which `SyncMode::Auto` uses syncfs.
const AUTO_SYNCFS_FILES_MIN: usize = 2;

/// How long index records may wait after their data was flushed.
const INDEX_LAG_MAX: Duration = Duration::from_millis(1000);
/// Pending index bytes that make the index due at once.
const INDEX_PENDING_BYTES_MAX: usize = 1 << 20;

/// io_uring submission queue size; larger rounds go in several waves.
const RING_ENTRIES: u32 = 512;
/// iovecs in one writev (the kernel's IOV_MAX).
const IOVECS_PER_WRITE_MAX: usize = 1024;

/// One data segment file and its index file.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Log position of the segment's first byte; also its file name.
    pub start: u64,
    /// Index of the first entry placed in it (the entry at `start`).
    pub first_index: u64,
    pub data: File,
    pub index: File,
    pub data_path: PathBuf,
    pub index_path: PathBuf,
}

/// What a store has produced and the flusher has not yet taken. Guarded by
/// `StoreShared::pending`; no I/O happens while that lock is held, except in
/// `truncate_suffix`/retention which first wait for `in_flight` to clear.
pub(crate) struct Pending {
    /// Records (entries and blanks) not yet taken, in log-position order.
    pub data: Vec<(u64, Bytes)>,
    /// Index records of entries `index_first..` not yet taken.
    pub index_first: u64,
    pub index_buf: BytesMut,
    /// Index records of every entry below this are written to their files (not
    /// necessarily synced): what the store may read back through a map.
    pub index_written: u64,
    /// Highest entry index covered by what is pending or was taken (the target of the
    /// next flush).
    pub last_index: u64,
    /// The store's segments, oldest first (a mirror the flusher resolves positions with).
    pub segments: Vec<Arc<Segment>>,
    /// Commit index to checkpoint and the last checkpoint written.
    pub checkpoint: Checkpoint,
    pub checkpoint_dirty: bool,
    /// A round of this store's writes is running on the flusher thread.
    pub in_flight: bool,
    /// The first write or sync error; every later append fails with it.
    pub failed: Option<Error>,
    /// Set when `failed` is a full disk met by a flush: the unwritten data went back to
    /// `data`/`index_buf`, and the flusher tries again at this time; a round that then
    /// succeeds clears `failed`. `None` with `failed` set: failed until reopen.
    pub disk_full_retry_at: Option<Instant>,
    pub last_flush: Instant,
    /// When index records were last written (they may lag the data, see `INDEX_LAG_MAX`).
    pub last_index_flush: Instant,
}

pub(crate) struct StoreShared {
    pub dir: PathBuf,
    pub segment_size_bytes: u64,
    pub sync_flush: bool,
    pub async_interval: Duration,
    pub pending: Mutex<Pending>,
    /// Signalled when a round of this store ends.
    pub round_done: Condvar,
    pub flushed_index: AtomicU64,
    pub checkpoint_file: File,
    pub on_flushed: FlushedCallback,
    /// Set when the store is closed or dropped: no more callbacks start after that.
    pub closed: std::sync::atomic::AtomicBool,
    /// Rounds that carried this store and how long each took (write and sync).
    pub flush_latency: crate::metrics::LatencyHistogram,
}

impl StoreShared {
    pub fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no round of this store is running; returns the guard.
    pub fn wait_idle<'a>(&'a self, mut p: MutexGuard<'a, Pending>) -> MutexGuard<'a, Pending> {
        while p.in_flight {
            p = self.round_done.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        p
    }

    pub fn segment_for(segments: &[Arc<Segment>], pos: u64) -> Option<&Arc<Segment>> {
        let i = segments.partition_point(|s| s.start <= pos);
        segments[..i].last()
    }
}

#[derive(Default)]
struct WakeState {
    work: bool,
    closed: bool,
}

pub(crate) struct FlusherInner {
    /// Rounds that wrote and synced something (one group commit each).
    pub rounds: AtomicU64,
    /// Store jobs carried by those rounds (a round may carry several stores).
    pub store_jobs: AtomicU64,
    stores: Mutex<Vec<Arc<StoreShared>>>,
    wake: Mutex<WakeState>,
    wake_cond: Condvar,
}

impl FlusherInner {
    pub fn register(&self, store: Arc<StoreShared>) {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(store);
    }

    pub fn deregister(&self, store: &Arc<StoreShared>) {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !Arc::ptr_eq(s, store));
    }

    /// Tells the flusher that data is ready.
    pub fn notify(&self) {
        let mut w = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        if !w.work {
            w.work = true;
            self.wake_cond.notify_one();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.wake.lock().unwrap_or_else(|p| p.into_inner()).closed
    }
}

/// The engine-wide flusher: one thread, io_uring when available.
pub struct Flusher {
    pub(crate) inner: Arc<FlusherInner>,
    thread: Mutex<Option<JoinHandle<()>>>,
    mode: &'static str,
}

impl Flusher {
    pub fn start(kind: FlusherKind) -> Result<Flusher> {
        Flusher::start_with(kind, SyncMode::Auto)
    }

    /// [`Flusher::start`] with a choice of how a round is made durable.
    pub fn start_with(kind: FlusherKind, sync_mode: SyncMode) -> Result<Flusher> {
        let backend = match kind {
            FlusherKind::Pwrite => Backend::Pwrite,
            FlusherKind::IoUring => match io_uring::IoUring::new(RING_ENTRIES) {
                Ok(ring) => Backend::Uring(Box::new(ring)),
                Err(e) => {
                    return Err(Error::io(
                        "rmqraftFlusher=io_uring: io_uring setup failed",
                        e,
                    ))
                }
            },
            FlusherKind::Auto => match io_uring::IoUring::new(RING_ENTRIES) {
                Ok(ring) => Backend::Uring(Box::new(ring)),
                Err(e) => {
                    log::info!("flusher: io_uring unavailable ({e}); using pwrite + fdatasync");
                    Backend::Pwrite
                }
            },
        };
        let mode = backend.name();
        let sync_mode = effective_sync_mode(sync_mode, &kernel_release());
        log::info!("flusher: running in {mode} mode ({sync_mode:?} rounds)");
        let inner = Arc::new(FlusherInner {
            rounds: AtomicU64::new(0),
            store_jobs: AtomicU64::new(0),
            stores: Mutex::new(Vec::new()),
            wake: Mutex::new(WakeState::default()),
            wake_cond: Condvar::new(),
        });
        let thread_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("rmqraft-flusher".to_string())
            .spawn(move || run(thread_inner, backend, sync_mode))
            .map_err(|e| Error::io("spawn the flusher thread", e))?;
        Ok(Flusher {
            inner,
            thread: Mutex::new(Some(thread)),
            mode,
        })
    }

    /// Group-commit rounds so far, and store jobs they carried.
    pub fn rounds(&self) -> (u64, u64) {
        (
            self.inner.rounds.load(Ordering::Relaxed),
            self.inner.store_jobs.load(Ordering::Relaxed),
        )
    }

    /// Which path runs: "io_uring" or "pwrite".
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// Stops the thread after flushing what is queued. Idempotent.
    pub fn close(&self) {
        {
            let mut w = self.inner.wake.lock().unwrap_or_else(|p| p.into_inner());
            w.closed = true;
            self.inner.wake_cond.notify_one();
        }
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                log::error!("flusher: thread panicked");
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.close();
    }
}

/// Writes to one file in one round: runs of contiguous buffers, then one fdatasync.
struct FileWrites {
    fd: RawFd,
    path: PathBuf,
    runs: Vec<(u64, Vec<Bytes>)>,
    /// Where the last run ends, so adding to it is O(1).
    end: u64,
    /// Keeps the file open while the round runs.
    _keep: Option<Arc<Segment>>,
}

impl FileWrites {
    fn push(&mut self, offset: u64, buf: Bytes) {
        let len = buf.len() as u64;
        if let Some((_, bufs)) = self.runs.last_mut() {
            if self.end == offset {
                bufs.push(buf);
                self.end += len;
                return;
            }
        }
        self.runs.push((offset, vec![buf]));
        self.end = offset + len;
    }
}

/// One store's share of a round.
struct Job {
    store: Arc<StoreShared>,
    last_index: u64,
    files: Vec<FileWrites>,
    error: Option<Error>,
    /// What was taken from `Pending`, to put back if the disk is full.
    taken: Taken,
}

struct Taken {
    data: Vec<(u64, Bytes)>,
    index_first: u64,
    index: Bytes,
    checkpoint: bool,
}

impl Job {
    /// Ends a round: on success the flushed index moves (and a full disk is over); on
    /// ENOSPC what was taken goes back to be retried; any other error fails the store.
    fn finish(self, p: &mut Pending) -> std::result::Result<(), Error> {
        p.in_flight = false;
        let result = match self.error {
            None => {
                self.store
                    .flushed_index
                    .fetch_max(self.last_index.min(p.last_index), Ordering::AcqRel);
                let taken = &self.taken;
                if !taken.index.is_empty() {
                    // A truncation since the round began lowered `index_first`.
                    let end = taken.index_first + (taken.index.len() / INDEX_RECORD_SIZE) as u64;
                    p.index_written = p.index_written.max(end.min(p.index_first));
                }
                if p.disk_full_retry_at.take().is_some() {
                    log::warn!(
                        "store {}: disk space is back; appends resume",
                        self.store.dir.display()
                    );
                    p.failed = None;
                }
                Ok(())
            }
            Some(err)
                if err.kind() == ErrorKind::DiskFull
                    && (p.failed.is_none() || p.disk_full_retry_at.is_some()) =>
            {
                if p.disk_full_retry_at.is_none() {
                    log::error!(
                        "store {}: {err}; appends fail with DISK_FULL until a flush succeeds (retried every {} ms)",
                        self.store.dir.display(),
                        DISK_FULL_RETRY.as_millis()
                    );
                }
                let taken = self.taken;
                // Records appended (or truncated) since the round began stay after it.
                let mut data = taken.data;
                data.retain(|(pos, _)| p.data.first().is_none_or(|(first, _)| pos < first));
                data.append(&mut p.data);
                p.data = data;
                if !taken.index.is_empty() && taken.index_first < p.index_first {
                    let keep = ((p.index_first - taken.index_first) as usize * INDEX_RECORD_SIZE)
                        .min(taken.index.len());
                    let mut index = BytesMut::from(&taken.index[..keep]);
                    index.extend_from_slice(&p.index_buf);
                    p.index_buf = index;
                    p.index_first = taken.index_first;
                }
                p.checkpoint_dirty |= taken.checkpoint;
                p.failed = Some(err.clone());
                p.disk_full_retry_at = Some(Instant::now() + DISK_FULL_RETRY);
                Err(err)
            }
            Some(err) => {
                p.failed.get_or_insert(err.clone());
                p.disk_full_retry_at = None;
                Err(err)
            }
        };
        self.store.round_done.notify_all();
        result
    }
}

/// Takes everything pending from `p` into a job. Called with the pending lock held.
fn take_job(store: &Arc<StoreShared>, p: &mut Pending, include_index: bool) -> Job {
    let mut files: Vec<FileWrites> = Vec::new();
    fn file_for<'a>(
        files: &'a mut Vec<FileWrites>,
        seg: &Arc<Segment>,
        index: bool,
    ) -> &'a mut FileWrites {
        let fd = if index {
            seg.index.as_raw_fd()
        } else {
            seg.data.as_raw_fd()
        };
        if let Some(i) = files.iter().position(|f| f.fd == fd) {
            return &mut files[i];
        }
        let path = if index {
            seg.index_path.clone()
        } else {
            seg.data_path.clone()
        };
        files.push(FileWrites {
            fd,
            path,
            runs: Vec::new(),
            end: 0,
            _keep: Some(seg.clone()),
        });
        files.last_mut().expect("just pushed")
    }
    let mut taken = Taken {
        data: p.data.clone(),
        index_first: p.index_first,
        index: Bytes::new(),
        checkpoint: p.checkpoint_dirty,
    };
    for (pos, buf) in p.data.drain(..) {
        let seg = StoreShared::segment_for(&p.segments, pos)
            .expect("pending data lies in a known segment");
        debug_assert!(pos + buf.len() as u64 <= seg.start + store.segment_size_bytes);
        file_for(&mut files, seg, false).push(pos - seg.start, buf);
    }
    if include_index && !p.index_buf.is_empty() {
        p.last_index_flush = Instant::now();
        let mut buf = p.index_buf.split().freeze();
        taken.index = buf.clone();
        let mut index = p.index_first;
        while !buf.is_empty() {
            let i = p.segments.partition_point(|s| s.first_index <= index);
            let seg = &p.segments[i
                .checked_sub(1)
                .expect("pending index lies in a known segment")];
            let next_first = p.segments.get(i).map_or(u64::MAX, |s| s.first_index);
            let count = ((next_first - index) as usize).min(buf.len() / INDEX_RECORD_SIZE);
            let part = buf.split_to(count * INDEX_RECORD_SIZE);
            let offset =
                INDEX_HEADER_SIZE as u64 + (index - seg.first_index) * INDEX_RECORD_SIZE as u64;
            file_for(&mut files, seg, true).push(offset, part);
            index += count as u64;
        }
        p.index_first = index;
    }
    if p.checkpoint_dirty {
        p.checkpoint_dirty = false;
        p.checkpoint.seq += 1;
        let slot = (p.checkpoint.seq % 2) * CHECKPOINT_SLOT_STRIDE;
        let bytes = Bytes::copy_from_slice(&format::encode_checkpoint(&p.checkpoint));
        files.push(FileWrites {
            fd: store.checkpoint_file.as_raw_fd(),
            path: store.dir.join("checkpoint"),
            end: slot + bytes.len() as u64,
            runs: vec![(slot, vec![bytes])],
            _keep: None,
        });
    }
    Job {
        store: store.clone(),
        last_index: p.last_index,
        files,
        error: None,
        taken,
    }
}

fn run(inner: Arc<FlusherInner>, mut backend: Backend, sync_mode: SyncMode) {
    let mut closing = false;
    loop {
        {
            let mut w = inner.wake.lock().unwrap_or_else(|p| p.into_inner());
            w.work = false;
            closing |= w.closed;
        }
        let stores: Vec<Arc<StoreShared>> = inner
            .stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let now = Instant::now();
        let mut wait = IDLE_WAIT;
        let mut busy_store = false;
        let mut jobs = Vec::new();
        for store in &stores {
            if !store.sync_flush {
                wait = wait.min(store.async_interval);
            }
            let mut p = match store.pending.try_lock() {
                Ok(p) => p,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    // A truncation or retention holds it while doing its own I/O.
                    busy_store = true;
                    continue;
                }
            };
            if p.in_flight {
                continue;
            }
            if p.failed.is_some() {
                match p.disk_full_retry_at {
                    Some(at) if now >= at => {}
                    Some(at) => {
                        wait = wait.min(at - now);
                        continue;
                    }
                    None => continue,
                }
            }
            // Index records are derived from the data (recovery rebuilds them), so they
            // need not be synced with every group commit: each fdatasync of a growing
            // index file costs a journal commit. They follow within INDEX_LAG_MAX, at a
            // segment roll-over, at close, or when many are pending.
            let index_due_at = p.last_index_flush + INDEX_LAG_MAX;
            let index_due = closing
                || now >= index_due_at
                || p.index_buf.len() >= INDEX_PENDING_BYTES_MAX
                || p.segments
                    .last()
                    .is_some_and(|s| p.index_first < s.first_index);
            let index_pending = !p.index_buf.is_empty();
            let ready = !p.data.is_empty() || (index_due && index_pending) || p.checkpoint_dirty;
            if !ready {
                if index_pending {
                    wait = wait.min(
                        index_due_at
                            .saturating_duration_since(now)
                            .max(Duration::from_millis(1)),
                    );
                }
                if p.disk_full_retry_at.take().is_some() {
                    // A truncation dropped everything that was waiting for space.
                    p.failed = None;
                }
                continue;
            }
            let due_at = p.last_flush + store.async_interval;
            if store.sync_flush || closing || now >= due_at {
                p.in_flight = true;
                p.last_flush = now;
                jobs.push(take_job(store, &mut p, index_due));
            } else {
                wait = wait.min(due_at - now);
            }
        }
        drop(stores);
        if jobs.is_empty() {
            if closing && !busy_store {
                break;
            }
            let w = inner.wake.lock().unwrap_or_else(|p| p.into_inner());
            if !w.work && !w.closed {
                let wait = if busy_store {
                    Duration::from_millis(1)
                } else {
                    wait
                };
                drop(
                    inner
                        .wake_cond
                        .wait_timeout(w, wait)
                        .unwrap_or_else(|e| e.into_inner()),
                );
            }
            continue;
        }
        let round_started = Instant::now();
        backend.write_and_sync(&mut jobs, sync_mode);
        let round_time = round_started.elapsed();
        for job in &jobs {
            job.store.flush_latency.observe(round_time);
        }
        inner.rounds.fetch_add(1, Ordering::Relaxed);
        inner
            .store_jobs
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        let mut reports = Vec::with_capacity(jobs.len());
        for job in jobs {
            let store = job.store.clone();
            let mut p = store.lock();
            let retrying = p.disk_full_retry_at.is_some();
            match job.finish(&mut p) {
                Ok(()) => reports.push(store.clone()),
                Err(err) if err.kind() == ErrorKind::DiskFull && retrying => {}
                Err(err) => {
                    log::error!("flusher: store {}: {err}", store.dir.display());
                    // The owner hears of the failure at once (it reads it from the store).
                    reports.push(store.clone());
                }
            }
        }
        for store in reports {
            if store.closed.load(Ordering::Acquire) {
                continue;
            }
            // Read again: a truncation may have lowered it since the round ended.
            let flushed = store.flushed_index.load(Ordering::Acquire);
            (store.on_flushed)(flushed);
        }
    }
    log::info!("flusher: stopped");
}

enum Backend {
    Uring(Box<io_uring::IoUring>),
    Pwrite,
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Uring(_) => "io_uring",
            Backend::Pwrite => "pwrite",
        }
    }

    fn write_and_sync(&mut self, jobs: &mut [Job], sync_mode: SyncMode) {
        let files: usize = jobs.iter().map(|j| j.files.len()).sum();
        let syncfs = match sync_mode {
            SyncMode::Fdatasync => false,
            SyncMode::Syncfs => true,
            SyncMode::Auto => files > AUTO_SYNCFS_FILES_MIN,
        };
        if syncfs {
            return write_all_syncfs(jobs);
        }
        match self {
            Backend::Pwrite => {
                for job in jobs.iter_mut() {
                    for f in &job.files {
                        if let Err(e) = write_file_sync(f) {
                            job.error = Some(e);
                            break;
                        }
                    }
                }
            }
            Backend::Uring(ring) => uring_round(ring, jobs),
        }
    }
}

fn iovecs(bufs: &[Bytes]) -> Vec<libc::iovec> {
    bufs.iter()
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect()
}

/// pwritev all runs of `f` (resuming short writes), then fdatasync it.
fn write_file_sync(f: &FileWrites) -> Result<()> {
    write_file(f)?;
    let mark = super::testing::sync_mark(f.fd);
    // SAFETY: fdatasync on an open descriptor.
    let synced = match super::testing::before_sync(f.fd) {
        Ok(()) if unsafe { libc::fdatasync(f.fd) } == 0 => Ok(()),
        Ok(()) => Err(std::io::Error::last_os_error()),
        Err(e) => Err(e),
    };
    if let Err(e) = synced {
        return Err(sync_failed(&format!("fdatasync {}", f.path.display()), e));
    }
    super::testing::synced(f.fd, mark);
    Ok(())
}

/// A failed fdatasync or syncfs fails the store for good, whatever the errno (even
/// ENOSPC): after a writeback error the kernel may have marked the unwritten pages
/// clean, so a second sync could succeed without the data on disk (PostgreSQL's
/// "fsyncgate"). Only a refused write (ENOSPC before any sync) is retried.
fn sync_failed(what: &str, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("{what}: {e}; not retried (a failed sync may have lost the data it covered); the member fails"),
    )
}

/// The running kernel's release string (`uname -r`), empty if unknown.
fn kernel_release() -> String {
    // SAFETY: uname fills a local, zeroed utsname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// syncfs(2) reports writeback errors only since Linux 5.8; before, it returns 0 even
/// when the data never reached the disk. True when `release` is at least 5.8. An
/// unparsable release counts as old: trusting a sync that may lie loses acknowledged data.
fn syncfs_reports_errors(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let major: u32 = match parts.next().and_then(|p| p.parse().ok()) {
        Some(v) => v,
        None => return false,
    };
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (5, 8)
}

/// The sync mode rounds really use: syncfs only where the kernel reports its errors.
fn effective_sync_mode(asked: SyncMode, release: &str) -> SyncMode {
    if asked == SyncMode::Fdatasync || syncfs_reports_errors(release) {
        return asked;
    }
    if asked == SyncMode::Syncfs {
        log::warn!(
            "rmqraftSyncMode=syncfs: kernel {release:?} is older than 5.8, whose syncfs does \
             not report write errors; using one fdatasync per file instead"
        );
    } else {
        log::info!("kernel {release:?} is older than 5.8: flush rounds use fdatasync per file");
    }
    SyncMode::Fdatasync
}

/// One round in syncfs mode: every file written with pwritev, then one syncfs(2) per
/// file system touched instead of one fdatasync per file. With many groups an engine
/// touches many files per round, and their fdatasyncs each pay a device cache flush;
/// syncfs pays one for all.
fn write_all_syncfs(jobs: &mut [Job]) {
    let mut devices: Vec<(u64, RawFd)> = Vec::new();
    let mut marks: Vec<(usize, usize, u64)> = Vec::new();
    for (j, job) in jobs.iter_mut().enumerate() {
        for (i, f) in job.files.iter().enumerate() {
            if let Err(e) = write_file(f) {
                job.error = Some(e);
                break;
            }
            // SAFETY: fstat on an open descriptor into a local buffer.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            if unsafe { libc::fstat(f.fd, &mut st) } != 0 {
                // Without its device the file would be counted synced by no syncfs.
                job.error = Some(sync_failed(
                    &format!("fstat {} for syncfs", f.path.display()),
                    std::io::Error::last_os_error(),
                ));
                break;
            }
            if !devices.iter().any(|(d, _)| *d == st.st_dev) {
                devices.push((st.st_dev, f.fd));
            }
            marks.push((j, i, super::testing::sync_mark(f.fd)));
        }
    }
    let mut failure = None;
    for (_, fd) in &devices {
        if let Err(e) = super::testing::before_sync(*fd) {
            failure = Some(e);
            continue;
        }
        // SAFETY: syncfs on an open descriptor.
        if unsafe { libc::syncfs(*fd) } != 0 {
            failure = Some(std::io::Error::last_os_error());
        }
    }
    for (j, i, mark) in marks {
        let job = &mut jobs[j];
        if job.error.is_some() {
            continue;
        }
        match &failure {
            None => super::testing::synced(job.files[i].fd, mark),
            Some(e) => {
                let path = job.files[i].path.display().to_string();
                job.error = Some(sync_failed(
                    &format!("syncfs for {path}"),
                    std::io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
                ));
            }
        }
    }
}

/// pwritev all runs of `f`, resuming short writes.
fn write_file(f: &FileWrites) -> Result<()> {
    let ctx = || format!("write {}", f.path.display());
    for (offset, bufs) in &f.runs {
        let mut offset = *offset;
        for group in bufs.chunks(IOVECS_PER_WRITE_MAX) {
            let len = group.iter().map(|b| b.len() as u64).sum();
            super::testing::on_write(f.fd, offset, len).map_err(|e| Error::io(ctx(), e))?;
            let mut iov = iovecs(group);
            let mut first = 0;
            while first < iov.len() {
                let rest = &iov[first..];
                // SAFETY: the iovecs point into live `Bytes` held by `f`; fd is open.
                let n = unsafe {
                    libc::pwritev(
                        f.fd,
                        rest.as_ptr(),
                        rest.len() as libc::c_int,
                        offset as libc::off_t,
                    )
                };
                if n < 0 {
                    let err = std::io::Error::last_os_error();
                    if err.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(Error::io(ctx(), err));
                }
                if n == 0 {
                    return Err(Error::io(
                        ctx(),
                        std::io::Error::from(std::io::ErrorKind::WriteZero),
                    ));
                }
                let mut n = n as usize;
                offset += n as u64;
                while n > 0 {
                    let v = &mut iov[first];
                    if n >= v.iov_len {
                        n -= v.iov_len;
                        first += 1;
                    } else {
                        // SAFETY: advancing within the same buffer.
                        v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut libc::c_void;
                        v.iov_len -= n;
                        n = 0;
                    }
                }
            }
        }
    }
    Ok(())
}

/// One chain in the ring: the writev ops of one file followed by its fdatasync.
struct Chain {
    job: usize,
    file: usize,
    iovecs: Vec<Vec<libc::iovec>>,
    expected: Vec<usize>,
    failed: bool,
    /// The chain's fdatasync itself failed with this errno: reported, never redone.
    sync_errno: Option<i32>,
}

fn uring_round(ring: &mut io_uring::IoUring, jobs: &mut [Job]) {
    use io_uring::{opcode, squeue, types};
    let mut chains: Vec<Chain> = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        for (i, f) in job.files.iter().enumerate() {
            let mut iov_groups = Vec::new();
            let mut expected = Vec::new();
            for (_, bufs) in &f.runs {
                for group in bufs.chunks(IOVECS_PER_WRITE_MAX) {
                    expected.push(group.iter().map(Bytes::len).sum());
                    iov_groups.push(iovecs(group));
                }
            }
            chains.push(Chain {
                job: j,
                file: i,
                iovecs: iov_groups,
                expected,
                // Files under fault injection take the pwritev path below.
                failed: super::testing::intercepts(&f.path),
                sync_errno: None,
            });
        }
    }
    let mut next = 0;
    while next < chains.len() {
        // One wave: as many whole chains as the submission queue holds.
        let wave_start = next;
        let mut ops = 0usize;
        while next < chains.len() {
            let mut need = chains[next].iovecs.len() + 1;
            if need > RING_ENTRIES as usize {
                // Too long for one submission: it goes through pwritev below.
                chains[next].failed = true;
                need = 0;
            }
            if ops > 0 && ops + need > RING_ENTRIES as usize {
                break;
            }
            ops += need;
            next += 1;
        }
        let mut pushed = 0usize;
        {
            let mut sq = ring.submission();
            for (c_idx, chain) in chains.iter_mut().enumerate().take(next).skip(wave_start) {
                if chain.failed {
                    continue;
                }
                let f = &jobs[chain.job].files[chain.file];
                let fd = types::Fd(f.fd);
                let mut write_no = 0;
                let mut entries = Vec::with_capacity(chain.iovecs.len() + 1);
                for (offset, bufs) in &f.runs {
                    let mut offset = *offset;
                    for group in bufs.chunks(IOVECS_PER_WRITE_MAX) {
                        let iov = &chain.iovecs[write_no];
                        let e = opcode::Writev::new(fd, iov.as_ptr(), iov.len() as u32)
                            .offset(offset)
                            .build()
                            .flags(squeue::Flags::IO_LINK)
                            .user_data(((c_idx as u64) << 16) | write_no as u64);
                        entries.push(e);
                        offset += group.iter().map(|b| b.len() as u64).sum::<u64>();
                        write_no += 1;
                    }
                }
                entries.push(
                    opcode::Fsync::new(fd)
                        .flags(types::FsyncFlags::DATASYNC)
                        .build()
                        .user_data(((c_idx as u64) << 16) | 0xFFFF),
                );
                // SAFETY: the iovecs and the buffers they point to live in `chains` and
                // `jobs` until every completion of this wave is reaped below. The wave was
                // sized to fit, so a whole chain is pushed or (on a full queue) none of it.
                if unsafe { sq.push_multiple(&entries) }.is_err() {
                    chain.failed = true;
                } else {
                    pushed += entries.len();
                }
            }
        }
        let mut reaped = 0usize;
        let mut submit_error = None;
        while reaped < pushed {
            if let Err(e) = ring.submit_and_wait(pushed - reaped) {
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                submit_error = Some(e);
                break;
            }
            for cqe in ring.completion() {
                reaped += 1;
                let c_idx = (cqe.user_data() >> 16) as usize;
                let op = (cqe.user_data() & 0xFFFF) as usize;
                let chain = &mut chains[c_idx];
                let res = cqe.result();
                let ok = if op == 0xFFFF {
                    // -ECANCELED: a write before it failed or was short, so the sync
                    // never ran; the chain is redone below. Any other error is the
                    // sync's own and is final.
                    if res < 0 && res != -libc::ECANCELED {
                        chain.sync_errno = Some(-res);
                    }
                    res == 0
                } else {
                    res >= 0 && res as usize == chain.expected[op]
                };
                if !ok {
                    chain.failed = true;
                }
            }
        }
        if let Some(e) = submit_error {
            // The ring is unusable for this round: the kernel may still own buffers of
            // submitted ops, so drain what it returns before the buffers are released.
            log::error!("flusher: io_uring submit failed ({e}); finishing this round with pwrite");
            let _ = ring.submit_and_wait(pushed - reaped);
            for cqe in ring.completion() {
                let _ = cqe;
            }
            for chain in &mut chains[wave_start..next] {
                chain.failed = true;
            }
        }
    }
    // A failed or short chain is redone synchronously: rewriting the same bytes at the
    // same offsets is harmless, and it yields the real error (ENOSPC, EIO) if any.
    for chain in &chains {
        if let Some(errno) = chain.sync_errno {
            let job = &mut jobs[chain.job];
            if job.error.is_none() {
                let path = job.files[chain.file].path.display().to_string();
                job.error = Some(sync_failed(
                    &format!("fdatasync {path}"),
                    std::io::Error::from_raw_os_error(errno),
                ));
            }
            continue;
        }
        if chain.failed && jobs[chain.job].error.is_none() {
            if let Err(e) = write_file_sync(&jobs[chain.job].files[chain.file]) {
                jobs[chain.job].error = Some(e);
            }
        }
    }
}

/// Flushes everything pending of one store on the calling thread (pwritev + fdatasync),
/// after any round of the flusher thread for it has ended. Does not call `on_flushed`:
/// the caller may hold the lock that callback takes.
pub(crate) fn flush_now(store: &Arc<StoreShared>) -> Result<()> {
    let mut p = store.wait_idle(store.lock());
    if let Some(err) = &p.failed {
        return Err(err.clone());
    }
    if p.data.is_empty() && p.index_buf.is_empty() && !p.checkpoint_dirty {
        return Ok(());
    }
    p.in_flight = true;
    p.last_flush = Instant::now();
    let mut job = take_job(store, &mut p, true);
    drop(p);
    job.error = job.files.iter().try_for_each(write_file_sync).err();
    let mut p = store.lock();
    let result = job.finish(&mut p);
    if let Err(err) = &result {
        log::error!("store {}: flush failed: {err}", store.dir.display());
    }
    result
}

/// Writes the index header of a new segment's index file.
pub(crate) fn write_index_header(
    seg_index: &File,
    path: &std::path::Path,
    first_index: u64,
    prev_term: u64,
) -> Result<()> {
    let h = format::encode_index_header(&format::IndexHeader {
        first_index,
        prev_term,
    });
    fsutil::pwrite_all(seg_index, &h, 0)
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncfs_is_trusted_from_linux_5_8_only() {
        for old in [
            "5.7.19",
            "4.19.0-25-amd64",
            "3.10.0-1160.el7.x86_64",
            "",
            "weird",
        ] {
            assert!(!syncfs_reports_errors(old), "{old:?}");
            assert_eq!(
                effective_sync_mode(SyncMode::Syncfs, old),
                SyncMode::Fdatasync
            );
            assert_eq!(
                effective_sync_mode(SyncMode::Auto, old),
                SyncMode::Fdatasync
            );
        }
        for new in ["5.8.0", "5.10.0-28-amd64", "6.18.44-fc-v857", "10.0"] {
            assert!(syncfs_reports_errors(new), "{new:?}");
            assert_eq!(effective_sync_mode(SyncMode::Syncfs, new), SyncMode::Syncfs);
            assert_eq!(effective_sync_mode(SyncMode::Auto, new), SyncMode::Auto);
        }
        assert_eq!(
            effective_sync_mode(SyncMode::Fdatasync, "6.1"),
            SyncMode::Fdatasync
        );
    }
}

#[cfg(test)]
mod sync_error_tests {
    use super::super::testing::FaultDomain;
    use super::super::{LogStore, StoreOptions};
    use super::*;
    use crate::config::{FlushDiskType, FlusherKind};
    use crate::types::{Entry, EntryKind};

    /// A round whose sync fails (fdatasync, or syncfs where the kernel reports errors)
    /// counts nothing as flushed and fails the store for good, with no second sync.
    fn a_failed_sync_round_fails_the_store(mode: SyncMode) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dledger-n0");
        std::fs::create_dir_all(&dir).unwrap();
        let opts = StoreOptions {
            dir: dir.clone(),
            segment_size_bytes: 64 << 10,
            flush: FlushDiskType::SyncFlush,
            async_flush_interval_ms: 10,
            entry_size_bytes_max: 16 << 10,
            prewrite_segments: false,
            classic_commitlog_dir: None,
        };
        let flusher = Flusher::start_with(FlusherKind::Pwrite, mode).unwrap();
        let (mut store, _) = LogStore::open(opts, &flusher, Arc::new(|_| {})).unwrap();
        let domain = FaultDomain::new(&dir).unwrap();
        domain.set_sync_errno(Some(libc::EIO));
        let entry = Entry {
            index: 1,
            term: 1,
            kind: EntryKind::Normal,
            body: Bytes::from_static(b"x"),
        };
        store.append(&entry).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = loop {
            if let Some(err) = store.failure() {
                break err;
            }
            assert!(
                Instant::now() < deadline,
                "the failed round was not reported"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert_eq!(store.flushed_index(), 0, "nothing counts as flushed");
        // Rounds go on for other stores; this one is never synced again.
        domain.set_sync_errno(None);
        let again = Entry { index: 2, ..entry };
        assert!(
            store.append(&again).is_err(),
            "a failed store takes no appends"
        );
        assert!(store.sync().is_err());
        let failures = domain.sync_failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].1, 1, "{failures:?}");
        drop(store);
        flusher.close();
    }

    #[test]
    fn a_failed_fdatasync_round_fails_the_store() {
        a_failed_sync_round_fails_the_store(SyncMode::Fdatasync);
    }

    #[test]
    fn a_failed_syncfs_round_fails_the_store() {
        if !syncfs_reports_errors(&kernel_release()) {
            eprintln!("skipped: this kernel's syncfs does not report errors");
            return;
        }
        a_failed_sync_round_fails_the_store(SyncMode::Syncfs);
    }
}
