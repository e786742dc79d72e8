//! Test support: a fault-injecting layer under the store's file writes.
//!
//! Not part of the stable API. Every write and fdatasync the store makes passes through
//! [`on_write`], [`sync_mark`] and [`synced`]; they cost one relaxed atomic load unless a
//! [`FaultDomain`] is registered. A domain covers the files under one directory and can:
//!
//! - refuse writes and preallocations with ENOSPC once a byte budget is spent
//!   ([`FaultDomain::set_space_left_bytes`]), as a full file system would;
//! - fail every fdatasync (and syncfs) of its files with an errno such as EIO
//!   ([`FaultDomain::set_sync_errno`]), as a dying disk would, counting the attempts per
//!   file so a test can see that none is retried;
//! - remember, per file, the byte ranges written since that file's last fdatasync, and
//!   take a "power cut" image of the directory in which exactly those ranges are
//!   destroyed ([`FaultDomain::power_cut`]), as a machine losing power would.
//!
//! Files are matched by the path of their descriptor (`/proc/self/fd`), so the store's
//! own code paths stay the same with or without a domain.

use std::collections::HashMap;
use std::io;
use std::os::unix::io::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

static ACTIVE: AtomicBool = AtomicBool::new(false);
static DOMAINS: Mutex<Vec<Arc<DomainState>>> = Mutex::new(Vec::new());
static NEXT_WRITE_SEQ: AtomicU64 = AtomicU64::new(1);

/// One write not yet covered by an fdatasync: (write sequence, offset, length).
type UnsyncedRange = (u64, u64, u64);

struct DomainState {
    root: PathBuf,
    inner: Mutex<DomainInner>,
}

#[derive(Default)]
struct DomainInner {
    /// `None`: unlimited.
    space_left_bytes: Option<u64>,
    enospc_count: u64,
    /// `Some(errno)`: every sync of a file under the root fails with it.
    sync_errno: Option<i32>,
    /// Failed sync attempts, per file.
    sync_failures: HashMap<PathBuf, u64>,
    unsynced: HashMap<PathBuf, Vec<UnsyncedRange>>,
}

fn domains() -> MutexGuard<'static, Vec<Arc<DomainState>>> {
    DOMAINS.lock().unwrap_or_else(|p| p.into_inner())
}

fn fd_path(fd: RawFd) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
}

fn domain_of(fd: RawFd) -> Option<(Arc<DomainState>, PathBuf)> {
    if !ACTIVE.load(Ordering::Relaxed) {
        return None;
    }
    let path = fd_path(fd)?;
    let d = domains()
        .iter()
        .find(|d| path.starts_with(&d.root))
        .cloned()?;
    Some((d, path))
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

/// Called before `len` bytes are written at `offset` of `fd`: may refuse with ENOSPC;
/// otherwise the range counts as unsynced until the next [`synced`] of the file.
pub(crate) fn on_write(fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
    let Some((d, path)) = domain_of(fd) else {
        return Ok(());
    };
    let mut inner = d.inner.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(left) = inner.space_left_bytes {
        if len > left {
            inner.space_left_bytes = Some(0);
            inner.enospc_count += 1;
            return Err(enospc());
        }
        inner.space_left_bytes = Some(left - len);
    }
    let seq = NEXT_WRITE_SEQ.fetch_add(1, Ordering::Relaxed);
    inner
        .unsynced
        .entry(path)
        .or_default()
        .push((seq, offset, len));
    Ok(())
}

/// Called before `fd` grows to `new_len` bytes by preallocation.
pub(crate) fn on_allocate(fd: RawFd, new_len: u64) -> io::Result<()> {
    let Some((d, path)) = domain_of(fd) else {
        return Ok(());
    };
    let cur = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let grow = new_len.saturating_sub(cur);
    let mut inner = d.inner.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(left) = inner.space_left_bytes {
        if grow > left {
            inner.enospc_count += 1;
            return Err(enospc());
        }
        inner.space_left_bytes = Some(left - grow);
    }
    Ok(())
}

/// Called just before an fdatasync (or a syncfs through) `fd`: fails it with the domain's
/// sync errno, if one is set.
pub(crate) fn before_sync(fd: RawFd) -> io::Result<()> {
    let Some((d, path)) = domain_of(fd) else {
        return Ok(());
    };
    let mut inner = d.inner.lock().unwrap_or_else(|p| p.into_inner());
    match inner.sync_errno {
        Some(errno) => {
            *inner.sync_failures.entry(path).or_default() += 1;
            Err(io::Error::from_raw_os_error(errno))
        }
        None => Ok(()),
    }
}

/// Taken just before an fdatasync of `fd`: the writes it covers.
pub(crate) fn sync_mark(fd: RawFd) -> u64 {
    if !ACTIVE.load(Ordering::Relaxed) {
        return 0;
    }
    let _ = fd;
    NEXT_WRITE_SEQ.load(Ordering::Relaxed)
}

/// Called after an fdatasync of `fd` that started at `mark` succeeded.
pub(crate) fn synced(fd: RawFd, mark: u64) {
    let Some((d, path)) = domain_of(fd) else {
        return;
    };
    let mut inner = d.inner.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ranges) = inner.unsynced.get_mut(&path) {
        ranges.retain(|&(seq, _, _)| seq >= mark);
        if ranges.is_empty() {
            inner.unsynced.remove(&path);
        }
    }
}

/// Whether writes to `path` must take the plain pwritev + fdatasync path (so that this
/// layer sees them) rather than io_uring.
pub(crate) fn intercepts(path: &Path) -> bool {
    ACTIVE.load(Ordering::Relaxed) && domains().iter().any(|d| path.starts_with(&d.root))
}

