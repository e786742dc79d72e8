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

//!
//! The fills of every store in the process go to one pool: one worker thread (started
//! on demand, gone when nothing is queued) fills the spares one after the other, and at
//! most [`SPARES_MAX`] complete spares exist at once, so 256 groups neither run 256
//! fills nor hold 256 spare segments; a store without one fallocates its next segment.

use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Zeros written per call.
const CHUNK_BYTES: usize = 1 << 20;
/// Complete spare segments held by the open stores of this process, at most; a fill
/// waits for one to be taken.
pub(crate) const SPARES_MAX: usize = 16;
/// How long the pool worker waits for room before it looks again.
const POOL_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Queued,
    Running,
    /// Filled (true) or failed / cancelled (false).
    Done(bool),
}

struct Job {
    dir: PathBuf,
    size: u64,
    cancel: AtomicBool,
}

struct PoolState {
    queue: VecDeque<Arc<Job>>,
    status: Vec<(Arc<Job>, Status)>,
    /// Complete spares counted against [`SPARES_MAX`] (held by stores, or filled and
    /// not yet collected by theirs).
    ready: usize,
    worker: Option<JoinHandle<()>>,
    worker_running: bool,
}

struct Pool {
    state: Mutex<PoolState>,
    /// Signalled when a job finishes, a job is queued, or room is made.
    changed: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(PoolState {
            queue: VecDeque::new(),
            status: Vec::new(),
            ready: 0,
            worker: None,
            worker_running: false,
        }),
        changed: Condvar::new(),
    })
}

fn lock_pool() -> MutexGuard<'static, PoolState> {
    pool().state.lock().unwrap_or_else(|p| p.into_inner())
}

impl PoolState {
    fn status_of(&self, job: &Arc<Job>) -> Option<Status> {
        self.status
            .iter()
            .find(|(j, _)| Arc::ptr_eq(j, job))
            .map(|(_, s)| s.clone())
    }

    fn set_status(&mut self, job: &Arc<Job>, status: Status) {
        if let Some(entry) = self.status.iter_mut().find(|(j, _)| Arc::ptr_eq(j, job)) {
            entry.1 = status;
        }
    }

    fn forget(&mut self, job: &Arc<Job>) {
        self.status.retain(|(j, _)| !Arc::ptr_eq(j, job));
        self.queue.retain(|j| !Arc::ptr_eq(j, job));
    }

    fn release(&mut self) {
        self.ready = self.ready.saturating_sub(1);
        pool().changed.notify_all();
    }
}

fn submit(job: Arc<Job>) {
    let mut st = lock_pool();
    st.queue.push_back(Arc::clone(&job));
    st.status.push((job, Status::Queued));
    if !st.worker_running {
        // The previous worker has returned (it clears the flag as its last step).
        if let Some(old) = st.worker.take() {
            let _ = old.join();
        }
        match std::thread::Builder::new()
            .name("rmqraft-spare".to_string())
            .spawn(pool_worker)
        {
            Ok(handle) => {
                st.worker = Some(handle);
                st.worker_running = true;
            }
            Err(e) => {
                log::warn!("cannot start the spare segment writer: {e}");
                let job = st.queue.pop_back();
                if let Some(job) = job {
                    st.set_status(&job, Status::Done(false));
                }
            }
        }
    }
    pool().changed.notify_all();
}

fn pool_worker() {
    let mut st = lock_pool();
    loop {
        if st.queue.is_empty() {
            st.worker_running = false;
            return;
        }
        if st.ready >= SPARES_MAX {
            st = pool()
                .changed
                .wait_timeout(st, POOL_WAIT)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        }
        let Some(job) = st.queue.pop_front() else {
            continue;
        };
        st.set_status(&job, Status::Running);
        // Counted while it runs, so no other fill passes the budget meanwhile.
        st.ready += 1;
        drop(st);
        let result = fill(&job.dir, job.size, &job.cancel);
        if let Err(e) = &result {
            log::warn!("store {}: spare segment: {e}", job.dir.display());
        }
        let filled = result.is_ok() && !job.cancel.load(Ordering::Acquire);
        st = lock_pool();
        if !filled {
            st.ready = st.ready.saturating_sub(1);
        }
        st.set_status(&job, Status::Done(filled));
        pool().changed.notify_all();
    }
}

pub(crate) struct Spare {
    dir: PathBuf,
    size_bytes: u64,
    enabled: bool,
    job: Option<Arc<Job>>,
    /// A complete spare of this store is counted in the pool's budget.
    holds: bool,
}

