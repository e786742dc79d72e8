//! Storage: round trips, reopen, torn tails, corruption, truncation, term/vote, locking,
//! flush callbacks, both flusher paths, retention.

use bytes::Bytes;
use rmqraft::config::{FlushDiskType, FlusherKind};
use rmqraft::store::{FlushedCallback, Flusher, HardState, LogStore, Recovery, StoreOptions};
use rmqraft::{Entry, EntryKind, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HEADER: u64 = 48;
const SEG: u64 = 64 << 10;

fn opts(dir: &Path, flush: FlushDiskType) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        segment_size_bytes: SEG,
        flush,
        async_flush_interval_ms: 10,
        entry_size_bytes_max: 16 << 10,
        prewrite_segments: false,
        classic_commitlog_dir: None,
    }
}

fn noop_cb() -> FlushedCallback {
    Arc::new(|_| {})
}

fn open(dir: &Path, f: &Flusher) -> (LogStore, Recovery) {
    LogStore::open(opts(dir, FlushDiskType::SyncFlush), f, noop_cb()).expect("open")
}

/// Body of entry `i`: deterministic, sizes vary so segment tails get padded.
fn body(i: u64, salt: u8) -> Bytes {
    let len = 100 + (i as usize * 37) % 3000;
    Bytes::from(
        (0..len)
            .map(|k| {
                (k as u8)
                    .wrapping_mul(31)
                    .wrapping_add(i as u8)
                    .wrapping_add(salt)
            })
            .collect::<Vec<u8>>(),
    )
}

fn entry(i: u64, term: u64, salt: u8) -> Entry {
    Entry {
        index: i,
        term,
        kind: if i.is_multiple_of(7) {
            EntryKind::Noop
        } else {
            EntryKind::Normal
        },
        body: body(i, salt),
    }
}

fn append_range(s: &mut LogStore, from: u64, to: u64, term: u64, salt: u8) {
    for i in from..=to {
        let meta = s.append(&entry(i, term, salt)).expect("append");
        assert_eq!(meta.index, i);
        assert_eq!(meta.term, term);
    }
}

fn check_range(s: &LogStore, from: u64, to: u64, term: u64, salt: u8) {
    for i in from..=to {
        let (e, meta) = s.read(i).unwrap_or_else(|err| panic!("read {i}: {err}"));
        assert_eq!(e, entry(i, term, salt), "entry {i}");
        assert_eq!(meta.index, i);
        assert_eq!(s.term_at(i), Some(term));
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn round_trip(kind: FlusherKind) {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(kind).unwrap();
    let (mut s, rec) = open(tmp.path(), &f);
    assert_eq!(rec.truncated_entries, 0);
    assert_eq!((s.first_index(), s.last_index(), s.last_term()), (1, 0, 0));
    append_range(&mut s, 1, 150, 1, 0);
    append_range(&mut s, 151, 200, 2, 0);
    check_range(&s, 1, 150, 1, 0);
    s.sync().unwrap();
    assert_eq!(s.flushed_index(), 200);
    let segs = segment_files(tmp.path());
    assert!(
        segs.len() >= 4,
        "expected several segments, got {}",
        segs.len()
    );
    for p in &segs {
        assert_eq!(
            std::fs::metadata(p).unwrap().len(),
            SEG,
            "{} preallocated",
            p.display()
        );
    }
    assert_eq!(
        segs[1].file_name().unwrap().to_str().unwrap(),
        format!("{SEG:020}")
    );
    s.close().unwrap();
    let (s, rec) = open(tmp.path(), &f);
    assert_eq!(rec.truncated_entries, 0, "{:?}", rec.notes);
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);
    assert_eq!(s.last_index(), 200);
    assert_eq!(s.flushed_index(), 200);
    check_range(&s, 1, 150, 1, 0);
    check_range(&s, 151, 200, 2, 0);
    assert_eq!(s.read(201).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s.read(0).unwrap_err().kind(), ErrorKind::NotFound);
    drop(s);
    f.close();
}

#[test]
fn round_trip_across_segments_pwrite() {
    round_trip(FlusherKind::Pwrite);
}

#[test]
fn round_trip_across_segments_io_uring() {
    match Flusher::start(FlusherKind::IoUring) {
        Ok(f) => {
            assert_eq!(f.mode(), "io_uring");
            f.close();
            round_trip(FlusherKind::IoUring);
        }
        Err(e) => eprintln!("skipping io_uring round trip: the kernel refuses io_uring: {e}"),
    }
}

#[test]
fn segment_tails_are_blank_padded_and_positions_are_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = open(tmp.path(), &f);
    let mut expected_pos = 0u64;
    for i in 1..=80u64 {
        let size = HEADER + body(i, 0).len() as u64;
        if expected_pos % SEG + size > SEG {
            expected_pos += SEG - expected_pos % SEG;
        }
        let meta = s.append(&entry(i, 1, 0)).unwrap();
        assert_eq!(meta.pos, expected_pos, "entry {i}");
        expected_pos += size;
    }
    s.sync().unwrap();
    // The tail of the first segment after its last entry carries a blank record.
    let data = std::fs::read(&segment_files(tmp.path())[0]).unwrap();
    let mut at = 0usize;
    loop {
        let size = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap()) as usize;
        let magic = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
        if magic != 0x3145_5152 {
            assert_eq!(magic, 0x3142_5152, "blank magic at {at}");
            assert_eq!(size, SEG as usize - at);
            break;
        }
        at += size;
    }
    s.close().unwrap();
}

