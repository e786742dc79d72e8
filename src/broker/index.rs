//! The message index: by each KEYS element (per topic) and by UNIQ_KEY (any topic), on
//! disk in RocketMQ's IndexFile layout (../shared/reference/rocketmq-store-format.md
//! 1.6), big-endian, under `<broker dir>/index/<20-digit file number>`:
//!
//! - a 40-byte header: begin and end store timestamp (ms), begin and end commitlog
//!   offset, slots in use, entry count + 1 (RocketMQ's indexCount starts at 1);
//! - `slots` 4-byte hash slots: the newest entry number of that bucket, 0 for none;
//! - `capacity` + 1 20-byte entries (entry 0 unused): key hash (u32), commitlog offset
//!   (i64), seconds since the begin timestamp (i32), the previous entry of the same slot
//!   (i32, 0 at the end of the chain).
//!
//! The key hash is [`fxhash::key_hash`] of (kind, topic, key) — kind 0 a KEYS element
//! under its topic, kind 1 a UNIQ_KEY with no topic — not Java's `String.hashCode`, so
//! RocketMQ's tools would not find our keys; the layout is theirs. A hash names
//! candidates only: every caller reads the message and checks the key.
//!
//! Memory: the open (last) file's slot table (4 bytes × slots) and the entries not yet
//! written (at most [`PENDING_MAX`] bytes). Nothing per message: each key costs 20 bytes
//! on disk. A full file is sealed (its slots written, fsynced) and read with `pread`
//! afterwards. The checkpoint names the files and their entry counts; on open the open
//! file's slots are rebuilt from its entries (at most 20 bytes × capacity read), never
//! from the log. Files whose newest message precedes the first retained entry are deleted
//! with retention ([`KeyIndex::trim`]).

use super::fxhash::key_hash;
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const KIND_KEY: u8 = 0;
pub const KIND_UNIQ: u8 = 1;

const HEADER: u64 = 40;
const ENTRY: u64 = 20;
/// Entries buffered before they are written (without fsync) to the open file.
pub const PENDING_MAX: usize = 1 << 20;

/// Where a key points: a message's commitlog offset and store time (to the second
/// within its file: callers that need it exactly read the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub commitlog_offset: u64,
    pub store_timestamp: i64,
}

/// One index file as the checkpoint names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexMeta {
    /// File number: the file is `index/<number, 20 digits>`.
    pub number: u64,
    pub slots: u32,
    pub capacity: u32,
    /// Entries used (1..=count); `count == capacity`: sealed.
    pub count: u32,
    pub begin_ts: i64,
    pub end_ts: i64,
    pub begin_phy: u64,
    pub end_phy: u64,
}

impl IndexMeta {
    fn file_len(&self) -> u64 {
        HEADER + u64::from(self.slots) * 4 + (u64::from(self.capacity) + 1) * ENTRY
    }
    fn entry_at(&self, k: u32) -> u64 {
        HEADER + u64::from(self.slots) * 4 + u64::from(k) * ENTRY
    }
    fn sealed(&self) -> bool {
        self.count >= self.capacity
    }
}

struct IndexFile {
    meta: IndexMeta,
    path: PathBuf,
    file: File,
    /// Entries on disk (1..=written).
    written: u32,
    /// Entries written+1..=count, encoded.
    pending: Vec<u8>,
    /// The open file's slots; `None` once sealed.
    slots: Option<Vec<u32>>,
    slots_used: u32,
    /// Written since the last fsync.
    dirty: bool,
}

#[derive(Clone, Copy)]
struct Entry {
    hash: u32,
    phy: u64,
    secs: i32,
    prev: u32,
}

fn decode_entry(b: &[u8]) -> Entry {
    Entry {
        hash: u32::from_be_bytes(b[0..4].try_into().expect("4")),
        phy: u64::from_be_bytes(b[4..12].try_into().expect("8")),
        secs: i32::from_be_bytes(b[12..16].try_into().expect("4")),
        prev: u32::from_be_bytes(b[16..20].try_into().expect("4")),
    }
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::io(what, e)
}

