//! A DLedger store (RocketMQ in DLedger mode), read in place and never written:
//! `<storePathRootDir>/dledger-<selfId>/` with `data/`, `index/`, `currterm` and, in
//! DLedger 0.3.1.2, `checkpoint` (../shared/reference/dledger.md, "Storage";
//! rocketmq-store-format.md 1.10).
//!
//! A data file is named by its first global offset in 20 digits and holds entries back
//! to back, big-endian: a 48-byte header (magic, size = 48 + body, index, term, pos,
//! channel, chainCrc, bodyCrc, body length) and the body. An entry never straddles two
//! files: a file ends with a blank (int -1, int bytes left) or, for the last one written,
//! with zeros. Magic 1 is a NORMAL entry whose body is one classic message record
//! (RocketMQ's DLedgerCommitLog), its PHYSICALOFFSET patched to `pos + 48`; an empty
//! body, or magic 2, is a no-op. `index/` holds 32-byte records (magic, pos, size, index,
//! term) at `index * 32`; DLedger rebuilds them from `data/` at its recovery, so a
//! record that disagrees is a note here, not a problem.
//!
//! Every entry is checked: the magic, size against the body length, `pos` equal to its
//! place, indexes one after another, terms never going down, bodyCrc when one is set
//! (DLedger leaves it 0), and the message inside. A bad entry in the last written file
//! is a torn tail: DLedger's own recovery cuts it, and so does
//! this reader (a note says so). Anything else wrong is a [`Problem`] naming the file and
//! the offset. Nothing here opens a file for writing.

use super::classic::RecordMeta;
use super::{OldLog, OldLogDigest, Problem};
use crate::broker::record::{self, MessageRecord};
use crate::error::{Error, Result};
use bytes::Bytes;
use memmap2::Mmap;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The entry header: the body starts here (`DLedgerEntry.BODY_OFFSET`).
pub const HEADER_SIZE: u64 = 48;
/// One index record.
pub const INDEX_RECORD_SIZE: u64 = 32;
pub const MAGIC_NORMAL: i32 = 1;
pub const MAGIC_NOOP: i32 = 2;
/// Ends a data file: int -1, int bytes left (`MmapFileList.BLANK_MAGIC_CODE`).
pub const MAGIC_BLANK: i32 = -1;
/// The shortest blank (`MmapFileList.MIN_BLANK_LEN`).
const MIN_BLANK_LEN: u64 = 8;
const SEGMENT_NAME_LEN: usize = 20;

/// One entry of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryInfo {
    pub index: u64,
    pub term: u64,
    /// Its global offset (the header's `pos`).
    pub pos: u64,
    /// 48 + body.
    pub size: u32,
    pub magic: i32,
    /// Whether its body is a message (at `pos + 48`).
    pub message: bool,
}

/// One data file.
pub struct Segment {
    pub name: String,
    pub path: PathBuf,
    pub from: u64,
    pub len: u64,
    /// Bytes holding the entries read (and the closing blank, when read).
    pub used: u64,
    pub sealed: bool,
    map: Option<Mmap>,
}

impl Segment {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// A `dledger-<selfId>` directory as found.
pub struct Scan {
    /// The `dledger-<selfId>` directory.
    pub dir: PathBuf,
    /// The data file size (the first file's length).
    pub segment_size: u64,
    pub segments: Vec<Segment>,
    /// Every entry read, in order.
    pub entries: Vec<EntryInfo>,
    /// Where each message starts (`pos + 48`), in order.
    pub offsets: Vec<u64>,
    /// What each message is (empty from [`scan_offsets`]).
    pub records: Vec<RecordMeta>,
    /// Global offset after the last entry read (or after the last sealed file).
    pub end: u64,
    /// First offset after the old log: `end` rounded up to the end of its file. New
    /// messages get commitlog offsets from here on.
    pub divided: u64,
    /// `currterm`: currTerm and voteLeader.
    pub curr_term: Option<u64>,
    pub vote_leader: Option<String>,
    /// DLedger 0.3.1.2's `checkpoint`: committedIndex.
    pub committed_index: Option<u64>,
    /// Entries after `served_through` (given to the scan) left out: those in the data
    /// file where the cut falls (later files are not read).
    pub left_out: u64,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

impl Scan {
    pub fn first_index(&self) -> Option<u64> {
        self.entries.first().map(|e| e.index)
    }

    pub fn last_index(&self) -> Option<u64> {
        self.entries.last().map(|e| e.index)
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.term)
    }

    /// The term Raft continues from: currterm's, or the last entry's if higher.
    pub fn term(&self) -> u64 {
        self.curr_term.unwrap_or(0).max(self.last_term())
    }

    /// Entries whose magic is NOOP or whose body is empty.
    pub fn noops(&self) -> usize {
        self.entries.iter().filter(|e| !e.message).count()
    }
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn segment_name(name: &str) -> Option<u64> {
    (name.len() == SEGMENT_NAME_LEN && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// Whether `dir` (a `dledger-<selfId>` directory) looks like DLedger's: a `currterm`
/// file, or a data file starting with a DLedger magic.
pub fn is_dledger_dir(dir: &Path) -> bool {
    if dir.join("currterm").is_file() {
        return true;
    }
    let Ok(items) = std::fs::read_dir(dir.join("data")) else {
        return false;
    };
    items.filter_map(|i| i.ok()).any(|i| {
        segment_name(&i.file_name().to_string_lossy()).is_some() && {
            let mut head = [0u8; 4];
            File::open(i.path())
                .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0))
                .is_ok()
                && [MAGIC_NORMAL, MAGIC_NOOP, MAGIC_BLANK].contains(&i32::from_be_bytes(head))
        }
    })
}

/// Java properties as DLedger writes them (`key=value` lines, `#` comments).
fn properties(path: &Path) -> Result<Option<Vec<(String, String)>>> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    };
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
            .filter_map(|l| {
                let (k, v) = l.split_once(['=', ':'])?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect(),
    ))
}

