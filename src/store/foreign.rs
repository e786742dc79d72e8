//! Stores rmqraft did not write: DLedger's own `dledger-<selfId>/` (RocketMQ in DLedger
//! mode uses the same directory name for a different format), a classic RocketMQ
//! commitlog, or any other file. They are recognised before the open creates, writes,
//! locks or cuts anything, and refused with what they are and what to do; nothing in
//! them is changed. docs/FORMAT.md, "Foreign stores", lists what is recognised.
//!
//! Only reads happen here. What this check lets through is, file by file, rmqraft's own
//! (or empty); recovery then cuts only torn tails it can account for as its own (see
//! [`foreign_record`]).

use super::format;
use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// DLedger entry magics (big-endian int at offset 0): NORMAL, NOOP, CONFIG_CHANGE.
const DLEDGER_ENTRY_MAGICS: [u32; 3] = [1, 2, 3];
/// DLedger's blank record that ends a data file: int -1, then the bytes left.
const DLEDGER_BLANK_MAGIC: u32 = 0xFFFF_FFFF;
const DLEDGER_HEADER_SIZE: u32 = 48;
/// Classic RocketMQ magics (big-endian int at offset 4): message v1, v2, end-of-file blank.
const CLASSIC_MAGICS: [u32; 3] = [0xDAA3_20A7, 0xDAA3_20AB, 0xCBD4_3194];
const CLASSIC_BLANK_MAGIC: u32 = 0xCBD4_3194;
/// A classic store's `checkpoint` is one 4 KiB page.
const CLASSIC_CHECKPOINT_SIZE: u64 = 4096;
/// rmqraft's checkpoint ends with its second slot.
const OWN_CHECKPOINT_SIZE_MAX: u64 =
    format::CHECKPOINT_SLOT_STRIDE + format::CHECKPOINT_SLOT_SIZE as u64;
/// Bytes of a spare file checked at each end (a spare is written only with zeros).
const SPARE_CHECK_BYTES: u64 = 64 << 10;
/// Names of a classic RocketMQ store root (rocketmq-store-format.md 1.1), never rmqraft's.
const CLASSIC_NAMES: [&str; 11] = [
    "commitlog",
    "consumequeue",
    "consumequeue_ext",
    "batchconsumequeue",
    "config",
    "abort",
    "timerwheel",
    "timerlog",
    "epochFileCheckpoint",
    "brokerIdentity",
    "compaction",
];
/// Names shown in a message before "and N more".
const NAMES_SHOWN_MAX: usize = 6;

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// What the first bytes of a data (segment) file are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Zeros, or no bytes: a segment created but not yet written.
    Empty,
    /// An rmqraft entry or blank record (valid or not: recovery checks it).
    Own,
    DLedger,
    Classic,
    Unknown,
}

fn classify_data_head(head: &[u8; format::ENTRY_HEADER_SIZE]) -> Head {
    if head.iter().all(|&b| b == 0) {
        return Head::Empty;
    }
    let own = le_u32(head, 0);
    if own == format::ENTRY_MAGIC || own == format::BLANK_MAGIC {
        return Head::Own;
    }
    if CLASSIC_MAGICS.contains(&be_u32(head, 4)) {
        return Head::Classic;
    }
    let first = be_u32(head, 0);
    if DLEDGER_ENTRY_MAGICS.contains(&first) || first == DLEDGER_BLANK_MAGIC {
        return Head::DLedger;
    }
    Head::Unknown
}

