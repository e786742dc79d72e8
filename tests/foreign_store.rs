//! Stores rmqraft did not write are refused at open, through every path (the group API,
//! the store, the operator's term-file rewrite), and not one byte of them changes: a
//! DLedger store (written here byte by byte as DLedger lays it out), the real classic
//! RocketMQ stores in tests/fixtures/rocketmq-store/ (written by Java RocketMQ), a
//! classic commitlog beside an rmqraft store, unknown files, foreign bytes in a segment.
//! rmqraft's own torn tails are still repaired.

mod common;

use bytes::Bytes;
use rmqraft::config::FlusherKind;
use rmqraft::store::{Flusher, LogStore, StoreOptions};
use rmqraft::{Engine, Entry, EntryKind, ErrorKind, FlushDiskType};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Segment size of both the DLedger stores written here and the rmqraft stores.
const SEG: u64 = 64 << 10;

// ---------------------------------------------------------------------------------------
// What a directory holds, to compare before and after.

/// Every file and directory under `root`: relative path -> (size, SHA-256 of the bytes);
/// directories have size 0 and no digest.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, Option<[u8; 32]>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u64, Option<[u8; 32]>)>) {
        for item in std::fs::read_dir(dir).unwrap() {
            let path = item.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(rel, (0, None));
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(rel, (meta.len(), Some(Sha256::digest(&bytes).into())));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
            // The copies must be writable, so a refusal is not just a permission error.
            let mut perms = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).unwrap();
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rocketmq-store")
        .join(name)
}

// ---------------------------------------------------------------------------------------
// A DLedger store, written as DLedger 0.3.1.2 and HEAD lay it out
// (docs: reference/dledger.md "Storage", rocketmq-store-format.md 1.10): big-endian;
// 48-byte entry header (magic, size, index, term, pos, channel, chainCrc, bodyCrc, body
// length); a file's tail is a blank record (int -1, int bytes left) then zeros; index
// record k at k * 32: magic, pos, size, index, term; `currterm` a properties file.

const DLEDGER_MAGIC_NORMAL: i32 = 1;
const DLEDGER_MAGIC_NOOP: i32 = 2;
const DLEDGER_BLANK: i32 = -1;

fn dledger_header(magic: i32, index: u64, term: u64, pos: u64, body_len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(48);
    h.extend_from_slice(&magic.to_be_bytes());
    h.extend_from_slice(&((48 + body_len) as i32).to_be_bytes());
    h.extend_from_slice(&index.to_be_bytes());
    h.extend_from_slice(&term.to_be_bytes());
    h.extend_from_slice(&pos.to_be_bytes());
    h.extend_from_slice(&0i32.to_be_bytes()); // channel
    h.extend_from_slice(&0i32.to_be_bytes()); // chainCrc, never computed
    h.extend_from_slice(&0i32.to_be_bytes()); // bodyCrc, never computed
    h.extend_from_slice(&(body_len as i32).to_be_bytes());
    assert_eq!(h.len(), 48);
    h
}

#[derive(Clone, Copy)]
enum DLedgerVersion {
    /// 0.3.1.2 (what RocketMQ pins): only magic 1, a `checkpoint` properties file.
    V0_3_1_2,
    /// HEAD: NOOP entries with magic 2, a `snapshot/` directory, no checkpoint.
    Head,
}

