//! Exactly-once appends (`Group::append_idempotent`, `rmqraft_group_append_idempotent`),
//! built above the member's append and read calls.
//!
//! Each accepted (producer id, sequence) is one `Idempotent` entry (kind 5: producer
//! id, sequence, the leader's clock, then the host's payload; docs/FORMAT.md). The
//! producer table ([`ProducerTable`]) is a function of the log, so any member that leads
//! rebuilds it from its own log:
//! - `committed`: the table over the committed log, caught up from the store when this
//!   member starts leading a term (after a restart that is a replay of the retained log);
//! - `view`: the leader's table for one term, `committed` plus every entry of its local
//!   log beyond (the inherited uncommitted tail, which commits with the leader's no-op,
//!   and its own appends). The append stamp checks and extends it under the member lock,
//!   in log order; when the log moved around it (another leader's term, an entry appended
//!   without it) the stamp refuses and the view is brought up to date first.
//!
//! A duplicate of a committed entry answers at once with the original meta; a duplicate
//! of one still in flight waits for the first one's outcome and gets the same result.

use crate::core::producers::{self, Check, ProducerTable};
use crate::error::{Error, ErrorKind, Result};
use crate::group::{AppendCallback, Member};
use crate::types::{Entry, EntryKind, EntryMeta, EntryPlace, Role};
use crate::wait::Slot;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Attempts of an append whose view had to be brought up to date meanwhile.
const ATTEMPTS: usize = 8;
/// Entries read per round when catching the committed table up.
const CATCH_UP_BATCH: usize = 1024;
const CATCH_UP_BYTES: usize = 8 << 20;
const STALE: &str = "the producer table is being brought up to date";
const DUPLICATE: &str = "duplicate";

/// The host's bytes of an entry: the payload after the header for an `Idempotent`
/// entry, the whole body otherwise.
pub fn payload(entry: &Entry) -> Bytes {
    if entry.kind == EntryKind::Idempotent && entry.body.len() >= producers::HEADER_SIZE {
        entry.body.slice(producers::HEADER_SIZE..)
    } else {
        entry.body.clone()
    }
}

struct View {
    term: u64,
    /// The last log index this view accounts for.
    through: u64,
    table: ProducerTable,
}

struct State {
    committed: ProducerTable,
    /// The last committed index `committed` accounts for.
    applied: u64,
    view: Option<View>,
    /// Appends of this member in flight, by index: duplicates waiting for their outcome.
    inflight: HashMap<u64, Vec<AppendCallback>>,
}

/// One member's producer table and the appends waiting on it.
pub(crate) struct Producers {
    member: Arc<Member>,
    state: Arc<Mutex<State>>,
    /// Waits for duplicates of inherited (not own) uncommitted entries; joined at close.
    waiters: Mutex<Vec<JoinHandle<()>>>,
}

fn poisoned() -> Error {
    Error::new(ErrorKind::Panic, "the producer table lock was poisoned")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn lock(state: &Mutex<State>) -> Result<MutexGuard<'_, State>> {
    state.lock().map_err(|_| poisoned())
}

impl Producers {
    pub(crate) fn new(member: Arc<Member>, expiration_ms: u64) -> Producers {
        Producers {
            member,
            state: Arc::new(Mutex::new(State {
                committed: ProducerTable::new(expiration_ms),
                applied: 0,
                view: None,
                inflight: HashMap::new(),
            })),
            waiters: Mutex::new(Vec::new()),
        }
    }

    fn not_leader(&self, leader_peer: i32) -> Error {
        let cfg = &self.member.config;
        let leader = usize::try_from(leader_peer)
            .ok()
            .and_then(|p| cfg.peers.get(p))
            .filter(|p| p.id != cfg.self_id);
        Error::new(
            ErrorKind::NotLeader,
            match leader {
                Some(p) => format!(
                    "{}/{} is not the leader; the leader is {} at {}",
                    cfg.group, cfg.self_id, p.id, p.addr
                ),
                None => format!(
                    "{}/{} is not the leader; no leader is known",
                    cfg.group, cfg.self_id
                ),
            },
        )
    }