/// Reads `dir` (a `dledger-<selfId>` directory) and checks every entry. I/O errors are
/// errors; anything wrong with the bytes is a [`Problem`] in the result.
pub fn scan(dir: &Path) -> Result<Scan> {
    scan_with(dir, true, None)
}

/// As [`scan`], keeping only where each message starts, and reading entries only up to
/// index `served_through` when given (the prefix the members agree on).
pub fn scan_offsets(dir: &Path, served_through: Option<u64>) -> Result<Scan> {
    scan_with(dir, false, served_through)
}

fn scan_with(dir: &Path, keep_records: bool, served_through: Option<u64>) -> Result<Scan> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let (mut curr_term, mut vote_leader, mut committed_index) = (None, None, None);
    let currterm = dir.join("currterm");
    match properties(&currterm)? {
        Some(props) => {
            for (k, v) in props {
                match k.as_str() {
                    "currTerm" => match v.parse::<u64>() {
                        Ok(t) => curr_term = Some(t),
                        Err(_) => problems.push(Problem {
                            file: "currterm".to_string(),
                            offset: None,
                            what: format!("currTerm={v} is not a term (a whole number)"),
                        }),
                    },
                    "voteLeader" if !v.is_empty() => vote_leader = Some(v),
                    _ => {}
                }
            }
            if curr_term.is_none() && problems.is_empty() {
                problems.push(Problem {
                    file: "currterm".to_string(),
                    offset: None,
                    what: "no currTerm= line".to_string(),
                });
            }
        }
        None => notes.push("no currterm file: the term is taken from the last entry".to_string()),
    }
    if let Some(props) = properties(&dir.join("checkpoint"))? {
        committed_index = props
            .iter()
            .find(|(k, _)| k == "committedIndex")
            .and_then(|(_, v)| v.parse().ok());
    }
    let data = dir.join("data");
    let items =
        std::fs::read_dir(&data).map_err(|e| Error::io(format!("list {}", data.display()), e))?;
    let mut files = Vec::new();
    for item in items {
        let item = item.map_err(|e| Error::io(format!("list {}", data.display()), e))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let meta = std::fs::metadata(item.path())
            .map_err(|e| Error::io(format!("stat {}", item.path().display()), e))?;
        match segment_name(&name) {
            Some(from) if meta.is_file() => files.push((from, name, meta.len())),
            _ => problems.push(Problem {
                file: format!("data/{name}"),
                offset: None,
                what: "not a DLedger data file (files named by their offset in 20 digits)"
                    .to_string(),
            }),
        }
    }
    files.sort();
    let segment_size = files.iter().map(|f| f.2).find(|&l| l > 0).unwrap_or(0);
    let mut segments: Vec<Segment> = Vec::with_capacity(files.len());
    let last_no = files.len().saturating_sub(1);
    for (no, (from, name, len)) in files.into_iter().enumerate() {
        let path = data.join(&name);
        let shown = format!("data/{name}");
        if let Some(prev) = segments.last() {
            if prev.from + segment_size != from {
                problems.push(Problem {
                    file: shown.clone(),
                    offset: Some(from),
                    what: format!(
                        "file starts at {from} but the one before ({}) ends at {}: a file is \
                         missing or misnamed",
                        prev.name,
                        prev.from + segment_size
                    ),
                });
            }
        }
        if len == 0 && no == last_no && no > 0 {
            notes.push(format!(
                "{shown}: an empty last file (created, never written)"
            ));
        } else if len != segment_size {
            problems.push(Problem {
                file: shown.clone(),
                offset: Some(from + len.min(segment_size)),
                what: format!(
                    "{len} bytes, but the data files are {segment_size} bytes (a truncated or \
                     grown copy?)"
                ),
            });
        }
        let map = if len > 0 {
            let f =
                File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
            // SAFETY: read-only and private to this process; the DLedger broker that
            // wrote the files is stopped, and nothing in rmqraft writes them.
            Some(
                unsafe { Mmap::map(&f) }
                    .map_err(|e| Error::io(format!("map {}", path.display()), e))?,
            )
        } else {
            None
        };
        segments.push(Segment {
            name: shown,
            path,
            from,
            len,
            used: 0,
            sealed: false,
            map,
        });
    }
    let mut st = State {
        keep_records,
        served_through,
        entries: Vec::new(),
        offsets: Vec::new(),
        records: Vec::new(),
        problems,
        notes,
        left_out: 0,
        stopped: false,
    };
    let first = segments.first().map_or(0, |s| s.from);
    let mut end = first;
    let mut ended = false;
    let last_written = segments
        .iter()
        .rposition(|s| s.bytes().iter().any(|&b| b != 0));
    for (no, seg) in segments.iter_mut().enumerate() {
        if ended {
            if !st.stopped {
                if let Some(at) = seg.bytes().iter().position(|&x| x != 0) {
                    st.problems.push(Problem {
                        file: seg.name.clone(),
                        offset: Some(seg.from + at as u64),
                        what: format!(
                            "bytes after the log's end at {end} (entries must follow each \
                             other without a gap)"
                        ),
                    });
                }
            }
            continue;
        }
        let torn_ok = Some(no) == last_written;
        let (used, sealed) = st.scan_segment(seg, torn_ok);
        seg.used = used;
        seg.sealed = sealed;
        if sealed {
            end = seg.from + seg.len;
        } else {
            end = seg.from + used;
            ended = true;
        }
    }
    let divided = match segments
        .iter()
        .find(|s| s.from <= end && end < s.from + segment_size)
    {
        Some(s) if end > s.from => s.from + segment_size,
        _ => end,
    };
    let index_notes = check_index(dir, &st.entries)?;
    st.notes.extend(index_notes);
    if let (Some(ci), Some(last)) = (committed_index, st.entries.last()) {
        if last.index > ci {
            st.notes.push(format!(
                "checkpoint: committedIndex {ci}, the log reaches index {}: entries after \
                 {ci} may not be committed (the members' logs are compared before serving)",
                last.index
            ));
        }
    }
    Ok(Scan {
        dir: dir.to_path_buf(),
        segment_size,
        segments,
        entries: st.entries,
        offsets: st.offsets,
        records: st.records,
        end,
        divided,
        curr_term,
        vote_leader,
        committed_index,
        left_out: st.left_out,
        problems: st.problems,
        notes: st.notes,
    })
}