/// A record of another format at log position `pos` with `room` bytes left in its
/// segment, or `None`. Recovery asks this where its scan of rmqraft records stops on
/// bytes that are not zeros: such bytes are cut as a torn tail of rmqraft's own, unless
/// they are well-formed records of DLedger or of a classic commitlog, which rmqraft
/// never writes (then the open is refused and nothing is cut).
pub(crate) fn foreign_record(head: &[u8], pos: u64, room: u64) -> Option<String> {
    if head.len() < format::ENTRY_HEADER_SIZE {
        return None;
    }
    let (int0, int1) = (be_u32(head, 0), be_u32(head, 4));
    if DLEDGER_ENTRY_MAGICS.contains(&int0)
        && int1 >= DLEDGER_HEADER_SIZE
        && u64::from(int1) <= room
        && be_u32(head, 44) == int1 - DLEDGER_HEADER_SIZE
    {
        let at = be_u64(head, 24);
        return Some(format!(
            "a DLedger entry (magic {int0}, index {}, term {}, {int1} bytes{})",
            be_u64(head, 8),
            be_u64(head, 16),
            if at == pos {
                ", at its own position"
            } else {
                ""
            }
        ));
    }
    if int0 == DLEDGER_BLANK_MAGIC && u64::from(int1) == room {
        return Some("a DLedger blank record (int -1, bytes left)".to_string());
    }
    if CLASSIC_MAGICS.contains(&int1) {
        return Some(if int1 == CLASSIC_BLANK_MAGIC {
            "a classic RocketMQ blank record (0xCBD43194)".to_string()
        } else {
            format!("a classic RocketMQ message record (magic {int1:#010X}, {int0} bytes)")
        });
    }
    None
}

/// Whether `path` is missing, or a file whose first record's room is zeros: a segment
/// file this store created and has not written yet (a roll-over that failed on a full
/// disk leaves one, and the retry takes it).
pub(crate) fn holds_no_record(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(read_head::<{ format::ENTRY_HEADER_SIZE }>(path)?
            .iter()
            .all(|&b| b == 0)),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(format!("stat {}", path.display()), e)),
    }
}

/// Up to `N` bytes from the start of `path` (fewer if the file is shorter), zero-padded.
fn read_head<const N: usize>(path: &Path) -> Result<[u8; N]> {
    let file = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut buf = [0u8; N];
    let mut got = 0;
    while got < N {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        }
    }
    Ok(buf)
}

