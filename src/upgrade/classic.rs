//! A classic (master-slave) RocketMQ commitlog, read in place and never written:
//! `commitlog/<20-digit offset>` segments of one size, each record checked as RocketMQ's
//! recovery does and more (../shared/reference/rocketmq-store-format.md 1.2-1.4):
//! TOTALSIZE against the fields, the magic, BODYCRC, and PHYSICALOFFSET equal to the
//! record's own position. A segment ends with an 8-byte BLANK (`remaining`,
//! 0xCBD43194) or, for the last one written, with zeros where the next record would go.
//!
//! [`scan`] reports every problem it finds (naming the file and the offset) instead of
//! stopping at the first, for `rmqraft store inspect` and `diff`; [`ClassicLog::open`]
//! refuses a log with any problem. Nothing here opens a file for writing.

use super::{OldLog, OldLogDigest, Problem};
use crate::broker::record::{self, MessageRecord};
use crate::error::{Error, Result};
use bytes::Bytes;
use memmap2::Mmap;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Length of a segment name: the offset in 20 digits.
const SEGMENT_NAME_LEN: usize = 20;
/// A BLANK record: int remaining, int magic.
const BLANK_LEN: u64 = 8;
/// Transaction types that get a consume-queue unit (NOT and COMMIT).
const CQ_TRANSACTION_TYPES: [i32; 2] = [0, 0x8];

/// One segment file.
pub struct Segment {
    /// The file name (20 digits).
    pub name: String,
    pub path: PathBuf,
    /// Its first global offset (the name).
    pub from: u64,
    /// Its length on disk.
    pub len: u64,
    /// Bytes holding records, the closing BLANK included (0 for an unwritten segment).
    pub used: u64,
    /// Ends with a BLANK record.
    pub sealed: bool,
    map: Option<Mmap>,
}

impl Segment {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// What one old message is, for the broker's queues and index and for the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// PHYSICALOFFSET (= its position).
    pub offset: u64,
    /// TOTALSIZE.
    pub size: u32,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub sys_flag: i32,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    /// The consume-queue tags code (TAGS.hashCode(), 0 without tags).
    pub tags_code: i64,
    pub keys: Option<String>,
    pub uniq_key: Option<String>,
    pub delay_level: Option<i32>,
}