/// Writes `entries` entries into `<dir>/data` and `<dir>/index` (no currterm), each data
/// file `SEG` bytes, the first file's tail blank-padded. Returns the data bytes written.
fn write_dledger_log(dir: &Path, entries: u64, version: DLedgerVersion) -> u64 {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::create_dir_all(dir.join("index")).unwrap();
    let mut files: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut index_file = vec![0u8; 32 * 1024];
    let mut pos = 0u64;
    for i in 0..entries {
        let body: Vec<u8> = (0..(700 + i as usize * 131 % 900))
            .map(|k| (k as u8) ^ (i as u8))
            .collect();
        let magic = match version {
            DLedgerVersion::Head if i % 5 == 4 => DLEDGER_MAGIC_NOOP,
            _ => DLEDGER_MAGIC_NORMAL,
        };
        let size = 48 + body.len() as u64;
        let room = SEG - pos % SEG;
        if size > room {
            // The tail: int -1 and the bytes left; the rest stays zero.
            let file = files
                .entry(pos / SEG * SEG)
                .or_insert_with(|| vec![0; SEG as usize]);
            let at = (pos % SEG) as usize;
            file[at..at + 4].copy_from_slice(&DLEDGER_BLANK.to_be_bytes());
            file[at + 4..at + 8].copy_from_slice(&(room as i32).to_be_bytes());
            pos += room;
        }
        let term = 1 + i / 7;
        let file = files
            .entry(pos / SEG * SEG)
            .or_insert_with(|| vec![0; SEG as usize]);
        let at = (pos % SEG) as usize;
        file[at..at + 48].copy_from_slice(&dledger_header(magic, i, term, pos, body.len()));
        file[at + 48..at + size as usize].copy_from_slice(&body);
        let rec = &mut index_file[i as usize * 32..i as usize * 32 + 32];
        rec[0..4].copy_from_slice(&magic.to_be_bytes());
        rec[4..12].copy_from_slice(&pos.to_be_bytes());
        rec[12..16].copy_from_slice(&(size as i32).to_be_bytes());
        rec[16..24].copy_from_slice(&i.to_be_bytes());
        rec[24..32].copy_from_slice(&term.to_be_bytes());
        pos += size;
    }
    assert!(files.len() >= 2, "the log spans several data files");
    for (start, bytes) in &files {
        std::fs::write(dir.join("data").join(format!("{start:020}")), bytes).unwrap();
    }
    std::fs::write(dir.join("index").join(format!("{:020}", 0)), &index_file).unwrap();
    pos
}

/// A whole DLedger member directory.
fn write_dledger_store(dir: &Path, version: DLedgerVersion) {
    let entries = 120;
    write_dledger_log(dir, entries, version);
    std::fs::write(
        dir.join("currterm"),
        "#Wed Dec 02 01:00:00 UTC 2026\ncurrTerm=3\nvoteLeader=n1\n",
    )
    .unwrap();
    match version {
        DLedgerVersion::V0_3_1_2 => std::fs::write(
            dir.join("checkpoint"),
            format!(
                "#Wed Dec 02 01:00:00 UTC 2026\nendIndex={}\ncommittedIndex={}\n",
                entries - 1,
                entries - 1
            ),
        )
        .unwrap(),
        DLedgerVersion::Head => std::fs::create_dir_all(dir.join("snapshot")).unwrap(),
    }
}

#[test]
fn the_dledger_writer_follows_the_documented_layout() {
    let tmp = tempfile::tempdir().unwrap();
    write_dledger_log(tmp.path(), 120, DLedgerVersion::Head);
    let data = std::fs::read(tmp.path().join("data/00000000000000000000")).unwrap();
    // Entry 0: magic 1, size 48 + 700, index 0, term 1, pos 0, channel/CRCs 0, body 700.
    let mut want = vec![0, 0, 0, 1, 0, 0, 0x02, 0xEC];
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(&[0; 12]);
    want.extend_from_slice(&[0, 0, 0x02, 0xBC]);
    assert_eq!(&data[..48], &want[..]);
    // Entry 1 follows at pos 748 and says so.
    assert_eq!(&data[748 + 24..748 + 32], &748u64.to_be_bytes());
    // The first file ends with a blank record: int -1 and the bytes left, then zeros.
    let second = tmp.path().join("data").join(format!("{SEG:020}"));
    let next = std::fs::read(second).unwrap();
    assert_eq!(
        &next[24..32],
        &SEG.to_be_bytes(),
        "the second file starts an entry"
    );
    let blank_at = data
        .windows(4)
        .rposition(|w| w == [0xFF; 4])
        .expect("a blank record");
    let left = i32::from_be_bytes(data[blank_at + 4..blank_at + 8].try_into().unwrap());
    assert_eq!(blank_at as u64 + left as u64, SEG);
    assert!(data[blank_at + 8..].iter().all(|&b| b == 0));
    // Index record 1: magic, pos, size, index, term.
    let index = std::fs::read(tmp.path().join("index/00000000000000000000")).unwrap();
    assert_eq!(&index[32..36], &1i32.to_be_bytes());
    assert_eq!(&index[36..44], &748u64.to_be_bytes());
    assert_eq!(&index[48..56], &1u64.to_be_bytes());
}

