//! Upgrading in place: a member opened over a store an older broker wrote serves the old
//! messages where they are and appends new ones after them (README, "Upgrading a
//! master-slave store").
//!
//! The old messages are an *old log prefix* ([`OldLog`]): read-only bytes below the
//! divide (RocketMQ's dividedCommitlogOffset), each message at its original commitlog
//! offset; rmqraft's own log maps to the offsets at and above it. Today's kind is the
//! classic master-slave commitlog ([`classic`]); a DLedger log is meant to be a second
//! kind behind the same trait (issue 15).
//!
//! - [`classic`]: reads and checks a classic commitlog (never writes it).
//! - [`config_json`]: topics and consumer offsets from the old broker's `config/*.json`.
//! - [`tools`]: `rmqraft store inspect | diff | align`.
//! - [`attach`]: what the broker calls at open: the old log of a member, checked against
//!   what the member recorded the first time (`<member>/broker/old-log`).

pub mod classic;
pub mod config_json;
pub mod dledger;
pub mod tools;

use crate::broker::{record, TopicConfig};
use crate::engine::Group;
use crate::error::{Error, Result};
use crate::types::EntryKind;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use classic::{ClassicLog, RecordMeta};

/// Where the member records which old log it was first opened over.
const MARKER: &str = "old-log";
/// Written when this member's old log was found to differ from the leader's.
const REFUSED: &str = "old-log.refused";
/// Entries of the member's own log looked at for messages before it is put behind an old
/// log the first time (a log with more than this is refused outright).
const FIRST_OPEN_ENTRIES_MAX: u64 = 100_000;

/// Something wrong in an old store, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, relative to the directory scanned (a segment name).
    pub file: String,
    /// The global commitlog offset, when the problem has one.
    pub offset: Option<u64>,
    pub what: String,
}

impl Problem {
    /// "00000000000000008192 at offset 8300".
    pub fn place(&self) -> String {
        match self.offset {
            Some(o) => format!("{} at offset {o}", self.file),
            None => self.file.clone(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place(), self.what)
    }
}

/// The length and checksum of an old log: two members may serve it only if theirs are
/// equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldLogDigest {
    /// "classic" (later: "dledger").
    pub kind: &'static str,
    /// Offset of its first byte.
    pub first: u64,
    /// Offset after its last record.
    pub end: u64,
    /// First offset of rmqraft's own log.
    pub divided: u64,
    /// Bytes checksummed.
    pub bytes: u64,
    pub sha256: [u8; 32],
    /// Per segment: (first offset, bytes holding records, their SHA-256).
    pub segments: Vec<(u64, u64, [u8; 32])>,
}

/// "RQOL": an encoded [`OldLogDigest`] (what the leader replicates for the others to
/// compare theirs with).
const DIGEST_MAGIC: u32 = 0x4C4F_5152;
/// Segments an encoded digest holds at most (a 1 GiB-segment log of 64 TiB).
const DIGEST_SEGMENTS_MAX: usize = 65_536;

