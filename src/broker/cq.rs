//! Consume queues: per (topic, queue id), RocketMQ's 20-byte units (commitlog offset i64,
//! size i32, tags code i64, big-endian) in files of 300,000 units named by their first
//! byte offset in 20 digits, under `<broker dir>/consumequeue/<topic>/<queueId>/`.
//! Writes go to the page cache; `sync` makes them durable before a checkpoint names
//! their count.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes per unit (RocketMQ's CQ_STORE_UNIT_SIZE).
pub const UNIT_SIZE: u64 = 20;
/// Units per file (RocketMQ's default mappedFileSizeConsumeQueue / 20).
pub const UNITS_PER_FILE: u64 = 300_000;

/// One consume queue unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub commitlog_offset: i64,
    pub size: i32,
    pub tags_code: i64,
}

impl Unit {
    pub fn encode(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.commitlog_offset.to_be_bytes());
        b[8..12].copy_from_slice(&self.size.to_be_bytes());
        b[12..].copy_from_slice(&self.tags_code.to_be_bytes());
        b
    }
    pub fn decode(b: &[u8]) -> Unit {
        Unit {
            commitlog_offset: i64::from_be_bytes(b[..8].try_into().expect("8")),
            size: i32::from_be_bytes(b[8..12].try_into().expect("4")),
            tags_code: i64::from_be_bytes(b[12..20].try_into().expect("8")),
        }
    }
}

/// One queue's files. Units `min..count` are held; files holding only units below
/// `min` (gone with retention) are deleted.
pub struct QueueFile {
    dir: PathBuf,
    /// By file number; `None` for deleted (or never written) files below `min`.
    files: Vec<Option<File>>,
    /// The first unit still held (the queue's min offset).
    pub min: u64,
    /// Units written (the queue's max offset).
    pub count: u64,
    /// Files written since the last sync.
    dirty: bool,
    /// The last units pushed, not yet written (`count - pending units .. count`), all
    /// in one file.
    pending: Vec<u8>,
}

/// Units buffered before they are written.
const PENDING_UNITS: usize = 4096;

fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::io(what, e)
}

impl QueueFile {
    /// Opens a queue keeping exactly units `min..count` (longer files are cut back);
    /// `Ok(None)` when its files hold fewer (they must be rebuilt).
    pub fn open(dir: &Path, min: u64, count: u64) -> Result<Option<QueueFile>> {
        if min > count {
            return Ok(None);
        }
        std::fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
        let mut q = QueueFile {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            min,
            count,
            dirty: false,
            pending: Vec::new(),
        };
        let first = min / UNITS_PER_FILE;
        let nfiles = count.div_ceil(UNITS_PER_FILE).max(first + 1);
        for i in 0..first {
            let _ = std::fs::remove_file(q.path(i));
            q.files.push(None);
        }
        for i in first..nfiles {
            let path = q.path(i);
            if !path.exists() && count > min {
                return Ok(None);
            }
            let f = q.open_file(i)?;
            let want = if count <= i * UNITS_PER_FILE {
                0
            } else {
                (count - i * UNITS_PER_FILE).min(UNITS_PER_FILE) * UNIT_SIZE
            };
            let len = f
                .metadata()
                .map_err(|e| io(format!("stat {}", path.display()), e))?
                .len();
            let held_from = if i == first {
                (min % UNITS_PER_FILE) * UNIT_SIZE
            } else {
                0
            };
            if len < want && want > held_from {
                return Ok(None);
            }
            if len > want {
                f.set_len(want)
                    .map_err(|e| io(format!("truncate {}", path.display()), e))?;
            }
            q.files.push(Some(f));
        }
        // Files past the last one the checkpoint names hold nothing it covers.
        let mut i = nfiles;
        while q.path(i).exists() {
            let _ = std::fs::remove_file(q.path(i));
            i += 1;
        }
        Ok(Some(q))
    }

    /// An empty queue whose next unit is `start` (a queue rebuilt from a log whose
    /// beginning retention removed).
    pub fn restart_at(&mut self, start: u64) -> Result<()> {
        self.pending.clear();
        for f in self.files.iter_mut() {
            *f = None;
        }
        let mut i = 0;
        while self.path(i).exists() || i < start / UNITS_PER_FILE {
            let _ = std::fs::remove_file(self.path(i));
            i += 1;
        }
        self.min = start;
        self.count = start;
        self.dirty = true;
        Ok(())
    }

    fn path(&self, i: u64) -> PathBuf {
        self.dir
            .join(format!("{:020}", i * UNITS_PER_FILE * UNIT_SIZE))
    }

