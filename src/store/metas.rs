//! Where each retained entry sits (position, term, record size), with memory bounded by
//! segments, not entries.
//!
//! The entries of a sealed segment (one the writer has left) are looked up in that
//! segment's index file, mapped read-only and read through the page cache, once the
//! flusher has written every index record of it. Only the newest entries (the open
//! segment, and a sealed one whose index records are still on their way to the file)
//! are kept in memory, 24 bytes each. A member with 100 million retained entries in
//! 1 GiB segments keeps one map per segment and the open segment's entries.

use super::format::{self, INDEX_HEADER_SIZE, INDEX_RECORD_SIZE};
use super::Meta;
use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;

/// One sealed segment's entries, in its mapped index file.
struct Sealed {
    /// Log position of the segment's first byte.
    start: u64,
    first_index: u64,
    count: u64,
    map: memmap2::Mmap,
}

impl Sealed {
    fn meta(&self, index: u64) -> Meta {
        let k = (index - self.first_index) as usize;
        let at = INDEX_HEADER_SIZE + k * INDEX_RECORD_SIZE;
        let r = format::decode_index_record(&self.map[at..at + INDEX_RECORD_SIZE]);
        match r {
            Some(r) if r.index == index => Meta {
                pos: r.pos,
                term: r.term,
                size: r.size,
            },
            // Recovery checked (or rebuilt) every index record against the data and the
            // flusher wrote the rest from memory: a record that fails now was changed
            // under a running store.
            _ => panic!(
                "index record of entry {index} (segment at {}) changed on disk while the store is open",
                self.start
            ),
        }
    }

    fn last_index(&self) -> u64 {
        self.first_index + self.count - 1
    }
}

/// Entries `first..=last`: sealed segments' entries in their index files, then the
/// newest in memory.
#[derive(Default)]
pub(crate) struct Metas {
    /// Oldest first; contiguous; every entry of them below `hot_first`.
    sealed: VecDeque<Sealed>,
    /// Entries `hot_first..` in memory.
    hot: VecDeque<Meta>,
    hot_first: u64,
    /// First entry still retained (entries of `sealed[0]` below it were removed).
    first: u64,
}

impl Metas {
    /// Entries `first..` from `hot`, all in memory.
    pub fn new(first: u64, hot: VecDeque<Meta>) -> Metas {
        Metas {
            sealed: VecDeque::new(),
            hot,
            hot_first: first,
            first,
        }
    }

    /// Number of retained entries.
    pub fn len(&self) -> u64 {
        self.end() - self.first
    }

    /// One past the last entry.
    fn end(&self) -> u64 {
        self.hot_first + self.hot.len() as u64
    }

    /// Entries held in memory (the rest are read from index files).
    pub fn in_memory(&self) -> usize {
        self.hot.len()
    }

    /// Sealed segments served from their index files.
    pub fn sealed_segments(&self) -> usize {
        self.sealed.len()
    }

    /// The first entry not in a sealed segment's index file.
    pub fn hot_first(&self) -> u64 {
        self.hot_first
    }

    pub fn get(&self, index: u64) -> Option<Meta> {
        if index < self.first || index >= self.end() {
            return None;
        }
        if index >= self.hot_first {
            return self.hot.get((index - self.hot_first) as usize).copied();
        }
        let k = self.sealed.partition_point(|s| s.first_index <= index);
        Some(self.sealed[k - 1].meta(index))
    }

    pub fn last(&self) -> Option<Meta> {
        match self.len() {
            0 => None,
            _ => self.get(self.end() - 1),
        }
    }

    pub fn push(&mut self, m: Meta) {
        self.hot.push_back(m);
    }