#[test]
fn torn_tail_is_cut_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = open(tmp.path(), &f);
    append_range(&mut s, 1, 10, 1, 0);
    let last = s.read(10).unwrap().1;
    s.close().unwrap();
    // Cut the last entry in the middle of its body (zeros from there on).
    let seg = &segment_files(tmp.path())[0];
    let file = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&[0u8; 64], last.pos + HEADER + 10)
        .unwrap();
    drop(file);
    let (mut s, rec) = open(tmp.path(), &f);
    assert_eq!(s.last_index(), 9, "{:?}", rec.notes);
    assert_eq!(rec.truncated_entries, 1, "{:?}", rec.notes);
    check_range(&s, 1, 9, 1, 0);
    // The log continues cleanly from there.
    append_range(&mut s, 10, 12, 2, 5);
    s.close().unwrap();
    let (s, rec) = open(tmp.path(), &f);
    assert_eq!(rec.truncated_entries, 0, "{:?}", rec.notes);
    check_range(&s, 10, 12, 2, 5);
}

#[test]
fn garbage_after_the_last_entry_is_cut_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = open(tmp.path(), &f);
    append_range(&mut s, 1, 5, 1, 0);
    let m = s.read(5).unwrap().1;
    s.close().unwrap();
    let seg = &segment_files(tmp.path())[0];
    let file = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
    use std::os::unix::fs::FileExt;
    let end = m.pos + HEADER + body(5, 0).len() as u64;
    file.write_all_at(&[0xAB; 100], end).unwrap();
    drop(file);
    let (mut s, rec) = open(tmp.path(), &f);
    assert_eq!(s.last_index(), 5);
    assert!(
        rec.truncated_entries >= 1 && !rec.notes.is_empty(),
        "{rec:?}"
    );
    check_range(&s, 1, 5, 1, 0);
    append_range(&mut s, 6, 6, 1, 0);
    s.close().unwrap();
    let (s, rec) = open(tmp.path(), &f);
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);
    check_range(&s, 1, 6, 1, 0);
}

#[test]
fn flipped_byte_is_caught_at_read_and_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = open(tmp.path(), &f);
    append_range(&mut s, 1, 100, 1, 0);
    s.sync().unwrap();
    let target = s.read(20).unwrap().1;
    let seg = segment_files(tmp.path())[0].clone();
    assert!(target.pos < SEG);
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, target.pos + HEADER + 3).unwrap();
    file.write_all_at(&[b[0] ^ 0x10], target.pos + HEADER + 3)
        .unwrap();
    drop(file);
    // Reopen without the in-memory cache so the read goes to disk.
    s.close().unwrap();
    let (s, rec) = open(tmp.path(), &f);
    assert_eq!(s.last_index(), 19, "{:?}", rec.notes);
    assert_eq!(rec.truncated_entries, 81, "{:?}", rec.notes);
    assert!(
        rec.notes.iter().any(|n| n.contains("CRC")),
        "{:?}",
        rec.notes
    );
    check_range(&s, 1, 19, 1, 0);
    drop(s);

    // At read time: corrupt a flushed entry under an open store.
    let tmp = tempfile::tempdir().unwrap();
    let (mut s, _) = open(tmp.path(), &f);
    append_range(&mut s, 1, 3, 1, 0);
    s.close().unwrap();
    let (s, _) = open(tmp.path(), &f);
    let m = s.read(2).unwrap().1;
    let seg = segment_files(tmp.path())[0].clone();
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.write_all_at(&[0x5A], m.pos + HEADER + 1).unwrap();
    drop(file);
    assert_eq!(s.read(2).unwrap_err().kind(), ErrorKind::Corrupt);
    assert!(s.read(1).is_ok() && s.read(3).is_ok());
}

