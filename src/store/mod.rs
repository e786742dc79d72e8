//! Storage of one member: segment files, index files, term/vote, recovery, retention,
//! and the engine-wide flusher. Format: docs/FORMAT.md.
//!
//! CONTRACT (the group layer relies on exactly this):
//! - `LogStore` is used under the group's mutex (`&mut self` for changes).
//! - `append` copies the entry into memory and returns at once; the entry is readable at
//!   once; the engine's `Flusher` writes and fdatasyncs it later (group commit across
//!   every store of the engine) and then calls `on_flushed(flushed_index)` from the
//!   flusher thread. SYNC_FLUSH: flushing starts as soon as data is ready. ASYNC_FLUSH:
//!   data is flushed within `async_flush_interval_ms`.
//! - `flushed_index() <= last_index()` always; after `truncate_suffix(i)`,
//!   `flushed_index() <= i - 1`.
//! - `on_flushed(i)` is a wake-up: `i` is the store's flushed index read just before the
//!   call; a truncation racing with it can make `i` stale, so `flushed_index()` (read
//!   under the mutex) is the authority. The flusher holds no store lock while calling it.
//! - `sync` and `close` flush on the calling thread and never wait for the flusher thread
//!   (which may be blocked on the member's mutex in `on_flushed`); they do not call
//!   `on_flushed`. No callback starts after `close` (or drop) returns; one already
//!   running may still be finishing.
//! - `save_hard_state` is durable (fsync of the file and its directory) when it returns.

mod flusher;
mod foreign;
mod format;
/// Bytes of the fixed header before every entry body (the body sits at `pos + 48`).
pub use format::ENTRY_HEADER_SIZE;
mod fsutil;
mod metas;
mod recovery;
mod spare;
#[doc(hidden)]
pub mod testing;

pub use flusher::Flusher;

use crate::error::{Error, ErrorKind, Result};
use crate::types::{Entry, EntryMeta};
use bytes::Bytes;
use flusher::{FlusherInner, Pending, Segment, StoreShared};
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::FlushDiskType;

/// Called on the flusher thread with the new flushed index of one store.
pub type FlushedCallback = Arc<dyn Fn(u64) + Send + Sync>;

/// Operator recovery for a member whose term file is corrupt or missing (its open fails
/// with `Corrupt`): writes a term file with `term` and no vote, keeping the log. Run it
/// only with the member stopped (the store's lock is taken, so an open store gives
/// `Exists`), and only with a `term` above every term the group has reached (for example
/// the highest term any live member reports, plus one): the lost vote may have been cast
/// in any term up to that, and a member must never vote twice in one term. Refuses
/// (`InvalidArgument`) while the existing term file is valid, and (`Config` or `Corrupt`,
/// as the open does, nothing changed) when `dir` is not rmqraft's store: a DLedger store
/// has no rmqraft term file to lose, and the open that follows would cut its records.
pub fn rewrite_lost_term_file(dir: &std::path::Path, term: u64) -> Result<()> {
    foreign::check(dir, None)?;
    let _lock = fsutil::lock_file(&dir.join("lock"), dir)?;
    match recovery::read_hard_state(dir) {
        Ok(Some(h)) => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "term file in {} is valid (term {}); not rewriting it",
                    dir.display(),
                    h.term
                ),
            ))
        }
        Ok(None) => {}
        Err(e) if e.kind() == ErrorKind::Corrupt => {}
        Err(e) => return Err(e),
    }
    log::warn!(
        "store {}: term file rewritten by operator recovery: term {term}, no vote",
        dir.display()
    );
    recovery::write_hard_state(
        dir,
        &HardState {
            term,
            voted_for: None,
        },
    )
}

/// Options of one member's store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `<storePathRootDir>/dledger-<selfId>`
    pub dir: PathBuf,
    pub segment_size_bytes: u64,
    pub flush: FlushDiskType,
    pub async_flush_interval_ms: u64,
    pub entry_size_bytes_max: u32,
    /// Zero-fill segment files before use (see [`spare`]).
    pub prewrite_segments: bool,
    /// `storePathCommitLog`: where a classic RocketMQ broker keeps its commitlog when not
    /// in `<storePathRootDir>/commitlog`. An old store there, under the root, or in `dir`
    /// itself refuses the open (docs/FORMAT.md, "Foreign stores").
    pub classic_commitlog_dir: Option<PathBuf>,
}

