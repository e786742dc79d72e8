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
//! - `save_hard_state` is durable (fsync of the file and its directory) when it returns.

#![allow(unused_variables, dead_code)]

use crate::config::{FlushDiskType, FlusherKind};
use crate::error::Result;
use crate::types::{Entry, EntryMeta};
use std::path::PathBuf;
use std::sync::Arc;

/// Called on the flusher thread with the new flushed index of one store.
pub type FlushedCallback = Arc<dyn Fn(u64) + Send + Sync>;

/// Options of one member's store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `<storePathRootDir>/dledger-<selfId>`
    pub dir: PathBuf,
    pub segment_size_bytes: u64,
    pub flush: FlushDiskType,
    pub async_flush_interval_ms: u64,
    pub entry_size_bytes_max: u32,
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
    /// Last commit index checkpointed before the previous close or crash.
    pub commit_checkpoint: u64,
    /// Entries cut from the tail because they failed their checksum or were torn.
    pub truncated_entries: u64,
    /// A human-readable account of any repair ("segment 000..: bad CRC at index 42, cut 7 entries").
    pub notes: Vec<String>,
}

/// The engine-wide flusher: one thread, io_uring when available.
pub struct Flusher {}

impl Flusher {
    pub fn start(kind: FlusherKind) -> Result<Flusher> {
        todo!()
    }
    /// Which path runs: "io_uring" or "pwrite".
    pub fn mode(&self) -> &'static str {
        todo!()
    }
    /// Stops the thread after flushing what is queued. Idempotent.
    pub fn close(&self) {
        todo!()
    }
}

pub struct LogStore {}

impl LogStore {
    /// Opens (creating if needed) the store, takes its lock file (another open of the
    /// same dir, in this or another process, fails with `ErrorKind::Exists`), and recovers.
    pub fn open(
        opts: StoreOptions,
        flusher: &Flusher,
        on_flushed: FlushedCallback,
    ) -> Result<(LogStore, Recovery)> {
        todo!()
    }
    /// First retained index; `last_index() + 1` when empty.
    pub fn first_index(&self) -> u64 {
        todo!()
    }
    /// 0 when empty.
    pub fn last_index(&self) -> u64 {
        todo!()
    }
    pub fn last_term(&self) -> u64 {
        todo!()
    }
    /// Term of the entry at `index`; `Some(0)` for index 0; for `first_index() - 1` the
    /// term of the last removed entry; `None` when unknown (removed or not yet appended).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        todo!()
    }
    /// Appends `entry` (its index must be `last_index() + 1`, its term >= `last_term()`).
    pub fn append(&mut self, entry: &Entry) -> Result<EntryMeta> {
        todo!()
    }
    /// Removes entries `from_index..`. Waits for any write of them in flight.
    pub fn truncate_suffix(&mut self, from_index: u64) -> Result<()> {
        todo!()
    }
    /// Reads one entry, verifying its checksum (`ErrorKind::Corrupt` if it fails,
    /// `ErrorKind::NotFound` outside `first_index()..=last_index()`).
    pub fn read(&self, index: u64) -> Result<(Entry, EntryMeta)> {
        todo!()
    }
    pub fn flushed_index(&self) -> u64 {
        todo!()
    }
    /// Blocks until everything appended so far is durable.
    pub fn sync(&self) -> Result<()> {
        todo!()
    }
    pub fn hard_state(&self) -> HardState {
        todo!()
    }
    pub fn save_hard_state(&mut self, state: &HardState) -> Result<()> {
        todo!()
    }
    /// Records the commit index (cheaply; durable at the next flush).
    pub fn save_commit_checkpoint(&mut self, commit_index: u64) {
        todo!()
    }
    /// Deletes full segments older than `fileReservedTime` hours whose entries all lie
    /// below `keep_from_index`; returns how many were deleted.
    pub fn apply_retention(
        &mut self,
        file_reserved_hours: u64,
        keep_from_index: u64,
    ) -> Result<usize> {
        todo!()
    }
    /// Flushes, stops using the flusher and releases the lock file; later calls fail
    /// with `Closed`. Idempotent.
    pub fn shutdown(&mut self) -> Result<()> {
        todo!()
    }
    /// Flushes, stops using the flusher and releases the lock file.
    pub fn close(self) -> Result<()> {
        todo!()
    }
}