struct State {
    keep_records: bool,
    served_through: Option<u64>,
    entries: Vec<EntryInfo>,
    offsets: Vec<u64>,
    records: Vec<RecordMeta>,
    problems: Vec<Problem>,
    notes: Vec<String>,
    left_out: u64,
    /// Reading stopped at a problem (what follows is not read).
    stopped: bool,
}

impl State {
    /// Scans one data file; returns (bytes used, sealed).
    fn scan_segment(&mut self, seg: &Segment, torn_ok: bool) -> (u64, bool) {
        let b = seg.bytes();
        let len = b.len();
        let mut pos = 0usize;
        loop {
            if pos == len {
                return (pos as u64, false);
            }
            let at = seg.from + pos as u64;
            if len - pos < MIN_BLANK_LEN as usize {
                if b[pos..].iter().all(|&x| x == 0) {
                    return (pos as u64, false);
                }
                self.bad(
                    seg,
                    pos,
                    torn_ok,
                    format!(
                        "{} bytes left at the file's end that are neither zeros nor a blank",
                        len - pos
                    ),
                );
                return (pos as u64, false);
            }
            let magic = be_i32(b, pos);
            let size = be_i32(b, pos + 4);
            if magic == 0 && size == 0 {
                if let Some(n) = b[pos..].iter().position(|&x| x != 0) {
                    self.bad(
                        seg,
                        pos + n,
                        torn_ok,
                        format!(
                            "bytes after the log's end at {at} (zeros, then data: an entry \
                         missing or overwritten)"
                        ),
                    );
                }
                return (pos as u64, false);
            }
            if magic == MAGIC_BLANK {
                if i64::from(size) != (len - pos) as i64 {
                    self.bad(
                        seg,
                        pos,
                        torn_ok,
                        format!(
                            "a blank declaring {size} bytes, but {} are left in the file",
                            len - pos
                        ),
                    );
                    return (pos as u64, false);
                }
                return (pos as u64 + MIN_BLANK_LEN, true);
            }
            if magic != MAGIC_NORMAL && magic != MAGIC_NOOP {
                self.bad(
                    seg,
                    pos,
                    torn_ok,
                    format!(
                        "not an entry: magic {magic} (DLedger writes 1 = NORMAL, 2 = NOOP, -1 = \
                     blank)"
                    ),
                );
                return (pos as u64, false);
            }
            if (size as i64) < HEADER_SIZE as i64 || size as usize > len - pos {
                self.bad(
                    seg,
                    pos,
                    torn_ok,
                    format!(
                        "an entry of size {size} does not fit in the {} bytes left in the file",
                        len - pos
                    ),
                );
                return (pos as u64, false);
            }
            let index = be_i64(b, pos + 8);
            let term = be_i64(b, pos + 16);
            let epos = be_i64(b, pos + 24);
            let body_crc = be_i32(b, pos + 40);
            let body_len = be_i32(b, pos + 44);
            if i64::from(body_len) != i64::from(size) - HEADER_SIZE as i64 {
                self.bad(
                    seg,
                    pos,
                    torn_ok,
                    format!(
                        "entry size {size} but body length {body_len} (size must be 48 + body)"
                    ),
                );
                return (pos as u64, false);
            }
            if epos != at as i64 {
                self.bad(
                    seg,
                    pos,
                    torn_ok,
                    format!("entry pos {epos} but the entry sits at {at} (bytes of another place)"),
                );
                return (pos as u64, false);
            }
            let (index, term) = (index as u64, term as u64);
            if let Some(prev) = self.entries.last() {
                if index != prev.index + 1 {
                    self.bad(
                        seg,
                        pos,
                        torn_ok,
                        format!(
                            "entry index {index} after index {} (indexes must follow each other)",
                            prev.index
                        ),
                    );
                    return (pos as u64, false);
                }
                if term < prev.term {
                    self.bad(
                        seg,
                        pos,
                        torn_ok,
                        format!(
                            "entry {index} has term {term}, below term {} of the entry before",
                            prev.term
                        ),
                    );
                    return (pos as u64, false);
                }
            }
            let body = &b[pos + HEADER_SIZE as usize..pos + size as usize];
            if body_crc != 0 && body_crc != crc32fast::hash(body) as i32 {
                self.bad(
                    seg,
                    pos,
                    torn_ok,
                    format!("entry {index}: bodyCrc {body_crc} does not match the body"),
                );
                return (pos as u64, false);
            }
            let message = magic == MAGIC_NORMAL && !body.is_empty();
            let mut meta = None;
            if message {
                let want = at + HEADER_SIZE;
                match MessageRecord::decode(body) {
                    Ok((rec, n)) if n != body.len() => {
                        let _ = rec;
                        self.bad(
                            seg,
                            pos,
                            torn_ok,
                            format!(
                                "entry {index}: its message's TOTALSIZE is {n}, the body {} bytes",
                                body.len()
                            ),
                        );
                        return (pos as u64, false);
                    }
                    Ok((rec, _)) if rec.physical_offset != want as i64 => {
                        self.bad(
                            seg,
                            pos,
                            torn_ok,
                            format!(
                            "entry {index}: its message's PHYSICALOFFSET is {}, not pos + 48 = \
                             {want}",
                            rec.physical_offset
                        ),
                        );
                        return (pos as u64, false);
                    }
                    Ok((rec, n)) => meta = Some(record_meta(&rec, n)),
                    Err(e) => {
                        self.bad(
                            seg,
                            pos,
                            torn_ok,
                            format!(
                                "entry {index}: its body is not a RocketMQ message record: {}",
                                e.message()
                            ),
                        );
                        return (pos as u64, false);
                    }
                }
            }
            if self.served_through.is_some_and(|t| index > t) {
                // Left out: the members agree only on the entries before it.
                self.left_out += 1;
                self.stopped = true;
                let more = count_rest(b, pos);
                self.left_out += more;
                return (pos as u64, false);
            }
            self.entries.push(EntryInfo {
                index,
                term,
                pos: at,
                size: size as u32,
                magic,
                message,
            });
            if let Some(m) = meta {
                self.offsets.push(at + HEADER_SIZE);
                if self.keep_records {
                    self.records.push(m);
                }
            }
            pos += size as usize;
        }
    }