// ---------------------------------------------------------------------------------------
// Opening, every way.

fn store_opts(dir: &Path, classic_commitlog_dir: Option<PathBuf>) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        segment_size_bytes: SEG,
        flush: FlushDiskType::SyncFlush,
        async_flush_interval_ms: 10,
        entry_size_bytes_max: 16 << 10,
        prewrite_segments: true,
        classic_commitlog_dir,
    }
}

fn group_props(root: &Path, extra: &str) -> String {
    let ports = common::free_ports(3);
    common::group_props(
        "RaftNode00",
        &ports,
        0,
        root,
        &format!("mappedFileSizeCommitLog={SEG}\n{extra}"),
    )
}

/// How a refusal must look.
struct Refusal<'a> {
    kind: ErrorKind,
    /// Words the message must hold (besides "nothing was changed").
    what: &'a [&'a str],
    /// What `rewrite_lost_term_file` must answer (`None`: not tried, it has no
    /// configuration to see `storePathCommitLog` with).
    rewrite: Option<ErrorKind>,
}

/// Opens the member `dledger-n0` under `root` through the group API, the store and the
/// term-file rewrite; each must be refused as `want` says, and nothing under any of
/// `watched` may change.
fn assert_refused_unchanged(
    root: &Path,
    extra_props: &str,
    classic_commitlog_dir: Option<PathBuf>,
    want: Refusal,
    watched: &[&Path],
) {
    let before: Vec<_> = watched.iter().map(|d| snapshot(d)).collect();
    let member = root.join("dledger-n0");
    let unchanged = |how: &str| {
        for (d, b) in watched.iter().zip(&before) {
            assert_eq!(&snapshot(d), b, "{how} changed {}", d.display());
        }
    };
    let check = |how: &str, err: rmqraft::Error| {
        assert_eq!(err.kind(), want.kind, "{how}: {err}");
        for w in want.what.iter().chain(&["nothing was changed"]) {
            assert!(err.message().contains(w), "{how}: '{w}' not in: {err}");
        }
        unchanged(how);
    };

    let engine = Engine::open("").unwrap();
    let err = engine
        .open_group(&group_props(root, extra_props))
        .err()
        .expect("open_group refused");
    engine.close();
    check("Engine::open_group", err);

    let flusher = Flusher::start(FlusherKind::Pwrite).unwrap();
    let err = LogStore::open(
        store_opts(&member, classic_commitlog_dir),
        &flusher,
        Arc::new(|_| {}),
    )
    .err()
    .expect("LogStore::open refused");
    flusher.close();
    check("LogStore::open", err);

    if let Some(kind) = want.rewrite {
        let err = rmqraft::store::rewrite_lost_term_file(&member, 7).expect_err("rewrite refused");
        if kind == want.kind {
            check("rewrite_lost_term_file", err);
        } else {
            assert_eq!(err.kind(), kind, "rewrite_lost_term_file: {err}");
            unchanged("rewrite_lost_term_file");
        }
    }
}