/// Term and vote, persisted before they are acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    /// Peer id voted for in `term`.
    pub voted_for: Option<String>,
}

/// What recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub hard_state: HardState,
    /// Last commit index checkpointed before the previous close or crash. It may exceed
    /// the recovered last index when recovery cut entries that were durable and committed.
    pub commit_checkpoint: u64,
    /// Entries cut from the tail because they failed their checksum or were torn.
    pub truncated_entries: u64,
    /// A human-readable account of any repair ("segment 000..: bad CRC at index 42, cut 7 entries").
    pub notes: Vec<String>,
}

/// Where one entry sits: log position, term and record size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub pos: u64,
    pub term: u64,
    pub size: u32,
}

/// Encoded records of the newest entries kept in memory so replication reads need no
/// syscall. Entries not yet flushed are never evicted, so the bound is soft by at most
/// one flush interval of appends.
const TAIL_CACHE_BYTES_MAX: usize = 32 << 20;

/// One member's log. Every method runs under the member's (group) mutex.
pub struct LogStore {
    opts: StoreOptions,
    shared: Arc<StoreShared>,
    flusher: Arc<FlusherInner>,
    /// Holds the `flock`; `None` once closed.
    lock: Option<File>,
    hard_state: HardState,
    /// Entries `..=base_index` were removed by retention; `base_term` is the term of
    /// entry `base_index` (0 for index 0).
    base_index: u64,
    base_term: u64,
    /// Entries `base_index + 1..=last_index()`.
    metas: metas::Metas,
    /// Log position right after the last entry: where the next record goes.
    write_pos: u64,
    /// Oldest first; the same list as `Pending::segments`.
    segments: Vec<Arc<Segment>>,
    /// Records of entries `cache_first..=last_index()`.
    cache: VecDeque<Bytes>,
    cache_first: u64,
    cache_bytes: usize,
    /// The next segment file, being written full of zeros in the background.
    spare: spare::Spare,
}

impl LogStore {
    /// Opens (creating if needed) the store, takes its lock file (another open of the
    /// same dir, in this or another process, fails with `ErrorKind::Exists`), and recovers.
    /// A directory rmqraft did not write (DLedger's own format, a classic commitlog, other
    /// files) is refused before anything in it is created or changed: `Config`, or
    /// `Corrupt` for segment bytes rmqraft cannot account for.
    pub fn open(
        opts: StoreOptions,
        flusher: &Flusher,
        on_flushed: FlushedCallback,
    ) -> Result<(LogStore, Recovery)> {
        let header_room = format::ENTRY_HEADER_SIZE as u64;
        if opts.segment_size_bytes < u64::from(opts.entry_size_bytes_max) + header_room
            || opts.segment_size_bytes > u64::from(u32::MAX)
        {
            return Err(Error::config(format!(
                "mappedFileSizeCommitLog: {} must hold an entry of maxEntrySize {} plus its {header_room}-byte header, and be below 4 GiB",
                opts.segment_size_bytes, opts.entry_size_bytes_max
            )));
        }
        if flusher.inner.is_closed() {
            return Err(Error::closed("flusher"));
        }
        foreign::check(&opts.dir, opts.classic_commitlog_dir.as_deref())?;
        fsutil::create_dir(&opts.dir)?;
        let lock = fsutil::lock_file(&opts.dir.join("lock"), &opts.dir)?;
        let r = recovery::recover(&opts)?;
        let last_index = r.base_index + r.metas.len() as u64;
        let shared = Arc::new(StoreShared {
            dir: opts.dir.clone(),
            segment_size_bytes: opts.segment_size_bytes,
            sync_flush: opts.flush == FlushDiskType::SyncFlush,
            async_interval: Duration::from_millis(opts.async_flush_interval_ms.max(1)),
            pending: std::sync::Mutex::new(Pending {
                data: Vec::new(),
                index_first: last_index + 1,
                index_buf: bytes::BytesMut::new(),
                index_written: last_index + 1,
                last_index,
                segments: r.segments.clone(),
                checkpoint: r.checkpoint,
                checkpoint_dirty: false,
                in_flight: false,
                failed: None,
                disk_full_retry_at: None,
                last_flush: Instant::now(),
                last_index_flush: Instant::now(),
            }),
            round_done: std::sync::Condvar::new(),
            flushed_index: std::sync::atomic::AtomicU64::new(last_index),
            checkpoint_file: r.checkpoint_file,
            on_flushed,
            closed: std::sync::atomic::AtomicBool::new(false),
            flush_latency: Default::default(),
        });
        flusher.inner.register(shared.clone());
        let recovery = Recovery {
            hard_state: r.hard_state.clone(),
            // Not clamped to the recovered log: a checkpoint above it says this member
            // lost entries it knew committed, which the group layer must see.
            commit_checkpoint: r.checkpoint.commit_index,
            truncated_entries: r.truncated_entries,
            notes: r.notes,
        };
        if last_index > r.base_index {
            log::info!(
                "store {}: opened entries {}..={} ({} segments)",
                opts.dir.display(),
                r.base_index + 1,
                last_index,
                r.segments.len()
            );
        } else {
            log::info!("store {}: opened an empty store", opts.dir.display());
        }
        let (dir, segment_size, prewrite) = (
            opts.dir.clone(),
            opts.segment_size_bytes,
            opts.prewrite_segments,
        );
        let store = LogStore {
            opts,
            shared,
            flusher: flusher.inner.clone(),
            lock: Some(lock),
            hard_state: r.hard_state,
            base_index: r.base_index,
            base_term: r.base_term,
            metas: metas::Metas::new(r.base_index + 1, r.metas),
            write_pos: r.write_pos,
            segments: r.segments,
            cache: VecDeque::new(),
            cache_first: last_index + 1,
            cache_bytes: 0,
            spare: spare::Spare::new(&dir, segment_size, prewrite),
        };
        let mut store = store;
        store.seal_written();
        Ok((store, recovery))
    }

