//! Small file-system helpers: locking, preallocation, positioned I/O, durable replace.

use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Takes `flock(LOCK_EX | LOCK_NB)` on `path`; the lock lives as long as the file.
pub fn lock_file(path: &Path, dir: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(Error::new(
                ErrorKind::Exists,
                format!(
                    "store {} is already open (its lock file is held)",
                    dir.display()
                ),
            ));
        }
        return Err(Error::io(format!("lock {}", path.display()), err));
    }
    Ok(file)
}

/// Reserves `len` bytes for `file` so later writes do not allocate blocks one by one.
pub fn preallocate(file: &File, len: u64, path: &Path) -> Result<()> {
    super::testing::on_allocate(file.as_raw_fd(), len).map_err(|e| {
        Error::io(
            format!("preallocate {} bytes for {}", len, path.display()),
            e,
        )
    })?;
    // SAFETY: fallocate on a file descriptor we own.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // A file system without fallocate: a sparse file of the right length still works.
        return file
            .set_len(len)
            .map_err(|e| Error::io(format!("extend {}", path.display()), e));
    }
    Err(Error::io(
        format!("preallocate {} bytes for {}", len, path.display()),
        err,
    ))
}

/// Makes `[offset, offset + len)` of `file` read as zeros.
pub fn zero_range(file: &File, offset: u64, len: u64, path: &Path) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: fallocate on a file descriptor we own.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let zeros = vec![0u8; 1 << 20];
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let n = ((end - at) as usize).min(zeros.len());
        pwrite_all(file, &zeros[..n], at)
            .map_err(|e| Error::io(format!("zero {}", path.display()), e))?;
        at += n as u64;
    }
    Ok(())
}

pub fn pwrite_all(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    super::testing::on_write(file.as_raw_fd(), offset, buf.len() as u64)?;
    file.write_all_at(buf, offset)
}

/// `file.sync_data()`, seen by the fault-injection layer.
pub fn sync_data(file: &File) -> io::Result<()> {
    let mark = super::testing::sync_mark(file.as_raw_fd());
    super::testing::before_sync(file.as_raw_fd())?;
    file.sync_data()?;
    super::testing::synced(file.as_raw_fd(), mark);
    Ok(())
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

/// Replaces `path` with `bytes` durably: write a temporary file, fsync it, rename it over
/// `path`, fsync the directory.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    {
        let file =
            File::create(&tmp).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        pwrite_all(&file, bytes, 0)
            .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        // A failed fsync here loses nothing: the temporary file is written afresh by the
        // next attempt, and `path` still holds the previous contents.
        let mark = super::testing::sync_mark(file.as_raw_fd());
        super::testing::before_sync(file.as_raw_fd())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
        super::testing::synced(file.as_raw_fd(), mark);
    }
    std::fs::rename(&tmp, &path)
        .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), path.display()), e))?;
    fsync_dir(dir)
}

pub fn open_rw(path: &Path, create: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))
}

pub fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path)
        .map_err(|e| Error::io(format!("create directory {}", path.display()), e))
}
