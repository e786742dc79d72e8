//! A history checker for replicated-log tests.
//!
//! Clients record every append: invoked (payload), then exactly one outcome: acked
//! (index, term), failed definitely (the call itself returned NotLeader, TooLarge, Busy or
//! InvalidArgument, or a completion said the entry was replaced), or unknown (Timeout,
//! Closed mid-flight, a crash). At the end, [`check`] takes a read of every live member's
//! committed log and reports the first violation of:
//!
//! 1. indexes are contiguous `1..=commit` on every member (every committed entry reads);
//! 2. committed prefixes are byte-identical across members;
//! 3. every acked entry is on every member at its acked index, exactly once;
//! 4. no payload appears twice in one log (a duplicate);
//! 5. nothing definitely rejected appears, nor anything never invoked.
//!
//! Empty bodies are the leaders' no-op entries and are exempt from 3-5. Use from a test
//! file with `mod history;` (this is `tests/history/mod.rs`).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

/// What happened to one append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Acked { index: u64, term: u64 },
    Failed(String),
    Unknown(String),
}

#[derive(Debug, Clone)]
pub struct Op {
    pub id: usize,
    pub payload: Vec<u8>,
    pub outcome: Outcome,
    /// Crashes recorded before this op was invoked.
    pub epoch: usize,
}

/// One line of the history, in the order the recorder saw it.
#[derive(Debug, Clone)]
pub struct Event {
    pub op: Option<usize>,
    pub what: String,
}

#[derive(Default)]
struct Inner {
    ops: Vec<Op>,
    events: Vec<Event>,
    crashes: usize,
    /// Between a crash and [`History::recovered`]: nothing clients hear counts.
    down: bool,
}

/// A thread-safe recorder; clone the `Arc` into completion callbacks.
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

/// Did the call itself (or its completion) say for certain the entry is not in the log?
pub fn is_definite_failure(kind: rmqraft::ErrorKind) -> bool {
    use rmqraft::ErrorKind::*;
    matches!(kind, NotLeader | TooLarge | Busy | InvalidArgument)
}

fn show(payload: &[u8]) -> String {
    let s = String::from_utf8_lossy(&payload[..payload.len().min(40)]).into_owned();
    if payload.len() > 40 {
        format!("{s:?}..({} bytes)", payload.len())
    } else {
        format!("{s:?}")
    }
}

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an invocation; returns the op's id.
    pub fn invoke(&self, payload: &[u8]) -> usize {
        let mut h = self.lock();
        let id = h.ops.len();
        let outcome = if h.down {
            Outcome::Unknown("invoked while the group was down".to_string())
        } else {
            Outcome::Pending
        };
        let epoch = h.crashes;
        h.ops.push(Op {
            id,
            payload: payload.to_vec(),
            outcome,
            epoch,
        });
        h.events.push(Event {
            op: Some(id),
            what: format!("invoke {}", show(payload)),
        });
        id
    }

    fn complete(&self, id: usize, outcome: Outcome) {
        let mut h = self.lock();
        let what = format!("{outcome:?}");
        if h.ops[id].outcome != Outcome::Pending {
            // Already settled (e.g. made unknown by a crash): a late answer is ignored.
            h.events.push(Event {
                op: Some(id),
                what: format!("late, ignored: {what}"),
            });
            return;
        }
        h.ops[id].outcome = outcome;
        h.events.push(Event { op: Some(id), what });
    }

    pub fn ack(&self, id: usize, meta: &rmqraft::EntryMeta) {
        self.complete(
            id,
            Outcome::Acked {
                index: meta.index,
                term: meta.term,
            },
        );
    }

    /// Records an error: definite for the kinds of [`is_definite_failure`], else unknown.
    pub fn error(&self, id: usize, err: &rmqraft::Error) {
        let outcome = if is_definite_failure(err.kind()) {
            Outcome::Failed(err.to_string())
        } else {
            Outcome::Unknown(err.to_string())
        };
        self.complete(id, outcome);
    }

    /// Records a completion result.
    pub fn result(&self, id: usize, result: &rmqraft::Result<rmqraft::EntryMeta>) {
        match result {
            Ok(meta) => self.ack(id, meta),
            Err(err) => self.error(id, err),
        }
    }

    pub fn fail(&self, id: usize, why: &str) {
        self.complete(id, Outcome::Failed(why.to_string()));
    }

    pub fn unknown(&self, id: usize, why: &str) {
        self.complete(id, Outcome::Unknown(why.to_string()));
    }

    /// Everything still pending becomes unknown, and answers that arrive later are
    /// ignored, as are appends invoked before [`History::recovered`]: a crash (or power
    /// cut) ends what clients could have heard.
    pub fn crash(&self, why: &str) {
        let mut h = self.lock();
        h.crashes += 1;
        h.down = true;
        let mut n = 0;
        for op in &mut h.ops {
            if op.outcome == Outcome::Pending {
                op.outcome = Outcome::Unknown(format!("crash: {why}"));
                n += 1;
            }
        }
        h.events.push(Event {
            op: None,
            what: format!("crash ({why}): {n} pending appends become unknown"),
        });
    }

    /// The group is back after a crash: answers count again.
    pub fn recovered(&self, what: &str) {
        let mut h = self.lock();
        h.down = false;
        h.events.push(Event {
            op: None,
            what: format!("recovered: {what}"),
        });
    }

    /// A free-form line (a restart, a fault injected).
    pub fn note(&self, what: &str) {
        self.lock().events.push(Event {
            op: None,
            what: what.to_string(),
        });
    }

    pub fn ops(&self) -> Vec<Op> {
        self.lock().ops.clone()
    }

    pub fn acked_count(&self) -> usize {
        self.lock()
            .ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Acked { .. }))
            .count()
    }

    /// Up to `radius` events on each side of the first event of `op` (or the last
    /// events when `op` is `None`).
    fn around(&self, op: Option<usize>, radius: usize) -> String {
        let h = self.lock();
        let center = op
            .and_then(|id| h.events.iter().position(|e| e.op == Some(id)))
            .unwrap_or(h.events.len().saturating_sub(1));
        let from = center.saturating_sub(radius);
        let to = (center + radius + 1).min(h.events.len());
        let mut out = String::new();
        for (i, e) in h.events[from..to].iter().enumerate() {
            let mark = if from + i == center { ">>" } else { "  " };
            let op = e.op.map_or("-".to_string(), |id| format!("op{id}"));
            out.push_str(&format!("{mark} #{:<6} {op:<8} {}\n", from + i, e.what));
        }
        if let Some(id) = op {
            for e in h.events.iter().filter(|e| e.op == Some(id)).skip(1) {
                out.push_str(&format!("   later:  op{id}  {}\n", e.what));
            }
        }
        out
    }
}