    fn open_file(&self, i: u64) -> Result<File> {
        let path = self.path(i);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(format!("open {}", path.display()), e))
    }

    /// Appends a unit (written with the next [`QueueFile::flush`], a file boundary or
    /// a full buffer).
    pub fn push(&mut self, unit: Unit) -> Result<()> {
        if !self.pending.is_empty() && self.count.is_multiple_of(UNITS_PER_FILE) {
            self.flush()?;
        }
        self.pending.extend_from_slice(&unit.encode());
        self.count += 1;
        if self.pending.len() >= PENDING_UNITS * UNIT_SIZE as usize {
            self.flush()?;
        }
        Ok(())
    }

    fn pending_units(&self) -> u64 {
        self.pending.len() as u64 / UNIT_SIZE
    }

    /// Writes the buffered units (to the page cache).
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let first = self.count - self.pending_units();
        let file_no = (first / UNITS_PER_FILE) as usize;
        while self.files.len() <= file_no {
            self.files.push(None);
        }
        if self.files[file_no].is_none() {
            let f = self.open_file(file_no as u64)?;
            if first.is_multiple_of(UNITS_PER_FILE) {
                f.set_len(0)
                    .map_err(|e| io(format!("truncate {}", self.dir.display()), e))?;
            }
            self.files[file_no] = Some(f);
        }
        let at = (first % UNITS_PER_FILE) * UNIT_SIZE;
        self.files[file_no]
            .as_ref()
            .expect("opened above")
            .write_all_at(&self.pending, at)
            .map_err(|e| io(format!("write consume queue {}", self.dir.display()), e))?;
        self.pending.clear();
        self.dirty = true;
        Ok(())
    }

    /// Units `from..from+n` (clipped to `min..count`).
    pub fn read(&self, from: u64, n: u64) -> Result<Vec<Unit>> {
        let from = from.max(self.min);
        let end = from.saturating_add(n).min(self.count);
        let mut out = Vec::with_capacity(end.saturating_sub(from) as usize);
        let mut at = from;
        let on_disk = self.count - self.pending_units();
        while at < end.min(on_disk) {
            let file_no = at / UNITS_PER_FILE;
            let in_file = (UNITS_PER_FILE - at % UNITS_PER_FILE).min(end.min(on_disk) - at);
            let mut buf = vec![0u8; (in_file * UNIT_SIZE) as usize];
            let Some(f) = self.files.get(file_no as usize).and_then(Option::as_ref) else {
                return Err(Error::corrupt(format!(
                    "consume queue {}: no file for unit {at}",
                    self.dir.display()
                )));
            };
            f.read_exact_at(&mut buf, (at % UNITS_PER_FILE) * UNIT_SIZE)
                .map_err(|e| io(format!("read consume queue {}", self.dir.display()), e))?;
            out.extend(buf.chunks_exact(20).map(Unit::decode));
            at += in_file;
        }
        while at < end {
            let i = ((at - on_disk) * UNIT_SIZE) as usize;
            out.push(Unit::decode(&self.pending[i..i + UNIT_SIZE as usize]));
            at += 1;
        }
        Ok(out)
    }

    /// Retention removed every message below commitlog offset `first_phy`: moves `min`
    /// to the first unit at or above it (units are in commitlog order). Returns the new
    /// min; [`QueueFile::remove_files_below_min`] deletes what it leaves behind.
    pub fn trim(&mut self, first_phy: u64) -> Result<u64> {
        let (mut lo, mut hi) = (self.min, self.count);
        // The first unit whose commitlog offset is >= first_phy, by bisection.
        for _ in 0..64 {
            if lo >= hi {
                break;
            }
            let mid = lo + (hi - lo) / 2;
            let u = self.read(mid, 1)?;
            if u.first()
                .is_some_and(|u| (u.commitlog_offset as u64) < first_phy)
            {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo <= self.min {
            return Ok(self.min);
        }
        self.min = lo;
        Ok(self.min)
    }

    /// Deletes the files holding only units below `min` (once a checkpoint names the
    /// new min: a crash in between finds the files it names).
    pub fn remove_files_below_min(&mut self) {
        // Keep the file the next unit goes to, even when every unit in it is gone.
        let keep_from = (self.min / UNITS_PER_FILE).min(self.count / UNITS_PER_FILE);
        for i in 0..keep_from as usize {
            if self.files.get_mut(i).and_then(Option::take).is_some() {
                let path = self.path(i as u64);
                if let Err(e) = std::fs::remove_file(&path) {
                    log::warn!("consume queue: remove {}: {e}", path.display());
                }
            }
        }
    }

    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        if !self.dirty {
            return Ok(());
        }
        for f in self.files.iter().flatten() {
            f.sync_data()
                .map_err(|e| io(format!("sync consume queue {}", self.dir.display()), e))?;
        }
        self.dirty = false;
        Ok(())
    }

    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Directory of one queue.
pub fn queue_dir(root: &Path, topic: &str, queue_id: i32) -> PathBuf {
    root.join("consumequeue")
        .join(topic)
        .join(queue_id.to_string())
}