impl IndexFile {
    fn read_entry(&self, k: u32) -> Result<Entry> {
        if k > self.written {
            let at = (k - self.written - 1) as usize * ENTRY as usize;
            return Ok(decode_entry(&self.pending[at..at + ENTRY as usize]));
        }
        let mut b = [0u8; ENTRY as usize];
        self.file
            .read_exact_at(&mut b, self.meta.entry_at(k))
            .map_err(|e| io(format!("read {}", self.path.display()), e))?;
        Ok(decode_entry(&b))
    }

    fn slot(&self, s: u32) -> Result<u32> {
        if let Some(slots) = &self.slots {
            return Ok(slots[s as usize]);
        }
        let mut b = [0u8; 4];
        self.file
            .read_exact_at(&mut b, HEADER + u64::from(s) * 4)
            .map_err(|e| io(format!("read {}", self.path.display()), e))?;
        Ok(u32::from_be_bytes(b))
    }

    fn header(&self) -> [u8; HEADER as usize] {
        let m = &self.meta;
        let mut b = [0u8; HEADER as usize];
        b[0..8].copy_from_slice(&m.begin_ts.to_be_bytes());
        b[8..16].copy_from_slice(&m.end_ts.to_be_bytes());
        b[16..24].copy_from_slice(&m.begin_phy.to_be_bytes());
        b[24..32].copy_from_slice(&m.end_phy.to_be_bytes());
        b[32..36].copy_from_slice(&self.slots_used.to_be_bytes());
        b[36..40].copy_from_slice(&(m.count + 1).to_be_bytes());
        b
    }

    /// Writes buffered entries and the header (no fsync).
    fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let at = self.meta.entry_at(self.written + 1);
        self.file
            .write_all_at(&self.pending, at)
            .and_then(|_| self.file.write_all_at(&self.header(), 0))
            .map_err(|e| io(format!("write {}", self.path.display()), e))?;
        self.written = self.meta.count;
        self.pending.clear();
        self.dirty = true;
        Ok(())
    }

    fn fsync(&mut self) -> Result<()> {
        if self.dirty {
            self.file
                .sync_data()
                .map_err(|e| io(format!("sync {}", self.path.display()), e))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Writes everything, the slot table included, and makes the file durable.
    fn seal(&mut self) -> Result<()> {
        self.write_pending()?;
        if let Some(slots) = self.slots.take() {
            let mut b = Vec::with_capacity(slots.len() * 4);
            for s in &slots {
                b.extend_from_slice(&s.to_be_bytes());
            }
            self.file
                .write_all_at(&b, HEADER)
                .and_then(|_| self.file.write_all_at(&self.header(), 0))
                .map_err(|e| io(format!("write {}", self.path.display()), e))?;
            self.dirty = true;
        }
        self.fsync()
    }
}

pub struct KeyIndex {
    dir: PathBuf,
    /// Geometry of new files.
    slots: u32,
    capacity: u32,
    /// Oldest first; only the last may be open (not sealed).
    files: Vec<IndexFile>,
    /// Hits below this commitlog offset went with their segments.
    min_phy: u64,
    /// Files trimmed away, deleted once a checkpoint no longer names them.
    doomed: Vec<PathBuf>,
}

fn file_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}"))
}