/// The usual refusal: every path, the rewrite included, answers `kind`.
fn refusal<'a>(kind: ErrorKind, what: &'a [&'a str]) -> Refusal<'a> {
    Refusal {
        kind,
        what,
        rewrite: Some(kind),
    }
}

fn entry(i: u64, term: u64) -> Entry {
    Entry {
        index: i,
        term,
        kind: EntryKind::Normal,
        body: Bytes::from(vec![i as u8; 200 + (i as usize * 97) % 1500]),
    }
}

/// An rmqraft store with `n` entries at `dir`; returns the log position after the last.
fn write_own_store(dir: &Path, n: u64) -> u64 {
    let flusher = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = LogStore::open(store_opts(dir, None), &flusher, Arc::new(|_| {})).unwrap();
    let mut end = 0;
    for i in 1..=n {
        let m = s.append(&entry(i, 1)).unwrap();
        end = m.pos + 48 + entry(i, 1).body.len() as u64;
    }
    s.close().unwrap();
    flusher.close();
    end
}

/// Opens the rmqraft store at `dir` and checks it holds entries 1..=n.
fn assert_own_store_opens(dir: &Path, n: u64) -> rmqraft::store::Recovery {
    let flusher = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (s, rec) = LogStore::open(store_opts(dir, None), &flusher, Arc::new(|_| {})).unwrap();
    assert_eq!(s.last_index(), n, "{:?}", rec.notes);
    for i in 1..=n {
        assert_eq!(s.read(i).unwrap().0, entry(i, 1));
    }
    s.close().unwrap();
    flusher.close();
    rec
}

// ---------------------------------------------------------------------------------------
// The foreign directories.

#[test]
fn a_dledger_0_3_1_2_store_is_refused_and_unchanged() {
    common::init_logging();
    let root = tempfile::tempdir().unwrap();
    write_dledger_store(&root.path().join("dledger-n0"), DLedgerVersion::V0_3_1_2);
    assert_refused_unchanged(
        root.path(),
        "",
        None,
        refusal(
            ErrorKind::Config,
            &["DLedger store", "currTerm=3", "storePathRootDir"],
        ),
        &[root.path()],
    );
}

#[test]
fn a_dledger_head_store_with_noop_entries_is_refused_and_unchanged() {
    let root = tempfile::tempdir().unwrap();
    write_dledger_store(&root.path().join("dledger-n0"), DLedgerVersion::Head);
    assert_refused_unchanged(
        root.path(),
        "",
        None,
        refusal(ErrorKind::Config, &["DLedger store", "snapshot/"]),
        &[root.path()],
    );
}

#[test]
fn dledger_data_files_alone_are_recognised_by_their_magic() {
    // No currterm (it lives elsewhere, or was lost): the data and index files tell.
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    write_dledger_log(&member, 120, DLedgerVersion::V0_3_1_2);
    assert_refused_unchanged(
        root.path(),
        "",
        None,
        refusal(
            ErrorKind::Config,
            &[
                "DLedger store",
                "DLedger's magic 1",
                "32-byte DLedger index records",
            ],
        ),
        &[root.path()],
    );
}

#[test]
fn a_dledger_store_beside_an_rmqraft_term_file_is_still_refused() {
    // What an operator following the old advice (rewrite the lost term file) would leave.
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    write_dledger_store(&member, DLedgerVersion::V0_3_1_2);
    std::fs::remove_file(member.join("currterm")).unwrap();
    std::fs::remove_file(member.join("checkpoint")).unwrap();
    let other = tempfile::tempdir().unwrap();
    write_own_store(other.path(), 0);
    std::fs::copy(other.path().join("term"), member.join("term")).unwrap();
    std::fs::write(member.join("lock"), b"").unwrap();
    assert_refused_unchanged(
        root.path(),
        "",
        None,
        refusal(ErrorKind::Config, &["DLedger store"]),
        &[root.path()],
    );
}

#[test]
fn classic_rocketmq_stores_in_the_member_dir_are_refused_and_unchanged() {
    for (name, files, bytes) in [("v4.2-unclean", 5, 32768), ("v4.4-single", 1, 8192)] {
        let root = tempfile::tempdir().unwrap();
        copy_dir(&fixture(name), &root.path().join("dledger-n0"));
        assert_refused_unchanged(
            root.path(),
            "",
            None,
            refusal(
                ErrorKind::Config,
                &[&format!(
                    "this is a classic RocketMQ commitlog ({files} files, {bytes} bytes)"
                )],
            ),
            &[root.path()],
        );
    }
}

#[test]
fn classic_rocketmq_stores_as_the_store_root_are_refused_and_unchanged() {
    for (name, files, bytes) in [("v4.2-unclean", 5, 32768), ("v4.4-single", 1, 8192)] {
        let root = tempfile::tempdir().unwrap();
        copy_dir(&fixture(name), root.path());
        assert_refused_unchanged(
            root.path(),
            "",
            None,
            refusal(
                ErrorKind::Config,
                &[
                    &format!("this is a classic RocketMQ commitlog ({files} files, {bytes} bytes)"),
                    "upgrade path",
                    "storePathRootDir",
                ],
            ),
            &[root.path()],
        );
        assert!(!root.path().join("dledger-n0").exists());
    }
}

#[test]
fn a_classic_commitlog_at_store_path_commit_log_is_checked_then_accepted() {
    // Named with storePathCommitLog, a sound classic commitlog is the upgrade path: the
    // group opens (the broker serves it, tests/upgrade_open.rs) and its bytes stay.
    let old = tempfile::tempdir().unwrap();
    copy_dir(&fixture("v4.2-unclean").join("commitlog"), old.path());
    let before = snapshot(old.path());
    let root = tempfile::tempdir().unwrap();
    let extra = format!("storePathCommitLog={}", old.path().display());
    let engine = Engine::open("").unwrap();
    let group = engine
        .open_group(&group_props(root.path(), &extra))
        .expect("a sound old commitlog is accepted");
    group.close();
    engine.close();
    assert_eq!(snapshot(old.path()), before);

    // One with garbage in place of a record is refused, naming the file and the offset.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(old.path().join("00000000000000008192"))
        .unwrap();
    f.write_all_at(&[0xAB; 8], 0).unwrap();
    drop(f);
    let root = tempfile::tempdir().unwrap();
    assert_refused_unchanged(
        root.path(),
        &extra,
        Some(old.path().to_path_buf()),
        Refusal {
            kind: ErrorKind::Corrupt,
            what: &[
                "storePathCommitLog",
                "00000000000000008192 at offset 8192",
                "illegal magic code",
            ],
            rewrite: None,
        },
        &[root.path(), old.path()],
    );
}

#[test]
fn a_classic_commitlog_beside_an_rmqraft_store_is_refused_until_moved() {
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    write_own_store(&member, 30);
    copy_dir(
        &fixture("v4.4-single").join("commitlog"),
        &root.path().join("commitlog"),
    );
    copy_dir(
        &fixture("v4.4-single").join("config"),
        &root.path().join("config"),
    );
    assert_refused_unchanged(
        root.path(),
        "",
        None,
        refusal(
            ErrorKind::Config,
            &[
                "classic RocketMQ commitlog (1 files, 8192 bytes)",
                "beside it",
                "config/",
                "hide its messages",
            ],
        ),
        &[root.path()],
    );
    // Once the old store is moved away, the member opens with every entry.
    std::fs::remove_dir_all(root.path().join("commitlog")).unwrap();
    let rec = assert_own_store_opens(&member, 30);
    assert_eq!(rec.truncated_entries, 0);
}

#[test]
fn unknown_files_in_the_member_dir_are_refused_and_unchanged() {
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    write_own_store(&member, 10);
    std::fs::write(member.join("notes.txt"), b"ours, not rmqraft's").unwrap();
    std::fs::write(member.join("data").join("segment.bak"), vec![7u8; 5000]).unwrap();
    assert_refused_unchanged(
        root.path(),
        "",
        None,
        refusal(
            ErrorKind::Config,
            &["did not write", "notes.txt", "data/segment.bak"],
        ),
        &[root.path()],
    );
    // A lock file with content and a checkpoint of another size are not rmqraft's either.
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    std::fs::create_dir_all(&member).unwrap();
    std::fs::write(member.join("lock"), b"lock").unwrap();
    std::fs::write(member.join("checkpoint"), vec![1u8; 2000]).unwrap();
    assert_refused_unchanged(
        root.path(),
        "",
        None,
        refusal(
            ErrorKind::Config,
            &["lock (4 bytes", "checkpoint (2000 bytes"],
        ),
        &[root.path()],
    );
}

#[test]
fn a_segment_with_foreign_bytes_at_its_start_is_refused_and_unchanged() {
    // The first segment: before any segment of rmqraft's, unknown bytes are not a torn
    // write of rmqraft's, and the store is refused untouched.
    let segments = 2;
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    write_own_store(&member, 60 * segments);
    let name = format!("{:020}", 0);
    assert!(member.join("data").join(format!("{SEG:020}")).exists());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(member.join("data").join(&name))
        .unwrap();
    file.write_all_at(b"not an rmqraft record", 0).unwrap();
    drop(file);
    assert_refused_unchanged(
        root.path(),
        "",
        None,
        refusal(
            ErrorKind::Corrupt,
            &[
                &format!("segment data/{name} starts with bytes"),
                "6e 6f 74 20",
            ],
        ),
        &[root.path()],
    );
}

#[test]
fn a_torn_segment_start_followed_by_a_segment_of_rmqraft_is_cut_with_everything_after() {
    // The second of three segments: after a segment of rmqraft's, unknown bytes at its
    // start are a torn write (under ASYNC_FLUSH the power cut may bring the third back
    // and not the second); the log ends before it, and the third goes too.
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    write_own_store(&member, 180);
    let data = member.join("data");
    assert!(
        data.join(format!("{:020}", 2 * SEG)).exists(),
        "three segments"
    );
    let flusher = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (s, _) = LogStore::open(store_opts(&member, None), &flusher, Arc::new(|_| {})).unwrap();
    let first_of_second = (1..=180u64)
        .find(|&i| s.read(i).unwrap().1.pos >= SEG)
        .expect("a second segment");
    s.close().unwrap();
    flusher.close();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(data.join(format!("{SEG:020}")))
        .unwrap();
    file.write_all_at(b"not an rmqraft record", 0).unwrap();
    drop(file);
    let rec = assert_own_store_opens(&member, first_of_second - 1);
    assert!(rec.truncated_entries > 0, "{:?}", rec.notes);
    for k in 1..=2u64 {
        let name = format!("{:020}", k * SEG);
        assert!(!data.join(&name).exists(), "data/{name} was not cut");
        assert!(
            !member.join("index").join(&name).exists(),
            "index/{name} was not cut"
        );
    }
    // And the store goes on from there: it appends and reopens with the new entries.
    let flusher = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (mut s, _) = LogStore::open(store_opts(&member, None), &flusher, Arc::new(|_| {})).unwrap();
    s.append(&entry(first_of_second, 1)).unwrap();
    s.sync().unwrap();
    s.close().unwrap();
    flusher.close();
    assert_own_store_opens(&member, first_of_second);
}

#[test]
fn a_torn_first_write_of_the_last_segment_is_cut() {
    // A power cut may bring back the unsynced start of the newest segment as anything;
    // after segments of rmqraft's own that is its torn tail.
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    write_own_store(&member, 120);
    let flusher = Flusher::start(FlusherKind::Pwrite).unwrap();
    let (s, _) = LogStore::open(store_opts(&member, None), &flusher, Arc::new(|_| {})).unwrap();
    let first_of_last = (1..=120u64)
        .find(|&i| s.read(i).unwrap().1.pos >= SEG)
        .expect("a second segment");
    s.close().unwrap();
    flusher.close();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(member.join("data").join(format!("{SEG:020}")))
        .unwrap();
    file.write_all_at(&[0xA5; 100], 0).unwrap();
    drop(file);
    let rec = assert_own_store_opens(&member, first_of_last - 1);
    assert!(rec.truncated_entries > 0, "{:?}", rec.notes);
}

#[test]
fn foreign_records_after_rmqraft_entries_are_not_cut() {
    for record in ["dledger", "classic"] {
        let root = tempfile::tempdir().unwrap();
        let member = root.path().join("dledger-n0");
        let end = write_own_store(&member, 5);
        let head = match record {
            "dledger" => dledger_header(DLEDGER_MAGIC_NORMAL, 0, 1, end, 100),
            _ => {
                // The first record of the real v4.4 commitlog.
                let bytes =
                    std::fs::read(fixture("v4.4-single/commitlog/00000000000000000000")).unwrap();
                bytes[..48].to_vec()
            }
        };
        let seg = member.join("data").join(format!("{:020}", 0));
        let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        file.write_all_at(&head, end).unwrap();
        drop(file);
        let what = if record == "dledger" {
            "a DLedger entry"
        } else {
            "a classic RocketMQ message record"
        };
        assert_refused_unchanged(
            root.path(),
            "",
            None,
            // The rewrite reads no segment: it finds the valid term file and leaves it.
            Refusal {
                kind: ErrorKind::Corrupt,
                what: &[what, "after 5 rmqraft entries"],
                rewrite: Some(ErrorKind::InvalidArgument),
            },
            &[root.path()],
        );
    }
}

// ---------------------------------------------------------------------------------------
// What must keep working.

#[test]
fn an_empty_or_missing_member_dir_is_a_new_store() {
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    write_own_store(&member, 3);
    assert_own_store_opens(&member, 3);
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    std::fs::create_dir_all(&member).unwrap();
    write_own_store(&member, 3);
    assert_own_store_opens(&member, 3);
    // Files of a classic store at the root without commitlog data hold no message.
    let root = tempfile::tempdir().unwrap();
    copy_dir(&fixture("v4.4-single/config"), &root.path().join("config"));
    std::fs::create_dir_all(root.path().join("commitlog")).unwrap();
    let member = root.path().join("dledger-n0");
    write_own_store(&member, 3);
    assert_own_store_opens(&member, 3);
}

#[test]
fn a_torn_tail_of_rmqraft_s_own_is_still_repaired() {
    let root = tempfile::tempdir().unwrap();
    let member = root.path().join("dledger-n0");
    let end = write_own_store(&member, 8);
    // A record header of rmqraft's with a bad CRC after the valid records, as a crash
    // mid-write leaves it.
    let mut torn = vec![0u8; 48];
    torn[0..4].copy_from_slice(&0x3145_5152u32.to_le_bytes());
    torn[4..8].copy_from_slice(&300u32.to_le_bytes());
    torn[8..16].copy_from_slice(&9u64.to_le_bytes());
    torn[16..24].copy_from_slice(&1u64.to_le_bytes());
    torn[24..32].copy_from_slice(&end.to_le_bytes());
    torn[32] = 1;
    torn[36..40].copy_from_slice(&252u32.to_le_bytes());
    torn[40..44].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    let seg = member.join("data").join(format!("{:020}", 0));
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.write_all_at(&torn, end).unwrap();
    drop(file);
    let rec = assert_own_store_opens(&member, 8);
    assert_eq!(rec.truncated_entries, 1, "{:?}", rec.notes);
    assert!(
        rec.notes.iter().any(|n| n.contains("CRC")),
        "{:?}",
        rec.notes
    );
    let mut after = [0u8; 48];
    let file = std::fs::File::open(&seg).unwrap();
    file.read_exact_at(&mut after, end).unwrap();
    assert_eq!(after, [0u8; 48], "the torn record was cut");
    // And the term-file rewrite still works on rmqraft's own store.
    std::fs::write(member.join("term"), b"damaged").unwrap();
    rmqraft::store::rewrite_lost_term_file(&member, 5).unwrap();
    assert_own_store_opens(&member, 8);
}