    /// Takes one batch of committed entries into `committed`, waiting up to `wait` for
    /// one; returns how many were taken.
    fn apply_committed(&self, wait: Duration) -> Result<usize> {
        let from = lock(&self.state)?.applied + 1;
        let batch = match self
            .member
            .read_committed(from, CATCH_UP_BATCH, CATCH_UP_BYTES, wait)
        {
            Ok(b) => b,
            // Retention removed the start: the table starts from what is retained.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let first = self.member.status()?.first_index.max(1);
                let mut st = lock(&self.state)?;
                if st.applied < first - 1 {
                    st.applied = first - 1;
                }
                return Ok(1);
            }
            Err(e) => return Err(e),
        };
        let mut st = lock(&self.state)?;
        let mut taken = 0;
        for (entry, meta) in batch {
            if entry.index != st.applied + 1 {
                continue;
            }
            if entry.kind == EntryKind::Idempotent {
                st.committed.apply_body(&entry.body, meta);
            }
            st.applied = entry.index;
            taken += 1;
        }
        Ok(taken)
    }

    /// Catches `committed` up to `commit` from the store.
    fn catch_up_committed(&self, commit: u64) -> Result<()> {
        while lock(&self.state)?.applied < commit {
            if self.apply_committed(Duration::ZERO)? == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Keeps `committed` up with the commit index on this member (leader or follower),
    /// so a member that starts leading has little to replay: the member runs the hook on
    /// its EntryHandler whenever the commit index moves (no thread of its own).
    pub(crate) fn start(self: &Arc<Self>) -> Result<()> {
        let weak = Arc::downgrade(self);
        self.member.set_commit_hook(Box::new(move || {
            let Some(me) = weak.upgrade() else { return };
            // Bounded: one pass over what is committed now, in batches.
            for _ in 0..64 {
                match me.apply_committed(Duration::ZERO) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Closed => return,
                    Err(e) => {
                        log::warn!(
                            "{}/{}: producer table cannot follow the log: {e}",
                            me.member.config.group,
                            me.member.config.self_id
                        );
                        return;
                    }
                }
            }
            // More is committed than one pass takes: come back for the rest.
            me.member.follow_again();
        }));
        Ok(())
    }

    /// Brings the leader's view up to this term and the end of the local log.
    fn refresh(&self) -> Result<()> {
        let s = self.member.status()?;
        if s.role != Role::Leader {
            return Err(self.not_leader(s.leader_peer));
        }
        let from = {
            let st = lock(&self.state)?;
            match &st.view {
                Some(v) if v.term == s.term => Some(v.through + 1),
                _ => None,
            }
        };
        let (from, fresh) = match from {
            Some(from) => (from, false),
            None => {
                self.catch_up_committed(s.commit_index)?;
                let st = lock(&self.state)?;
                (st.applied + 1, true)
            }
        };
        let mut tail = Vec::new();
        for index in from..=s.last_index {
            let (entry, meta) = self.member.read_local(index)?;
            if entry.kind == EntryKind::Idempotent {
                tail.push((entry.body, meta));
            }
        }
        let mut st = lock(&self.state)?;
        let st = &mut *st;
        let skip_through = if fresh {
            // `committed` may have moved on meanwhile (its thread): it holds the start
            // of the tail already.
            if st.applied + 1 < from || st.applied > s.last_index {
                return Ok(()); // the log moved under us: the next attempt looks again
            }
            st.view = Some(View {
                term: s.term,
                through: st.applied,
                table: st.committed.clone(),
            });
            st.applied
        } else {
            match &st.view {
                Some(v) if v.term == s.term && v.through + 1 == from => from - 1,
                _ => return Ok(()),
            }
        };
        let view = st.view.as_mut().expect("set above");
        for (body, meta) in tail {
            if meta.index > skip_through {
                view.table.apply_body(&body, meta);
            }
        }
        view.through = view.through.max(s.last_index);
        Ok(())
    }

    /// Appends `data` once per (producer, sequence); `done` runs exactly once on `Ok`.
    pub(crate) fn append_async(
        &self,
        producer_id: u64,
        sequence: u64,
        data: &[u8],
        done: AppendCallback,
    ) -> Result<()> {
        if producer_id == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "producer id must not be 0",
            ));
        }
        if data.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "an entry must not be empty",
            ));
        }
        let data = Bytes::copy_from_slice(data);
        let done = Arc::new(Mutex::new(Some(done)));
        for _ in 0..ATTEMPTS {
            let ready = {
                let s = self.member.status()?;
                let st = lock(&self.state)?;
                matches!(&st.view, Some(v) if v.term == s.term && v.through == s.last_index)
            };
            if !ready {
                self.refresh()?;
            }
            let dup: Arc<Mutex<Option<EntryMeta>>> = Arc::default();
            let placed = Arc::new(AtomicU64::new(0));
            let stamp = {
                let state = Arc::clone(&self.state);
                let dup = Arc::clone(&dup);
                let placed = Arc::clone(&placed);
                let data = data.clone();
                Box::new(move |place: EntryPlace| -> Result<Bytes> {
                    let mut st = lock(&state)?;
                    let st = &mut *st;
                    let view = match st.view.as_mut() {
                        Some(v) if v.term == place.term && v.through + 1 == place.index => v,
                        _ => return Err(Error::new(ErrorKind::Busy, STALE)),
                    };
                    match view.table.check(producer_id, sequence) {
                        Check::Fresh => {
                            let time = now_ms();
                            let meta = EntryMeta {
                                index: place.index,
                                term: place.term,
                                pos: place.pos,
                            };
                            view.table.apply(producer_id, sequence, time, meta);
                            view.through = place.index;
                            st.inflight.insert(place.index, Vec::new());
                            placed.store(place.index, Ordering::Release);
                            Ok(producers::encode_body(producer_id, sequence, time, &data))
                        }
                        Check::Duplicate(meta) => {
                            if let Ok(mut d) = dup.lock() {
                                *d = Some(meta);
                            }
                            Err(Error::new(ErrorKind::Busy, DUPLICATE))
                        }
                        Check::OutOfOrder(why) => Err(Error::new(ErrorKind::OutOfOrder, why)),
                    }
                })
            };
            let finish = {
                let state = Arc::clone(&self.state);
                let placed = Arc::clone(&placed);
                let done = Arc::clone(&done);
                Box::new(move |r: Result<EntryMeta>| {
                    let index = placed.load(Ordering::Acquire);
                    let others = state
                        .lock()
                        .ok()
                        .and_then(|mut st| st.inflight.remove(&index))
                        .unwrap_or_default();
                    for other in others {
                        other(r.clone());
                    }
                    if let Some(done) = done.lock().ok().and_then(|mut d| d.take()) {
                        done(r);
                    }
                })
            };
            let r = self.member.append_with(
                EntryKind::Idempotent,
                producers::HEADER_SIZE + data.len(),
                stamp,
                finish,
            );
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Busy && e.message() == STALE => continue,
                Err(e) if e.kind() == ErrorKind::Busy && e.message() == DUPLICATE => {
                    let meta = dup.lock().map_err(|_| poisoned())?.take();
                    let meta =
                        meta.ok_or_else(|| Error::new(ErrorKind::Panic, "lost duplicate"))?;
                    let done = done.lock().map_err(|_| poisoned())?.take();
                    let done = done.ok_or_else(|| Error::new(ErrorKind::Panic, "lost callback"))?;
                    self.answer_duplicate(meta, done)?;
                    return Ok(());
                }
                Err(e) => {
                    // The stamp ran but the store refused the entry: the view holds a
                    // sequence the log does not.
                    let index = placed.load(Ordering::Acquire);
                    if index != 0 {
                        let mut st = lock(&self.state)?;
                        st.inflight.remove(&index);
                        st.view = None;
                    }
                    return Err(e);
                }
            }
        }
        Err(Error::new(
            ErrorKind::Busy,
            "the log kept moving while the producer table was brought up to date; retry",
        ))
    }

    /// Completes a duplicate of the entry at `meta` with that entry's outcome.
    fn answer_duplicate(&self, meta: EntryMeta, done: AppendCallback) -> Result<()> {
        let commit = self.member.status()?.commit_index;
        if meta.index <= commit {
            done(Ok(meta));
            return Ok(());
        }
        {
            let mut st = lock(&self.state)?;
            if let Some(waiting) = st.inflight.get_mut(&meta.index) {
                waiting.push(done);
                return Ok(());
            }
        }
        // Inherited from an earlier leader (or its first append just completed): wait
        // for the commit index to pass it, then check it is still the same entry.
        let member = Arc::clone(&self.member);
        let wait = Duration::from_millis(member.config.append_wait_ms_max);
        let mut threads = self.waiters.lock().map_err(|_| poisoned())?;
        threads.retain(|t| !t.is_finished());
        let done = Arc::new(Mutex::new(Some(done)));
        let done2 = Arc::clone(&done);
        let spawned = std::thread::Builder::new()
            .name("idempotent-wait".into())
            .spawn(move || {
                let r = wait_committed(&member, meta, wait);
                if let Some(done) = done2.lock().ok().and_then(|mut d| d.take()) {
                    done(r);
                }
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                if let Some(done) = done.lock().ok().and_then(|mut d| d.take()) {
                    done(Err(Error::io("start a wait for a duplicate append", e)));
                }
            }
        }
        Ok(())
    }

    /// Appends and waits until committed (or the original is), at most `timeout`.
    pub(crate) fn append(
        &self,
        producer_id: u64,
        sequence: u64,
        data: &[u8],
        timeout: Duration,
    ) -> Result<EntryMeta> {
        let slot = Slot::new();
        let filler = Arc::clone(&slot);
        self.append_async(
            producer_id,
            sequence,
            data,
            Box::new(move |result| filler.fill(result)),
        )?;
        slot.wait(timeout, "the entry").map_err(|e| {
            if e.kind() == ErrorKind::Timeout {
                Error::new(
                    ErrorKind::Timeout,
                    format!("{}: resend the same sequence to learn it", e.message()),
                )
            } else {
                e
            }
        })
    }

    /// Joins the waits started for duplicates (the member is closed first, which ends them).
    pub(crate) fn close(&self) {
        let threads = match self.waiters.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Waits until the entry at `meta.index` is committed and checks it is still `meta`'s.
fn wait_committed(member: &Member, meta: EntryMeta, wait: Duration) -> Result<EntryMeta> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = member.read_committed(meta.index, 1, 1, left.min(Duration::from_millis(200)))?;
        if let Some((entry, _)) = got.first() {
            return if entry.index == meta.index && entry.term == meta.term {
                Ok(meta)
            } else {
                Err(Error::new(
                    ErrorKind::NotLeader,
                    format!(
                        "entry {} was replaced by a new leader's entry; not committed: resend",
                        meta.index
                    ),
                ))
            };
        }
        if left.is_zero() {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the original of this append (entry {}) did not commit within {} ms; outcome unknown",
                    meta.index,
                    wait.as_millis()
                ),
            ));
        }
    }
}

/// `producerIdExpirationMs` of a group's properties (default 86400000).
pub(crate) fn expiration_ms(properties: &str) -> Result<u64> {
    let p = crate::config::parse_properties(properties)?;
    match p.get("producerIdExpirationMs") {
        None => Ok(producers::DEFAULT_EXPIRATION_MS),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(Error::config(format!(
                "producerIdExpirationMs: '{v}' is not a positive number of milliseconds"
            ))),
        },
    }
}