    /// A bad entry at `pos`: a torn tail (a note) when it is in the last written file,
    /// else a problem.
    fn bad(&mut self, seg: &Segment, pos: usize, torn_ok: bool, what: String) {
        self.stopped = true;
        let at = seg.from + pos as u64;
        if torn_ok {
            self.notes.push(format!(
                "{} at offset {at}: {what}: a torn tail, cut as DLedger's recovery cuts it \
                 (the log ends at {at}; nothing is written)",
                seg.name
            ));
            return;
        }
        self.problems.push(Problem {
            file: seg.name.clone(),
            offset: Some(at),
            what,
        });
    }
}

/// Entries that look whole after `pos` in one file (for "N entries left out").
fn count_rest(b: &[u8], mut pos: usize) -> u64 {
    let mut n = 0;
    // Skip the one already counted.
    let mut first = true;
    while b.len() - pos >= HEADER_SIZE as usize {
        let magic = be_i32(b, pos);
        let size = be_i32(b, pos + 4);
        if !(magic == MAGIC_NORMAL || magic == MAGIC_NOOP)
            || (size as i64) < HEADER_SIZE as i64
            || size as usize > b.len() - pos
        {
            break;
        }
        if !first {
            n += 1;
        }
        first = false;
        pos += size as usize;
    }
    n
}

fn record_meta(rec: &MessageRecord, size: usize) -> RecordMeta {
    RecordMeta {
        offset: rec.physical_offset as u64,
        size: size as u32,
        topic: rec.topic.clone(),
        queue_id: rec.queue_id,
        queue_offset: rec.queue_offset,
        sys_flag: rec.sys_flag,
        store_timestamp: rec.store_timestamp,
        store_host: rec.store_host,
        tags_code: rec.tags_code(),
        keys: rec.keys().map(str::to_string),
        uniq_key: rec.uniq_key().map(str::to_string),
        delay_level: rec
            .property(record::prop::DELAY)
            .and_then(|d| d.parse().ok()),
    }
}

/// Compares the index records with the entries read from `data/`; notes what differs
/// (DLedger rebuilds its index from data/ at recovery; rmqraft reads data/ only).
fn check_index(dir: &Path, entries: &[EntryInfo]) -> Result<Vec<String>> {
    let index = dir.join("index");
    let mut files: Vec<(u64, PathBuf)> = match std::fs::read_dir(&index) {
        Ok(items) => items
            .filter_map(|i| i.ok())
            .filter_map(|i| Some((segment_name(&i.file_name().to_string_lossy())?, i.path())))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(if entries.is_empty() {
                Vec::new()
            } else {
                vec![
                    "no index/ directory (DLedger rebuilds it; rmqraft reads data/ only)"
                        .to_string(),
                ]
            })
        }
        Err(e) => return Err(Error::io(format!("list {}", index.display()), e)),
    };
    files.sort();
    let mut maps = Vec::with_capacity(files.len());
    for (from, path) in files {
        let f = File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let len = f
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        if len == 0 {
            continue;
        }
        // SAFETY: as for the data files.
        let map = unsafe { Mmap::map(&f) }
            .map_err(|e| Error::io(format!("map {}", path.display()), e))?;
        maps.push((from, map));
    }
    let mut differ = 0u64;
    let mut first_differ = None;
    for e in entries {
        let at = e.index * INDEX_RECORD_SIZE;
        let rec = maps
            .iter()
            .rev()
            .find(|(from, m)| *from <= at && at + INDEX_RECORD_SIZE <= from + m.len() as u64)
            .map(|(from, m)| &m[(at - from) as usize..(at - from + INDEX_RECORD_SIZE) as usize]);
        let ok = rec.is_some_and(|r| {
            be_i32(r, 0) == e.magic
                && be_i64(r, 4) as u64 == e.pos
                && be_i32(r, 12) as u32 == e.size
                && be_i64(r, 16) as u64 == e.index
                && be_i64(r, 24) as u64 == e.term
        });
        if !ok {
            differ += 1;
            first_differ.get_or_insert(e.index);
        }
    }
    Ok(match first_differ {
        Some(i) => vec![format!(
            "index/: {differ} index records missing or differing from data/, the first for \
             entry {i} (DLedger rebuilds them at recovery; rmqraft reads data/ only)"
        )],
        None => Vec::new(),
    })
}

