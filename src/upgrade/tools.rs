//! `rmqraft store inspect | diff | align` over classic commitlogs: what a store holds,
//! where two copies first differ (message by message), and a repair that copies only
//! the bytes that differ. A directory is a store root (with `commitlog/`) or a commitlog
//! directory itself.

use super::classic::{self, RecordMeta, Scan};
use super::{config_json, Problem};
use crate::broker::record::MessageRecord;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes compared (and, when they differ, rewritten) at a time by `align`.
const ALIGN_BLOCK: usize = 4096;

/// One queue as the commitlog has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSummary {
    pub topic: String,
    pub queue_id: i32,
    pub messages: u64,
    pub min_offset: i64,
    pub max_offset: i64,
}

/// What `store inspect` finds.
pub struct Inspection {
    pub root: Option<PathBuf>,
    pub scan: Scan,
    pub queues: Vec<QueueSummary>,
    /// Facts that are not problems (old consume queues lagging, abort present, ...).
    pub notes: Vec<String>,
    pub topics_in_config: usize,
    pub consumer_offsets_in_config: usize,
}

/// (store root if any, commitlog directory).
fn resolve(dir: &Path) -> Result<(Option<PathBuf>, PathBuf)> {
    if !dir.is_dir() {
        return Err(Error::config(format!(
            "{}: not a directory (give a store root holding commitlog/, or a commitlog \
             directory)",
            dir.display()
        )));
    }
    let log = classic::commitlog_dir(dir);
    let root = (log != dir).then(|| dir.to_path_buf());
    Ok((root, log))
}

fn queues_of(records: &[RecordMeta]) -> Vec<QueueSummary> {
    let mut m: BTreeMap<(String, i32), QueueSummary> = BTreeMap::new();
    for r in records.iter().filter(|r| r.in_consume_queue()) {
        let q = m
            .entry((r.topic.clone(), r.queue_id))
            .or_insert_with(|| QueueSummary {
                topic: r.topic.clone(),
                queue_id: r.queue_id,
                messages: 0,
                min_offset: r.queue_offset,
                max_offset: r.queue_offset,
            });
        q.messages += 1;
        q.min_offset = q.min_offset.min(r.queue_offset);
        q.max_offset = q.max_offset.max(r.queue_offset);
    }
    m.into_values().collect()
}