#[test]
fn truncate_then_append_different_entries_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = open(tmp.path(), &f);
    append_range(&mut s, 1, 60, 1, 0);
    s.sync().unwrap();
    // Unflushed appends, then an immediate truncation of part of them.
    append_range(&mut s, 61, 90, 2, 0);
    s.truncate_suffix(40).unwrap();
    assert!(s.flushed_index() <= 39);
    assert_eq!(s.last_index(), 39);
    assert_eq!(s.read(40).unwrap_err().kind(), ErrorKind::NotFound);
    append_range(&mut s, 40, 70, 3, 9);
    check_range(&s, 1, 39, 1, 0);
    check_range(&s, 40, 70, 3, 9);
    s.close().unwrap();
    let (mut s, rec) = open(tmp.path(), &f);
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);
    assert_eq!(s.last_index(), 70);
    check_range(&s, 1, 39, 1, 0);
    check_range(&s, 40, 70, 3, 9);
    // Truncate everything, then start again.
    s.truncate_suffix(1).unwrap();
    assert_eq!(
        (s.first_index(), s.last_index(), s.flushed_index()),
        (1, 0, 0)
    );
    append_range(&mut s, 1, 3, 4, 1);
    s.close().unwrap();
    let (s, rec) = open(tmp.path(), &f);
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);
    assert_eq!(s.last_index(), 3);
    check_range(&s, 1, 3, 4, 1);
}

#[test]
fn term_and_vote_survive_reopen_and_corruption_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, rec) = open(tmp.path(), &f);
    assert_eq!(rec.hard_state, HardState::default());
    let hs = HardState {
        term: 7,
        voted_for: Some("n2".to_string()),
    };
    s.save_hard_state(&hs).unwrap();
    assert_eq!(s.hard_state(), hs);
    s.close().unwrap();
    let (s, rec) = open(tmp.path(), &f);
    assert_eq!(rec.hard_state, hs);
    assert_eq!(s.hard_state(), hs);
    s.close().unwrap();
    let term = tmp.path().join("term");
    let mut bytes = std::fs::read(&term).unwrap();
    bytes[9] ^= 0xFF;
    std::fs::write(&term, &bytes).unwrap();
    let err = LogStore::open(opts(tmp.path(), FlushDiskType::SyncFlush), &f, noop_cb())
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("term"), "{}", err.message());
    std::fs::remove_file(&term).unwrap();
    let err = LogStore::open(opts(tmp.path(), FlushDiskType::SyncFlush), &f, noop_cb())
        .err()
        .unwrap();
    assert_eq!(
        err.kind(),
        ErrorKind::Corrupt,
        "missing term file with data present"
    );
}

#[test]
fn second_open_is_refused_until_close() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (s, _) = open(tmp.path(), &f);
    let err = LogStore::open(opts(tmp.path(), FlushDiskType::SyncFlush), &f, noop_cb())
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Exists);
    assert!(
        err.message().contains(&tmp.path().display().to_string()),
        "{}",
        err.message()
    );
    s.close().unwrap();
    let (s, _) = open(tmp.path(), &f);
    drop(s);
    let (s, _) = open(tmp.path(), &f);
    s.close().unwrap();
}

fn flushed_reaches_last(flush: FlushDiskType, kind: FlusherKind) {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(kind).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    let cb: FlushedCallback = Arc::new(move |i| {
        seen2.fetch_max(i, Ordering::SeqCst);
    });
    let (mut s, _) = LogStore::open(opts(tmp.path(), flush), &f, cb).unwrap();
    append_range(&mut s, 1, 300, 1, 0);
    wait_until("on_flushed(300)", Duration::from_secs(10), || {
        seen.load(Ordering::SeqCst) == 300
    });
    assert_eq!(s.flushed_index(), 300);
    assert!(s.flushed_index() <= s.last_index());
    s.save_commit_checkpoint(250);
    s.close().unwrap();
    let (s, rec) = LogStore::open(opts(tmp.path(), flush), &f, noop_cb()).unwrap();
    assert_eq!(rec.commit_checkpoint, 250);
    assert_eq!(s.last_index(), 300);
    drop(s);
    f.close();
}