impl KeyIndex {
    /// An empty index in `dir` (which is emptied).
    pub fn create(dir: &Path, slots: u32, capacity: u32) -> Result<KeyIndex> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
        Ok(KeyIndex {
            dir: dir.to_path_buf(),
            slots,
            capacity,
            files: Vec::new(),
            min_phy: 0,
            doomed: Vec::new(),
        })
    }

    /// Reopens the files a checkpoint names (entries beyond their counts are dropped;
    /// files it does not name are deleted); `Ok(None)` when one is missing or short (the
    /// index must be rebuilt).
    pub fn open(
        dir: &Path,
        slots: u32,
        capacity: u32,
        metas: &[IndexMeta],
        min_phy: u64,
    ) -> Result<Option<KeyIndex>> {
        std::fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
        let mut idx = KeyIndex {
            dir: dir.to_path_buf(),
            slots,
            capacity,
            files: Vec::new(),
            min_phy,
            doomed: Vec::new(),
        };
        for (i, m) in metas.iter().enumerate() {
            let last = i + 1 == metas.len();
            if (!last && !m.sealed()) || m.slots == 0 || m.count > m.capacity {
                return Ok(None);
            }
            let path = file_path(dir, m.number);
            let file = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io(format!("open {}", path.display()), e)),
            };
            let len = file
                .metadata()
                .map_err(|e| io(format!("stat {}", path.display()), e))?
                .len();
            if len != m.file_len() {
                return Ok(None);
            }
            let mut f = IndexFile {
                meta: *m,
                path,
                file,
                written: m.count,
                pending: Vec::new(),
                slots: None,
                slots_used: 0,
                dirty: false,
            };
            if !m.sealed() {
                f.slots = Some(rebuild_slots(&f)?);
                f.slots_used = f
                    .slots
                    .as_ref()
                    .map_or(0, |s| s.iter().filter(|&&v| v != 0).count() as u32);
            }
            idx.files.push(f);
        }
        // Files past the checkpoint's hold nothing it covers.
        let named: Vec<PathBuf> = idx.files.iter().map(|f| f.path.clone()).collect();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if !named.contains(&e.path()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(Some(idx))
    }

    fn open_new_file(&mut self) -> Result<()> {
        let (number, begin_ts, begin_phy) = match self.files.last() {
            Some(f) => (f.meta.number + 1, f.meta.end_ts, f.meta.end_phy),
            None => (0, 0, 0),
        };
        let meta = IndexMeta {
            number,
            slots: self.slots,
            capacity: self.capacity,
            count: 0,
            begin_ts,
            end_ts: begin_ts,
            begin_phy,
            end_phy: begin_phy,
        };
        let path = file_path(&self.dir, number);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io(format!("create {}", path.display()), e))?;
        // Sparse: only the header, the entries and (at seal) the slots are written.
        file.set_len(meta.file_len())
            .map_err(|e| io(format!("size {}", path.display()), e))?;
        self.files.push(IndexFile {
            meta,
            path,
            file,
            written: 0,
            pending: Vec::new(),
            slots: Some(vec![0; self.slots as usize]),
            slots_used: 0,
            dirty: true,
        });
        Ok(())
    }

    /// Indexes one key of a message: kind [`KIND_KEY`] with its topic, [`KIND_UNIQ`]
    /// with `topic` empty.
    pub fn add(&mut self, kind: u8, topic: &str, key: &str, hit: Hit) -> Result<()> {
        if self.files.last().is_none_or(|f| f.meta.sealed()) {
            self.open_new_file()?;
        }
        let f = self.files.last_mut().expect("an open index file");
        let hash = key_hash(kind, topic, key);
        let slots = f.slots.as_mut().expect("the open file has slots");
        let s = (hash % f.meta.slots) as usize;
        let prev = slots[s];
        if prev == 0 {
            f.slots_used += 1;
        }
        let m = &mut f.meta;
        if m.count == 0 {
            m.begin_ts = hit.store_timestamp;
            m.begin_phy = hit.commitlog_offset;
        }
        m.count += 1;
        slots[s] = m.count;
        m.end_ts = m.end_ts.max(hit.store_timestamp);
        m.end_phy = m.end_phy.max(hit.commitlog_offset);
        let secs = ((hit.store_timestamp - m.begin_ts) / 1000).clamp(0, i32::MAX as i64) as i32;
        f.pending.extend_from_slice(&hash.to_be_bytes());
        f.pending
            .extend_from_slice(&hit.commitlog_offset.to_be_bytes());
        f.pending.extend_from_slice(&secs.to_be_bytes());
        f.pending.extend_from_slice(&prev.to_be_bytes());
        if f.meta.sealed() {
            f.seal()?;
        } else if f.pending.len() >= PENDING_MAX {
            f.write_pending()?;
        }
        Ok(())
    }

    /// Candidates for a key, newest first: `f` gets each hit whose hash matches and
    /// returns false to stop. Hits below the first retained message are left out, and
    /// files whose newest message was stored before `since_ms` are not read.
    pub fn lookup(
        &self,
        kind: u8,
        topic: &str,
        key: &str,
        since_ms: i64,
        mut f: impl FnMut(Hit) -> Result<bool>,
    ) -> Result<()> {
        let hash = key_hash(kind, topic, key);
        for file in self.files.iter().rev() {
            if file.meta.end_phy < self.min_phy
                || file.meta.count == 0
                || file.meta.end_ts < since_ms
            {
                continue;
            }
            let mut k = file.slot(hash % file.meta.slots)?;
            // Each entry's prev is older than it: a chain is at most `count` long.
            let mut steps = 0u32;
            while k != 0 && k <= file.meta.count && steps < file.meta.count {
                steps += 1;
                let e = file.read_entry(k)?;
                if e.prev >= k {
                    break;
                }
                if e.hash == hash && e.phy >= self.min_phy {
                    let hit = Hit {
                        commitlog_offset: e.phy,
                        store_timestamp: file.meta.begin_ts + i64::from(e.secs) * 1000,
                    };
                    if !f(hit)? {
                        return Ok(());
                    }
                }
                k = e.prev;
            }
        }
        Ok(())
    }

    /// Every hit of a key (see [`KeyIndex::lookup`]) in files holding messages stored
    /// at or after `since_ms`, newest first.
    pub fn hits(&self, kind: u8, topic: &str, key: &str, since_ms: i64) -> Result<Vec<Hit>> {
        let mut out = Vec::new();
        self.lookup(kind, topic, key, since_ms, |h| {
            out.push(h);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Writes what is buffered and makes the files durable; returns what a checkpoint
    /// names.
    pub fn sync(&mut self) -> Result<Vec<IndexMeta>> {
        for f in &mut self.files {
            f.write_pending()?;
            f.fsync()?;
        }
        Ok(self.metas())
    }

    pub fn metas(&self) -> Vec<IndexMeta> {
        self.files.iter().map(|f| f.meta).collect()
    }

    pub fn min_phy(&self) -> u64 {
        self.min_phy
    }

    /// Retention removed every message below commitlog offset `first_phy`: such hits are
    /// no longer returned, and sealed files holding only them are dropped (deleted by
    /// [`KeyIndex::remove_dropped`], once a checkpoint no longer names them).
    pub fn trim(&mut self, first_phy: u64) {
        if first_phy <= self.min_phy {
            return;
        }
        self.min_phy = first_phy;
        while self.files.len() > 1 && self.files[0].meta.end_phy < first_phy {
            let f = self.files.remove(0);
            self.doomed.push(f.path);
        }
    }

    /// Deletes the files [`KeyIndex::trim`] dropped.
    pub fn remove_dropped(&mut self) {
        for path in self.doomed.drain(..) {
            if let Err(e) = std::fs::remove_file(&path) {
                log::warn!("index: remove {}: {e}", path.display());
            }
        }
    }

    /// Index files held (for tests and status).
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

/// The open file's slots from its entries: each entry is the newest of its slot until a
/// later one replaces it.
fn rebuild_slots(f: &IndexFile) -> Result<Vec<u32>> {
    let mut slots = vec![0u32; f.meta.slots as usize];
    const CHUNK: u32 = 1 << 16;
    let mut k = 1u32;
    let mut buf = Vec::new();
    while k <= f.meta.count {
        let n = CHUNK.min(f.meta.count - k + 1);
        buf.resize(n as usize * ENTRY as usize, 0);
        f.file
            .read_exact_at(&mut buf, f.meta.entry_at(k))
            .map_err(|e| io(format!("read {}", f.path.display()), e))?;
        for (i, b) in buf.chunks_exact(ENTRY as usize).enumerate() {
            let e = decode_entry(b);
            slots[(e.hash % f.meta.slots) as usize] = k + i as u32;
        }
        k += n;
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(off: u64) -> Hit {
        Hit {
            commitlog_offset: off,
            store_timestamp: 1_700_000_000_000 + off as i64,
        }
    }

    #[test]
    fn keys_survive_reopen_roll_over_and_trim() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("index");
        let mut idx = KeyIndex::create(&d, 16, 32).unwrap();
        for n in 0..100u64 {
            idx.add(KIND_KEY, "T", &format!("k{}", n % 10), hit(n * 100))
                .unwrap();
            idx.add(KIND_UNIQ, "", &format!("U{n}"), hit(n * 100))
                .unwrap();
        }
        // 200 keys in files of 32: 7 files, the last open.
        assert_eq!(idx.file_count(), 7);
        let k3: Vec<u64> = idx
            .hits(KIND_KEY, "T", "k3", 0)
            .unwrap()
            .iter()
            .map(|h| h.commitlog_offset)
            .collect();
        let want: Vec<u64> = (0..100u64)
            .rev()
            .filter(|n| n % 10 == 3)
            .map(|n| n * 100)
            .collect();
        // Hash collisions may add candidates; every real hit is there, newest first.
        let real: Vec<u64> = k3.iter().copied().filter(|o| want.contains(o)).collect();
        assert_eq!(real, want);
        let metas = idx.sync().unwrap();
        // Entries after the checkpoint are dropped on reopen.
        idx.add(KIND_UNIQ, "", "LATE", hit(99_999)).unwrap();
        idx.sync().unwrap();
        drop(idx);
        let mut idx = KeyIndex::open(&d, 16, 32, &metas, 0).unwrap().unwrap();
        assert!(idx
            .hits(KIND_UNIQ, "", "LATE", 0)
            .unwrap()
            .iter()
            .all(|h| h.commitlog_offset != 99_999));
        assert!(idx
            .hits(KIND_UNIQ, "", "U42", 0)
            .unwrap()
            .iter()
            .any(|h| h.commitlog_offset == 4200));
        // The rebuilt slots of the open file chain new keys after old ones.
        idx.add(KIND_KEY, "T", "k3", hit(20_000)).unwrap();
        let first = idx.hits(KIND_KEY, "T", "k3", 0).unwrap()[0];
        assert_eq!(first.commitlog_offset, 20_000);
        assert!(idx
            .hits(KIND_KEY, "T", "k3", 0)
            .unwrap()
            .iter()
            .any(|h| h.commitlog_offset == 300));
        // Trim: hits below go, whole files below are deleted.
        idx.trim(5_000);
        idx.remove_dropped();
        assert!(idx.file_count() < 7);
        assert!(idx
            .hits(KIND_KEY, "T", "k3", 0)
            .unwrap()
            .iter()
            .all(|h| h.commitlog_offset >= 5_000));
        assert!(idx
            .hits(KIND_UNIQ, "", "U49", 0)
            .unwrap()
            .iter()
            .all(|h| h.commitlog_offset != 4900));
        assert!(idx
            .hits(KIND_UNIQ, "", "U50", 0)
            .unwrap()
            .iter()
            .any(|h| h.commitlog_offset == 5000));
        // Files whose newest message is older than `since` are not read.
        assert!(idx
            .hits(KIND_UNIQ, "", "U50", hit(99_999).store_timestamp + 1)
            .unwrap()
            .is_empty());
        let files = std::fs::read_dir(&d).unwrap().count();
        assert_eq!(files, idx.file_count());
        // A missing file means a rebuild.
        let metas = idx.sync().unwrap();
        std::fs::remove_file(file_path(&d, metas[0].number)).unwrap();
        assert!(KeyIndex::open(&d, 16, 32, &metas, 5_000).unwrap().is_none());
    }
}