    /// The retained entry whose record starts at `pos` or whose body does (pos + 48).
    pub fn index_at_pos(&self, pos: u64) -> Option<u64> {
        let hit = |m: Meta| m.pos == pos || m.pos + format::ENTRY_HEADER_SIZE as u64 == pos;
        let in_hot = self.hot.front().is_some_and(|m| m.pos <= pos);
        if in_hot {
            let k = self.hot.partition_point(|m| m.pos < pos);
            for k in [k, k.wrapping_sub(1)] {
                if let Some(&m) = self.hot.get(k) {
                    if hit(m) {
                        return Some(self.hot_first + k as u64).filter(|&i| i >= self.first);
                    }
                }
            }
            return None;
        }
        let s = self.sealed.partition_point(|s| s.start <= pos);
        let seg = self.sealed.get(s.checked_sub(1)?)?;
        // Binary search over the segment's records by position.
        let (mut lo, mut hi) = (seg.first_index, seg.last_index() + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if seg.meta(mid).pos < pos {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for i in [lo, lo.wrapping_sub(1)] {
            if (seg.first_index..=seg.last_index()).contains(&i) && hit(seg.meta(i)) {
                return Some(i).filter(|&i| i >= self.first);
            }
        }
        None
    }

    /// Moves the in-memory entries of the segment at `start` (entries
    /// `seg_first..next_first`) to its index file, whose records the flusher has written.
    /// Does nothing unless they are the oldest in memory and all there.
    pub fn seal(
        &mut self,
        start: u64,
        seg_first: u64,
        next_first: u64,
        index: &File,
        path: &Path,
    ) -> Result<()> {
        if seg_first > self.hot_first || next_first <= self.hot_first || next_first > self.end() {
            return Ok(());
        }
        let count = next_first - seg_first;
        let len = INDEX_HEADER_SIZE + count as usize * INDEX_RECORD_SIZE;
        // SAFETY: the index file belongs to this store (locked); its first `len` bytes are
        // written and are not changed again while mapped: `unseal_from` drops the map
        // before a truncation rewrites them, retention drops it with the file.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(index) }
            .map_err(|e| Error::io(format!("map {}", path.display()), e))?;
        let sealed = Sealed {
            start,
            first_index: seg_first,
            count,
            map,
        };
        // The file must say what memory says before memory forgets it.
        let n = (next_first - self.hot_first) as usize;
        for (k, m) in self.hot.iter().take(n).enumerate() {
            let i = self.hot_first + k as u64;
            let at = INDEX_HEADER_SIZE + (i - seg_first) as usize * INDEX_RECORD_SIZE;
            let r = format::decode_index_record(&sealed.map[at..at + INDEX_RECORD_SIZE]);
            let same = r.is_some_and(|r| {
                r.index == i && r.pos == m.pos && r.term == m.term && r.size == m.size
            });
            if !same {
                return Err(Error::corrupt(format!(
                    "index file {}: record of entry {i} does not match the entry",
                    path.display()
                )));
            }
        }
        self.hot.drain(..n);
        self.hot_first = next_first;
        self.sealed.push_back(sealed);
        Ok(())
    }

    /// Brings the entries from `index` on back into memory (a truncation is about to cut
    /// or rewrite them): every sealed segment holding any of them is unmapped.
    fn unseal_from(&mut self, index: u64) {
        while self.sealed.back().is_some_and(|s| s.last_index() >= index) {
            let s = self.sealed.pop_back().expect("checked");
            let from = s.first_index.max(self.first);
            let mut back: VecDeque<Meta> = (from..=s.last_index()).map(|i| s.meta(i)).collect();
            back.extend(self.hot.drain(..));
            self.hot = back;
            self.hot_first = from;
        }
    }

    /// Keeps the first `keep` retained entries, removing the rest.
    pub fn truncate(&mut self, keep: u64) {
        let end = self.first + keep;
        self.unseal_from(end);
        self.hot.truncate((end - self.hot_first) as usize);
    }

    /// Removes the oldest `n` retained entries (retention).
    pub fn drain_front(&mut self, n: u64) {
        self.first += n;
        while self
            .sealed
            .front()
            .is_some_and(|s| s.last_index() < self.first)
        {
            self.sealed.pop_front();
        }
        if self.first > self.hot_first {
            let k = ((self.first - self.hot_first) as usize).min(self.hot.len());
            self.hot.drain(..k);
            self.hot_first = self.first;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn index_file(dir: &Path, first_index: u64, metas: &[Meta]) -> File {
        let path = dir.join("index");
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&format::encode_index_header(&format::IndexHeader {
            first_index,
            prev_term: 0,
        }));
        for (k, m) in metas.iter().enumerate() {
            format::put_index_record(
                &mut buf,
                &format::IndexRecord {
                    pos: m.pos,
                    term: m.term,
                    index: first_index + k as u64,
                    size: m.size,
                },
            );
        }
        std::fs::write(&path, &buf).unwrap();
        File::open(&path).unwrap()
    }

    fn metas(n: u64, first_pos: u64) -> Vec<Meta> {
        (0..n)
            .map(|k| Meta {
                pos: first_pos + k * 100,
                term: 1 + k / 4,
                size: 100,
            })
            .collect()
    }

    #[test]
    fn sealed_entries_read_back_from_the_index_file_and_come_back_on_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let all = metas(20, 0);
        let mut m = Metas::new(1, all.iter().copied().collect());
        let f = index_file(dir.path(), 1, &all[..12]);
        m.seal(0, 1, 13, &f, &dir.path().join("index")).unwrap();
        assert_eq!((m.in_memory(), m.sealed_segments()), (8, 1));
        for (k, want) in all.iter().enumerate() {
            assert_eq!(m.get(1 + k as u64), Some(*want), "entry {}", 1 + k);
        }
        assert_eq!(m.get(0), None);
        assert_eq!(m.get(21), None);
        assert_eq!(m.last(), Some(all[19]));
        assert_eq!(
            m.index_at_pos(500),
            Some(6),
            "record start in the sealed part"
        );
        assert_eq!(m.index_at_pos(548), Some(6), "body start");
        assert_eq!(m.index_at_pos(1500), Some(16), "in memory");
        assert_eq!(m.index_at_pos(501), None);

        // A truncation into the sealed segment unmaps it and keeps what precedes the cut.
        m.truncate(5);
        assert_eq!((m.len(), m.sealed_segments(), m.in_memory()), (5, 0, 5));
        assert_eq!(m.last(), Some(all[4]));
        m.push(Meta {
            pos: 500,
            term: 9,
            size: 10,
        });
        assert_eq!(m.get(6).unwrap().term, 9);
    }

    #[test]
    fn retention_drops_sealed_segments_below_the_first_retained_entry() {
        let dir = tempfile::tempdir().unwrap();
        let all = metas(30, 0);
        let mut m = Metas::new(1, all.iter().copied().collect());
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let fa = index_file(&dir.path().join("a"), 1, &all[..10]);
        let fb = index_file(&dir.path().join("b"), 11, &all[10..20]);
        m.seal(0, 1, 11, &fa, dir.path()).unwrap();
        m.seal(1000, 11, 21, &fb, dir.path()).unwrap();
        assert_eq!((m.sealed_segments(), m.in_memory()), (2, 10));
        m.drain_front(12);
        assert_eq!(m.sealed_segments(), 1);
        assert_eq!(m.get(12), None);
        assert_eq!(m.get(13), Some(all[12]));
        assert_eq!(m.len(), 18);
        assert_eq!(m.index_at_pos(1100), None, "entry 12 was removed");
        m.drain_front(15);
        assert_eq!((m.sealed_segments(), m.len()), (0, 3));
        assert_eq!(m.get(28), Some(all[27]));
    }

    #[test]
    fn a_record_that_disagrees_is_not_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let all = metas(4, 0);
        let mut m = Metas::new(1, all.iter().copied().collect());
        let mut wrong = all.clone();
        wrong[2].term = 7;
        let f = index_file(dir.path(), 1, &wrong);
        let e = m.seal(0, 1, 5, &f, dir.path()).unwrap_err();
        assert!(e.message().contains("entry 3"), "{e}");
        assert_eq!((m.sealed_segments(), m.in_memory()), (0, 4));
    }
}