    /// Moves the entries of a sealed segment (not the last) out of memory once the
    /// flusher has written all its index records: they are read from the index file
    /// from then on (docs/FORMAT.md, "In memory").
    fn seal_written(&mut self) {
        loop {
            let hot_first = self.metas.hot_first();
            let k = self
                .segments
                .partition_point(|s| s.first_index <= hot_first);
            let (Some(seg), Some(next)) = (
                k.checked_sub(1).and_then(|k| self.segments.get(k)),
                self.segments.get(k),
            ) else {
                return;
            };
            if self.shared.lock().index_written < next.first_index {
                return;
            }
            let (seg, next_first) = (Arc::clone(seg), next.first_index);
            if let Err(e) = self.metas.seal(
                seg.start,
                seg.first_index,
                next_first,
                &seg.index,
                &seg.index_path,
            ) {
                let mut p = self.shared.lock();
                log::error!("store {}: {e}; the store stops", self.opts.dir.display());
                p.failed.get_or_insert(e);
                p.disk_full_retry_at = None;
                return;
            }
            if self.metas.hot_first() == hot_first {
                return;
            }
        }
    }

    /// Entries whose place is held in memory, and sealed segments whose entries are
    /// read from their index files instead (memory is bounded by segments, not entries).
    pub fn entries_in_memory(&self) -> (usize, usize) {
        (self.metas.in_memory(), self.metas.sealed_segments())
    }

    /// First retained index; `last_index() + 1` when empty.
    pub fn first_index(&self) -> u64 {
        self.base_index + 1
    }

    /// 0 when empty.
    pub fn last_index(&self) -> u64 {
        self.base_index + self.metas.len()
    }

    pub fn last_term(&self) -> u64 {
        self.metas.last().map_or(self.base_term, |m| m.term)
    }

    fn meta(&self, index: u64) -> Option<Meta> {
        if index <= self.base_index {
            return None;
        }
        self.metas.get(index)
    }