/// Units of an old consume queue directory (`<topic>/<queueId>/`), counted as RocketMQ's
/// recovery does: up to the first unit with a negative offset or a size <= 0.
fn old_cq_units(dir: &Path) -> Result<u64> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("list {}", dir.display()), e))?
        .filter_map(|i| i.ok())
        .map(|i| i.path())
        .collect();
    names.sort();
    let mut n = 0;
    for path in names {
        let b =
            std::fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        for u in b.chunks_exact(20) {
            let off = i64::from_be_bytes(u[..8].try_into().expect("8"));
            let size = i32::from_be_bytes(u[8..12].try_into().expect("4"));
            if off < 0 || size <= 0 {
                return Ok(n);
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Reads a store and everything that can be said about it.
pub fn inspect(dir: &Path) -> Result<Inspection> {
    let (root, log) = resolve(dir)?;
    let scan = classic::scan(&log)?;
    let queues = queues_of(&scan.records);
    let mut notes = scan.notes.clone();
    let (mut topics_in_config, mut consumer_offsets_in_config) = (0, 0);
    if let Some(root) = &root {
        if root.join("abort").exists() {
            notes.push(
                "abort present: the broker did not stop cleanly; every record was checked, and \
                 rmqraft rebuilds consume queues and the key index from the commitlog"
                    .to_string(),
            );
        }
        let cq_root = root.join("consumequeue");
        for q in &queues {
            let d = cq_root.join(&q.topic).join(q.queue_id.to_string());
            if !d.is_dir() {
                continue;
            }
            let units = old_cq_units(&d)?;
            let want = (q.max_offset + 1) as u64;
            if units < want {
                notes.push(format!(
                    "consumequeue/{}/{}: {units} units, the commitlog has {want} messages: it \
                     lags by {} (rebuilt from the commitlog at open)",
                    q.topic,
                    q.queue_id,
                    want - units
                ));
            }
        }
        let cfg = root.join("config");
        if config_json::has_config(&cfg) {
            match (
                config_json::topics(&cfg),
                config_json::consumer_offsets(&cfg),
            ) {
                (Ok(t), Ok(o)) => {
                    topics_in_config = t.len();
                    consumer_offsets_in_config = o.len();
                }
                (Err(e), _) | (_, Err(e)) => notes.push(format!("config: {}", e.message())),
            }
        }
    }
    Ok(Inspection {
        root,
        scan,
        queues,
        notes,
        topics_in_config,
        consumer_offsets_in_config,
    })
}

impl Inspection {
    pub fn text(&self) -> String {
        let s = &self.scan;
        let mut out = String::new();
        let digest = classic::digest_of(s);
        out.push_str(&format!("commitlog {}\n", s.dir.display()));
        out.push_str(&format!(
            "  segments: {} of {} bytes\n",
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
                    ", sealed by a BLANK"
                } else {
                    ""
                }
            ));
        }
        out.push_str(&format!("  messages: {}\n", s.records.len()));
        if let (Some(f), Some(l)) = (s.records.first(), s.records.last()) {
            out.push_str(&format!(
                "  first offset {}, last offset {}, log end {}, new messages from {}\n",
                f.offset, l.offset, s.end, s.divided
            ));
        }
        out.push_str(&format!(
            "  sha256 {} over {} bytes\n",
            digest.sha256_hex(),
            digest.bytes
        ));
        let topics: std::collections::BTreeSet<&str> =
            self.queues.iter().map(|q| q.topic.as_str()).collect();
        out.push_str(&format!("  topics: {}\n", topics.len()));
        for q in &self.queues {
            out.push_str(&format!(
                "    {}:{}  {} messages, queue offsets {}..={}\n",
                q.topic, q.queue_id, q.messages, q.min_offset, q.max_offset
            ));
        }
        if self.root.is_some() {
            out.push_str(&format!(
                "  config: {} topics, {} consumer offsets\n",
                self.topics_in_config, self.consumer_offsets_in_config
            ));
        }
        for n in &self.notes {
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

    pub fn json(&self) -> Value {
        let s = &self.scan;
        let digest = classic::digest_of(s);
        json!({
            "dir": s.dir.display().to_string(),
            "segmentSize": s.segment_size,
            "segments": s.segments.iter().map(|g| json!({
                "name": g.name, "bytes": g.len, "used": g.used, "sealed": g.sealed,
            })).collect::<Vec<_>>(),
            "messages": s.records.len(),
            "firstOffset": s.records.first().map(|r| r.offset),
            "lastOffset": s.records.last().map(|r| r.offset),
            "end": s.end,
            "divided": s.divided,
            "sha256": digest.sha256_hex(),
            "digestBytes": digest.bytes,
            "queues": self.queues.iter().map(|q| json!({
                "topic": q.topic, "queueId": q.queue_id, "messages": q.messages,
                "minOffset": q.min_offset, "maxOffset": q.max_offset,
            })).collect::<Vec<_>>(),
            "configTopics": self.topics_in_config,
            "configConsumerOffsets": self.consumer_offsets_in_config,
            "notes": self.notes,
            "problems": s.problems.iter().map(|p| json!({
                "file": p.file, "offset": p.offset, "what": p.what,
            })).collect::<Vec<_>>(),
        })
    }
}

/// What `store diff` found.
pub struct DiffOutcome {
    pub same: bool,
    /// The first difference (or "same: ..."), then context.
    pub lines: Vec<String>,
}

fn describe(r: &RecordMeta) -> String {
    format!(
        "offset {} ({}:{} queue offset {}, {})",
        r.offset,
        r.topic,
        r.queue_id,
        r.queue_offset,
        r.key_label()
    )
}

/// The fields of two records at the same offset that differ.
fn fields_differing(a: &[u8], b: &[u8]) -> Vec<&'static str> {
    let (Ok((ra, _)), Ok((rb, _))) = (MessageRecord::decode(a), MessageRecord::decode(b)) else {
        return vec!["the record bytes"];
    };
    let mut out = Vec::new();
    macro_rules! cmp {
        ($($f:ident => $n:expr),*) => { $( if ra.$f != rb.$f { out.push($n); } )* };
    }
    cmp!(topic => "topic", queue_id => "queue id", queue_offset => "queue offset",
         flag => "flag", sys_flag => "sysflag", born_timestamp => "born timestamp",
         born_host => "born host", store_timestamp => "store timestamp",
         store_host => "store host", reconsume_times => "reconsume times",
         prepared_transaction_offset => "prepared transaction offset", body => "body",
         properties => "properties");
    if out.is_empty() && a.len() != b.len() {
        out.push("size");
    }
    out
}

fn problem_at(scan: &Scan, offset: u64) -> Option<&Problem> {
    scan.problems
        .iter()
        .filter(|p| p.offset.is_some_and(|o| o >= offset))
        .min_by_key(|p| p.offset)
}

/// Compares two stores message by message; the first difference names its offset, its
/// topic and key, and what differs.
pub fn diff(a_dir: &Path, b_dir: &Path) -> Result<DiffOutcome> {
    let (_, la) = resolve(a_dir)?;
    let (_, lb) = resolve(b_dir)?;
    let a = classic::scan(&la)?;
    let b = classic::scan(&lb)?;
    let names = |s: &Scan| -> Vec<(String, u64)> {
        s.segments.iter().map(|g| (g.name.clone(), g.len)).collect()
    };
    let mut lines = Vec::new();
    let differ = |mut lines: Vec<String>, first: String| {
        lines.insert(0, first);
        Ok(DiffOutcome { same: false, lines })
    };
    if a.segment_size != b.segment_size {
        // Told after the first differing message, which says more (a copy cut short has
        // a shorter first file, which reads as a smaller segment size).
        lines.push(format!(
            "segment size: A {} bytes, B {} bytes",
            a.segment_size, b.segment_size
        ));
    }
    let n = a.records.len().min(b.records.len());
    for i in 0..n {
        let (ra, rb) = (&a.records[i], &b.records[i]);
        if ra.offset != rb.offset {
            return differ(
                lines,
                format!(
                    "message {i}: A's is at {}, B's at {}",
                    describe(ra),
                    describe(rb)
                ),
            );
        }
        let (ba, bb) = (classic::record_bytes(&a, ra), classic::record_bytes(&b, rb));
        if ba != bb {
            return differ(
                lines,
                format!(
                    "message at {}: {} differ{} (A: {}; B: {})",
                    ra.offset,
                    fields_differing(ba, bb).join(", "),
                    "",
                    describe(ra),
                    describe(rb)
                ),
            );
        }
    }
    if a.records.len() != b.records.len() {
        let (more, less, mn, ln, ls) = if a.records.len() > b.records.len() {
            (&a, &b, "A", "B", &b)
        } else {
            (&b, &a, "B", "A", &a)
        };
        let r = &more.records[n];
        let why = match problem_at(ls, r.offset) {
            Some(p) if p.offset == Some(r.offset) => format!("{ln} has: {p}"),
            Some(p) => format!("{ln}'s log ends at {} ({p})", less.end),
            None => format!("{ln}'s log ends at {}", less.end),
        };
        lines.push(format!(
            "{mn} holds {} messages, {ln} {}",
            more.records.len(),
            less.records.len()
        ));
        return differ(
            lines,
            format!(
                "message at {}: {mn} has it, {ln} does not: {why}",
                describe(r)
            ),
        );
    }
    // The same messages: what is left is the framing (BLANKs, sizes, stray bytes).
    if a.segment_size != b.segment_size {
        let first = lines.remove(0);
        return differ(lines, format!("same {n} messages, but the {first}"));
    }
    for (who, s) in [("A", &a), ("B", &b)] {
        if let Some(p) = s.problems.first() {
            return differ(lines, format!("same {n} messages, but {who} has: {p}"));
        }
    }
    if a.end != b.end || names(&a) != names(&b) {
        return differ(
            lines,
            format!(
                "same {n} messages, but the segments differ: A {:?} ends at {}, B {:?} ends at {}",
                names(&a),
                a.end,
                names(&b),
                b.end
            ),
        );
    }
    let (da, db) = (classic::digest_of(&a), classic::digest_of(&b));
    if da != db {
        return differ(
            lines,
            format!(
                "same {n} messages, but the bytes differ: sha256 A {} B {}",
                da.sha256_hex(),
                db.sha256_hex()
            ),
        );
    }
    lines.push(format!(
        "same: {n} messages, offsets {}..{}, sha256 {}",
        da.first,
        da.end,
        da.sha256_hex()
    ));
    Ok(DiffOutcome { same: true, lines })
}

/// Makes B's commitlog (and config/*.json, for store roots) equal to A's, writing only
/// the bytes that differ; `dry_run` only says what it would do. Refuses when A has any
/// problem, or when B holds segments A does not (align only copies; it never deletes).
pub fn align(from: &Path, to: &Path, dry_run: bool) -> Result<Vec<String>> {
    let (from_root, from_log) = resolve(from)?;
    let a = classic::scan(&from_log)?;
    if let Some(p) = a.problems.first() {
        return Err(Error::corrupt(format!(
            "--from {}: {p}: align copies only from a sound log; nothing was changed",
            from_log.display()
        )));
    }
    let to_log = if from_root.is_some() {
        to.join("commitlog")
    } else {
        to.to_path_buf()
    };
    let mut actions = Vec::new();
    let mut extra = Vec::new();
    if to_log.is_dir() {
        for item in std::fs::read_dir(&to_log)
            .map_err(|e| Error::io(format!("list {}", to_log.display()), e))?
        {
            let name = item
                .map_err(|e| Error::io(format!("list {}", to_log.display()), e))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if !a.segments.iter().any(|s| s.name == name) {
                extra.push(name);
            }
        }
    }
    if !extra.is_empty() {
        extra.sort();
        return Err(Error::config(format!(
            "--to {}: holds {} that --from does not ({}): align copies and never deletes; \
             move them away first if they are to go; nothing was changed",
            to_log.display(),
            if extra.len() == 1 { "a file" } else { "files" },
            extra.join(", ")
        )));
    }
    if !to_log.is_dir() {
        actions.push(format!("create {}", to_log.display()));
        if !dry_run {
            std::fs::create_dir_all(&to_log)
                .map_err(|e| Error::io(format!("create {}", to_log.display()), e))?;
        }
    }
    let mut files_written = 0;
    for seg in &a.segments {
        let src = std::fs::read(&seg.path)
            .map_err(|e| Error::io(format!("read {}", seg.path.display()), e))?;
        let target = to_log.join(&seg.name);
        if let Some(what) = align_file(&src, &target, seg.from, dry_run)? {
            actions.push(format!("{}: {what}", seg.name));
            files_written += 1;
        }
    }
    if let (Some(root), true) = (&from_root, from_root.is_some()) {
        let cfg = root.join("config");
        if cfg.is_dir() {
            let to_cfg = to.join("config");
            let mut names: Vec<_> = std::fs::read_dir(&cfg)
                .map_err(|e| Error::io(format!("list {}", cfg.display()), e))?
                .filter_map(|i| i.ok())
                .filter(|i| i.path().is_file())
                .map(|i| i.file_name())
                .collect();
            names.sort();
            for name in names {
                let src = std::fs::read(cfg.join(&name))
                    .map_err(|e| Error::io(format!("read {}", cfg.join(&name).display()), e))?;
                if std::fs::read(to_cfg.join(&name)).ok().as_deref() == Some(&src[..]) {
                    continue;
                }
                actions.push(format!(
                    "config/{}: copy ({} bytes)",
                    name.to_string_lossy(),
                    src.len()
                ));
                if !dry_run {
                    std::fs::create_dir_all(&to_cfg)
                        .map_err(|e| Error::io(format!("create {}", to_cfg.display()), e))?;
                    write_synced(&to_cfg.join(&name), &src)?;
                }
            }
        }
    }
    if !dry_run && !actions.is_empty() {
        sync_dir(&to_log)?;
        if from_root.is_some() && to.join("config").is_dir() {
            sync_dir(&to.join("config"))?;
        }
        let b = classic::scan(&to_log)?;
        let (da, db) = (classic::digest_of(&a), classic::digest_of(&b));
        if da != db || !b.problems.is_empty() {
            return Err(Error::corrupt(format!(
                "--to {}: still differs from --from after align (sha256 {} vs {}): a \
                 concurrent writer?",
                to_log.display(),
                db.sha256_hex(),
                da.sha256_hex()
            )));
        }
        actions.push(format!(
            "done: {files_written} segment files written and synced; {} now equals {} \
             ({} messages, sha256 {})",
            to_log.display(),
            from_log.display(),
            a.records.len(),
            da.sha256_hex()
        ));
    } else if actions.is_empty() {
        actions.push(format!(
            "nothing to do: {} already equals {}",
            to_log.display(),
            from_log.display()
        ));
    }
    Ok(actions)
}

/// Writes into `target` the blocks of `src` it does not already hold (creating it, and
/// cutting or extending it to `src`'s length); says what it wrote, `None` if nothing.
fn align_file(src: &[u8], target: &Path, from: u64, dry_run: bool) -> Result<Option<String>> {
    let old = match std::fs::read(target) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("read {}", target.display()), e)),
    };
    let Some(old) = old else {
        if !dry_run {
            write_synced(target, src)?;
        }
        return Ok(Some(format!("copy ({} bytes, missing)", src.len())));
    };
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for start in (0..src.len()).step_by(ALIGN_BLOCK) {
        let end = (start + ALIGN_BLOCK).min(src.len());
        let theirs = old.get(start..end.min(old.len())).unwrap_or(&[]);
        if theirs == &src[start..end] {
            continue;
        }
        let first = (start..end)
            .find(|&i| old.get(i) != Some(&src[i]))
            .expect("a differing block has a differing byte");
        let last = (start..end)
            .rev()
            .find(|&i| old.get(i) != Some(&src[i]))
            .expect("a differing block has a differing byte");
        match runs.last_mut() {
            Some(r) if r.1 == first => r.1 = last + 1,
            _ => runs.push((first, last + 1)),
        }
    }
    let resize = old.len() != src.len();
    if runs.is_empty() && !resize {
        return Ok(None);
    }
    let bytes: usize = runs.iter().map(|r| r.1 - r.0).sum();
    let mut what = format!(
        "{bytes} differing bytes rewritten in {} runs, the first at offset {}",
        runs.len(),
        runs.first()
            .map_or(from + old.len() as u64, |r| from + r.0 as u64)
    );
    if resize {
        what.push_str(&format!("; length {} -> {} bytes", old.len(), src.len()));
    }
    if !dry_run {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(target)
            .map_err(|e| Error::io(format!("open {}", target.display()), e))?;
        if resize {
            f.set_len(src.len() as u64)
                .map_err(|e| Error::io(format!("resize {}", target.display()), e))?;
        }
        for (s, e) in &runs {
            f.write_all_at(&src[*s..*e], *s as u64)
                .map_err(|e| Error::io(format!("write {}", target.display()), e))?;
        }
        f.sync_all()
            .map_err(|e| Error::io(format!("sync {}", target.display()), e))?;
    }
    Ok(Some(what))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("align-tmp");
    let w = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    w().map_err(|e| Error::io(format!("write {}", path.display()), e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("sync {}", dir.display()), e))
}