fn list(dir: &Path) -> Result<Option<Vec<(String, std::fs::Metadata)>>> {
    let items = match std::fs::read_dir(dir) {
        Ok(items) => items,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for item in items {
        let item = item.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let path = item.path();
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            // Gone since the listing (an open store renames its spare segment into place):
            // nothing there to judge.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("stat {}", path.display()), e)),
        };
        out.push((item.file_name().to_string_lossy().into_owned(), meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(out))
}

fn show_names(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(NAMES_SHOWN_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_SHOWN_MAX {
        s.push_str(&format!(" and {} more", names.len() - NAMES_SHOWN_MAX));
    }
    s
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the member directory holds besides rmqraft's own files.
#[derive(Default)]
struct Findings {
    /// Signs of DLedger's format ("currterm (currTerm=3)", "data/0000…: DLedger entries").
    dledger: Vec<String>,
    dledger_data_files: u64,
    dledger_data_bytes: u64,
    /// Signs of a classic RocketMQ store.
    classic: Vec<String>,
    classic_log_files: u64,
    classic_log_bytes: u64,
    /// Files and directories that are no part of any store rmqraft recognises.
    unknown: Vec<String>,
    /// rmqraft-named files whose content rmqraft does not write.
    not_ours: Vec<String>,
    /// Segment or index files whose first bytes rmqraft cannot account for.
    bad_heads: Vec<String>,
}

/// Refuses (nothing changed) a store rmqraft did not write: in `dir` itself, in the
/// store root above it (`dir` named `dledger-<selfId>`), or in `classic_commitlog_dir`
/// (`storePathCommitLog`). A missing or empty `dir` is a new store.
pub(crate) fn check(dir: &Path, classic_commitlog_dir: Option<&Path>) -> Result<()> {
    check_member_dir(dir)?;
    check_root(dir, classic_commitlog_dir)
}

fn check_member_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(Error::config(format!(
                "storePathRootDir: {} is not a directory; nothing was changed",
                dir.display()
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("stat {}", dir.display()), e)),
    }
    let Some(items) = list(dir)? else {
        return Ok(());
    };
    let mut f = Findings::default();
    for (name, meta) in &items {
        let path = dir.join(name);
        match name.as_str() {
            "lock" if meta.is_file() => {
                if meta.len() != 0 {
                    // rmqraft's lock file is always empty; RocketMQ writes "lock" into its own.
                    f.not_ours
                        .push(format!("lock ({} bytes; rmqraft's is empty)", meta.len()));
                }
            }
            // The term file (recovery checks it), and what a crash may leave of a term
            // or spare being written (a power cut may leave unsynced bytes as anything).
            "term" | "term.tmp" | "spare.tmp" if meta.is_file() => {}
            "checkpoint" if meta.is_file() => check_checkpoint(&path, meta.len(), &mut f)?,
            "spare" if meta.is_file() => {
                if !spare_is_zeros(&path, meta.len())? {
                    f.not_ours
                        .push("spare (not all zeros; rmqraft's spare is)".to_string());
                }
            }
            // The message layer's state (docs/MESSAGES.md): consume queues, key index and
            // its checkpoint, all rebuildable from the log and checked by their own loader.
            "broker" if meta.is_dir() => {}
            "data" if meta.is_dir() => check_data_dir(&path, &mut f)?,
            "index" if meta.is_dir() => check_index_dir(&path, &mut f)?,
            n if n == "currterm" || n.starts_with("currterm.") => {
                let term = std::fs::read_to_string(&path).ok().and_then(|text| {
                    text.lines()
                        .find_map(|l| l.trim().strip_prefix("currTerm=").map(str::to_string))
                });
                f.dledger.push(match term {
                    Some(t) => format!("{n} (currTerm={})", t.trim()),
                    None => n.to_string(),
                });
            }
            "snapshot" if meta.is_dir() => f.dledger.push("snapshot/".to_string()),
            n if CLASSIC_NAMES.contains(&n) => {
                if n == "commitlog" && meta.is_dir() {
                    let s = scan_commitlog_dir(&path)?;
                    f.classic_log_files += s.files;
                    f.classic_log_bytes += s.bytes;
                }
                f.classic
                    .push(format!("{n}{}", if meta.is_dir() { "/" } else { "" }));
            }
            n => f
                .unknown
                .push(format!("{n}{}", if meta.is_dir() { "/" } else { "" })),
        }
    }
    verdict(dir, f)
}

fn verdict(dir: &Path, f: Findings) -> Result<()> {
    let shown = dir.display();
    if !f.dledger.is_empty() {
        return Err(Error::config(format!(
            "storePathRootDir: {shown} is a DLedger store (RocketMQ in DLedger mode; found {}; \
             {} data files, {} bytes): rmqraft keeps its own, different format under the same \
             directory name; nothing was changed. To serve its messages, take it over in place: \
             stop the DLedger broker and set rmqraftTakeOverDLedger=true (rmqraft's files then \
             go beside it, README \"Upgrade from DLedger mode\"; `rmqraft store convert \
             --dry-run` says what it would do). To start this member with an empty log, give \
             it another storePathRootDir",
            show_names(&f.dledger),
            f.dledger_data_files,
            f.dledger_data_bytes
        )));
    }
    if !f.classic.is_empty() {
        return Err(Error::config(format!(
            "storePathRootDir: {shown} holds a classic RocketMQ store (found {}): this is a \
             classic RocketMQ commitlog ({} files, {} bytes); rmqraft serves one only when \
             storePathCommitLog names its commitlog/ and storePathRootDir is a new root (the \
             upgrade path, README); nothing was changed. Keep the directory to keep its messages: to start this member with an \
             empty log, give it another storePathRootDir",
            show_names(&f.classic),
            f.classic_log_files,
            f.classic_log_bytes
        )));
    }
    if !f.unknown.is_empty() || !f.not_ours.is_empty() {
        let mut all = f.unknown;
        all.extend(f.not_ours);
        return Err(Error::config(format!(
            "storePathRootDir: {shown} holds files rmqraft did not write ({}): it is not an \
             rmqraft store, nor a DLedger or classic RocketMQ store rmqraft recognises; \
             nothing was changed. Move them out of {shown}, or give this member another \
             storePathRootDir",
            show_names(&all)
        )));
    }
    if !f.bad_heads.is_empty() {
        return Err(Error::corrupt(format!(
            "store {shown}: {}: rmqraft did not write these bytes, or they are damaged, and it \
             cuts only torn tails of its own records; nothing was changed. Keep a copy of \
             {shown}; if it is this member's own damaged log, see docs/FORMAT.md, \
             \"Foreign stores\"",
            show_names(&f.bad_heads)
        )));
    }
    Ok(())
}

fn check_checkpoint(path: &Path, len: u64, f: &mut Findings) -> Result<()> {
    if len == CLASSIC_CHECKPOINT_SIZE {
        f.classic
            .push("checkpoint (4096 bytes, a classic store's)".to_string());
        return Ok(());
    }
    if len > OWN_CHECKPOINT_SIZE_MAX {
        f.not_ours.push(format!(
            "checkpoint ({len} bytes; rmqraft's is at most {OWN_CHECKPOINT_SIZE_MAX})"
        ));
        return Ok(());
    }
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("committedIndex") || text.contains("endIndex") {
        // DLedger 0.3.1.2 keeps its commit index in a properties file of this name.
        f.dledger.push("checkpoint (properties)".to_string());
        return Ok(());
    }
    // rmqraft's slots hold binary integers and zeros between them: never text. A damaged
    // slot of its own is a hint lost, which recovery notes and rewrites.
    let text = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if text {
        f.not_ours
            .push("checkpoint (a text file; rmqraft's is binary)".to_string());
    }
    Ok(())
}

fn spare_is_zeros(path: &Path, len: u64) -> Result<bool> {
    let file = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut buf = vec![0u8; SPARE_CHECK_BYTES.min(len) as usize];
    for at in [0, len - buf.len() as u64] {
        file.read_exact_at(&mut buf, at)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        if buf.iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn check_data_dir(data: &Path, f: &mut Findings) -> Result<()> {
    // Unrecognised bytes (neither DLedger nor classic) at the start of a segment after at
    // least one segment of rmqraft's own are a torn write: under ASYNC_FLUSH several
    // segments can be unsynced at once, and a power cut may bring a later one back and
    // not this one, so what follows proves nothing. Recovery cuts the log there, with
    // every later segment: only unsynced, hence unacknowledged, entries lie beyond.
    // Before any segment of rmqraft's they are refused.
    let mut unknown_since_own = Vec::new();
    let mut own_seen = false;
    for (name, meta) in list(data)?.unwrap_or_default() {
        if !meta.is_file() || format::parse_segment_name(&name).is_none() {
            f.unknown.push(format!(
                "data/{name}{}",
                if meta.is_dir() { "/" } else { "" }
            ));
            continue;
        }
        let path = data.join(&name);
        let head = read_head::<{ format::ENTRY_HEADER_SIZE }>(&path)?;
        match classify_data_head(&head) {
            Head::Empty => {}
            Head::Own => own_seen = true,
            Head::DLedger => {
                if f.dledger_data_files == 0 {
                    f.dledger.push(format!(
                        "data/{name} starting with DLedger's magic {}",
                        be_u32(&head, 0) as i32
                    ));
                }
                f.dledger_data_files += 1;
                f.dledger_data_bytes += meta.len();
            }
            Head::Classic => {
                if f.classic_log_files == 0 {
                    f.classic
                        .push(format!("data/{name} holding classic message records"));
                }
                f.classic_log_files += 1;
                f.classic_log_bytes += meta.len();
            }
            Head::Unknown => {
                let why = format!(
                    "segment data/{name} starts with bytes that are neither an rmqraft \
                     record, a blank nor zeros ({})",
                    hex(&head[..8])
                );
                if own_seen {
                    unknown_since_own.push(why);
                } else {
                    f.bad_heads.push(why);
                }
            }
        }
    }
    if !unknown_since_own.is_empty() {
        log::warn!(
            "store {}: {}: taken as torn writes; recovery cuts the log there, with every later segment",
            data.display(),
            show_names(&unknown_since_own)
        );
    }
    Ok(())
}

fn check_index_dir(index: &Path, f: &mut Findings) -> Result<()> {
    let mut classic_names = 0;
    for (name, meta) in list(index)?.unwrap_or_default() {
        if name.len() == 17 && name.bytes().all(|b| b.is_ascii_digit()) && meta.is_file() {
            // A classic store's key index files are named by their creation time.
            classic_names += 1;
            if classic_names == 1 {
                f.classic
                    .push(format!("index/{name} (a classic key index file)"));
            }
            continue;
        }
        if !meta.is_file() || format::parse_segment_name(&name).is_none() {
            f.unknown.push(format!(
                "index/{name}{}",
                if meta.is_dir() { "/" } else { "" }
            ));
            continue;
        }
        if meta.len() < format::INDEX_HEADER_SIZE as u64 {
            // Shorter than rmqraft's header: no record of anyone's; rebuilt from data/.
            continue;
        }
        let path = index.join(&name);
        let head = read_head::<{ format::INDEX_HEADER_SIZE }>(&path)?;
        // Anything but DLedger's magic is rmqraft's header or its own damaged header (a
        // power cut may leave unsynced bytes as anything): index files are derived data,
        // rebuilt from their segment.
        if DLEDGER_ENTRY_MAGICS.contains(&be_u32(&head, 0))
            && !f.dledger.iter().any(|s| s.starts_with("index/"))
        {
            f.dledger
                .push(format!("index/{name} of 32-byte DLedger index records"));
        }
    }
    Ok(())
}

/// Segment files of a classic commitlog directory.
#[derive(Default)]
struct CommitlogScan {
    files: u64,
    bytes: u64,
    /// Files whose first record is a classic message or blank.
    with_records: u64,
    /// Files with other bytes at the start.
    with_other: u64,
}

fn scan_commitlog_dir(dir: &Path) -> Result<CommitlogScan> {
    let mut s = CommitlogScan::default();
    for (name, meta) in list(dir)?.unwrap_or_default() {
        if !meta.is_file() || format::parse_segment_name(&name).is_none() {
            continue;
        }
        s.files += 1;
        s.bytes += meta.len();
        let head = read_head::<8>(&dir.join(&name))?;
        if CLASSIC_MAGICS.contains(&be_u32(&head, 4)) {
            s.with_records += 1;
        } else if head.iter().any(|&b| b != 0) {
            s.with_other += 1;
        }
    }
    Ok(s)
}

/// The store root's classic commitlog (`<root>/commitlog`, or `storePathCommitLog`) is
/// refused while it holds data: rmqraft does not serve it yet, and starting beside it
/// would hide its messages behind a log that does not have them. Other signs of a
/// classic store at the root (consumequeue/, config/, abort, checkpoint) without
/// commitlog data hold no message; they are only logged, since a broker keeps files of
/// those names beside its log too.
fn check_root(member_dir: &Path, classic_commitlog_dir: Option<&Path>) -> Result<()> {
    let root = member_dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.starts_with("dledger-"))
        .and_then(|_| member_dir.parent());
    let mut candidates: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(dir) = classic_commitlog_dir {
        candidates.push((dir.to_path_buf(), "storePathCommitLog"));
    }
    if let Some(root) = root {
        let dir = root.join("commitlog");
        if !candidates.iter().any(|(d, _)| d == &dir) {
            candidates.push((dir, "storePathRootDir"));
        }
    }
    let signs: Vec<String> = match root {
        Some(root) => list(root)?
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, meta)| {
                (CLASSIC_NAMES.contains(&name.as_str()) && name != "commitlog")
                    || (name == "checkpoint" && meta.len() == CLASSIC_CHECKPOINT_SIZE)
            })
            .map(|(name, meta)| format!("{name}{}", if meta.is_dir() { "/" } else { "" }))
            .collect(),
        None => Vec::new(),
    };
    for (dir, key) in &candidates {
        if !dir.is_dir() {
            continue;
        }
        let s = scan_commitlog_dir(dir)?;
        if s.with_records == 0 && s.with_other == 0 {
            continue;
        }
        if *key == "storePathCommitLog" && s.with_records > 0 {
            // The upgrade path: the broker serves this log below rmqraft's own, read only
            // (crate::upgrade). It must be sound to the last record.
            let scan = crate::upgrade::classic::scan_offsets(dir)?;
            if let Some(p) = scan.problems.first() {
                return Err(Error::corrupt(format!(
                    "storePathCommitLog: {}: {p} ({} problems; `rmqraft store inspect {}` \
                     lists them); nothing was changed",
                    dir.display(),
                    scan.problems.len(),
                    dir.display()
                )));
            }
            continue;
        }
        let beside = if member_dir.exists() {
            format!(
                "starting rmqraft's log in {} beside it",
                member_dir.display()
            )
        } else {
            format!("starting a new log in {}", member_dir.display())
        };
        let what = if s.with_records > 0 {
            format!(
                "this is a classic RocketMQ commitlog ({} files, {} bytes)",
                s.files, s.bytes
            )
        } else {
            format!(
                "it holds {} files ({} bytes) rmqraft did not write, not in a format it \
                 recognises",
                s.files, s.bytes
            )
        };
        let also = if signs.is_empty() {
            String::new()
        } else {
            format!("; beside it: {}", show_names(&signs))
        };
        return Err(Error::config(format!(
            "{key}: {} holds an old store: {what}{also}; {beside} would hide its messages \
             behind a log that does not have them; nothing was changed. To serve its \
             messages, name it with storePathCommitLog (the upgrade path, README); else \
             move the old store out of the way, or give this member another \
             storePathRootDir",
            dir.display()
        )));
    }
    if !signs.is_empty() {
        log::warn!(
            "store root of {}: files of a classic RocketMQ store ({}) but no commitlog data; \
             rmqraft does not read them",
            member_dir.display(),
            show_names(&signs)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_told_apart() {
        let mut h = [0u8; 48];
        assert_eq!(classify_data_head(&h), Head::Empty);
        h[0..4].copy_from_slice(&format::ENTRY_MAGIC.to_le_bytes());
        assert_eq!(classify_data_head(&h), Head::Own);
        h[0..4].copy_from_slice(&1u32.to_be_bytes());
        h[4..8].copy_from_slice(&100u32.to_be_bytes());
        h[44..48].copy_from_slice(&52u32.to_be_bytes());
        assert_eq!(classify_data_head(&h), Head::DLedger);
        assert!(foreign_record(&h, 0, 1000)
            .unwrap()
            .contains("DLedger entry"));
        assert_eq!(foreign_record(&h, 0, 99), None, "does not fit");
        let mut c = [0u8; 48];
        c[0..4].copy_from_slice(&200u32.to_be_bytes());
        c[4..8].copy_from_slice(&0xDAA3_20A7u32.to_be_bytes());
        assert_eq!(classify_data_head(&c), Head::Classic);
        assert!(foreign_record(&c, 0, 1000).unwrap().contains("classic"));
        assert_eq!(classify_data_head(&[0xAB; 48]), Head::Unknown);
        assert_eq!(foreign_record(&[0xAB; 48], 0, 1000), None);
    }
}