    /// Term of the entry at `index`; `Some(0)` for index 0; for `first_index() - 1` the
    /// term of the last removed entry; `None` when unknown (removed or not yet appended).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.meta(index).map(|m| m.term)
    }

    fn check_open(&self) -> Result<()> {
        if self.lock.is_none() {
            return Err(Error::closed(&format!("store {}", self.opts.dir.display())));
        }
        Ok(())
    }

    /// Creates the segment starting at `start` whose first entry is `first_index`.
    fn create_segment(
        &mut self,
        start: u64,
        first_index: u64,
        prev_term: u64,
    ) -> Result<Arc<Segment>> {
        let name = format::segment_name(start);
        let data_path = self.opts.dir.join("data").join(&name);
        let index_path = self.opts.dir.join("index").join(&name);
        let first_of_new_store = self.segments.is_empty();
        // Recovery removed every segment past the end of the log; a file of this name
        // now that holds anything is not this store's to take over (a rename or an open
        // would write over its bytes).
        if !foreign::holds_no_record(&data_path)? {
            return Err(Error::corrupt(format!(
                "new segment {} already exists and holds data; not writing over a file this \
                 store did not create",
                data_path.display()
            )));
        }
        let data = match self.spare.take(&data_path, first_of_new_store) {
            Some(file) => file,
            None => {
                let data = fsutil::open_rw(&data_path, true)?;
                fsutil::preallocate(&data, self.opts.segment_size_bytes, &data_path)?;
                data
            }
        };
        let index = fsutil::open_rw(&index_path, true)?;
        index
            .set_len(0)
            .map_err(|e| Error::io(format!("truncate {}", index_path.display()), e))?;
        flusher::write_index_header(&index, &index_path, first_index, prev_term)?;
        // The new names must survive a crash before any entry in them is called durable.
        fsutil::fsync_dir(&self.opts.dir.join("data"))?;
        fsutil::fsync_dir(&self.opts.dir.join("index"))?;
        Ok(Arc::new(Segment {
            start,
            first_index,
            data,
            index,
            data_path,
            index_path,
        }))
    }

    /// Flusher rounds that carried this store and their durations.
    pub fn flush_latency(&self) -> crate::metrics::Histogram {
        self.shared.flush_latency.snapshot()
    }

    /// Bytes of the segment files this store holds (each is preallocated to its size).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.len() as u64 * self.shared.segment_size_bytes
    }

    /// Log position the next entry with a body of `body_len` bytes will get: the write
    /// position, or the start of the next segment when the record does not fit in the
    /// current one (a pure function of the entry sizes, the same on every member).
    pub fn next_entry_pos(&self, body_len: usize) -> u64 {
        let seg_size = self.opts.segment_size_bytes;
        let size = (format::ENTRY_HEADER_SIZE + body_len) as u64;
        let pos = self.write_pos;
        let room = seg_size - pos % seg_size;
        if size > room {
            pos + room
        } else {
            pos
        }
    }

    /// The index of the retained entry whose record starts at `pos` or whose body starts
    /// at `pos` (record position + 48); `None` when no retained entry is there.
    pub fn index_at_pos(&self, pos: u64) -> Option<u64> {
        self.metas.index_at_pos(pos)
    }

    /// Appends `entry` (its index must be `last_index() + 1`, its term >= `last_term()`).
    pub fn append(&mut self, entry: &Entry) -> Result<EntryMeta> {
        self.check_open()?;
        if entry.index != self.last_index() + 1 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "append: index {} is not last index {} + 1",
                    entry.index,
                    self.last_index()
                ),
            ));
        }
        if entry.term < self.last_term() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "append: term {} of entry {} is below last term {}",
                    entry.term,
                    entry.index,
                    self.last_term()
                ),
            ));
        }
        if entry.body.len() > self.opts.entry_size_bytes_max as usize {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "append: body of {} bytes exceeds maxEntrySize {}",
                    entry.body.len(),
                    self.opts.entry_size_bytes_max
                ),
            ));
        }
        if let Some(err) = &self.shared.lock().failed {
            return Err(Error::new(
                err.kind(),
                format!("append refused after a failed flush: {}", err.message()),
            ));
        }
        let seg_size = self.opts.segment_size_bytes;
        let size = (format::ENTRY_HEADER_SIZE + entry.body.len()) as u64;
        let pos = self.next_entry_pos(entry.body.len());
        let mut blank = None;
        if pos != self.write_pos {
            blank = Some((
                self.write_pos,
                format::blank_record((pos - self.write_pos) as usize),
            ));
        }
        let mut new_segment = None;
        if pos.is_multiple_of(seg_size) && self.segments.last().is_none_or(|s| s.start < pos) {
            new_segment = Some(self.create_segment(pos, entry.index, self.last_term())?);
        }
        let record = format::encode_entry(entry, pos);
        {
            let mut p = self.shared.lock();
            if let Some(err) = &p.failed {
                return Err(Error::new(
                    err.kind(),
                    format!("append refused after a failed flush: {}", err.message()),
                ));
            }
            if let Some(seg) = &new_segment {
                p.segments.push(seg.clone());
            }
            if let Some(b) = blank {
                p.data.push(b);
            }
            p.data.push((pos, record.clone()));
            debug_assert_eq!(
                p.index_first + (p.index_buf.len() / format::INDEX_RECORD_SIZE) as u64,
                entry.index
            );
            format::put_index_record(
                &mut p.index_buf,
                &format::IndexRecord {
                    pos,
                    term: entry.term,
                    index: entry.index,
                    size: size as u32,
                },
            );
            p.last_index = entry.index;
        }
        if self.shared.sync_flush {
            self.flusher.notify();
        }
        if let Some(seg) = new_segment {
            self.segments.push(seg);
            self.seal_written();
        }
        self.metas.push(Meta {
            pos,
            term: entry.term,
            size: size as u32,
        });
        self.write_pos = pos + size;
        self.cache_bytes += record.len();
        self.cache.push_back(record);
        let flushed = self.shared.flushed_index.load(Ordering::Acquire);
        while self.cache_bytes > TAIL_CACHE_BYTES_MAX && self.cache_first <= flushed {
            let Some(old) = self.cache.pop_front() else {
                break;
            };
            self.cache_bytes -= old.len();
            self.cache_first += 1;
        }
        Ok(EntryMeta {
            index: entry.index,
            term: entry.term,
            pos,
        })
    }

    /// Removes entries `from_index..`. Waits for any write of them in flight.
    pub fn truncate_suffix(&mut self, from_index: u64) -> Result<()> {
        self.check_open()?;
        if from_index > self.last_index() {
            return Ok(());
        }
        if from_index <= self.base_index {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "truncate_suffix: {from_index} is below the first retained index {}",
                    self.first_index()
                ),
            ));
        }
        let keep = (from_index - self.base_index - 1) as usize;
        let new_pos = match keep {
            0 => self.meta(self.base_index + 1).expect("retained").pos,
            _ => {
                let m = self.meta(self.base_index + keep as u64).expect("retained");
                m.pos + u64::from(m.size)
            }
        };
        let old_pos = self.write_pos;
        let seg_size = self.opts.segment_size_bytes;
        let shared = self.shared.clone();
        let mut p = shared.wait_idle(shared.lock());
        // From here until the guard drops the flusher cannot take this store's writes.
        p.data.retain(|(pos, _)| *pos < new_pos);
        if from_index > p.index_first {
            let len = (from_index - p.index_first) as usize * format::INDEX_RECORD_SIZE;
            p.index_buf.truncate(len);
        } else {
            p.index_buf.clear();
            p.index_first = from_index;
        }
        p.last_index = from_index - 1;
        p.index_written = p.index_written.min(from_index);
        shared
            .flushed_index
            .fetch_min(from_index - 1, Ordering::AcqRel);
        self.metas.truncate(keep as u64);
        self.write_pos = new_pos;
        if self.cache_first >= from_index {
            self.cache.clear();
            self.cache_bytes = 0;
            self.cache_first = from_index;
        } else {
            let n = (from_index - self.cache_first) as usize;
            for b in self.cache.drain(n..) {
                self.cache_bytes -= b.len();
            }
        }
        let keep_segments = self
            .segments
            .iter()
            .take_while(|s| s.start <= new_pos)
            .count();
        let removed: Vec<Arc<Segment>> = self.segments.drain(keep_segments..).collect();
        p.segments.truncate(keep_segments);
        let mut result = Ok(());
        if let Some(seg) = self.segments.last() {
            let from_off = new_pos - seg.start;
            let to_off = old_pos.clamp(seg.start, seg.start + seg_size) - seg.start;
            let to_off = if removed.is_empty() { to_off } else { seg_size };
            result = (|| {
                if to_off > from_off {
                    fsutil::zero_range(&seg.data, from_off, to_off - from_off, &seg.data_path)?;
                }
                let records = from_index.saturating_sub(seg.first_index);
                let index_len =
                    format::INDEX_HEADER_SIZE as u64 + records * format::INDEX_RECORD_SIZE as u64;
                let cur = seg
                    .index
                    .metadata()
                    .map_err(|e| Error::io(format!("stat {}", seg.index_path.display()), e))?
                    .len();
                if cur > index_len {
                    seg.index.set_len(index_len).map_err(|e| {
                        Error::io(format!("truncate {}", seg.index_path.display()), e)
                    })?;
                }
                fsutil::sync_data(&seg.data)
                    .map_err(|e| Error::io(format!("fdatasync {}", seg.data_path.display()), e))?;
                fsutil::sync_data(&seg.index)
                    .map_err(|e| Error::io(format!("fdatasync {}", seg.index_path.display()), e))
            })();
        }
        if result.is_ok() && !removed.is_empty() {
            result = (|| {
                for seg in &removed {
                    for path in [&seg.data_path, &seg.index_path] {
                        std::fs::remove_file(path)
                            .map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
                    }
                }
                fsutil::fsync_dir(&self.opts.dir.join("data"))?;
                fsutil::fsync_dir(&self.opts.dir.join("index"))
            })();
        }
        if let Err(e) = &result {
            // The disk may still hold the cut entries: refuse further writes until reopen.
            p.failed = Some(e.clone());
            p.disk_full_retry_at = None;
        }
        drop(p);
        result
    }

    /// Reads one entry, verifying its checksum (`ErrorKind::Corrupt` if it fails,
    /// `ErrorKind::NotFound` outside `first_index()..=last_index()`).
    pub fn read(&self, index: u64) -> Result<(Entry, EntryMeta)> {
        let Some(m) = self.meta(index) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "entry {index} is outside {}..={}",
                    self.first_index(),
                    self.last_index()
                ),
            ));
        };
        if index >= self.cache_first {
            let record = self.cache[(index - self.cache_first) as usize].clone();
            return format::decode_cached_entry(record, index, m.pos);
        }
        let seg =
            StoreShared::segment_for(&self.segments, m.pos).expect("every entry lies in a segment");
        let mut buf = vec![0u8; m.size as usize];
        seg.data
            .read_exact_at(&mut buf, m.pos - seg.start)
            .map_err(|e| {
                Error::io(
                    format!("read entry {index} from {}", seg.data_path.display()),
                    e,
                )
            })?;
        format::decode_entry(Bytes::from(buf), index, m.pos)
    }

    /// The error that failed this store for good (an I/O error of a write or a sync), if
    /// any. A full disk met by a flush is not one: the flusher retries it.
    pub fn failure(&self) -> Option<Error> {
        let p = self.shared.lock();
        match (&p.failed, p.disk_full_retry_at) {
            (Some(err), None) => Some(err.clone()),
            _ => None,
        }
    }

    /// Highest entry durable on disk (data and index fdatasynced).
    pub fn flushed_index(&self) -> u64 {
        self.shared.flushed_index.load(Ordering::Acquire)
    }

    /// Blocks until everything appended so far is durable. The flush runs on the calling
    /// thread (so it never waits for the flusher thread, which may itself be waiting for
    /// the caller's mutex inside `on_flushed`) and does not call `on_flushed`.
    pub fn sync(&self) -> Result<()> {
        self.check_open()?;
        flusher::flush_now(&self.shared)?;
        debug_assert!(self.flushed_index() >= self.last_index());
        Ok(())
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state.clone()
    }

    pub fn save_hard_state(&mut self, state: &HardState) -> Result<()> {
        self.check_open()?;
        if state
            .voted_for
            .as_ref()
            .is_some_and(|v| v.len() > format::VOTE_ID_LEN_MAX)
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "save_hard_state: voted_for is longer than 255 bytes",
            ));
        }
        recovery::write_hard_state(&self.opts.dir, state)?;
        self.hard_state = state.clone();
        Ok(())
    }

    /// Records the commit index (cheaply; durable at the next flush).
    pub fn save_commit_checkpoint(&mut self, commit_index: u64) {
        let mut p = self.shared.lock();
        if p.checkpoint.commit_index != commit_index {
            p.checkpoint.commit_index = commit_index;
            p.checkpoint_dirty = true;
        }
    }

    /// Deletes full segments older than `fileReservedTime` hours whose entries all lie
    /// below `keep_from_index`; returns how many were deleted. Never the last segment,
    /// never an entry that is not yet flushed.
    pub fn apply_retention(
        &mut self,
        file_reserved_hours: u64,
        keep_from_index: u64,
    ) -> Result<usize> {
        self.check_open()?;
        let cutoff = SystemTime::now().checked_sub(Duration::from_secs(
            file_reserved_hours.saturating_mul(3600),
        ));
        let flushed = self.flushed_index();
        // Index records lag the data a little; a segment goes only once they are written.
        let index_written_below = self.shared.lock().index_first;
        let mut n = 0;
        while n + 1 < self.segments.len() {
            let next_first = self.segments[n + 1].first_index;
            if next_first > keep_from_index
                || next_first - 1 > flushed
                || next_first > index_written_below
            {
                break;
            }
            let seg = &self.segments[n];
            let mtime = seg
                .data
                .metadata()
                .and_then(|m| m.modified())
                .map_err(|e| Error::io(format!("stat {}", seg.data_path.display()), e))?;
            if cutoff.is_none_or(|c| mtime > c) {
                break;
            }
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        let new_base = self.segments[n].first_index - 1;
        let new_base_term = self.term_at(new_base).expect("retained entries have terms");
        let shared = self.shared.clone();
        let mut p = shared.wait_idle(shared.lock());
        // The new base is durable before any file goes; a crash in between is finished
        // by recovery.
        let mut c = p.checkpoint;
        c.seq += 1;
        c.base_index = new_base;
        c.base_term = new_base_term;
        let slot = (c.seq % 2) * format::CHECKPOINT_SLOT_STRIDE;
        let path = self.opts.dir.join("checkpoint");
        fsutil::pwrite_all(
            &shared.checkpoint_file,
            &format::encode_checkpoint(&c),
            slot,
        )
        .and_then(|_| fsutil::sync_data(&shared.checkpoint_file))
        .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        p.checkpoint.seq = c.seq;
        p.checkpoint.base_index = new_base;
        p.checkpoint.base_term = new_base_term;
        let removed: Vec<Arc<Segment>> = self.segments.drain(..n).collect();
        p.segments.drain(..n);
        drop(p);
        for seg in &removed {
            for path in [&seg.data_path, &seg.index_path] {
                std::fs::remove_file(path)
                    .map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
            }
            log::info!(
                "store {}: retention removed segment {}",
                self.opts.dir.display(),
                format::segment_name(seg.start)
            );
        }
        fsutil::fsync_dir(&self.opts.dir.join("data"))?;
        fsutil::fsync_dir(&self.opts.dir.join("index"))?;
        let dropped = (new_base - self.base_index) as usize;
        self.metas.drain_front(dropped as u64);
        self.base_index = new_base;
        self.base_term = new_base_term;
        while self.cache_first <= new_base {
            let Some(old) = self.cache.pop_front() else {
                self.cache_first = new_base + 1;
                break;
            };
            self.cache_bytes -= old.len();
            self.cache_first += 1;
        }
        Ok(n)
    }

    /// Flushes, stops using the flusher and releases the lock file; later calls fail
    /// with `Closed`. Idempotent.
    pub fn shutdown(&mut self) -> Result<()> {
        if self.lock.is_none() {
            return Ok(());
        }
        let result = flusher::flush_now(&self.shared);
        self.release();
        result
    }

    /// Flushes, stops using the flusher and releases the lock file.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn release(&mut self) {
        if self.lock.is_none() {
            return;
        }
        self.shared.closed.store(true, Ordering::Release);
        self.spare.stop();
        self.flusher.deregister(&self.shared);
        // A round already taken finishes before the lock (and the right to recover this
        // directory) is given up.
        drop(self.shared.wait_idle(self.shared.lock()));
        self.lock = None;
        log::info!("store {}: closed", self.opts.dir.display());
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.release();
    }
}