impl RecordMeta {
    fn of(rec: &MessageRecord, size: usize) -> RecordMeta {
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

    /// Whether RocketMQ gives it a consume-queue unit (not a prepared or rolled-back
    /// transaction message).
    pub fn in_consume_queue(&self) -> bool {
        in_consume_queue(self.sys_flag)
    }

    /// Whether RocketMQ indexes its keys (everything but rolled-back transactions).
    pub fn indexed(&self) -> bool {
        self.sys_flag & record::sysflag::TRANSACTION_MASK != record::sysflag::TRANSACTION_ROLLBACK
    }

    /// A short name for messages: "KEYS k1" or "UNIQ_KEY ..", or "no key".
    pub fn key_label(&self) -> String {
        match (&self.keys, &self.uniq_key) {
            (Some(k), _) => format!("KEYS {k}"),
            (None, Some(u)) => format!("UNIQ_KEY {u}"),
            (None, None) => "no key".to_string(),
        }
    }
}

/// Whether RocketMQ gives a record of this SYSFLAG a consume-queue unit (not a prepared
/// or rolled-back transaction message).
pub fn in_consume_queue(sys_flag: i32) -> bool {
    CQ_TRANSACTION_TYPES.contains(&(sys_flag & record::sysflag::TRANSACTION_MASK))
}

/// A commitlog directory as found: its segments, its messages up to the first problem,
/// and every problem.
pub struct Scan {
    pub dir: PathBuf,
    /// The segment size (the first file's length; RocketMQ's mappedFileSizeCommitLog).
    pub segment_size: u64,
    pub segments: Vec<Segment>,
    /// Where each message starts, in order.
    pub offsets: Vec<u64>,
    /// What each message is (empty from [`scan_offsets`]).
    pub records: Vec<RecordMeta>,
    /// Global offset after the last record (or after the last BLANK-sealed segment):
    /// where RocketMQ would write next.
    pub end: u64,
    /// First offset after the old log: `end` rounded up to the end of its segment
    /// (RocketMQ's dividedCommitlogOffset). New messages get offsets from here on.
    pub divided: u64,
    /// Empty when the log is sound.
    pub problems: Vec<Problem>,
    /// Facts worth telling that are not problems (an empty last segment, ...).
    pub notes: Vec<String>,
}

fn io(what: String, e: std::io::Error) -> Error {
    Error::io(what, e)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Whether a directory entry name is a segment name; its offset.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    (name.len() == SEGMENT_NAME_LEN && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// The commitlog directory of `dir`: `dir/commitlog` when it exists (a store root), else
/// `dir` itself.
pub fn commitlog_dir(dir: &Path) -> PathBuf {
    let sub = dir.join("commitlog");
    if sub.is_dir() {
        sub
    } else {
        dir.to_path_buf()
    }
}

/// Reads `dir` (a commitlog directory) and checks every record. I/O errors are errors;
/// anything wrong with the bytes is a [`Problem`] in the result.
pub fn scan(dir: &Path) -> Result<Scan> {
    scan_with(dir, true)
}

/// As [`scan`], keeping only where each message starts (8 bytes a message instead of
/// its topic and keys): what a member serving the log needs.
pub fn scan_offsets(dir: &Path) -> Result<Scan> {
    scan_with(dir, false)
}

fn scan_with(dir: &Path, keep_records: bool) -> Result<Scan> {
    let items = std::fs::read_dir(dir).map_err(|e| io(format!("list {}", dir.display()), e))?;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut files = Vec::new();
    for item in items {
        let item = item.map_err(|e| io(format!("list {}", dir.display()), e))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let meta = std::fs::metadata(item.path())
            .map_err(|e| io(format!("stat {}", item.path().display()), e))?;
        match parse_segment_name(&name) {
            Some(from) if meta.is_file() => files.push((from, name, meta.len())),
            _ => problems.push(Problem {
                file: name.clone(),
                offset: None,
                what: "not a commitlog segment (segments are files named by their offset in \
                       20 digits)"
                    .to_string(),
            }),
        }
    }
    files.sort();
    let segment_size = files.iter().map(|f| f.2).find(|&len| len > 0).unwrap_or(0);
    let mut segments = Vec::with_capacity(files.len());
    let last_no = files.len().saturating_sub(1);
    for (no, (from, name, len)) in files.into_iter().enumerate() {
        let path = dir.join(&name);
        if let Some(prev) = segments.last() {
            let prev: &Segment = prev;
            if prev.from + segment_size != from {
                problems.push(Problem {
                    file: name.clone(),
                    offset: Some(from),
                    what: format!(
                        "segment starts at {from} but the one before ({}) ends at {}: a \
                         segment is missing or misnamed",
                        prev.name,
                        prev.from + segment_size
                    ),
                });
            }
        }
        if len == 0 && no == last_no && no > 0 {
            notes.push(format!(
                "{name}: an empty last segment (created, never written; RocketMQ 5.2+ \
                 deletes it at start)"
            ));
        } else if len != segment_size {
            problems.push(Problem {
                file: name.clone(),
                offset: Some(from + len.min(segment_size)),
                what: format!(
                    "{len} bytes, but the segments are {segment_size} bytes (every segment \
                     must be exactly the segment size: a truncated or grown copy?)"
                ),
            });
        }
        let map = if len > 0 {
            let f = File::open(&path).map_err(|e| io(format!("open {}", path.display()), e))?;
            // SAFETY: the map is read-only and private to this process; the old store's
            // files are not written while they are read (the broker that wrote them is
            // stopped, and nothing in rmqraft writes them).
            Some(unsafe { Mmap::map(&f) }.map_err(|e| io(format!("map {}", path.display()), e))?)
        } else {
            None
        };
        segments.push(Segment {
            name,
            path,
            from,
            len,
            used: 0,
            sealed: false,
            map,
        });
    }
    let mut records = Vec::new();
    let mut offsets = Vec::new();
    let first = segments.first().map_or(0, |s| s.from);
    let mut end = first;
    let mut ended = false;
    let mut broken = false;
    for seg in segments.iter_mut() {
        if ended {
            let b = seg.bytes();
            if let Some(at) = b.iter().position(|&x| x != 0) {
                problems.push(Problem {
                    file: seg.name.clone(),
                    offset: Some(seg.from + at as u64),
                    what: if broken {
                        format!("not read: the log breaks off at {end}, before this segment")
                    } else {
                        format!(
                            "bytes after the log's end at {end} (records must follow each \
                             other without a gap)"
                        )
                    },
                });
            }
            continue;
        }
        let (used, sealed, stop) =
            scan_segment(seg, keep_records, &mut offsets, &mut records, &mut problems);
        seg.used = used;
        seg.sealed = sealed;
        if sealed {
            end = seg.from + seg.len;
        } else {
            end = seg.from + used;
            ended = true;
        }
        if stop {
            // A bad record ends the log where RocketMQ's recovery would end it; what
            // follows is not read as records.
            ended = true;
            broken = true;
        }
    }
    let divided = match segments
        .iter()
        .find(|s| s.from <= end && end < s.from + segment_size)
    {
        Some(s) if end > s.from => s.from + segment_size,
        _ => end,
    };
    Ok(Scan {
        dir: dir.to_path_buf(),
        segment_size,
        segments,
        offsets,
        records,
        end,
        divided,
        problems,
        notes,
    })
}

/// Scans one segment; returns (bytes used, sealed, stopped at a problem).
fn scan_segment(
    seg: &Segment,
    keep_records: bool,
    offsets: &mut Vec<u64>,
    records: &mut Vec<RecordMeta>,
    problems: &mut Vec<Problem>,
) -> (u64, bool, bool) {
    let b = seg.bytes();
    let len = b.len();
    let mut pos = 0usize;
    let problem = |problems: &mut Vec<Problem>, pos: usize, what: String| {
        problems.push(Problem {
            file: seg.name.clone(),
            offset: Some(seg.from + pos as u64),
            what,
        });
    };
    loop {
        if pos == len {
            return (pos as u64, false, false);
        }
        if len - pos < BLANK_LEN as usize {
            if b[pos..].iter().all(|&x| x == 0) {
                return (pos as u64, false, false);
            }
            problem(
                problems,
                pos,
                format!(
                    "{} bytes left at the segment's end that are not zeros nor a record",
                    len - pos
                ),
            );
            return (pos as u64, false, true);
        }
        let total = be_i32(b, pos);
        let magic = be_i32(b, pos + 4) as u32;
        if total == 0 && magic == 0 {
            // Where the next record would go: the log ends here. The rest must be zeros.
            if let Some(at) = b[pos..].iter().position(|&x| x != 0) {
                problem(
                    problems,
                    pos + at,
                    format!(
                        "bytes after the log's end at {} (zeros, then data: a record \
                         missing or overwritten)",
                        seg.from + pos as u64
                    ),
                );
                return (pos as u64, false, true);
            }
            return (pos as u64, false, false);
        }
        if magic == record::MAGIC_BLANK {
            let room = (len - pos) as i64;
            if i64::from(total) != room {
                problem(
                    problems,
                    pos,
                    format!(
                        "a BLANK record declaring {total} bytes, but {room} are left in the \
                         segment"
                    ),
                );
                return (pos as u64, false, true);
            }
            return (pos as u64 + BLANK_LEN, true, false);
        }
        if magic != record::MAGIC_V1 && magic != record::MAGIC_V2 {
            problem(
                problems,
                pos,
                format!(
                    "not a record: illegal magic code {magic:#010X} (TOTALSIZE {total}); \
                     garbage in place of a record"
                ),
            );
            return (pos as u64, false, true);
        }
        if total <= 8 || total as usize > len - pos {
            problem(
                problems,
                pos,
                format!(
                    "a record of TOTALSIZE {total} does not fit in the {} bytes left in the \
                     segment (a truncated segment?)",
                    len - pos
                ),
            );
            return (pos as u64, false, true);
        }
        match MessageRecord::decode(&b[pos..pos + total as usize]) {
            Ok((rec, size)) => {
                let at = seg.from + pos as u64;
                if rec.physical_offset != at as i64 {
                    problem(
                        problems,
                        pos,
                        format!(
                            "PHYSICALOFFSET {} but the record sits at {at} (bytes of another \
                             place or an older file)",
                            rec.physical_offset
                        ),
                    );
                    return (pos as u64, false, true);
                }
                offsets.push(at);
                if keep_records {
                    records.push(RecordMeta::of(&rec, size));
                }
                pos += size;
            }
            Err(err) => {
                problem(problems, pos, format!("a bad record: {}", err.message()));
                return (pos as u64, false, true);
            }
        }
    }
}

/// A sound classic commitlog, open for reading. Never writes the files.
pub struct ClassicLog {
    scan: Scan,
    digest: OldLogDigest,
}

impl ClassicLog {
    /// Opens `dir` (a commitlog directory); refuses any problem, naming the first.
    pub fn open(dir: &Path) -> Result<ClassicLog> {
        let scan = scan_offsets(dir)?;
        if let Some(first) = scan.problems.first() {
            let more = match scan.problems.len() {
                1 => String::new(),
                n => format!(
                    " ({} more problems: `rmqraft store inspect` lists them)",
                    n - 1
                ),
            };
            return Err(Error::corrupt(format!(
                "old commitlog {}: {}: {}{more}; nothing was changed",
                dir.display(),
                first.place(),
                first.what
            )));
        }
        let digest = digest_of(&scan);
        Ok(ClassicLog { scan, digest })
    }

    pub fn scan(&self) -> &Scan {
        &self.scan
    }
}

/// SHA-256 over the segment size, the first offset and, segment by segment, the bytes
/// holding records (closing BLANKs included): the same on two copies exactly when they
/// hold the same messages at the same offsets.
pub fn digest_of(scan: &Scan) -> OldLogDigest {
    let mut h = Sha256::new();
    h.update(b"rmqraft classic commitlog v1\n");
    h.update(scan.segment_size.to_be_bytes());
    h.update(scan.segments.first().map_or(0, |s| s.from).to_be_bytes());
    let mut bytes = 0;
    let mut segments = Vec::with_capacity(scan.segments.len());
    for seg in &scan.segments {
        let used = &seg.bytes()[..seg.used as usize];
        h.update(used);
        bytes += used.len() as u64;
        segments.push((seg.from, seg.used, Sha256::digest(used).into()));
    }
    OldLogDigest {
        kind: "classic",
        first: scan.segments.first().map_or(0, |s| s.from),
        end: scan.end,
        divided: scan.divided,
        bytes,
        sha256: h.finalize().into(),
        segments,
    }
}

impl OldLog for ClassicLog {
    fn kind(&self) -> &'static str {
        "classic RocketMQ commitlog"
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
        // Checked at open: a whole record starts here, its TOTALSIZE within the segment.
        let size = be_i32(b, at) as usize;
        Ok(Some(Bytes::copy_from_slice(&b[at..at + size])))
    }

    fn digest(&self) -> &OldLogDigest {
        &self.digest
    }
}

/// The record bytes at `offset` of a scan (any scan, sound or not).
pub fn record_bytes<'a>(scan: &'a Scan, meta: &RecordMeta) -> &'a [u8] {
    let seg = scan
        .segments
        .iter()
        .rev()
        .find(|s| s.from <= meta.offset && meta.offset < s.from + s.len)
        .expect("a scanned record lies in a segment");
    let at = (meta.offset - seg.from) as usize;
    &seg.bytes()[at..at + meta.size as usize]
}