#[test]
fn on_flushed_reaches_last_index_sync() {
    flushed_reaches_last(FlushDiskType::SyncFlush, FlusherKind::Pwrite);
    if Flusher::start(FlusherKind::IoUring).is_ok() {
        flushed_reaches_last(FlushDiskType::SyncFlush, FlusherKind::IoUring);
    }
}

#[test]
fn on_flushed_reaches_last_index_async() {
    flushed_reaches_last(FlushDiskType::AsyncFlush, FlusherKind::Pwrite);
    if Flusher::start(FlusherKind::IoUring).is_ok() {
        flushed_reaches_last(FlushDiskType::AsyncFlush, FlusherKind::IoUring);
    }
}

#[test]
fn many_stores_share_one_flusher() {
    let f = Flusher::start(FlusherKind::Auto).unwrap();
    let tmps: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut stores: Vec<LogStore> = tmps.iter().map(|t| open(t.path(), &f).0).collect();
    for round in 0..50u64 {
        for s in stores.iter_mut() {
            append_range(s, round + 1, round + 1, 1, 0);
        }
    }
    for s in &stores {
        wait_until("all stores flushed", Duration::from_secs(10), || {
            s.flushed_index() == 50
        });
    }
    for s in stores {
        s.close().unwrap();
    }
    f.close();
}

#[test]
fn dropping_a_store_without_close_does_not_hang_the_flusher() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp2 = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = open(tmp.path(), &f);
    append_range(&mut s, 1, 20, 1, 0);
    drop(s);
    let (mut s2, _) = open(tmp2.path(), &f);
    append_range(&mut s2, 1, 5, 1, 0);
    s2.sync().unwrap();
    s2.close().unwrap();
    f.close();
    f.close();
}

#[test]
fn retention_deletes_old_segments_but_keeps_what_is_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = open(tmp.path(), &f);
    append_range(&mut s, 1, 200, 1, 0);
    append_range(&mut s, 201, 260, 2, 0);
    s.sync().unwrap();
    let before = segment_files(tmp.path()).len();
    assert!(before >= 5);
    // Too young for a 1-hour reservation.
    assert_eq!(s.apply_retention(1, u64::MAX).unwrap(), 0);
    // keep_from 1 protects everything.
    assert_eq!(s.apply_retention(0, 1).unwrap(), 0);
    let keep_from = 120;
    let n = s.apply_retention(0, keep_from).unwrap();
    assert!(n >= 1, "nothing deleted");
    let first = s.first_index();
    assert!(first <= keep_from && first > 1);
    assert_eq!(s.term_at(first - 1), Some(1));
    assert_eq!(s.read(first - 1).unwrap_err().kind(), ErrorKind::NotFound);
    check_range(&s, first, 200, 1, 0);
    assert_eq!(segment_files(tmp.path()).len(), before - n);
    // Never the last segment, even when everything may go.
    let m = s.apply_retention(0, u64::MAX).unwrap();
    assert_eq!(segment_files(tmp.path()).len(), 1);
    assert!(m >= 1);
    let first = s.first_index();
    let prev_term = s.term_at(first - 1);
    s.close().unwrap();
    let (s, rec) = open(tmp.path(), &f);
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);
    assert_eq!(s.first_index(), first);
    assert_eq!(s.term_at(first - 1), prev_term);
    check_range(&s, first, 260, 2, 0);
}

#[test]
fn missing_or_corrupt_index_files_are_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = open(tmp.path(), &f);
    append_range(&mut s, 1, 120, 1, 0);
    s.close().unwrap();
    let idx: Vec<PathBuf> = {
        let mut v: Vec<_> = std::fs::read_dir(tmp.path().join("index"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    std::fs::write(&idx[1], b"short").unwrap();
    let mut bytes = std::fs::read(&idx[0]).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&idx[0], &bytes).unwrap();
    let (s, rec) = open(tmp.path(), &f);
    assert_eq!(rec.truncated_entries, 0, "{:?}", rec.notes);
    assert_eq!(
        rec.notes.iter().filter(|n| n.contains("rebuilt")).count(),
        2,
        "{:?}",
        rec.notes
    );
    check_range(&s, 1, 120, 1, 0);
    s.close().unwrap();
    let (_, rec) = open(tmp.path(), &f);
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);
}