impl OldLogDigest {
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Little-endian: magic, kind, first, end, divided, bytes, sha256, then the segments.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(96 + self.segments.len() * 48);
        b.extend_from_slice(&DIGEST_MAGIC.to_le_bytes());
        b.push(self.kind.len() as u8);
        b.extend_from_slice(self.kind.as_bytes());
        for v in [self.first, self.end, self.divided, self.bytes] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.sha256);
        b.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for (from, used, sha) in &self.segments {
            b.extend_from_slice(&from.to_le_bytes());
            b.extend_from_slice(&used.to_le_bytes());
            b.extend_from_slice(sha);
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<OldLogDigest> {
        let bad = || Error::corrupt("an old-log digest entry is malformed");
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = b.get(at..at + n).ok_or_else(bad)?;
            at += n;
            Ok(s)
        };
        let u64_of = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        if u32::from_le_bytes(take(4)?.try_into().expect("4")) != DIGEST_MAGIC {
            return Err(bad());
        }
        let n = take(1)?[0] as usize;
        let kind = match take(n)? {
            b"classic" => "classic",
            b"dledger" => "dledger",
            _ => return Err(bad()),
        };
        let first = u64_of(take(8)?);
        let end = u64_of(take(8)?);
        let divided = u64_of(take(8)?);
        let bytes = u64_of(take(8)?);
        let sha256: [u8; 32] = take(32)?.try_into().expect("32");
        let count = u32::from_le_bytes(take(4)?.try_into().expect("4")) as usize;
        if count > DIGEST_SEGMENTS_MAX {
            return Err(bad());
        }
        let mut segments = Vec::with_capacity(count);
        for _ in 0..count {
            let from = u64_of(take(8)?);
            let used = u64_of(take(8)?);
            segments.push((from, used, take(32)?.try_into().expect("32")));
        }
        if at != b.len() {
            return Err(bad());
        }
        Ok(OldLogDigest {
            kind,
            first,
            end,
            divided,
            bytes,
            sha256,
            segments,
        })
    }

    /// Where this (a member's) old log first differs from `reference` (the leader's),
    /// or `None` when they are the same.
    pub fn first_difference(&self, reference: &OldLogDigest) -> Option<String> {
        self.first_difference_from(reference, "the leader")
    }

    /// Where this member's old log first differs from `other`'s (`whose`: "member n1"),
    /// or `None` when they are the same: the first segment whose records differ, the first
    /// offset where they may differ and both SHA-256 of that segment. The digests hold a
    /// checksum per segment, so the exact byte is found by `rmqraft store diff`.
    pub fn first_difference_from(&self, other: &OldLogDigest, whose: &str) -> Option<String> {
        if self == other {
            return None;
        }
        let hex = |h: &[u8; 32]| -> String { h.iter().map(|b| format!("{b:02x}")).collect() };
        let mut what = format!(
            "this member's old log holds offsets {}..{} (sha256 {}), {whose}'s {}..{} \
             (sha256 {})",
            self.first,
            self.end,
            self.sha256_hex(),
            other.first,
            other.end,
            other.sha256_hex()
        );
        let n = self.segments.len().max(other.segments.len());
        for i in 0..n {
            match (self.segments.get(i), other.segments.get(i)) {
                (Some(a), Some(b)) if a == b => continue,
                (Some(a), Some(b)) if a.0 == b.0 => {
                    // Equal lengths: a byte differs somewhere in the segment; otherwise
                    // the shorter one ends first.
                    let at = if a.1 == b.1 { a.0 } else { a.0 + a.1.min(b.1) };
                    what.push_str(&format!(
                        "; they first differ in segment {:020} (offsets {}..), at offset {at}{}: \
                         {} bytes of records here (sha256 {}), {} on {whose} (sha256 {})",
                        a.0,
                        a.0,
                        if a.1 == b.1 { " or after" } else { "" },
                        a.1,
                        hex(&a.2),
                        b.1,
                        hex(&b.2),
                    ));
                }
                (a, b) => {
                    let at = a.or(b).map_or(0, |s| s.0);
                    what.push_str(&format!(
                        "; they first differ at offset {at}, segment {at:020}: {} here, {} on \
                         {whose}",
                        if a.is_some() { "present" } else { "missing" },
                        if b.is_some() { "present" } else { "missing" }
                    ));
                }
            }
            break;
        }
        Some(what)
    }

    fn to_text(&self, dir: &Path) -> String {
        format!(
            "kind={}\ndir={}\nfirst={}\nend={}\ndivided={}\nbytes={}\nsha256={}\n",
            self.kind,
            dir.display(),
            self.first,
            self.end,
            self.divided,
            self.bytes,
            self.sha256_hex()
        )
    }

    /// What differs from a recorded one ("end 32768 (recorded 24576)"), empty if nothing.
    fn differences(&self, recorded: &str) -> Vec<String> {
        let get = |k: &str| {
            recorded
                .lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .unwrap_or("")
                .to_string()
        };
        let mut out = Vec::new();
        for (k, v) in [
            ("kind", self.kind.to_string()),
            ("first", self.first.to_string()),
            ("end", self.end.to_string()),
            ("divided", self.divided.to_string()),
            ("sha256", self.sha256_hex()),
        ] {
            let was = get(k);
            if was != v {
                out.push(format!("{k} {v} (recorded {was})"));
            }
        }
        out
    }
}

/// An old log below rmqraft's own: read-only, each message at its original offset.
pub trait OldLog: Send + Sync {
    /// What it is, for messages.
    fn kind(&self) -> &'static str;
    /// First offset after it: rmqraft's log maps to offsets from here on.
    fn divided(&self) -> u64;
    /// Where its messages start, in offset order.
    fn offsets(&self) -> &[u64];
    /// The message record (classic layout) starting at `offset`; `None` if no message
    /// starts there.
    fn read(&self, offset: u64) -> Result<Option<Bytes>>;
    fn digest(&self) -> &OldLogDigest;
}

/// The old store a member serves: its log and the old broker's metadata.
pub struct OldStore {
    pub log: Box<dyn OldLog>,
    /// Where the log is.
    pub dir: PathBuf,
    /// From config/topics.json (empty if there is none).
    pub topics: Vec<TopicConfig>,
    /// From config/consumerOffset.json: (consumer group, topic, queue id, offset).
    pub consumer_offsets: Vec<(String, String, i32, u64)>,
    /// From config/delayOffset.json: (delay level, next schedule queue offset).
    pub delay_offsets: Vec<(i32, u64)>,
    /// The config directory read, if any.
    pub config_dir: Option<PathBuf>,
}