/// Faults for the store files under one directory; unregistered on drop.
pub struct FaultDomain {
    state: Arc<DomainState>,
}

/// A power-cut image of a domain's directory.
pub struct PowerCut {
    /// Holds the image until the cut is restored or dropped.
    image: tempfile_dir::TempDir,
    root: PathBuf,
    /// Bytes of the image that differ from the live files at the cut.
    pub destroyed_bytes: u64,
    /// Unsynced ranges that were destroyed, as (file, offset, length).
    pub destroyed_ranges: Vec<(PathBuf, u64, u64)>,
}

impl FaultDomain {
    /// Starts injecting faults into files under `root` (which must exist).
    pub fn new(root: &Path) -> io::Result<FaultDomain> {
        let root = root.canonicalize()?;
        let state = Arc::new(DomainState {
            root,
            inner: Mutex::new(DomainInner::default()),
        });
        let mut all = domains();
        all.push(state.clone());
        ACTIVE.store(true, Ordering::Relaxed);
        Ok(FaultDomain { state })
    }

    fn inner(&self) -> MutexGuard<'_, DomainInner> {
        self.state.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, writes and preallocations beyond `bytes` more fail with ENOSPC;
    /// `None` gives the space back.
    pub fn set_space_left_bytes(&self, bytes: Option<u64>) {
        self.inner().space_left_bytes = bytes;
    }

    /// From now on every fdatasync and syncfs of a file under the root fails with
    /// `errno` (e.g. `libc::EIO`); `None` lets them succeed again.
    pub fn set_sync_errno(&self, errno: Option<i32>) {
        self.inner().sync_errno = errno;
    }

    /// Failed sync attempts per file, most first: a store that never retries a failed
    /// fdatasync shows at most one per file.
    pub fn sync_failures(&self) -> Vec<(PathBuf, u64)> {
        let mut all: Vec<_> = self
            .inner()
            .sync_failures
            .iter()
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all
    }

    /// How many writes or preallocations were refused with ENOSPC.
    pub fn enospc_count(&self) -> u64 {
        self.inner().enospc_count
    }

    /// Bytes written under the root and not yet covered by an fdatasync.
    pub fn unsynced_bytes(&self) -> u64 {
        self.inner()
            .unsynced
            .values()
            .flatten()
            .map(|&(_, _, len)| len)
            .sum()
    }

    /// Copies the directory as the disk would hold it if power failed now: every range
    /// written since its file's last fdatasync is zeroed, filled with garbage or torn
    /// (a random prefix kept, the rest garbage), chosen from `seed`. Writes and syncs
    /// under the root wait while the copy is taken. The live files are not touched; stop
    /// the stores, then [`PowerCut::restore`].
    ///
    /// `at_cut` runs at the instant of the cut, before the copy, while no write or sync
    /// under the root can complete: what clients heard before it is all they can know.
    pub fn power_cut(&self, seed: u64, at_cut: impl FnOnce()) -> io::Result<PowerCut> {
        let image = tempfile_dir::TempDir::new()?;
        let inner = self.inner();
        at_cut();
        copy_tree(&self.state.root, image.path())?;
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut destroyed_bytes = 0;
        let mut destroyed_ranges = Vec::new();
        for (path, ranges) in &inner.unsynced {
            let Ok(rel) = path.strip_prefix(&self.state.root) else {
                continue;
            };
            let copy = image.path().join(rel);
            let Ok(mut bytes) = std::fs::read(&copy) else {
                continue;
            };
            let before = bytes.clone();
            for &(_, offset, len) in ranges {
                let start = (offset as usize).min(bytes.len());
                let end = ((offset + len) as usize).min(bytes.len());
                let keep = match rng.u8(0..3) {
                    0 => 0,
                    1 => 0,
                    _ => rng.usize(0..=(end - start)),
                };
                let zeros = rng.bool();
                for b in &mut bytes[start + keep..end] {
                    *b = if zeros { 0 } else { rng.u8(..) };
                }
                destroyed_ranges.push((path.clone(), offset, len));
            }
            destroyed_bytes += bytes
                .iter()
                .zip(before.iter())
                .filter(|(a, b)| a != b)
                .count() as u64;
            std::fs::write(&copy, &bytes)?;
        }
        drop(inner);
        Ok(PowerCut {
            image,
            root: self.state.root.clone(),
            destroyed_bytes,
            destroyed_ranges,
        })
    }
}

impl PowerCut {
    /// Replaces the domain's directory with the image. Call with every store under it
    /// closed.
    pub fn restore(self) -> io::Result<()> {
        for item in std::fs::read_dir(&self.root)? {
            let path = item?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        copy_tree(self.image.path(), &self.root)
    }
}

impl Drop for FaultDomain {
    fn drop(&mut self) {
        let mut all = domains();
        all.retain(|d| !Arc::ptr_eq(d, &self.state));
        if all.is_empty() {
            ACTIVE.store(false, Ordering::Relaxed);
        }
    }
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for item in std::fs::read_dir(from)? {
        let item = item?;
        let target = to.join(item.file_name());
        if item.file_type()?.is_dir() {
            copy_tree(&item.path(), &target)?;
        } else {
            std::fs::copy(item.path(), &target)?;
        }
    }
    Ok(())
}

/// A scratch directory removed on drop (the crate has no tempfile dependency outside
/// its tests).
mod tempfile_dir {
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(0);

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> io::Result<TempDir> {
            let path = std::env::temp_dir().join(format!(
                "rmqraft-power-cut-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path)?;
            Ok(TempDir(path))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
