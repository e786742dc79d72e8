//! Open-time recovery: read term and checkpoint, scan and verify every entry of every
//! segment, cut a torn or corrupt tail, repair index files.

use super::flusher::{write_index_header, Segment};
use super::foreign;
use super::format::{self, Checkpoint, IndexHeader};
use super::fsutil;
use super::{HardState, Meta, StoreOptions};
use crate::error::{Error, Result};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

pub(crate) struct Recovered {
    pub hard_state: HardState,
    pub checkpoint: Checkpoint,
    pub checkpoint_file: File,
    pub segments: Vec<Arc<Segment>>,
    pub base_index: u64,
    pub base_term: u64,
    pub metas: VecDeque<Meta>,
    pub write_pos: u64,
    pub truncated_entries: u64,
    pub notes: Vec<String>,
}

pub(crate) fn read_hard_state(dir: &Path) -> Result<Option<HardState>> {
    let path = dir.join("term");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let (term, voted_for) = format::decode_term_file(&bytes).map_err(|why| {
                Error::corrupt(format!(
                    "term file {} is corrupt ({why}); refusing to start with an unknown term and vote",
                    path.display()
                ))
            })?;
            Ok(Some(HardState { term, voted_for }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

pub(crate) fn write_hard_state(dir: &Path, state: &HardState) -> Result<()> {
    let bytes = format::encode_term_file(state.term, state.voted_for.as_deref());
    fsutil::replace_file(dir, "term", &bytes)
}

fn read_checkpoint(file: &File, notes: &mut Vec<String>) -> Checkpoint {
    let mut best: Option<Checkpoint> = None;
    let mut any_bytes = false;
    for slot in 0..2u64 {
        let mut buf = [0u8; format::CHECKPOINT_SLOT_SIZE];
        if file
            .read_exact_at(&mut buf, slot * format::CHECKPOINT_SLOT_STRIDE)
            .is_err()
        {
            continue;
        }
        any_bytes |= buf.iter().any(|&b| b != 0);
        if let Some(c) = format::decode_checkpoint(&buf) {
            if best.is_none_or(|b| c.seq > b.seq) {
                best = Some(c);
            }
        }
    }
    if best.is_none() && any_bytes {
        notes.push("checkpoint: no valid slot; commit checkpoint taken as 0".to_string());
    }
    best.unwrap_or_default()
}

/// What a scan of one segment found.
struct SegmentScan {
    /// Entries read, in order.
    entries: Vec<Meta>,
    /// Index of each entry (parallel to `entries`).
    first_index: Option<u64>,
    /// Where the scan stopped: Some(offset) when the log ends inside this segment.
    end: Option<u64>,
    /// The bytes at `end` were not a clean zero header.
    dirty_end: bool,
    why: Option<String>,
    /// The bytes at `end` are a record of another format: not a torn tail to cut.
    foreign: Option<String>,
}

/// Scans one segment of `size` bytes whose first `map.len()` bytes are on disk (a file
/// shorter than a segment reads as zeros past its end).
fn scan_segment(
    map: &[u8],
    size: usize,
    seg_start: u64,
    mut expected_index: Option<u64>,
    mut prev_term: u64,
) -> SegmentScan {
    let mut at = 0usize;
    let mut scan = SegmentScan {
        entries: Vec::new(),
        first_index: None,
        end: None,
        dirty_end: false,
        why: None,
        foreign: None,
    };
    loop {
        let room = size - at;
        if room < format::ENTRY_HEADER_SIZE {
            if at == 0 {
                scan.end = Some(0);
            }
            return scan;
        }
        let mut head = [0u8; format::ENTRY_HEADER_SIZE];
        let on_disk = map.len().saturating_sub(at).min(head.len());
        head[..on_disk].copy_from_slice(&map[at..at + on_disk]);
        let h = format::decode_header(&head);
        if h.magic == format::BLANK_MAGIC && h.size as usize == room && at > 0 {
            return scan;
        }
        let stop = |scan: &mut SegmentScan, why: String| {
            scan.end = Some(at as u64);
            scan.dirty_end = head.iter().any(|&b| b != 0);
            if scan.dirty_end {
                scan.why = Some(why);
                scan.foreign = foreign::foreign_record(&head, seg_start + at as u64, room as u64);
            }
        };
        if h.magic != format::ENTRY_MAGIC {
            stop(&mut scan, format!("bad magic {:#010x}", h.magic));
            return scan;
        }
        let total = h.size as usize;
        if total < format::ENTRY_HEADER_SIZE || total > room {
            stop(
                &mut scan,
                format!("size {total} does not fit the {room} bytes left"),
            );
            return scan;
        }
        if at + total > map.len() {
            stop(
                &mut scan,
                format!("record runs past the end of the file ({} bytes)", map.len()),
            );
            return scan;
        }
        if let Err(why) = format::check_record(&map[at..at + total]) {
            stop(&mut scan, why);
            return scan;
        }
        if h.pos != seg_start + at as u64 {
            stop(&mut scan, format!("record says position {}", h.pos));
            return scan;
        }
        if let Some(e) = expected_index {
            if h.index != e {
                stop(
                    &mut scan,
                    format!("index {} where {e} was expected", h.index),
                );
                return scan;
            }
        }
        if h.term < prev_term {
            stop(
                &mut scan,
                format!("term {} below the previous entry's {prev_term}", h.term),
            );
            return scan;
        }
        if scan.first_index.is_none() {
            scan.first_index = Some(h.index);
        }
        scan.entries.push(Meta {
            pos: h.pos,
            term: h.term,
            size: h.size,
        });
        expected_index = Some(h.index + 1);
        prev_term = h.term;
        at += total;
    }
}

/// Highest entry index any valid record of an index file claims.
fn index_claims(bytes: &[u8]) -> u64 {
    bytes
        .get(format::INDEX_HEADER_SIZE..)
        .unwrap_or(&[])
        .chunks_exact(format::INDEX_RECORD_SIZE)
        .filter_map(format::decode_index_record)
        .map(|r| r.index)
        .max()
        .unwrap_or(0)
}

struct SegFiles {
    start: u64,
    data: File,
    /// Length on disk when listed (recovery extends a short file only after its scan).
    len: u64,
    /// Opened (created if missing) once the scan has found nothing foreign.
    index: Option<File>,
    data_path: std::path::PathBuf,
    index_path: std::path::PathBuf,
    index_bytes: Vec<u8>,
}

fn delete_segment(dir: &Path, start: u64) -> Result<()> {
    let name = format::segment_name(start);
    for sub in ["data", "index"] {
        let path = dir.join(sub).join(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", path.display()), e)),
        }
    }
    Ok(())
}

pub(crate) fn recover(opts: &StoreOptions) -> Result<Recovered> {
    let dir = &opts.dir;
    let seg_size = opts.segment_size_bytes;
    let data_dir = dir.join("data");
    let index_dir = dir.join("index");
    let mut notes = Vec::new();

    // Nothing is created, written or cut until the scan below has shown that every byte
    // recovery would change is this store's own.
    let stored_hard_state = read_hard_state(dir)?;
    if stored_hard_state.is_none() && data_dir.exists() {
        return Err(Error::corrupt(format!(
            "term file {} is missing but {} exists; refusing to start with an unknown term and vote",
            dir.join("term").display(),
            data_dir.display()
        )));
    }
    let checkpoint_path = dir.join("checkpoint");
    let checkpoint = match File::open(&checkpoint_path) {
        Ok(file) => read_checkpoint(&file, &mut notes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Checkpoint::default(),
        Err(e) => return Err(Error::io(format!("open {}", checkpoint_path.display()), e)),
    };

    // Segment files, in log order.
    let mut starts = Vec::new();
    if data_dir.exists() {
        for item in std::fs::read_dir(&data_dir)
            .map_err(|e| Error::io(format!("list {}", data_dir.display()), e))?
        {
            let item = item.map_err(|e| Error::io(format!("list {}", data_dir.display()), e))?;
            let name = item.file_name();
            match name.to_str().and_then(format::parse_segment_name) {
                Some(start) => starts.push(start),
                None => log::warn!("store {}: ignoring {:?} in data/", dir.display(), name),
            }
        }
    }
    starts.sort_unstable();
    let mut files: Vec<SegFiles> = Vec::new();
    let mut gap_at = None;
    for (k, &start) in starts.iter().enumerate() {
        if start % seg_size != 0 {
            return Err(Error::config(format!(
                "mappedFileSizeCommitLog: {seg_size} does not match segment {} of {}; was the size changed?",
                format::segment_name(start),
                data_dir.display()
            )));
        }
        if k > 0 && start != starts[k - 1] + seg_size {
            gap_at = Some(k);
            break;
        }
        let name = format::segment_name(start);
        let data_path = data_dir.join(&name);
        let index_path = index_dir.join(&name);
        let data = fsutil::open_rw(&data_path, false)?;
        let len = data
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", data_path.display()), e))?
            .len();
        if len > seg_size {
            return Err(Error::config(format!(
                "mappedFileSizeCommitLog: {seg_size} is smaller than segment {} ({len} bytes); was the size changed?",
                data_path.display()
            )));
        }
        let index_bytes = match std::fs::read(&index_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(format!("read {}", index_path.display()), e)),
        };
        files.push(SegFiles {
            start,
            data,
            len,
            index: None,
            data_path,
            index_path,
            index_bytes,
        });
    }

    // Scan.
    let mut metas: VecDeque<Meta> = VecDeque::new();
    let mut seg_first: Vec<u64> = Vec::new();
    let mut base: Option<(u64, u64)> = None;
    let mut last: Option<(u64, u64)> = None; // (index, term) of the last good entry
    let mut write_pos: Option<u64> = None;
    let mut dirty_end = false;
    let mut claimed_last = 0u64;
    let mut kept = 0usize;
    for (k, f) in files.iter().enumerate() {
        claimed_last = claimed_last.max(index_claims(&f.index_bytes));
        if write_pos.is_some() {
            continue;
        }
        // SAFETY: the file is locked by this store; nothing else writes it while mapped.
        let map = match f.len {
            0 => None,
            _ => Some(
                unsafe { memmap2::Mmap::map(&f.data) }
                    .map_err(|e| Error::io(format!("map {}", f.data_path.display()), e))?,
            ),
        };
        let on_disk: &[u8] = map.as_deref().unwrap_or(&[]);
        let header = format::decode_index_header(&f.index_bytes);
        let (expected, prev_term) = match last {
            Some((i, t)) => (Some(i + 1), t),
            None => (None, 0),
        };
        let scan = scan_segment(on_disk, seg_size as usize, f.start, expected, prev_term);
        if let Some(what) = &scan.foreign {
            let at = scan.end.unwrap_or(0);
            return Err(Error::corrupt(format!(
                "store {}: segment {} holds, at offset {at} after {} rmqraft entries in it, {what}: \
                 bytes rmqraft did not write; it cuts only torn tails of its own records, so \
                 nothing was changed. Keep a copy of {}; see docs/FORMAT.md, \"Foreign stores\"",
                dir.display(),
                f.data_path.display(),
                scan.entries.len(),
                dir.display()
            )));
        }
        if let Some(why) = &scan.why {
            notes.push(format!(
                "segment {}: entry at offset {} is bad ({why}); it and everything after it were cut",
                format::segment_name(f.start),
                scan.end.unwrap_or(0)
            ));
        }
        if k == 0 {
            // The base: what precedes the first retained entry.
            let first = scan
                .first_index
                .or(header.map(|h| h.first_index))
                .unwrap_or(checkpoint.base_index + 1);
            let prev = if first == checkpoint.base_index + 1 {
                checkpoint.base_term
            } else if let Some(h) = header.filter(|h| h.first_index == first) {
                h.prev_term
            } else if first == 1 {
                0
            } else {
                return Err(Error::corrupt(format!(
                    "store {}: neither the checkpoint nor index file {} tells the term of entry {}",
                    dir.display(),
                    f.index_path.display(),
                    first - 1
                )));
            };
            if let Some(&m) = scan.entries.first() {
                if m.term < prev {
                    return Err(Error::corrupt(format!(
                        "store {}: first entry {first} has term {} below the recorded term {prev} of entry {}",
                        dir.display(),
                        m.term,
                        first - 1
                    )));
                }
            }
            base = Some((first - 1, prev));
            last = Some((first - 1, prev));
        }
        let first_index = last.map_or(1, |(i, _)| i + 1);
        if k > 0 && scan.entries.is_empty() {
            // Nothing valid in a later segment: the log ends before it.
            dirty_end |= scan.dirty_end;
            write_pos = Some(
                metas
                    .back()
                    .map_or(files[0].start, |m| m.pos + u64::from(m.size)),
            );
            continue;
        }
        seg_first.push(first_index);
        kept = k + 1;
        let n = scan.entries.len() as u64;
        if let Some(&m) = scan.entries.last() {
            last = Some((first_index + n - 1, m.term));
        }
        metas.extend(scan.entries);
        if let Some(end) = scan.end {
            dirty_end |= scan.dirty_end;
            write_pos = Some(f.start + end);
        }
    }

    // Every byte to change is this store's own: create what a new store lacks, extend
    // short segments, open the index files.
    let hard_state = match stored_hard_state {
        Some(h) => h,
        None => {
            let h = HardState::default();
            write_hard_state(dir, &h)?;
            h
        }
    };
    let fresh_dirs = !data_dir.exists() || !index_dir.exists();
    fsutil::create_dir(&data_dir)?;
    fsutil::create_dir(&index_dir)?;
    if fresh_dirs {
        fsutil::fsync_dir(dir)?;
    }
    let checkpoint_file = fsutil::open_rw(&checkpoint_path, true)?;
    if let Some(k) = gap_at {
        notes.push(format!(
            "segment {}: gap before it; it and every later segment were cut",
            format::segment_name(starts[k])
        ));
        for &later in &starts[k..] {
            delete_segment(dir, later)?;
        }
    }
    for f in &mut files {
        if f.len < seg_size {
            fsutil::preallocate(&f.data, seg_size, &f.data_path)?;
        }
        f.index = Some(fsutil::open_rw(&f.index_path, true)?);
    }

    let (mut base_index, mut base_term) =
        base.unwrap_or((checkpoint.base_index, checkpoint.base_term));
    let last_index = base_index + metas.len() as u64;
    let write_pos = match write_pos {
        Some(p) => p,
        None => match metas.back() {
            // Every kept segment ended with a blank or a full tail.
            Some(m) => m.pos + u64::from(m.size),
            None => files.first().map_or(0, |f| f.start),
        },
    };
    let cut = claimed_last
        .max(last_index + u64::from(dirty_end))
        .saturating_sub(last_index);
    if cut > 0 {
        notes.push(format!("cut {cut} entries after index {last_index}"));
    }

    // Drop segments past the end of the log.
    let keep_until = files
        .iter()
        .take_while(|f| f.start <= write_pos)
        .count()
        .max(kept.min(1));
    for f in files.drain(keep_until..) {
        delete_segment(dir, f.start)?;
        notes.push(format!(
            "segment {}: removed (past the end of the log)",
            format::segment_name(f.start)
        ));
    }
    seg_first.resize(files.len(), last_index + 1);

    // Zero whatever follows the last good entry so it can never come back.
    if let Some(f) = files.iter().rev().find(|f| f.start <= write_pos) {
        let off = write_pos - f.start;
        if off < seg_size {
            let mut head =
                vec![0u8; (seg_size - off).min(format::ENTRY_HEADER_SIZE as u64) as usize];
            f.data
                .read_exact_at(&mut head, off)
                .map_err(|e| Error::io(format!("read {}", f.data_path.display()), e))?;
            if dirty_end || cut > 0 || head.iter().any(|&b| b != 0) {
                fsutil::zero_range(&f.data, off, seg_size - off, &f.data_path)?;
            }
        }
        fsutil::sync_data(&f.data)
            .map_err(|e| Error::io(format!("fdatasync {}", f.data_path.display()), e))?;
    }

    // Index files must agree with the data; rebuild the ones that do not.
    let mut segments = Vec::with_capacity(files.len());
    let mut next_meta = 0usize;
    for (k, f) in files.into_iter().enumerate() {
        let index_file = f.index.expect("opened before the repair");
        let first_index = seg_first[k];
        let count = seg_first.get(k + 1).map_or(last_index + 1, |&n| n) - first_index;
        let prev_term = if first_index - 1 == base_index {
            base_term
        } else {
            metas[(first_index - 1 - base_index - 1) as usize].term
        };
        let mut want = BytesMut::with_capacity(
            format::INDEX_HEADER_SIZE + count as usize * format::INDEX_RECORD_SIZE,
        );
        want.extend_from_slice(&format::encode_index_header(&IndexHeader {
            first_index,
            prev_term,
        }));
        for i in 0..count {
            let m = metas[next_meta + i as usize];
            format::put_index_record(
                &mut want,
                &format::IndexRecord {
                    pos: m.pos,
                    term: m.term,
                    index: first_index + i,
                    size: m.size,
                },
            );
        }
        next_meta += count as usize;
        let have = &f.index_bytes;
        if have.len() >= want.len() && have[..want.len()] == want[..] {
            if have.len() > want.len() {
                index_file
                    .set_len(want.len() as u64)
                    .map_err(|e| Error::io(format!("truncate {}", f.index_path.display()), e))?;
                fsutil::sync_data(&index_file)
                    .map_err(|e| Error::io(format!("fdatasync {}", f.index_path.display()), e))?;
            }
        } else {
            let records = |b: &[u8]| {
                b.get(format::INDEX_HEADER_SIZE..)
                    .unwrap_or(&[])
                    .chunks(format::INDEX_RECORD_SIZE)
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
            };
            let (h, w) = (records(have), records(&want));
            let disagree = w
                .iter()
                .enumerate()
                .filter(|(i, r)| h.get(*i) != Some(*r))
                .count();
            notes.push(format!(
                "index {}: rebuilt from data ({disagree} of {count} records missing or disagreeing{})",
                format::segment_name(f.start),
                if format::decode_index_header(have).is_none() { ", bad header" } else { "" }
            ));
            write_index_header(&index_file, &f.index_path, first_index, prev_term)?;
            fsutil::pwrite_all(&index_file, &want, 0)
                .map_err(|e| Error::io(format!("write {}", f.index_path.display()), e))?;
            index_file
                .set_len(want.len() as u64)
                .map_err(|e| Error::io(format!("truncate {}", f.index_path.display()), e))?;
            fsutil::sync_data(&index_file)
                .map_err(|e| Error::io(format!("fdatasync {}", f.index_path.display()), e))?;
        }
        segments.push(Arc::new(Segment {
            start: f.start,
            first_index,
            data: f.data,
            index: index_file,
            data_path: f.data_path,
            index_path: f.index_path,
        }));
    }
    // Everything kept counts as flushed (the flushed index starts at the last entry), so
    // everything kept is made durable here: a crashed process leaves its unsynced writes
    // in the page cache, where recovery reads them as if they were on disk. The
    // directories first (the segment files' names), then every kept segment's data and
    // index; a file with nothing dirty costs little.
    fsutil::fsync_dir(&data_dir)?;
    fsutil::fsync_dir(&index_dir)?;
    for s in &segments {
        fsutil::sync_data(&s.data)
            .map_err(|e| Error::io(format!("fdatasync {}", s.data_path.display()), e))?;
        fsutil::sync_data(&s.index)
            .map_err(|e| Error::io(format!("fdatasync {}", s.index_path.display()), e))?;
    }
    let mut deleted_since_sync = false;

    // Finish a retention that recorded its new base but crashed before deleting files.
    if checkpoint.base_index > base_index && checkpoint.base_index <= last_index {
        let drop = (checkpoint.base_index - base_index) as usize;
        metas.drain(..drop);
        base_index = checkpoint.base_index;
        base_term = checkpoint.base_term;
        while segments.len() > 1 && segments[1].first_index <= base_index + 1 {
            let s = segments.remove(0);
            delete_segment(dir, s.start)?;
            deleted_since_sync = true;
            notes.push(format!(
                "segment {}: removed (retention finished)",
                format::segment_name(s.start)
            ));
        }
    }
    if deleted_since_sync {
        fsutil::fsync_dir(&data_dir)?;
        fsutil::fsync_dir(&index_dir)?;
    }

    for n in &notes {
        log::warn!("store {}: recovery: {n}", dir.display());
    }
    Ok(Recovered {
        hard_state,
        checkpoint,
        checkpoint_file,
        segments,
        base_index,
        base_term,
        metas,
        write_pos,
        truncated_entries: cut,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, FaultDomain};
    use super::super::{Flusher, LogStore, StoreOptions};
    use crate::config::{FlushDiskType, FlusherKind};
    use crate::types::{Entry, EntryKind};
    use bytes::Bytes;
    use std::os::unix::io::AsRawFd;
    use std::sync::Arc;

    /// B7: a crashed process leaves unsynced writes in the page cache, in any segment;
    /// recovery reads them and counts every entry as flushed, so it must make every kept
    /// segment durable, not only the last one.
    #[test]
    fn recovery_makes_every_kept_segment_durable() {
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
        let flusher = Flusher::start(FlusherKind::Pwrite).unwrap();
        let (mut store, _) = LogStore::open(opts.clone(), &flusher, Arc::new(|_| {})).unwrap();
        for index in 1..=40 {
            let entry = Entry {
                index,
                term: 1,
                kind: EntryKind::Normal,
                body: Bytes::from(vec![index as u8; 8 << 10]),
            };
            store.append(&entry).unwrap();
        }
        store.close().unwrap();
        let first = dir.join("data").join(crate::store::format::segment_name(0));
        assert!(
            dir.join("data")
                .join(crate::store::format::segment_name(64 << 10))
                .exists(),
            "the log spans several segments"
        );
        let domain = FaultDomain::new(&dir).unwrap();
        // What a crash leaves: a write to the first segment no fdatasync covered.
        let file = std::fs::OpenOptions::new().read(true).open(&first).unwrap();
        testing::on_write(file.as_raw_fd(), 0, 4096).unwrap();
        assert_eq!(domain.unsynced_bytes(), 4096);
        let (store, rec) = LogStore::open(opts, &flusher, Arc::new(|_| {})).unwrap();
        assert_eq!(rec.truncated_entries, 0);
        assert_eq!(store.flushed_index(), 40);
        assert_eq!(
            domain.unsynced_bytes(),
            0,
            "recovery counts entry 1 as flushed: its segment must have been fdatasynced"
        );
        store.close().unwrap();
        flusher.close();
    }
}