/// One live member's committed log as read at the end.
#[derive(Debug, Clone)]
pub struct MemberLog {
    pub member: String,
    pub commit_index: u64,
    /// Entry bodies by index; `Err` for a read that failed.
    pub entries: BTreeMap<u64, Result<Vec<u8>, String>>,
}

impl MemberLog {
    /// Reads `1..=commit_index` of a member.
    pub fn read(member: &str, group: &rmqraft::Group) -> MemberLog {
        let commit_index = group.status().map(|s| s.commit_index).unwrap_or(0);
        let entries = (1..=commit_index)
            .map(|i| {
                let body = group
                    .read(i)
                    .map(|(b, _)| b.to_vec())
                    .map_err(|e| e.to_string());
                (i, body)
            })
            .collect();
        MemberLog {
            member: member.to_string(),
            commit_index,
            entries,
        }
    }

    fn body(&self, index: u64) -> Option<&[u8]> {
        match self.entries.get(&index) {
            Some(Ok(b)) => Some(b),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    NotContiguous,
    PrefixDiverges,
    AckedLost,
    AckedMisplaced,
    Duplicate,
    RejectedPresent,
    NeverInvoked,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub kind: ViolationKind,
    pub message: String,
    /// The history around the op involved.
    pub context: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {}\nhistory around it:\n{}",
            self.kind, self.message, self.context
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub acked: usize,
    pub failed: usize,
    pub unknown: usize,
    /// Unknown appends that did land in the log.
    pub unknown_present: usize,
    /// Acked appends allowed lost (only with `CheckOptions::acked_may_lose_suffix`).
    pub acked_lost: usize,
    pub committed: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// ASYNC_FLUSH after a power loss: acked entries may be missing, but only as a
    /// suffix (a lost acked entry lies above every surviving one acked between the same
    /// two crashes).
    pub acked_may_lose_suffix: bool,
}

/// Checks `logs` against `history` with the strict rules.
pub fn check(history: &History, logs: &[MemberLog]) -> Result<Summary, Violation> {
    check_with(history, logs, CheckOptions::default())
}

pub fn check_with(
    history: &History,
    logs: &[MemberLog],
    opts: CheckOptions,
) -> Result<Summary, Violation> {
    let ops = history.ops();
    let violation = |kind, message: String, op: Option<usize>| Violation {
        kind,
        message,
        context: history.around(op, 6),
    };
    let by_payload: HashMap<&[u8], &Op> = ops
        .iter()
        .filter(|o| !o.payload.is_empty())
        .map(|o| (&o.payload[..], o))
        .collect();

    // 1. contiguous 1..=commit, every entry readable.
    for log in logs {
        for i in 1..=log.commit_index {
            match log.entries.get(&i) {
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(violation(
                        ViolationKind::NotContiguous,
                        format!(
                            "{}: committed entry {i} (of 1..={}) does not read: {e}",
                            log.member, log.commit_index
                        ),
                        None,
                    ))
                }
                None => {
                    return Err(violation(
                        ViolationKind::NotContiguous,
                        format!(
                            "{}: committed entry {i} (of 1..={}) is missing",
                            log.member, log.commit_index
                        ),
                        None,
                    ))
                }
            }
        }
        if let Some((&i, _)) = log.entries.range(log.commit_index + 1..).next() {
            return Err(violation(
                ViolationKind::NotContiguous,
                format!(
                    "{}: entry {i} read above commit index {}",
                    log.member, log.commit_index
                ),
                None,
            ));
        }
    }

    // 2. committed prefixes identical.
    let common = logs.iter().map(|l| l.commit_index).min().unwrap_or(0);
    for i in 1..=common {
        let first = logs[0].body(i);
        for log in &logs[1..] {
            if log.body(i) != first {
                let op = first.and_then(|b| by_payload.get(b)).map(|o| o.id);
                return Err(violation(
                    ViolationKind::PrefixDiverges,
                    format!(
                        "entry {i}: {} holds {} but {} holds {}",
                        logs[0].member,
                        first.map_or("?".into(), show),
                        log.member,
                        log.body(i).map_or("?".into(), show)
                    ),
                    op,
                ));
            }
        }
    }

    // 4, 5: duplicates, rejected or foreign payloads.
    let mut summary = Summary {
        committed: logs.iter().map(|l| l.commit_index).max().unwrap_or(0),
        ..Summary::default()
    };
    let mut present: HashMap<&[u8], u64> = HashMap::new();
    for log in logs {
        let mut seen: HashMap<&[u8], u64> = HashMap::new();
        for (&i, body) in &log.entries {
            let Ok(body) = body else { continue };
            if body.is_empty() {
                continue;
            }
            if let Some(first) = seen.insert(body, i) {
                let op = by_payload.get(&body[..]).map(|o| o.id);
                return Err(violation(
                    ViolationKind::Duplicate,
                    format!(
                        "{}: {} appears at {first} and again at {i}",
                        log.member,
                        show(body)
                    ),
                    op,
                ));
            }
            present.insert(body, i);
            match by_payload.get(&body[..]) {
                None => {
                    return Err(violation(
                        ViolationKind::NeverInvoked,
                        format!(
                            "{}: entry {i} holds {}, which no client appended",
                            log.member,
                            show(body)
                        ),
                        None,
                    ))
                }
                Some(op) => {
                    if let Outcome::Failed(why) = &op.outcome {
                        return Err(violation(
                            ViolationKind::RejectedPresent,
                            format!(
                                "{}: entry {i} holds op{} {}, which was definitely rejected ({why})",
                                log.member,
                                op.id,
                                show(body)
                            ),
                            Some(op.id),
                        ));
                    }
                }
            }
        }
    }

    // 3. acked entries at their index on every member.
    let mut lost = Vec::new();
    let mut highest_surviving: HashMap<usize, u64> = HashMap::new();
    for op in &ops {
        match &op.outcome {
            Outcome::Acked { index, .. } => {
                summary.acked += 1;
                let index = *index;
                for log in logs {
                    match log.body(index) {
                        Some(b) if b == &op.payload[..] => {}
                        _ if opts.acked_may_lose_suffix
                            && !present.contains_key(&op.payload[..]) =>
                        {
                            lost.push((index, op.id, op.epoch));
                            break;
                        }
                        Some(b) => {
                            let kind = if present.contains_key(&op.payload[..]) {
                                ViolationKind::AckedMisplaced
                            } else {
                                ViolationKind::AckedLost
                            };
                            return Err(violation(
                                kind,
                                format!(
                                    "{}: op{} {} was acked at index {index} but that index holds {}{}",
                                    log.member,
                                    op.id,
                                    show(&op.payload),
                                    show(b),
                                    present.get(&op.payload[..]).map_or(String::new(), |i| format!(" (it sits at {i})"))
                                ),
                                Some(op.id),
                            ));
                        }
                        None => {
                            return Err(violation(
                                ViolationKind::AckedLost,
                                format!(
                                    "{}: op{} {} was acked at index {index}, above the member's commit index {}",
                                    log.member,
                                    op.id,
                                    show(&op.payload),
                                    log.commit_index
                                ),
                                Some(op.id),
                            ))
                        }
                    }
                }
                if lost.last().is_none_or(|&(_, id, _)| id != op.id) {
                    let h = highest_surviving.entry(op.epoch).or_default();
                    *h = (*h).max(index);
                }
            }
            Outcome::Failed(_) => summary.failed += 1,
            Outcome::Unknown(_) | Outcome::Pending => {
                summary.unknown += 1;
                if present.contains_key(&op.payload[..]) {
                    summary.unknown_present += 1;
                }
            }
        }
    }
    for &(index, id, epoch) in &lost {
        let survived = highest_surviving.get(&epoch).copied().unwrap_or(0);
        if index < survived {
            return Err(violation(
                ViolationKind::AckedLost,
                format!(
                    "op{id} acked at {index} is lost although an entry acked after it before the same crash ({survived}) survived: not a lost suffix"
                ),
                Some(id),
            ));
        }
    }
    summary.acked_lost = lost.len();
    Ok(summary)
}