/// SHA-256 over the data file size, the first offset and, file by file, the bytes
/// holding the entries read: the same on two copies exactly when they hold the same
/// entries (index, term, message) at the same offsets.
pub fn digest_of(scan: &Scan) -> OldLogDigest {
    let mut h = Sha256::new();
    h.update(b"rmqraft dledger data v1\n");
    h.update(scan.segment_size.to_be_bytes());
    let first = scan.segments.first().map_or(0, |s| s.from);
    h.update(first.to_be_bytes());
    let mut bytes = 0;
    let mut segments = Vec::with_capacity(scan.segments.len());
    for seg in &scan.segments {
        let used = &seg.bytes()[..seg.used as usize];
        h.update(used);
        bytes += used.len() as u64;
        segments.push((seg.from, seg.used, Sha256::digest(used).into()));
    }
    OldLogDigest {
        kind: "dledger",
        first,
        end: scan.end,
        divided: scan.divided,
        bytes,
        sha256: h.finalize().into(),
        segments,
    }
}

/// A sound DLedger log, open for reading. Never writes the files.
pub struct DLedgerLog {
    scan: Scan,
    digest: OldLogDigest,
}

impl DLedgerLog {
    /// Opens `dir` (a `dledger-<selfId>` directory), serving entries up to index
    /// `served_through` when given; refuses any problem, naming the first.
    pub fn open(dir: &Path, served_through: Option<u64>) -> Result<DLedgerLog> {
        let scan = scan_offsets(dir, served_through)?;
        if let Some(first) = scan.problems.first() {
            let more = match scan.problems.len() {
                1 => String::new(),
                n => format!(
                    " ({} more problems: `rmqraft store inspect` lists them)",
                    n - 1
                ),
            };
            return Err(Error::corrupt(format!(
                "DLedger store {}: {}: {}{more}; nothing was changed",
                dir.display(),
                first.place(),
                first.what
            )));
        }
        let digest = digest_of(&scan);
        Ok(DLedgerLog { scan, digest })
    }

    pub fn scan(&self) -> &Scan {
        &self.scan
    }
}

impl OldLog for DLedgerLog {
    fn kind(&self) -> &'static str {
        "DLedger log"
    }

    fn divided(&self) -> u64 {
        self.scan.divided
    }

    fn offsets(&self) -> &[u64] {
        &self.scan.offsets
    }

    fn read(&self, offset: u64) -> Result<Option<Bytes>> {
        if self.scan.offsets.binary_search(&offset).is_err() {
            return Ok(None);
        }
        let Some(seg) = self
            .scan
            .segments
            .iter()
            .rev()
            .find(|s| s.from <= offset && offset < s.from + s.len)
        else {
            return Ok(None);
        };
        let at = (offset - seg.from) as usize;
        let b = seg.bytes();
        // Checked at open: a whole message, the body of its entry, starts here.
        let size = be_i32(b, at) as usize;
        Ok(Some(Bytes::copy_from_slice(&b[at..at + size])))
    }

    fn digest(&self) -> &OldLogDigest {
        &self.digest
    }
}

/// The message bytes of a scanned record (any scan, sound or not).
pub fn record_bytes<'a>(scan: &'a Scan, meta: &RecordMeta) -> &'a [u8] {
    let seg = scan
        .segments
        .iter()
        .rev()
        .find(|s| s.from <= meta.offset && meta.offset < s.from + s.len)
        .expect("a scanned record lies in a data file");
    let at = (meta.offset - seg.from) as usize;
    &seg.bytes()[at..at + meta.size as usize]
}