impl OldStore {
    /// Opens the classic commitlog at `commitlog_dir` and the config/*.json found in the
    /// first of `config_dirs` that has any.
    pub fn open_classic(commitlog_dir: &Path, config_dirs: &[PathBuf]) -> Result<OldStore> {
        let log = ClassicLog::open(commitlog_dir)?;
        let config_dir = config_dirs
            .iter()
            .find(|d| config_json::has_config(d))
            .cloned();
        let (topics, consumer_offsets, delay_offsets) = match &config_dir {
            Some(d) => (
                config_json::topics(d)?,
                config_json::consumer_offsets(d)?,
                config_json::delay_offsets(d)?,
            ),
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        Ok(OldStore {
            log: Box::new(log),
            dir: commitlog_dir.to_path_buf(),
            topics,
            consumer_offsets,
            delay_offsets,
            config_dir,
        })
    }
}

/// The old store of a member opening its broker, or `None` (no `storePathCommitLog`).
///
/// The first time, the member's own log must hold no message (their offsets would change
/// meaning): its broker state is then rebuilt, the old messages first, and the old log's
/// digest is recorded in `<broker_dir>/old-log`. Later opens must find the same old log
/// (same offsets, same checksum), and a member that recorded one refuses to open without
/// it. Nothing in the old store is written.
pub fn attach(group: &Group, broker_dir: &Path) -> Result<Option<Arc<OldStore>>> {
    let refused = broker_dir.join(REFUSED);
    match std::fs::read_to_string(&refused) {
        Ok(why) => {
            return Err(Error::corrupt(format!(
                "{} (recorded in {}); nothing was changed",
                why.trim(),
                refused.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("read {}", refused.display()), e)),
    }
    let marker = broker_dir.join(MARKER);
    let recorded = match std::fs::read_to_string(&marker) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("read {}", marker.display()), e)),
    };
    let cfg = group.config();
    if let Some(dledger_dir) = cfg.dledger_store_dir() {
        return dledger::attach(group, broker_dir, &dledger_dir, recorded, &marker);
    }
    // RocketMQ's broker.conf names storePathCommitLog in every setup, DLedger mode
    // included: only a directory holding classic records is an old log to serve.
    let dir = cfg
        .classic_commitlog_dir
        .clone()
        .filter(|d| holds_records(d));
    let Some(dir) = dir else {
        if let Some(text) = recorded {
            let was = text
                .lines()
                .find_map(|l| l.strip_prefix("dir="))
                .unwrap_or("?");
            return Err(Error::config(format!(
                "storePathCommitLog: not set, but this member was first opened over the old \
                 commitlog at {was} ({}): its old messages are served only with \
                 storePathCommitLog={was} again; nothing was changed",
                marker.display()
            )));
        }
        return Ok(None);
    };
    let mut config_dirs = vec![cfg.store_root.join("config")];
    if let Some(parent) = dir.parent() {
        config_dirs.push(parent.join("config"));
    }
    let old = OldStore::open_classic(&dir, &config_dirs).map_err(|e| {
        Error::new(
            e.kind(),
            format!("storePathCommitLog={}: {}", dir.display(), e.message()),
        )
    })?;
    let digest = old.log.digest().clone();
    match recorded {
        Some(text) => {
            let diff = digest.differences(&text);
            if !diff.is_empty() {
                return Err(Error::config(format!(
                    "storePathCommitLog={}: the old log is not the one this member was first \
                     opened over ({}): {}; nothing was changed. Put the same old commitlog \
                     back (`rmqraft store diff` shows where two copies differ)",
                    dir.display(),
                    marker.display(),
                    diff.join(", ")
                )));
            }
        }
        None => {
            refuse_if_log_has_messages(group, &dir)?;
            // The broker state is rebuilt with the old messages first.
            for f in ["checkpoint", "checkpoint.tmp"] {
                let p = broker_dir.join(f);
                if p.exists() {
                    std::fs::remove_file(&p)
                        .map_err(|e| Error::io(format!("remove {}", p.display()), e))?;
                }
            }
            write_marker(&marker, &digest.to_text(&dir))?;
            log::info!(
                "{}/{}: opened over the old {} at {} ({} messages, offsets {}..{}, sha256 {}); \
                 new messages start at commitlog offset {}",
                group.group_name(),
                group.self_id(),
                old.log.kind(),
                dir.display(),
                old.log.offsets().len(),
                digest.first,
                digest.end,
                digest.sha256_hex(),
                digest.divided
            );
        }
    }
    Ok(Some(Arc::new(old)))
}