#[test]
fn sync_under_the_mutex_the_callback_takes_does_not_deadlock() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Auto).unwrap();
    let group: Arc<std::sync::Mutex<Option<LogStore>>> = Arc::new(std::sync::Mutex::new(None));
    let calls = Arc::new(AtomicU64::new(0));
    let (g, c) = (group.clone(), calls.clone());
    let cb: FlushedCallback = Arc::new(move |i| {
        let guard = g.lock().unwrap();
        if let Some(s) = guard.as_ref() {
            assert!(i <= s.last_index());
        }
        c.fetch_add(1, Ordering::SeqCst);
    });
    let (s, _) = LogStore::open(opts(tmp.path(), FlushDiskType::SyncFlush), &f, cb).unwrap();
    *group.lock().unwrap() = Some(s);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let g = group.clone();
    let worker = std::thread::spawn(move || {
        for i in 1..=300u64 {
            let mut guard = g.lock().unwrap();
            let s = guard.as_mut().unwrap();
            s.append(&entry(i, 1, 0)).unwrap();
            if i % 3 == 0 {
                s.sync().unwrap();
                assert_eq!(s.flushed_index(), i);
            }
            if i % 50 == 0 {
                s.truncate_suffix(i - 5).unwrap();
                append_range(s, i - 5, i, 1, 0);
            }
        }
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("appends, syncs and truncations under the callback's mutex deadlocked");
    worker.join().unwrap();
    // The worker's syncs may have taken every write before the flusher thread ran a round
    // of its own; one more append, left to the flusher, must reach the callback.
    group
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .append(&entry(301, 1, 0))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the flusher never called back"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = group.lock().unwrap().take().unwrap();
    s.close().unwrap();
    f.close();
}

/// Sealed segments' entries are found through their index files, not memory: only the
/// open segment's (and one sealed segment whose index is on its way) stay in memory, and
/// every entry reads back with its term across truncation into a sealed segment,
/// retention and reopen.
#[test]
fn memory_holds_the_newest_segments_only() {
    let tmp = tempfile::tempdir().unwrap();
    let f = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = open(tmp.path(), &f);
    append_range(&mut s, 1, 300, 1, 0);
    append_range(&mut s, 301, 400, 2, 0);
    s.sync().unwrap();
    // One more segment roll after the sync seals every full segment.
    let mut last = 400;
    let segs = segment_files(tmp.path()).len();
    while segment_files(tmp.path()).len() == segs {
        last += 1;
        s.append(&entry(last, 2, 0)).unwrap();
    }
    let (in_memory, sealed) = s.entries_in_memory();
    let per_segment_max = (SEG / (HEADER + 100)) as usize;
    assert!(sealed + 2 >= segs, "{sealed} of {segs} segments sealed");
    assert!(
        in_memory <= 2 * per_segment_max,
        "{in_memory} entries in memory for {last} entries"
    );
    check_range(&s, 1, 300, 1, 0);
    check_range(&s, 301, last, 2, 0);
    // By position (the broker's offset lookups), in sealed segments too.
    let (_, m) = s.read(17).unwrap();
    assert_eq!(s.index_at_pos(m.pos), Some(17));
    assert_eq!(s.index_at_pos(m.pos + HEADER), Some(17));
    assert_eq!(s.index_at_pos(m.pos + 1), None);

    // A truncation into a sealed segment brings its entries back and cuts the rest.
    s.truncate_suffix(150).unwrap();
    assert_eq!(s.last_index(), 149);
    check_range(&s, 1, 149, 1, 0);
    append_range(&mut s, 150, 450, 3, 5);
    s.sync().unwrap();
    s.append(&entry(451, 3, 5)).unwrap();
    check_range(&s, 1, 149, 1, 0);
    check_range(&s, 150, 451, 3, 5);
    assert!(
        s.entries_in_memory().1 >= 1,
        "sealed again after the truncation"
    );

    // Retention drops sealed segments; what stays reads back.
    assert!(s.apply_retention(0, 300).unwrap() >= 1);
    let first = s.first_index();
    assert!(first > 1 && first <= 300);
    check_range(&s, first.max(150), 451, 3, 5);
    s.close().unwrap();

    let (s, rec) = open(tmp.path(), &f);
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);
    let (in_memory, sealed) = s.entries_in_memory();
    assert!(
        sealed >= 1 && in_memory <= per_segment_max,
        "{in_memory} in memory after open"
    );
    assert_eq!(s.first_index(), first);
    check_range(&s, first.max(150), 451, 3, 5);
}