/// The term and vote a member taking over `dir` starts from, when its own is behind the
/// DLedger store's: currterm's currTerm with its voteLeader when that is one of the
/// peers (`is_peer`), else the next term without a vote (a member never votes twice in
/// one term). `None` when the member's own term is already there.
pub fn takeover_hard_state(
    dir: &Path,
    own: &crate::store::HardState,
    is_peer: impl Fn(&str) -> bool,
) -> Result<Option<crate::store::HardState>> {
    let props = properties(&dir.join("currterm"))?;
    let get = |k: &str| {
        props
            .as_ref()
            .and_then(|p| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
    };
    let term = match get("currTerm") {
        Some(v) => v.parse::<u64>().map_err(|_| {
            Error::corrupt(format!(
                "{}: currTerm={v} is not a term (a whole number); nothing was changed",
                dir.join("currterm").display()
            ))
        })?,
        None => scan_offsets(dir, None)?.last_term(),
    };
    let vote = get("voteLeader").filter(|v| !v.is_empty());
    let hs = match vote {
        Some(v) if is_peer(&v) => crate::store::HardState {
            term,
            voted_for: Some(v),
        },
        Some(_) => crate::store::HardState {
            term: term + 1,
            voted_for: None,
        },
        None => crate::store::HardState {
            term,
            voted_for: None,
        },
    };
    Ok((own.term < hs.term).then_some(hs))
}

/// The old store of a member taking over the DLedger store `dir`
/// (`rmqraftTakeOverDLedger=true`): as [`super::attach`] does for a classic commitlog,
/// the first open records the log's digest in `marker` and later opens must find the
/// same log. Nothing in `dir` is written.
pub(super) fn attach(
    group: &crate::engine::Group,
    broker_dir: &Path,
    dir: &Path,
    recorded: Option<String>,
    marker: &Path,
) -> Result<Option<std::sync::Arc<super::OldStore>>> {
    const KEY: &str = "rmqraftTakeOverDLedger";
    let cfg = group.config();
    if !is_dledger_dir(dir) {
        return Err(Error::config(format!(
            "{KEY}=true, but {} holds no DLedger store (no currterm, no data/ file starting \
             with a DLedger entry); nothing was changed. Give storePathRootDir and \
             dLegerSelfId of the stopped DLedger broker",
            dir.display()
        )));
    }
    let old_commitlog = cfg.store_root.join("commitlog");
    for d in std::iter::once(&old_commitlog).chain(cfg.classic_commitlog_dir.as_ref()) {
        if super::holds_records(d) {
            return Err(Error::config(format!(
                "{KEY}=true: {} holds classic commitlog records below the DLedger log (a \
                 broker upgraded from master-slave to DLedger mode); taking over such a store \
                 is not supported yet; nothing was changed",
                d.display()
            )));
        }
    }
    let through = cfg.dledger_takeover_through;
    let log = DLedgerLog::open(dir, through)
        .map_err(|e| Error::new(e.kind(), format!("{KEY}=true: {}", e.message())))?;
    if let Some(t) = through {
        let last = log.scan().last_index();
        if last.is_none_or(|l| l < t) {
            return Err(Error::config(format!(
                "rmqraftTakeOverDLedgerThrough={t}: this member's DLedger log {} ends at \
                 index {}, before it: the member is behind; copy data/ of a member that has \
                 the entries through {t} (`rmqraft store convert --dry-run` over the copies \
                 says which), or lower the value on every member; nothing was changed",
                dir.display(),
                last.map_or("(none)".to_string(), |l| l.to_string())
            )));
        }
    }
    let config_dirs = [cfg.store_root.join("config")];
    let config_dir = config_dirs
        .iter()
        .find(|d| super::config_json::has_config(d))
        .cloned();
    let (topics, consumer_offsets, delay_offsets) = match &config_dir {
        Some(d) => (
            super::config_json::topics(d)?,
            super::config_json::consumer_offsets(d)?,
            super::config_json::delay_offsets(d)?,
        ),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let digest = log.digest().clone();
    let (entries, left_out) = (log.scan().entries.len(), log.scan().left_out);
    let (first_index, last_index) = (log.scan().first_index(), log.scan().last_index());
    let notes = log.scan().notes.clone();
    let old = super::OldStore {
        log: Box::new(log),
        dir: dir.to_path_buf(),
        topics,
        consumer_offsets,
        delay_offsets,
        config_dir,
    };
    match recorded {
        Some(text) => {
            let diff = digest.differences(&text);
            if !diff.is_empty() {
                return Err(Error::config(format!(
                    "{KEY}=true: the DLedger log {} is not the one this member was first \
                     opened over ({}): {}; nothing was changed. Put the same DLedger store \
                     back, with the same rmqraftTakeOverDLedgerThrough",
                    dir.display(),
                    marker.display(),
                    diff.join(", ")
                )));
            }
        }
        None => {
            super::refuse_if_log_has_messages(group, dir).map_err(|e| {
                if e.kind() != crate::error::ErrorKind::Config {
                    return e;
                }
                let own = cfg.member_dir();
                Error::config(format!(
                    "{KEY}=true: this member's own log in {} already holds messages, written \
                     without the DLedger log {} below it; their commitlog offsets would change \
                     meaning. Move {} away to take the DLedger store over; nothing was changed",
                    own.display(),
                    dir.display(),
                    own.display()
                ))
            })?;
            for f in ["checkpoint", "checkpoint.tmp"] {
                let p = broker_dir.join(f);
                if p.exists() {
                    std::fs::remove_file(&p)
                        .map_err(|e| Error::io(format!("remove {}", p.display()), e))?;
                }
            }
            super::write_marker(marker, &digest.to_text(dir))?;
            log::info!(
                "{}/{}: took over the DLedger store {} ({entries} entries, indexes {}..={}, \
                 {} messages at offsets {}..{}, sha256 {}); new messages start at commitlog \
                 offset {}",
                group.group_name(),
                group.self_id(),
                dir.display(),
                first_index.map_or("-".to_string(), |i| i.to_string()),
                last_index.map_or("-".to_string(), |i| i.to_string()),
                old.log.offsets().len(),
                digest.first,
                digest.end,
                digest.sha256_hex(),
                digest.divided
            );
            if left_out > 0 {
                log::warn!(
                    "{}/{}: the DLedger entries after index {} (at least {left_out}) are not \
                     served (rmqraftTakeOverDLedgerThrough); their offsets below {} stay unused",
                    group.group_name(),
                    group.self_id(),
                    last_index.map_or("-".to_string(), |i| i.to_string()),
                    digest.divided
                );
            }
            for n in &notes {
                log::warn!(
                    "{}/{}: DLedger store: {n}",
                    group.group_name(),
                    group.self_id()
                );
            }
        }
    }
    Ok(Some(std::sync::Arc::new(old)))
}

/// The `dledger-<selfId>` directory `dir` names: `dir` itself, or the one `dledger-*`
/// directory of a store root holding DLedger's files; `None` if neither.
pub fn find_dir(dir: &Path) -> Option<PathBuf> {
    if is_dledger_dir(dir) {
        return Some(dir.to_path_buf());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|i| i.ok())
        .filter(|i| i.file_name().to_string_lossy().starts_with("dledger-"))
        .map(|i| i.path())
        .filter(|p| is_dledger_dir(p))
        .collect();
    (found.len() == 1).then(|| found.pop()).flatten()
}

/// One queue as the DLedger log has it: (topic, queue id) -> (messages, min, max offset).
type Queues = std::collections::BTreeMap<(String, i32), (u64, i64, i64)>;

/// What `rmqraft store inspect` finds in a DLedger store.
pub struct Inspection {
    pub scan: Scan,
    queues: Queues,
    /// The store root's config/*.json: (topics, consumer offsets), if any.
    config: Option<(usize, usize)>,
    notes: Vec<String>,
}

/// Reads a DLedger store (`dledger-<selfId>` or its store root) and everything that can
/// be said about it.
pub fn inspect(dir: &Path) -> Result<Inspection> {
    let d = find_dir(dir).ok_or_else(|| {
        Error::config(format!(
            "{}: not a DLedger store (no currterm, no data/ file starting with a DLedger \
             entry, and not a store root with one dledger-<selfId>/ holding them)",
            dir.display()
        ))
    })?;
    let scan = scan(&d)?;
    let mut queues = Queues::new();
    for r in scan.records.iter().filter(|r| r.in_consume_queue()) {
        let q = queues.entry((r.topic.clone(), r.queue_id)).or_insert((
            0,
            r.queue_offset,
            r.queue_offset,
        ));
        q.0 += 1;
        q.1 = q.1.min(r.queue_offset);
        q.2 = q.2.max(r.queue_offset);
    }
    let mut notes = Vec::new();
    let mut config = None;
    if let Some(root) = d.parent() {
        let cfg = root.join("config");
        if super::config_json::has_config(&cfg) {
            match (
                super::config_json::topics(&cfg),
                super::config_json::consumer_offsets(&cfg),
            ) {
                (Ok(t), Ok(o)) => config = Some((t.len(), o.len())),
                (Err(e), _) | (_, Err(e)) => notes.push(format!("config: {}", e.message())),
            }
        }
        if super::holds_records(&root.join("commitlog")) {
            notes.push(format!(
                "{}: a classic commitlog below the DLedger log (upgraded from master-slave); \
                 rmqraft does not take such a store over yet",
                root.join("commitlog").display()
            ));
        }
    }
    Ok(Inspection {
        scan,
        queues,
        config,
        notes,
    })
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

impl Inspection {
    pub fn problems(&self) -> &[Problem] {
        &self.scan.problems
    }

    pub fn text(&self) -> String {
        let s = &self.scan;
        let digest = digest_of(s);
        let mut out = format!("DLedger store {}\n", s.dir.display());
        out.push_str(&format!(
            "  data files: {} of {} bytes\n",
            s.segments.len(),
            s.segment_size
        ));
        for seg in &s.segments {
            out.push_str(&format!(
                "    {}  {} bytes, {} used{}\n",
                seg.name,
                seg.len,
                seg.used,
                if seg.sealed {
                    ", sealed by a blank"
                } else {
                    ""
                }
            ));
        }
        let (tmin, tmax) = (
            s.entries.iter().map(|e| e.term).min(),
            s.entries.iter().map(|e| e.term).max(),
        );
        out.push_str(&format!(
            "  entries: {} ({} messages, {} no-ops), indexes {}..={}, terms {}..={}\n",
            s.entries.len(),
            s.offsets.len(),
            s.noops(),
            opt(s.first_index()),
            opt(s.last_index()),
            opt(tmin),
            opt(tmax)
        ));
        out.push_str(&format!(
            "  currterm: currTerm={} voteLeader={}; checkpoint committedIndex={}\n",
            opt(s.curr_term),
            s.vote_leader.as_deref().unwrap_or("-"),
            opt(s.committed_index)
        ));
        out.push_str(&format!(
            "  first offset {}, last offset {}, log end {}, new messages from {}\n",
            opt(s.offsets.first().copied()),
            opt(s.offsets.last().copied()),
            s.end,
            s.divided
        ));
        out.push_str(&format!(
            "  sha256 {} over {} bytes\n",
            digest.sha256_hex(),
            digest.bytes
        ));
        let topics: std::collections::BTreeSet<&str> =
            self.queues.keys().map(|k| k.0.as_str()).collect();
        out.push_str(&format!("  topics: {}\n", topics.len()));
        for ((t, q), (n, lo, hi)) in &self.queues {
            out.push_str(&format!(
                "    {t}:{q}  {n} messages, queue offsets {lo}..={hi}\n"
            ));
        }
        if let Some((t, o)) = self.config {
            out.push_str(&format!("  config: {t} topics, {o} consumer offsets\n"));
        }
        for n in s.notes.iter().chain(&self.notes) {
            out.push_str(&format!("  note: {n}\n"));
        }
        if s.problems.is_empty() {
            out.push_str("  problems: none\n");
        } else {
            out.push_str(&format!("  problems: {}\n", s.problems.len()));
            for p in &s.problems {
                out.push_str(&format!("    {p}\n"));
            }
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let s = &self.scan;
        let digest = digest_of(s);
        serde_json::json!({
            "kind": "dledger",
            "dir": s.dir.display().to_string(),
            "segmentSize": s.segment_size,
            "segments": s.segments.iter().map(|g| serde_json::json!({
                "name": g.name, "bytes": g.len, "used": g.used, "sealed": g.sealed,
            })).collect::<Vec<_>>(),
            "entries": s.entries.len(),
            "messages": s.offsets.len(),
            "noops": s.noops(),
            "firstIndex": s.first_index(),
            "lastIndex": s.last_index(),
            "lastTerm": s.last_term(),
            "currTerm": s.curr_term,
            "voteLeader": s.vote_leader,
            "committedIndex": s.committed_index,
            "firstOffset": s.offsets.first(),
            "lastOffset": s.offsets.last(),
            "end": s.end,
            "divided": s.divided,
            "sha256": digest.sha256_hex(),
            "queues": self.queues.iter().map(|((t, q), (n, lo, hi))| serde_json::json!({
                "topic": t, "queueId": q, "messages": n, "minOffset": lo, "maxOffset": hi,
            })).collect::<Vec<_>>(),
            "notes": s.notes.iter().chain(&self.notes).collect::<Vec<_>>(),
            "problems": s.problems.iter().map(|p| serde_json::json!({
                "file": p.file, "offset": p.offset, "what": p.what,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The last index on which all `scans` agree (same entries, byte for byte), `None` if
/// they agree on none.
fn agreed_through(scans: &[Scan]) -> Option<u64> {
    let first = scans.first()?;
    let mut through = None;
    for (i, e) in first.entries.iter().enumerate() {
        let bytes = entry_bytes(first, e);
        let all = scans[1..].iter().all(|s| {
            s.entries
                .get(i)
                .is_some_and(|o| o == e && entry_bytes(s, o) == bytes)
        });
        if !all {
            break;
        }
        through = Some(e.index);
    }
    through
}

fn entry_bytes<'a>(scan: &'a Scan, e: &EntryInfo) -> &'a [u8] {
    scan.segments
        .iter()
        .rev()
        .find(|s| s.from <= e.pos && e.pos < s.from + s.len)
        .map_or(&[][..], |s| {
            let at = (e.pos - s.from) as usize;
            &s.bytes()[at..at + e.size as usize]
        })
}

/// What taking over the DLedger stores `dirs` (one per member, each a `dledger-<selfId>`
/// directory or its store root) would do: lines to print and whether it can go ahead.
/// Reads only.
pub fn convert_dry_run(dirs: &[PathBuf]) -> Result<(Vec<String>, bool)> {
    let mut out = vec!["dry run: nothing written".to_string()];
    let mut scans = Vec::new();
    let mut ok = true;
    for dir in dirs {
        let d = find_dir(dir)
            .ok_or_else(|| Error::config(format!("{}: not a DLedger store", dir.display())))?;
        let s = scan(&d)?;
        let root = d.parent().unwrap_or(Path::new("."));
        let id = d
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .trim_start_matches("dledger-")
                    .to_string()
            })
            .unwrap_or_default();
        out.push(format!(
            "{}: {} entries ({} messages, {} no-ops), indexes {}..={}, last term {}, \
             currTerm {}",
            d.display(),
            s.entries.len(),
            s.offsets.len(),
            s.noops(),
            opt(s.first_index()),
            opt(s.last_index()),
            s.last_term(),
            opt(s.curr_term)
        ));
        for n in &s.notes {
            out.push(format!("  note: {n}"));
        }
        for p in &s.problems {
            out.push(format!("  problem: {p}"));
            ok = false;
        }
        if super::holds_records(&root.join("commitlog")) {
            out.push(format!(
                "  refused: {} holds a classic commitlog below the DLedger log; not taken \
                 over yet",
                root.join("commitlog").display()
            ));
            ok = false;
        }
        out.push(format!(
            "  member {id}: storePathRootDir={} dLegerSelfId={id} rmqraftTakeOverDLedger=true: \
             rmqraft's own files go in {} (created beside; nothing under {} is written)",
            root.display(),
            root.join(format!("rmqraft-{id}")).display(),
            d.display()
        ));
        scans.push(s);
    }
    let Some(first) = scans.first() else {
        return Ok((out, false));
    };
    let through = agreed_through(&scans);
    let longest = scans.iter().filter_map(Scan::last_index).max();
    let term = scans.iter().map(Scan::term).max().unwrap_or(0);
    out.push(format!(
        "Raft continues from term {term} (currterm, or the last entry's term if higher); \
         rmqraft's own log starts at its index 1 beside the DLedger log"
    ));
    match through {
        None if scans.iter().any(|s| !s.entries.is_empty()) => {
            out.push("the copies agree on no entry: not taken over".to_string());
            ok = false;
        }
        None => out.push("the DLedger logs hold no entry".to_string()),
        Some(t) => {
            let served = first
                .entries
                .iter()
                .filter(|e| e.index <= t && e.message)
                .count();
            let end = first
                .entries
                .iter()
                .find(|e| e.index == t)
                .map_or(0, |e| e.pos + u64::from(e.size));
            let divided = match first
                .segments
                .iter()
                .find(|s| s.from <= end && end < s.from + first.segment_size)
            {
                Some(s) if end > s.from => s.from + first.segment_size,
                _ => end,
            };
            out.push(format!(
                "served: {} messages of entries {}..={t}, at their DLedger commitlog offsets \
                 (pos + 48) and queue offsets, by queue, key, UNIQ_KEY and offset msg id; new \
                 messages from commitlog offset {divided}",
                served,
                opt(first.first_index())
            ));
            if Some(t) == longest && scans.iter().all(|s| s.last_index() == Some(t)) {
                out.push("every copy holds the same entries".to_string());
            } else {
                out.push(format!(
                    "the copies agree through index {t} (the longest reaches {}): set \
                     rmqraftTakeOverDLedgerThrough={t} on every member and entries after {t} \
                     are not served, or first copy the longest copy's data/ and index/ over \
                     the others (brokers stopped) to serve them all",
                    opt(longest)
                ));
            }
        }
    }
    out.push(
        "not touched: data/, index/, currterm, checkpoint and snapshot/ of every DLedger \
         directory, and config/ (read for topics and consumer offsets)"
            .to_string(),
    );
    Ok((out, ok))
}