/// How a member takes part in the before-election comparison of old logs
/// (`crate::core::old_log`), decided at its open from `<member>/broker/`.
pub(crate) enum OldLogPart {
    /// It refused before (`old-log.refused`): why.
    Refused(String),
    /// It has an old log, or recorded one: its elections wait for the comparison.
    Active,
    /// No old log: it elects as before and only answers.
    Passive,
}

/// `dledger_takeover`: the member serves a DLedger broker's store (rmqraftTakeOverDLedger),
/// whose log is its old log from the first open on.
pub(crate) fn old_log_part(
    broker_dir: &Path,
    classic_commitlog_dir: Option<&Path>,
    dledger_takeover: bool,
) -> OldLogPart {
    if let Ok(why) = std::fs::read_to_string(broker_dir.join(REFUSED)) {
        return OldLogPart::Refused(why.trim().to_string());
    }
    if dledger_takeover
        || broker_dir.join(MARKER).exists()
        || classic_commitlog_dir.is_some_and(holds_records)
    {
        OldLogPart::Active
    } else {
        OldLogPart::Passive
    }
}

/// Whether `dir` is a directory with at least one segment starting with a classic record.
fn holds_records(dir: &Path) -> bool {
    let Ok(items) = std::fs::read_dir(dir) else {
        return false;
    };
    items.filter_map(|i| i.ok()).any(|i| {
        let name = i.file_name();
        classic::parse_segment_name(&name.to_string_lossy()).is_some() && {
            let mut head = [0u8; 8];
            std::fs::File::open(i.path())
                .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0))
                .is_ok()
                && [record::MAGIC_V1, record::MAGIC_V2, record::MAGIC_BLANK]
                    .contains(&u32::from_be_bytes(head[4..8].try_into().expect("4 bytes")))
        }
    })
}

fn refuse_if_log_has_messages(group: &Group, dir: &Path) -> Result<()> {
    let status = group.status()?;
    let refuse = |what: String| {
        Error::config(format!(
            "storePathCommitLog={}: this member's own log already holds {what}, written \
             without the old log below it; their commitlog offsets would change meaning. \
             Open the old store with a new storePathRootDir; nothing was changed",
            dir.display()
        ))
    };
    if status.last_index > FIRST_OPEN_ENTRIES_MAX {
        return Err(refuse(format!("{} entries", status.last_index)));
    }
    for index in status.first_index.max(1)..=status.last_index {
        match group.read_local(index) {
            Ok((entry, _)) if entry.kind == EntryKind::Message => {
                return Err(refuse(format!("messages (entry {index})")));
            }
            Ok(_) => {}
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_marker(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Records why this member refuses to serve (its old log differs from the leader's), so
/// it refuses at every open after too; best effort (the refusal holds in memory anyway).
pub(crate) fn record_refusal(broker_dir: &Path, why: &str) {
    if let Err(e) = write_marker(&broker_dir.join(REFUSED), why) {
        log::error!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(segments: Vec<(u64, u64, [u8; 32])>) -> OldLogDigest {
        OldLogDigest {
            kind: "classic",
            first: 0,
            end: segments.last().map_or(0, |s| s.0 + s.1),
            divided: 3 << 16,
            bytes: segments.iter().map(|s| s.1).sum(),
            sha256: [segments.len() as u8; 32],
            segments,
        }
    }

    #[test]
    fn digests_round_trip_and_name_the_first_differing_segment() {
        let a = digest(vec![(0, 65000, [1; 32]), (65536, 60000, [2; 32])]);
        let back = OldLogDigest::decode(&a.encode()).unwrap();
        assert_eq!(back, a);
        assert_eq!(a.first_difference(&back), None);
        let mut b = a.clone();
        b.segments[1].1 = 59000;
        b.segments[1].2 = [3; 32];
        b.sha256 = [9; 32];
        let why = b.first_difference(&a).unwrap();
        assert!(
            why.contains("first differ in segment 00000000000000065536")
                && why.contains("at offset 124536:")
                && why.contains("59000 bytes of records here (sha256 0303")
                && why.contains("60000 on the leader (sha256 0202"),
            "{why}"
        );
        let short = digest(vec![(0, 65000, [1; 32])]);
        let why = short.first_difference(&a).unwrap();
        assert!(why.contains("missing here, present on the leader"), "{why}");
        let enc = a.encode();
        for cut in 0..enc.len() {
            assert!(OldLogDigest::decode(&enc[..cut]).is_err());
        }
    }
}