impl Spare {
    /// Cleans up what a crash left and starts preparing a spare if none is complete.
    pub fn new(dir: &Path, size_bytes: u64, enabled: bool) -> Spare {
        let _ = std::fs::remove_file(dir.join("spare.tmp"));
        let mut spare = Spare {
            dir: dir.to_path_buf(),
            size_bytes,
            enabled,
            job: None,
            holds: false,
        };
        if !enabled {
            let _ = std::fs::remove_file(dir.join("spare"));
        } else if spare.is_complete() {
            lock_pool().ready += 1;
            spare.holds = true;
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

    /// Queues the background fill unless a spare is complete or being made.
    pub fn prepare(&mut self) {
        if !self.enabled || self.job.is_some() || self.holds || self.is_complete() {
            return;
        }
        let job = Arc::new(Job {
            dir: self.dir.clone(),
            size: self.size_bytes,
            cancel: AtomicBool::new(false),
        });
        self.job = Some(Arc::clone(&job));
        submit(job);
    }

    /// Collects a finished fill (with `wait`, one running is awaited; one still queued is
    /// given up). True when this store then holds a counted spare.
    fn collect(&mut self, wait: bool) {
        let Some(job) = self.job.clone() else {
            return;
        };
        let mut st = lock_pool();
        loop {
            match st.status_of(&job) {
                Some(Status::Done(filled)) => {
                    st.forget(&job);
                    self.job = None;
                    if filled {
                        self.holds = true;
                    }
                    return;
                }
                Some(Status::Running) if wait => {
                    st = pool()
                        .changed
                        .wait_timeout(st, POOL_WAIT)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                Some(Status::Queued) if wait => {
                    // Behind other stores' fills: do not hold up the first segment.
                    st.forget(&job);
                    self.job = None;
                    return;
                }
                None => {
                    self.job = None;
                    return;
                }
                Some(_) => return,
            }
        }
    }

    /// A complete spare moved to `target`, if one is ready. With `wait`, a fill in
    /// progress is awaited first (used only for a new store's first segment).
    pub fn take(&mut self, target: &Path, wait: bool) -> Option<File> {
        self.collect(wait);
        if !self.holds {
            return None;
        }
        if !self.is_complete() {
            self.holds = false;
            lock_pool().release();
            return None;
        }
        let renamed = std::fs::rename(self.ready_path(), target);
        self.holds = false;
        lock_pool().release();
        if let Err(e) = renamed {
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

    /// Stops a fill in progress (or gives up a queued one) and waits for it. A complete
    /// spare stays for the next open, out of the budget until then.
    pub fn stop(&mut self) {
        if let Some(job) = self.job.take() {
            job.cancel.store(true, Ordering::Release);
            let mut st = lock_pool();
            let mut rounds = 0u32;
            loop {
                match st.status_of(&job) {
                    Some(Status::Running) if rounds < 6000 => {
                        rounds += 1;
                        st = pool()
                            .changed
                            .wait_timeout(st, POOL_WAIT)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    Some(Status::Done(true)) => {
                        st.forget(&job);
                        st.release();
                        break;
                    }
                    _ => {
                        st.forget(&job);
                        break;
                    }
                }
            }
        }
        if self.holds {
            self.holds = false;
            lock_pool().release();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn spare_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|t| t.ok())
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .map(|c| c.trim() == "rmqraft-spare")
                            .unwrap_or(false)
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// More stores than the budget: one fill thread, never more complete spares than
    /// the budget, and a spare taken makes room for a store still waiting.
    #[test]
    fn many_stores_share_one_fill_thread_and_the_spare_budget() {
        let root = tempfile::tempdir().expect("tempdir");
        let n = SPARES_MAX + 4;
        let size = 256 << 10;
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| {
                let d = root.path().join(format!("store{i}"));
                std::fs::create_dir_all(&d).expect("store dir");
                d
            })
            .collect();
        let mut spares: Vec<Spare> = dirs.iter().map(|d| Spare::new(d, size, true)).collect();
        let complete = |dirs: &[PathBuf]| dirs.iter().filter(|d| d.join("spare").exists()).count();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut most_threads = 0;
        let mut most_complete = 0;
        // Until the fills stop (budget reached or all done), sampling as they go.
        while Instant::now() < deadline {
            most_threads = most_threads.max(spare_threads());
            let now = complete(&dirs);
            most_complete = most_complete.max(now);
            let idle = {
                let st = lock_pool();
                !st.status.iter().any(|(_, s)| *s == Status::Running)
                    && (st.queue.is_empty() || st.ready >= SPARES_MAX)
            };
            if idle && now > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            most_threads <= 1,
            "{most_threads} spare fill threads at once"
        );
        assert!(
            most_complete <= SPARES_MAX,
            "{most_complete} complete spares, over the budget of {SPARES_MAX}"
        );
        let before = complete(&dirs);
        assert!(before > 0, "no spare was filled within 30 s");
        let waiting = dirs.iter().filter(|d| !d.join("spare").exists()).count();
        assert!(
            waiting > 0,
            "every store holds a spare: the budget did not apply"
        );
        // Take one: room for one more, which a waiting store gets.
        let (i, _) = dirs
            .iter()
            .enumerate()
            .find(|(_, d)| d.join("spare").exists())
            .expect("a store with a spare");
        let taken = spares[i].take(&dirs[i].join("segment"), false);
        assert!(taken.is_some(), "the complete spare was not taken");
        let others = |dirs: &[PathBuf]| {
            dirs.iter()
                .enumerate()
                .filter(|(j, d)| *j != i && d.join("spare").exists())
                .count()
        };
        let others_before = before - 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        while others(&dirs) <= others_before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            others(&dirs) > others_before,
            "no waiting store got a spare after one was taken"
        );
        for spare in spares.iter_mut() {
            spare.stop();
        }
        assert_eq!(
            dirs.iter().filter(|d| d.join("spare.tmp").exists()).count(),
            0,
            "a stopped store kept a partial spare"
        );
    }
}
